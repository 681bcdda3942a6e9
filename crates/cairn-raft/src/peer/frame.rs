//! The peer frame (RFC 0003 §6), hand-written like the storage formats:
//!
//! ```text
//! length u32 | crc32c u32 | kind u16 | version u16 | correlation u64 | group u64 | ttl_ms u32 | body
//! ```
//!
//! All integers big-endian. `length` counts the bytes after itself and is checked against a
//! bound ([`frame_length`]) before anything is allocated for the frame; the CRC32C covers
//! everything after itself (the rest of the header and the body). The body's encoding depends
//! on the kind ([`crate::peer::body`]); every count in it is bounded by the bytes left, and
//! record batches stay [`Bytes`] slices of the frame.
//!
//! Encoding is canonical: a frame that decodes encodes to the same bytes (the `peer_frame` fuzz
//! target holds the codec to it), so there is one way to write every message.

use bytes::{BufMut, Bytes, BytesMut};
use cairn_types::limits::{PEER_FRAME_BYTES_MAX, PEER_FRAME_HEADER_BYTES};

use crate::CodecError;
use crate::peer::body::{self, Message};

/// Bytes of the header after the length prefix: CRC, kind, version, correlation, group, ttl.
pub const HEADER_AFTER_LENGTH_BYTES: usize = PEER_FRAME_HEADER_BYTES as usize - 4;

/// The protocol versions this build speaks; a peer's `Hello` must overlap them.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 1;

/// One peer frame: its header fields and its message (whose kind is the header's kind).
#[derive(Clone, Debug)]
pub struct Frame {
    /// The protocol version the frame is written in: the one negotiated by the handshake
    /// (a `Hello` carries the sender's newest).
    pub version: u16,
    /// Matches an answer to its request: the requester picks it, the answer repeats it. 0 in
    /// `Hello` and `Goodbye`.
    pub correlation: u64,
    /// The Raft group a request or answer is for: 0 for the core, else a partition's group id.
    /// Unused (0) in handshake frames and `Heartbeats`, whose items name their groups.
    pub group: u64,
    /// How long the request may still run, relative to its arrival, in milliseconds; the
    /// receiver drops one that expired before it ran. 0 in answers and handshake frames.
    pub ttl_ms: u32,
    /// What the frame carries.
    pub message: Message,
}

/// Why bytes are not a peer frame, or a frame cannot be written. A peer that sends one of these
/// is disconnected: the stream cannot be trusted past it.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the bound (before the handshake, a small one).
    #[error("frame of {length} bytes, the limit is {max}")]
    TooLarge {
        /// The announced length (after the prefix).
        length: u64,
        /// The bound it passed.
        max: u32,
    },
    /// The length prefix announces less than a header.
    #[error("frame of {length} bytes is shorter than a header")]
    TooShort {
        /// The announced length.
        length: u32,
    },
    /// The CRC32C does not match the bytes it covers.
    #[error("frame crc32c {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// What the frame says.
        stored: u32,
        /// What its bytes hash to.
        computed: u32,
    },
    /// A kind this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u16),
    /// A body ended before a field it must hold.
    #[error("truncated {what}: {needed} bytes needed, {available} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes after a body's last field.
    #[error("{0} bytes after the body")]
    Trailing(usize),
    /// A field whose value the format does not allow (a flag other than 0 or 1, an unknown
    /// enum code, the wrong magic, text that is not UTF-8).
    #[error("invalid {what}")]
    Invalid {
        /// The field.
        what: &'static str,
    },
    /// A count above its bound or above what the bytes left could hold.
    #[error("{what}: count {count} above {max}")]
    Count {
        /// What is counted.
        what: &'static str,
        /// The count the bytes claim.
        count: u64,
        /// The most it may be.
        max: u64,
    },
    /// An entry's batch is not the stored form of its log id.
    #[error("entry {index}: {source}")]
    Entry {
        /// The entry's Raft index.
        index: u64,
        /// What the codec found.
        source: CodecError,
    },
    /// Encoding: an entry that was not read from a log (its batch is not stamped with its
    /// term), which a leader never sends: followers store the leader's bytes.
    #[error("entry {index} is not in its stored form")]
    EntryNotStored {
        /// The entry's Raft index.
        index: u64,
    },
}

/// The length of the frame after its 4-byte prefix, once checked against `max` (the caller's
/// bound: [`PEER_FRAME_BYTES_MAX`] or, before the handshake, a smaller one) and the header size.
///
/// # Errors
/// [`FrameError::TooLarge`] or [`FrameError::TooShort`].
pub fn frame_length(prefix: [u8; 4], max: u32) -> Result<usize, FrameError> {
    let length = u32::from_be_bytes(prefix);
    if length > max {
        return Err(FrameError::TooLarge { length: u64::from(length), max });
    }
    if (length as usize) < HEADER_AFTER_LENGTH_BYTES {
        return Err(FrameError::TooShort { length });
    }
    Ok(length as usize)
}

/// Decodes a frame from the bytes after its length prefix (exactly `length` of them).
///
/// # Errors
/// [`FrameError`] for a bad CRC, an unknown kind, or a body that does not decode exactly.
pub fn decode(rest: Bytes) -> Result<Frame, FrameError> {
    let mut reader = Reader::new(rest.clone());
    let stored = reader.u32("crc32c")?;
    let computed = crc32c::crc32c(&rest[4..]);
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let kind = reader.u16("kind")?;
    let version = reader.u16("version")?;
    let correlation = reader.u64("correlation")?;
    let group = reader.u64("group")?;
    let ttl_ms = reader.u32("ttl_ms")?;
    let message = body::decode(kind, &mut reader)?;
    reader.finish()?;
    Ok(Frame { version, correlation, group, ttl_ms, message })
}

/// Encodes a frame, length prefix included.
///
/// # Errors
/// [`FrameError::TooLarge`] for a frame over [`PEER_FRAME_BYTES_MAX`] (the caller sends fewer
/// entries), [`FrameError::EntryNotStored`] and [`FrameError::Entry`] for entries that cannot
/// be sent.
pub fn encode(frame: &Frame) -> Result<Bytes, FrameError> {
    Ok(encode_mut(frame)?.freeze())
}

/// [`encode`], the frame left mutable and sealed (its CRC written).
///
/// # Errors
/// As [`encode`].
pub(crate) fn encode_mut(frame: &Frame) -> Result<BytesMut, FrameError> {
    let mut out = encode_unsealed(frame)?;
    seal(&mut out);
    Ok(out)
}

/// [`encode`] without the CRC: for a frame whose `ttl_ms` [`restamp_ttl`] sets (and so seals)
/// when it is written, so that its body is hashed once. Not a frame until restamped: a peer
/// refuses its CRC.
///
/// # Errors
/// As [`encode`].
pub(crate) fn encode_unsealed(frame: &Frame) -> Result<BytesMut, FrameError> {
    let mut out = BytesMut::with_capacity(PEER_FRAME_HEADER_BYTES as usize + 64);
    out.put_u32(0);
    out.put_u32(0);
    out.put_u16(frame.message.kind());
    out.put_u16(frame.version);
    out.put_u64(frame.correlation);
    out.put_u64(frame.group);
    out.put_u32(frame.ttl_ms);
    body::encode(&frame.message, &mut out)?;
    let length = out.len() - 4;
    if length > PEER_FRAME_BYTES_MAX as usize {
        return Err(FrameError::TooLarge { length: length as u64, max: PEER_FRAME_BYTES_MAX });
    }
    // In range: checked against a u32 bound just above.
    out[..4].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(out)
}

/// Sets an encoded frame's `ttl_ms` (the time left when it is written, not when it was
/// queued) and seals it.
pub(crate) fn restamp_ttl(frame: &mut [u8], ttl_ms: u32) {
    let at = PEER_FRAME_HEADER_BYTES as usize - 4;
    frame[at..at + 4].copy_from_slice(&ttl_ms.to_be_bytes());
    seal(frame);
}

/// Writes the CRC32C of everything after it: one pass of the hardware CRC over the header
/// fields and the body. (Combining a CRC of the header with one of the body kept since
/// encoding, `crc32c::crc32c_combine`, costs far more than that pass: its 32×32 bit-matrix
/// squarings were a tenth of a node's CPU under a replicated produce load.)
fn seal(frame: &mut [u8]) {
    let crc = crc32c::crc32c(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_be_bytes());
}

/// Reads a body field by field, every read bounded by the bytes left; slices share the frame.
pub(crate) struct Reader {
    /// The frame's bytes after the length prefix.
    bytes: Bytes,
    /// Next byte to read.
    position: usize,
}

impl Reader {
    fn new(bytes: Bytes) -> Reader {
        Reader { bytes, position: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The next `n` bytes, as a slice of the frame (no copy).
    pub(crate) fn bytes(&mut self, what: &'static str, n: usize) -> Result<Bytes, FrameError> {
        let available = self.remaining();
        if n > available {
            return Err(FrameError::Truncated { what, needed: n, available });
        }
        let slice = self.bytes.slice(self.position..self.position + n);
        self.position += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let available = self.remaining();
        if N > available {
            return Err(FrameError::Truncated { what, needed: N, available });
        }
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.position..self.position + N]);
        self.position += N;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn fixed<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], FrameError> {
        self.array(what)
    }

    /// A flag: exactly 0 or 1.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, FrameError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError::Invalid { what }),
        }
    }

    /// A count of elements of at least `element_bytes_min` bytes each, bounded by `max` and by
    /// the bytes left, so that nothing sized by it can be larger than the frame allows.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        element_bytes_min: usize,
        max: u64,
    ) -> Result<usize, FrameError> {
        let count = u64::from(self.u32(what)?);
        let fits = (self.remaining() / element_bytes_min.max(1)) as u64;
        if count > max.min(fits) {
            return Err(FrameError::Count { what, count, max: max.min(fits) });
        }
        // At most the bytes left: fits in usize.
        Ok(count as usize)
    }

    /// Fails if bytes are left.
    fn finish(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(FrameError::Trailing(left)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::fuzzing::sample_messages;

    fn frame(ttl_ms: u32, message: Message) -> Frame {
        Frame { version: PROTOCOL_VERSION_MAX, correlation: 9, group: 77, ttl_ms, message }
    }

    #[test]
    fn a_restamped_frame_is_the_frame_encoded_with_that_ttl() {
        for (name, message) in sample_messages() {
            let expected = encode(&frame(17, message.clone())).unwrap();
            // A request queued unsealed is refused until the writer restamps it.
            let mut queued = encode_unsealed(&frame(250, message.clone())).unwrap();
            let refused = decode(Bytes::copy_from_slice(&queued[4..]));
            assert!(matches!(refused, Err(FrameError::Crc { .. })), "{name}: {refused:?}");
            restamp_ttl(&mut queued, 17);
            assert_eq!(queued.freeze(), expected, "{name}");
            // A sealed frame restamped again is sealed for its new ttl.
            let mut again = encode_mut(&frame(250, message)).unwrap();
            restamp_ttl(&mut again, 17);
            assert_eq!(again.freeze(), expected, "{name}");
            assert_eq!(decode(expected.slice(4..)).unwrap().ttl_ms, 17, "{name}");
        }
    }
}
