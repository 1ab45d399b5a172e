//! The embedded broker's users: passwords generated here (24 random bytes,
//! hex), stored only as SHA-256 hashes, checked in constant time. The
//! daemon's own user is not stored: its password is drawn at each start and
//! lives only in memory.

use super::access::{Identity, MachineTopics, MqttRole, invalid_id};
use crate::domain::Millis;
use crate::store::{MqttUserRecord, Store, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The user name of the daemon's own clients (reserved: never stored).
pub const DAEMON_USER: &str = "fabflow";
/// The user name of the observer created at first start.
pub const OBSERVER_USER: &str = "observer";

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("MQTT user {user:?}: {reason}")]
    InvalidName { user: String, reason: &'static str },
    #[error("MQTT user {0:?} is reserved for the daemon")]
    Reserved(String),
    #[error("MQTT user role {0:?} cannot be stored (observer, courier, brand or machine)")]
    Role(MqttRole),
    #[error("MQTT user {0:?}: a machine needs its factory")]
    NoFactory(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A user created now, with its password (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub role: MqttRole,
    pub password: String,
}

/// A new random password: 24 bytes, hex.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a password, as stored.
pub fn hash_password(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal contents, compared in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Checks logins against the daemon's own password and the stored users.
#[derive(Clone)]
pub struct Users {
    store: Store,
    /// Hash of the daemon's password for this run.
    daemon_hash: String,
    /// The configured MQTT machines' topics, by user name (machine id).
    machine_topics: Arc<HashMap<String, MachineTopics>>,
}

impl Users {
    /// The users of `store`; the daemon's clients log in with `daemon_password`.
    /// A machine user named in `machine_topics` may publish only its
    /// report topic and read only its command topic.
    pub fn new(
        store: Store,
        daemon_password: &str,
        machine_topics: HashMap<String, MachineTopics>,
    ) -> Users {
        Users {
            store,
            daemon_hash: hash_password(daemon_password),
            machine_topics: Arc::new(machine_topics),
        }
    }

    /// The identity `username` logs in as, if `password` is its password.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let offered = hash_password(password);
        if username == DAEMON_USER {
            return Ok(
                same(offered.as_bytes(), self.daemon_hash.as_bytes()).then(|| Identity {
                    role: MqttRole::Daemon,
                    user: DAEMON_USER.into(),
                    factory: String::new(),
                    topics: None,
                }),
            );
        }
        let Some(record) = self.store.find_mqtt_user(username).await? else {
            return Ok(None);
        };
        if !same(offered.as_bytes(), record.password_hash.as_bytes()) {
            return Ok(None);
        }
        // A row with a role this version does not know grants nothing.
        Ok(MqttRole::parse(&record.role)
            .filter(|role| *role != MqttRole::Daemon)
            .map(|role| Identity {
                topics: (role == MqttRole::Machine)
                    .then(|| self.machine_topics.get(&record.username).cloned())
                    .flatten(),
                role,
                user: record.username,
                factory: record.factory,
            }))
    }
}

/// Who the audit trail names for the users the daemon makes at start.
const DAEMON_ACTOR: &str = "daemon (configured)";

/// Creates `username` with a new password unless it exists; the new user,
/// or None if it existed. `actor` is named in the audit trail.
pub async fn create(
    store: &Store,
    role: MqttRole,
    username: &str,
    factory: Option<&str>,
    actor: &str,
    now: Millis,
) -> Result<Option<NewUser>, UserError> {
    if username == DAEMON_USER {
        return Err(UserError::Reserved(username.into()));
    }
    if role == MqttRole::Daemon {
        return Err(UserError::Role(role));
    }
    if let Some(reason) = invalid_id(username) {
        return Err(UserError::InvalidName {
            user: username.into(),
            reason,
        });
    }
    let factory = match (role, factory) {
        (MqttRole::Machine, Some(factory)) => {
            if let Some(reason) = invalid_id(factory) {
                return Err(UserError::InvalidName {
                    user: factory.into(),
                    reason,
                });
            }
            factory.to_string()
        }
        (MqttRole::Machine, None) => return Err(UserError::NoFactory(username.into())),
        _ => String::new(),
    };
    let password = generate_password();
    let record = MqttUserRecord {
        username: username.into(),
        role: role.as_str().into(),
        factory,
        password_hash: hash_password(&password),
    };
    let added = store.insert_mqtt_user(&record, actor, now).await?;
    Ok(added.then(|| NewUser {
        username: username.into(),
        role,
        password,
    }))
}

/// Gives `username` a new password; None if there is no such user.
pub async fn rotate(
    store: &Store,
    username: &str,
    actor: &str,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    let password = generate_password();
    let changed = store
        .set_mqtt_password(username, &hash_password(&password), actor, now)
        .await?;
    Ok(changed.then_some(password))
}

/// At start: creates the observer, a user for each configured courier and
/// one for each configured MQTT machine (`(id, factory)`), those that do
/// not exist yet; returns the ones created (passwords shown once).
pub async fn ensure(
    store: &Store,
    couriers: &[String],
    machines: &[(String, String)],
    now: Millis,
) -> Result<Vec<NewUser>, UserError> {
    let mut created = Vec::new();
    created.extend(
        create(
            store,
            MqttRole::Observer,
            OBSERVER_USER,
            None,
            DAEMON_ACTOR,
            now,
        )
        .await?,
    );
    for (machine, factory) in machines {
        created.extend(
            create(
                store,
                MqttRole::Machine,
                machine,
                Some(factory),
                DAEMON_ACTOR,
                now,
            )
            .await?,
        );
    }
    for courier in couriers {
        if let Some(reason) = invalid_id(courier) {
            tracing::warn!(courier.id = %courier, reason, "courier id cannot name an MQTT user: no MQTT login made for it");
            continue;
        }
        created.extend(create(store, MqttRole::Courier, courier, None, DAEMON_ACTOR, now).await?);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_hex_and_compared_whole() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same(
            hash_password(&a).as_bytes(),
            hash_password(&a).as_bytes()
        ));
        assert!(!same(
            hash_password(&a).as_bytes(),
            hash_password(&b).as_bytes()
        ));
        assert!(!same(b"abc", b"abcd"));
    }
}
