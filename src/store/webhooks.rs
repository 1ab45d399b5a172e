//! Brand webhook endpoints and their deliveries. Times here are on the wall
//! clock (webhook timestamps are checked against the receiver's clock).

use super::write::{AuditEntry, allocate, record_audit};
use super::{Backend, Store, StoreError};
use crate::domain::Millis;
use crate::domain::webhook::{AfterFailure, DeliveryState, wants};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The most endpoints one brand may register.
pub const MAX_ENDPOINTS_PER_BRAND: i64 = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub brand: String,
    pub url: String,
    pub description: String,
    /// Event kinds or families (`order.*`) wanted; empty for every kind.
    pub kinds: Vec<String>,
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_until_ms: Option<Millis>,
    /// Events up to this `seq` are queued (or were before it was registered).
    pub cursor_seq: i64,
    pub created_ms: Millis,
}

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub brand: String,
    pub url: String,
    pub description: String,
    pub kinds: Vec<String>,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint_id: String,
    pub event_seq: i64,
    pub kind: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub first_attempt_ms: Option<Millis>,
    pub next_attempt_ms: Millis,
    pub last_attempt_ms: Option<Millis>,
    /// The endpoint's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: Millis,
}

/// A delivery whose attempt is due, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: WebhookDelivery,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until_ms: Option<Millis>,
    /// The event's id (`webhook-id`) and envelope (the body).
    pub event_id: String,
    pub payload: String,
}

const ENDPOINT_COLUMNS: &str = "id, brand, url, description, kinds, secret, previous_secret, \
     previous_until_ms, cursor_seq, created_ms";

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.event_seq, d.kind, d.state, d.attempts, \
     d.first_attempt_ms, d.next_attempt_ms, d.last_attempt_ms, d.last_status, d.last_error, \
     d.created_ms";

fn endpoint_from(row: &AnyRow) -> Result<WebhookEndpoint, StoreError> {
    let kinds: String = row.try_get("kinds")?;
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        brand: row.try_get("brand")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        kinds: serde_json::from_str(&kinds)
            .map_err(|err| StoreError::Corrupt(format!("webhook kinds {kinds:?}: {err}")))?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_until_ms: row.try_get("previous_until_ms")?,
        cursor_seq: row.try_get("cursor_seq")?,
        created_ms: row.try_get("created_ms")?,
    })
}

fn delivery_from(row: &AnyRow) -> Result<WebhookDelivery, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        event_seq: row.try_get("event_seq")?,
        kind: row.try_get("kind")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
        attempts: row.try_get("attempts")?,
        first_attempt_ms: row.try_get("first_attempt_ms")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        last_attempt_ms: row.try_get("last_attempt_ms")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// Registers an endpoint; it receives the brand's events committed from
    /// now on. Refused (conflict) past [`MAX_ENDPOINTS_PER_BRAND`].
    pub async fn create_endpoint(
        &self,
        new: &NewEndpoint,
        now: Millis,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.begin().await?;
        if self.backend() == Backend::Postgres {
            // Serialises registrations, so the count below holds.
            sqlx::query(
                "SELECT value FROM counters WHERE name = 'webhook_delivery_seq' FOR UPDATE",
            )
            .execute(&mut *tx)
            .await?;
        }
        let count: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM webhook_endpoints WHERE brand = $1")
                .bind(&new.brand)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if count >= MAX_ENDPOINTS_PER_BRAND {
            return Err(StoreError::Conflict(format!(
                "brand {} already has {count} webhook endpoints, the most allowed",
                new.brand
            )));
        }
        // Every event committed so far has a seq up to the counter's value;
        // later ones get larger seqs.
        let cursor: i64 = sqlx::query("SELECT value FROM counters WHERE name = 'event_seq'")
            .fetch_one(&mut *tx)
            .await?
            .try_get("value")?;
        let kinds = serde_json::to_string(&new.kinds)
            .map_err(|err| StoreError::Corrupt(format!("webhook kinds: {err}")))?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, brand, url, description, kinds, secret, \
             previous_secret, previous_until_ms, cursor_seq, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8)",
        )
        .bind(&new.id)
        .bind(&new.brand)
        .bind(&new.url)
        .bind(&new.description)
        .bind(kinds)
        .bind(&new.secret)
        .bind(cursor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(WebhookEndpoint {
            id: new.id.clone(),
            brand: new.brand.clone(),
            url: new.url.clone(),
            description: new.description.clone(),
            kinds: new.kinds.clone(),
            secret: new.secret.clone(),
            previous_secret: None,
            previous_until_ms: None,
            cursor_seq: cursor,
            created_ms: now,
        })
    }

    /// Endpoints, oldest first; only `brand`'s when given.
    pub async fn list_endpoints(
        &self,
        brand: Option<&str>,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE ($1 IS NULL OR brand = $1) ORDER BY created_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(brand)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(endpoint_from).collect()
    }

    /// One endpoint, if it exists (and is `brand`'s, when given).
    pub async fn endpoint(
        &self,
        brand: Option<&str>,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE id = $1 AND ($2 IS NULL OR brand = $2)"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(brand)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(endpoint_from).transpose()
    }

    /// Removes an endpoint and its deliveries; false if there was none.
    pub async fn delete_endpoint(
        &self,
        brand: Option<&str>,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let gone = sqlx::query(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND ($2 IS NULL OR brand = $2)",
        )
        .bind(id)
        .bind(brand)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "webhook.delete", id, ""),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `secret` the endpoint's secret; the one it replaces keeps
    /// signing (as a second signature) until `previous_until_ms`.
    pub async fn rotate_secret(
        &self,
        brand: Option<&str>,
        id: &str,
        secret: &str,
        previous_until_ms: Millis,
        actor: &str,
        now: Millis,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until_ms = $1, \
             secret = $2 WHERE id = $3 AND ($4 IS NULL OR brand = $4)",
        )
        .bind(previous_until_ms)
        .bind(secret)
        .bind(id)
        .bind(brand)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!("webhook endpoint {id}")));
        }
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "webhook.rotate_secret", id, ""),
            now,
        )
        .await?;
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        endpoint_from(&row)
    }

    /// Queues a delivery for every event an endpoint wants that was
    /// committed after its cursor, at most `limit` events per endpoint, and
    /// moves the cursor: one transaction per endpoint, the cursor moved by
    /// compare-and-set so two daemons never queue one event twice. Returns
    /// how many deliveries were queued.
    pub async fn queue_deliveries(&self, limit: i64, now: Millis) -> Result<usize, StoreError> {
        let mut queued = 0;
        for endpoint in self.list_endpoints(None).await? {
            let events = sqlx::query(
                "SELECT seq, kind FROM outbox WHERE brand = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(&endpoint.brand)
            .bind(endpoint.cursor_seq)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
            let Some(last) = events.last() else { continue };
            let last: i64 = last.try_get("seq")?;
            let wanted: Vec<(i64, String)> = events
                .iter()
                .map(|row| Ok((row.try_get("seq")?, row.try_get("kind")?)))
                .collect::<Result<Vec<(i64, String)>, StoreError>>()?
                .into_iter()
                .filter(|(_, kind)| wants(&endpoint.kinds, kind))
                .collect();
            let mut tx = self.begin().await?;
            let moved = sqlx::query(
                "UPDATE webhook_endpoints SET cursor_seq = $1 WHERE id = $2 AND cursor_seq = $3",
            )
            .bind(last)
            .bind(&endpoint.id)
            .bind(endpoint.cursor_seq)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                // Deleted, or another daemon queued these first.
                continue;
            }
            if !wanted.is_empty() {
                let first = allocate(&mut tx, "webhook_delivery_seq", wanted.len() as i64).await?;
                for (offset, (seq, kind)) in wanted.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (id, endpoint_id, event_seq, kind, state, \
                         attempts, first_attempt_ms, next_attempt_ms, last_attempt_ms, \
                         last_status, last_error, created_ms) \
                         VALUES ($1, $2, $3, $4, 'pending', 0, NULL, $5, NULL, NULL, NULL, $5)",
                    )
                    .bind(first + offset as i64)
                    .bind(&endpoint.id)
                    .bind(seq)
                    .bind(kind)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            queued += wanted.len();
        }
        Ok(queued)
    }

    /// Pending deliveries whose attempt is due at `now`, the longest waiting first.
    pub async fn due_deliveries(
        &self,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, e.url, e.secret, e.previous_secret, e.previous_until_ms, \
             o.id AS event_id, o.payload FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             JOIN outbox o ON o.seq = d.event_seq \
             WHERE d.state = 'pending' AND d.next_attempt_ms <= $1 \
             ORDER BY d.next_attempt_ms, d.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    delivery: delivery_from(row)?,
                    url: row.try_get("url")?,
                    secret: row.try_get("secret")?,
                    previous_secret: row.try_get("previous_secret")?,
                    previous_until_ms: row.try_get("previous_until_ms")?,
                    event_id: row.try_get("event_id")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect()
    }

    /// When the next pending delivery is due, if any is pending.
    pub async fn next_delivery_due(&self) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_ms) AS due FROM webhook_deliveries WHERE state = 'pending'",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(row.try_get("due")?)
    }

    /// Claims `delivery`'s attempt: counts it and moves its next attempt to
    /// `claim_until` (compare-and-set on the due time read), so nobody else
    /// sends it meanwhile and a crash mid-send is retried after that time.
    /// False if someone else claimed it, or it was replayed or removed.
    pub async fn claim_delivery(
        &self,
        delivery: &WebhookDelivery,
        now: Millis,
        claim_until: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, \
             first_attempt_ms = COALESCE(first_attempt_ms, $1), last_attempt_ms = $1, \
             next_attempt_ms = $2 \
             WHERE id = $3 AND state = 'pending' AND next_attempt_ms = $4 AND attempts = $5",
        )
        .bind(now)
        .bind(claim_until)
        .bind(delivery.id)
        .bind(delivery.next_attempt_ms)
        .bind(delivery.attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records an attempt's outcome: delivered, or retried at a later time,
    /// or dead. `attempts` is the claimed attempt's number; an outcome for
    /// an attempt that is no longer current (replayed meanwhile) is dropped.
    pub async fn record_attempt(
        &self,
        id: i64,
        attempts: i64,
        outcome: Result<u16, (Option<u16>, String, AfterFailure)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        match outcome {
            Ok(status) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'delivered', last_status = $1, \
                     last_error = NULL WHERE id = $2 AND state = 'pending' AND attempts = $3",
                )
                .bind(i64::from(status))
                .bind(id)
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
            }
            Err((status, error, after)) => {
                let (state, next) = match after {
                    AfterFailure::RetryAt(at) => ("pending", Some(at)),
                    AfterFailure::Dead => ("dead", None),
                };
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, \
                     next_attempt_ms = COALESCE($2, next_attempt_ms), last_status = $3, \
                     last_error = $4 WHERE id = $5 AND state = 'pending' AND attempts = $6",
                )
                .bind(state)
                .bind(next)
                .bind(status.map(i64::from))
                .bind(error)
                .bind(id)
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// An endpoint's deliveries after `after` (an id), oldest first, in
    /// `state` when given.
    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        state: Option<DeliveryState>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.endpoint_id = $1 \
             AND ($2 IS NULL OR d.state = $2) AND d.id > $3 ORDER BY d.id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(endpoint_id)
            .bind(state.map(DeliveryState::as_str))
            .bind(after.unwrap_or(0))
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(delivery_from).collect()
    }

    /// Sends a delivery again from its first attempt: dead and delivered
    /// ones can be replayed, a pending one is a conflict.
    pub async fn replay_delivery(
        &self,
        endpoint_id: &str,
        id: i64,
        actor: &str,
        now: Millis,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
             first_attempt_ms = NULL, next_attempt_ms = $1 \
             WHERE id = $2 AND endpoint_id = $3 AND state <> 'pending'",
        )
        .bind(now)
        .bind(id)
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.id = $1 AND d.endpoint_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        };
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "delivery {id} is pending already"
            )));
        }
        record_audit(
            &mut tx,
            &AuditEntry::new(
                actor,
                "webhook.replay",
                endpoint_id,
                &format!("delivery {id}"),
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        delivery_from(&row)
    }

    /// Replays every dead delivery of an endpoint; returns how many.
    pub async fn replay_dead(
        &self,
        endpoint_id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
             first_attempt_ms = NULL, next_attempt_ms = $1 \
             WHERE endpoint_id = $2 AND state = 'dead'",
        )
        .bind(now)
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(
                actor,
                "webhook.replay_dead",
                endpoint_id,
                &format!("{} deliveries", done.rows_affected()),
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Deliveries by state, for the metrics.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM webhook_deliveries GROUP BY state ORDER BY state",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("state")?, row.try_get("n")?)))
            .collect()
    }
}
