//! Brand webhooks, the I/O half: the endpoint use cases (register, rotate a
//! secret) and the delivery worker, which queues each endpoint's events from
//! the event log, signs them (Standard Webhooks) and POSTs them, retrying
//! failures on the [`RetryPolicy`] until they are delivered or dead.
//!
//! Delivery is at least once: a delivery is recorded as delivered only
//! after a 2xx, so a crash between the two sends it again (with the same
//! `webhook-id`, the event's id, for the receiver to drop).

use crate::domain::intake::FieldError;
use crate::domain::webhook::{
    self, AfterFailure, RetryPolicy, SECRET_BYTES, check_url, is_private, kind_problems,
};
use crate::domain::{BrandId, Millis};
use crate::runtime::Wakers;
use crate::store::{DueDelivery, NewEndpoint, Store, StoreError, WebhookEndpoint};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, RngCore};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Webhook settings, from the configuration's `[webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub retry: RetryPolicy,
    /// One attempt's limit (connect, send, answer).
    pub timeout: Duration,
    /// Attempts in flight at once, over every endpoint.
    pub concurrency: usize,
    /// Whether endpoints may be in private, loopback or link-local networks.
    pub allow_private_networks: bool,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub rotation_grace: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            concurrency: 8,
            allow_private_networks: false,
            rotation_grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl From<&crate::config::WebhooksConfig> for WebhookSettings {
    fn from(config: &crate::config::WebhooksConfig) -> Self {
        let ms = |v: u64| Millis::try_from(v).unwrap_or(Millis::MAX);
        WebhookSettings {
            retry: RetryPolicy {
                first_delay_ms: ms(config.first_retry_ms),
                max_delay_ms: ms(config.max_retry_ms),
                give_up_after_ms: ms(config.give_up_after_ms),
            },
            timeout: Duration::from_millis(config.timeout_ms),
            concurrency: config.concurrency,
            allow_private_networks: config.allow_private_networks,
            rotation_grace: Duration::from_millis(config.rotation_grace_ms),
        }
    }
}

/// Why an endpoint use case was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook endpoint")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Milliseconds since the Unix epoch on the wall clock.
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as Millis)
}

fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    webhook::secret_text(&key)
}

/// What a brand asks for when it registers an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    pub url: String,
    pub description: String,
    pub kinds: Vec<String>,
}

impl super::Runtime {
    /// Registers an endpoint for `brand`, with a new secret; it receives the
    /// brand's events from now on.
    pub async fn register_webhook(
        &self,
        brand: &BrandId,
        request: EndpointRequest,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let mut problems = kind_problems(&request.kinds);
        let url = check_url(&request.url, self.webhooks.allow_private_networks);
        if let Err(problem) = &url {
            problems.insert(0, problem.clone());
        }
        // A description is optional; when given, it is a name like any other.
        if !request.description.is_empty()
            && let Some(reason) = crate::domain::intake::text_problem(&request.description)
        {
            problems.push(FieldError::new("/description", reason));
        }
        let url = match url {
            Ok(url) if problems.is_empty() => url,
            _ => return Err(WebhookError::Invalid(problems)),
        };
        let mut kinds = request.kinds;
        kinds.sort();
        kinds.dedup();
        let new = NewEndpoint {
            id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
            brand: brand.to_string(),
            url: url.to_string(),
            description: request.description,
            kinds,
            secret: new_secret(),
        };
        let endpoint = self.store.create_endpoint(&new, wall_ms()).await?;
        info!(webhook.id = %endpoint.id, brand = %endpoint.brand, "webhook endpoint registered");
        Ok(endpoint)
    }

    /// Wakes the delivery worker (a replay is due at once).
    pub fn wake_webhooks(&self) {
        self.wakers.wake(super::Wake::OUTBOX);
    }

    /// Gives an endpoint a new secret; the old one keeps signing beside it
    /// for the rotation grace, so the brand can switch over without loss.
    pub async fn rotate_webhook_secret(
        &self,
        brand: Option<&str>,
        id: &str,
        actor: &str,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let grace = self.webhooks.rotation_grace.as_millis() as Millis;
        let now = wall_ms();
        let endpoint = self
            .store
            .rotate_secret(brand, id, &new_secret(), now + grace, actor, now)
            .await?;
        info!(webhook.id = %endpoint.id, "webhook secret rotated");
        Ok(endpoint)
    }
}

/// Resolves endpoint names, refusing private, loopback and link-local
/// addresses (unless allowed): a brand cannot point the daemon at the
/// factory's own network, whatever its DNS answers at delivery time.
/// (Address literals never reach a resolver: [`check_url`] refuses them.)
#[derive(Debug, Clone, Copy)]
struct PublicResolver {
    allow_private: bool,
}

impl tower::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allow_private || !is_private(addr.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves to no public address (webhooks.allow_private_networks)"
                    ),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector<PublicResolver>>, Full<Bytes>>;

/// The HTTP client for deliveries (HTTP/1.1, rustls with the system's
/// roots, the public-only resolver unless allowed). It follows no redirect:
/// a redirect is a failure for the brand to fix.
#[derive(Clone)]
pub struct WebhookClient {
    client: HttpsClient,
    timeout: Duration,
}

impl WebhookClient {
    pub fn new(settings: &WebhookSettings) -> anyhow::Result<WebhookClient> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A certificate the store cannot use is skipped, as browsers do.
            roots.add(cert).ok();
        }
        if roots.is_empty() {
            warn!(
                "no system root certificates found: https webhooks will fail (install ca-certificates)"
            );
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(PublicResolver {
            allow_private: settings.allow_private_networks,
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(WebhookClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout: settings.timeout,
        })
    }

    /// POSTs `body` with `headers`; the answer's status, or why there was none.
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<u16, String> {
        let mut request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("fabflow-webhooks/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| format!("bad request: {err}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| describe(&err))?;
            let status = response.status().as_u16();
            // Read (and drop) a little of the answer so the connection can
            // be kept; a huge or endless answer is cut short.
            let mut body = response.into_body();
            let mut read = 0usize;
            while read < 64 * 1024 {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            Ok(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

/// The delivery worker.
pub struct Deliverer {
    pub store: Store,
    pub settings: WebhookSettings,
    pub client: WebhookClient,
    /// Woken with the outbox publisher when events are written.
    pub wakers: Wakers,
}

/// Events read from the log per endpoint per pass.
const QUEUE_BATCH: i64 = 500;
/// Deliveries taken per pass.
const SEND_BATCH: i64 = 200;
/// The longest the worker sleeps without looking (new endpoints, replays).
const IDLE: Duration = Duration::from_secs(1);

impl Deliverer {
    /// Queues and sends until cancelled; attempts in flight at cancellation
    /// are abandoned (their claims lapse and they are sent again later).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let busy = tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.pass() => match result {
                    Ok(busy) => busy,
                    Err(err) => {
                        warn!(error = %err, "webhook pass failed; retrying");
                        false
                    }
                },
            };
            if busy {
                continue;
            }
            let wait = match self.store.next_delivery_due().await {
                Ok(Some(due)) => Duration::from_millis(due.saturating_sub(wall_ms()).max(0) as u64),
                _ => IDLE,
            }
            .min(IDLE);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wakers.webhooks_woken() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass: queue new events, send what is due. True if there may be
    /// more to do at once.
    async fn pass(&self) -> Result<bool, StoreError> {
        let now = wall_ms();
        let queued = self.store.queue_deliveries(QUEUE_BATCH, now).await?;
        if queued > 0 {
            debug!(queued, "webhook deliveries queued");
        }
        let due = self.store.due_deliveries(now, SEND_BATCH).await?;
        let full = due.len() as i64 == SEND_BATCH;
        futures::stream::iter(due)
            .for_each_concurrent(self.settings.concurrency.max(1), |due| async move {
                if let Err(err) = self.attempt(due).await {
                    warn!(error = %err, "webhook attempt not recorded");
                }
            })
            .await;
        self.record_counts().await;
        Ok(full || queued as i64 >= QUEUE_BATCH)
    }

    async fn record_counts(&self) {
        if let Ok(counts) = self.store.delivery_counts().await {
            for state in ["pending", "dead"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("fabflow_webhook_deliveries", "state" => state).set(n as f64);
            }
        }
    }

    /// Claims, sends and records one attempt.
    async fn attempt(&self, due: DueDelivery) -> Result<(), StoreError> {
        let now = wall_ms();
        // Claimed past the attempt's whole time, so nobody else sends it.
        let claim_until = now + 2 * self.settings.timeout.as_millis() as Millis + 1_000;
        if !self
            .store
            .claim_delivery(&due.delivery, now, claim_until)
            .await?
        {
            return Ok(());
        }
        let attempts = due.delivery.attempts + 1;
        let first_attempt = due.delivery.first_attempt_ms.unwrap_or(now);
        let outcome = match self.send(&due, now).await {
            Ok(status) => {
                metrics::counter!("fabflow_webhook_attempts_total", "outcome" => "delivered")
                    .increment(1);
                debug!(webhook.id = %due.delivery.endpoint_id, event.seq = due.delivery.event_seq, status, "webhook delivered");
                Ok(status)
            }
            Err((status, error)) => {
                let after = self.settings.retry.after_failure(
                    u32::try_from(attempts).unwrap_or(u32::MAX),
                    first_attempt,
                    wall_ms(),
                    rand::rng().random::<f64>(),
                );
                let outcome = match after {
                    AfterFailure::Dead => "dead",
                    AfterFailure::RetryAt(_) => "failed",
                };
                metrics::counter!("fabflow_webhook_attempts_total", "outcome" => outcome)
                    .increment(1);
                warn!(webhook.id = %due.delivery.endpoint_id, event.seq = due.delivery.event_seq,
                      attempts, status, error = %error, outcome, "webhook attempt failed");
                Err((status, error, after))
            }
        };
        self.store
            .record_attempt(due.delivery.id, attempts, outcome)
            .await
    }

    /// POSTs the event; the status on a 2xx, else what went wrong.
    async fn send(&self, due: &DueDelivery, now: Millis) -> Result<u16, (Option<u16>, String)> {
        // Checked again at every attempt: the setting may have changed.
        check_url(&due.url, self.settings.allow_private_networks)
            .map_err(|problem| (None, problem.reason))?;
        let mut keys = Vec::new();
        keys.extend(webhook::secret_key(&due.secret));
        if let (Some(previous), Some(until)) = (&due.previous_secret, due.previous_until_ms)
            && until > now
        {
            keys.extend(webhook::secret_key(previous));
        }
        if keys.is_empty() {
            return Err((None, "the endpoint's secret is unreadable".into()));
        }
        let timestamp = now / 1000;
        let signature =
            webhook::signature_header(&keys, &due.event_id, timestamp, due.payload.as_bytes());
        let headers = [
            ("webhook-id", due.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let status = self
            .client
            .post(&due.url, &headers, due.payload.clone())
            .await
            .map_err(|error| (None, error))?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err((Some(status), format!("the endpoint answered {status}")))
        }
    }
}

/// A transport error with its causes, short enough to store.
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = if err.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}
