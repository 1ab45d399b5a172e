//! Pure planners: which factory makes an order, which machine runs a job, and
//! the order in which a courier visits its stops. No I/O, no clock reads:
//! everything they need arrives as arguments.

pub mod explain;
pub mod lateness;
pub mod promise;
pub mod roads;
pub mod route;
pub mod rush;
pub mod schedule;
pub mod shop;
pub mod vrp;

pub use route::{
    CourierSlot, RouteOrder, RoutePlan, RouteStop, Travel, WavePlan, WaveSearch, plan_routes,
};
pub use schedule::{
    FactorySite, JobCandidate, MachineSlot, QueuedJob, assign_jobs, bumps, choose_factory,
};
