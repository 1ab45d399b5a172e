//! fabflow: fulfilment orchestration for neighbourhood microfactories.
//!
//! The pure core (`domain`, `plan`, `forecast`) decides; the edges (`store`,
//! `runtime`, `api`) persist and act. See docs/architecture.md.

pub mod api;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod forecast;
pub mod plan;
pub mod runtime;
pub mod store;
