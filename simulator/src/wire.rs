//! The simulator's own register encoding, written apart from the adapter's on
//! purpose: bytes are built with `to_be_bytes`, words then ordered per the
//! profile. Values are scaled (divided by `scale`) before encoding.

use fabflow_adapters::profile::{Signal, ValueType, WordOrder};

/// Raw registers for `value` (engineering units), per the signal's type,
/// scale and word order. Integers saturate at the type's bounds.
pub(crate) fn encode(signal: &Signal, value: f64) -> Vec<u16> {
    let raw = value / signal.scale.unwrap_or(1.0);
    let bytes: Vec<u8> = match signal.value_type {
        ValueType::U16 => (raw.round().clamp(0.0, 65535.0) as u16)
            .to_be_bytes()
            .to_vec(),
        ValueType::I16 => (raw.round().clamp(-32768.0, 32767.0) as i16)
            .to_be_bytes()
            .to_vec(),
        ValueType::U32 => (raw.round().clamp(0.0, 4_294_967_295.0) as u32)
            .to_be_bytes()
            .to_vec(),
        ValueType::I32 => (raw.round().clamp(-2_147_483_648.0, 2_147_483_647.0) as i32)
            .to_be_bytes()
            .to_vec(),
        ValueType::F32 => (raw as f32).to_be_bytes().to_vec(),
        ValueType::Bool => vec![0, u8::from(raw != 0.0)],
    };
    // Big-endian bytes give the high word first.
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    if words.len() == 2 && signal.word_order == WordOrder::Little {
        words.reverse();
    }
    words
}

/// The value (engineering units) held in `words` for the signal.
pub(crate) fn decode(signal: &Signal, words: &[u16]) -> f64 {
    let mut ordered: Vec<u16> = words.to_vec();
    if ordered.len() == 2 && signal.word_order == WordOrder::Little {
        ordered.reverse();
    }
    let bytes: Vec<u8> = ordered.iter().flat_map(|w| w.to_be_bytes()).collect();
    let raw = match (signal.value_type, bytes.as_slice()) {
        (ValueType::U16, [a, b]) => f64::from(u16::from_be_bytes([*a, *b])),
        (ValueType::I16, [a, b]) => f64::from(i16::from_be_bytes([*a, *b])),
        (ValueType::U32, [a, b, c, d]) => f64::from(u32::from_be_bytes([*a, *b, *c, *d])),
        (ValueType::I32, [a, b, c, d]) => f64::from(i32::from_be_bytes([*a, *b, *c, *d])),
        (ValueType::F32, [a, b, c, d]) => f64::from(f32::from_be_bytes([*a, *b, *c, *d])),
        (ValueType::Bool, [_, b]) => f64::from(u8::from(*b != 0)),
        _ => 0.0,
    };
    raw * signal.scale.unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabflow_adapters::profile::RegisterKind;
    use std::collections::BTreeMap;

    fn signal(value_type: ValueType, word_order: WordOrder, scale: Option<f64>) -> Signal {
        Signal {
            kind: RegisterKind::Holding,
            address: 0,
            value_type,
            word_order,
            scale,
            map: BTreeMap::new(),
            counts: fabflow_adapters::profile::Counts::PerJob,
        }
    }

    #[test]
    fn layouts_match_the_profile_format_by_hand() {
        assert_eq!(
            encode(&signal(ValueType::U32, WordOrder::Big, None), 65538.0),
            [1, 2]
        );
        assert_eq!(
            encode(&signal(ValueType::U32, WordOrder::Little, None), 65538.0),
            [2, 1]
        );
        assert_eq!(
            encode(&signal(ValueType::I16, WordOrder::Big, None), -1.0),
            [0xFFFF]
        );
        assert_eq!(
            encode(&signal(ValueType::U16, WordOrder::Big, Some(0.1)), 50.0),
            [500]
        );
        // 0.5f32 = 0x3F000000
        assert_eq!(
            encode(&signal(ValueType::F32, WordOrder::Big, Some(100.0)), 50.0),
            [0x3F00, 0]
        );
        assert_eq!(
            encode(
                &signal(ValueType::F32, WordOrder::Little, Some(100.0)),
                50.0
            ),
            [0, 0x3F00]
        );
        assert_eq!(
            decode(&signal(ValueType::U32, WordOrder::Little, None), &[2, 1]),
            65538.0
        );
    }
}
