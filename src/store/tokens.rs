//! API tokens, stored only as SHA-256 hashes of the token text.

use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub role: String,
    /// Brand id, courier id, comma-separated factory ids, or `*`.
    pub scope: String,
    pub name: String,
}

impl Store {
    pub async fn insert_token(
        &self,
        hash: &str,
        record: &TokenRecord,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO api_tokens (hash, role, scope, name, created_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(&record.role)
            .bind(&record.scope)
            .bind(&record.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT role, scope, name FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(self.reader())
            .await?;
        row.map(|row| {
            Ok(TokenRecord {
                role: row.try_get("role")?,
                scope: row.try_get("scope")?,
                name: row.try_get("name")?,
            })
        })
        .transpose()
    }
}
