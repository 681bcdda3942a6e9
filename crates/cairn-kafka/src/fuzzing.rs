//! Hostile-input entry points: the bodies of the cargo-fuzz targets `frame` and `request` in
//! `fuzz/` and of the tests that replay their corpora on stable (`tests/fuzz_corpus.rs`), so
//! that both run one piece of code. The `record_batch` target's body is
//! `cairn_protocol::fuzzing::fuzz_record_batch`, beside the codecs it drives.
//!
//! The framing and decode path they drive is the server's own ([`crate::codec`]).
//! - [`fuzz_frame`], [`fuzz_request`]: malformed input is never a failure; each panics only when
//!   a promise of the code under test is broken (the shape check accepted what `kafka-protocol`
//!   cannot decode, or it stopped elsewhere than the checked body's end), which is what the
//!   fuzzer reports.
//!
//! Nothing here is used by the server; it is public so that the fuzz crate (outside the
//! workspace) and integration tests can reach it.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::codec::{FrameError, decode_frame, frame_length};
use crate::shape::{self, ShapeError};

/// Target `frame`: `data` is what a client sent on one connection, read as the server reads it
/// (length prefix, frame, decode) until the server would close the connection or the bytes run
/// out.
///
/// # Panics
/// If the shape check accepts a frame that `kafka-protocol` then fails to decode, or decodes
/// with a different header length, or stops elsewhere than where the checked body ends.
pub fn fuzz_frame(data: &[u8]) {
    let mut rest = data;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let Ok(length) = frame_length(*prefix) else { return };
        // Fewer bytes than announced: the server would wait for more, then see EOF.
        let Some((frame, after)) = after.split_at_checked(length) else { return };
        match decode_frame(Bytes::copy_from_slice(frame)) {
            Ok(decoded) => {
                if decoded.body.is_some() {
                    let info = shape::check_header(frame).expect("decode_frame checked it");
                    assert_eq!(decoded.header_bytes, info.header_len, "header length disagrees");
                    assert_eq!(
                        decoded.bytes_left, decoded.trailing_bytes,
                        "kafka-protocol stopped elsewhere than the end of the checked body"
                    );
                }
            }
            Err(FrameError::Decode(error)) => panic!("{error}"),
            Err(_) => return,
        }
        rest = after;
    }
}

/// Target `request`: `data` is an api key (`i16`, big-endian), an api version (`i16`) and a
/// request body. The body goes through [`shape::check_request`], and, if accepted (bytes after
/// its last field included, as the server accepts them), through `kafka-protocol`'s decoder:
/// every API and version cairn accepts ([`shape::APIS`]), not only those the server serves
/// today.
///
/// # Panics
/// If the shape check accepts a body that `kafka-protocol` fails to decode, or that it does not
/// consume exactly up to the trailing bytes the check found (the promise of [`shape`]).
pub fn fuzz_request(data: &[u8]) {
    let Some(([key_hi, key_lo, version_hi, version_lo], body)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let api_key = i16::from_be_bytes([*key_hi, *key_lo]);
    let api_version = i16::from_be_bytes([*version_hi, *version_lo]);
    let trailing_bytes = match shape::check_request(api_key, api_version, body) {
        Ok(()) => 0,
        Err(ShapeError::TrailingBytes { count, .. }) => count,
        Err(_) => return,
    };
    let key = ApiKey::try_from(api_key)
        .unwrap_or_else(|()| panic!("shape accepted api key {api_key}, unknown to the crate"));
    let mut buffer = Bytes::copy_from_slice(body);
    if let Err(error) = RequestKind::decode(key, &mut buffer, api_version) {
        panic!("shape accepted {key:?} v{api_version} but kafka-protocol failed: {error}");
    }
    assert_eq!(
        buffer.remaining(),
        trailing_bytes,
        "{key:?} v{api_version}: kafka-protocol stopped elsewhere than the checked body's end"
    );
}
