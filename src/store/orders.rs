//! Orders: group-committed intake with idempotency keys, scoped reads, cancel.

use super::returns::{StockTake, apply_stock_take, plan_stock_takes};
use super::write::{
    AuditEntry, NewJob, OutboxRow, ROWS_PER_STATEMENT, Subject, allocate, bind_job,
    bind_sqlite_events, chunk_sizes, emit, insert_jobs, insert_outbox, lock_order, placeholders,
    record_audit, set_order_state, set_order_state_by_id, sqlite_events_sql,
    sqlite_jobs_from_counter_sql,
};
use super::{Backend, Store, StoreError, WriteTx, parse, text_id};
use crate::domain::intake::{JobPlan, LineRequest};
use crate::domain::{
    BrandId, Event, FactoryId, JobInput, JobState, Location, Millis, OrderId, OrderInput,
    OrderState, OrderedLine,
};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::{HashMap, HashSet};

/// A validated order ready to be stored with its jobs.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: OrderId,
    pub brand: BrandId,
    pub external_ref: Option<String>,
    pub customer_name: String,
    pub location: Location,
    pub zone: String,
    pub factory: FactoryId,
    pub lines: Vec<LineRequest>,
    pub deadline_ms: Millis,
    pub accepted_ms: Millis,
    pub jobs: Vec<JobPlan>,
    pub idempotency: Option<Idempotency>,
    /// Stored only together with the nearest order before it in the batch
    /// that does not follow (an import: the file's first order carries the
    /// key, the others share its fate: created, replayed or refused).
    pub follows: bool,
}

impl NewOrder {
    /// The order as it reads once stored (accepted, nothing changed yet).
    pub fn record(&self) -> OrderRecord {
        OrderRecord {
            id: self.id.clone(),
            brand: self.brand.clone(),
            external_ref: self.external_ref.clone(),
            state: OrderState::Accepted,
            customer_name: self.customer_name.clone(),
            location: self.location,
            zone: self.zone.clone(),
            factory: self.factory.clone(),
            lines: self.lines.clone(),
            deadline_ms: self.deadline_ms,
            accepted_ms: self.accepted_ms,
            updated_ms: self.accepted_ms,
            promise: Promise::default(),
        }
    }
}

/// An idempotency key, the hash of the request body, and the response to
/// store for replays.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AcceptOutcome {
    Created,
    /// The key was used before with the same body: the stored response.
    Replayed {
        status: u16,
        response: String,
    },
    /// The key was used before with another body.
    KeyReused,
}

/// What storing a batch of orders did.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// One per order of the batch, in order.
    pub outcomes: Vec<AcceptOutcome>,
    /// Stock filled an order whole: it is ready at its factory already.
    pub made_ready: bool,
}

impl Accepted {
    fn nothing_ready(outcomes: Vec<AcceptOutcome>) -> Self {
        Accepted {
            outcomes,
            made_ready: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub id: OrderId,
    pub brand: BrandId,
    pub external_ref: Option<String>,
    pub state: OrderState,
    pub customer_name: String,
    pub location: Location,
    pub zone: String,
    pub factory: FactoryId,
    pub lines: Vec<LineRequest>,
    pub deadline_ms: Millis,
    pub accepted_ms: Millis,
    pub updated_ms: Millis,
    pub promise: Promise,
}

/// What the current plan says of an order's promise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Promise {
    pub eta_ready_ms: Option<Millis>,
    pub eta_delivery_ms: Option<Millis>,
    /// Why the order cannot be delivered by its deadline (None: on track).
    pub at_risk: Option<String>,
    pub at_risk_ms: Option<Millis>,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only this brand's orders (None: every brand, for admins and operators).
    pub brand: Option<String>,
    pub state: Option<OrderState>,
    /// Orders with an id greater than this (ids are time-ordered UUIDv7).
    pub after: Option<String>,
    pub limit: i64,
}

/// Times a batch of orders aborted by a deadlock is run again.
const CONTENTION_RETRIES: u32 = 5;

pub(crate) const ORDER_COLUMNS: &str = "id, brand, external_ref, state, customer_name, lat, lon, zone, factory, lines, deadline_ms, accepted_ms, updated_ms, eta_ready_ms, eta_delivery_ms, at_risk, at_risk_ms";

pub(crate) fn order_from_row(row: &AnyRow) -> Result<OrderRecord, StoreError> {
    let lines: String = row.try_get("lines")?;
    Ok(OrderRecord {
        id: text_id(row, "id")?,
        brand: text_id(row, "brand")?,
        external_ref: row.try_get("external_ref")?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        customer_name: row.try_get("customer_name")?,
        location: Location::new(row.try_get("lat")?, row.try_get("lon")?),
        zone: row.try_get("zone")?,
        factory: text_id(row, "factory")?,
        lines: serde_json::from_str(&lines)
            .map_err(|err| StoreError::Corrupt(format!("order lines: {err}")))?,
        deadline_ms: row.try_get("deadline_ms")?,
        accepted_ms: row.try_get("accepted_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        promise: Promise {
            eta_ready_ms: row.try_get("eta_ready_ms")?,
            eta_delivery_ms: row.try_get("eta_delivery_ms")?,
            at_risk: row.try_get("at_risk")?,
            at_risk_ms: row.try_get("at_risk_ms")?,
        },
    })
}

impl Store {
    /// Stores a batch of orders, their jobs and their `order.accepted` events
    /// in ONE transaction (group commit): all of them or none. Idempotency
    /// keys are checked inside the transaction; a replayed or reused key
    /// stores nothing for that order.
    pub async fn accept_orders(
        &self,
        batch: &[NewOrder],
    ) -> Result<Vec<AcceptOutcome>, StoreError> {
        Ok(self.accept_orders_telling_ready(batch).await?.outcomes)
    }

    /// [`Store::accept_orders`], telling also whether stock filled an order
    /// whole (ready at its factory at once, for the next courier wave).
    pub async fn accept_orders_telling_ready(
        &self,
        batch: &[NewOrder],
    ) -> Result<Accepted, StoreError> {
        if let Some(accepted) = self.accept_in_one_query(batch).await {
            return accepted;
        }
        let postgres = self.backend == super::Backend::Postgres;
        let mut attempt = 0u32;
        loop {
            let outcome = async {
                let mut tx = self.begin().await?;
                let outcomes = insert_orders(&mut tx, postgres, batch).await?;
                tx.commit().await?;
                Ok(outcomes)
            }
            .await;
            // Daemons taking orders at once (a client retrying one key at
            // another daemon) can deadlock on PostgreSQL, or both insert
            // the key; the aborted one did nothing and runs again, after a
            // short random pause (and then replays the stored answer).
            if attempt < CONTENTION_RETRIES
                && outcome
                    .as_ref()
                    .err()
                    .is_some_and(|err: &StoreError| err.is_contention() || err.is_key_race())
            {
                attempt += 1;
                let pause = rand::random_range(5..=25u64) * u64::from(attempt);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                continue;
            }
            // Still contended: not the request's fault; the client retries.
            let outcome = outcome.map_err(|err| {
                if err.is_contention() || err.is_key_race() {
                    StoreError::Unavailable(format!("contention with another daemon: {err}"))
                } else {
                    err
                }
            });
            // A refusal mid-statement (PostgreSQL extending a table, SQLite at
            // its page limit) counts as much as one at commit.
            self.health.note(&outcome);
            return outcome;
        }
    }

    /// SQLite, the common case: no units on any shelf lately (so no stock
    /// to take, see `StockHint`) and every key of the batch new. The whole
    /// transaction is ONE query, one round trip to SQLite's thread: BEGIN,
    /// the keys, the orders, their jobs, their events, COMMIT. A key found
    /// stored fails it (nothing of it stays: the transaction is rolled
    /// back before the writer's next use) and the batch takes the careful
    /// way; `None` then, and where this does not apply.
    pub(super) async fn accept_in_one_query(
        &self,
        batch: &[NewOrder],
    ) -> Option<Result<Accepted, StoreError>> {
        if !self.writes_in_one_query() || !self.stock.empty_lately() {
            return None;
        }
        let (outcomes, created) = decide(batch, HashMap::new());
        if created.is_empty() {
            return Some(Ok(Accepted::nothing_ready(outcomes)));
        }
        let claimed = claimed_keys(batch);
        let rows = job_rows(&created, &[]);
        let events = accepted_events(&created);
        let sql = format!(
            "BEGIN IMMEDIATE;{};{}",
            sqlite_batch_sql(claimed.len(), created.len(), rows.len()),
            sqlite_events_sql(events.len())
        );
        let query =
            match bind_sqlite_batch(sqlx::query(AssertSqlSafe(sql)), &claimed, &created, &rows) {
                Ok(query) => bind_sqlite_events(query, &events),
                Err(err) => return Some(Err(err)),
            };
        match self.sqlite_transaction_in_one_query(query).await? {
            Ok(()) => Some(Ok(Accepted::nothing_ready(outcomes))),
            Err(err) if is_stored_key(&err) => None,
            Err(err) => Some(Err(err)),
        }
    }

    pub async fn get_order(
        &self,
        id: &str,
        brand: Option<&str>,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND ($2 IS NULL OR brand = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(brand)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<OrderRecord>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE ($1 IS NULL OR brand = $1) AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR id > $3) \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.brand.as_deref())
            .bind(filter.state.map(OrderState::as_str))
            .bind(filter.after.as_deref())
            .bind(filter.limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Counts orders per state (for progress and metrics).
    pub async fn order_counts(&self) -> Result<HashMap<OrderState, i64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM orders GROUP BY state")
            .fetch_all(self.reader())
            .await?;
        let mut counts = HashMap::new();
        for row in rows {
            counts.insert(
                parse(&row.try_get::<String, _>("state")?)?,
                row.try_get::<i64, _>("n")?,
            );
        }
        Ok(counts)
    }

    /// Counts orders per factory and state (the dashboard's overview, scoped
    /// by the caller's factories).
    pub async fn order_counts_by_factory(
        &self,
    ) -> Result<Vec<(String, OrderState, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT factory, state, COUNT(*) AS n FROM orders GROUP BY factory, state")
                .fetch_all(self.reader())
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("factory")?,
                    parse(&row.try_get::<String, _>("state")?)?,
                    row.try_get::<i64, _>("n")?,
                ))
            })
            .collect()
    }

    /// Orders flagged at risk that are still on their way to the customer
    /// (accepted, in production, ready, out for delivery), earliest deadline
    /// first, at most `limit`.
    pub async fn at_risk_orders(&self, limit: i64) -> Result<Vec<OrderRecord>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE at_risk IS NOT NULL \
             AND state IN ('accepted', 'in_production', 'ready', 'out_for_delivery') \
             ORDER BY deadline_ms, id LIMIT $1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// How many orders still on their way are flagged at risk (metrics).
    pub async fn at_risk_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM orders WHERE at_risk IS NOT NULL \
             AND state IN ('accepted', 'in_production', 'ready', 'out_for_delivery')",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Cancels an order and its jobs that have not reached a machine. An order
    /// with a job on a machine cannot be cancelled (that job is being made).
    pub async fn cancel_order(
        &self,
        id: &str,
        brand: Option<&str>,
        actor: &str,
        now: Millis,
    ) -> Result<OrderRecord, StoreError> {
        let mut tx = self.begin().await?;
        lock_order(&mut tx, self.backend, id).await?;
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND ($2 IS NULL OR brand = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(brand)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(order) = row.as_ref().map(order_from_row).transpose()? else {
            return Err(StoreError::NotFound(format!("order {id}")));
        };
        let jobs = sqlx::query("SELECT token, state FROM jobs WHERE order_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut cancellable = Vec::new();
        for job in &jobs {
            let state: JobState = parse(&job.try_get::<String, _>("state")?)?;
            if state.is_on_machine() {
                return Err(StoreError::Conflict(format!(
                    "order {id} has job {} on a machine",
                    job.try_get::<i64, _>("token")?
                )));
            }
            if !state.is_terminal() {
                cancellable.push((job.try_get::<i64, _>("token")?, state));
            }
        }
        let (next, events) = order.state.handle(OrderInput::Cancel)?;
        set_order_state(&mut tx, &order, next, &events, now).await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "order.cancel", id, ""),
            now,
        )
        .await?;
        for (token, state) in cancellable {
            let (job_next, job_events) = state.handle(JobInput::Cancel)?;
            let done = sqlx::query(
                "UPDATE jobs SET state = $1, updated_ms = $2 WHERE token = $3 AND state = $4",
            )
            .bind(job_next.as_str())
            .bind(now)
            .bind(token)
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "job {token} changed while cancelling"
                )));
            }
            let token_text = token.to_string();
            let subject = Subject {
                kind: "job",
                id: &token_text,
                order_id: Some(&order.id),
                brand: Some(&order.brand),
            };
            for event in &job_events {
                emit(&mut tx, &subject, event, now).await?;
            }
        }
        tx.commit().await?;
        Ok(OrderRecord {
            state: next,
            updated_ms: now,
            ..order
        })
    }
}

async fn insert_orders(
    tx: &mut WriteTx,
    postgres: bool,
    batch: &[NewOrder],
) -> Result<Accepted, StoreError> {
    let claimed = claimed_keys(batch);
    if !postgres {
        // SQLite, the common case first: every key is new. The keys, the
        // orders and their jobs go in as one query; a key stored before
        // fails it, the query is undone to its savepoint, and the batch
        // takes the careful way below.
        let (outcomes, created) = decide(batch, HashMap::new());
        if created.is_empty() {
            return Ok(Accepted::nothing_ready(outcomes));
        }
        match write_sqlite(tx, &created, Some(&claimed)).await {
            Ok(takes) => return finish(tx, outcomes, &created, &takes).await,
            Err(err) if is_stored_key(&err) => {}
            Err(err) => return Err(err),
        }
    }

    let stored = claim_keys(tx, postgres, &claimed).await?;
    let (outcomes, created) = decide(batch, stored);
    if created.is_empty() {
        return Ok(Accepted::nothing_ready(outcomes));
    }
    let takes = match postgres {
        true => write_postgres(tx, &created).await?,
        false => write_sqlite(tx, &created, None).await?,
    };
    finish(tx, outcomes, &created, &takes).await
}

/// The keys the batch claims: the first order of the batch with each key
/// claims it; a later one with the same key shares its fate, as a retry
/// would. Sorted, so that two transactions holding the same keys take
/// them in one order and wait for each other rather than deadlock.
fn claimed_keys(batch: &[NewOrder]) -> Vec<(&NewOrder, &Idempotency)> {
    let mut claims: HashMap<(&str, &str), (&NewOrder, &Idempotency)> = HashMap::new();
    for order in batch.iter().filter(|order| !order.follows) {
        if let Some(idem) = &order.idempotency {
            claims
                .entry((order.brand.as_str(), idem.key.as_str()))
                .or_insert((order, idem));
        }
    }
    let mut claimed: Vec<(&NewOrder, &Idempotency)> = claims.into_values().collect();
    claimed.sort_by(|a, b| (a.0.brand.as_str(), &a.1.key).cmp(&(b.0.brand.as_str(), &b.1.key)));
    claimed
}

/// What was stored before under a key: its request's hash, status and
/// response.
type StoredKeys = HashMap<(String, String), (String, u16, String)>;

/// Claims `claimed` keys (one statement per chunk; a key stored before is
/// left as it is and not returned) and reads back what was stored under
/// those it could not claim (a retry, or a key used again).
async fn claim_keys(
    tx: &mut WriteTx,
    postgres: bool,
    claimed: &[(&NewOrder, &Idempotency)],
) -> Result<StoredKeys, StoreError> {
    let mut taken: HashSet<(String, String)> = HashSet::with_capacity(claimed.len());
    for chunk in claimed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{} ON CONFLICT (brand, key) DO NOTHING RETURNING brand, key",
            keys_insert_sql(tx.backend, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for key in chunk {
            query = bind_key(query, key);
        }
        for row in query.fetch_all(&mut **tx).await? {
            taken.insert((row.try_get("brand")?, row.try_get("key")?));
        }
    }
    let earlier: Vec<&(&NewOrder, &Idempotency)> = claimed
        .iter()
        .filter(|(order, idem)| !taken.contains(&(order.brand.to_string(), idem.key.clone())))
        .collect();
    let mut stored = StoredKeys::new();
    for chunk in earlier.chunks(ROWS_PER_STATEMENT) {
        let condition: Vec<String> = (0..chunk.len())
            .map(|i| match postgres {
                true => format!("(brand = ${} AND key = ${})", 2 * i + 1, 2 * i + 2),
                // Positional on SQLite, as `placeholders` says why.
                false => "(brand = ? AND key = ?)".to_string(),
            })
            .collect();
        let sql = format!(
            "SELECT brand, key, request_hash, status, response FROM idempotency WHERE {}",
            condition.join(" OR ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (order, idem) in chunk {
            query = query.bind(order.brand.as_str()).bind(idem.key.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert(
                (row.try_get("brand")?, row.try_get("key")?),
                (
                    row.try_get("request_hash")?,
                    u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(500),
                    row.try_get("response")?,
                ),
            );
        }
    }
    Ok(stored)
}

/// Each order's outcome given the keys `stored` before, and the orders to
/// create. An order that follows shares its leader's fate.
fn decide(batch: &[NewOrder], mut stored: StoredKeys) -> (Vec<AcceptOutcome>, Vec<&NewOrder>) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut created: Vec<&NewOrder> = Vec::with_capacity(batch.len());
    let mut leader = AcceptOutcome::Created;
    for order in batch {
        if order.follows {
            if leader == AcceptOutcome::Created {
                created.push(order);
            }
            outcomes.push(leader.clone());
            continue;
        }
        leader = AcceptOutcome::Created;
        if let Some(idem) = &order.idempotency {
            let slot = (order.brand.to_string(), idem.key.clone());
            if let Some((hash, status, response)) = stored.get(&slot) {
                leader = if *hash == idem.request_hash {
                    AcceptOutcome::Replayed {
                        status: *status,
                        response: response.clone(),
                    }
                } else {
                    AcceptOutcome::KeyReused
                };
                outcomes.push(leader.clone());
                continue;
            }
            // A later order of this batch with the same key sees this one.
            stored.insert(
                slot,
                (
                    idem.request_hash.clone(),
                    idem.status,
                    idem.response.clone(),
                ),
            );
        }
        outcomes.push(AcceptOutcome::Created);
        created.push(order);
    }
    (outcomes, created)
}

/// Whether `err` is a key of the batch found stored (the optimistic
/// SQLite write's unique violation on the idempotency table).
fn is_stored_key(err: &StoreError) -> bool {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) => {
            db.is_unique_violation() && db.message().contains("idempotency.")
        }
        _ => false,
    }
}

/// Whether a stock take fills line `line` of the `order`-th created order.
fn filled(takes: &[StockTake], order: usize, line: usize) -> bool {
    takes
        .iter()
        .any(|take| take.order == order && take.line == line)
}

/// The jobs of the created orders, but for the lines stock fills, with
/// their index in `token` (numbered from the job token counter later).
fn job_rows<'a>(created: &[&'a NewOrder], takes: &[StockTake]) -> Vec<NewJob<'a>> {
    let mut rows: Vec<NewJob> = Vec::new();
    for (index, order) in created.iter().enumerate() {
        for job in order
            .jobs
            .iter()
            .filter(|job| !filled(takes, index, job.line_index))
        {
            rows.push(NewJob {
                token: rows.len() as i64,
                order_id: &order.id,
                factory: &order.factory,
                plan: job,
                quantity: job.quantity,
                replaces: None,
                now: order.accepted_ms,
            });
        }
    }
    rows
}

/// PostgreSQL: the orders, the stock they take, their jobs.
async fn write_postgres(
    tx: &mut WriteTx,
    created: &[&NewOrder],
) -> Result<Vec<StockTake>, StoreError> {
    insert_order_rows(tx, created).await?;
    // Restocked units fill whole lines first (domain::returns::fill_from_stock):
    // such a line gets no jobs.
    let takes = plan_stock_takes(tx, true, &shelf_requests(created)).await?;
    let mut rows = job_rows(created, &takes);
    if !rows.is_empty() {
        let first = allocate(tx, "job_token", rows.len() as i64).await?;
        for row in &mut rows {
            row.token += first;
        }
        insert_jobs(tx, &rows).await?;
    }
    Ok(takes)
}

/// SQLite: the stock the orders take (read first: the shelves only), then
/// (`keys` first, if given) the orders, their jobs numbered from the job
/// token counter in SQL, and the counter moved on, as ONE query: one round
/// trip to SQLite's thread instead of one per statement (see
/// `write::sqlite_commit_query`). With `keys`, the query runs inside a
/// savepoint and is undone to it when it fails.
async fn write_sqlite(
    tx: &mut WriteTx,
    created: &[&NewOrder],
    keys: Option<&[(&NewOrder, &Idempotency)]>,
) -> Result<Vec<StockTake>, StoreError> {
    let takes = plan_stock_takes(tx, false, &shelf_requests(created)).await?;
    let rows = job_rows(created, &takes);
    let keys = keys.unwrap_or_default();
    let guarded = !keys.is_empty();
    let mut sql = String::new();
    if guarded {
        sql.push_str("SAVEPOINT optimistic;");
    }
    sql.push_str(&sqlite_batch_sql(keys.len(), created.len(), rows.len()));
    if guarded {
        sql.push_str(";RELEASE optimistic");
    }
    let query = bind_sqlite_batch(sqlx::query(AssertSqlSafe(sql)), keys, created, &rows)?;
    match query.execute(&mut **tx).await {
        Ok(_) => Ok(takes),
        Err(err) => {
            if guarded {
                sqlx::query("ROLLBACK TO optimistic; RELEASE optimistic")
                    .execute(&mut **tx)
                    .await?;
            }
            Err(err.into())
        }
    }
}

/// SQLite: the statements that store `keys` keys, `orders` orders and
/// `jobs` jobs numbered from the job token counter, and move the counter
/// on (no `;` at the end); [`bind_sqlite_batch`] binds their values.
fn sqlite_batch_sql(keys: usize, orders: usize, jobs: usize) -> String {
    let mut sql = String::new();
    for chunk in chunk_sizes(keys) {
        sql.push_str(&keys_insert_sql(Backend::Sqlite, chunk));
        sql.push(';');
    }
    for chunk in chunk_sizes(orders) {
        sql.push_str(&orders_insert_sql(Backend::Sqlite, chunk));
        sql.push(';');
    }
    for chunk in chunk_sizes(jobs) {
        sql.push_str(&sqlite_jobs_from_counter_sql(chunk));
        sql.push(';');
    }
    sql.push_str("UPDATE counters SET value = value + ? WHERE name = 'job_token'");
    sql
}

/// Binds the values of [`sqlite_batch_sql`], after those `query` holds.
fn bind_sqlite_batch<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    keys: &[(&NewOrder, &Idempotency)],
    created: &[&NewOrder],
    rows: &[NewJob<'_>],
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, StoreError> {
    let mut query = query;
    for key in keys {
        query = bind_key(query, key);
    }
    for order in created {
        query = bind_order(query, order)?;
    }
    for row in rows {
        // The token is the counter's value before the UPDATE + 1 + this.
        query = bind_job(query, row, row.token + 1);
    }
    Ok(query.bind(rows.len() as i64))
}

/// The created orders' events, the stock they took, and the orders stock
/// filled whole made ready.
async fn finish(
    tx: &mut WriteTx,
    outcomes: Vec<AcceptOutcome>,
    created: &[&NewOrder],
    takes: &[StockTake],
) -> Result<Accepted, StoreError> {
    insert_outbox(tx, accepted_events(created)).await?;
    for take in takes {
        let order = created[take.order];
        apply_stock_take(tx, take, &order.id, &order.brand, order.accepted_ms).await?;
    }
    let mut made_ready = false;
    for (index, order) in created.iter().enumerate() {
        let all_filled = (0..order.lines.len()).all(|line| filled(takes, index, line));
        if !takes.is_empty() && all_filled {
            made_ready = true;
            // Nothing to make: ready at its factory for the next wave.
            let (next, events) = OrderState::Accepted.handle(OrderInput::FilledFromStock)?;
            set_order_state_by_id(
                tx,
                &order.id,
                &order.brand,
                OrderState::Accepted,
                next,
                &events,
                order.accepted_ms,
            )
            .await?;
        }
    }
    Ok(Accepted {
        outcomes,
        made_ready,
    })
}

/// The `order.accepted` event of each created order.
fn accepted_events(created: &[&NewOrder]) -> Vec<OutboxRow> {
    created
        .iter()
        .map(|order| {
            let subject = Subject {
                kind: "order",
                id: &order.id,
                order_id: Some(&order.id),
                brand: Some(&order.brand),
            };
            let accepted = Event::OrderAccepted {
                factory: order.factory.clone(),
                lines: order
                    .lines
                    .iter()
                    .map(|line| OrderedLine {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
            };
            OutboxRow::new(&subject, &accepted, order.accepted_ms)
        })
        .collect()
}

fn keys_insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO idempotency (brand, key, request_hash, status, response, created_ms) VALUES {}",
        placeholders(backend, rows, 6)
    )
}

fn bind_key<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    (order, idem): &(&NewOrder, &Idempotency),
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(order.brand.to_string())
        .bind(idem.key.clone())
        .bind(idem.request_hash.clone())
        .bind(i64::from(idem.status))
        .bind(idem.response.clone())
        .bind(order.accepted_ms)
}

/// The lines each order asks of its factory's shelves.
fn shelf_requests<'a>(created: &[&'a NewOrder]) -> Vec<(&'a str, &'a [LineRequest])> {
    created
        .iter()
        .map(|order| (order.factory.as_str(), order.lines.as_slice()))
        .collect()
}

fn orders_insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO orders (id, brand, external_ref, state, customer_name, lat, lon, zone, factory, lines, \
         deadline_ms, accepted_ms, updated_ms) VALUES {}",
        placeholders(backend, rows, 13)
    )
}

fn bind_order<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    order: &NewOrder,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, StoreError> {
    let lines =
        serde_json::to_string(&order.lines).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(query
        .bind(order.id.to_string())
        .bind(order.brand.to_string())
        .bind(order.external_ref.clone())
        .bind(OrderState::Accepted.as_str())
        .bind(order.customer_name.clone())
        .bind(order.location.lat)
        .bind(order.location.lon)
        .bind(order.zone.clone())
        .bind(order.factory.to_string())
        .bind(lines)
        .bind(order.deadline_ms)
        .bind(order.accepted_ms)
        .bind(order.accepted_ms))
}

/// Inserts the orders with multi-row statements.
async fn insert_order_rows(tx: &mut WriteTx, created: &[&NewOrder]) -> Result<(), StoreError> {
    for chunk in created.chunks(ROWS_PER_STATEMENT) {
        let mut query = sqlx::query(AssertSqlSafe(orders_insert_sql(tx.backend, chunk.len())));
        for order in chunk {
            query = bind_order(query, order)?;
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
