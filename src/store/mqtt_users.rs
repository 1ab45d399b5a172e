//! Users of the embedded broker's access gateway; passwords stored only as
//! SHA-256 hashes. The store keeps them; the runtime decides what they mean.

use super::write::{AuditEntry, record_audit};
use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUserRecord {
    pub username: String,
    /// `observer`, `courier`, `brand` or `machine`.
    pub role: String,
    /// The machine's factory; empty for other roles.
    pub factory: String,
    /// Hex SHA-256 of the password.
    pub password_hash: String,
}

impl Store {
    /// Adds a user unless one with that name exists; true if added.
    pub async fn insert_mqtt_user(
        &self,
        user: &MqttUserRecord,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "INSERT INTO mqtt_users (username, role, factory, password_hash, created_ms, rotated_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.role)
        .bind(&user.factory)
        .bind(&user.password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let detail = format!("{} {}", user.role, user.factory);
            record_audit(
                &mut tx,
                &AuditEntry::new(actor, "mqtt_user.create", &user.username, detail.trim()),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a user's password hash; false if there is no such user.
    pub async fn set_mqtt_password(
        &self,
        username: &str,
        password_hash: &str,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE mqtt_users SET password_hash = $1, rotated_ms = $2 WHERE username = $3",
        )
        .bind(password_hash)
        .bind(now)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            record_audit(
                &mut tx,
                &AuditEntry::new(actor, "mqtt_user.rotate", username, ""),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a user; false if there was none.
    pub async fn delete_mqtt_user(
        &self,
        username: &str,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM mqtt_users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            record_audit(
                &mut tx,
                &AuditEntry::new(actor, "mqtt_user.delete", username, ""),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn find_mqtt_user(
        &self,
        username: &str,
    ) -> Result<Option<MqttUserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, role, factory, password_hash FROM mqtt_users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| record(&row)).transpose()
    }

    /// Every user, by name.
    pub async fn mqtt_users(&self) -> Result<Vec<MqttUserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, role, factory, password_hash FROM mqtt_users ORDER BY username",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(record).collect()
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<MqttUserRecord, StoreError> {
    Ok(MqttUserRecord {
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        factory: row.try_get("factory")?,
        password_hash: row.try_get("password_hash")?,
    })
}
