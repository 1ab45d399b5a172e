//! Brand webhooks, the pure half: Standard Webhooks signing
//! (<https://www.standardwebhooks.com>), the retry schedule, and what an
//! endpoint may be (its URL, the event kinds it asks for).
//!
//! Signing: the secret is `whsec_` and the base64 of its key bytes; the
//! signature is `v1,` and the base64 of HMAC-SHA256(key, `{id}.{timestamp}.{body}`).
//! While a rotated-out secret is still honoured, both signatures are sent,
//! separated by a space, as the specification allows.

use super::Millis;
use super::intake::FieldError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
// Address types only (core::net): nothing here opens a socket.
use core::net::IpAddr;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of key in a secret we generate (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// The longest endpoint URL accepted.
pub const MAX_URL_CHARS: usize = 2_000;

/// The most event-kind filters one endpoint may have.
pub const MAX_KINDS: usize = 50;

/// A secret's text (`whsec_...`) from its key bytes.
pub fn secret_text(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a secret's text, if it is one.
pub fn secret_key(text: &str) -> Option<Vec<u8>> {
    let encoded = text.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// One signature, `v1,<base64>`, of a message with id `id`, sent at
/// `timestamp` (Unix seconds), with body `body`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of every length"),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret in use, the
/// current one first.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| signature(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// When a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with every failure...
    pub first_delay_ms: Millis,
    /// ...up to this.
    pub max_delay_ms: Millis,
    /// A delivery still failing this long after its first attempt is dead
    /// (left for the brand to list and replay).
    pub give_up_after_ms: Millis,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay_ms: 5_000,
            max_delay_ms: 3_600_000,
            give_up_after_ms: 24 * 3_600_000,
        }
    }
}

/// What becomes of a delivery whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(Millis),
    /// Stop: the brand lists and replays it.
    Dead,
}

impl RetryPolicy {
    /// The delivery failed its `attempts`-th attempt (1 for the first) at
    /// `now`; its first attempt was at `first_attempt_ms`. `jitter` is a
    /// uniform draw from [0, 1): the wait is the exponential delay times
    /// 0.5..1.5, so endpoints that failed together do not retry together.
    /// It is never dead before `give_up_after_ms` has passed, whatever the
    /// draw: at least that long of retries.
    pub fn after_failure(
        &self,
        attempts: u32,
        first_attempt_ms: Millis,
        now: Millis,
        jitter: f64,
    ) -> AfterFailure {
        if now.saturating_sub(first_attempt_ms) >= self.give_up_after_ms {
            return AfterFailure::Dead;
        }
        let doublings = attempts.saturating_sub(1).min(40);
        let delay = self
            .first_delay_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_delay_ms)
            .max(1);
        let factor = 0.5 + jitter.clamp(0.0, 1.0);
        let wait = ((delay as f64) * factor).round() as Millis;
        AfterFailure::RetryAt(now.saturating_add(wait.max(1)))
    }
}

/// Whether an event of kind `kind` goes to an endpoint that asked for
/// `filters` (none: every kind). A filter is a kind (`order.delivered`) or
/// a family (`order.*`).
pub fn wants(filters: &[String], kind: &str) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|filter| match filter.strip_suffix(".*") {
                Some(family) => kind
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => filter == kind,
            })
}

/// Problems with an endpoint's kind filters, each with its pointer.
pub fn kind_problems(filters: &[String]) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if filters.len() > MAX_KINDS {
        problems.push(FieldError::new(
            "/kinds",
            format!("at most {MAX_KINDS} filters, got {}", filters.len()),
        ));
    }
    for (index, filter) in filters.iter().enumerate() {
        let (family, name) = filter.split_once('.').unwrap_or((filter, ""));
        let word = |w: &str| {
            !w.is_empty() && w.len() <= 40 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        };
        if !(word(family) && (name == "*" || word(name))) {
            problems.push(FieldError::new(
                format!("/kinds/{index}"),
                format!(
                    "must be an event kind such as \"order.delivered\" or a family such as \"order.*\", got {filter:?}"
                ),
            ));
        }
    }
    problems
}

/// An endpoint's URL, checked: absolute http(s), a host, no credentials,
/// no fragment; an address literal in a private, loopback or link-local
/// range only when `allow_private`. (Names are checked again when they are
/// resolved, at every delivery.)
pub fn check_url(text: &str, allow_private: bool) -> Result<url::Url, FieldError> {
    let bad = |reason: String| FieldError::new("/url", reason);
    if text.chars().count() > MAX_URL_CHARS {
        return Err(bad(format!("at most {MAX_URL_CHARS} characters")));
    }
    let url = url::Url::parse(text).map_err(|err| bad(format!("not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "must be http:// or https://, got {}:",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password".into()));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a #fragment".into()));
    }
    let private = match url.host() {
        None => return Err(bad("needs a host".into())),
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if private && !allow_private {
        return Err(bad(
            "points into a private, loopback or link-local network, which this daemon does not call (webhooks.allow_private_networks)".into(),
        ));
    }
    Ok(url)
}

/// Addresses a webhook must not reach unless private networks are allowed:
/// loopback, private, shared (CGNAT), link-local (cloud metadata),
/// unspecified, multicast and broadcast; IPv6 unique-local and link-local,
/// and IPv4 addresses mapped into IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Retried for the policy's whole span without success.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries (their test vector).
    #[test]
    fn signs_the_reference_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_header_carries_one_signature_per_key_current_first() {
        let keys = vec![vec![1u8; 32], vec![2u8; 32]];
        let header = signature_header(&keys, "id", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&keys[0], "id", 5, b"{}"));
        assert_eq!(parts[1], signature(&keys[1], "id", 5, b"{}"));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn secrets_round_trip_and_refuse_other_text() {
        let key = vec![7u8; SECRET_BYTES];
        assert_eq!(secret_key(&secret_text(&key)), Some(key));
        assert_eq!(secret_key("whsec_"), None);
        assert_eq!(secret_key("sk_abc"), None);
        assert_eq!(secret_key("whsec_not base64!"), None);
    }

    #[test]
    fn retries_double_up_to_the_cap_with_jitter_around_the_delay() {
        let policy = RetryPolicy {
            first_delay_ms: 1_000,
            max_delay_ms: 8_000,
            give_up_after_ms: 100_000,
        };
        let cases = [
            (1, 0.5, 1_000),
            (2, 0.5, 2_000),
            (3, 0.5, 4_000),
            (4, 0.5, 8_000),
            (9, 0.5, 8_000),
            (1, 0.0, 500),
            (1, 0.999_999, 1_500),
            (4, 0.0, 4_000),
        ];
        for (attempts, jitter, wait) in cases {
            assert_eq!(
                policy.after_failure(attempts, 0, 10_000, jitter),
                AfterFailure::RetryAt(10_000 + wait),
                "attempt {attempts}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn a_delivery_dies_only_after_the_whole_span() {
        let policy = RetryPolicy::default();
        let day = 24 * 3_600_000;
        assert!(matches!(
            policy.after_failure(30, 0, day - 1, 0.0),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(policy.after_failure(30, 0, day, 0.0), AfterFailure::Dead);
        // Huge attempt counts neither overflow nor shrink the wait.
        assert_eq!(
            policy.after_failure(u32::MAX, 0, 1, 0.5),
            AfterFailure::RetryAt(1 + 3_600_000)
        );
    }

    #[test]
    fn the_default_policy_retries_for_at_least_a_day_whatever_the_draws() {
        let policy = RetryPolicy::default();
        for jitter in [0.0, 0.3, 0.999] {
            let (mut now, mut attempts) = (0, 1);
            while let AfterFailure::RetryAt(at) = policy.after_failure(attempts, 0, now, jitter) {
                assert!(at > now);
                now = at;
                attempts += 1;
            }
            assert!(
                now >= 24 * 3_600_000,
                "gave up at {now} ms (jitter {jitter})"
            );
            assert!(attempts < 100, "{attempts} attempts");
        }
    }

    #[test]
    fn kind_filters_match_kinds_and_families() {
        let filters = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: [(&[&str], &str, bool); 7] = [
            (&[], "order.delivered", true),
            (&["order.delivered"], "order.delivered", true),
            (&["order.delivered"], "order.ready", false),
            (&["order.*"], "order.ready", true),
            (&["order.*"], "orders.ready", false),
            (&["order.*"], "job.done", false),
            (&["job.done", "order.*"], "job.done", true),
        ];
        for (given, kind, expected) in cases {
            assert_eq!(wants(&filters(given), kind), expected, "{given:?} {kind}");
        }
    }

    #[test]
    fn kind_filters_are_checked_with_their_pointers() {
        let given: Vec<String> = ["order.*", "job.done", "*", "Order.done", "job.", "a.b.c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pointers: Vec<String> = kind_problems(&given)
            .into_iter()
            .map(|e| e.pointer.clone())
            .collect();
        assert_eq!(pointers, ["/kinds/2", "/kinds/3", "/kinds/4", "/kinds/5"]);
        let many = vec!["job.done".to_string(); MAX_KINDS + 1];
        assert_eq!(kind_problems(&many)[0].pointer, "/kinds");
    }

    #[test]
    fn urls_are_checked() {
        let ok = [
            "https://hooks.example.com/fabflow",
            "http://shop.example:8080/in?x=1",
        ];
        for url in ok {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        let refused = [
            ("ftp://example.com/", "http"),
            ("not a url", "not a URL"),
            ("https://user:pw@example.com/", "user name"),
            ("https://example.com/#x", "fragment"),
            ("http://127.0.0.1:9000/", "private"),
            ("http://localhost/", "private"),
            ("http://10.1.2.3/", "private"),
            ("http://169.254.169.254/latest/meta-data", "private"),
            ("http://[::1]/", "private"),
            ("http://[::ffff:192.168.0.1]/", "private"),
            ("http://[fd00::1]/", "private"),
        ];
        for (url, reason) in refused {
            let err = check_url(url, false).expect_err(url);
            assert_eq!(err.pointer, "/url");
            assert!(err.reason.contains(reason), "{url}: {}", err.reason);
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(check_url(&long, true).is_err());
    }

    #[test]
    fn public_addresses_are_not_private() {
        for ip in ["93.184.216.34", "2606:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = ip.parse().expect("literal");
            assert!(!is_private(ip), "{ip}");
        }
        for ip in [
            "100.64.0.1",
            "0.1.2.3",
            "255.255.255.255",
            "fe80::1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("literal");
            assert!(is_private(ip), "{ip}");
        }
    }
}
