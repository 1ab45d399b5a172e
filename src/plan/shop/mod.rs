//! Production scheduling: a flexible job shop (jobs of ordered operations,
//! each runnable on any of several capable machines for a machine-specific
//! time, one operation at a time per machine, no pre-emption), with release
//! times, machines free from a given time and open only in their shifts
//! and outside maintenance (`Openings`), operations already running that
//! never move, and setup time per material change. Two objectives: makespan
//! (the literature's FJSP, `fabflow schedule`) and the floor's lexicographic
//! one (late orders, total lateness, setup time, distance to the customer).
//!
//! Algorithm (see `search`): list-scheduling construction, then a tabu
//! search on the critical path: N7 block moves and reassignment of critical
//! operations to other machines at cycle-free positions, ranked by a
//! head/tail estimate, recomputed exactly once chosen (makespan); the same
//! moves sampled and scored exactly (floor).
//!
//! Pure: no I/O, no clock (the caller passes a `progress` callback), no
//! logging; deterministic for a given seed and iteration cap. Layout:
//! `model` (problem, answer, independent `check`), `search` (the engine),
//! `fjsp` (the literature's text format), `floor` (the runtime-facing API).

pub mod fjsp;
pub mod floor;
pub mod model;
pub mod repair;
pub mod search;

pub use fjsp::{ParseError, parse_fjsp};
pub use floor::{
    FloorJob, FloorMachine, FloorPlan, FloorStep, PlannedStep, Running, plan_floor, replan_floor,
};
pub use model::{
    Alternative, Fixed, FloorScore, Job, Machine, ModelError, Objective, Openings, Operation,
    Problem, Schedule, ScheduledOp, Time, Violation, check, floor_score,
};
pub use repair::repair_floor;
pub use search::{SolveOptions, WarmStart, solve, solve_from};

#[cfg(test)]
mod tests;
