//! Writes shared by the tables inside one transaction: outbox rows, job
//! rows, order state changes, row locks and counters. They run SQL and
//! decide nothing; the domain's rules say what to write.

use super::{Backend, OrderRecord, StoreError, WriteTx};
use crate::domain::intake::JobPlan;
use crate::domain::{Event, JobState, Millis, OrderState};
use sqlx::{AssertSqlSafe, Row};

/// Locks an order's row until the transaction ends, on PostgreSQL (SQLite has
/// a single writer: every write transaction is already serialised).
pub(crate) async fn lock_order(
    tx: &mut WriteTx,
    backend: Backend,
    id: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Allocates `count` consecutive values of a counter inside `tx`; returns the first.
pub(crate) async fn allocate(tx: &mut WriteTx, name: &str, count: i64) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value")
        .bind(count)
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    let last: i64 = row.try_get("value")?;
    Ok(last - count + 1)
}

/// Who an event is about, for its payload and routing.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub kind: &'static str,
    pub id: &'a str,
    pub order_id: Option<&'a str>,
    pub brand: Option<&'a str>,
}

/// One outbox row: an event with its envelope (its `seq` is added when it
/// is written).
pub(crate) struct OutboxRow {
    pub id: String,
    pub kind: &'static str,
    pub brand: Option<String>,
    pub envelope: serde_json::Map<String, serde_json::Value>,
    pub created_ms: Millis,
}

impl OutboxRow {
    pub(crate) fn new(subject: &Subject<'_>, event: &Event, now: Millis) -> OutboxRow {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let envelope = serde_json::json!({
            "schema": 1,
            "id": id,
            "kind": event.kind(),
            "at": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now).map(|t| t.to_rfc3339()),
            "subject": { "type": subject.kind, "id": subject.id },
            "order_id": subject.order_id,
            "brand": subject.brand,
            "data": event,
        });
        OutboxRow {
            id,
            kind: event.kind(),
            brand: subject.brand.map(str::to_string),
            envelope: match envelope {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            created_ms: now,
        }
    }
}

/// Adds one outbox row for `event` to `tx` (written at its commit).
pub(crate) async fn emit(
    tx: &mut WriteTx,
    subject: &Subject<'_>,
    event: &Event,
    now: Millis,
) -> Result<(), StoreError> {
    insert_outbox(tx, vec![OutboxRow::new(subject, event, now)]).await
}

/// Adds outbox rows to `tx`. They are written when it commits
/// ([`WriteTx::commit`], through [`write_outbox`]), after everything else
/// it wrote: the event counter's row, which orders the events of all
/// writers, is then the last lock a transaction takes, held only for its
/// commit, so on PostgreSQL no cycle of waits runs through it.
pub(crate) async fn insert_outbox(
    tx: &mut WriteTx,
    rows: Vec<OutboxRow>,
) -> Result<(), StoreError> {
    tx.defer_events(rows);
    Ok(())
}

/// Writes `rows` to the outbox inside `tx`, numbered from the event
/// counter in that order.
pub(crate) async fn write_outbox(tx: &mut WriteTx, rows: &[OutboxRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Positions in the event log, in this transaction: the counter's row
    // lock orders concurrent writers, so seq order is commit order.
    let first = allocate(tx, "event_seq", rows.len() as i64).await?;
    for (offset, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = format!(
            "INSERT INTO outbox (id, kind, brand, payload, created_ms, seq) VALUES {}",
            tx.placeholders(chunk.len(), 6)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (index, row) in chunk.iter().enumerate() {
            let seq = first + (offset * ROWS_PER_STATEMENT + index) as i64;
            let mut envelope = row.envelope.clone();
            envelope.insert("seq".into(), seq.into());
            query = query
                .bind(row.id.clone())
                .bind(row.kind)
                .bind(row.brand.clone())
                .bind(serde_json::Value::Object(envelope).to_string())
                .bind(row.created_ms)
                .bind(seq);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT: well under SQLite's 32766 and PostgreSQL's
/// 65535 bind parameters for our widest table.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` columns on
/// PostgreSQL; `(?, ?), (?, ?)` on SQLite, bound in the same order. (sqlx
/// looks up each SQLite parameter's name, and SQLite finds a name by a
/// linear search: with `$n` names a statement of 500 parameters cost a
/// quarter of a million comparisons, a quarter of intake's writer time.)
pub(crate) fn placeholders(backend: super::Backend, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match backend {
                super::Backend::Sqlite => out.push('?'),
                super::Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// `$first, $first+1, ...` (`count` of them) on PostgreSQL; `?, ?, ...`
/// on SQLite (see [`placeholders`]): an `IN` list, or values after a
/// [`placeholders`] list.
pub(crate) fn params(backend: super::Backend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| match backend {
            super::Backend::Sqlite => "?".to_string(),
            super::Backend::Postgres => format!("${n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A job row to insert.
pub(crate) struct NewJob<'a> {
    pub token: i64,
    pub order_id: &'a str,
    pub factory: &'a str,
    pub plan: &'a JobPlan,
    pub quantity: u32,
    pub replaces: Option<i64>,
    pub now: Millis,
}

/// Inserts pending jobs with multi-row statements.
pub(crate) async fn insert_jobs(tx: &mut WriteTx, rows: &[NewJob<'_>]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO jobs (token, order_id, line_index, step_index, process, recipe, material, quantity, \
             seconds_per_unit, due_ms, factory, state, replaces, created_ms, updated_ms) VALUES {}",
            tx.placeholders(chunk.len(), 15)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            let job = row.plan;
            query = query
                .bind(row.token)
                .bind(row.order_id.to_string())
                .bind(job.line_index as i64)
                .bind(job.step_index as i64)
                .bind(job.process.clone())
                .bind(i64::from(job.recipe))
                .bind(job.material.clone())
                .bind(i64::from(row.quantity))
                .bind(job.seconds_per_unit)
                .bind(job.due_ms)
                .bind(row.factory.to_string())
                .bind(JobState::Pending.as_str())
                .bind(row.replaces)
                .bind(row.now)
                .bind(row.now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Compare-and-set of an order's state, with its events.
pub(crate) async fn set_order_state(
    tx: &mut WriteTx,
    order: &OrderRecord,
    next: OrderState,
    events: &[Event],
    now: Millis,
) -> Result<(), StoreError> {
    set_order_state_by_id(tx, &order.id, &order.brand, order.state, next, events, now).await
}

pub(crate) async fn set_order_state_by_id(
    tx: &mut WriteTx,
    id: &str,
    brand: &str,
    from: OrderState,
    next: OrderState,
    events: &[Event],
    now: Millis,
) -> Result<(), StoreError> {
    let done =
        sqlx::query("UPDATE orders SET state = $1, updated_ms = $2 WHERE id = $3 AND state = $4")
            .bind(next.as_str())
            .bind(now)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "order {id} is no longer {from}"
        )));
    }
    let subject = Subject {
        kind: "order",
        id,
        order_id: Some(id),
        brand: Some(brand),
    };
    for event in events {
        emit(tx, &subject, event, now).await?;
    }
    Ok(())
}

/// One operator or admin decision for the audit trail.
pub(crate) struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
}

impl<'a> AuditEntry<'a> {
    pub(crate) fn new(actor: &'a str, action: &'a str, target: &'a str, detail: &'a str) -> Self {
        AuditEntry {
            actor,
            action,
            target,
            detail,
        }
    }
}

/// Records a decision in the transaction that makes it.
pub(crate) async fn record_audit(
    tx: &mut WriteTx,
    entry: &AuditEntry<'_>,
    now: Millis,
) -> Result<(), StoreError> {
    let seq = allocate(tx, "audit_seq", 1).await?;
    sqlx::query(
        "INSERT INTO audit (seq, at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(now)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod placeholder_tests {
    #[test]
    fn placeholders_number_rows_then_columns() {
        use crate::store::Backend::{Postgres, Sqlite};
        assert_eq!(
            super::placeholders(Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(super::placeholders(Postgres, 1, 1), "($1)");
        assert_eq!(super::placeholders(Sqlite, 2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(super::params(Postgres, 3, 2), "$3, $4");
        assert_eq!(super::params(Sqlite, 3, 2), "?, ?");
    }
}
