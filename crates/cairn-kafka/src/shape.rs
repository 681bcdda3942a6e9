//! Request shape checks: a walk over a request's bytes, driven by a static description of the wire
//! schema, that runs before `kafka-protocol` decodes anything.
//!
//! Why: `kafka-protocol` allocates every array with `Vec::with_capacity(count)` where `count` is
//! the untrusted count from the wire, so a 20-byte request claiming 2^31 elements aborts the
//! process; and `decode_request_header_from_buffer` reads bytes 0..4 without checking that there
//! are four. We keep the crate (DESIGN.md §3.5), so every frame goes through [`check_header`] and
//! every body through [`check_request`] first.
//!
//! What a successful check guarantees, for the APIs and versions in [`APIS`]:
//! - every string, bytes and records length fits in the bytes left, every array count `n` has
//!   `n * min_wire_bytes(element) <= bytes left`, and the request declares at most
//!   [`REQUEST_ELEMENTS_MAX`] array elements and tagged fields in total, so decoding allocates at
//!   most about `REQUEST_ELEMENTS_MAX * size_of(largest element)` beyond the frame itself (the
//!   largest request element type in `kafka-protocol` 0.18.0 is 120 bytes: about 30 MiB);
//! - the body is consumed exactly (no trailing bytes), varints are well formed (at most 5 bytes,
//!   value within `u32`), strings are UTF-8, non-nullable fields are not null, and a known tagged
//!   field is valid in the version and takes exactly the size it declares;
//! - so `kafka-protocol` decodes the body successfully and consumes all of it (the conformance
//!   tests in `tests/shape.rs` check this against the crate, version by version).
//!
//! The walk allocates nothing, reads each byte at most once (bytes and records are skipped by
//! length, strings are checked for UTF-8) and never panics: a 100 MiB produce request costs a few
//! dozen steps, its records being one length.
//!
//! The schema tables below are transcribed from the crate's generated decoders
//! (`kafka-protocol` 0.18.0, `src/messages/*_request.rs`): the version conditions, which versions
//! are flexible (compact lengths and tagged fields), and nullability as the crate decodes it (an
//! `Option` field accepts null in every version, even where Kafka's schema says otherwise).

use std::fmt;

use cairn_types::limits::{REQUEST_ELEMENTS_MAX, REQUEST_NESTING_MAX};
use kafka_protocol::messages::ApiKey;

use self::Ty::{
    Array, Bool, Bytes, F64, I8, I16, I32, I64, NullableArray, NullableBytes, NullableStr, Records,
    Str, Struct, U16, U32, Uuid,
};

/// Versions of an API in which something is present, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    /// Oldest version.
    pub min: i16,
    /// Newest version.
    pub max: i16,
}

impl Versions {
    /// Every version.
    pub const ALL: Self = Self { min: 0, max: i16::MAX };
    /// No version (an API that is never flexible).
    pub const NONE: Self = Self { min: 1, max: 0 };

    /// Whether `version` is in the range.
    #[must_use]
    pub const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// The wire type of a field. Strings, bytes and arrays are classic (`i16`/`i32` length, -1 for
/// null) in non-flexible versions and compact (unsigned varint length + 1, 0 for null) in
/// flexible ones.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// `int8`.
    I8,
    /// `int16`, big-endian.
    I16,
    /// `int32`, big-endian.
    I32,
    /// `int64`, big-endian.
    I64,
    /// `uint16`, big-endian.
    U16,
    /// `uint32`, big-endian.
    U32,
    /// `float64`, big-endian.
    F64,
    /// `bool`, one byte (the crate reads any non-zero byte as true).
    Bool,
    /// `uuid`, 16 bytes.
    Uuid,
    /// A UTF-8 string that must not be null.
    Str,
    /// A UTF-8 string that may be null.
    NullableStr,
    /// Bytes that must not be null.
    Bytes,
    /// Bytes that may be null.
    NullableBytes,
    /// A record set: nullable bytes, skipped by length (produce batches are validated later).
    Records,
    /// An array that must not be null, of the given element type.
    Array(&'static Ty),
    /// An array that may be null, of the given element type.
    NullableArray(&'static Ty),
    /// A nested struct (in flexible versions it ends with its own tagged fields).
    Struct(&'static Schema),
}

/// One field of a struct, in wire order.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The field's name, as in the crate (for error messages).
    pub name: &'static str,
    /// Versions in which the field is on the wire.
    pub versions: Versions,
    /// Its wire type.
    pub ty: Ty,
}

/// A tagged field the crate decodes itself (rather than keeping its bytes as an unknown field).
#[derive(Clone, Copy, Debug)]
pub struct TaggedField {
    /// The tag.
    pub tag: u32,
    /// The field's name, as in the crate.
    pub name: &'static str,
    /// Versions in which the tag is valid; the crate rejects it in the others.
    pub versions: Versions,
    /// Its wire type (always compact: tagged fields exist only in flexible versions).
    pub ty: Ty,
}

/// A struct: the request body or an element of an array.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    /// The crate's type name (for error messages).
    pub name: &'static str,
    /// Fields in wire order.
    pub fields: &'static [Field],
    /// Tagged fields the crate decodes; any other tag is skipped by its size.
    pub tagged: &'static [TaggedField],
}

/// The request schema of one API.
#[derive(Clone, Copy, Debug)]
pub struct ApiSchema {
    /// The API key.
    pub api_key: i16,
    /// Versions cairn accepts: what ApiVersions advertises.
    pub versions: Versions,
    /// Versions that are flexible (compact lengths, tagged fields, request header v2).
    pub flexible: Versions,
    /// The request body.
    pub body: &'static Schema,
}

/// Where in the schema a problem was found: `within.field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPath {
    /// The struct (crate type name).
    pub within: &'static str,
    /// The field, or a part of the tagged-field section (`tagged_fields`, `tag`, `tag_size`).
    pub field: &'static str,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.within, self.field)
    }
}

/// What the header of a request frame says, once [`check_header`] has validated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The API key (known to `kafka-protocol`, not necessarily served by cairn).
    pub api_key: i16,
    /// The API version as sent (not necessarily supported).
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The request header version `kafka-protocol` uses for this key and version (1 or 2; 0 only
    /// for ControlledShutdown v0, which the crate cannot decode).
    pub header_version: i16,
    /// Bytes of the header; the body starts here.
    pub header_len: usize,
}

/// Why a request was rejected. Offsets count from the start of the checked buffer: the frame for
/// [`check_header`], the body for [`check_request`].
///
/// Every variant means the same to the caller: the request cannot be decoded, so the connection
/// is closed (after a log line), except [`ShapeError::UnsupportedVersion`] for ApiVersions,
/// which Kafka answers with an `UNSUPPORTED_VERSION` v0 response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The API key is not one cairn checks (or, in a header, not one `kafka-protocol` knows).
    #[error("unsupported api key {api_key}")]
    UnsupportedApi {
        /// The key as read.
        api_key: i16,
    },
    /// The API is known but not in this version.
    #[error("unsupported version {api_version} of api key {api_key}")]
    UnsupportedVersion {
        /// The key as read.
        api_key: i16,
        /// The version as read.
        api_version: i16,
    },
    /// The bytes ended inside a field, or a length claims more bytes than are left.
    #[error("truncated at byte {offset} in {field}: needs {needed} bytes, {left} left")]
    Truncated {
        /// Where the field (or its contents) starts.
        offset: usize,
        /// The field being read.
        field: FieldPath,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left.
        left: usize,
    },
    /// A classic length below -1.
    #[error("negative length {length} at byte {offset} in {field}")]
    NegativeLength {
        /// Where the length starts.
        offset: usize,
        /// The field.
        field: FieldPath,
        /// The length as read.
        length: i32,
    },
    /// Null where the schema does not allow it.
    #[error("null at byte {offset} in non-nullable {field}")]
    UnexpectedNull {
        /// Where the length starts.
        offset: usize,
        /// The field.
        field: FieldPath,
    },
    /// An array count (or tagged-field count) that the bytes left cannot hold.
    #[error("{field} at byte {offset} claims {count} elements, more than {left} bytes can hold")]
    CountTooLarge {
        /// Where the count starts.
        offset: usize,
        /// The array.
        field: FieldPath,
        /// The count as read.
        count: u64,
        /// Bytes left after the count.
        left: usize,
    },
    /// The request declares more array elements and tagged fields than [`REQUEST_ELEMENTS_MAX`].
    #[error("{field} at byte {offset} takes the request over {limit} elements")]
    TooManyElements {
        /// Where the count starts.
        offset: usize,
        /// The array.
        field: FieldPath,
        /// The limit.
        limit: u32,
    },
    /// A varint longer than 5 bytes or over `u32::MAX`.
    #[error("malformed varint at byte {offset} in {field}")]
    BadVarint {
        /// Where the varint starts.
        offset: usize,
        /// The field.
        field: FieldPath,
    },
    /// A string that is not UTF-8.
    #[error("invalid utf-8 at byte {offset} in {field}")]
    BadUtf8 {
        /// Where the string's contents start.
        offset: usize,
        /// The field.
        field: FieldPath,
    },
    /// A known tag in a version where it does not exist (the crate rejects it).
    #[error(
        "tagged field {tag} at byte {offset} in {within} is not valid in version {api_version}"
    )]
    TagNotValid {
        /// Where the tag starts.
        offset: usize,
        /// The struct.
        within: &'static str,
        /// The tag.
        tag: u32,
        /// The request's version.
        api_version: i16,
    },
    /// A known tagged field whose value does not take exactly its declared size (the crate
    /// decodes the value ignoring the size, so the two readings would disagree).
    #[error(
        "tagged field {tag} at byte {offset} in {within} declares {size} bytes, its value takes {used}"
    )]
    TagSizeMismatch {
        /// Where the tag starts.
        offset: usize,
        /// The struct.
        within: &'static str,
        /// The tag.
        tag: u32,
        /// The declared size.
        size: u32,
        /// Bytes the value took (up to the declared size).
        used: usize,
    },
    /// Structs and arrays nested deeper than [`REQUEST_NESTING_MAX`] (a schema bug: the schemas
    /// are static and checked against the limit by a test).
    #[error("nesting deeper than {limit} at byte {offset} in {field}")]
    TooDeep {
        /// Where the nested value starts.
        offset: usize,
        /// The field.
        field: FieldPath,
        /// The limit.
        limit: u32,
    },
    /// Bytes after the end of the body.
    #[error("{count} trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Where the body ended.
        offset: usize,
        /// Bytes after it.
        count: usize,
    },
}

/// The versions of `api_key` cairn accepts (and ApiVersions advertises), if it accepts any.
#[must_use]
pub fn supported_versions(api_key: i16) -> Option<(i16, i16)> {
    api_schema(api_key).map(|api| (api.versions.min, api.versions.max))
}

/// The request schema of `api_key`, if cairn accepts it.
#[must_use]
pub fn api_schema(api_key: i16) -> Option<&'static ApiSchema> {
    APIS.iter().find(|api| api.api_key == api_key)
}

/// Checks the request header at the start of `frame` (the bytes after the 4-byte size prefix)
/// and says where the body starts.
///
/// The header version comes from `kafka-protocol`'s `ApiKey::request_header_version`: v1 is
/// api key (`i16`), api version (`i16`), correlation id (`i32`) and client id (a classic nullable
/// string, even in v2); v2 adds a tagged-field section. The API version is not checked here:
/// an unsupported ApiVersions request still gets an answer.
///
/// # Errors
///
/// [`ShapeError::UnsupportedApi`] if `kafka-protocol` does not know the API key (the header
/// version is then unknown), or the [`ShapeError`] of the first malformed field.
pub fn check_header(frame: &[u8]) -> Result<HeaderInfo, ShapeError> {
    const HEADER: &str = "RequestHeader";
    let mut walker = Walker::new(frame, 0, false);
    let api_key = i16::from_be_bytes(walker.array(path(HEADER, "request_api_key"))?);
    let api_version = i16::from_be_bytes(walker.array(path(HEADER, "request_api_version"))?);
    let correlation_id = i32::from_be_bytes(walker.array(path(HEADER, "correlation_id"))?);
    let key = ApiKey::try_from(api_key).map_err(|()| ShapeError::UnsupportedApi { api_key })?;
    let header_version = key.request_header_version(api_version);
    if header_version >= 1 {
        walker.string(true, path(HEADER, "client_id"))?;
    }
    if header_version >= 2 {
        walker.tagged_fields(&REQUEST_HEADER, 0)?;
    }
    Ok(HeaderInfo { api_key, api_version, correlation_id, header_version, header_len: walker.pos })
}

/// Checks that `body` is a well-formed request body of `api_key` at `api_version`, so that
/// `kafka-protocol` can decode it without allocating more than the bounds in the module
/// documentation.
///
/// # Errors
///
/// [`ShapeError::UnsupportedApi`] / [`ShapeError::UnsupportedVersion`] if the API or version is
/// not in [`APIS`], otherwise the [`ShapeError`] of the first malformed field.
pub fn check_request(api_key: i16, api_version: i16, body: &[u8]) -> Result<(), ShapeError> {
    let api = api_schema(api_key).ok_or(ShapeError::UnsupportedApi { api_key })?;
    if !api.versions.contains(api_version) {
        return Err(ShapeError::UnsupportedVersion { api_key, api_version });
    }
    let mut walker = Walker::new(body, api_version, api.flexible.contains(api_version));
    walker.structure(api.body, 0)?;
    let count = body.len().saturating_sub(walker.pos);
    if count > 0 {
        return Err(ShapeError::TrailingBytes { offset: walker.pos, count });
    }
    Ok(())
}

/// The fewest bytes a value of `ty` takes on the wire in `version` (null for nullable values,
/// empty for strings, bytes and arrays, no tagged fields).
#[must_use]
pub fn min_wire_bytes(ty: &Ty, version: i16, flexible: bool) -> u64 {
    let length_bytes = |classic| if flexible { 1 } else { classic };
    match ty {
        I8 | Bool => 1,
        I16 | U16 => 2,
        I32 | U32 => 4,
        I64 | F64 => 8,
        Uuid => 16,
        Str | NullableStr => length_bytes(2),
        Bytes | NullableBytes | Records | Array(_) | NullableArray(_) => length_bytes(4),
        Struct(schema) => {
            let fields: u64 = schema
                .fields
                .iter()
                .filter(|field| field.versions.contains(version))
                .map(|field| min_wire_bytes(&field.ty, version, flexible))
                .sum();
            fields + u64::from(flexible)
        }
    }
}

const fn path(within: &'static str, field: &'static str) -> FieldPath {
    FieldPath { within, field }
}

/// A cursor over untrusted bytes that validates as it goes. `end` is the end of the current
/// window: the whole buffer, or the declared size of a known tagged field being walked.
struct Walker<'a> {
    bytes: &'a [u8],
    /// Next byte to read; `pos <= end <= bytes.len()`.
    pos: usize,
    end: usize,
    version: i16,
    flexible: bool,
    /// Array elements and tagged fields the request may still declare.
    elements_left: u64,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8], version: i16, flexible: bool) -> Self {
        Self {
            bytes,
            pos: 0,
            end: bytes.len(),
            version,
            flexible,
            elements_left: u64::from(REQUEST_ELEMENTS_MAX),
        }
    }

    fn left(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Takes the next `count` bytes of the window.
    fn take(&mut self, count: u64, field: FieldPath) -> Result<&'a [u8], ShapeError> {
        let truncated =
            ShapeError::Truncated { offset: self.pos, field, needed: count, left: self.left() };
        let count = usize::try_from(count).map_err(|_| truncated)?;
        if count > self.left() {
            return Err(truncated);
        }
        let slice = self.bytes.get(self.pos..self.pos + count).ok_or(truncated)?;
        self.pos += count;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: FieldPath) -> Result<[u8; N], ShapeError> {
        let offset = self.pos;
        let slice = self.take(N as u64, field)?;
        <[u8; N]>::try_from(slice).map_err(|_| ShapeError::Truncated {
            offset,
            field,
            needed: N as u64,
            left: 0,
        })
    }

    /// An unsigned varint of at most 5 bytes whose value fits a `u32` (the crate accepts longer
    /// or overflowing ones and silently drops bits; no encoder writes them).
    fn uvarint(&mut self, field: FieldPath) -> Result<u32, ShapeError> {
        let offset = self.pos;
        let mut value = 0u32;
        for shift in [0, 7, 14, 21, 28] {
            let [byte] = self.array::<1>(field)?;
            if shift == 28 && byte > 0x0f {
                return Err(ShapeError::BadVarint { offset, field });
            }
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ShapeError::BadVarint { offset, field })
    }

    /// The length of a string (`classic_wide == false`: `i16`) or of bytes and arrays
    /// (`classic_wide == true`: `i32`); `None` for null.
    fn length(&mut self, classic_wide: bool, field: FieldPath) -> Result<Option<u64>, ShapeError> {
        let offset = self.pos;
        if self.flexible {
            let raw = self.uvarint(field)?;
            return Ok(raw.checked_sub(1).map(u64::from));
        }
        let length = if classic_wide {
            i32::from_be_bytes(self.array(field)?)
        } else {
            i32::from(i16::from_be_bytes(self.array(field)?))
        };
        match length {
            -1 => Ok(None),
            length if length < -1 => Err(ShapeError::NegativeLength { offset, field, length }),
            length => Ok(Some(u64::from(length.unsigned_abs()))),
        }
    }

    fn string(&mut self, nullable: bool, field: FieldPath) -> Result<(), ShapeError> {
        let offset = self.pos;
        match self.length(false, field)? {
            None if nullable => Ok(()),
            None => Err(ShapeError::UnexpectedNull { offset, field }),
            Some(length) => {
                let start = self.pos;
                let contents = self.take(length, field)?;
                std::str::from_utf8(contents)
                    .map(|_| ())
                    .map_err(|_| ShapeError::BadUtf8 { offset: start, field })
            }
        }
    }

    fn bytes(&mut self, nullable: bool, field: FieldPath) -> Result<(), ShapeError> {
        let offset = self.pos;
        match self.length(true, field)? {
            None if nullable => Ok(()),
            None => Err(ShapeError::UnexpectedNull { offset, field }),
            Some(length) => self.take(length, field).map(|_| ()),
        }
    }

    /// Charges `count` declared elements to the request's budget.
    fn charge(&mut self, count: u64, offset: usize, field: FieldPath) -> Result<(), ShapeError> {
        self.elements_left = self
            .elements_left
            .checked_sub(count)
            .ok_or(ShapeError::TooManyElements { offset, field, limit: REQUEST_ELEMENTS_MAX })?;
        Ok(())
    }

    fn array_of(
        &mut self,
        element: &'static Ty,
        nullable: bool,
        field: FieldPath,
        depth: u32,
    ) -> Result<(), ShapeError> {
        let offset = self.pos;
        let count = match self.length(true, field)? {
            None if nullable => return Ok(()),
            None => return Err(ShapeError::UnexpectedNull { offset, field }),
            Some(count) => count,
        };
        let element_bytes = min_wire_bytes(element, self.version, self.flexible).max(1);
        if count.saturating_mul(element_bytes) > self.left() as u64 {
            return Err(ShapeError::CountTooLarge { offset, field, count, left: self.left() });
        }
        self.charge(count, offset, field)?;
        for _ in 0..count {
            self.value(element, field, depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, ty: &'static Ty, field: FieldPath, depth: u32) -> Result<(), ShapeError> {
        if depth > REQUEST_NESTING_MAX {
            return Err(ShapeError::TooDeep {
                offset: self.pos,
                field,
                limit: REQUEST_NESTING_MAX,
            });
        }
        match ty {
            I8 | Bool => self.take(1, field).map(|_| ()),
            I16 | U16 => self.take(2, field).map(|_| ()),
            I32 | U32 => self.take(4, field).map(|_| ()),
            I64 | F64 => self.take(8, field).map(|_| ()),
            Uuid => self.take(16, field).map(|_| ()),
            Str => self.string(false, field),
            NullableStr => self.string(true, field),
            Bytes => self.bytes(false, field),
            NullableBytes | Records => self.bytes(true, field),
            Array(element) => self.array_of(element, false, field, depth),
            NullableArray(element) => self.array_of(element, true, field, depth),
            Struct(schema) => self.structure(schema, depth + 1),
        }
    }

    fn structure(&mut self, schema: &'static Schema, depth: u32) -> Result<(), ShapeError> {
        for field in schema.fields {
            if field.versions.contains(self.version) {
                self.value(&field.ty, path(schema.name, field.name), depth)?;
            }
        }
        if self.flexible { self.tagged_fields(schema, depth) } else { Ok(()) }
    }

    /// A tagged-field section: a count, then per field its tag, size and value. Known tags are
    /// walked by their schema inside a window of the declared size; unknown ones are skipped.
    fn tagged_fields(&mut self, schema: &'static Schema, depth: u32) -> Result<(), ShapeError> {
        let offset = self.pos;
        let field = path(schema.name, "tagged_fields");
        let count = u64::from(self.uvarint(field)?);
        // Each tagged field takes at least two bytes: its tag and its size.
        if count.saturating_mul(2) > self.left() as u64 {
            return Err(ShapeError::CountTooLarge { offset, field, count, left: self.left() });
        }
        self.charge(count, offset, field)?;
        for _ in 0..count {
            let at = self.pos;
            let tag = self.uvarint(path(schema.name, "tag"))?;
            let size = self.uvarint(path(schema.name, "tag_size"))?;
            let Some(known) = schema.tagged.iter().find(|known| known.tag == tag) else {
                self.take(u64::from(size), path(schema.name, "tag_size"))?;
                continue;
            };
            if !known.versions.contains(self.version) {
                return Err(ShapeError::TagNotValid {
                    offset: at,
                    within: schema.name,
                    tag,
                    api_version: self.version,
                });
            }
            let field = path(schema.name, known.name);
            let window = usize::try_from(size).ok().filter(|&size| size <= self.left()).ok_or(
                ShapeError::Truncated {
                    offset: self.pos,
                    field,
                    needed: u64::from(size),
                    left: self.left(),
                },
            )?;
            let (start, outer_end) = (self.pos, self.end);
            self.end = start + window;
            self.value(&known.ty, field, depth + 1)?;
            if self.pos != self.end {
                return Err(ShapeError::TagSizeMismatch {
                    offset: at,
                    within: schema.name,
                    tag,
                    size,
                    used: self.pos - start,
                });
            }
            self.end = outer_end;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The schemas. One `const` per struct, innermost first; field order is wire order.
// ---------------------------------------------------------------------------------------------

const fn field(name: &'static str, ty: Ty) -> Field {
    Field { name, versions: Versions::ALL, ty }
}

const fn tagged(tag: u32, name: &'static str, ty: Ty) -> TaggedField {
    TaggedField { tag, name, versions: Versions::ALL, ty }
}

const fn from(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

const fn range(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

impl Field {
    /// Present from version `min` on.
    const fn since(mut self, min: i16) -> Self {
        self.versions.min = min;
        self
    }

    /// Present up to version `max`.
    const fn until(mut self, max: i16) -> Self {
        self.versions.max = max;
        self
    }
}

impl TaggedField {
    const fn since(mut self, min: i16) -> Self {
        self.versions.min = min;
        self
    }
}

const fn schema(name: &'static str, fields: &'static [Field]) -> Schema {
    Schema { name, fields, tagged: &[] }
}

/// The request header's tagged fields (v2); the crate knows no tags there.
const REQUEST_HEADER: Schema = schema("RequestHeader", &[]);

const API_VERSIONS: Schema = schema(
    "ApiVersionsRequest",
    &[field("client_software_name", Str).since(3), field("client_software_version", Str).since(3)],
);

const METADATA_TOPIC: Schema = schema(
    "MetadataRequestTopic",
    &[field("topic_id", Uuid).since(10), field("name", NullableStr)],
);
const METADATA: Schema = schema(
    "MetadataRequest",
    &[
        field("topics", NullableArray(&Struct(&METADATA_TOPIC))),
        field("allow_auto_topic_creation", Bool).since(4),
        field("include_cluster_authorized_operations", Bool).since(8).until(10),
        field("include_topic_authorized_operations", Bool).since(8),
    ],
);

const PRODUCE_PARTITION: Schema =
    schema("PartitionProduceData", &[field("index", I32), field("records", Records)]);
const PRODUCE_TOPIC: Schema = schema(
    "TopicProduceData",
    &[
        field("name", Str).until(12),
        field("topic_id", Uuid).since(13),
        field("partition_data", Array(&Struct(&PRODUCE_PARTITION))),
    ],
);
const PRODUCE: Schema = schema(
    "ProduceRequest",
    &[
        field("transactional_id", NullableStr),
        field("acks", I16),
        field("timeout_ms", I32),
        field("topic_data", Array(&Struct(&PRODUCE_TOPIC))),
    ],
);

const FETCH_PARTITION: Schema = Schema {
    name: "FetchPartition",
    fields: &[
        field("partition", I32),
        field("current_leader_epoch", I32).since(9),
        field("fetch_offset", I64),
        field("last_fetched_epoch", I32).since(12),
        field("log_start_offset", I64).since(5),
        field("partition_max_bytes", I32),
    ],
    tagged: &[
        tagged(0, "replica_directory_id", Uuid).since(17),
        tagged(1, "high_watermark", I64).since(18),
    ],
};
const FETCH_TOPIC: Schema = schema(
    "FetchTopic",
    &[
        field("topic", Str).until(12),
        field("topic_id", Uuid).since(13),
        field("partitions", Array(&Struct(&FETCH_PARTITION))),
    ],
);
const FETCH_FORGOTTEN_TOPIC: Schema = schema(
    "ForgottenTopic",
    &[
        field("topic", Str).since(7).until(12),
        field("topic_id", Uuid).since(13),
        field("partitions", Array(&I32)).since(7),
    ],
);
const FETCH_REPLICA_STATE: Schema = schema(
    "ReplicaState",
    &[field("replica_id", I32).since(15), field("replica_epoch", I64).since(15)],
);
const FETCH: Schema = Schema {
    name: "FetchRequest",
    fields: &[
        field("replica_id", I32).until(14),
        field("max_wait_ms", I32),
        field("min_bytes", I32),
        field("max_bytes", I32),
        field("isolation_level", I8),
        field("session_id", I32).since(7),
        field("session_epoch", I32).since(7),
        field("topics", Array(&Struct(&FETCH_TOPIC))),
        field("forgotten_topics_data", Array(&Struct(&FETCH_FORGOTTEN_TOPIC))).since(7),
        field("rack_id", Str).since(11),
    ],
    tagged: &[
        tagged(0, "cluster_id", NullableStr),
        tagged(1, "replica_state", Struct(&FETCH_REPLICA_STATE)).since(15),
    ],
};

const LIST_OFFSETS_PARTITION: Schema = schema(
    "ListOffsetsPartition",
    &[
        field("partition_index", I32),
        field("current_leader_epoch", I32).since(4),
        field("timestamp", I64),
    ],
);
const LIST_OFFSETS_TOPIC: Schema = schema(
    "ListOffsetsTopic",
    &[field("name", Str), field("partitions", Array(&Struct(&LIST_OFFSETS_PARTITION)))],
);
const LIST_OFFSETS: Schema = schema(
    "ListOffsetsRequest",
    &[
        field("replica_id", I32),
        field("isolation_level", I8).since(2),
        field("topics", Array(&Struct(&LIST_OFFSETS_TOPIC))),
        field("timeout_ms", I32).since(10),
    ],
);

const OFFSET_FOR_LEADER_PARTITION: Schema = schema(
    "OffsetForLeaderPartition",
    &[field("partition", I32), field("current_leader_epoch", I32), field("leader_epoch", I32)],
);
const OFFSET_FOR_LEADER_TOPIC: Schema = schema(
    "OffsetForLeaderTopic",
    &[field("topic", Str), field("partitions", Array(&Struct(&OFFSET_FOR_LEADER_PARTITION)))],
);
const OFFSET_FOR_LEADER_EPOCH: Schema = schema(
    "OffsetForLeaderEpochRequest",
    &[field("replica_id", I32).since(3), field("topics", Array(&Struct(&OFFSET_FOR_LEADER_TOPIC)))],
);

const CREATE_TOPICS_ASSIGNMENT: Schema = schema(
    "CreatableReplicaAssignment",
    &[field("partition_index", I32), field("broker_ids", Array(&I32))],
);
const CREATE_TOPICS_CONFIG: Schema =
    schema("CreatableTopicConfig", &[field("name", Str), field("value", NullableStr)]);
const CREATE_TOPICS_TOPIC: Schema = schema(
    "CreatableTopic",
    &[
        field("name", Str),
        field("num_partitions", I32),
        field("replication_factor", I16),
        field("assignments", Array(&Struct(&CREATE_TOPICS_ASSIGNMENT))),
        field("configs", Array(&Struct(&CREATE_TOPICS_CONFIG))),
    ],
);
const CREATE_TOPICS: Schema = schema(
    "CreateTopicsRequest",
    &[
        field("topics", Array(&Struct(&CREATE_TOPICS_TOPIC))),
        field("timeout_ms", I32),
        field("validate_only", Bool),
    ],
);

const DELETE_TOPICS_STATE: Schema = schema(
    "DeleteTopicState",
    &[field("name", NullableStr).since(6), field("topic_id", Uuid).since(6)],
);
const DELETE_TOPICS: Schema = schema(
    "DeleteTopicsRequest",
    &[
        field("topics", Array(&Struct(&DELETE_TOPICS_STATE))).since(6),
        field("topic_names", Array(&Str)).until(5),
        field("timeout_ms", I32),
    ],
);

const CREATE_PARTITIONS_ASSIGNMENT: Schema =
    schema("CreatePartitionsAssignment", &[field("broker_ids", Array(&I32))]);
const CREATE_PARTITIONS_TOPIC: Schema = schema(
    "CreatePartitionsTopic",
    &[
        field("name", Str),
        field("count", I32),
        field("assignments", NullableArray(&Struct(&CREATE_PARTITIONS_ASSIGNMENT))),
    ],
);
const CREATE_PARTITIONS: Schema = schema(
    "CreatePartitionsRequest",
    &[
        field("topics", Array(&Struct(&CREATE_PARTITIONS_TOPIC))),
        field("timeout_ms", I32),
        field("validate_only", Bool),
    ],
);

const DESCRIBE_CONFIGS_RESOURCE: Schema = schema(
    "DescribeConfigsResource",
    &[
        field("resource_type", I8),
        field("resource_name", Str),
        field("configuration_keys", NullableArray(&Str)),
    ],
);
const DESCRIBE_CONFIGS: Schema = schema(
    "DescribeConfigsRequest",
    &[
        field("resources", Array(&Struct(&DESCRIBE_CONFIGS_RESOURCE))),
        field("include_synonyms", Bool),
        field("include_documentation", Bool).since(3),
    ],
);

const ALTERABLE_CONFIG: Schema = schema(
    "AlterableConfig",
    &[field("name", Str), field("config_operation", I8), field("value", NullableStr)],
);
const ALTER_CONFIGS_RESOURCE: Schema = schema(
    "AlterConfigsResource",
    &[
        field("resource_type", I8),
        field("resource_name", Str),
        field("configs", Array(&Struct(&ALTERABLE_CONFIG))),
    ],
);
const INCREMENTAL_ALTER_CONFIGS: Schema = schema(
    "IncrementalAlterConfigsRequest",
    &[field("resources", Array(&Struct(&ALTER_CONFIGS_RESOURCE))), field("validate_only", Bool)],
);

const DESCRIBE_CLUSTER: Schema = schema(
    "DescribeClusterRequest",
    &[
        field("include_cluster_authorized_operations", Bool),
        field("endpoint_type", I8).since(1),
        field("include_fenced_brokers", Bool).since(2),
    ],
);

const FIND_COORDINATOR: Schema = schema(
    "FindCoordinatorRequest",
    &[
        field("key", Str).until(3),
        field("key_type", I8).since(1),
        field("coordinator_keys", Array(&Str)).since(4),
    ],
);

const JOIN_GROUP_PROTOCOL: Schema =
    schema("JoinGroupRequestProtocol", &[field("name", Str), field("metadata", Bytes)]);
const JOIN_GROUP: Schema = schema(
    "JoinGroupRequest",
    &[
        field("group_id", Str),
        field("session_timeout_ms", I32),
        field("rebalance_timeout_ms", I32).since(1),
        field("member_id", Str),
        field("group_instance_id", NullableStr).since(5),
        field("protocol_type", Str),
        field("protocols", Array(&Struct(&JOIN_GROUP_PROTOCOL))),
        field("reason", NullableStr).since(8),
    ],
);

const SYNC_GROUP_ASSIGNMENT: Schema =
    schema("SyncGroupRequestAssignment", &[field("member_id", Str), field("assignment", Bytes)]);
const SYNC_GROUP: Schema = schema(
    "SyncGroupRequest",
    &[
        field("group_id", Str),
        field("generation_id", I32),
        field("member_id", Str),
        field("group_instance_id", NullableStr).since(3),
        field("protocol_type", NullableStr).since(5),
        field("protocol_name", NullableStr).since(5),
        field("assignments", Array(&Struct(&SYNC_GROUP_ASSIGNMENT))),
    ],
);

const HEARTBEAT: Schema = schema(
    "HeartbeatRequest",
    &[
        field("group_id", Str),
        field("generation_id", I32),
        field("member_id", Str),
        field("group_instance_id", NullableStr).since(3),
    ],
);

const LEAVE_GROUP_MEMBER: Schema = schema(
    "MemberIdentity",
    &[
        field("member_id", Str).since(3),
        field("group_instance_id", NullableStr).since(3),
        field("reason", NullableStr).since(5),
    ],
);
const LEAVE_GROUP: Schema = schema(
    "LeaveGroupRequest",
    &[
        field("group_id", Str),
        field("member_id", Str).until(2),
        field("members", Array(&Struct(&LEAVE_GROUP_MEMBER))).since(3),
    ],
);

const OFFSET_COMMIT_PARTITION: Schema = schema(
    "OffsetCommitRequestPartition",
    &[
        field("partition_index", I32),
        field("committed_offset", I64),
        field("committed_leader_epoch", I32).since(6),
        field("committed_metadata", NullableStr),
    ],
);
const OFFSET_COMMIT_TOPIC: Schema = schema(
    "OffsetCommitRequestTopic",
    &[field("name", Str), field("partitions", Array(&Struct(&OFFSET_COMMIT_PARTITION)))],
);
const OFFSET_COMMIT: Schema = schema(
    "OffsetCommitRequest",
    &[
        field("group_id", Str),
        field("generation_id_or_member_epoch", I32),
        field("member_id", Str),
        field("group_instance_id", NullableStr).since(7),
        field("retention_time_ms", I64).until(4),
        field("topics", Array(&Struct(&OFFSET_COMMIT_TOPIC))),
    ],
);

const OFFSET_FETCH_TOPIC: Schema = schema(
    "OffsetFetchRequestTopic",
    &[field("name", Str).until(7), field("partition_indexes", Array(&I32)).until(7)],
);
const OFFSET_FETCH_GROUP_TOPIC: Schema = schema(
    "OffsetFetchRequestTopics",
    &[field("name", Str).since(8), field("partition_indexes", Array(&I32)).since(8)],
);
const OFFSET_FETCH_GROUP: Schema = schema(
    "OffsetFetchRequestGroup",
    &[
        field("group_id", Str).since(8),
        field("member_id", NullableStr).since(9),
        field("member_epoch", I32).since(9),
        field("topics", NullableArray(&Struct(&OFFSET_FETCH_GROUP_TOPIC))).since(8),
    ],
);
const OFFSET_FETCH: Schema = schema(
    "OffsetFetchRequest",
    &[
        field("group_id", Str).until(7),
        field("topics", NullableArray(&Struct(&OFFSET_FETCH_TOPIC))).until(7),
        field("groups", Array(&Struct(&OFFSET_FETCH_GROUP))).since(8),
        field("require_stable", Bool).since(7),
    ],
);

const LIST_GROUPS: Schema = schema(
    "ListGroupsRequest",
    &[field("states_filter", Array(&Str)).since(4), field("types_filter", Array(&Str)).since(5)],
);

const DESCRIBE_GROUPS: Schema = schema(
    "DescribeGroupsRequest",
    &[field("groups", Array(&Str)), field("include_authorized_operations", Bool).since(3)],
);

const DELETE_GROUPS: Schema = schema("DeleteGroupsRequest", &[field("groups_names", Array(&Str))]);

const OFFSET_DELETE_PARTITION: Schema =
    schema("OffsetDeleteRequestPartition", &[field("partition_index", I32)]);
const OFFSET_DELETE_TOPIC: Schema = schema(
    "OffsetDeleteRequestTopic",
    &[field("name", Str), field("partitions", Array(&Struct(&OFFSET_DELETE_PARTITION)))],
);
const OFFSET_DELETE: Schema = schema(
    "OffsetDeleteRequest",
    &[field("group_id", Str), field("topics", Array(&Struct(&OFFSET_DELETE_TOPIC)))],
);

const CONSUMER_GROUP_HEARTBEAT_TOPIC: Schema =
    schema("TopicPartitions", &[field("topic_id", Uuid), field("partitions", Array(&I32))]);
const CONSUMER_GROUP_HEARTBEAT: Schema = schema(
    "ConsumerGroupHeartbeatRequest",
    &[
        field("group_id", Str),
        field("member_id", Str),
        field("member_epoch", I32),
        field("instance_id", NullableStr),
        field("rack_id", NullableStr),
        field("rebalance_timeout_ms", I32),
        field("subscribed_topic_names", NullableArray(&Str)),
        field("subscribed_topic_regex", NullableStr).since(1),
        field("server_assignor", NullableStr),
        field("topic_partitions", NullableArray(&Struct(&CONSUMER_GROUP_HEARTBEAT_TOPIC))),
    ],
);

const CONSUMER_GROUP_DESCRIBE: Schema = schema(
    "ConsumerGroupDescribeRequest",
    &[field("group_ids", Array(&Str)), field("include_authorized_operations", Bool)],
);

const INIT_PRODUCER_ID: Schema = schema(
    "InitProducerIdRequest",
    &[
        field("transactional_id", NullableStr),
        field("transaction_timeout_ms", I32),
        field("producer_id", I64).since(3),
        field("producer_epoch", I16).since(3),
    ],
);

const SASL_HANDSHAKE: Schema = schema("SaslHandshakeRequest", &[field("mechanism", Str)]);

const SASL_AUTHENTICATE: Schema = schema("SaslAuthenticateRequest", &[field("auth_bytes", Bytes)]);

const DELETE_RECORDS_PARTITION: Schema =
    schema("DeleteRecordsPartition", &[field("partition_index", I32), field("offset", I64)]);
const DELETE_RECORDS_TOPIC: Schema = schema(
    "DeleteRecordsTopic",
    &[field("name", Str), field("partitions", Array(&Struct(&DELETE_RECORDS_PARTITION)))],
);
const DELETE_RECORDS: Schema = schema(
    "DeleteRecordsRequest",
    &[field("topics", Array(&Struct(&DELETE_RECORDS_TOPIC))), field("timeout_ms", I32)],
);

const fn api(
    api_key: i16,
    versions: Versions,
    flexible: Versions,
    body: &'static Schema,
) -> ApiSchema {
    ApiSchema { api_key, versions, flexible, body }
}

/// Every API cairn accepts, with the versions it accepts.
///
/// The ranges are the crate's (`XxxRequest::VERSIONS`, which match Apache Kafka 4.x after
/// KIP-896 removed the oldest versions), except Metadata v0, whose empty topic list means "all
/// topics" where later versions use null: no client still in use needs it. A test checks every
/// range against the crate and every flexible range against `ApiKey::request_header_version`.
pub static APIS: &[ApiSchema] = &[
    api(18, range(0, 4), from(3), &API_VERSIONS),
    api(3, range(1, 13), from(9), &METADATA),
    api(0, range(3, 13), from(9), &PRODUCE),
    api(1, range(4, 18), from(12), &FETCH),
    api(2, range(1, 10), from(6), &LIST_OFFSETS),
    api(23, range(2, 4), from(4), &OFFSET_FOR_LEADER_EPOCH),
    api(19, range(2, 7), from(5), &CREATE_TOPICS),
    api(20, range(1, 6), from(4), &DELETE_TOPICS),
    api(37, range(0, 3), from(2), &CREATE_PARTITIONS),
    api(32, range(1, 4), from(4), &DESCRIBE_CONFIGS),
    api(44, range(0, 1), from(1), &INCREMENTAL_ALTER_CONFIGS),
    api(60, range(0, 2), from(0), &DESCRIBE_CLUSTER),
    api(10, range(0, 6), from(3), &FIND_COORDINATOR),
    api(11, range(0, 9), from(6), &JOIN_GROUP),
    api(14, range(0, 5), from(4), &SYNC_GROUP),
    api(12, range(0, 4), from(4), &HEARTBEAT),
    api(13, range(0, 5), from(4), &LEAVE_GROUP),
    api(8, range(2, 9), from(8), &OFFSET_COMMIT),
    api(9, range(1, 9), from(6), &OFFSET_FETCH),
    api(16, range(0, 5), from(3), &LIST_GROUPS),
    api(15, range(0, 6), from(5), &DESCRIBE_GROUPS),
    api(42, range(0, 2), from(2), &DELETE_GROUPS),
    api(47, range(0, 0), Versions::NONE, &OFFSET_DELETE),
    api(68, range(0, 1), from(0), &CONSUMER_GROUP_HEARTBEAT),
    api(69, range(0, 1), from(0), &CONSUMER_GROUP_DESCRIBE),
    api(22, range(0, 5), from(2), &INIT_PRODUCER_ID),
    api(17, range(0, 1), Versions::NONE, &SASL_HANDSHAKE),
    api(36, range(0, 2), from(2), &SASL_AUTHENTICATE),
    api(21, range(0, 2), from(2), &DELETE_RECORDS),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Deepest nesting of a value of `ty`, counted the way [`Walker::value`] counts it.
    fn depth_of(ty: &Ty) -> u32 {
        match ty {
            Array(element) | NullableArray(element) => 1 + depth_of(element),
            Struct(schema) => 1 + schema_depth(schema),
            _ => 0,
        }
    }

    fn schema_depth(schema: &Schema) -> u32 {
        let fields = schema.fields.iter().map(|field| depth_of(&field.ty));
        let tagged = schema.tagged.iter().map(|field| 1 + depth_of(&field.ty));
        fields.chain(tagged).max().unwrap_or(0)
    }

    #[test]
    fn schemas_fit_the_nesting_limit() {
        for api in APIS {
            assert!(schema_depth(api.body) <= REQUEST_NESTING_MAX, "api {}", api.api_key);
        }
    }

    #[test]
    fn api_table_is_consistent() {
        for (index, api) in APIS.iter().enumerate() {
            assert!(api.versions.min <= api.versions.max, "api {}", api.api_key);
            assert!(
                APIS[..index].iter().all(|other| other.api_key != api.api_key),
                "api {} listed twice",
                api.api_key
            );
        }
        assert_eq!(supported_versions(1), Some((4, 18)));
        assert_eq!(supported_versions(1000), None);
    }

    fn check_uvarint(bytes: &[u8]) -> Result<u32, ShapeError> {
        Walker::new(bytes, 0, true).uvarint(path("T", "f"))
    }

    #[test]
    fn uvarint_accepts_up_to_five_bytes_within_u32() {
        assert_eq!(check_uvarint(&[0x00]), Ok(0));
        assert_eq!(check_uvarint(&[0x7f]), Ok(127));
        assert_eq!(check_uvarint(&[0x80, 0x01]), Ok(128));
        assert_eq!(check_uvarint(&[0x80, 0x00]), Ok(0), "non-minimal encodings are accepted");
        assert_eq!(check_uvarint(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Ok(u32::MAX));
    }

    #[test]
    fn uvarint_rejects_overflow_overlength_and_truncation() {
        let bad = ShapeError::BadVarint { offset: 0, field: path("T", "f") };
        assert_eq!(check_uvarint(&[0xff, 0xff, 0xff, 0xff, 0x10]), Err(bad));
        assert_eq!(check_uvarint(&[0xff, 0xff, 0xff, 0xff, 0x8f, 0x00]), Err(bad));
        assert!(matches!(check_uvarint(&[]), Err(ShapeError::Truncated { .. })));
        assert!(matches!(check_uvarint(&[0x80, 0x80]), Err(ShapeError::Truncated { .. })));
    }

    #[test]
    fn min_wire_bytes_follows_the_version() {
        let partition = Struct(&FETCH_PARTITION);
        // v4: partition, fetch_offset, partition_max_bytes.
        assert_eq!(min_wire_bytes(&partition, 4, false), 4 + 8 + 4);
        // v12: + current_leader_epoch, last_fetched_epoch, log_start_offset, tagged fields.
        assert_eq!(min_wire_bytes(&partition, 12, true), 4 + 4 + 8 + 4 + 8 + 4 + 1);
        assert_eq!(min_wire_bytes(&Str, 0, false), 2);
        assert_eq!(min_wire_bytes(&Array(&I32), 0, false), 4);
        assert_eq!(min_wire_bytes(&Array(&I32), 0, true), 1);
    }

    #[test]
    fn known_tagged_field_must_fill_its_declared_size() {
        // Fetch v12 with no topics, no forgotten topics, rack "" and tag 0 (cluster_id "ab")
        // declaring 4 bytes where the value takes 3.
        let mut body = vec![0; 4 * 4 + 1 + 4 + 4];
        body.extend([1, 1, 1]); // topics [], forgotten [], rack_id ""
        body.extend([1, 0, 4, 3, b'a', b'b', 0]);
        let error = check_request(1, 12, &body).expect_err("size mismatch");
        assert!(matches!(error, ShapeError::TagSizeMismatch { tag: 0, size: 4, used: 3, .. }));
        // With the right size it passes.
        let at = body.len() - 5;
        body[at] = 3;
        body.pop();
        assert_eq!(check_request(1, 12, &body), Ok(()));
    }

    #[test]
    fn known_tag_outside_its_versions_is_rejected() {
        // Fetch v12 with tag 1 (replica_state), valid from v15 only.
        let mut body = vec![0; 4 * 4 + 1 + 4 + 4];
        body.extend([1, 1, 1, 1, 1, 0]);
        let error = check_request(1, 12, &body).expect_err("tag not valid");
        assert!(matches!(error, ShapeError::TagNotValid { tag: 1, api_version: 12, .. }));
    }

    #[test]
    fn unknown_tagged_fields_are_skipped_by_size() {
        // ApiVersions v3: two empty strings, then tag 7 of 3 bytes.
        assert_eq!(check_request(18, 3, &[1, 1, 1, 7, 3, 0xff, 0xff, 0xff]), Ok(()));
        let error = check_request(18, 3, &[1, 1, 1, 7, 4, 0xff, 0xff, 0xff]).expect_err("short");
        assert!(matches!(error, ShapeError::Truncated { needed: 4, left: 3, .. }));
    }
}
