//! Who may do what on the embedded broker: each MQTT identity's topic rules,
//! and the check of a PUBLISH topic or a SUBSCRIBE filter against them. Pure:
//! no I/O, table-tested below.
//!
//! A filter is allowed only if every topic it can match is allowed, so a
//! courier may subscribe `fabflow/v1/couriers/<own id>/#` but not
//! `fabflow/v1/couriers/+/schedule`, and `#` is only for the daemon and the
//! observer.

use std::fmt;

/// The kinds of MQTT user, as stored (`mqtt_users.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttRole {
    /// The daemon's own clients: publish and read everything.
    Daemon,
    /// Reads everything, publishes nothing (operators' tools, dashboards).
    Observer,
    /// Reads `fabflow/v1/couriers/<id>/#`, its own schedule.
    Courier,
    /// Reads `fabflow/v1/brands/<id>/#`, its own brand's events.
    Brand,
    /// Publishes `fabflow/v1/<factory>/<id>/state`, reads `.../cmd`.
    Machine,
}

impl MqttRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MqttRole::Daemon => "daemon",
            MqttRole::Observer => "observer",
            MqttRole::Courier => "courier",
            MqttRole::Brand => "brand",
            MqttRole::Machine => "machine",
        }
    }

    pub fn parse(text: &str) -> Option<MqttRole> {
        Some(match text {
            "daemon" => MqttRole::Daemon,
            "observer" => MqttRole::Observer,
            "courier" => MqttRole::Courier,
            "brand" => MqttRole::Brand,
            "machine" => MqttRole::Machine,
            _ => return None,
        })
    }
}

impl fmt::Display for MqttRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A connected client's identity: its role, its user name (the courier,
/// brand or machine id) and, for a machine, its factory and topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: MqttRole,
    pub user: String,
    /// The machine's factory; empty for other roles.
    pub factory: String,
    /// A configured MQTT machine's own topics (from its profile and serial);
    /// `None` for other roles, and for a machine user that is not configured
    /// (it keeps `fabflow/v1/<factory>/<id>/{state,cmd}`).
    pub topics: Option<MachineTopics>,
}

/// An MQTT machine's own topics: the one it publishes its reports on and
/// the one it reads its commands from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineTopics {
    pub report: String,
    pub command: String,
}

/// Why an id cannot name an MQTT user or sit in a topic level.
pub fn invalid_id(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("must not be empty")
    } else if id.len() > 128 {
        Some("must be at most 128 bytes")
    } else if id.contains(['/', '+', '#', '$', '\0']) {
        Some("must not contain '/', '+', '#', '$' or NUL")
    } else {
        None
    }
}

impl Identity {
    /// Topic patterns (MQTT filters) this identity may publish to.
    fn publishable(&self) -> Vec<String> {
        match self.role {
            MqttRole::Daemon => vec!["#".into()],
            MqttRole::Machine => match &self.topics {
                Some(topics) => vec![topics.report.clone()],
                None => vec![format!("fabflow/v1/{}/{}/state", self.factory, self.user)],
            },
            MqttRole::Observer | MqttRole::Courier | MqttRole::Brand => Vec::new(),
        }
    }

    /// Topic patterns (MQTT filters) this identity may read.
    fn readable(&self) -> Vec<String> {
        match self.role {
            MqttRole::Daemon | MqttRole::Observer => vec!["#".into()],
            MqttRole::Courier => vec![format!("fabflow/v1/couriers/{}/#", self.user)],
            MqttRole::Brand => vec![format!("fabflow/v1/brands/{}/#", self.user)],
            MqttRole::Machine => match &self.topics {
                Some(topics) => vec![topics.command.clone()],
                None => vec![format!("fabflow/v1/{}/{}/cmd", self.factory, self.user)],
            },
        }
    }

    /// Whether this identity may publish on `topic` (a topic name, never a
    /// filter: one with a wildcard is refused).
    pub fn may_publish(&self, topic: &str) -> bool {
        valid_topic(topic)
            && self
                .publishable()
                .iter()
                .any(|pattern| covers(pattern, topic))
    }

    /// Whether this identity may subscribe to `filter`: every topic the
    /// filter can match must be readable.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        valid_filter(filter)
            && self
                .readable()
                .iter()
                .any(|pattern| covers(pattern, filter))
    }
}

/// A topic name: not empty, no wildcards, no NUL.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A well-formed filter: `+` and `#` only as whole levels, `#` only last.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Whether every topic matched by `filter` is matched by `pattern` (both
/// well-formed filters; a topic name is a filter without wildcards).
fn covers(pattern: &str, filter: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut filter = filter.split('/');
    loop {
        match (pattern.next(), filter.next()) {
            // `#` covers whatever is left, including nothing.
            (Some("#"), _) => return true,
            (None, None) => return true,
            // `a/#` also matches `a`; only a pattern `#` covers that.
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(p), Some(f)) if p == f && f != "+" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: MqttRole, user: &str, factory: &str) -> Identity {
        Identity {
            role,
            user: user.into(),
            factory: factory.into(),
            topics: None,
        }
    }

    /// `(action, topic or filter, allowed)` for one identity.
    fn check(who: &Identity, cases: &[(&str, &str, bool)]) {
        for (action, topic, allowed) in cases {
            let got = match *action {
                "pub" => who.may_publish(topic),
                "sub" => who.may_subscribe(topic),
                other => panic!("test table: unknown action {other}"),
            };
            assert_eq!(got, *allowed, "{who:?} {action} {topic}");
        }
    }

    #[test]
    fn couriers_read_only_their_own_topics_and_publish_nothing() {
        check(
            &identity(MqttRole::Courier, "van-1", ""),
            &[
                ("sub", "fabflow/v1/couriers/van-1/schedule", true),
                ("sub", "fabflow/v1/couriers/van-1/#", true),
                ("sub", "fabflow/v1/couriers/van-1/+", true),
                ("sub", "fabflow/v1/couriers/van-2/schedule", false),
                ("sub", "fabflow/v1/couriers/+/schedule", false),
                ("sub", "fabflow/v1/couriers/#", false),
                ("sub", "fabflow/v1/#", false),
                ("sub", "#", false),
                ("sub", "+/v1/couriers/van-1/schedule", false),
                ("sub", "fabflow/v1/couriers/van-1", true),
                ("sub", "fabflow/v1/couriers/van-1/#/x", false),
                ("sub", "fabflow/v1/couriers/van-1/sch+", false),
                ("sub", "", false),
                ("pub", "fabflow/v1/couriers/van-1/schedule", false),
                ("pub", "fabflow/v1/events/order.delivered", false),
            ],
        );
    }

    #[test]
    fn brands_read_only_their_own_events() {
        check(
            &identity(MqttRole::Brand, "acme", ""),
            &[
                ("sub", "fabflow/v1/brands/acme/events/#", true),
                ("sub", "fabflow/v1/brands/acme/events/order.ready", true),
                ("sub", "fabflow/v1/brands/+/events/#", false),
                ("sub", "fabflow/v1/brands/other/events/#", false),
                ("sub", "fabflow/v1/events/#", false),
                ("sub", "#", false),
                (
                    "pub",
                    "fabflow/v1/brands/acme/events/order.delivered",
                    false,
                ),
                ("pub", "fabflow/v1/events/order.delivered", false),
            ],
        );
    }

    #[test]
    fn machines_publish_their_state_and_read_their_commands() {
        check(
            &identity(MqttRole::Machine, "press-1", "north"),
            &[
                ("pub", "fabflow/v1/north/press-1/state", true),
                ("pub", "fabflow/v1/north/press-2/state", false),
                ("pub", "fabflow/v1/south/press-1/state", false),
                ("pub", "fabflow/v1/north/press-1/cmd", false),
                ("pub", "fabflow/v1/north/+/state", false),
                ("sub", "fabflow/v1/north/press-1/cmd", true),
                ("sub", "fabflow/v1/north/press-1/state", false),
                ("sub", "fabflow/v1/north/+/cmd", false),
                ("sub", "fabflow/v1/north/press-1/#", false),
            ],
        );
    }

    #[test]
    fn configured_mqtt_machines_publish_only_their_report_and_read_only_their_commands() {
        let mut printer = identity(MqttRole::Machine, "printer-1", "centre");
        printer.topics = Some(MachineTopics {
            report: "device/01P00A/report".into(),
            command: "device/01P00A/request".into(),
        });
        check(
            &printer,
            &[
                ("pub", "device/01P00A/report", true),
                ("pub", "device/01P00B/report", false),
                ("pub", "device/01P00A/request", false),
                ("pub", "device/+/report", false),
                ("pub", "fabflow/v1/centre/printer-1/state", false),
                ("sub", "device/01P00A/request", true),
                ("sub", "device/01P00A/report", false),
                ("sub", "device/01P00A/#", false),
                ("sub", "device/+/request", false),
                ("sub", "fabflow/v1/centre/printer-1/cmd", false),
            ],
        );
    }

    #[test]
    fn the_daemon_does_everything_and_the_observer_only_reads() {
        check(
            &identity(MqttRole::Daemon, "fabflow", ""),
            &[
                ("pub", "fabflow/v1/events/order.delivered", true),
                ("pub", "fabflow/v1/couriers/van-1/schedule", true),
                ("pub", "fabflow/v1/events/+", false),
                ("sub", "#", true),
                ("sub", "fabflow/v1/+/+/state", true),
            ],
        );
        check(
            &identity(MqttRole::Observer, "observer", ""),
            &[
                ("sub", "#", true),
                ("sub", "fabflow/v1/couriers/+/schedule", true),
                ("pub", "fabflow/v1/events/order.delivered", false),
                ("pub", "fabflow/v1/couriers/van-1/schedule", false),
            ],
        );
    }

    #[test]
    fn ids_that_would_change_a_topic_are_refused() {
        for bad in ["", "a/b", "+", "van#1", "$SYS", "a$b", "a\0b"] {
            assert!(invalid_id(bad).is_some(), "{bad:?}");
        }
        for good in ["van-1", "demo-brand", "press_1", "Acme Ltd"] {
            assert_eq!(invalid_id(good), None, "{good:?}");
        }
    }
}
