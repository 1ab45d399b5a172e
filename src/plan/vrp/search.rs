//! The improvement search: SISR (Christiaens and Vanden Berghe, 2020, "Slack
//! induction by string removals"), a ruin-and-recreate scheme with simulated
//! annealing acceptance, plus its fleet-minimisation phase for the
//! vehicles-first objective. Invariants: the search reads no clock (the caller
//! passes a progress callback), every solution it holds is feasible, and the
//! result depends only on the instance, the options and the seed, except for
//! when the callback says to stop.

use super::construct::{InsertRules, recreate, regret_construct};
use super::instance::{Instance, RequestKind};
use super::rng::Rng;
use super::route::{NO_ROUTE, Working};
use super::solution::{RoutePlan, Solution, Visit};

/// What to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Arc costs plus vehicles' fixed costs, serving as many requests as possible.
    Distance,
    /// Fewest vehicles first, then arc costs (couriers cost more than kilometres).
    VehiclesThenDistance,
}

/// Tuning knobs of the search; the defaults are what the benchmarks use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Average number of stops removed per ruin (SISR's c̄).
    pub average_removed: f64,
    /// Longest string removed from one route (SISR's L_max).
    pub max_string: f64,
    /// Probability of a split-string removal instead of a plain string.
    pub split_rate: f64,
    /// Probability of skipping a candidate insertion position.
    pub blink_rate: f64,
    /// Start temperature, as a fraction of the mean arc cost of the first solution.
    pub start_temperature: f64,
    /// End temperature, same unit.
    pub end_temperature: f64,
    /// Share of the budget the vehicles-first objective may spend on removing routes.
    pub fleet_share: f64,
    /// Fleet minimisation also stops when this share of the budget passes
    /// without removing a route.
    pub fleet_patience: f64,
    /// Vehicles-first only: after fleet minimisation, the distance search
    /// never opens a route and prices a request left out at this many mean
    /// arc costs, so it can pass through partial solutions. 0 keeps every
    /// candidate complete.
    pub unassigned_weight: f64,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            average_removed: 10.0,
            max_string: 10.0,
            split_rate: 0.5,
            blink_rate: 0.01,
            start_temperature: 10.0,
            end_temperature: 0.1,
            fleet_share: 0.6,
            fleet_patience: 0.2,
            unassigned_weight: 10.0,
        }
    }
}

/// How to run one solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    pub objective: Objective,
    pub seed: u64,
    /// Stop after this many ruin-and-recreate iterations (deterministic
    /// budget for tests); the progress callback can stop earlier.
    pub max_iterations: u64,
    pub params: SearchParams,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            objective: Objective::Distance,
            seed: 1,
            max_iterations: 1_000_000_000,
            params: SearchParams::default(),
        }
    }
}

/// Solves `instance`. `progress` is called once per iteration and returns the
/// share of the time budget already used (0.0 at the start, 1.0 or more means
/// stop); the caller reads the clock. The search also stops after
/// `options.max_iterations`. With a callback that ignores the clock (say
/// `|| 0.0`), the answer depends only on the instance and the options.
pub fn solve(
    instance: &Instance,
    options: &SolveOptions,
    progress: &mut dyn FnMut() -> f64,
) -> Solution {
    let mut search = Search::new(instance, options);
    let best = match options.objective {
        Objective::Distance => {
            let start = search.construct();
            search.anneal(start, 0.0, 1.0, progress)
        }
        Objective::VehiclesThenDistance => {
            let start = search.construct();
            let share = options.params.fleet_share.clamp(0.0, 1.0);
            let (fewer, reached) = search.minimise_fleet(start, share, progress);
            search.anneal(fewer, reached, 1.0, progress)
        }
    };
    search.to_solution(&best)
}

/// Key of a solution under the objective: smaller is better, compared in order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    unassigned: usize,
    vehicles: usize,
    cost: f64,
}

struct Search<'a> {
    instance: &'a Instance,
    options: SolveOptions,
    rng: Rng,
    /// Per node, other nodes by increasing cost from it.
    neighbours: Vec<Vec<usize>>,
    /// Per request, the cost from the first vehicle's start to its farthest stop.
    remoteness: Vec<f64>,
    /// Per request, total amount (all dimensions).
    size: Vec<i64>,
    /// Per request, width of its tightest window.
    window_width: Vec<f64>,
    tried_classes: Vec<usize>,
    removed_mark: Vec<bool>,
    route_mark: Vec<bool>,
    iterations: u64,
    stopped: bool,
    /// Vehicles no solution needs fewer of (capacity bound).
    fleet_bound: usize,
    /// Extra cost of opening a route under the objective.
    route_penalty: f64,
}

impl<'a> Search<'a> {
    fn new(instance: &'a Instance, options: &SolveOptions) -> Search<'a> {
        let node_count = instance.nodes.len();
        let neighbour_count = node_count.saturating_sub(1).min(200);
        let neighbours = (0..node_count)
            .map(|node| {
                let from = instance.nodes[node].location;
                let mut others: Vec<usize> = (0..node_count).filter(|&o| o != node).collect();
                others.sort_by(|&a, &b| {
                    let ca = instance.cost_between(from, instance.nodes[a].location);
                    let cb = instance.cost_between(from, instance.nodes[b].location);
                    ca.total_cmp(&cb).then(a.cmp(&b))
                });
                others.truncate(neighbour_count);
                others
            })
            .collect();
        let origin = instance.vehicles.first().map(|v| v.start_location);
        let remoteness = instance
            .request_nodes
            .iter()
            .map(|stops| {
                stops
                    .iter()
                    .map(|&node| {
                        origin.map_or(0.0, |o| {
                            instance.cost_between(o, instance.nodes[node].location)
                        })
                    })
                    .fold(0.0, f64::max)
            })
            .collect();
        let size = instance
            .requests
            .iter()
            .map(|request| request.amount.iter().sum())
            .collect();
        let window_width = instance
            .request_nodes
            .iter()
            .map(|stops| {
                stops
                    .iter()
                    .map(|&node| instance.nodes[node].late - instance.nodes[node].early)
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        // Capacity bound for deliveries and pickups (shipments need no depot load).
        let mut fleet_bound = usize::from(!instance.requests.is_empty());
        let largest = instance
            .vehicles
            .iter()
            .map(|vehicle| vehicle.capacity)
            .fold([0; super::instance::LOAD_DIMS], |a, b| {
                let mut out = a;
                for d in 0..out.len() {
                    out[d] = out[d].max(b[d]);
                }
                out
            });
        for (dimension, &most) in largest.iter().enumerate() {
            let mut delivered = 0i64;
            let mut picked = 0i64;
            for request in &instance.requests {
                match request.kind {
                    RequestKind::Delivery { .. } => delivered += request.amount[dimension],
                    RequestKind::Pickup { .. } => picked += request.amount[dimension],
                    RequestKind::Shipment { .. } => {}
                }
            }
            if most > 0 {
                let need = delivered.max(picked);
                let bound = (need + most - 1) / most;
                fleet_bound = fleet_bound.max(usize::try_from(bound).unwrap_or(usize::MAX));
            }
        }
        Search {
            instance,
            options: *options,
            rng: Rng::new(options.seed),
            neighbours,
            remoteness,
            size,
            window_width,
            tried_classes: Vec::new(),
            removed_mark: vec![false; instance.requests.len()],
            route_mark: vec![false; instance.vehicles.len()],
            iterations: 0,
            stopped: false,
            fleet_bound,
            route_penalty: Search::compute_route_penalty(instance, options.objective),
        }
    }

    fn route_penalty(&self) -> f64 {
        self.route_penalty
    }

    fn compute_route_penalty(instance: &Instance, objective: Objective) -> f64 {
        match objective {
            Objective::Distance => 0.0,
            // More than any route's arc costs: one vehicle outweighs any distance.
            Objective::VehiclesThenDistance => {
                let mut largest = 0.0f64;
                for &c in &instance.cost {
                    largest = largest.max(c);
                }
                2.0 * largest * (instance.nodes.len() as f64 + 2.0) + 1.0
            }
        }
    }

    fn score(&self, working: &Working) -> Score {
        Score {
            unassigned: working.unassigned.len(),
            vehicles: match self.options.objective {
                Objective::Distance => 0,
                Objective::VehiclesThenDistance => working.used(),
            },
            cost: working.cost(self.instance),
        }
    }

    fn construct(&mut self) -> Working {
        let rules = InsertRules {
            allow_new_routes: true,
            route_penalty: self.route_penalty(),
            blink_rate: 0.0,
        };
        regret_construct(self.instance, &rules)
    }

    /// Returns the share of the budget used, and counts the iteration.
    fn tick(&mut self, progress: &mut dyn FnMut() -> f64) -> f64 {
        let by_iterations = self.iterations as f64 / self.options.max_iterations.max(1) as f64;
        let share = progress().max(by_iterations);
        if share >= 1.0 || self.iterations >= self.options.max_iterations {
            self.stopped = true;
        }
        self.iterations += 1;
        share
    }

    /// SISR's ruin: removes strings of consecutive stops from routes near a
    /// random seed stop (whole requests: a removed stop takes its partner).
    fn ruin(&mut self, working: &mut Working) {
        let instance = self.instance;
        let params = self.options.params;
        let assigned_nodes = instance.nodes.len()
            - working
                .unassigned
                .iter()
                .map(|&r| instance.request_nodes[r].len())
                .sum::<usize>();
        let used = working.used();
        if used == 0 || assigned_nodes == 0 {
            return;
        }
        let average_len = assigned_nodes as f64 / used as f64;
        let max_len = params.max_string.min(average_len).max(1.0);
        let max_strings = (4.0 * params.average_removed / (1.0 + max_len) - 1.0).max(1.0);
        let strings = (1.0 + self.rng.unit() * max_strings).floor() as usize;
        let seed = self.rng.below(instance.nodes.len());
        let mut removed: Vec<usize> = Vec::new();
        self.route_mark.iter_mut().for_each(|mark| *mark = false);
        let mut ruined = 0;
        let candidates = std::iter::once(seed).chain(self.neighbours[seed].iter().copied());
        let candidates: Vec<usize> = candidates.collect();
        for node in candidates {
            if ruined >= strings {
                break;
            }
            let route_index = working.node_route[node];
            if route_index == NO_ROUTE || self.route_mark[route_index] {
                continue;
            }
            let request = instance.nodes[node].request;
            if self.removed_mark[request] {
                continue;
            }
            self.route_mark[route_index] = true;
            ruined += 1;
            let route = &working.routes[route_index];
            let len = route.len();
            let Some(position) = route.nodes.iter().position(|&n| n == node) else {
                continue;
            };
            let string_max = (len as f64).min(max_len);
            let string = ((1.0 + self.rng.unit() * string_max).floor() as usize).clamp(1, len);
            if self.rng.chance(params.split_rate) && string < len {
                // Split string: a string of `string + kept` stops, of which a
                // run of `kept` in the middle stays.
                let mut kept = 1;
                while string + kept < len && self.rng.chance(0.5) {
                    kept += 1;
                }
                let total = string + kept;
                let first = self.string_start(position, total, len);
                let keep_from = first + 1 + self.rng.below(string.max(1));
                for index in first..first + total {
                    if index >= keep_from && index < keep_from + kept {
                        continue;
                    }
                    let request = instance.nodes[route.nodes[index]].request;
                    if !self.removed_mark[request] {
                        self.removed_mark[request] = true;
                        removed.push(request);
                    }
                }
            } else {
                let first = self.string_start(position, string, len);
                for index in first..first + string {
                    let request = instance.nodes[route.nodes[index]].request;
                    if !self.removed_mark[request] {
                        self.removed_mark[request] = true;
                        removed.push(request);
                    }
                }
            }
        }
        for &request in &removed {
            self.removed_mark[request] = false;
        }
        working.remove_requests(instance, &removed);
    }

    /// A random start for a window of `length` stops that covers `position`
    /// in a route of `len` stops.
    fn string_start(&mut self, position: usize, length: usize, len: usize) -> usize {
        let lowest = (position + 1).saturating_sub(length);
        let highest = position.min(len - length);
        lowest + self.rng.below(highest - lowest + 1)
    }

    /// Orders the unassigned requests for recreate, as SISR does: random, by
    /// size, far first, close first; plus tight windows first.
    fn sort_unassigned(&mut self, requests: &mut [usize], absences: Option<&[u64]>) {
        self.rng.shuffle(requests);
        let choice = self.rng.below(13);
        match choice {
            0..=3 => {}
            4..=7 => requests.sort_by(|&a, &b| self.size[b].cmp(&self.size[a])),
            8..=9 => requests.sort_by(|&a, &b| self.remoteness[b].total_cmp(&self.remoteness[a])),
            10 => requests.sort_by(|&a, &b| self.remoteness[a].total_cmp(&self.remoteness[b])),
            _ => requests.sort_by(|&a, &b| self.window_width[a].total_cmp(&self.window_width[b])),
        }
        if let Some(absences) = absences
            && self.rng.chance(0.5)
        {
            requests.sort_by(|&a, &b| absences[b].cmp(&absences[a]));
        }
    }

    fn recreate(
        &mut self,
        working: &mut Working,
        allow_new_routes: bool,
        absences: Option<&[u64]>,
    ) {
        let mut order = std::mem::take(&mut working.unassigned);
        self.sort_unassigned(&mut order, absences);
        let rules = InsertRules {
            allow_new_routes,
            route_penalty: self.route_penalty(),
            blink_rate: self.options.params.blink_rate,
        };
        recreate(
            self.instance,
            working,
            &order,
            &rules,
            &mut self.rng,
            &mut self.tried_classes,
        );
        working.unassigned.sort_unstable();
    }

    /// Ruin-and-recreate with simulated annealing from `start`, over the
    /// budget share `from..to`. Returns the best solution seen.
    fn anneal(
        &mut self,
        start: Working,
        from: f64,
        to: f64,
        progress: &mut dyn FnMut() -> f64,
    ) -> Working {
        let instance = self.instance;
        let params = self.options.params;
        let arcs = (instance.nodes.len() + start.used()).max(1) as f64;
        let mean_arc = (start.routes.iter().map(|r| r.cost).sum::<f64>() / arcs).max(1e-9);
        let hot = params.start_temperature * mean_arc;
        let cold = (params.end_temperature * mean_arc).min(hot).max(1e-12);
        let mut best = start.clone();
        let mut best_score = self.score(&best);
        let mut current = start;
        let mut current_score = best_score;
        let mut candidate = current.clone();
        let span = (to - from).max(1e-9);
        let soft = self.options.objective == Objective::VehiclesThenDistance
            && params.unassigned_weight > 0.0;
        let weight = params.unassigned_weight * mean_arc;
        let value = |score: &Score| score.cost + weight * score.unassigned as f64;
        while !self.stopped {
            let share = self.tick(progress);
            if self.stopped {
                break;
            }
            let phase = ((share - from) / span).clamp(0.0, 1.0);
            let temperature = hot * (cold / hot).powf(phase);
            candidate.touched.clear();
            self.ruin(&mut candidate);
            self.recreate(&mut candidate, !soft, None);
            let touched = std::mem::take(&mut candidate.touched);
            let score = self.score(&candidate);
            let accept = if soft {
                // Routes are never opened here; one that empties is only
                // given up when nothing is left out (else the search could
                // strand requests with too few routes).
                match score.vehicles.cmp(&current_score.vehicles) {
                    std::cmp::Ordering::Less => score.unassigned == 0,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        let threshold =
                            value(&current_score) - temperature * (1.0 - self.rng.unit()).ln();
                        value(&score) < threshold
                    }
                }
            } else {
                match (
                    score.unassigned.cmp(&current_score.unassigned),
                    score.vehicles.cmp(&current_score.vehicles),
                ) {
                    (std::cmp::Ordering::Less, _) => true,
                    (std::cmp::Ordering::Greater, _) => false,
                    (_, std::cmp::Ordering::Less) => true,
                    (_, std::cmp::Ordering::Greater) => false,
                    _ => {
                        let threshold =
                            current_score.cost - temperature * (1.0 - self.rng.unit()).ln();
                        score.cost < threshold
                    }
                }
            };
            if accept {
                current.sync_from(&candidate, &touched);
                current_score = score;
                if better(&current_score, &best_score) {
                    best.clone_from(&current);
                    best_score = current_score;
                }
            } else {
                candidate.sync_from(&current, &touched);
            }
            candidate.touched = touched;
        }
        best
    }

    /// SISR's fleet minimisation: drops the smallest route, then ruins and
    /// recreates without opening routes, accepting a candidate with fewer
    /// unassigned requests or a smaller sum of their absence counts (how
    /// often each was left out), until the budget share `until` is used.
    fn minimise_fleet(
        &mut self,
        start: Working,
        until: f64,
        progress: &mut dyn FnMut() -> f64,
    ) -> (Working, f64) {
        let instance = self.instance;
        let target = start.unassigned.len();
        let mut best = start;
        let mut absences = vec![0u64; instance.requests.len()];
        let mut current = best.clone();
        let mut candidate = best.clone();
        let mut need_drop = true;
        let mut share = 0.0;
        let mut last_success = 0.0;
        let patience = self.options.params.fleet_patience;
        loop {
            if need_drop {
                last_success = share;
                if current.unassigned.len() <= target && current.used() < best.used() {
                    best.clone_from(&current);
                }
                if best.used() <= self.fleet_bound {
                    break;
                }
                current.clone_from(&best);
                let smallest = current
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(_, route)| !route.is_empty())
                    .min_by_key(|(index, route)| (route.len(), *index))
                    .map(|(index, _)| index);
                let Some(smallest) = smallest else { break };
                let requests: Vec<usize> = current.routes[smallest]
                    .nodes
                    .iter()
                    .map(|&node| instance.nodes[node].request)
                    .filter({
                        let mut seen = Vec::new();
                        move |r| {
                            if seen.contains(r) {
                                false
                            } else {
                                seen.push(*r);
                                true
                            }
                        }
                    })
                    .collect();
                current.remove_requests(instance, &requests);
                current.unassigned.sort_unstable();
                candidate.clone_from(&current);
                need_drop = false;
            }
            share = self.tick(progress);
            if self.stopped || share >= until || share - last_success > patience {
                break;
            }
            candidate.touched.clear();
            self.ruin(&mut candidate);
            self.recreate(&mut candidate, false, Some(&absences));
            let touched = std::mem::take(&mut candidate.touched);
            let sum = |w: &Working| w.unassigned.iter().map(|&r| absences[r]).sum::<u64>();
            if candidate.unassigned.len() < current.unassigned.len()
                || sum(&candidate) < sum(&current)
            {
                current.sync_from(&candidate, &touched);
            } else {
                candidate.sync_from(&current, &touched);
            }
            candidate.touched = touched;
            for &request in &current.unassigned {
                absences[request] += 1;
            }
            if current.unassigned.len() <= target {
                need_drop = true;
            }
        }
        // The budget may run out right after a success.
        if current.unassigned.len() <= target && current.used() < best.used() {
            best = current;
        }
        self.stopped = false;
        (best, share.min(until))
    }

    fn to_solution(&self, working: &Working) -> Solution {
        let instance = self.instance;
        let mut routes = Vec::new();
        let mut distance = 0.0;
        for route in &working.routes {
            if route.is_empty() {
                continue;
            }
            for pair in route.loc.windows(2) {
                if pair[0] < instance.matrix.size() && pair[1] < instance.matrix.size() {
                    distance += instance.matrix.distance(pair[0], pair[1]);
                }
            }
            routes.push(RoutePlan {
                vehicle: route.vehicle,
                visits: route
                    .nodes
                    .iter()
                    .map(|&node| Visit {
                        request: instance.nodes[node].request,
                        role: instance.nodes[node].role,
                    })
                    .collect(),
            });
        }
        let mut unserved = working.unassigned.clone();
        unserved.sort_unstable();
        Solution {
            vehicles: routes.len(),
            routes,
            unserved,
            cost: working.cost(instance),
            distance,
            iterations: self.iterations,
        }
    }
}

fn better(a: &Score, b: &Score) -> bool {
    (a.unassigned, a.vehicles) < (b.unassigned, b.vehicles)
        || ((a.unassigned, a.vehicles) == (b.unassigned, b.vehicles) && a.cost < b.cost)
}
