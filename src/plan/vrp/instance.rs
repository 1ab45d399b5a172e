//! The routing model: a travel matrix, requests (deliveries, pickups and paired
//! shipments) and vehicles. Invariants: an `Instance` is validated on
//! construction (every location index is inside the matrix, every number is
//! finite, every window is ordered), so the solver never has to check again.

use std::fmt;

/// Number of load dimensions (parcels and volume). A caller that has only one
/// leaves the other at zero.
pub const LOAD_DIMS: usize = 2;

/// An amount per load dimension: `[parcels, volume]`, in whole units the caller
/// chooses (volume in litres or cm³, scaled to an integer).
pub type Load = [i64; LOAD_DIMS];

/// Travel time or distance that stands for "no road": large enough to break any
/// time window, finite so that sums stay numbers.
pub const UNREACHABLE: f64 = 1.0e9;

/// A dense travel matrix between locations: distance (what the literature and
/// the default cost count) and duration (what time windows count).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    size: usize,
    distance: Vec<f64>,
    duration: Vec<f64>,
}

impl Matrix {
    /// Euclidean distances between points, duration equal to distance (the
    /// literature's convention: unit speed, unrounded double precision).
    pub fn euclidean(points: &[(f64, f64)]) -> Matrix {
        let size = points.len();
        let mut distance = vec![0.0; size * size];
        for (from, a) in points.iter().enumerate() {
            for (to, b) in points.iter().enumerate() {
                let (dx, dy) = (a.0 - b.0, a.1 - b.1);
                distance[from * size + to] = (dx * dx + dy * dy).sqrt();
            }
        }
        let duration = distance.clone();
        Matrix {
            size,
            distance,
            duration,
        }
    }

    /// Great-circle distances in metres between `(lat, lon)` points in degrees,
    /// times `detour_factor` (roads are longer than the crow flies), and
    /// durations in seconds at `speed_m_per_s`.
    pub fn haversine(
        points: &[(f64, f64)],
        speed_m_per_s: f64,
        detour_factor: f64,
    ) -> Result<Matrix, ModelError> {
        if !(speed_m_per_s.is_finite() && speed_m_per_s > 0.0) {
            return Err(ModelError::new(format!(
                "speed_m_per_s must be positive, got {speed_m_per_s}"
            )));
        }
        if !(detour_factor.is_finite() && detour_factor >= 1.0) {
            return Err(ModelError::new(format!(
                "detour_factor must be at least 1, got {detour_factor}"
            )));
        }
        for (index, &(lat, lon)) in points.iter().enumerate() {
            if !(lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0) {
                return Err(ModelError::new(format!(
                    "points[{index}]: not a latitude/longitude: ({lat}, {lon})"
                )));
            }
        }
        let size = points.len();
        let mut distance = vec![0.0; size * size];
        let mut duration = vec![0.0; size * size];
        for (from, &a) in points.iter().enumerate() {
            for (to, &b) in points.iter().enumerate() {
                let metres = haversine_metres(a, b) * detour_factor;
                distance[from * size + to] = metres;
                duration[from * size + to] = metres / speed_m_per_s;
            }
        }
        Ok(Matrix {
            size,
            distance,
            duration,
        })
    }

    /// A matrix from caller-given rows (for example an OSRM `table` answer).
    /// `distance` may be `None`, in which case durations are used as distances.
    pub fn from_rows(
        duration: &[Vec<f64>],
        distance: Option<&[Vec<f64>]>,
    ) -> Result<Matrix, ModelError> {
        let size = duration.len();
        let flat = |rows: &[Vec<f64>], what: &str| -> Result<Vec<f64>, ModelError> {
            if rows.len() != size {
                return Err(ModelError::new(format!(
                    "{what}: {} rows, expected {size}",
                    rows.len()
                )));
            }
            let mut out = Vec::with_capacity(size * size);
            for (row_index, row) in rows.iter().enumerate() {
                if row.len() != size {
                    return Err(ModelError::new(format!(
                        "{what}[{row_index}]: {} columns, expected {size}",
                        row.len()
                    )));
                }
                for (column, &value) in row.iter().enumerate() {
                    if !(value.is_finite() && value >= 0.0) {
                        return Err(ModelError::new(format!(
                            "{what}[{row_index}][{column}]: must be a finite number >= 0, got {value}"
                        )));
                    }
                    out.push(value);
                }
            }
            Ok(out)
        };
        let duration = flat(duration, "durations")?;
        let distance = match distance {
            Some(rows) => flat(rows, "distances")?,
            None => duration.clone(),
        };
        Ok(Matrix {
            size,
            distance,
            duration,
        })
    }

    /// Number of locations.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Distance from `from` to `to`. Panics if an index is out of range (the
    /// solver only asks for validated indices).
    pub fn distance(&self, from: usize, to: usize) -> f64 {
        self.distance[from * self.size + to]
    }

    /// Travel time from `from` to `to`.
    pub fn duration(&self, from: usize, to: usize) -> f64 {
        self.duration[from * self.size + to]
    }
}

/// Haversine distance in metres between two `(lat, lon)` points in degrees.
pub fn haversine_metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A time window `[start, end]`, in the matrix's time unit. At a stop it bounds
/// the start of service; for a vehicle it bounds leaving the start location and
/// arriving at the end location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeWindow {
    pub start: f64,
    pub end: f64,
}

impl TimeWindow {
    /// A window open from `start` to `end`.
    pub fn new(start: f64, end: f64) -> TimeWindow {
        TimeWindow { start, end }
    }
}

/// A place where the vehicle stops to load or unload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stop {
    /// Index into the matrix.
    pub location: usize,
    /// Time spent at the stop, in the matrix's time unit.
    pub service: f64,
    pub window: TimeWindow,
}

/// What a request asks a vehicle to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestKind {
    /// Loaded at the vehicle's start, dropped at `stop` (the VRPTW customer).
    Delivery { stop: Stop },
    /// Picked up at `stop`, carried to the vehicle's end.
    Pickup { stop: Stop },
    /// Picked up at `pickup` and dropped at `delivery` by the same vehicle,
    /// pickup first (PDPTW: factory to customer, or a return to a factory).
    Shipment { pickup: Stop, delivery: Stop },
}

/// One order to serve, with the load it takes up while on board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub kind: RequestKind,
    pub amount: Load,
}

/// A courier shift: where it starts and ends, when, and what it carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vehicle {
    pub start_location: usize,
    /// `None`: the route ends at its last stop (no way back counted).
    pub end_location: Option<usize>,
    pub shift: TimeWindow,
    pub capacity: Load,
    /// Cost of using this vehicle at all, in cost units (added once per used
    /// vehicle under every objective).
    pub fixed_cost: f64,
}

/// How an arc is priced: `per_distance * distance + per_duration * duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArcCost {
    pub per_distance: f64,
    pub per_duration: f64,
}

impl Default for ArcCost {
    fn default() -> Self {
        ArcCost {
            per_distance: 1.0,
            per_duration: 0.0,
        }
    }
}

/// A model that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub reason: String,
}

impl ModelError {
    pub(crate) fn new(reason: String) -> ModelError {
        ModelError { reason }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ModelError {}

/// Which end of a request a stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The only stop of a `Delivery` or `Pickup`.
    Single,
    Pickup,
    Delivery,
}

/// Solver-side view of one stop (a node): flattened for speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Node {
    pub location: usize,
    pub service: f64,
    pub early: f64,
    pub late: f64,
    pub request: usize,
    pub role: Role,
    /// The other stop of a shipment.
    pub partner: Option<usize>,
    /// Load on board from the route's start because of this stop.
    pub start_load: Load,
    /// Change of load when the stop is served.
    pub delta: Load,
}

/// A validated routing problem. Build it with [`Instance::new`].
#[derive(Debug, Clone)]
pub struct Instance {
    pub(crate) matrix: Matrix,
    pub(crate) requests: Vec<Request>,
    pub(crate) vehicles: Vec<Vehicle>,
    pub(crate) arc_cost: ArcCost,
    /// Stops, two per shipment, one otherwise.
    pub(crate) nodes: Vec<Node>,
    /// Node indices of each request: `[single]` or `[pickup, delivery]`.
    pub(crate) request_nodes: Vec<Vec<usize>>,
    /// Matrix size plus one: the last location is "anywhere" (zero to and from
    /// everything), used as the end of open routes.
    pub(crate) loc_count: usize,
    pub(crate) cost: Vec<f64>,
    pub(crate) time: Vec<f64>,
    /// Transposes: row `to` holds the arcs into `to` (row access is cache-friendly).
    pub(crate) cost_into: Vec<f64>,
    pub(crate) time_into: Vec<f64>,
    /// Vehicles that are interchangeable share a class.
    pub(crate) vehicle_class: Vec<usize>,
    /// Per request, the only vehicle that may serve it (a parcel already on
    /// board), or `None`: any vehicle. See [`Instance::bind_requests`].
    pub(crate) request_vehicle: Vec<Option<usize>>,
    /// Arc costs obey the triangle inequality, so no detour is negative and
    /// the search may prune (checked up to 400 locations, else assumed not).
    pub(crate) detours_non_negative: bool,
}

fn check_stop(stop: &Stop, size: usize, place: &str) -> Result<(), ModelError> {
    if stop.location >= size {
        return Err(ModelError::new(format!(
            "{place}.location: {} is outside the matrix of {size} locations",
            stop.location
        )));
    }
    if !(stop.service.is_finite() && stop.service >= 0.0) {
        return Err(ModelError::new(format!(
            "{place}.service: must be a finite number >= 0, got {}",
            stop.service
        )));
    }
    check_window(&stop.window, &format!("{place}.window"))
}

fn check_window(window: &TimeWindow, place: &str) -> Result<(), ModelError> {
    if !(window.start.is_finite() && window.end.is_finite()) || window.start > window.end {
        return Err(ModelError::new(format!(
            "{place}: must be finite with start <= end, got [{}, {}]",
            window.start, window.end
        )));
    }
    Ok(())
}

impl Instance {
    /// Validates and indexes a problem. Requests that no vehicle can serve are
    /// not an error: the solver reports them as unserved.
    pub fn new(
        matrix: Matrix,
        requests: Vec<Request>,
        vehicles: Vec<Vehicle>,
        arc_cost: ArcCost,
    ) -> Result<Instance, ModelError> {
        let size = matrix.size();
        if !(arc_cost.per_distance.is_finite()
            && arc_cost.per_duration.is_finite()
            && arc_cost.per_distance >= 0.0
            && arc_cost.per_duration >= 0.0)
        {
            return Err(ModelError::new(
                "arc_cost: weights must be finite and >= 0".to_string(),
            ));
        }
        for (from, to) in (0..size).flat_map(|a| (0..size).map(move |b| (a, b))) {
            let (d, t) = (matrix.distance(from, to), matrix.duration(from, to));
            if !(d.is_finite() && t.is_finite() && d >= 0.0 && t >= 0.0) {
                return Err(ModelError::new(format!(
                    "matrix[{from}][{to}]: distance and duration must be finite and >= 0"
                )));
            }
        }
        let request_count = requests.len();
        let mut nodes = Vec::new();
        let mut request_nodes = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            if request.amount.iter().any(|&a| a < 0) {
                return Err(ModelError::new(format!(
                    "requests[{index}].amount: must be >= 0, got {:?}",
                    request.amount
                )));
            }
            let zero = [0; LOAD_DIMS];
            let neg = request.amount.map(|a| -a);
            let node = |stop: &Stop, role, partner, start_load, delta| Node {
                location: stop.location,
                service: stop.service,
                early: stop.window.start,
                late: stop.window.end,
                request: index,
                role,
                partner,
                start_load,
                delta,
            };
            let first = nodes.len();
            match &request.kind {
                RequestKind::Delivery { stop } => {
                    check_stop(stop, size, &format!("requests[{index}].stop"))?;
                    nodes.push(node(stop, Role::Single, None, request.amount, neg));
                    request_nodes.push(vec![first]);
                }
                RequestKind::Pickup { stop } => {
                    check_stop(stop, size, &format!("requests[{index}].stop"))?;
                    nodes.push(node(stop, Role::Single, None, zero, request.amount));
                    request_nodes.push(vec![first]);
                }
                RequestKind::Shipment { pickup, delivery } => {
                    check_stop(pickup, size, &format!("requests[{index}].pickup"))?;
                    check_stop(delivery, size, &format!("requests[{index}].delivery"))?;
                    nodes.push(node(
                        pickup,
                        Role::Pickup,
                        Some(first + 1),
                        zero,
                        request.amount,
                    ));
                    nodes.push(node(delivery, Role::Delivery, Some(first), zero, neg));
                    request_nodes.push(vec![first, first + 1]);
                }
            }
        }
        for (index, vehicle) in vehicles.iter().enumerate() {
            let place = format!("vehicles[{index}]");
            if vehicle.start_location >= size || vehicle.end_location.is_some_and(|e| e >= size) {
                return Err(ModelError::new(format!(
                    "{place}: start or end location outside the matrix of {size} locations"
                )));
            }
            check_window(&vehicle.shift, &format!("{place}.shift"))?;
            if vehicle.capacity.iter().any(|&c| c < 0) {
                return Err(ModelError::new(format!(
                    "{place}.capacity: must be >= 0, got {:?}",
                    vehicle.capacity
                )));
            }
            if !(vehicle.fixed_cost.is_finite() && vehicle.fixed_cost >= 0.0) {
                return Err(ModelError::new(format!(
                    "{place}.fixed_cost: must be finite and >= 0, got {}",
                    vehicle.fixed_cost
                )));
            }
        }
        // Internal matrices, with one extra "anywhere" location at index `size`.
        let loc_count = size + 1;
        let mut cost = vec![0.0; loc_count * loc_count];
        let mut time = vec![0.0; loc_count * loc_count];
        for from in 0..size {
            for to in 0..size {
                let (d, t) = (matrix.distance(from, to), matrix.duration(from, to));
                cost[from * loc_count + to] = arc_cost.per_distance * d + arc_cost.per_duration * t;
                time[from * loc_count + to] = t;
            }
        }
        let mut cost_into = vec![0.0; loc_count * loc_count];
        let mut time_into = vec![0.0; loc_count * loc_count];
        for from in 0..loc_count {
            for to in 0..loc_count {
                cost_into[to * loc_count + from] = cost[from * loc_count + to];
                time_into[to * loc_count + from] = time[from * loc_count + to];
            }
        }
        let detours_non_negative = size <= 400
            && (0..size).all(|a| {
                (0..size).all(|b| {
                    let direct = cost[a * loc_count + b];
                    (0..size).all(|via| {
                        cost[a * loc_count + via] + cost[via * loc_count + b] >= direct - 1e-9
                    })
                })
            });
        let mut vehicle_class = Vec::with_capacity(vehicles.len());
        for (index, vehicle) in vehicles.iter().enumerate() {
            let class = (0..index)
                .find(|&other| vehicles[other] == *vehicle)
                .map_or(index, |other| vehicle_class[other]);
            vehicle_class.push(class);
        }
        Ok(Instance {
            matrix,
            requests,
            vehicles,
            arc_cost,
            nodes,
            request_nodes,
            loc_count,
            cost,
            time,
            cost_into,
            time_into,
            vehicle_class,
            request_vehicle: vec![None; request_count],
            detours_non_negative,
        })
    }

    /// Binds requests to vehicles: `bound[r] = Some(v)` lets only vehicle
    /// `v` serve request `r` (a parcel already on a courier's bike must be
    /// dropped by that courier). A vehicle some request is bound to is no
    /// longer interchangeable with any other.
    pub fn bind_requests(mut self, bound: Vec<Option<usize>>) -> Result<Instance, ModelError> {
        if bound.len() != self.requests.len() {
            return Err(ModelError::new(format!(
                "bound: {} entries for {} requests",
                bound.len(),
                self.requests.len()
            )));
        }
        for (request, vehicle) in bound.iter().enumerate() {
            if let Some(vehicle) = *vehicle
                && vehicle >= self.vehicles.len()
            {
                return Err(ModelError::new(format!(
                    "bound[{request}]: vehicle {vehicle} of {}",
                    self.vehicles.len()
                )));
            }
        }
        for vehicle in bound.iter().flatten() {
            self.vehicle_class[*vehicle] = self.vehicles.len() + *vehicle;
        }
        self.request_vehicle = bound;
        Ok(self)
    }

    /// The only vehicle that may serve `request`, if it is bound to one.
    pub fn bound_vehicle(&self, request: usize) -> Option<usize> {
        self.request_vehicle.get(request).copied().flatten()
    }

    /// Whether `vehicle` may serve `request`.
    #[inline]
    pub(crate) fn allows(&self, request: usize, vehicle: usize) -> bool {
        self.request_vehicle[request].is_none_or(|bound| bound == vehicle)
    }

    /// The travel matrix.
    pub fn matrix(&self) -> &Matrix {
        &self.matrix
    }

    /// The requests, in the order given.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// The vehicles, in the order given.
    pub fn vehicles(&self) -> &[Vehicle] {
        &self.vehicles
    }

    /// How arcs are priced.
    pub fn arc_cost(&self) -> ArcCost {
        self.arc_cost
    }

    /// Internal location of a vehicle's end ("anywhere" for open routes).
    pub(crate) fn end_loc(&self, vehicle: usize) -> usize {
        self.vehicles[vehicle]
            .end_location
            .unwrap_or(self.loc_count - 1)
    }

    #[inline]
    pub(crate) fn cost_between(&self, from: usize, to: usize) -> f64 {
        self.cost[from * self.loc_count + to]
    }

    #[inline]
    pub(crate) fn time_between(&self, from: usize, to: usize) -> f64 {
        self.time[from * self.loc_count + to]
    }

    /// Arc costs and travel times out of and into `location`, indexed by the
    /// other end: `(cost_from, cost_to, time_from, time_to)`.
    #[inline]
    pub(crate) fn rows(&self, location: usize) -> (&[f64], &[f64], &[f64], &[f64]) {
        let range = location * self.loc_count..(location + 1) * self.loc_count;
        (
            &self.cost[range.clone()],
            &self.cost_into[range.clone()],
            &self.time[range.clone()],
            &self.time_into[range],
        )
    }
}
