//! The search's working state: one route per vehicle with cached forward
//! (earliest service start, load) and backward (latest service start, maximum
//! load) data, so that inserting a stop or a pickup-delivery pair is checked in
//! O(1) per position. Invariant: after `RouteState::rebuild` every route held
//! in a `Working` is feasible and its caches match its stops.

use super::instance::{Instance, LOAD_DIMS, Load};

/// Slack for time comparisons inside the search (smaller than the checker's).
pub(crate) const EPS: f64 = 1.0e-7;

/// Marks a node that is on no route.
pub(crate) const NO_ROUTE: usize = usize::MAX;

#[inline]
fn add(a: &Load, b: &Load) -> Load {
    let mut out = *a;
    for d in 0..LOAD_DIMS {
        out[d] += b[d];
    }
    out
}

#[inline]
fn fits(load: &Load, extra: &Load, capacity: &Load) -> bool {
    (0..LOAD_DIMS).all(|d| load[d] + extra[d] <= capacity[d])
}

#[inline]
fn max_load(a: &Load, b: &Load) -> Load {
    let mut out = *a;
    for d in 0..LOAD_DIMS {
        out[d] = out[d].max(b[d]);
    }
    out
}

/// One vehicle's route. Positions: 0 is the start, `1..=len` the stops,
/// `len + 1` the end.
#[derive(Debug, Default)]
pub(crate) struct RouteState {
    pub vehicle: usize,
    pub nodes: Vec<usize>,
    pub loc: Vec<usize>,
    pub service: Vec<f64>,
    pub open: Vec<f64>,
    pub close: Vec<f64>,
    /// Load change at each position (zero at the ends).
    pub delta: Vec<Load>,
    /// Earliest service start at each position.
    pub early: Vec<f64>,
    /// Latest service start at each position that keeps the rest feasible.
    pub late: Vec<f64>,
    /// Load on board when leaving each position.
    pub load: Vec<Load>,
    /// Largest load over positions `0..=p`.
    pub pre_max: Vec<Load>,
    /// Largest load over positions `p..=len+1`.
    pub suf_max: Vec<Load>,
    /// Cost of the arc leaving each position (0 at the end).
    pub arc: Vec<f64>,
    /// Load on board at the start: the deliveries' amounts.
    pub start_total: Load,
    /// Sum of arc costs (no fixed cost).
    pub cost: f64,
}

impl Clone for RouteState {
    fn clone(&self) -> Self {
        let mut out = RouteState::default();
        out.clone_from(self);
        out
    }

    fn clone_from(&mut self, source: &Self) {
        self.vehicle = source.vehicle;
        self.nodes.clone_from(&source.nodes);
        self.loc.clone_from(&source.loc);
        self.service.clone_from(&source.service);
        self.open.clone_from(&source.open);
        self.close.clone_from(&source.close);
        self.delta.clone_from(&source.delta);
        self.early.clone_from(&source.early);
        self.late.clone_from(&source.late);
        self.load.clone_from(&source.load);
        self.pre_max.clone_from(&source.pre_max);
        self.suf_max.clone_from(&source.suf_max);
        self.arc.clone_from(&source.arc);
        self.start_total = source.start_total;
        self.cost = source.cost;
    }
}

/// The best place found for a request in one route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Insertion {
    pub route: usize,
    /// Insert the (first) stop after this position.
    pub after: usize,
    /// For pairs: insert the delivery after this position of the original
    /// route (`== after` means right behind the pickup).
    pub after_second: usize,
    pub delta: f64,
}

impl RouteState {
    pub fn new(instance: &Instance, vehicle: usize) -> RouteState {
        let mut route = RouteState {
            vehicle,
            ..RouteState::default()
        };
        route.rebuild(instance);
        route
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Recomputes every cache from `nodes`. Returns false if the route is
    /// infeasible (a window missed or a capacity exceeded).
    pub fn rebuild(&mut self, instance: &Instance) -> bool {
        let vehicle = &instance.vehicles[self.vehicle];
        self.loc.clear();
        self.service.clear();
        self.open.clear();
        self.close.clear();
        self.delta.clear();
        self.loc.push(vehicle.start_location);
        self.service.push(0.0);
        self.open.push(vehicle.shift.start);
        self.close.push(vehicle.shift.end);
        self.delta.push([0; LOAD_DIMS]);
        for &node in &self.nodes {
            let n = &instance.nodes[node];
            self.loc.push(n.location);
            self.service.push(n.service);
            self.open.push(n.early);
            self.close.push(n.late);
            self.delta.push(n.delta);
        }
        self.loc.push(instance.end_loc(self.vehicle));
        self.service.push(0.0);
        self.open.push(vehicle.shift.start);
        self.close.push(vehicle.shift.end);
        self.delta.push([0; LOAD_DIMS]);
        let size = self.nodes.len() + 2;
        self.early.resize(size, 0.0);
        self.late.resize(size, 0.0);
        self.load.resize(size, [0; LOAD_DIMS]);
        self.pre_max.resize(size, [0; LOAD_DIMS]);
        self.suf_max.resize(size, [0; LOAD_DIMS]);
        self.arc.resize(size, 0.0);
        self.start_total = [0; LOAD_DIMS];
        for &node in &self.nodes {
            self.start_total = add(&self.start_total, &instance.nodes[node].start_load);
        }
        self.recompute(instance, 1, size - 1);
        let capacity = &instance.vehicles[self.vehicle].capacity;
        (1..size).all(|p| self.early[p] <= self.close[p] + EPS)
            && fits(&self.pre_max[size - 1], &[0; LOAD_DIMS], capacity)
    }

    /// Puts `node` at `index` of `nodes` (position `index + 1`) without
    /// refreshing the caches; call `recompute` afterwards.
    fn insert_stop(&mut self, instance: &Instance, index: usize, node: usize) {
        let n = &instance.nodes[node];
        let position = index + 1;
        self.nodes.insert(index, node);
        self.loc.insert(position, n.location);
        self.service.insert(position, n.service);
        self.open.insert(position, n.early);
        self.close.insert(position, n.late);
        self.delta.insert(position, n.delta);
        self.early.insert(position, 0.0);
        self.late.insert(position, 0.0);
        self.load.push([0; LOAD_DIMS]);
        self.pre_max.push([0; LOAD_DIMS]);
        self.suf_max.push([0; LOAD_DIMS]);
        self.arc.insert(position, 0.0);
        self.start_total = add(&self.start_total, &n.start_load);
    }

    /// Refreshes the caches after stops were put at positions
    /// `first..=last_changed` (earlier positions keep their earliest times,
    /// later ones their latest times, and both keep their old values at the
    /// shifted indices, so the passes stop as soon as nothing changes).
    /// Loads and cost are recomputed whole.
    fn recompute(&mut self, instance: &Instance, first: usize, last_changed: usize) {
        let size = self.loc.len();
        let last = size - 1;
        if first <= 1 {
            self.early[0] = self.open[0];
        }
        for p in first.max(1)..size {
            let arrival = self.early[p - 1]
                + self.service[p - 1]
                + instance.time_between(self.loc[p - 1], self.loc[p]);
            let early = arrival.max(self.open[p]);
            if p > last_changed && early == self.early[p] {
                break;
            }
            self.early[p] = early;
        }
        if last_changed >= last {
            self.late[last] = self.close[last];
        }
        for p in (0..=last_changed.min(last - 1)).rev() {
            let travel = instance.time_between(self.loc[p], self.loc[p + 1]);
            let late = self.close[p].min(self.late[p + 1] - travel - self.service[p]);
            if p < first && late == self.late[p] {
                break;
            }
            self.late[p] = late;
        }
        for p in first.saturating_sub(1)..=last_changed.min(last - 1) {
            self.arc[p] = instance.cost_between(self.loc[p], self.loc[p + 1]);
        }
        self.arc[last] = 0.0;
        self.cost = self.arc.iter().sum();
        self.load[0] = self.start_total;
        self.pre_max[0] = self.start_total;
        for p in 1..size {
            self.load[p] = add(&self.load[p - 1], &self.delta[p]);
            self.pre_max[p] = max_load(&self.pre_max[p - 1], &self.load[p]);
        }
        self.suf_max[last] = self.load[last];
        for p in (0..last).rev() {
            self.suf_max[p] = max_load(&self.suf_max[p + 1], &self.load[p]);
        }
    }

    /// Best insertion of a single stop `node` (no partner) costing less than
    /// `limit`, or `None`. `skip` is asked for each would-be best position;
    /// true skips it (SISR's blinks).
    pub fn best_single(
        &self,
        instance: &Instance,
        node: usize,
        route_index: usize,
        limit: f64,
        skip: &mut dyn FnMut() -> bool,
    ) -> Option<Insertion> {
        let n = &instance.nodes[node];
        if !instance.allows(n.request, self.vehicle) {
            return None;
        }
        let capacity = &instance.vehicles[self.vehicle].capacity;
        let after_delta = add(&n.start_load, &n.delta);
        let m = self.nodes.len();
        let mut best: Option<Insertion> = None;
        let mut bound = limit;
        let (cost_from, cost_to, time_from, time_to) = instance.rows(n.location);
        for p in 0..=m {
            if self.early[p] > n.late + EPS {
                break;
            }
            if !fits(&self.pre_max[p], &n.start_load, capacity) {
                break;
            }
            let (a, b) = (self.loc[p], self.loc[p + 1]);
            let delta = cost_to[a] + cost_from[b] - self.arc[p];
            if delta >= bound {
                continue;
            }
            if !fits(&self.load[p], &after_delta, capacity)
                || !fits(&self.suf_max[p + 1], &after_delta, capacity)
            {
                continue;
            }
            let start = (self.early[p] + self.service[p] + time_to[a]).max(n.early);
            if start > n.late + EPS {
                continue;
            }
            let next = start + n.service + time_from[b];
            if next > self.late[p + 1] + EPS {
                continue;
            }
            if !skip() {
                bound = delta;
                best = Some(Insertion {
                    route: route_index,
                    after: p,
                    after_second: p,
                    delta,
                });
            }
        }
        best
    }

    /// Best insertion of a pickup `first` and delivery `second` (same load
    /// carried between them), or `None`.
    pub fn best_pair(
        &self,
        instance: &Instance,
        first: usize,
        second: usize,
        route_index: usize,
        limit: f64,
        skip: &mut dyn FnMut() -> bool,
    ) -> Option<Insertion> {
        let pickup = &instance.nodes[first];
        let delivery = &instance.nodes[second];
        if !instance.allows(pickup.request, self.vehicle) {
            return None;
        }
        let capacity = &instance.vehicles[self.vehicle].capacity;
        let carried = pickup.delta;
        let m = self.nodes.len();
        let mut best: Option<Insertion> = None;
        let mut bound = limit;
        let (pl, dl) = (pickup.location, delivery.location);
        let (pick_from, pick_to, pick_time_from, pick_time_to) = instance.rows(pl);
        let (drop_from, drop_to, drop_time_from, drop_time_to) = instance.rows(dl);
        let prune = instance.detours_non_negative;
        for i in 0..=m {
            if self.early[i] > pickup.late + EPS {
                break;
            }
            if !fits(&self.load[i], &carried, capacity) {
                continue;
            }
            let (a, b) = (self.loc[i], self.loc[i + 1]);
            // The pickup's own detour; with no negative detours the delivery
            // can only add to it.
            let base = pick_to[a] + pick_from[b] - self.arc[i];
            if prune && base >= bound {
                continue;
            }
            let pickup_start =
                (self.early[i] + self.service[i] + pick_time_to[a]).max(pickup.early);
            if pickup_start > pickup.late + EPS {
                continue;
            }
            let leave_pickup = pickup_start + pickup.service;
            // Delivery right behind the pickup.
            let delta = pick_to[a] + pick_from[dl] + drop_from[b] - self.arc[i];
            let delivery_start = (leave_pickup + pick_time_from[dl]).max(delivery.early);
            if delta < bound && delivery_start <= delivery.late + EPS {
                let next = delivery_start + delivery.service + drop_time_from[b];
                if next <= self.late[i + 1] + EPS && !skip() {
                    bound = delta;
                    best = Some(Insertion {
                        route: route_index,
                        after: i,
                        after_second: i,
                        delta,
                    });
                }
            }
            // Delivery further down: walk the shifted schedule.
            let mut prev_loc = pl;
            let mut prev_leave = leave_pickup;
            for j in (i + 1)..=m {
                let travel = if j == i + 1 {
                    pick_time_from[self.loc[j]]
                } else {
                    instance.time_between(prev_loc, self.loc[j])
                };
                let start = (prev_leave + travel).max(self.open[j]);
                if start > self.close[j] + EPS || start > delivery.late + EPS {
                    break;
                }
                if !fits(&self.load[j], &carried, capacity) {
                    break;
                }
                if prune && base >= bound {
                    break;
                }
                let leave = start + self.service[j];
                let (c, d) = (self.loc[j], self.loc[j + 1]);
                let delta = base + drop_to[c] + drop_from[d] - self.arc[j];
                if delta < bound {
                    let delivery_start = (leave + drop_time_to[c]).max(delivery.early);
                    let next = delivery_start + delivery.service + drop_time_from[d];
                    if delivery_start <= delivery.late + EPS
                        && next <= self.late[j + 1] + EPS
                        && !skip()
                    {
                        bound = delta;
                        best = Some(Insertion {
                            route: route_index,
                            after: i,
                            after_second: j,
                            delta,
                        });
                    }
                }
                prev_loc = c;
                prev_leave = leave;
            }
        }
        best
    }

    /// Applies an insertion found by `best_single` or `best_pair`.
    pub fn apply(&mut self, instance: &Instance, insertion: &Insertion, stops: &[usize]) {
        // "After position p" is index p in `nodes` (positions count the start).
        match *stops {
            [single] => {
                self.insert_stop(instance, insertion.after, single);
                let position = insertion.after + 1;
                self.recompute(instance, position, position);
            }
            [first, second] => {
                self.insert_stop(instance, insertion.after_second, second);
                self.insert_stop(instance, insertion.after, first);
                let (first_position, second_position) =
                    (insertion.after + 1, insertion.after_second + 2);
                self.recompute(instance, first_position, second_position);
            }
            _ => {}
        }
    }
}

/// A whole solution under construction: one route per vehicle, where each
/// node is, and the requests on no route.
#[derive(Debug, Default)]
pub(crate) struct Working {
    pub routes: Vec<RouteState>,
    /// Route (vehicle) of each node, or `NO_ROUTE`.
    pub node_route: Vec<usize>,
    pub unassigned: Vec<usize>,
    /// Routes changed since the caller last cleared this (for `sync_from`).
    pub touched: Vec<usize>,
}

impl Clone for Working {
    fn clone(&self) -> Self {
        let mut out = Working::default();
        out.clone_from(self);
        out
    }

    fn clone_from(&mut self, source: &Self) {
        self.routes.truncate(source.routes.len());
        for (mine, theirs) in self.routes.iter_mut().zip(&source.routes) {
            mine.clone_from(theirs);
        }
        for theirs in &source.routes[self.routes.len()..] {
            self.routes.push(theirs.clone());
        }
        self.node_route.clone_from(&source.node_route);
        self.unassigned.clone_from(&source.unassigned);
        self.touched.clear();
    }
}

impl Working {
    /// Every vehicle with an empty route, every request unassigned.
    pub fn empty(instance: &Instance) -> Working {
        Working {
            routes: (0..instance.vehicles.len())
                .map(|vehicle| RouteState::new(instance, vehicle))
                .collect(),
            node_route: vec![NO_ROUTE; instance.nodes.len()],
            unassigned: (0..instance.requests.len()).collect(),
            touched: Vec::new(),
        }
    }

    /// Makes `self` equal to `source`, given that they differ at most in
    /// `routes` (and in which requests are where).
    pub fn sync_from(&mut self, source: &Working, routes: &[usize]) {
        for &route in routes {
            self.routes[route].clone_from(&source.routes[route]);
        }
        self.node_route.clone_from(&source.node_route);
        self.unassigned.clone_from(&source.unassigned);
    }

    fn touch(&mut self, route: usize) {
        if !self.touched.contains(&route) {
            self.touched.push(route);
        }
    }

    /// Arc costs plus fixed costs of used vehicles.
    pub fn cost(&self, instance: &Instance) -> f64 {
        self.routes
            .iter()
            .filter(|route| !route.is_empty())
            .map(|route| route.cost + instance.vehicles[route.vehicle].fixed_cost)
            .sum()
    }

    /// Number of non-empty routes.
    pub fn used(&self) -> usize {
        self.routes.iter().filter(|route| !route.is_empty()).count()
    }

    /// Inserts request `request` as `insertion` says.
    pub fn insert(&mut self, instance: &Instance, request: usize, insertion: &Insertion) {
        let stops = &instance.request_nodes[request];
        self.routes[insertion.route].apply(instance, insertion, stops);
        self.touch(insertion.route);
        for &node in stops {
            self.node_route[node] = insertion.route;
        }
    }

    /// Takes `nodes` (whole requests) off their routes and marks their
    /// requests unassigned.
    pub fn remove_requests(&mut self, instance: &Instance, requests: &[usize]) {
        let mut touched: Vec<usize> = Vec::new();
        for &request in requests {
            for &node in &instance.request_nodes[request] {
                let route = self.node_route[node];
                if route != NO_ROUTE {
                    if !touched.contains(&route) {
                        touched.push(route);
                    }
                    self.node_route[node] = NO_ROUTE;
                }
            }
            self.unassigned.push(request);
        }
        for route in touched {
            self.touch(route);
            let node_route = &self.node_route;
            self.routes[route]
                .nodes
                .retain(|&node| node_route[node] != NO_ROUTE);
            self.routes[route].rebuild(instance);
        }
    }
}
