//! Intake load generator: many brand clients posting single orders to a running
//! fabflow, each waiting for its answer before sending the next (closed loop).
//!
//! ```text
//! cargo bench --bench intake_load -- --url http://127.0.0.1:8080 --token ffb_... --clients 32 --orders 20000
//! ```
//!
//! Each client holds one kept-alive HTTP/1.1 connection (hyper's client
//! connection, no pool) and writes its order's JSON straight into a string:
//! on a machine it shares with the daemon, the load generator's own CPU is
//! taken from the daemon, so it is kept small (about 16 us a request here,
//! against 32-41 us with reqwest; docs/benchmarks.md).
//!
//! `--url` (http:// only) may be repeated: the clients are spread over the daemons in turn.
//! Without `--url` it prints how to use it and exits 0, so a plain `cargo bench`
//! does not fail. It exits 1 if any request failed (transport error or a status
//! other than 2xx), including during the warm-up. See docs/benchmarks.md.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Post single orders to a running fabflow and report throughput and latency")]
struct Args {
    /// Base URL of the daemon, e.g. http://127.0.0.1:8080. Repeat it for
    /// several daemons: client i sends to the (i mod N)-th.
    #[arg(long)]
    url: Vec<String>,
    /// Brand token (ffb_...), sent as `Authorization: Bearer`.
    #[arg(long, env = "FABFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Concurrent clients, each sending one order at a time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// Orders to send in the measured phase.
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Orders sent before measuring (not counted in the results).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// SKU of the single order line.
    #[arg(long, default_value = "tee-black-m")]
    sku: String,
    /// Per-request timeout.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one phase (warm-up or measured) observed, merged over all clients.
#[derive(Debug, Default)]
struct Tally {
    /// Latency of every request that got a response, in microseconds.
    latencies_us: Vec<u64>,
    /// Responses by HTTP status code.
    statuses: BTreeMap<u16, usize>,
    /// Requests that got no response (connect error, timeout, reset).
    transport_errors: usize,
    /// A few examples of failures, for the report.
    samples: Vec<String>,
}

const MAX_SAMPLES: usize = 5;

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        for sample in other.samples {
            if self.samples.len() < MAX_SAMPLES {
                self.samples.push(sample);
            }
        }
    }

    fn note_failure(&mut self, sample: String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(sample);
        }
    }

    fn succeeded(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    fn failed(&self) -> usize {
        let answered: usize = self.statuses.values().sum();
        answered - self.succeeded() + self.transport_errors
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// An error and its causes, e.g. "error sending request: connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Everything a client task needs, shared by all of them.
struct Plan {
    token: String,
    /// The SKU as a JSON string (quoted and escaped).
    sku_json: String,
    /// Label in `external_ref`: `bench-N`, or `bench-warmup-N` in the warm-up.
    label: &'static str,
    total: usize,
    /// Next order number to send; each client takes one at a time until `total`.
    next: AtomicUsize,
    timeout: Duration,
}

/// A daemon to post to: `host:port`, where to connect and its `Host`
/// header alike (an IPv6 host keeps its brackets: `[::1]:8080`).
#[derive(Debug, Clone)]
struct Target {
    address: String,
}

impl Target {
    /// `http://host:port` (a path after it is ignored; https is not spoken).
    fn parse(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|err| format!("{url}: {err}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs are load-tested"));
        }
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            address: format!("{host}:{port}"),
        })
    }
}

/// One order's JSON, written straight into a string (the client's own
/// work stays small beside the daemon's on a shared machine).
fn order_body(plan: &Plan, number: usize) -> String {
    format!(
        r#"{{"external_ref":"{}-{number}","customer":{{"name":"Bench","lat":52.52,"lon":13.4}},"lines":[{{"sku":{},"quantity":1}}]}}"#,
        plan.label, plan.sku_json
    )
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// A kept-alive HTTP/1.1 connection to `target`.
async fn connect(target: &Target) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(&target.address)
        .await
        .map_err(|err| format!("connect {}: {err}", target.address))?;
    stream
        .set_nodelay(true)
        .map_err(|err| format!("nodelay: {err}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|err| format!("handshake: {}", error_chain(&err)))?;
    tokio::spawn(async move {
        // Ends when the connection closes; a failure shows in the next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request on `sender`: its status and body, or why there was none.
async fn post(
    sender: &mut Sender,
    plan: &Plan,
    target: &Target,
    number: usize,
) -> Result<(u16, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    let request = hyper::Request::post("/v1/orders")
        .header(hyper::header::HOST, &target.address)
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", plan.token),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from(order_body(
            plan, number,
        ))))
        .map_err(|err| format!("request: {err}"))?;
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|err| format!("connection: {}", error_chain(&err)))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("send: {}", error_chain(&err)))?;
        let status = response.status().as_u16();
        // The whole body is read so the connection can be reused.
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("body: {}", error_chain(&err)))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(plan.timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", plan.timeout.as_millis()))?
}

/// One client: a sequential loop of requests on its own connection to
/// `target` until the plan's orders run out. A connection that failed is
/// opened again for the next request.
async fn client_loop(
    plan: Arc<Plan>,
    target: Target,
    mut sender: Option<Sender>,
) -> (Tally, Option<Sender>) {
    let mut tally = Tally::default();
    loop {
        let number = plan.next.fetch_add(1, Ordering::Relaxed);
        if number >= plan.total {
            return (tally, sender);
        }
        let started = Instant::now();
        let connected = match sender.take() {
            Some(open) if !open.is_closed() => Ok(open),
            _ => tokio::time::timeout(plan.timeout, connect(&target))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "connect {}: no answer within {} ms",
                        target.address,
                        plan.timeout.as_millis()
                    ))
                }),
        };
        let result = match connected {
            Ok(mut open) => {
                let result = post(&mut open, &plan, &target, number).await;
                if result.is_ok() {
                    sender = Some(open);
                }
                result
            }
            Err(err) => Err(err),
        };
        match result {
            Ok((status, body)) => {
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                *tally.statuses.entry(status).or_default() += 1;
                if !(200..300).contains(&status) {
                    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                    tally.note_failure(format!("{status}: {text}"));
                }
            }
            Err(err) => {
                tally.transport_errors += 1;
                tally.note_failure(format!("transport: {err}"));
            }
        }
    }
}

/// Runs one phase with every client and returns what they saw and how
/// long it took; each client's connection is kept for the next phase.
async fn run_phase(
    connections: &mut [Option<Sender>],
    targets: &[Target],
    plan: Plan,
) -> (Tally, Duration) {
    let plan = Arc::new(plan);
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .iter_mut()
        .enumerate()
        .map(|(i, sender)| {
            let target = targets[i % targets.len()].clone();
            tokio::spawn(client_loop(Arc::clone(&plan), target, sender.take()))
        })
        .collect();
    let mut tally = Tally::default();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok((client_tally, sender)) => {
                tally.merge(client_tally);
                connections[i] = sender;
            }
            Err(err) => {
                tally.transport_errors += 1;
                tally.note_failure(format!("client task failed: {err}"));
            }
        }
    }
    (tally, started.elapsed())
}

fn print_failures(tally: &Tally) {
    for sample in &tally.samples {
        eprintln!("  e.g. {sample}");
    }
}

fn usage() {
    println!(
        "intake_load: posts single orders to a running fabflow and reports orders/s and latency.\n\
         \n\
         Start a daemon (`cargo run --release -- demo`), take the brand token (ffb_...) it prints, then:\n\
         \n\
         \x20   cargo bench --bench intake_load -- --url http://127.0.0.1:8080 --token ffb_... --clients 32 --orders 20000\n\
         \n\
         Options: --sku SKU (default tee-black-m), --warmup N (default 200), --timeout-ms MS (default 10000).\n\
         The token may also come from FABFLOW_TOKEN. See docs/benchmarks.md.\n\
         No --url given: nothing to measure."
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.url.is_empty() {
        usage();
        return ExitCode::SUCCESS;
    }
    let Some(token) = args.token else {
        eprintln!("intake_load: --token (or FABFLOW_TOKEN) is required with --url");
        return ExitCode::from(2);
    };
    let mut targets = Vec::new();
    for url in &args.url {
        match Target::parse(url.trim_end_matches('/')) {
            Ok(target) => targets.push(target),
            Err(err) => {
                eprintln!("intake_load: --url {err}");
                return ExitCode::from(2);
            }
        }
    }
    let sku_json = match serde_json::to_string(&args.sku) {
        Ok(json) => json,
        Err(err) => {
            eprintln!("intake_load: --sku: {err}");
            return ExitCode::from(2);
        }
    };
    // One connection per simulated brand client, opened on its first request.
    let mut connections: Vec<Option<Sender>> = (0..args.clients).map(|_| None).collect();

    println!(
        "intake_load: POST {}, {} clients, {} orders (+{} warm-up), sku {}",
        args.url
            .iter()
            .map(|url| format!("{}/v1/orders", url.trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(" and "),
        args.clients,
        args.orders,
        args.warmup,
        args.sku
    );

    let phase = |label, total| Plan {
        token: token.clone(),
        sku_json: sku_json.clone(),
        label,
        total,
        next: AtomicUsize::new(0),
        timeout: Duration::from_millis(args.timeout_ms),
    };

    if args.warmup > 0 {
        let (warmup, elapsed) = run_phase(
            &mut connections,
            &targets,
            phase("bench-warmup", args.warmup),
        )
        .await;
        println!(
            "warm-up: {} orders in {:.2} s",
            args.warmup,
            elapsed.as_secs_f64()
        );
        if warmup.failed() > 0 {
            eprintln!(
                "warm-up: {} of {} requests failed (statuses {:?}, transport errors {}); not measuring",
                warmup.failed(),
                args.warmup,
                warmup.statuses,
                warmup.transport_errors
            );
            print_failures(&warmup);
            return ExitCode::FAILURE;
        }
    }

    let (mut tally, elapsed) =
        run_phase(&mut connections, &targets, phase("bench", args.orders)).await;
    tally.latencies_us.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    let succeeded = tally.succeeded();
    let failed = tally.failed();
    let sorted = &tally.latencies_us;

    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    println!(
        "requests: {} in {seconds:.2} s; statuses {{{}}}; transport errors {}",
        args.orders,
        statuses.join(", "),
        tally.transport_errors
    );
    println!(
        "throughput: {:.1} orders/s accepted",
        if seconds > 0.0 {
            succeeded as f64 / seconds
        } else {
            0.0
        }
    );
    println!(
        "latency ms (all answered requests, n={}): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        sorted.len(),
        millis(percentile(sorted, 50.0)),
        millis(percentile(sorted, 90.0)),
        millis(percentile(sorted, 99.0)),
        millis(sorted.last().copied().unwrap_or(0)),
    );
    println!("errors: {failed}");

    if failed > 0 {
        print_failures(&tally);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
