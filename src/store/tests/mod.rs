//! Store tests: every scenario runs on a fresh SQLite file, and on a fresh
//! PostgreSQL database when FABFLOW_TEST_POSTGRES_URL is set.

use super::Idempotency;
use super::*;
use crate::domain::Millis;
use crate::domain::intake::{JobPlan, LineRequest};
use crate::domain::{
    AtRiskReason, FailureReason, HandoffKind, HandoffState, HoldCause, JobInput, JobState,
    JobToken, Location, MachineId, MachineInput, OrderId, OrderState,
};
use sqlx::AssertSqlSafe;
use std::future::Future;

const NOW: Millis = 1_800_000_000_000;

/// Runs `scenario` on SQLite, then on PostgreSQL if configured.
async fn on_every_backend<F, Fut>(scenario: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("sqlite store");
    scenario(store.clone()).await;
    store.close().await;
    match std::env::var("FABFLOW_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let store = fresh_postgres(&base).await;
            scenario(store.clone()).await;
            store.close().await;
        }
        _ => eprintln!(
            "store: PostgreSQL scenarios skipped (set FABFLOW_TEST_POSTGRES_URL to run them)"
        ),
    }
}

/// A new, empty PostgreSQL database for one scenario.
pub(crate) async fn fresh_postgres(base: &str) -> Store {
    Store::connect(&fresh_postgres_url(base).await)
        .await
        .expect("postgres store")
}

/// The URL of a new, empty PostgreSQL database.
pub(crate) async fn fresh_postgres_url(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("fabflow_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("postgres URL with a database name");
    format!("{prefix}/{name}")
}

fn plan(line_index: usize, step_index: usize, process: &str) -> JobPlan {
    JobPlan {
        line_index,
        step_index,
        process: process.into(),
        recipe: 11,
        material: "cotton_tee".into(),
        quantity: 2,
        seconds_per_unit: 60.0,
        due_ms: NOW + 3_600_000,
    }
}

pub(crate) fn new_order(id: &str, brand: &str, key: Option<&str>) -> NewOrder {
    NewOrder {
        id: id.into(),
        brand: brand.into(),
        external_ref: Some(format!("ref-{id}")),
        customer_name: "Ada".into(),
        location: Location::new(52.5, 13.4),
        zone: "berlin".into(),
        factory: "north".into(),
        lines: vec![LineRequest {
            sku: "tee".into(),
            quantity: 2,
        }],
        deadline_ms: NOW + 48 * 3_600_000,
        accepted_ms: NOW,
        jobs: vec![plan(0, 0, "dtg_print"), plan(0, 1, "heat_press")],
        follows: false,
        idempotency: key.map(|key| Idempotency {
            key: key.into(),
            request_hash: format!("hash-{id}"),
            status: 201,
            response: format!("{{\"id\":\"{id}\"}}"),
        }),
    }
}

/// A DTG printer of factory north that takes tees and totes.
fn dtg_spec(id: &str) -> MachineSpec {
    MachineSpec {
        id: id.into(),
        factory: "north".into(),
        model: "acme-dtg-200".into(),
        address: "127.0.0.1:5020".into(),
        capabilities: vec!["dtg_print".into()],
        materials: vec!["cotton_tee".into(), "tote".into()],
    }
}

/// A registered machine reports idle: it takes jobs (a machine never seen
/// is offline, and the store queues nothing on it).
async fn report_idle(store: &Store, machine: &str) {
    store
        .observe_machine(
            machine,
            MachineInput::Reported(crate::domain::Reported::Idle),
            None,
            None,
            NOW,
        )
        .await
        .expect("observe");
}

async fn outbox_kinds(store: &Store) -> Vec<String> {
    store
        .unpublished(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

mod backend;
mod demand;
mod handoffs;
mod jobs;
mod leases;
mod machines;
mod orders;
mod returns;
mod tokens;
mod webhooks;
