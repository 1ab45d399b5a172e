//! Modbus TCP link: implements [`MachineLink`] purely from a [`Profile`].
//!
//! Invariants: every request is wrapped in `tokio::time::timeout` (tokio-modbus
//! has none); after a timeout or transport error the link refuses further use
//! (a late reply would desynchronise transaction ids), so the caller must
//! connect a new one. Device exceptions leave the link usable.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::{Slave, client::tcp};

use crate::driver::{BoxFuture, Connector};
use crate::error::AdapterError;
use crate::profile::{Profile, RegisterKind, Signal, SignalName, Step, ValueType, WordOrder};
use crate::types::{JobCommand, MachineLink, MachineStatus};

/// Registers that may be read in one request (the protocol allows 125).
const MAX_BLOCK_REGISTERS: u16 = 120;
/// Unused registers a block may span to join two signals into one read.
const MAX_BLOCK_GAP: u16 = 8;

/// A connected Modbus TCP machine.
pub struct ModbusLink {
    /// The tokio-modbus client context (one request in flight at a time).
    context: Context,
    profile: Arc<Profile>,
    request_timeout: Duration,
    /// Status reads, merged into contiguous blocks once at connect.
    read_plan: Vec<Block>,
    /// Set after a timeout or transport error: the stream can no longer be trusted.
    broken: bool,
}

impl std::fmt::Debug for ModbusLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusLink")
            .field("model", &self.profile.model)
            .field("request_timeout", &self.request_timeout)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// One contiguous register read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    kind: RegisterKind,
    start: u16,
    count: u16,
}

impl ModbusLink {
    /// Connects to `addr` and addresses the profile's unit id. The connect and
    /// every later request are bounded by `request_timeout`.
    pub async fn connect(
        addr: SocketAddr,
        profile: Arc<Profile>,
        request_timeout: Duration,
    ) -> Result<ModbusLink, AdapterError> {
        let operation = format!("connect to {addr}");
        let context = match tokio::time::timeout(
            request_timeout,
            tcp::connect_slave(addr, Slave(profile.unit_id)),
        )
        .await
        {
            Err(_) => {
                return Err(AdapterError::Timeout {
                    operation,
                    after: request_timeout,
                });
            }
            Ok(Err(source)) => return Err(AdapterError::Transport { operation, source }),
            Ok(Ok(context)) => context,
        };
        let read_plan = plan_reads(&profile)?;
        Ok(ModbusLink {
            context,
            profile,
            request_timeout,
            read_plan,
            broken: false,
        })
    }

    /// The profile this link speaks.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    fn check_usable(&self) -> Result<(), AdapterError> {
        if self.broken {
            Err(AdapterError::NotConnected)
        } else {
            Ok(())
        }
    }

    /// Awaits one tokio-modbus call under the request timeout and types its
    /// nested result (transport outside, Modbus exception inside).
    async fn guarded<T>(
        broken: &mut bool,
        request_timeout: Duration,
        operation: impl FnOnce() -> String,
        call: impl Future<Output = tokio_modbus::Result<T>>,
    ) -> Result<T, AdapterError> {
        let result = match tokio::time::timeout(request_timeout, call).await {
            Err(_) => Err(AdapterError::Timeout {
                operation: operation(),
                after: request_timeout,
            }),
            Ok(Err(tokio_modbus::Error::Transport(source))) => Err(AdapterError::Transport {
                operation: operation(),
                source,
            }),
            Ok(Err(tokio_modbus::Error::Protocol(mismatch))) => Err(AdapterError::Transport {
                operation: operation(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, mismatch.to_string()),
            }),
            Ok(Ok(Err(exception))) => Err(AdapterError::Device {
                operation: operation(),
                code: exception.into(),
            }),
            Ok(Ok(Ok(value))) => Ok(value),
        };
        if let Err(err) = &result
            && err.breaks_connection()
        {
            *broken = true;
        }
        result
    }

    async fn read_block(&mut self, block: Block) -> Result<Vec<u16>, AdapterError> {
        let Block { kind, start, count } = block;
        let operation = || format!("read {} {start}+{count}", kind.as_str());
        let words = match kind {
            RegisterKind::Holding => {
                Self::guarded(
                    &mut self.broken,
                    self.request_timeout,
                    operation,
                    self.context.read_holding_registers(start, count),
                )
                .await?
            }
            RegisterKind::Input => {
                Self::guarded(
                    &mut self.broken,
                    self.request_timeout,
                    operation,
                    self.context.read_input_registers(start, count),
                )
                .await?
            }
            RegisterKind::Coil | RegisterKind::Discrete => {
                return Err(self.profile_error(format!(
                    "status signals in {} tables are not supported",
                    kind.as_str()
                )));
            }
        };
        if words.len() != usize::from(count) {
            return Err(AdapterError::Protocol {
                operation: operation(),
                message: format!("asked for {count} registers, got {}", words.len()),
            });
        }
        Ok(words)
    }

    async fn write_words(&mut self, address: u16, words: &[u16]) -> Result<(), AdapterError> {
        let operation = || format!("write holding {address}+{}", words.len());
        if let [word] = words {
            Self::guarded(
                &mut self.broken,
                self.request_timeout,
                operation,
                self.context.write_single_register(address, *word),
            )
            .await
        } else {
            Self::guarded(
                &mut self.broken,
                self.request_timeout,
                operation,
                self.context.write_multiple_registers(address, words),
            )
            .await
        }
    }

    async fn write_coil(&mut self, address: u16, value: bool) -> Result<(), AdapterError> {
        Self::guarded(
            &mut self.broken,
            self.request_timeout,
            || format!("write coil {address}"),
            self.context.write_single_coil(address, value),
        )
        .await
    }

    async fn run_steps(
        &mut self,
        steps: &[Step],
        cmd: Option<&JobCommand>,
    ) -> Result<(), AdapterError> {
        for step in steps {
            match step {
                Step::Write(name) => {
                    let value = match (name, cmd) {
                        (SignalName::JobToken, Some(cmd)) => cmd.job_token,
                        (SignalName::Recipe, Some(cmd)) => cmd.recipe,
                        (SignalName::Quantity, Some(cmd)) => cmd.quantity,
                        _ => {
                            return Err(self.profile_error(format!(
                                "step writes `{name}` but the command carries no such value"
                            )));
                        }
                    };
                    let signal = self.profile.required(*name).clone();
                    if signal.kind != RegisterKind::Holding {
                        return Err(
                            self.profile_error(format!("`{name}` is not a holding register"))
                        );
                    }
                    let words = encode(&signal, f64::from(value)).map_err(|message| {
                        self.profile_error(format!("{name} = {value}: {message}"))
                    })?;
                    self.write_words(signal.address, &words).await?;
                }
                Step::WriteCoil { address, value } => self.write_coil(*address, *value).await?,
                Step::WriteRegister { address, value } => {
                    self.write_words(*address, &[*value]).await?;
                }
            }
        }
        Ok(())
    }

    fn profile_error(&self, message: String) -> AdapterError {
        AdapterError::Profile {
            model: self.profile.model.clone(),
            message,
        }
    }
}

#[async_trait]
impl MachineLink for ModbusLink {
    async fn read_status(&mut self) -> Result<MachineStatus, AdapterError> {
        self.check_usable()?;
        let mut tables: BTreeMap<(RegisterKind, u16), Vec<u16>> = BTreeMap::new();
        for block in self.read_plan.clone() {
            let words = self.read_block(block).await?;
            tables.insert((block.kind, block.start), words);
        }
        decode_status(&self.profile, &tables)
    }

    async fn start_job(&mut self, cmd: &JobCommand) -> Result<(), AdapterError> {
        self.check_usable()?;
        let profile = Arc::clone(&self.profile);
        self.run_steps(&profile.start.steps, Some(cmd)).await
    }

    async fn acknowledge(&mut self) -> Result<(), AdapterError> {
        self.check_usable()?;
        let profile = Arc::clone(&self.profile);
        match &profile.acknowledge {
            Some(acknowledge) => self.run_steps(&acknowledge.steps, None).await,
            None => Err(self.profile_error(
                "the profile has no acknowledge command (the machine takes its next start from done)"
                    .to_string(),
            )),
        }
    }
}

/// Connects [`ModbusLink`]s for the [`crate::MachineDriver`].
#[derive(Debug, Clone)]
pub struct ModbusConnector {
    pub addr: SocketAddr,
    pub profile: Arc<Profile>,
    /// Per-request timeout of each link (keep it at or below the driver's).
    pub request_timeout: Duration,
}

impl ModbusConnector {
    pub fn new(addr: SocketAddr, profile: Arc<Profile>, request_timeout: Duration) -> Self {
        ModbusConnector {
            addr,
            profile,
            request_timeout,
        }
    }
}

impl Connector for ModbusConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn MachineLink>, AdapterError>> {
        Box::pin(async move {
            let link =
                ModbusLink::connect(self.addr, Arc::clone(&self.profile), self.request_timeout)
                    .await?;
            Ok(Box::new(link) as Box<dyn MachineLink>)
        })
    }
}

/// Merges the register signals of a profile into as few reads as possible.
fn plan_reads(profile: &Profile) -> Result<Vec<Block>, AdapterError> {
    let mut spans: Vec<(RegisterKind, u32, u32)> = profile
        .signals
        .values()
        .map(|s| (s.kind, s.span().start, s.span().end))
        .collect();
    if let Some((kind, _, _)) = spans.iter().find(|(kind, _, _)| kind.is_bit()) {
        return Err(AdapterError::Profile {
            model: profile.model.clone(),
            message: format!("signals in {} tables are not supported yet", kind.as_str()),
        });
    }
    spans.sort();
    let mut blocks: Vec<(RegisterKind, u32, u32)> = Vec::new();
    for (kind, start, end) in spans {
        if let Some(last) = blocks.last_mut() {
            let joinable = last.0 == kind
                && start <= last.2 + u32::from(MAX_BLOCK_GAP)
                && end.max(last.2) - last.1 <= u32::from(MAX_BLOCK_REGISTERS);
            if joinable {
                last.2 = last.2.max(end);
                continue;
            }
        }
        blocks.push((kind, start, end));
    }
    blocks
        .into_iter()
        .map(|(kind, start, end)| {
            let start16 = u16::try_from(start);
            let count16 = u16::try_from(end - start);
            match (start16, count16) {
                (Ok(start), Ok(count)) => Ok(Block { kind, start, count }),
                _ => Err(AdapterError::Profile {
                    model: profile.model.clone(),
                    message: format!("register span {start}..{end} is out of range"),
                }),
            }
        })
        .collect()
}

/// The 32 bits of a two-word value, honouring the word order.
fn join_words(order: WordOrder, words: &[u16]) -> u32 {
    let (high, low) = match order {
        WordOrder::Big => (words[0], words[1]),
        WordOrder::Little => (words[1], words[0]),
    };
    (u32::from(high) << 16) | u32::from(low)
}

fn split_words(order: WordOrder, bits: u32) -> Vec<u16> {
    let high = (bits >> 16) as u16;
    let low = (bits & 0xFFFF) as u16;
    match order {
        WordOrder::Big => vec![high, low],
        WordOrder::Little => vec![low, high],
    }
}

/// Reads a status as a link does, with `read` standing in for the wire:
/// asked for (table, first address, count) of each block of the profile's
/// read plan, it answers with words (any number of them; a real link refuses
/// a short answer before decoding, this does not). For trying every answer a
/// machine may give (tests/fuzz_inputs.rs).
pub fn status_from_reads(
    profile: &Profile,
    read: &mut dyn FnMut(RegisterKind, u16, u16) -> Vec<u16>,
) -> Result<MachineStatus, AdapterError> {
    let mut tables = BTreeMap::new();
    for block in plan_reads(profile)? {
        tables.insert(
            (block.kind, block.start),
            read(block.kind, block.start, block.count),
        );
    }
    decode_status(profile, &tables)
}

/// A machine's status from the registers read by its read plan, keyed by
/// (table, first address) of each block: the state through the profile's
/// map, the token (its echo when the profile has one), the counts, fault
/// code and progress. Pure, so that any words a machine may send can be
/// tried against it (tests/fuzz_inputs.rs): it never panics, whatever the
/// words; a value the profile cannot read is a protocol error.
pub fn decode_status(
    profile: &Profile,
    tables: &BTreeMap<(RegisterKind, u16), Vec<u16>>,
) -> Result<MachineStatus, AdapterError> {
    let words_of = |name: SignalName| -> Option<(&Signal, &[u16])> {
        let signal = profile.signal(name)?;
        let width = usize::from(signal.value_type.width());
        tables
            .iter()
            .filter(|((kind, _), _)| *kind == signal.kind)
            .find_map(|((_, start), words)| {
                let offset = usize::from(signal.address.checked_sub(*start)?);
                words.get(offset..offset + width)
            })
            .map(|words| (signal, words))
    };
    let missing = |name: SignalName| AdapterError::Profile {
        model: profile.model.clone(),
        message: format!("signal `{name}` is not covered by the read plan"),
    };
    let protocol = |name: SignalName, message: String| AdapterError::Protocol {
        operation: format!("read {name}"),
        message,
    };

    let (state_signal, words) =
        words_of(SignalName::State).ok_or_else(|| missing(SignalName::State))?;
    let code = decode_integer(state_signal, words)
        .ok_or_else(|| protocol(SignalName::State, "state is not an integer".into()))?;
    let state = *state_signal.map.get(&code).ok_or_else(|| {
        protocol(
            SignalName::State,
            format!("state code {code} is not in the profile's map"),
        )
    })?;

    let read_u32 = |name: SignalName| -> Result<u32, AdapterError> {
        let (signal, words) = words_of(name).ok_or_else(|| missing(name))?;
        let value = decode_scaled(signal, words);
        to_u32(value)
            .ok_or_else(|| protocol(name, format!("{value} is not a count 0..=4294967295")))
    };
    // The token the machine shows: its own echo when the profile has
    // one (the start's `job_token` register may say only what was
    // written, not what was taken).
    let job_token = if profile.echoes_token() {
        read_u32(SignalName::TokenEcho)?
    } else {
        read_u32(SignalName::JobToken)?
    };
    let good_count = read_u32(SignalName::GoodCount)?;
    let scrap_count = read_u32(SignalName::ScrapCount)?;
    let fault_code = match profile.signal(SignalName::FaultCode) {
        Some(_) => Some(read_u32(SignalName::FaultCode)?),
        None => None,
    };
    let progress_percent = match profile.signal(SignalName::Progress) {
        Some(_) => {
            let (signal, words) =
                words_of(SignalName::Progress).ok_or_else(|| missing(SignalName::Progress))?;
            let value = decode_scaled(signal, words);
            if !value.is_finite() {
                return Err(protocol(
                    SignalName::Progress,
                    format!("{value} is not a percent"),
                ));
            }
            Some(value)
        }
        None => None,
    };
    Ok(MachineStatus {
        state,
        job_token,
        good_count,
        scrap_count,
        fault_code,
        progress_percent,
    })
}

/// The raw value of an integer signal (`None` for f32/bool or a short slice).
fn decode_integer(signal: &Signal, words: &[u16]) -> Option<i64> {
    if words.len() < usize::from(signal.value_type.width()) {
        return None;
    }
    match signal.value_type {
        ValueType::U16 => Some(i64::from(words[0])),
        ValueType::I16 => Some(i64::from(words[0] as i16)),
        ValueType::U32 => Some(i64::from(join_words(signal.word_order, words))),
        ValueType::I32 => Some(i64::from(join_words(signal.word_order, words) as i32)),
        ValueType::F32 | ValueType::Bool => None,
    }
}

/// The value of a numeric signal with its scale applied (NaN if undecodable).
fn decode_scaled(signal: &Signal, words: &[u16]) -> f64 {
    let raw = match signal.value_type {
        ValueType::F32 if words.len() >= 2 => {
            f64::from(f32::from_bits(join_words(signal.word_order, words)))
        }
        _ => match decode_integer(signal, words) {
            Some(value) => value as f64,
            None => f64::NAN,
        },
    };
    raw * signal.scale.unwrap_or(1.0)
}

/// Rounds a decoded count to u32 (scaled counts may carry float noise).
fn to_u32(value: f64) -> Option<u32> {
    let rounded = value.round();
    if rounded.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&rounded) {
        Some(rounded as u32)
    } else {
        None
    }
}

/// Encodes `value` (before scaling) into the signal's registers.
fn encode(signal: &Signal, value: f64) -> Result<Vec<u16>, String> {
    let raw = value / signal.scale.unwrap_or(1.0);
    if signal.value_type == ValueType::F32 {
        let bits = (raw as f32).to_bits();
        return Ok(split_words(signal.word_order, bits));
    }
    let Some((min, max)) = signal.value_type.integer_range() else {
        return Err(format!(
            "cannot write a number to a {:?} signal",
            signal.value_type
        ));
    };
    let rounded = raw.round();
    if !rounded.is_finite() || rounded < min as f64 || rounded > max as f64 {
        return Err(format!(
            "raw value {raw} does not fit {:?} ({min}..={max})",
            signal.value_type
        ));
    }
    let integer = rounded as i64;
    Ok(match signal.value_type {
        ValueType::U16 | ValueType::I16 => vec![integer as u16],
        _ => split_words(signal.word_order, integer as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(value_type: ValueType, word_order: WordOrder, scale: Option<f64>) -> Signal {
        Signal {
            kind: RegisterKind::Holding,
            address: 0,
            value_type,
            word_order,
            scale,
            map: BTreeMap::new(),
            counts: crate::profile::Counts::PerJob,
        }
    }

    #[test]
    fn word_orders_place_the_high_word_as_documented() {
        let big = signal(ValueType::U32, WordOrder::Big, None);
        let little = signal(ValueType::U32, WordOrder::Little, None);
        assert_eq!(encode(&big, f64::from(0x0001_0002u32)), Ok(vec![1, 2]));
        assert_eq!(encode(&little, f64::from(0x0001_0002u32)), Ok(vec![2, 1]));
        assert_eq!(decode_integer(&big, &[1, 2]), Some(0x0001_0002));
        assert_eq!(decode_integer(&little, &[1, 2]), Some(0x0002_0001));
    }

    #[test]
    fn signed_and_float_values_round_trip() {
        let i16s = signal(ValueType::I16, WordOrder::Big, None);
        assert_eq!(decode_integer(&i16s, &[0xFFFF]), Some(-1));
        let i32s = signal(ValueType::I32, WordOrder::Little, None);
        assert_eq!(decode_integer(&i32s, &[0xFFFE, 0xFFFF]), Some(-2));
        let f32s = signal(ValueType::F32, WordOrder::Big, Some(100.0));
        let words = encode(&f32s, 42.5).expect("fits");
        assert_eq!(words, split_words(WordOrder::Big, 0.425f32.to_bits()));
        assert!((decode_scaled(&f32s, &words) - 42.5).abs() < 1e-4);
    }

    #[test]
    fn scale_divides_on_write_and_multiplies_on_read() {
        let tenths = signal(ValueType::U16, WordOrder::Big, Some(0.1));
        assert_eq!(encode(&tenths, 12.3), Ok(vec![123]));
        assert!((decode_scaled(&tenths, &[123]) - 12.3).abs() < 1e-9);
        assert!(encode(&tenths, 7000.0).is_err(), "70000 does not fit u16");
    }

    #[test]
    fn counts_must_be_non_negative() {
        assert_eq!(to_u32(3.0000001), Some(3));
        assert_eq!(to_u32(-1.0), None);
        assert_eq!(to_u32(f64::NAN), None);
    }

    #[test]
    fn read_plan_merges_adjacent_signals() {
        for profile in crate::builtin_profiles() {
            let plan = plan_reads(&profile).expect("plan");
            for signal in profile.signals.values() {
                let covered = plan.iter().any(|b| {
                    b.kind == signal.kind
                        && u32::from(b.start) <= signal.span().start
                        && signal.span().end <= u32::from(b.start) + u32::from(b.count)
                });
                assert!(
                    covered,
                    "{}: {signal:?} not covered by {plan:?}",
                    profile.model
                );
            }
            assert!(plan.len() <= 3, "{}: {plan:?}", profile.model);
        }
    }
}
