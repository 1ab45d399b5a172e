//! The one generic machine driver: owns the connection, reconnect with
//! exponential backoff, polling and timeouts for any [`MachineLink`], and
//! reports [`MachineFact`]s. Callers hold a cheap cloneable [`MachineHandle`].
//!
//! Invariants: one request in flight per connection (commands run between
//! polls on the driver task); after a timeout or transport error the link is
//! dropped and a new one connected; a device exception keeps the link; a
//! handle call always ends (an error when disconnected or stopped).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::AdapterError;
use crate::types::{JobCommand, MachineLink, MachineStatus, RunState};

/// A boxed, sendable future (what a [`Connector`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes new links to one machine. Implemented by [`crate::ModbusConnector`]
/// and by any `Fn() -> impl Future<Output = Result<Box<dyn MachineLink>, AdapterError>>`.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn MachineLink>, AdapterError>>;
}

impl<F, Fut> Connector for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn MachineLink>, AdapterError>> + Send + 'static,
{
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn MachineLink>, AdapterError>> {
        Box::pin(self())
    }
}

/// How one driver behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// The machine id, recorded as `machine.id` on the driver's span.
    pub name: String,
    /// Time between two status polls.
    pub poll_interval: Duration,
    /// Bound on one connect attempt. One link operation (which may be several
    /// requests, each bounded by the link itself) is bounded by
    /// `request_timeout * OPERATION_REQUESTS`, a backstop for links
    /// without their own timeouts.
    pub request_timeout: Duration,
    /// First reconnect delay; doubles after each failure.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl DriverConfig {
    /// Defaults: poll every 500 ms, 1 s timeout, backoff 100 ms doubling to 5 s.
    pub fn new(name: impl Into<String>) -> DriverConfig {
        DriverConfig {
            name: name.into(),
            poll_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// How many request timeouts one link operation may take before the driver
/// gives up on it (see [`DriverConfig::request_timeout`]).
pub const OPERATION_REQUESTS: u32 = 16;

/// What the driver observed. Facts, not decisions.
#[derive(Debug, Clone, PartialEq)]
pub enum MachineFact {
    /// A new connection is up; a fresh `Status` follows.
    Connected,
    /// A status poll (after every connect, then every `poll_interval`).
    Status(MachineStatus),
    /// A poll failed without losing the connection (a device exception or a
    /// reply the profile cannot explain, e.g. an unmapped state code).
    ReadFailed {
        error: String,
        /// A short label of the error's kind (`AdapterError::reason`), for metrics.
        reason: &'static str,
    },
    /// The connection was lost or could not be made; the driver reconnects.
    Disconnected {
        error: String,
        /// A short label of the error's kind (`AdapterError::reason`), for metrics.
        reason: &'static str,
    },
}

/// Capacity of the facts channel. When the consumer lags the driver waits
/// (polling slows down) rather than dropping facts.
const FACT_CAPACITY: usize = 64;
/// Capacity of the command channel; senders wait when it is full.
const COMMAND_CAPACITY: usize = 16;

enum Request {
    /// Read the status now, as on a tick (no reply: the status goes out as
    /// a fact).
    PollNow,
    ReadStatus(oneshot::Sender<Result<MachineStatus, AdapterError>>),
    StartJob(JobCommand, oneshot::Sender<Result<(), AdapterError>>),
    Acknowledge(oneshot::Sender<Result<(), AdapterError>>),
}

impl Request {
    fn refuse(self, error: impl Fn() -> AdapterError) {
        // A dropped receiver means the caller gave up; nothing to tell it.
        match self {
            Request::PollNow => {}
            Request::ReadStatus(reply) => drop(reply.send(Err(error()))),
            Request::StartJob(_, reply) => drop(reply.send(Err(error()))),
            Request::Acknowledge(reply) => drop(reply.send(Err(error()))),
        }
    }
}

/// A cheap, cloneable handle to one machine's driver.
#[derive(Debug, Clone)]
pub struct MachineHandle {
    /// Commands to the driver task, each with a oneshot for its reply. The
    /// driver owns the receiver; when it exits (cancel), sends fail and calls
    /// return [`AdapterError::DriverStopped`].
    commands: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::PollNow => f.write_str("PollNow"),
            Request::ReadStatus(_) => f.write_str("ReadStatus"),
            Request::StartJob(cmd, _) => write!(f, "StartJob({cmd:?})"),
            Request::Acknowledge(_) => f.write_str("Acknowledge"),
        }
    }
}

impl MachineHandle {
    /// Reads the status now, on the driver's connection.
    pub async fn read_status(&self) -> Result<MachineStatus, AdapterError> {
        self.call(Request::ReadStatus).await
    }

    /// Runs the profile's start steps. Not idempotent: after an error, read
    /// the status (job token) before retrying.
    pub async fn start_job(&self, cmd: JobCommand) -> Result<(), AdapterError> {
        self.call(|reply| Request::StartJob(cmd, reply)).await
    }

    /// Runs the profile's acknowledge steps.
    pub async fn acknowledge(&self) -> Result<(), AdapterError> {
        self.call(Request::Acknowledge).await
    }

    /// Asks the driver to read the status now rather than at its next tick
    /// (the status goes out as a fact, as a polled one does): work was just
    /// queued for the machine. Never waits; dropped when the driver's queue
    /// is full, it is not connected, or it has stopped.
    pub fn poll_now(&self) {
        let _ = self.commands.try_send(Request::PollNow);
    }

    /// True once the driver task has exited.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// Waits until the driver task has exited (after its cancel token fired
    /// and the in-flight request finished).
    pub async fn stopped(&self) {
        self.commands.closed().await;
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, AdapterError>>) -> Request,
    ) -> Result<T, AdapterError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(request(reply))
            .await
            .map_err(|_| AdapterError::DriverStopped)?;
        response.await.unwrap_or(Err(AdapterError::DriverStopped))
    }
}

/// Spawns machine drivers.
#[derive(Debug)]
pub struct MachineDriver;

impl MachineDriver {
    /// Spawns the driver task on the current tokio runtime. It runs until
    /// `cancel` fires, then finishes the in-flight request and exits; the facts
    /// channel closes when it has exited.
    pub fn spawn(
        config: DriverConfig,
        connector: impl Connector,
        cancel: CancellationToken,
    ) -> (MachineHandle, mpsc::Receiver<MachineFact>) {
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (fact_tx, fact_rx) = mpsc::channel(FACT_CAPACITY);
        let span = info_span!("machine", machine.id = %config.name);
        let task = Driver {
            config,
            connector: Box::new(connector),
            cancel,
            commands: command_rx,
            commands_open: true,
            facts: fact_tx,
        };
        tokio::spawn(task.run().instrument(span));
        (
            MachineHandle {
                commands: command_tx,
            },
            fact_rx,
        )
    }
}

/// Why the connected loop ended.
enum Exit {
    /// Cancelled, or nobody listens to facts any more: stop the driver.
    Stop,
    /// The link broke: reconnect.
    Lost(AdapterError),
}

struct Driver {
    config: DriverConfig,
    connector: Box<dyn Connector>,
    /// Stops the driver; checked only between requests, so an in-flight
    /// request always finishes (or times out) first.
    cancel: CancellationToken,
    /// Commands from handles. Closed (dropped) when the driver exits.
    commands: mpsc::Receiver<Request>,
    /// False once every handle is dropped (then only polling continues).
    commands_open: bool,
    /// Facts to the owner. If the owner drops the receiver the driver stops.
    facts: mpsc::Sender<MachineFact>,
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        let mut first_attempt = true;
        loop {
            if !first_attempt {
                debug!(
                    delay_ms = backoff.as_millis() as u64,
                    "waiting before reconnect"
                );
                if !self.wait_refusing(backoff).await {
                    break;
                }
            }
            first_attempt = false;
            if self.cancel.is_cancelled() {
                break;
            }
            let connected =
                tokio::time::timeout(self.config.request_timeout, self.connector.connect()).await;
            let link = match connected {
                Ok(Ok(link)) => link,
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => error,
                        _ => AdapterError::Timeout {
                            operation: "connect".to_string(),
                            after: self.config.request_timeout,
                        },
                    };
                    warn!(error = %error, "connect failed");
                    backoff = self.next_backoff(backoff);
                    if !self
                        .emit(MachineFact::Disconnected {
                            error: error.to_string(),
                            reason: error.reason(),
                        })
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            info!("connected");
            if !self.emit(MachineFact::Connected).await {
                break;
            }
            let mut polled_ok = false;
            match self.connected(link, &mut polled_ok).await {
                Exit::Stop => break,
                Exit::Lost(error) => {
                    warn!(error = %error, "connection lost");
                    if polled_ok {
                        backoff = self.config.backoff_min;
                    } else {
                        backoff = self.next_backoff(backoff);
                    }
                    if !self
                        .emit(MachineFact::Disconnected {
                            error: error.to_string(),
                            reason: error.reason(),
                        })
                        .await
                    {
                        break;
                    }
                }
            }
        }
        info!("driver stopped");
    }

    fn next_backoff(&self, current: Duration) -> Duration {
        (current * 2).clamp(self.config.backoff_min, self.config.backoff_max)
    }

    fn operation_timeout(&self) -> Duration {
        self.config.request_timeout * OPERATION_REQUESTS
    }

    /// Sleeps `delay` while refusing commands with `NotConnected`.
    /// Returns false when the driver must stop.
    async fn wait_refusing(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                request = self.commands.recv(), if self.commands_open => match request {
                    Some(request) => request.refuse(|| AdapterError::NotConnected),
                    None => self.commands_open = false,
                },
            }
        }
    }

    /// Polls and serves commands on one link until it breaks or we stop.
    ///
    /// Besides every `poll_interval`, it reads the status at once when the
    /// link has news (an MQTT report that changed something), and once more
    /// when a running job's progress says it is about to finish
    /// ([`FinishWatch`]), so that a finish is seen within moments rather
    /// than up to a whole interval later.
    async fn connected(&mut self, mut link: Box<dyn MachineLink>, polled_ok: &mut bool) -> Exit {
        let mut ticker = tokio::time::interval(self.config.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut finish = FinishWatch::new(self.config.poll_interval);
        loop {
            let extra = finish.read_at();
            let poll = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Exit::Stop,
                request = self.commands.recv(), if self.commands_open => {
                    let Some(request) = request else {
                        self.commands_open = false;
                        continue;
                    };
                    if let Request::PollNow = request {
                        Poll::Extra
                    } else {
                        if let Some(error) = self.serve(&mut *link, request).await {
                            return Exit::Lost(error);
                        }
                        continue;
                    }
                }
                _ = ticker.tick() => Poll::Tick,
                () = link.news() => Poll::Extra,
                () = tokio::time::sleep_until(extra.unwrap_or_else(Instant::now)), if extra.is_some() => Poll::Extra,
            };
            match self.bounded(link.read_status()).await {
                Ok(status) => {
                    *polled_ok = true;
                    finish.observe(&status, Instant::now(), poll);
                    if !self.emit(MachineFact::Status(status)).await {
                        return Exit::Stop;
                    }
                }
                Err(error) if error.breaks_connection() => return Exit::Lost(error),
                Err(error) => {
                    finish.forget();
                    warn!(error = %error, "status read failed");
                    if !self
                        .emit(MachineFact::ReadFailed {
                            error: error.to_string(),
                            reason: error.reason(),
                        })
                        .await
                    {
                        return Exit::Stop;
                    }
                }
            }
        }
    }

    /// Runs one command; returns the error if it broke the link. The caller
    /// gets its own copy of the outcome.
    async fn serve(
        &mut self,
        link: &mut dyn MachineLink,
        request: Request,
    ) -> Option<AdapterError> {
        match request {
            // Taken in `connected` before it comes here.
            Request::PollNow => None,
            Request::ReadStatus(reply) => {
                let result = self.bounded(link.read_status()).await;
                let lost = lost_copy(&result);
                drop(reply.send(result));
                lost
            }
            Request::StartJob(cmd, reply) => {
                let result = self.bounded(link.start_job(&cmd)).await;
                match &result {
                    Ok(()) => info!(job.token = cmd.job_token, "job started"),
                    Err(error) => warn!(job.token = cmd.job_token, error = %error, "start failed"),
                }
                let lost = lost_copy(&result);
                drop(reply.send(result));
                lost
            }
            Request::Acknowledge(reply) => {
                let result = self.bounded(link.acknowledge()).await;
                let lost = lost_copy(&result);
                drop(reply.send(result));
                lost
            }
        }
    }

    /// Bounds one link operation (a backstop: links time out each request).
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, AdapterError>>,
    ) -> Result<T, AdapterError> {
        let after = self.operation_timeout();
        tokio::time::timeout(after, operation)
            .await
            .unwrap_or_else(|_| {
                Err(AdapterError::Timeout {
                    operation: "link operation".to_string(),
                    after,
                })
            })
    }

    /// Sends a fact, unless cancelled first. False when the driver must stop.
    async fn emit(&self, fact: MachineFact) -> bool {
        tokio::select! {
            biased;
            sent = self.facts.send(fact) => sent.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }
}

/// What made the driver read a machine's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    /// The regular poll interval.
    Tick,
    /// News from the link, or a job about to finish.
    Extra,
}

/// Predicts when a running job will finish from how fast its progress has
/// moved since it was first seen, so that the driver reads the machine once
/// more right then instead of waiting for the next poll. At most one such
/// read per poll interval: a wrong estimate costs one read, never a burst.
#[derive(Debug)]
struct FinishWatch {
    interval: Duration,
    /// The running job: (token, when first seen, its progress then).
    job: Option<(u32, Instant, f64)>,
    /// When to read once more, if anything.
    at: Option<Instant>,
    /// Whether the extra read of this interval was spent.
    spent: bool,
}

impl FinishWatch {
    fn new(interval: Duration) -> FinishWatch {
        FinishWatch {
            interval,
            job: None,
            at: None,
            spent: false,
        }
    }

    /// When the driver should read once more, if at all.
    fn read_at(&self) -> Option<Instant> {
        self.at
    }

    /// Forgets the job (after a failed read: the next good one starts over).
    fn forget(&mut self) {
        self.job = None;
        self.at = None;
    }

    /// Takes a status read at `now`, for the reason `poll`.
    fn observe(&mut self, status: &MachineStatus, now: Instant, poll: Poll) {
        match poll {
            Poll::Tick => self.spent = false,
            Poll::Extra => self.spent = true,
        }
        self.at = None;
        let progress = match (status.state, status.progress_percent) {
            (RunState::Running, Some(p)) if p.is_finite() && (0.0..100.0).contains(&p) => p,
            _ => {
                self.job = None;
                return;
            }
        };
        match self.job {
            Some((token, since, first)) if token == status.job_token => {
                let seconds = now.saturating_duration_since(since).as_secs_f64();
                if progress <= first || seconds <= 0.0 || self.spent {
                    return;
                }
                let rate = (progress - first) / seconds;
                let left = (100.0 - progress) / rate;
                // A margin so that the read lands just after the last unit.
                let margin = (self.interval / 50).max(Duration::from_millis(20));
                if left.is_finite() && left < self.interval.as_secs_f64() {
                    self.at = Some(now + Duration::from_secs_f64(left.max(0.0)) + margin);
                }
            }
            _ => self.job = Some((status.job_token, now, progress)),
        }
    }
}

/// A description of a connection-breaking error, for the Disconnected fact.
fn lost_copy<T>(result: &Result<T, AdapterError>) -> Option<AdapterError> {
    match result {
        Err(error) if error.breaks_connection() => Some(match error {
            AdapterError::Timeout { operation, after } => AdapterError::Timeout {
                operation: operation.clone(),
                after: *after,
            },
            other => AdapterError::Transport {
                operation: "command".to_string(),
                source: std::io::Error::other(other.to_string()),
            },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(token: u32, progress: f64) -> MachineStatus {
        MachineStatus {
            state: RunState::Running,
            job_token: token,
            good_count: 0,
            scrap_count: 0,
            fault_code: None,
            progress_percent: Some(progress),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_job_about_to_finish_gets_one_read_at_its_predicted_finish() {
        let start = Instant::now();
        let mut watch = FinishWatch::new(SECOND);
        watch.observe(&running(7, 10.0), start, Poll::Tick);
        assert_eq!(watch.read_at(), None, "one sight gives no rate");
        // 10% a second: at 50% the finish is 5 s away, past the next poll.
        watch.observe(&running(7, 50.0), start + 4 * SECOND, Poll::Tick);
        assert_eq!(watch.read_at(), None);
        // At 95%, half a second away: read then, with the margin.
        watch.observe(
            &running(7, 95.0),
            start + Duration::from_millis(8_500),
            Poll::Tick,
        );
        let at = watch.read_at().expect("a read before the next poll");
        let expected = start + Duration::from_millis(9_000 + 20);
        let off = at.max(expected) - at.min(expected);
        assert!(
            off < Duration::from_millis(2),
            "read at {at:?}, expected {expected:?}"
        );
        // That read finds it still running (the estimate was early): no
        // second extra read until the next regular poll.
        watch.observe(&running(7, 99.5), at, Poll::Extra);
        assert_eq!(watch.read_at(), None);
        watch.observe(
            &running(7, 99.9),
            at + Duration::from_millis(500),
            Poll::Tick,
        );
        assert!(watch.read_at().is_some());
    }

    #[test]
    fn no_prediction_without_progress_or_for_another_job() {
        let start = Instant::now();
        let mut watch = FinishWatch::new(SECOND);
        // Stuck progress: no rate.
        watch.observe(&running(7, 90.0), start, Poll::Tick);
        watch.observe(&running(7, 90.0), start + SECOND, Poll::Tick);
        assert_eq!(watch.read_at(), None);
        // Another token starts over.
        watch.observe(&running(8, 99.0), start + 2 * SECOND, Poll::Tick);
        assert_eq!(watch.read_at(), None);
        // Done, idle or no progress signal: nothing to predict.
        watch.observe(&running(8, 99.9), start + 3 * SECOND, Poll::Tick);
        assert!(watch.read_at().is_some());
        let mut done = running(8, 100.0);
        done.state = RunState::Done;
        watch.observe(&done, start + 4 * SECOND, Poll::Tick);
        assert_eq!(watch.read_at(), None);
        let mut silent = running(9, 0.0);
        silent.progress_percent = None;
        watch.observe(&silent, start + 5 * SECOND, Poll::Tick);
        watch.observe(&silent, start + 6 * SECOND, Poll::Tick);
        assert_eq!(watch.read_at(), None);
    }
}
