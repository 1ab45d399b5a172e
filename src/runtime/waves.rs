//! Courier planning waves: on each zone's cron schedule (read on the domain
//! clock), ready orders and requested returns are routed to the zone's
//! couriers, the stops stored as
//! handoffs, and the zone's couriers marked for their schedules to be
//! published again (`mqtt::schedules`), whenever a wave plans or misses stops.

use crate::config::{CourierConfig, RoutingConfig, RoutingObjective};
use crate::domain::Millis;
use crate::domain::returns::PICKUP_DEADLINE_MS;
use crate::domain::{
    AtRiskReason, BrandId, CourierId, HandoffKind, HandoffState, Location, OrderId,
};
use crate::plan::route::PlannedStop;
use crate::plan::route::plan_routes_on;
use crate::plan::vrp::Objective;
use crate::plan::{CourierSlot, RouteOrder, WaveSearch};
use crate::runtime::clock::Clock;
use crate::runtime::mqtt::schedules::ScheduleChanges;
use crate::runtime::wake::{Wake, Wakers};
use crate::store::PromiseUpdate;
use crate::store::{HandoffRecord, OpenStop, StopMove, Store, StoreError};
use std::collections::{HashMap, HashSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long after its ETA an unconfirmed pickup counts as missed (domain time).
pub use crate::domain::MISSED_AFTER_MS;

/// `[routing] rush_margin_s` in milliseconds.
pub fn rush_margin_ms(routing: &RoutingConfig) -> i64 {
    (routing.rush_margin_s * 1000.0) as i64
}

/// The planner's travel assumptions from `[routing]`.
pub fn travel(routing: &RoutingConfig) -> crate::plan::Travel {
    crate::plan::Travel {
        speed_m_per_s: routing.speed_kmh / 3.6,
        service_ms: (routing.service_s * 1000.0) as i64,
        handover_ms: (routing.handover_s * 1000.0) as i64,
        detour_factor: routing.detour_factor,
    }
}

/// Millilitres a parcel of `lines` takes: each unit's `volume_l` (SKUs
/// without one count nothing), rounded up.
pub fn parcel_volume_ml(
    lines: &[crate::domain::intake::LineRequest],
    volumes: &HashMap<String, f64>,
) -> i64 {
    let litres: f64 = lines
        .iter()
        .map(|line| volumes.get(&line.sku).copied().unwrap_or(0.0) * f64::from(line.quantity))
        .sum();
    (litres * 1000.0).ceil() as i64
}

/// The rebuild rule from `[routing] rebuild_*`.
pub fn hysteresis(routing: &RoutingConfig) -> crate::plan::route::Hysteresis {
    crate::plan::route::Hysteresis {
        min_gain_m: routing.rebuild_min_gain_m,
        min_gain_share: routing.rebuild_min_gain_share,
        max_delay_ms: (routing.rebuild_max_delay_s * 1000.0) as i64,
    }
}

pub struct Waves {
    pub store: Store,
    pub clock: Clock,
    pub zone: String,
    pub schedule: crate::domain::calendar::ZonedSchedule,
    pub couriers: Vec<CourierConfig>,
    /// Travel assumptions and the router's budget.
    pub routing: RoutingConfig,
    /// Road times from `[routing] matrix_file`, instead of the great circle.
    pub roads: Option<std::sync::Arc<crate::plan::roads::Roads>>,
    pub factories: HashMap<String, Location>,
    /// Marks the couriers whose schedules a wave changed.
    pub schedules: ScheduleChanges,
    /// Wakes the outbox publisher after a wave stored its stops.
    pub wakers: Wakers,
    /// The leases this daemon holds: a wave runs here only under its
    /// zone's lease, and writes through a store fenced by it.
    pub holdings: std::sync::Arc<crate::runtime::cluster::Holdings>,
    /// Litres per unit of the SKUs that give one (`[[skus]] volume_l`).
    pub sku_volumes: HashMap<String, f64>,
    /// With several daemons (PostgreSQL), how often to look for rush
    /// orders: an order made ready on another daemon wakes only that one's
    /// waves. None with one daemon, whose own wake-up is enough.
    pub rush_poll: Option<std::time::Duration>,
}

/// How often the waves of a daemon that may have peers look for rush
/// orders made ready elsewhere (real time).
pub const RUSH_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// A new proof-of-handoff code: six decimal digits from the thread-local
/// CSPRNG (ChaCha, seeded by the operating system).
pub fn handoff_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// How far (real time) a look for rush orders reaches back before the
/// previous look began: longer than any write transaction takes to commit.
const RUSH_LOOK_OVERLAP: std::time::Duration = std::time::Duration::from_secs(10);

impl Waves {
    pub async fn run(self, cancel: CancellationToken) {
        let mut ready = self.wakers.watch_ready();
        let mut replan = self.wakers.watch_replan();
        // Orders that already caused a rush wave: each causes one, so an
        // order no courier can take does not make every wake-up a wave.
        let mut rushed: HashSet<String> = HashSet::new();
        // Whether an order can wait depends only on it and the next cron
        // wave, so after one look at every waiting order (`looked_for`: the
        // wave it was measured against) a wake-up looks only at orders
        // changed since the last look, less `RUSH_LOOK_OVERLAP` of real time
        // for transactions that committed after it read. Every wave (which
        // may hand orders back) calls for a full look again.
        let mut looked_for: Option<i64> = None;
        let mut since: Option<Millis> = None;
        loop {
            let now = self.clock.now();
            let Some(next) = self.schedule.after(now).next() else {
                warn!(zone = %self.zone, "planning cron has no future time; waves stop");
                return;
            };
            let wait = self.clock.real((next - now).num_milliseconds());
            let order_ready = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => false,
                changed = replan.changed() => {
                    if changed.is_ok() {
                        info!(zone = %self.zone, "re-planning now");
                    }
                    false
                }
                changed = ready.changed() => changed.is_ok(),
                // Peers' ready orders, looked for only here under the lease.
                () = async {
                    match self.rush_poll {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                } => self.holdings.fence(&crate::runtime::cluster::zone_lease(&self.zone)).is_some(),
            };
            if order_ready {
                // Plan now only for an order that cannot wait for `next`.
                let next_ms = next.timestamp_millis();
                let from = if looked_for == Some(next_ms) {
                    since
                } else {
                    None
                };
                let overlap = (RUSH_LOOK_OVERLAP.as_millis() as f64 * self.clock.scale()) as Millis;
                let looked_at = self.clock.now_ms().saturating_sub(overlap);
                let found = self.rush_orders(next_ms, from, &mut rushed).await;
                if found.is_ok() {
                    looked_for = Some(next_ms);
                    since = Some(looked_at);
                }
                match found {
                    Ok(0) => continue,
                    Ok(count) => {
                        metrics::counter!("fabflow_rush_waves_total").increment(1);
                        info!(zone = %self.zone, orders = count,
                            "ready orders cannot wait for the next wave; planning now");
                    }
                    Err(err) => {
                        warn!(zone = %self.zone, error = %err, "looking for rush orders failed");
                        continue;
                    }
                }
            }
            let lease = crate::runtime::cluster::zone_lease(&self.zone);
            let Some(fence) = self.holdings.fence(&lease) else {
                tracing::debug!(zone = %self.zone, "zone's waves run on another daemon");
                continue;
            };
            looked_for = None;
            if let Err(err) = self.wave_on(&self.store.fenced(fence)).await {
                warn!(zone = %self.zone, error = %err, "planning wave failed");
            }
        }
    }

    /// How many of the zone's ready orders (those changed at or after
    /// `since_ms`; all for `None`), not yet rushed, cannot wait for the wave
    /// at `next_wave_ms` (`plan::rush`); they are remembered in `rushed`,
    /// which a look at all of them trims to orders still waiting.
    async fn rush_orders(
        &self,
        next_wave_ms: i64,
        since_ms: Option<Millis>,
        rushed: &mut HashSet<String>,
    ) -> Result<usize, StoreError> {
        let waiting = self.store.wave_orders_since(&self.zone, since_ms).await?;
        let travel = travel(&self.routing);
        let margin_ms = rush_margin_ms(&self.routing);
        if since_ms.is_none() {
            let still: HashSet<&str> = waiting.iter().map(|o| o.order_id.as_str()).collect();
            rushed.retain(|id| still.contains(id.as_str()));
        }
        let mut count = 0;
        for order in &waiting {
            let Some(pickup) = self.factories.get(order.factory.as_str()) else {
                continue;
            };
            if rushed.contains(order.order_id.as_str()) {
                continue;
            }
            let cannot_wait = crate::plan::rush::cannot_wait(
                *pickup,
                order.dropoff,
                order.deadline_ms,
                next_wave_ms,
                &crate::plan::route::Rides {
                    roads: self.roads.as_deref(),
                    travel,
                },
                margin_ms,
            );
            if cannot_wait {
                rushed.insert(order.order_id.to_string());
                count += 1;
            }
        }
        Ok(count)
    }

    /// Plans one wave now; returns how many orders were routed.
    pub async fn wave(&self) -> Result<usize, StoreError> {
        self.wave_on(&self.store).await
    }

    /// Plans one wave now, writing through `store` (fenced by the zone's
    /// lease when several daemons share the database).
    ///
    /// A wave that rebuilt the couriers' routes saves its moves only if the
    /// stops are still as it read them (compare-and-set): a courier who
    /// confirmed or locked one meanwhile (the router works for up to its
    /// budget, a long time on a scaled clock) makes the save a conflict. The
    /// wave then plans again at once, keeping every open stop as it is, so
    /// that couriers at work never hold the new parcels back a whole wave.
    async fn wave_on(&self, store: &Store) -> Result<usize, StoreError> {
        match self.plan_wave(store, Rebuild::Allowed).await {
            Err(StoreError::Conflict(why)) => {
                metrics::counter!("fabflow_wave_replans_total").increment(1);
                info!(zone = %self.zone, reason = %why,
                    "stops changed while the wave rebuilt them; planning the new parcels after the open stops");
                self.plan_wave(store, Rebuild::Never).await
            }
            other => other,
        }
    }

    /// One wave; with `Rebuild::Never` each courier's open stops stay as
    /// they are and new parcels come after them.
    async fn plan_wave(&self, store: &Store, rebuild: Rebuild) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        // A pickup no courier confirmed within MISSED_AFTER of its ETA is
        // missed; its order is routed again in this wave.
        let missed = store
            .miss_overdue_pickups(&self.zone, now - MISSED_AFTER_MS, now)
            .await?;
        if missed > 0 {
            metrics::counter!("fabflow_handoffs_missed_total").increment(missed as u64);
            warn!(zone = %self.zone, orders = missed, "pickups missed; planning them again");
            self.schedules
                .mark_all(self.couriers.iter().map(|c| c.id.as_str()));
            self.wakers.wake(Wake::OUTBOX);
        }
        // A drop-off no courier confirmed within MISSED_AFTER of its ETA is
        // missed; its courier still has the parcel and gets a new drop-off.
        let unconfirmed = store
            .miss_overdue_dropoffs(&self.zone, now - MISSED_AFTER_MS, now)
            .await?;
        if unconfirmed > 0 {
            metrics::counter!("fabflow_dropoffs_missed_total").increment(unconfirmed as u64);
            warn!(zone = %self.zone, orders = unconfirmed, "drop-offs never confirmed; planning them again");
            self.schedules
                .mark_all(self.couriers.iter().map(|c| c.id.as_str()));
            self.wakers.wake(Wake::OUTBOX);
        }
        let waiting = store.wave_orders(&self.zone).await?;
        let returns = store.wave_returns(&self.zone).await?;
        let carried = store.carried_orders(&self.zone).await?;
        let carried_back = store.carried_returns(&self.zone).await?;
        if waiting.is_empty() && returns.is_empty() && carried.is_empty() && carried_back.is_empty()
        {
            return Ok(0);
        }
        // Deliveries (factory to customer) and returns (customer to the
        // order's factory) are the same kind of pickup-and-drop-off pair.
        let deliveries = waiting.iter().filter_map(|order| {
            let pickup = self.factories.get(order.factory.as_str())?;
            Some(RouteOrder {
                order: order.order_id.clone(),
                return_id: None,
                pickup: *pickup,
                dropoff: order.dropoff,
                deadline_ms: order.deadline_ms,
                carried_by: None,
                volume_ml: 0,
            })
        });
        let pickups_back = returns.iter().filter_map(|back| {
            let dropoff = self.factories.get(back.factory.as_str())?;
            Some(RouteOrder {
                order: back.order_id.clone(),
                return_id: Some(back.return_id.clone()),
                pickup: back.pickup,
                dropoff: *dropoff,
                deadline_ms: back.requested_ms + PICKUP_DEADLINE_MS,
                carried_by: None,
                volume_ml: 0,
            })
        });
        // Parcels whose drop-off was never confirmed: a drop-off only, by
        // the courier that has them.
        let drops_again = carried.iter().map(|order| RouteOrder {
            order: order.order_id.clone(),
            return_id: None,
            pickup: order.dropoff,
            dropoff: order.dropoff,
            deadline_ms: order.deadline_ms,
            carried_by: Some(order.courier.clone()),
            volume_ml: 0,
        });
        // Returns whose drop-off at the factory was never confirmed: the
        // same, at the order's factory.
        let drops_back = carried_back.iter().filter_map(|back| {
            let factory = self.factories.get(back.factory.as_str())?;
            Some(RouteOrder {
                order: back.order_id.clone(),
                return_id: Some(back.return_id.clone()),
                pickup: *factory,
                dropoff: *factory,
                deadline_ms: back.requested_ms + PICKUP_DEADLINE_MS,
                carried_by: Some(back.courier.clone()),
                volume_ml: 0,
            })
        });
        let mut fresh: Vec<RouteOrder> = deliveries.chain(pickups_back).collect();
        // Each courier's stops not yet made: it starts after the one it is
        // on its way to, and the rest may be rebuilt.
        let open = store.open_stops().await?;
        // A wave routes at most `max_wave_parcels` parcels, those the
        // couriers have not dropped off yet included: new ones beyond that
        // (the latest deadlines) wait for a later wave.
        let outstanding = open
            .iter()
            .map(|stop| (&stop.handoff.order_id, &stop.handoff.return_id))
            .collect::<std::collections::HashSet<_>>()
            .len()
            + carried.len()
            + carried_back.len();
        let room = self.routing.max_wave_parcels.saturating_sub(outstanding);
        if fresh.len() > room {
            fresh.sort_by_key(|order| order.deadline_ms);
            info!(
                zone = %self.zone,
                parcels = fresh.len() - room,
                max = self.routing.max_wave_parcels,
                "wave full; parcels wait for a later wave"
            );
            metrics::counter!("fabflow_wave_parcels_deferred_total", "zone" => self.zone.to_string())
                .increment((fresh.len() - room) as u64);
            fresh.truncate(room);
        }
        let mut orders: Vec<RouteOrder> = fresh
            .into_iter()
            .chain(drops_again)
            .chain(drops_back)
            .collect();
        // One entry per parcel (the first): a parcel routed twice would be
        // planned for two couriers.
        let mut seen = std::collections::HashSet::new();
        orders.retain(|o| seen.insert((o.order.clone(), o.return_id.clone())));
        let off_duty = store.couriers_off_duty().await?;
        let travel = travel(&self.routing);
        let mut open_index: HashMap<(String, Option<String>), usize> = HashMap::new();
        let mut open_facts: Vec<&OpenStop> = Vec::new();
        // The stops a rebuilt plan may move, by order, return and end.
        let mut movable: HashMap<(String, Option<String>, HandoffKind), &HandoffRecord> =
            HashMap::new();
        let mut couriers: Vec<CourierSlot> = Vec::new();
        // Where and when each courier is free after all its open stops, if
        // those must be kept as they are (see below).
        let mut after_all: Vec<(Location, Millis)> = Vec::new();
        let routed_len = orders.len();
        for courier in self.couriers.iter().filter(|c| !off_duty.contains(&c.id)) {
            let stops: Vec<&OpenStop> = open
                .iter()
                .filter(|s| s.handoff.courier.as_str() == courier.id)
                .collect();
            let id = CourierId::new(courier.id.clone());
            // The shift it works now or next (none configured: always);
            // with no shift ahead, nothing new fits.
            let (shift_start, shift_end_ms) =
                crate::domain::calendar::shift_window(&courier.shifts(), now)
                    .unwrap_or((now, Some(now)));
            let mut slot = CourierSlot {
                id: id.clone(),
                start: Location::new(courier.lat, courier.lon),
                available_ms: shift_start,
                capacity: courier.capacity,
                planned: Vec::new(),
                shift_end_ms,
                end: courier.end(),
                volume_ml: courier
                    .volume_l
                    .map(|litres| (litres * 1000.0).floor() as i64),
            };
            let (Some(first), Some(last)) = (stops.first(), stops.last()) else {
                after_all.push((slot.start, slot.available_ms));
                couriers.push(slot);
                continue;
            };
            after_all.push((
                last.handoff.location,
                (last.handoff.eta_ms + travel.service_ms).max(shift_start),
            ));
            match rebuildable(&stops).filter(|_| rebuild == Rebuild::Allowed) {
                Some(rest) => {
                    slot.start = first.handoff.location;
                    slot.available_ms = (first.handoff.eta_ms + travel.service_ms).max(shift_start);
                    for stop in rest {
                        let handoff = &stop.handoff;
                        movable.insert(
                            (
                                handoff.order_id.to_string(),
                                handoff.return_id.clone(),
                                handoff.kind,
                            ),
                            handoff,
                        );
                        let key = (handoff.order_id.to_string(), handoff.return_id.clone());
                        let index = *open_index.entry(key).or_insert_with(|| {
                            let deadline_ms = match stop.return_requested_ms {
                                Some(requested) => requested + PICKUP_DEADLINE_MS,
                                None => stop.deadline_ms,
                            };
                            orders.push(RouteOrder {
                                order: handoff.order_id.clone(),
                                return_id: handoff.return_id.clone(),
                                pickup: handoff.location,
                                dropoff: handoff.location,
                                deadline_ms,
                                carried_by: Some(id.clone()),
                                volume_ml: 0,
                            });
                            open_facts.push(stop);
                            orders.len() - 1
                        });
                        match handoff.kind {
                            HandoffKind::Pickup => {
                                orders[index].pickup = handoff.location;
                                orders[index].carried_by = None;
                            }
                            HandoffKind::Dropoff => orders[index].dropoff = handoff.location,
                        }
                        slot.planned.push(PlannedStop {
                            order: index,
                            kind: handoff.kind,
                        });
                    }
                }
                // Locked stops stay as they are: new orders come after them.
                None => {
                    slot.start = last.handoff.location;
                    slot.available_ms = (last.handoff.eta_ms + travel.service_ms).max(shift_start);
                }
            }
            couriers.push(slot);
        }
        // Stored stops that contradict each other (a parcel planned for two
        // couriers) would make the model refuse the whole wave, wave after
        // wave: new parcels would wait for hours. Such a wave keeps every
        // open stop as it is and plans only the parcels without one; the
        // contradiction is reported, and ends when its stops are made or
        // missed.
        let slots: Vec<&CourierSlot> = couriers.iter().collect();
        if let Err(err) = crate::plan::route::check_planned(&slots, &orders) {
            warn!(zone = %self.zone, error = %err,
                "planned stops contradict each other; this wave keeps them as they are");
            metrics::counter!("fabflow_wave_conflicts_total").increment(1);
            for (slot, &(start, available_ms)) in couriers.iter_mut().zip(&after_all) {
                if !slot.planned.is_empty() {
                    slot.start = start;
                    slot.available_ms = available_ms;
                    slot.planned.clear();
                }
            }
            orders.truncate(routed_len);
            open_facts.clear();
            movable.clear();
        }
        // What each parcel takes, where SKUs give a volume (a return as
        // its whole order: at most that much comes back).
        if !self.sku_volumes.is_empty() {
            let ids: Vec<&str> = orders.iter().map(|o| o.order.as_str()).collect();
            let lines = store.order_lines(&ids).await?;
            for order in &mut orders {
                if let Some(lines) = lines.get(order.order.as_str()) {
                    order.volume_ml = parcel_volume_ml(lines, &self.sku_volumes);
                }
            }
        }
        let search = WaveSearch {
            objective: match self.routing.objective {
                RoutingObjective::Distance => Objective::Distance,
                RoutingObjective::Couriers => Objective::VehiclesThenDistance,
            },
            seed: u64::try_from(now).unwrap_or(1),
            hysteresis: hysteresis(&self.routing),
            ..WaveSearch::default()
        };
        let budget = std::time::Duration::from_millis(self.routing.time_limit_ms);
        // The router is CPU work for up to its budget: off the async workers,
        // so HTTP and the machine supervisors carry on meanwhile.
        let routed = {
            let orders = orders.clone();
            let roads = self.roads.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let mut progress = || started.elapsed().as_secs_f64() / budget.as_secs_f64();
                plan_routes_on(
                    roads.as_deref(),
                    &couriers,
                    &orders,
                    now,
                    travel,
                    search,
                    &mut progress,
                )
            })
            .await
        };
        let routed = match routed {
            Ok(routed) => routed,
            Err(err) => {
                warn!(zone = %self.zone, error = %err, "the router stopped; wave skipped");
                return Ok(0);
            }
        };
        let planned = match routed {
            // The domain clock ran on while the router worked (fast on a
            // scaled clock): the routes leave from when they are stored.
            Ok(mut planned) => {
                let spent = (self.clock.now_ms() - now).max(0);
                for stop in planned.routes.iter_mut().flat_map(|r| r.stops.iter_mut()) {
                    stop.eta_ms += spent;
                }
                planned
            }
            Err(err) => {
                warn!(zone = %self.zone, error = %err, "routing model refused; wave skipped");
                return Ok(0);
            }
        };
        // Every delivery's ETA is stored; those no courier reaches in time
        // are flagged now, not when their deadline has passed.
        let dropoff_eta: HashMap<&str, i64> = planned
            .routes
            .iter()
            .flat_map(|r| &r.stops)
            .filter(|s| s.return_id.is_none() && s.kind == HandoffKind::Dropoff)
            .map(|s| (s.order.as_str(), s.eta_ms))
            .collect();
        let delivery_index: HashMap<&str, usize> = orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.return_id.is_none())
            .map(|(index, o)| (o.order.as_str(), index))
            .collect();
        let risky: std::collections::HashSet<usize> = planned.at_risk.iter().copied().collect();
        // The new deliveries, and those a rebuilt plan moved.
        let deliveries: Vec<(&OrderId, &BrandId, i64)> = waiting
            .iter()
            .map(|o| (&o.order_id, &o.brand, o.deadline_ms))
            .chain(
                carried
                    .iter()
                    .map(|o| (&o.order_id, &o.brand, o.deadline_ms)),
            )
            .chain(
                open_facts
                    .iter()
                    .filter(|s| planned.rebuilt && s.handoff.return_id.is_none())
                    .map(|s| (&s.handoff.order_id, &s.brand, s.deadline_ms)),
            )
            .collect();
        let at_risk: Vec<PromiseUpdate> = deliveries
            .iter()
            .map(|&(order_id, brand, deadline_ms)| {
                let eta = dropoff_eta.get(order_id.as_str()).copied();
                // Unplaceable in time, or late once the router's own time
                // is counted.
                let late = delivery_index
                    .get(order_id.as_str())
                    .is_some_and(|index| risky.contains(index))
                    || eta.is_some_and(|eta| eta > deadline_ms);
                PromiseUpdate {
                    order_id: order_id.clone(),
                    brand: brand.clone(),
                    deadline_ms,
                    eta_ready_ms: None,
                    eta_delivery_ms: eta,
                    at_risk: late.then_some(AtRiskReason::NoCourierInTime),
                }
            })
            .collect();
        let flagged = store.record_promises(&at_risk, now).await?;
        if flagged > 0 {
            metrics::counter!("fabflow_orders_at_risk_total").increment(flagged as u64);
            warn!(zone = %self.zone, orders = flagged, "no courier can deliver these orders by their deadline");
            self.wakers.wake(Wake::OUTBOX);
        }
        let plans = planned.routes;
        let wave = uuid::Uuid::now_v7().hyphenated().to_string();
        let factory_of: HashMap<&str, &str> = waiting
            .iter()
            .map(|o| (o.order_id.as_str(), o.factory.as_str()))
            .chain(
                returns
                    .iter()
                    .map(|r| (r.order_id.as_str(), r.factory.as_str())),
            )
            .chain(
                carried_back
                    .iter()
                    .map(|r| (r.order_id.as_str(), r.factory.as_str())),
            )
            .collect();
        let mut records = Vec::new();
        let mut moves = Vec::new();
        let mut late = 0;
        for plan in &plans {
            for (seq, stop) in plan.stops.iter().enumerate() {
                let deadline = orders
                    .iter()
                    .find(|o| o.order == stop.order && o.return_id == stop.return_id)
                    .map_or(i64::MAX, |o| o.deadline_ms);
                if stop.eta_ms > deadline {
                    late += 1;
                }
                let key = (stop.order.to_string(), stop.return_id.clone(), stop.kind);
                if let Some(handoff) = movable.get(&key).filter(|_| planned.rebuilt) {
                    let brand = open_facts
                        .iter()
                        .find(|s| s.handoff.order_id == handoff.order_id)
                        .map(|s| s.brand.clone())
                        .unwrap_or_else(|| BrandId::new(""));
                    moves.push(StopMove {
                        id: handoff.id.clone(),
                        order_id: handoff.order_id.clone(),
                        brand,
                        from_courier: handoff.courier.clone(),
                        from_wave: handoff.wave.clone(),
                        to_courier: plan.courier.clone(),
                        wave: wave.clone(),
                        seq: seq as i64,
                        eta_ms: stop.eta_ms,
                    });
                    continue;
                }
                // A delivery is picked up at the factory, a return at the customer.
                let at_factory = (stop.kind == HandoffKind::Pickup) == stop.return_id.is_none();
                records.push(HandoffRecord {
                    id: uuid::Uuid::now_v7().hyphenated().to_string(),
                    wave: wave.clone(),
                    courier: plan.courier.clone(),
                    order_id: stop.order.clone(),
                    kind: stop.kind,
                    seq: seq as i64,
                    place: if at_factory {
                        factory_of
                            .get(stop.order.as_str())
                            .copied()
                            .unwrap_or("factory")
                            .to_string()
                    } else {
                        "customer".to_string()
                    },
                    location: stop.location,
                    eta_ms: stop.eta_ms,
                    state: HandoffState::Planned,
                    updated_ms: now,
                    // A drop-off planned again keeps the code the customer
                    // (or, for a return, the factory's operator) has.
                    code: carried
                        .iter()
                        .filter(|c| c.order_id == stop.order && stop.return_id.is_none())
                        .map(|c| &c.code)
                        .chain(
                            carried_back
                                .iter()
                                .filter(|c| stop.return_id.as_ref() == Some(&c.return_id))
                                .map(|c| &c.code),
                        )
                        .find(|_| stop.kind == HandoffKind::Dropoff)
                        .cloned()
                        .flatten()
                        .or_else(|| Some(handoff_code())),
                    wrong_codes: 0,
                    failure: None,
                    return_id: stop.return_id.clone(),
                });
            }
        }
        if planned.rebuilt {
            store.save_rebuilt_wave(&moves, &records, now).await?;
            metrics::counter!("fabflow_routes_rebuilt_total").increment(1);
            info!(zone = %self.zone, wave = %wave, stops = moves.len(),
                "planned stops rebuilt: shorter or fewer orders late");
            for stop in &moves {
                self.schedules.mark(stop.from_courier.as_str());
            }
        } else {
            store.save_wave(&records, now).await?;
        }
        self.wakers.wake(Wake::OUTBOX);
        let routed = records
            .iter()
            .map(|r| (r.order_id.as_str(), r.return_id.as_deref()))
            .collect::<HashSet<_>>()
            .len();
        metrics::counter!("fabflow_orders_routed_total").increment(routed as u64);
        if late > 0 {
            warn!(zone = %self.zone, stops = late, "planned stops arrive after their order's deadline");
        }
        info!(zone = %self.zone, wave = %wave, orders = routed, routes = plans.len(), "planning wave");
        for plan in &plans {
            self.schedules.mark(plan.courier.as_str());
        }
        Ok(routed)
    }
}

/// Whether a wave may rebuild the couriers' open stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    Allowed,
    Never,
}

/// A courier's open stops (in route order) that a wave may rebuild: all
/// but the first (the one it is on its way to), if none is locked and every
/// pickup among them has its drop-off after it. None: keep them all.
fn rebuildable<'a>(stops: &[&'a OpenStop]) -> Option<Vec<&'a OpenStop>> {
    if stops
        .iter()
        .any(|s| s.handoff.state != HandoffState::Planned)
    {
        return None;
    }
    let rest: Vec<&OpenStop> = stops.iter().skip(1).copied().collect();
    let same = |a: &OpenStop, b: &OpenStop| {
        a.handoff.order_id == b.handoff.order_id && a.handoff.return_id == b.handoff.return_id
    };
    for (at, stop) in rest.iter().enumerate() {
        if stop.handoff.kind == HandoffKind::Pickup
            && !rest[at + 1..]
                .iter()
                .any(|later| later.handoff.kind == HandoffKind::Dropoff && same(later, stop))
        {
            return None;
        }
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parcel_takes_its_units_volumes_rounded_up() {
        use crate::domain::intake::LineRequest;
        let volumes = HashMap::from([("tee".to_string(), 0.5), ("mug".to_string(), 0.0011)]);
        let line = |sku: &str, quantity| LineRequest {
            sku: sku.into(),
            quantity,
        };
        assert_eq!(
            parcel_volume_ml(&[line("tee", 3), line("mug", 1)], &volumes),
            1_502
        );
        assert_eq!(parcel_volume_ml(&[line("hat", 9)], &volumes), 0);
        assert_eq!(parcel_volume_ml(&[], &volumes), 0);
    }

    #[test]
    fn the_rebuild_rule_comes_from_routing_and_defaults_to_the_planners() {
        assert_eq!(
            hysteresis(&RoutingConfig::default()),
            crate::plan::route::Hysteresis::default()
        );
        let routing = RoutingConfig {
            rebuild_min_gain_m: 0.0,
            rebuild_min_gain_share: 0.0,
            rebuild_max_delay_s: 60.0,
            ..RoutingConfig::default()
        };
        let rule = hysteresis(&routing);
        assert_eq!(rule.max_delay_ms, 60_000);
        // No gain needed: any shorter plan that delays no drop-off past a
        // minute wins.
        assert!(rule.prefers_rebuilt((0, 1_000.0), (0, 999.0), 60_000));
        assert!(!rule.prefers_rebuilt((0, 1_000.0), (0, 999.0), 60_001));
    }
}

#[cfg(test)]
mod conflict_tests {
    use super::*;
    use crate::domain::{HandoffKind, HandoffState, Location};

    fn courier(id: &str, capacity: usize) -> CourierConfig {
        toml::from_str(&format!(
            "id = \"{id}\"\nzone = \"berlin\"\nlat = 52.52\nlon = 13.40\ncapacity = {capacity}"
        ))
        .expect("courier")
    }

    fn stop(
        id: &str,
        courier: &str,
        wave: &str,
        order: &str,
        kind: HandoffKind,
        seq: i64,
        eta_ms: Millis,
    ) -> HandoffRecord {
        HandoffRecord {
            id: id.into(),
            wave: wave.into(),
            courier: courier.into(),
            order_id: order.into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.53, 13.41),
            eta_ms,
            state: HandoffState::Planned,
            updated_ms: eta_ms,
            code: None,
            wrong_codes: 0,
            failure: None,
            return_id: None,
        }
    }

    /// Stored stops that contradict each other (o1's drop-off planned for
    /// two couriers, neither of them picking it up in the part a wave may
    /// rebuild) no longer stop every later wave: a ready order still gets
    /// its courier.
    #[tokio::test]
    async fn contradicting_stops_do_not_keep_new_orders_from_their_courier() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, clock) = three_orders(dir.path(), &["o1", "o2", "o3"]).await;
        let now = clock.now_ms();
        let hour = 3_600_000;
        store
            .save_wave(
                &[
                    stop(
                        "a1",
                        "bike-1",
                        "w1",
                        "o1",
                        HandoffKind::Pickup,
                        0,
                        now + hour,
                    ),
                    stop(
                        "a2",
                        "bike-1",
                        "w1",
                        "o1",
                        HandoffKind::Dropoff,
                        1,
                        now + 2 * hour,
                    ),
                    stop(
                        "b1",
                        "van-1",
                        "w2",
                        "o2",
                        HandoffKind::Pickup,
                        0,
                        now + hour,
                    ),
                    stop(
                        "b2",
                        "van-1",
                        "w2",
                        "o1",
                        HandoffKind::Dropoff,
                        1,
                        now + 2 * hour,
                    ),
                    stop(
                        "b3",
                        "van-1",
                        "w2",
                        "o2",
                        HandoffKind::Dropoff,
                        2,
                        now + 3 * hour,
                    ),
                ],
                now,
            )
            .await
            .expect("stops");
        let waves = waves_on(&store, clock);
        let routed = waves.wave().await.expect("wave");
        assert_eq!(routed, 1, "o3 routed");
        let o3 = store.order_handoffs("o3").await.expect("handoffs");
        assert_eq!(o3.len(), 2, "{o3:?}");
        // The contradicting stops are kept as they were.
        let o1 = store.order_handoffs("o1").await.expect("handoffs");
        assert_eq!(o1.len(), 3);
        assert!(o1.iter().all(|h| h.state == HandoffState::Planned));
    }

    /// A store in `dir` with orders o1, o2 and o3 accepted now (due in 48
    /// hours), those of `ready` made and waiting for a courier.
    async fn three_orders(dir: &std::path::Path, ready: &[&str]) -> (Store, Clock) {
        let url = format!("sqlite://{}", dir.join("waves.db").display());
        let store = Store::connect(&url).await.expect("store");
        let clock = Clock::new(1.0);
        let now = clock.now_ms();
        let mut orders = Vec::new();
        for id in ["o1", "o2", "o3"] {
            let mut order = crate::store::tests::new_order(id, "acme", None);
            order.accepted_ms = now;
            order.deadline_ms = now + 48 * 3_600_000;
            orders.push(order);
        }
        store.accept_orders(&orders).await.expect("accept");
        for id in ready {
            sqlx::query("UPDATE orders SET state = 'ready' WHERE id = $1")
                .bind(*id)
                .execute(store.reader())
                .await
                .expect("ready");
        }
        (store, clock)
    }

    /// The zone's waves on `store`: two couriers, one factory, a 50 ms router.
    fn waves_on(store: &Store, clock: Clock) -> Waves {
        Waves {
            store: store.clone(),
            clock,
            zone: "berlin".into(),
            schedule: crate::domain::calendar::ZonedSchedule::new("0 0 * * * *", None)
                .expect("cron"),
            couriers: vec![courier("bike-1", 20), courier("van-1", 60)],
            routing: RoutingConfig {
                time_limit_ms: 50,
                ..RoutingConfig::default()
            },
            roads: None,
            factories: HashMap::from([("north".to_string(), Location::new(52.53, 13.41))]),
            schedules: ScheduleChanges::default(),
            wakers: Wakers::default(),
            holdings: std::sync::Arc::default(),
            sku_volumes: HashMap::new(),
            rush_poll: None,
        }
    }

    /// A store where bike-1's open stops take a long way round (o1 dropped
    /// off far away before o2 next door), so that a wave rebuilds them,
    /// and o3 is ready and waiting for its courier.
    async fn roundabout(dir: &std::path::Path) -> (Store, Clock) {
        let (store, clock) = three_orders(dir, &["o3"]).await;
        let now = clock.now_ms();
        let minute = 60_000;
        let far = Location::new(52.45, 13.55);
        let near = Location::new(52.535, 13.415);
        let at = |mut stop: HandoffRecord, location: Location| {
            stop.location = location;
            stop
        };
        let north = Location::new(52.53, 13.41);
        let stops = [
            at(
                stop(
                    "a0",
                    "bike-1",
                    "w1",
                    "o1",
                    HandoffKind::Pickup,
                    0,
                    now + 10 * minute,
                ),
                north,
            ),
            at(
                stop(
                    "a1",
                    "bike-1",
                    "w1",
                    "o2",
                    HandoffKind::Pickup,
                    1,
                    now + 12 * minute,
                ),
                north,
            ),
            at(
                stop(
                    "a2",
                    "bike-1",
                    "w1",
                    "o1",
                    HandoffKind::Dropoff,
                    2,
                    now + 60 * minute,
                ),
                far,
            ),
            at(
                stop(
                    "a3",
                    "bike-1",
                    "w1",
                    "o2",
                    HandoffKind::Dropoff,
                    3,
                    now + 110 * minute,
                ),
                near,
            ),
        ];
        store.save_wave(&stops, now).await.expect("stops");
        (store, clock)
    }

    /// The waves for [`roundabout`]: a rebuild may bring o1's drop-off an
    /// hour later (it saves 18 km).
    fn roundabout_waves(store: &Store, clock: Clock) -> Waves {
        let mut waves = waves_on(store, clock);
        waves.routing.rebuild_max_delay_s = 3600.0;
        waves
    }

    /// Where o2's drop-off is planned: (wave, place in it).
    async fn o2_dropoff(store: &Store) -> (String, i64) {
        let stops = store.order_handoffs("o2").await.expect("handoffs");
        let drop = stops
            .iter()
            .find(|h| h.kind == HandoffKind::Dropoff)
            .expect("o2's drop-off");
        (drop.wave.clone(), drop.seq)
    }

    /// A courier confirming or locking a stop while the router rebuilt the
    /// routes makes the rebuilt wave's save a conflict; the wave then plans
    /// the new parcels after the open stops at once, instead of leaving them
    /// for the next wave.
    #[tokio::test]
    async fn a_rebuilt_wave_that_loses_a_race_with_a_courier_still_routes_the_new_parcels() {
        // The scenario rebuilds bike-1's stops when nothing races it.
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, clock) = roundabout(dir.path()).await;
        assert_eq!(o2_dropoff(&store).await, ("w1".to_string(), 3));
        let routed = roundabout_waves(&store, clock).wave().await.expect("wave");
        assert_eq!(routed, 1, "o3 routed");
        assert_ne!(
            o2_dropoff(&store).await.0,
            "w1",
            "o2's drop-off moved to the rebuilt wave"
        );

        // The same, with every move found changed when saved (as after a
        // courier's confirmation): a BEFORE trigger skips the row, so the
        // compare-and-set updates nothing.
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, clock) = roundabout(dir.path()).await;
        sqlx::query(
            "CREATE TRIGGER courier_race BEFORE UPDATE OF wave ON handoffs \
             BEGIN SELECT RAISE(IGNORE); END",
        )
        .execute(store.reader())
        .await
        .expect("trigger");
        let routed = roundabout_waves(&store, clock).wave().await.expect("wave");
        assert_eq!(routed, 1, "o3 routed in the same wave");
        let o3 = store.order_handoffs("o3").await.expect("handoffs");
        assert_eq!(o3.len(), 2, "{o3:?}");
        assert_eq!(
            o2_dropoff(&store).await,
            ("w1".to_string(), 3),
            "the open stops kept as they were"
        );
    }
}
