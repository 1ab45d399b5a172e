//! Intake load generator: many brand clients posting single orders to a running
//! fabflow, each waiting for its answer before sending the next (closed loop).
//!
//! ```text
//! cargo bench --bench intake_load -- --url http://127.0.0.1:8080 --token ffb_... --clients 32 --orders 20000
//! ```
//!
//! `--url` may be repeated: the clients are spread over the daemons in turn.
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
    /// `POST /v1/orders` of each daemon.
    orders_urls: Vec<String>,
    token: String,
    sku: String,
    /// Label in `external_ref`: `bench-N`, or `bench-warmup-N` in the warm-up.
    label: &'static str,
    total: usize,
    /// Next order number to send; each client takes one at a time until `total`.
    next: AtomicUsize,
}

fn order_body(plan: &Plan, number: usize) -> serde_json::Value {
    serde_json::json!({
        "external_ref": format!("{}-{number}", plan.label),
        "customer": { "name": "Bench", "lat": 52.52, "lon": 13.40 },
        "lines": [ { "sku": plan.sku, "quantity": 1 } ],
    })
}

/// One client: a sequential loop of requests to `orders_url` until the
/// plan's orders run out.
async fn client_loop(client: reqwest::Client, plan: Arc<Plan>, orders_url: String) -> Tally {
    let mut tally = Tally::default();
    loop {
        let number = plan.next.fetch_add(1, Ordering::Relaxed);
        if number >= plan.total {
            return tally;
        }
        let body = order_body(&plan, number);
        let started = Instant::now();
        let sent = client
            .post(&orders_url)
            .bearer_auth(&plan.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                // Read the whole body so the connection can be reused.
                let text = response.text().await;
                let elapsed = started.elapsed();
                tally.latencies_us.push(elapsed.as_micros() as u64);
                *tally.statuses.entry(status.as_u16()).or_default() += 1;
                if !status.is_success() {
                    let text = text.unwrap_or_default();
                    let text: String = text.chars().take(300).collect();
                    tally.note_failure(format!("{status}: {text}"));
                }
            }
            Err(err) => {
                tally.transport_errors += 1;
                tally.note_failure(format!("transport: {}", error_chain(&err)));
            }
        }
    }
}

/// Runs one phase with every client and returns what they saw and how long it took.
async fn run_phase(clients: &[reqwest::Client], plan: Plan) -> (Tally, Duration) {
    let plan = Arc::new(plan);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let url = plan.orders_urls[i % plan.orders_urls.len()].clone();
            tokio::spawn(client_loop(client.clone(), Arc::clone(&plan), url))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(client_tally) => tally.merge(client_tally),
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
    let orders_urls: Vec<String> = args
        .url
        .iter()
        .map(|url| format!("{}/v1/orders", url.trim_end_matches('/')))
        .collect();

    let mut clients = Vec::new();
    for _ in 0..args.clients {
        // One client (and so one keep-alive connection) per simulated brand client.
        let built = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(args.timeout_ms))
            .tcp_nodelay(true)
            .build();
        match built {
            Ok(client) => clients.push(client),
            Err(err) => {
                eprintln!("intake_load: cannot build an HTTP client: {err}");
                return ExitCode::FAILURE;
            }
        }
    }

    println!(
        "intake_load: POST {}, {} clients, {} orders (+{} warm-up), sku {}",
        orders_urls.join(" and "),
        args.clients,
        args.orders,
        args.warmup,
        args.sku
    );

    let phase = |label, total| Plan {
        orders_urls: orders_urls.clone(),
        token: token.clone(),
        sku: args.sku.clone(),
        label,
        total,
        next: AtomicUsize::new(0),
    };

    if args.warmup > 0 {
        let (warmup, elapsed) = run_phase(&clients, phase("bench-warmup", args.warmup)).await;
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

    let (mut tally, elapsed) = run_phase(&clients, phase("bench", args.orders)).await;
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
