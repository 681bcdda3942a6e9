//! Protocol Buffers style variable-length integers, as used inside Kafka records: unsigned LEB128
//! and zigzag-encoded signed values.
//!
//! Decoding reads untrusted bytes: it never reads past the slice and rejects encodings longer than
//! the type allows.

/// Why a varint could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The input ended inside the varint.
    #[error("varint truncated")]
    Truncated,
    /// The varint has more continuation bytes than its type can hold.
    #[error("varint too long")]
    TooLong,
}

/// Appends `value` zigzag-encoded (signed varint, 32-bit range).
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_uvarint(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` zigzag-encoded (signed varlong).
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends `value` as unsigned LEB128.
pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes an unsigned LEB128 of at most `bytes_max` bytes; returns the value and its length.
fn get_uvarint(input: &[u8], bytes_max: usize) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate() {
        if i == bytes_max {
            return Err(VarintError::TooLong);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= bytes_max { Err(VarintError::TooLong) } else { Err(VarintError::Truncated) }
}

/// Decodes an unsigned varint of 32 bits at most (Kafka's flexible versions: lengths, counts,
/// tags); returns the value and the bytes it took.
///
/// # Errors
/// [`VarintError`] on truncated or over-long input.
pub fn get_uvarint32(input: &[u8]) -> Result<(u32, usize), VarintError> {
    let (raw, len) = get_uvarint(input, 5)?;
    Ok((u32::try_from(raw).map_err(|_| VarintError::TooLong)?, len))
}

/// Decodes a zigzag varint (32-bit); returns the value and the bytes it took.
///
/// # Errors
/// [`VarintError`] on truncated or over-long input.
pub fn get_varint(input: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, len) = get_uvarint(input, 5)?;
    let raw = u32::try_from(raw).map_err(|_| VarintError::TooLong)?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), len))
}

/// Decodes a zigzag varlong (64-bit); returns the value and the bytes it took.
///
/// # Errors
/// [`VarintError`] on truncated or over-long input.
pub fn get_varlong(input: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, len) = get_uvarint(input, 10)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_roundtrip(value: i32) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(get_varint(&out), Ok((value, out.len())));
        }

        #[test]
        fn uvarint32_roundtrip(value: u32) {
            let mut out = Vec::new();
            put_uvarint(&mut out, u64::from(value));
            prop_assert_eq!(get_uvarint32(&out), Ok((value, out.len())));
        }

        #[test]
        fn varlong_roundtrip(value: i64) {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            prop_assert_eq!(get_varlong(&out), Ok((value, out.len())));
        }

        #[test]
        fn decode_never_panics(bytes: Vec<u8>) {
            let _ = get_varint(&bytes);
            let _ = get_varlong(&bytes);
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(get_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0xff; 6]), Err(VarintError::TooLong));
        assert_eq!(get_varlong(&[0xff; 11]), Err(VarintError::TooLong));
        // Five bytes whose value does not fit 32 bits.
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]), Err(VarintError::TooLong));
    }
}
