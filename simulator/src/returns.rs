//! Simulated customers and operator for returns: a seeded share of delivered
//! orders gets a return requested by the brand (`POST /v1/orders/{id}/returns`,
//! with the brand's token), and the operator inspects every return received
//! at a factory (`POST /v1/returns/{id}/inspection`), restocking most units
//! and scrapping some.
//!
//! Invariants: an order is decided once (the same seed asks for the same
//! orders' returns, of the same units); a request or inspection the daemon
//! refuses (4xx) is never tried again, one that failed in transport or with
//! a 5xx is tried on the next poll. Nothing here panics on what the daemon
//! sends.
//!
//! Architecture invariant: like the couriers, it knows only the wire.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::couriers::{CodeSource, roll};

/// What customers and the operator do with returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReturnsSpec {
    /// Share (0..=1) of delivered orders whose customer asks for a return.
    pub rate: f64,
    /// Chance (0..=1) that the operator scraps a returned unit rather than
    /// restocking it.
    pub scrap_rate: f64,
}

impl Default for ReturnsSpec {
    /// Nobody returns anything; what comes back is mostly restocked.
    fn default() -> ReturnsSpec {
        ReturnsSpec {
            rate: 0.0,
            scrap_rate: 0.2,
        }
    }
}

impl ReturnsSpec {
    /// Whether any return is ever asked for.
    pub fn is_active(&self) -> bool {
        self.rate > 0.0
    }

    /// Every field out of range.
    pub fn problems(&self) -> Vec<String> {
        [("return_rate", self.rate), ("scrap_rate", self.scrap_rate)]
            .into_iter()
            .filter(|(_, value)| !(0.0..=1.0).contains(value))
            .map(|(name, value)| format!("{name}: must be 0..=1, got {value}"))
            .collect()
    }
}

/// What the customers and the operator did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReturnsReport {
    /// Returns the daemon accepted (201).
    pub requested: usize,
    /// Units asked back in them.
    pub units: usize,
    /// Requests refused (4xx, e.g. the window closed); never retried.
    pub refused: usize,
    /// Inspections recorded (200).
    pub inspected: usize,
    pub restocked: usize,
    pub scrapped: usize,
    /// Failed requests (transport, 5xx, unreadable replies, refused inspections).
    pub errors: usize,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    #[serde(default)]
    lines: Vec<OrderLine>,
}

#[derive(Debug, Deserialize)]
struct OrderLine {
    quantity: u32,
}

#[derive(Debug, Deserialize)]
struct Return {
    id: String,
    #[serde(default)]
    lines: Vec<ReturnLine>,
}

#[derive(Debug, Deserialize)]
struct ReturnLine {
    line: u32,
    quantity: u32,
}

/// The units asked back of `order`, if its customer returns anything.
fn return_of(seed: u64, rate: f64, order: &Order) -> Option<(usize, u32)> {
    let quantities: Vec<u32> = order.lines.iter().map(|line| line.quantity).collect();
    asked_back(seed, rate, &order.id, &quantities)
}

/// What the customer of order `order_id` (its lines' `quantities`) asks
/// back at return share `rate`: None, or one line (by chance) and 1 to all
/// of its units. The same for the same seed, so that a test can tell which
/// returns to expect.
pub fn asked_back(
    seed: u64,
    rate: f64,
    order_id: &str,
    quantities: &[u32],
) -> Option<(usize, u32)> {
    if quantities.is_empty() || roll(seed, &["return", order_id]) >= rate {
        return None;
    }
    let pick = |what: &str, count: usize| {
        ((roll(seed, &[what, order_id]) * count as f64) as usize).min(count.saturating_sub(1))
    };
    let line = pick("return-line", quantities.len());
    let delivered = quantities[line];
    if delivered == 0 {
        return None;
    }
    let units = 1 + pick("return-units", delivered as usize) as u32;
    Some((line, units))
}

/// Per line of `back`, (restocked, scrapped): each unit scrapped by chance.
fn inspection_of(seed: u64, scrap_rate: f64, back: &Return) -> Vec<(u32, u32, u32)> {
    back.lines
        .iter()
        .map(|line| {
            let scrapped = (0..line.quantity)
                .filter(|unit| {
                    let key = format!("{}:{}:{unit}", back.id, line.line);
                    roll(seed, &["scrap", &key]) < scrap_rate
                })
                .count() as u32;
            (line.line, line.quantity - scrapped, scrapped)
        })
        .collect()
}

struct Customers {
    client: reqwest::Client,
    base: String,
    tokens: CodeSource,
    spec: ReturnsSpec,
    seed: u64,
    /// Orders decided (asked for, refused, or not returned): never again.
    decided: HashSet<String>,
    /// Returns inspected or refused: never again.
    inspected: HashSet<String>,
    report: ReturnsReport,
}

/// Runs until `cancel`: each poll asks for the returns of newly delivered
/// orders and inspects the returns received.
pub(crate) async fn run(
    client: reqwest::Client,
    base: String,
    tokens: CodeSource,
    spec: ReturnsSpec,
    seed: u64,
    poll_interval: Duration,
    cancel: CancellationToken,
) -> ReturnsReport {
    let rate = |value: f64| {
        if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        }
    };
    let mut customers = Customers {
        client,
        base,
        tokens,
        spec: ReturnsSpec {
            rate: rate(spec.rate),
            scrap_rate: rate(spec.scrap_rate),
        },
        seed,
        decided: HashSet::new(),
        inspected: HashSet::new(),
        report: ReturnsReport::default(),
    };
    info!(
        rate = customers.spec.rate,
        scrap_rate = customers.spec.scrap_rate,
        "customers started"
    );
    // Returns come from delivered orders; polls need not be as close as a courier's.
    let interval = poll_interval.max(Duration::from_millis(200));
    while !cancel.is_cancelled() {
        if cancel.run_until_cancelled(customers.poll()).await.is_none() {
            break;
        }
        if cancel
            .run_until_cancelled(tokio::time::sleep(interval))
            .await
            .is_none()
        {
            break;
        }
    }
    let report = customers.report;
    info!(
        requested = report.requested,
        inspected = report.inspected,
        restocked = report.restocked,
        scrapped = report.scrapped,
        errors = report.errors,
        "customers stopped"
    );
    report
}

impl Customers {
    async fn poll(&mut self) {
        if let Err(err) = self.request_returns().await {
            self.report.errors += 1;
            warn!(error = %err, "listing delivered orders failed; retrying next poll");
        }
        if let Err(err) = self.inspect_received().await {
            self.report.errors += 1;
            warn!(error = %err, "listing received returns failed; retrying next poll");
        }
    }

    /// Every page of `path` (which has a `?`), read with `token`.
    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Vec<T>, String> {
        let mut items = Vec::new();
        let mut after = String::new();
        loop {
            let url = format!("{}{path}&limit=500{after}", self.base);
            let response = self
                .client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|err| err.to_string())?;
            let status = response.status();
            let body = response.text().await.map_err(|err| err.to_string())?;
            if !status.is_success() {
                return Err(format!("GET {path}: HTTP {status}"));
            }
            let page: Page<T> =
                serde_json::from_str(&body).map_err(|err| format!("GET {path}: {err}"))?;
            items.extend(page.items);
            match page.next {
                Some(next) => after = format!("&after={next}"),
                None => return Ok(items),
            }
        }
    }

    /// POSTs `body` with `token`: Ok(true) on 2xx, Ok(false) on a refusal
    /// (4xx: never retried), Err to retry next poll.
    async fn post(&self, path: &str, token: &str, body: serde_json::Value) -> Result<bool, String> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        let text = response.text().await.unwrap_or_default();
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            warn!(path, status = status.as_u16(), body = %text.chars().take(200).collect::<String>(),
                "refused");
            return Ok(false);
        }
        Err(format!("POST {path}: HTTP {status}"))
    }

    async fn request_returns(&mut self) -> Result<(), String> {
        for token in self.tokens.brand_tokens.clone() {
            self.request_returns_of(&token).await?;
        }
        Ok(())
    }

    /// Asks for the returns of one brand's newly delivered orders.
    async fn request_returns_of(&mut self, brand_token: &str) -> Result<(), String> {
        let orders: Vec<Order> = self.all("/v1/orders?state=delivered", brand_token).await?;
        for order in orders {
            if self.decided.contains(&order.id) {
                continue;
            }
            let Some((line, units)) = return_of(self.seed, self.spec.rate, &order) else {
                self.decided.insert(order.id);
                continue;
            };
            let body = serde_json::json!({
                "lines": [{"line": line, "quantity": units}],
                "reason": "does not fit",
            });
            let path = format!("/v1/orders/{}/returns", order.id);
            match self.post(&path, brand_token, body).await {
                Ok(true) => {
                    self.report.requested += 1;
                    self.report.units += units as usize;
                    info!(order.id = %order.id, line, units, "return requested");
                }
                Ok(false) => self.report.refused += 1,
                Err(err) => {
                    self.report.errors += 1;
                    warn!(order.id = %order.id, error = %err, "return request failed; retrying");
                    continue;
                }
            }
            self.decided.insert(order.id);
        }
        Ok(())
    }

    async fn inspect_received(&mut self) -> Result<(), String> {
        let received: Vec<Return> = self
            .all("/v1/returns?state=received", &self.tokens.operator_token)
            .await?;
        for back in received {
            if self.inspected.contains(&back.id) {
                continue;
            }
            let lines = inspection_of(self.seed, self.spec.scrap_rate, &back);
            let body = serde_json::json!({
                "lines": lines
                    .iter()
                    .map(|(line, restocked, scrapped)| serde_json::json!({
                        "line": line, "restocked": restocked, "scrapped": scrapped,
                    }))
                    .collect::<Vec<_>>(),
            });
            let path = format!("/v1/returns/{}/inspection", back.id);
            match self.post(&path, &self.tokens.operator_token, body).await {
                Ok(true) => {
                    self.report.inspected += 1;
                    for (_, restocked, scrapped) in &lines {
                        self.report.restocked += *restocked as usize;
                        self.report.scrapped += *scrapped as usize;
                    }
                    info!(return.id = %back.id, "return inspected");
                }
                Ok(false) => self.report.errors += 1,
                Err(err) => {
                    self.report.errors += 1;
                    warn!(return.id = %back.id, error = %err, "inspection failed; retrying");
                    continue;
                }
            }
            self.inspected.insert(back.id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, quantities: &[u32]) -> Order {
        Order {
            id: id.to_string(),
            lines: quantities
                .iter()
                .map(|&quantity| OrderLine { quantity })
                .collect(),
        }
    }

    #[test]
    fn a_seeded_share_of_orders_is_returned_within_what_was_delivered() {
        let orders: Vec<Order> = (0..2000)
            .map(|i| order(&format!("order-{i}"), &[3, 1]))
            .collect();
        let returned: Vec<(usize, u32)> = orders
            .iter()
            .filter_map(|o| return_of(9, 0.05, o))
            .collect();
        assert!(
            (60..140).contains(&returned.len()),
            "{} of 2000 returned at 5%",
            returned.len()
        );
        for (line, units) in &returned {
            let delivered = [3, 1][*line];
            assert!((1..=delivered).contains(units), "{line} {units}");
        }
        assert!(returned.iter().any(|(line, _)| *line == 1));
        assert!(returned.iter().any(|(_, units)| *units > 1));
        let again: Vec<_> = orders
            .iter()
            .filter_map(|o| return_of(9, 0.05, o))
            .collect();
        assert_eq!(returned, again, "same seed, same returns");
        assert_eq!(
            orders.iter().filter_map(|o| return_of(9, 0.0, o)).count(),
            0
        );
        assert_eq!(return_of(9, 1.0, &order("empty", &[])), None);
    }

    #[test]
    fn inspections_count_every_unit_and_scrap_some() {
        let backs: Vec<Return> = (0..200)
            .map(|i| Return {
                id: format!("return-{i}"),
                lines: vec![ReturnLine {
                    line: 0,
                    quantity: 3,
                }],
            })
            .collect();
        let (mut restocked, mut scrapped) = (0, 0);
        for back in &backs {
            let lines = inspection_of(4, 0.2, back);
            assert_eq!(lines.len(), 1);
            let (line, kept, lost) = lines[0];
            assert_eq!((line, kept + lost), (0, 3));
            restocked += kept;
            scrapped += lost;
        }
        assert!(
            restocked > scrapped * 2,
            "{restocked} restocked, {scrapped} scrapped"
        );
        assert!(scrapped > 0);
        assert!(inspection_of(4, 0.0, &backs[0]).iter().all(|l| l.2 == 0));
    }
}
