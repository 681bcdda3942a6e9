//! Request framing and decoding, without a socket: the length-prefix check done before a frame's
//! buffer is allocated, and the decode path of a frame (header shape, served versions, body
//! shape, then `kafka-protocol`'s decoders). The server and the fuzz targets (`fuzzing.rs`) both
//! run exactly this code. The body itself is read by `cairn_protocol::frame::read_body`, which
//! the client shares.

use bytes::{Buf, Bytes};
use cairn_types::limits::FRAME_BYTES_MAX;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::handlers;
use crate::shape::{self, ShapeError};

/// Smallest frame the server reads: api key, api version, correlation id and a client id length
/// .
pub const FRAME_BYTES_MIN: u32 = 10;

/// Why the server would close the connection on a frame. The variants follow the server's
/// reasons (`Close` in `server.rs`), with the shape check's and the crate's rejections apart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is below [`FRAME_BYTES_MIN`] or above [`FRAME_BYTES_MAX`]; nothing was
    /// allocated for the frame.
    #[error("frame of {0} bytes is outside the allowed size")]
    Size(i64),
    /// [`shape::check_header`] rejected the request header.
    #[error("malformed request header: {0}")]
    Header(ShapeError),
    /// The API or version is not served (and the request is not an ApiVersions the server
    /// answers with its version table).
    #[error("unsupported api {api_key} version {api_version}")]
    Unsupported {
        /// The key as read.
        api_key: i16,
        /// The version as read.
        api_version: i16,
    },
    /// [`shape::check_request`] rejected the body (for a reason other than bytes after its last
    /// field, which the server ignores).
    #[error("malformed request body: {0}")]
    Body(ShapeError),
    /// `kafka-protocol` failed on a header or body that the shape check accepted: a shape-table
    /// bug (the server closes the connection; the fuzz targets panic).
    #[error("kafka-protocol rejected a checked request: {0}")]
    Decode(String),
}

/// A frame the server would hand to a handler.
#[derive(Debug)]
pub struct DecodedFrame {
    /// The API.
    pub api_key: ApiKey,
    /// The version served: 0 for an ApiVersions request of an unsupported version.
    pub api_version: i16,
    /// The decoded header (for the unsupported ApiVersions case, the v0 header the server
    /// answers with).
    pub header: RequestHeader,
    /// The decoded body; `None` for an ApiVersions request of an unsupported version.
    pub body: Option<RequestKind>,
    /// Bytes `kafka-protocol` took for the header (the shape check's `header_len` promises the
    /// same); 0 when nothing was decoded.
    pub header_bytes: usize,
    /// Bytes of the frame `kafka-protocol` left after the body (the shape check promises exactly
    /// the trailing bytes); the whole frame when nothing was decoded.
    pub bytes_left: usize,
    /// Bytes after the body's last field, which the shape check found and the server ignores
    /// (as Kafka does).
    pub trailing_bytes: usize,
}

/// The length of the frame announced by a 4-byte big-endian prefix, checked as the server checks
/// it before allocating the frame's buffer.
///
/// # Errors
/// [`FrameError::Size`] if the length is below [`FRAME_BYTES_MIN`] (negative included) or above
/// [`FRAME_BYTES_MAX`].
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    match u32::try_from(length) {
        Ok(length) if (FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&length) => {
            usize::try_from(length).map_err(|_| FrameError::Size(i64::from(length)))
        }
        _ => Err(FrameError::Size(i64::from(length))),
    }
}

/// Decodes one request frame (the bytes after the length prefix) as the server does.
///
/// # Errors
/// The [`FrameError`] for which the server would close the connection.
pub fn decode_frame(frame: Bytes) -> Result<DecodedFrame, FrameError> {
    let info = shape::check_header(&frame).map_err(FrameError::Header)?;
    let unsupported =
        FrameError::Unsupported { api_key: info.api_key, api_version: info.api_version };
    let api_key = ApiKey::try_from(info.api_key).map_err(|()| unsupported.clone())?;
    let supported = handlers::versions(api_key)
        .is_some_and(|(min, max)| (min..=max).contains(&info.api_version));
    if !supported {
        if api_key == ApiKey::ApiVersions {
            let header = RequestHeader::default()
                .with_request_api_key(info.api_key)
                .with_request_api_version(0)
                .with_correlation_id(info.correlation_id);
            return Ok(DecodedFrame {
                api_key,
                api_version: 0,
                header,
                body: None,
                header_bytes: 0,
                bytes_left: frame.len(),
                trailing_bytes: 0,
            });
        }
        return Err(unsupported);
    }
    let body = frame.get(info.header_len..).unwrap_or_default();
    // Kafka ignores bytes after a request's last field (librdkafka 2.16 sends some after
    // Metadata v13), and so does cairn, once the fields before them are checked.
    let trailing_bytes = match shape::check_request(info.api_key, info.api_version, body) {
        Ok(()) => 0,
        Err(ShapeError::TrailingBytes { count, .. }) => count,
        Err(error) => return Err(FrameError::Body(error)),
    };
    let frame_len = frame.len();
    let mut buffer = frame;
    let header =
        RequestHeader::decode(&mut buffer, api_key.request_header_version(info.api_version))
            .map_err(|e| FrameError::Decode(format!("request header: {e}")))?;
    let header_bytes = frame_len - buffer.remaining();
    let body = RequestKind::decode(api_key, &mut buffer, info.api_version)
        .map_err(|e| FrameError::Decode(format!("{api_key:?} v{}: {e}", info.api_version)))?;
    Ok(DecodedFrame {
        api_key,
        api_version: info.api_version,
        header,
        body: Some(body),
        header_bytes,
        bytes_left: buffer.remaining(),
        trailing_bytes,
    })
}
