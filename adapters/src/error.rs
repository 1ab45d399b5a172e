//! `AdapterError`: the one error type at the adapter boundary. Each variant
//! says who failed: the transport (retry after reconnect), the peer's reply
//! (protocol), the device itself (a Modbus exception, with its typed code), or
//! our own profile or caller.

use std::time::Duration;

use thiserror::Error;

/// A Modbus exception code, typed. `Other` keeps codes outside the standard set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceErrorCode {
    /// 0x01: the device does not support this function (or refuses it in its state).
    IllegalFunction,
    /// 0x02: the address is outside the device's register map.
    IllegalDataAddress,
    /// 0x03: the value is not acceptable to the device.
    IllegalDataValue,
    /// 0x04: the device failed while performing the request.
    ServerDeviceFailure,
    /// 0x05: accepted, still processing.
    Acknowledge,
    /// 0x06: the device is busy (e.g. a start while a job runs).
    Busy,
    /// 0x08
    MemoryParityError,
    /// 0x0A
    GatewayPathUnavailable,
    /// 0x0B: a gateway got no answer from the unit id (or the unit id is wrong).
    GatewayTargetDevice,
    /// Any other code.
    Other(u8),
}

impl DeviceErrorCode {
    /// The code as sent on the wire.
    pub fn code(self) -> u8 {
        match self {
            DeviceErrorCode::IllegalFunction => 0x01,
            DeviceErrorCode::IllegalDataAddress => 0x02,
            DeviceErrorCode::IllegalDataValue => 0x03,
            DeviceErrorCode::ServerDeviceFailure => 0x04,
            DeviceErrorCode::Acknowledge => 0x05,
            DeviceErrorCode::Busy => 0x06,
            DeviceErrorCode::MemoryParityError => 0x08,
            DeviceErrorCode::GatewayPathUnavailable => 0x0A,
            DeviceErrorCode::GatewayTargetDevice => 0x0B,
            DeviceErrorCode::Other(code) => code,
        }
    }

    /// Types a wire code.
    pub fn from_code(code: u8) -> DeviceErrorCode {
        match code {
            0x01 => DeviceErrorCode::IllegalFunction,
            0x02 => DeviceErrorCode::IllegalDataAddress,
            0x03 => DeviceErrorCode::IllegalDataValue,
            0x04 => DeviceErrorCode::ServerDeviceFailure,
            0x05 => DeviceErrorCode::Acknowledge,
            0x06 => DeviceErrorCode::Busy,
            0x08 => DeviceErrorCode::MemoryParityError,
            0x0A => DeviceErrorCode::GatewayPathUnavailable,
            0x0B => DeviceErrorCode::GatewayTargetDevice,
            other => DeviceErrorCode::Other(other),
        }
    }
}

impl From<tokio_modbus::ExceptionCode> for DeviceErrorCode {
    fn from(code: tokio_modbus::ExceptionCode) -> Self {
        DeviceErrorCode::from_code(u8::from(code))
    }
}

impl std::fmt::Display for DeviceErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} (0x{:02X})", self.code())
    }
}

/// Why an adapter operation failed, and whose fault it was.
#[derive(Debug, Error)]
pub enum AdapterError {
    /// The connection failed (refused, reset, closed) or the reply did not
    /// match the request (a desynchronised stream). Drop the link, reconnect.
    #[error("transport error during {operation}: {source}")]
    Transport {
        operation: String,
        #[source]
        source: std::io::Error,
    },
    /// No reply within the request timeout. Drop the link: a late reply would
    /// desynchronise transaction ids.
    #[error("no reply to {operation} within {after:?}")]
    Timeout { operation: String, after: Duration },
    /// The device answered, but with something the profile cannot explain
    /// (an unmapped state code, a short read, a negative count).
    #[error("bad reply to {operation}: {message}")]
    Protocol { operation: String, message: String },
    /// The device refused the request with a Modbus exception.
    #[error("device refused {operation}: {code}")]
    Device {
        operation: String,
        code: DeviceErrorCode,
    },
    /// The profile cannot express the request (a broken invariant of a
    /// validated profile, or a value out of the signal's range).
    #[error("profile {model}: {message}")]
    Profile { model: String, message: String },
    /// The driver has no connection to the machine right now.
    #[error("machine not connected")]
    NotConnected,
    /// The driver task has stopped (cancelled); the handle is dead.
    #[error("machine driver stopped")]
    DriverStopped,
}

impl AdapterError {
    /// True when trying again later may succeed (after a reconnect for
    /// transport errors). For `start_job`, a retryable error still means the
    /// start may have happened: read the job token back before retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            AdapterError::Transport { .. }
            | AdapterError::Timeout { .. }
            | AdapterError::NotConnected => true,
            AdapterError::Device { code, .. } => matches!(
                code,
                DeviceErrorCode::Busy
                    | DeviceErrorCode::Acknowledge
                    | DeviceErrorCode::GatewayPathUnavailable
                    | DeviceErrorCode::GatewayTargetDevice
            ),
            AdapterError::Protocol { .. }
            | AdapterError::Profile { .. }
            | AdapterError::DriverStopped => false,
        }
    }

    /// True when the link that returned this error must not be used again
    /// (a timeout or transport failure leaves the stream in an unknown state).
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            AdapterError::Transport { .. } | AdapterError::Timeout { .. }
        )
    }

    /// The device's exception code, when the device refused.
    pub fn device_code(&self) -> Option<DeviceErrorCode> {
        match self {
            AdapterError::Device { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short, low-cardinality label for metrics (`reason = "modbus_timeout"`).
    pub fn reason(&self) -> &'static str {
        match self {
            AdapterError::Transport { .. } => "transport",
            AdapterError::Timeout { .. } => "timeout",
            AdapterError::Protocol { .. } => "protocol",
            AdapterError::Device { .. } => "device",
            AdapterError::Profile { .. } => "profile",
            AdapterError::NotConnected => "not_connected",
            AdapterError::DriverStopped => "driver_stopped",
        }
    }
}
