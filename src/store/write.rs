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
    allocate_on(tx, name, count).await
}

async fn allocate_on(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    count: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value")
        .bind(count)
        .bind(name)
        .fetch_one(conn)
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
/// ([`WriteTx::commit`], through [`write_outbox`], on SQLite in the
/// commit's own query, [`sqlite_commit_query`]), after everything else
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
pub(crate) async fn write_outbox(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[OutboxRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Positions in the event log, in this transaction: the counter's row
    // lock orders concurrent writers, so seq order is commit order.
    let first = allocate_on(conn, "event_seq", rows.len() as i64).await?;
    for (offset, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = format!(
            "INSERT INTO outbox (id, kind, brand, payload, created_ms, seq) VALUES {}",
            placeholders(backend, chunk.len(), 6)
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
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// SQLite: the events of a transaction and its COMMIT as ONE query (one
/// round trip to SQLite's thread instead of three): the event counter moved
/// on by the number of events, the rows numbered from it in SQL, then
/// COMMIT. sqlx's SQLite driver runs the statements of one query in turn,
/// binding the positional parameters across them. Each payload is the
/// envelope with its `seq` spliced in where it belongs among the sorted
/// keys, byte for byte what [`write_outbox`] writes.
pub(crate) fn sqlite_commit_query(
    rows: &[OutboxRow],
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    bind_sqlite_events(
        sqlx::query(AssertSqlSafe(sqlite_events_sql(rows.len()))),
        rows,
    )
}

/// SQLite: the statements of [`sqlite_commit_query`] for `events` events,
/// ending with COMMIT (their values bound by [`bind_sqlite_events`]).
pub(crate) fn sqlite_events_sql(events: usize) -> String {
    if events == 0 {
        return "COMMIT".to_string();
    }
    // The counter's value after the UPDATE is the last seq: row k of n
    // (from 0) is that value + (k + 1 - n). The value is read once per
    // statement (a subquery per row made a 500-row statement slow to
    // prepare).
    let mut sql = String::from("UPDATE counters SET value = value + ? WHERE name = 'event_seq';");
    for chunk in chunk_sizes(events) {
        sql.push_str(&from_counter(
            "event_seq",
            "INSERT INTO outbox (id, kind, brand, payload, created_ms, seq) \
             SELECT column1, column2, column3, column4 || (base.v + column5) || column6, column7, \
             base.v + column5",
            chunk,
            7,
        ));
        sql.push(';');
    }
    sql.push_str("COMMIT");
    sql
}

/// Binds the values of [`sqlite_events_sql`] for `rows`, after those
/// `query` holds already.
pub(crate) fn bind_sqlite_events<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    rows: &[OutboxRow],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    if rows.is_empty() {
        return query;
    }
    let n = rows.len();
    let mut query = query.bind(n as i64);
    for (k, row) in rows.iter().enumerate() {
        let offset = k as i64 + 1 - n as i64;
        let (head, tail) = around_seq(&row.envelope);
        query = query
            .bind(row.id.clone())
            .bind(row.kind)
            .bind(row.brand.clone())
            .bind(head)
            .bind(offset)
            .bind(tail)
            .bind(row.created_ms);
    }
    query
}

/// The envelope's JSON text before and after its `seq` value (which it
/// does not hold yet): keys sorted, as serde_json writes a map.
fn around_seq(envelope: &serde_json::Map<String, serde_json::Value>) -> (String, String) {
    let (mut head, mut tail) = (b"{".to_vec(), Vec::new());
    for (key, value) in envelope {
        let out = match key.as_str() < "seq" {
            true if head.len() > 1 => {
                head.push(b',');
                &mut head
            }
            true => &mut head,
            false => {
                tail.push(b',');
                &mut tail
            }
        };
        // JSON written into a Vec: neither the writer nor a Value (string
        // keys only) can fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
    if head.len() > 1 {
        head.push(b',');
    }
    head.extend_from_slice(b"\"seq\":");
    tail.push(b'}');
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into())
    };
    (text(head), text(tail))
}

/// Rows per multi-row INSERT: well under SQLite's 32766 and PostgreSQL's
/// 65535 bind parameters for our widest table.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// The sizes of the multi-row statements `rows` rows take, as
/// `chunks(ROWS_PER_STATEMENT)` cuts them.
pub(crate) fn chunk_sizes(rows: usize) -> impl Iterator<Item = usize> {
    (0..rows)
        .step_by(ROWS_PER_STATEMENT)
        .map(move |start| (rows - start).min(ROWS_PER_STATEMENT))
}

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
        let mut query = sqlx::query(AssertSqlSafe(jobs_insert_sql(tx, chunk.len())));
        for row in chunk {
            query = bind_job(query, row, row.token);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The columns of a job row, in [`bind_job`]'s order.
const JOB_COLUMNS: &str = "token, order_id, line_index, step_index, process, recipe, material, \
     quantity, seconds_per_unit, due_ms, factory, state, replaces, created_ms, updated_ms";

/// A multi-row INSERT of `rows` jobs.
fn jobs_insert_sql(tx: &WriteTx, rows: usize) -> String {
    format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES {}",
        tx.placeholders(rows, 15)
    )
}

/// SQLite: a multi-row INSERT of `rows` jobs whose bound token is added to
/// the job token counter's value (read once, in the statement; the
/// counter is moved on after it).
pub(crate) fn sqlite_jobs_from_counter_sql(rows: usize) -> String {
    let columns: Vec<String> = (2..=15).map(|n| format!("column{n}")).collect();
    from_counter(
        "job_token",
        &format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) SELECT base.v + column1, {}",
            columns.join(", ")
        ),
        rows,
        15,
    )
}

/// SQLite: `WITH base(v) AS (the counter's value) <insert_select> FROM
/// (VALUES ...), base` for `rows` rows of `columns` positional parameters
/// (`column1`... in `insert_select`).
fn from_counter(counter: &str, insert_select: &str, rows: usize, columns: usize) -> String {
    format!(
        "WITH base(v) AS (SELECT value FROM counters WHERE name = '{counter}') {insert_select} \
         FROM (VALUES {}), base",
        placeholders(Backend::Sqlite, rows, columns)
    )
}

/// Binds a job row's values (its token given as `token`) in
/// [`jobs_insert_sql`]'s order.
pub(crate) fn bind_job<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    row: &NewJob<'_>,
    token: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let job = row.plan;
    query
        .bind(token)
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
        .bind(row.now)
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
    fn chunk_sizes_cut_like_chunks() {
        for rows in [0, 1, 499, 500, 501, 1_200] {
            let cut: Vec<usize> = (0..rows)
                .collect::<Vec<_>>()
                .chunks(super::ROWS_PER_STATEMENT)
                .map(<[usize]>::len)
                .collect();
            assert_eq!(super::chunk_sizes(rows).collect::<Vec<_>>(), cut, "{rows}");
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The SQLite commit splices `seq` into the envelope's text: the result
    /// is byte for byte serde_json's own text of the envelope with `seq`.
    #[test]
    fn the_seq_is_spliced_where_serde_json_puts_it() {
        let subject = Subject {
            kind: "order",
            id: "o-1",
            order_id: Some("o-1"),
            brand: Some("acme \"quoted\" ü"),
        };
        let event = Event::OrderAccepted {
            factory: crate::domain::FactoryId::new("north"),
            lines: vec![crate::domain::OrderedLine {
                sku: "tee".into(),
                quantity: 2,
            }],
        };
        let envelopes = [
            OutboxRow::new(&subject, &event, 1_700_000_000_000).envelope,
            object(json!({})),
            object(json!({"a": 1.5, "b": [1, {"x": null}]})),
            object(json!({"z": "last", "subject": {"seq": 3}})),
            object(json!({"a": true, "zz": "z"})),
        ];
        for envelope in envelopes {
            for seq in [1_i64, 42, 9_007_199_254_740_993] {
                let (head, tail) = around_seq(&envelope);
                let mut with_seq = envelope.clone();
                with_seq.insert("seq".into(), seq.into());
                assert_eq!(
                    format!("{head}{seq}{tail}"),
                    Value::Object(with_seq).to_string()
                );
            }
        }
    }
}
