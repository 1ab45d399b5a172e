//! Several daemons on one database: which daemon drives which factory, and
//! which plans which zone's waves, by leases with a fencing epoch
//! (`store::leases`).
//!
//! The [`Coordinator`] heartbeats this daemon, renews the leases it holds,
//! and spreads every lease (`factory/<id>`, `zone/<id>`) round-robin over
//! the live daemons sorted by id: each daemon takes the free leases that
//! fall to it and gives up, after stopping what they cover, those that
//! fall to another (so leases move back when a daemon returns). Under a
//! factory lease it runs that factory's machine drivers and supervisors,
//! each supervisor on a store handle fenced by the lease's epoch.
//!
//! Invariant: a daemon drives a machine only while its lease is valid
//! *locally*: until the renewal's send time plus `lease_ms` minus
//! `renew_margin_ms`. The database's expiry is at least the send time plus
//! `lease_ms` (the database stamps it later), so this daemon stops (a
//! watchdog cancels the factory's drivers, and supervisors check the lease
//! before every command) at least `renew_margin_ms` before anyone else can
//! take the lease over, whether or not it can still reach the database.
//! On SQLite (one daemon, the file locked) every lease is this daemon's and
//! is taken at once, whatever a former process left in the table.

use crate::store::{Fence, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The lease covering a factory's machines and their scheduling.
pub fn factory_lease(factory: &str) -> String {
    format!("factory/{factory}")
}

/// The lease covering a zone's planning waves.
pub fn zone_lease(zone: &str) -> String {
    format!("zone/{zone}")
}

/// Lease timings from `[cluster]`.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub lease: Duration,
    pub renew_interval: Duration,
    pub renew_margin: Duration,
}

impl Timings {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// How long this daemon may act on a lease renewed (or taken) by a
    /// statement sent at `sent`.
    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.lease.saturating_sub(self.renew_margin)
    }
}

#[derive(Debug, Clone)]
struct Held {
    fence: Fence,
    valid_until: Instant,
}

/// The leases this daemon holds and until when it may act on each (local
/// monotonic time). Shared by the coordinator, the supervisors, the
/// scheduler and the waves.
#[derive(Debug, Default)]
pub struct Holdings {
    held: RwLock<HashMap<String, Held>>,
}

impl Holdings {
    /// The lease's fence, if held and still valid now.
    pub fn fence(&self, lease: &str) -> Option<Fence> {
        let held = self.held.read().ok()?;
        let entry = held.get(lease)?;
        (entry.valid_until > Instant::now()).then(|| entry.fence.clone())
    }

    /// Whether the lease is held at `epoch` and valid now.
    pub fn valid(&self, lease: &str, epoch: i64) -> bool {
        self.fence(lease).is_some_and(|fence| fence.epoch == epoch)
    }

    /// Names of the leases held and valid now.
    pub fn names(&self) -> Vec<String> {
        let now = Instant::now();
        match self.held.read() {
            Ok(held) => {
                let mut names: Vec<String> = held
                    .iter()
                    .filter(|(_, entry)| entry.valid_until > now)
                    .map(|(name, _)| name.clone())
                    .collect();
                names.sort();
                names
            }
            Err(_) => Vec::new(),
        }
    }

    fn valid_until(&self, lease: &str, epoch: i64) -> Option<Instant> {
        let held = self.held.read().ok()?;
        let entry = held.get(lease)?;
        (entry.fence.epoch == epoch).then_some(entry.valid_until)
    }

    fn set(&self, fence: Fence, valid_until: Instant) {
        if let Ok(mut held) = self.held.write() {
            held.insert(fence.lease.clone(), Held { fence, valid_until });
        }
    }

    fn remove(&self, lease: &str) -> Option<Fence> {
        self.held.write().ok()?.remove(lease).map(|held| held.fence)
    }

    fn held(&self) -> Vec<Held> {
        match self.held.read() {
            Ok(held) => held.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A supervisor's permission to send commands: its factory's lease at the
/// epoch it was started under.
#[derive(Debug, Clone)]
pub struct LeaseCheck {
    pub holdings: Arc<Holdings>,
    pub lease: String,
    pub epoch: i64,
}

impl LeaseCheck {
    pub fn valid(&self) -> bool {
        self.holdings.valid(&self.lease, self.epoch)
    }
}

/// Starts what runs under a factory lease (its machines' drivers and
/// supervisors, on a store fenced by the lease) as tasks in the set,
/// stopped by the token.
pub type StartFactory =
    Arc<dyn Fn(&str, Fence, CancellationToken, &mut JoinSet<()>) + Send + Sync + 'static>;

/// What runs under the held factory leases, and what is still stopping.
#[derive(Default)]
struct Units {
    running: HashMap<String, Unit>,
    /// Units being stopped (and then their leases released), in the
    /// background: a slow stop never holds up the renewal of other leases.
    /// Awaited at shutdown.
    stopping: JoinSet<()>,
}

impl Units {
    /// Stops the unit under `name` in the background, then releases the
    /// lease if `release` is given (a hand-over: the next owner need not
    /// wait for expiry).
    fn stop(&mut self, name: &str, release: Option<(Store, Fence)>) {
        let unit = self.running.remove(name);
        let name = name.to_string();
        self.stopping.spawn(async move {
            if let Some(unit) = unit {
                stop_unit(&name, unit).await;
            }
            if let Some((store, fence)) = release
                && let Err(err) = store.release_lease(&fence).await
            {
                warn!(lease = %name, error = %err, "releasing the lease failed; it expires by itself");
            }
        });
    }
}

/// What runs under one held factory lease.
struct Unit {
    /// Stops the factory's drivers (their supervisors end with them) and
    /// its watchdog; cancelled when the lease is given up, lost, or runs
    /// out locally, and at shutdown.
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

pub struct Coordinator {
    pub store: Store,
    pub daemon: String,
    pub timings: Timings,
    /// SQLite: one daemon (the file is locked), every lease taken at once.
    pub single: bool,
    /// Every lease to spread: the factories', then the zones'.
    pub leases: Vec<String>,
    pub holdings: Arc<Holdings>,
    pub start_factory: StartFactory,
}

impl Coordinator {
    pub async fn run(self, cancel: CancellationToken) {
        let mut units = Units::default();
        // Rounds start every renew_interval, however long one took.
        let mut rounds = tokio::time::interval(self.timings.renew_interval);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = rounds.tick() => {}
            }
            self.tick(&mut units, &cancel).await;
            // Reap the stops that ended.
            while units.stopping.try_join_next().is_some() {}
        }
        // Stop driving first, then let the leases go and leave, so the
        // other daemons take over at once rather than after expiry.
        for (name, unit) in units.running.drain() {
            stop_unit(&name, unit).await;
        }
        while units.stopping.join_next().await.is_some() {}
        for held in self.holdings.held() {
            self.holdings.remove(&held.fence.lease);
            if let Err(err) = self.store.release_lease(&held.fence).await {
                warn!(lease = %held.fence.lease, error = %err, "releasing the lease failed; it expires by itself");
            }
        }
        if !self.single
            && let Err(err) = self.store.leave(&self.daemon).await
        {
            warn!(error = %err, "leaving the cluster failed; the heartbeat expires by itself");
        }
        debug!("coordinator stopped");
    }

    /// A database call bounded by the renewal interval, so a cut-off
    /// database never holds the coordinator past a round.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timings.renew_interval, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn tick(&self, units: &mut Units, cancel: &CancellationToken) {
        let lease_ms = self.timings.lease_ms();
        if !self.single
            && let Err(err) = self
                .bounded(self.store.heartbeat(&self.daemon, lease_ms))
                .await
        {
            warn!(error = %err, "heartbeat failed");
        }
        // Renew what is held, all at once (one slow row never delays the
        // others past their margin); what cannot be renewed is stopped.
        let mut renewals = Vec::new();
        for held in self.holdings.held() {
            if held.valid_until <= Instant::now() {
                // Run out here: its machines were stopped. Only a new take,
                // at a new epoch, starts them again.
                self.drop_lease(&held.fence.lease, units, false);
                continue;
            }
            renewals.push(async move {
                let sent = Instant::now();
                let result = self
                    .bounded(self.store.renew_lease(&held.fence, lease_ms))
                    .await;
                (held, sent, result)
            });
        }
        for (held, sent, result) in futures::future::join_all(renewals).await {
            let name = held.fence.lease.clone();
            match result {
                Ok(true) => self
                    .holdings
                    .set(held.fence, self.timings.valid_until(sent)),
                Ok(false) => {
                    warn!(lease = %name, epoch = held.fence.epoch, "lease lost; stopping what it covers");
                    self.drop_lease(&name, units, false);
                }
                Err(err) => {
                    if held.valid_until <= Instant::now() {
                        warn!(lease = %name, error = %err, "lease not renewed in time; stopped driving");
                        self.drop_lease(&name, units, false);
                    } else {
                        warn!(lease = %name, error = %err, "lease renewal failed; retrying");
                    }
                }
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        let live = if self.single {
            vec![self.daemon.clone()]
        } else {
            match self.bounded(self.store.live_daemons()).await {
                Ok(live) if live.contains(&self.daemon) => live,
                Ok(_) => return, // our own heartbeat is not in: do not take anything
                Err(err) => {
                    warn!(error = %err, "reading the live daemons failed");
                    return;
                }
            }
        };
        for (index, name) in self.leases.iter().enumerate() {
            let mine = live[index % live.len()] == self.daemon;
            let held = self.holdings.fence(name).is_some();
            if mine && !held {
                let sent = Instant::now();
                match self
                    .bounded(
                        self.store
                            .acquire_lease(name, &self.daemon, lease_ms, self.single),
                    )
                    .await
                {
                    Ok(Some(fence)) => {
                        info!(lease = %name, epoch = fence.epoch, "lease taken");
                        metrics::counter!("fabflow_leases_taken_total").increment(1);
                        // Whatever ran under an older epoch is stopping
                        // (it can neither commit nor command any more).
                        if units.running.contains_key(name) {
                            units.stop(name, None);
                        }
                        self.holdings
                            .set(fence.clone(), self.timings.valid_until(sent));
                        if let Some(factory) = name.strip_prefix("factory/") {
                            units
                                .running
                                .insert(name.clone(), self.start_unit(factory, fence));
                        }
                    }
                    Ok(None) => debug!(lease = %name, "lease still held by another daemon"),
                    Err(err) => warn!(lease = %name, error = %err, "taking the lease failed"),
                }
            } else if !mine && held {
                info!(lease = %name, "lease falls to another daemon; handing it over");
                self.drop_lease(name, units, true);
            }
        }
        // A unit whose lease is no longer valid here (its watchdog stopped
        // it) is cleaned up; the lease may be taken again, at a new epoch.
        let stale: Vec<String> = units
            .running
            .iter()
            .filter(|(name, unit)| self.holdings.fence(name).is_none() || unit.stop.is_cancelled())
            .map(|(name, _)| name)
            .cloned()
            .collect();
        for name in stale {
            self.drop_lease(&name, units, false);
        }
    }

    /// Forgets a lease at once (nothing here acts on it any more) and
    /// stops what runs under it in the background; with `release`, the
    /// lease is given up once that has stopped.
    fn drop_lease(&self, name: &str, units: &mut Units, release: bool) {
        let fence = self.holdings.remove(name);
        let release = match fence {
            Some(fence) if release => Some((self.store.clone(), fence)),
            _ => None,
        };
        units.stop(name, release);
    }

    fn start_unit(&self, factory: &str, fence: Fence) -> Unit {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        (self.start_factory)(factory, fence.clone(), stop.clone(), &mut tasks);
        // The watchdog: stops the factory's drivers when the lease runs out
        // locally, even if the coordinator is stuck on the database.
        let holdings = Arc::clone(&self.holdings);
        let watched = stop.clone();
        tasks.spawn(async move {
            while let Some(until) = holdings.valid_until(&fence.lease, fence.epoch) {
                if until <= Instant::now() {
                    warn!(lease = %fence.lease, epoch = fence.epoch, "lease ran out before it was renewed; stopping its machines");
                    metrics::counter!("fabflow_leases_expired_total").increment(1);
                    break;
                }
                tokio::select! {
                    _ = watched.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
            watched.cancel();
        });
        Unit { stop, tasks }
    }
}

/// Stops a unit: its drivers finish the request in flight, its supervisors
/// end with them. A unit that does not stop within 10 s is aborted (its
/// supervisors no longer send anything: their lease check fails).
async fn stop_unit(name: &str, mut unit: Unit) {
    unit.stop.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while unit.tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(lease = %name, "tasks under the lease did not stop in time; aborted");
        unit.tasks.shutdown().await;
    }
    info!(lease = %name, "stopped what the lease covers");
}
