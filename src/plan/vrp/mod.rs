//! Vehicle routing for courier waves: pickup-and-delivery with time windows
//! (PDPTW, which covers VRPTW), solved by regret insertion and SISR
//! ruin-and-recreate under a caller-given budget. Pure: no I/O, no clock, no
//! logging; deterministic for a given seed and iteration cap.
//!
//! Layout: `instance` (the model and travel matrices), `solution` (answers and
//! an independent feasibility checker), `route` (cached route data for O(1)
//! insertion checks), `construct` (insertion heuristics), `search` (SISR and
//! fleet minimisation), `parse` (Solomon and Li & Lim files), `osrm` (OSRM
//! `table` responses), `rng` (seeded PRNG).

mod construct;
pub mod instance;
pub mod osrm;
pub mod parse;
pub mod rng;
mod route;
pub mod search;
pub mod solution;

pub use instance::{
    ArcCost, Instance, LOAD_DIMS, Load, Matrix, ModelError, Request, RequestKind, Role, Stop,
    TimeWindow, UNREACHABLE, Vehicle, haversine_metres,
};
pub use osrm::{Table, TableError, parse_osrm_table};
pub use parse::{LiteratureInstance, ParseError, Report, parse_lilim, parse_solomon};
pub use search::{Objective, SearchParams, SolveOptions, solve};
pub use solution::{
    Evaluation, RoutePlan, RouteReport, Solution, StopTime, TIME_EPSILON, Violation, Visit, check,
};

#[cfg(test)]
mod tests;
