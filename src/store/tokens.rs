//! API tokens, stored only as SHA-256 hashes of the token text, with a
//! public id (the hash's first 12 hex digits), an optional expiry and a
//! revocation time; and the audit trail of operator and admin decisions.
//!
//! Invariant: a revoked or expired token is never found. A revocation bumps
//! the `token_epoch` counter in its own transaction, so every daemon that
//! polls it drops its cached tokens.

use super::write::{AuditEntry, allocate, record_audit};
use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::Row;

/// The length of a token's public id (hex digits of its hash).
pub const TOKEN_ID_LEN: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub role: String,
    /// Brand id, courier id, comma-separated factory ids, or `*`.
    pub scope: String,
    pub name: String,
}

/// A token as listed for admins (never its text or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListing {
    pub id: String,
    pub role: String,
    pub scope: String,
    pub name: String,
    pub created_ms: Millis,
    pub expires_ms: Option<Millis>,
    pub revoked_ms: Option<Millis>,
}

/// A token found for a request: who it is, and until when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken {
    pub id: String,
    pub record: TokenRecord,
    pub expires_ms: Option<Millis>,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl Store {
    /// Stores a new token's hash; its creation is audited as `actor`'s.
    pub async fn insert_token(
        &self,
        hash: &str,
        record: &TokenRecord,
        expires_ms: Option<Millis>,
        actor: &str,
        now: Millis,
    ) -> Result<String, StoreError> {
        let id: String = hash.chars().take(TOKEN_ID_LEN).collect();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (hash, id, role, scope, name, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(&id)
        .bind(&record.role)
        .bind(&record.scope)
        .bind(&record.name)
        .bind(now)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await?;
        let detail = format!("{} {} ({})", record.role, record.scope, record.name);
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "token.create", &id, &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The token with this hash, unless it is revoked or expired at `now`.
    pub async fn find_token(
        &self,
        hash: &str,
        now: Millis,
    ) -> Result<Option<FoundToken>, StoreError> {
        let row = sqlx::query(
            "SELECT id, role, scope, name, expires_ms FROM api_tokens WHERE hash = $1 \
             AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2)",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| {
            Ok(FoundToken {
                id: row.try_get("id")?,
                record: TokenRecord {
                    role: row.try_get("role")?,
                    scope: row.try_get("scope")?,
                    name: row.try_get("name")?,
                },
                expires_ms: row.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenListing>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, scope, name, created_ms, expires_ms, revoked_ms FROM api_tokens \
             ORDER BY created_ms, id",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenListing {
                    id: row.try_get("id")?,
                    role: row.try_get("role")?,
                    scope: row.try_get("scope")?,
                    name: row.try_get("name")?,
                    created_ms: row.try_get("created_ms")?,
                    expires_ms: row.try_get("expires_ms")?,
                    revoked_ms: row.try_get("revoked_ms")?,
                })
            })
            .collect()
    }

    /// Revokes the token with this public id; bumps the token epoch so every
    /// daemon drops its cached tokens. NotFound when no live token has it.
    pub async fn revoke_token(&self, id: &str, actor: &str, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!("live token {id}")));
        }
        allocate(&mut tx, "token_epoch", 1).await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "token.revoke", id, ""),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The revocation counter: it changes whenever a token is revoked.
    pub async fn token_epoch(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'token_epoch'")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("value")?)
    }

    /// The audit trail after `after` (a `seq`), oldest first.
    pub async fn list_audit(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, action, target, detail FROM audit \
             WHERE ($1 IS NULL OR seq > $1) ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    at_ms: row.try_get("at_ms")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
