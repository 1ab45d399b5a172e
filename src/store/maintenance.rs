//! Maintenance windows planned ahead on machines: written with their event
//! and audit row in one transaction; read by the dispatcher and the
//! explanations, which decide with `domain::calendar`.

use super::write::{AuditEntry, Subject, emit, record_audit};
use super::{Store, StoreError};
use crate::domain::{Event, Millis};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A planned maintenance window of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRecord {
    pub id: String,
    pub machine: String,
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub reason: String,
    pub created_by: String,
    pub created_ms: Millis,
}

impl WindowRecord {
    /// The window as the domain's calendar takes it.
    pub fn window(&self) -> crate::domain::calendar::Window {
        crate::domain::calendar::Window {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            reason: self.reason.clone(),
        }
    }
}

fn window_from_row(row: &AnyRow) -> Result<WindowRecord, StoreError> {
    Ok(WindowRecord {
        id: row.try_get("id")?,
        machine: row.try_get("machine")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        reason: row.try_get("reason")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// Plans maintenance on `machine` for `[start_ms, end_ms)` (checked by
    /// the caller with `domain::calendar::window_problems`): one
    /// transaction with its event (`machine.maintenance_scheduled`) and
    /// audit row (`machine.maintenance_window`).
    pub async fn schedule_maintenance(
        &self,
        machine: &str,
        start_ms: Millis,
        end_ms: Millis,
        reason: &str,
        actor: &str,
        now: Millis,
    ) -> Result<WindowRecord, StoreError> {
        let mut tx = self.begin().await?;
        let known = sqlx::query("SELECT id FROM machines WHERE id = $1")
            .bind(machine)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("machine {machine}")));
        }
        let record = WindowRecord {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            machine: machine.to_string(),
            start_ms,
            end_ms,
            reason: reason.to_string(),
            created_by: actor.to_string(),
            created_ms: now,
        };
        sqlx::query(
            "INSERT INTO maintenance_windows (id, machine, start_ms, end_ms, reason, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(machine)
        .bind(start_ms)
        .bind(end_ms)
        .bind(reason)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let subject = Subject {
            kind: "machine",
            id: machine,
            order_id: None,
            brand: None,
        };
        emit(
            &mut tx,
            &subject,
            &Event::MachineMaintenanceScheduled {
                window: record.id.clone(),
                start_ms,
                end_ms,
                reason: reason.to_string(),
            },
            now,
        )
        .await?;
        let detail = format!("{} [{start_ms}, {end_ms}) {reason}", record.id);
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "machine.maintenance_window", machine, &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The windows of `machine` (or of every machine) not over at `now`,
    /// earliest first.
    pub async fn maintenance_windows(
        &self,
        machine: Option<&str>,
        now: Millis,
    ) -> Result<Vec<WindowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, machine, start_ms, end_ms, reason, created_by, created_ms FROM maintenance_windows \
             WHERE ($1 IS NULL OR machine = $1) AND end_ms > $2 ORDER BY start_ms, id",
        )
        .bind(machine)
        .bind(now)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(window_from_row).collect()
    }

    /// Removes a planned window of `machine` (a window of another machine
    /// is not found): one transaction with its event
    /// (`machine.maintenance_cancelled`) and audit row.
    pub async fn cancel_maintenance(
        &self,
        machine: &str,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<WindowRecord, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT id, machine, start_ms, end_ms, reason, created_by, created_ms FROM maintenance_windows \
             WHERE id = $1 AND machine = $2",
        )
        .bind(id)
        .bind(machine)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(record) = row.as_ref().map(window_from_row).transpose()? else {
            return Err(StoreError::NotFound(format!(
                "maintenance window {id} of machine {machine}"
            )));
        };
        let done = sqlx::query("DELETE FROM maintenance_windows WHERE id = $1 AND machine = $2")
            .bind(id)
            .bind(machine)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "maintenance window {id} was removed meanwhile"
            )));
        }
        let subject = Subject {
            kind: "machine",
            id: machine,
            order_id: None,
            brand: None,
        };
        emit(
            &mut tx,
            &subject,
            &Event::MachineMaintenanceCancelled {
                window: id.to_string(),
            },
            now,
        )
        .await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "machine.maintenance_cancel", machine, id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }
}
