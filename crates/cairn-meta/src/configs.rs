//! Topic configs: the Kafka topic configs cairn implements, with Kafka's names, defaults and
//! validation, and honest refusals for the ones it does not.
//!
//! A [`TopicConfigs`] holds a topic's *overrides* (what was set on the topic) in canonical text,
//! plus their typed values resolved against the defaults, so accessors never parse. Every way in
//! (create, alter, reading the store back from disk) goes through the same validation, and a
//! change list is applied all or nothing.
//!
//! Supported ([`CONFIG_KEYS`]):
//!
//! | key | type | default | accepted |
//! |---|---|---|---|
//! | `cleanup.policy` | list | `delete` | `delete`, `compact`, or both |
//! | `compression.type` | string | `producer` | `uncompressed`, `zstd`, `lz4`, `snappy`, `gzip`, `producer` |
//! | `delete.retention.ms` | long | `86400000` | `>= 0` |
//! | `max.compaction.lag.ms` | long | `9223372036854775807` | `>= 1` |
//! | `max.message.bytes` | int | `1048588` | `0..=BATCH_BYTES_MAX` |
//! | `message.timestamp.type` | string | `CreateTime` | `CreateTime`, `LogAppendTime` |
//! | `min.cleanable.dirty.ratio` | double | `0.5` | `0..=1`, to a millionth |
//! | `min.compaction.lag.ms` | long | `0` | `>= 0` |
//! | `min.insync.replicas` | int | `1` | `>= 1` |
//! | `retention.bytes` | long | `-1` | `>= -1`; `-1` keeps everything |
//! | `retention.ms` | long | `604800000` | `>= -1`; `-1` keeps forever |
//! | `segment.bytes` | int | `1073741824` | `SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX` |
//! | `segment.ms` | long | `604800000` | `>= 1` |
//!
//! `compression.type`: as in Kafka, `producer` stores batches exactly as producers compressed
//! them; a codec (`uncompressed` is none) makes the broker recompress every produced batch of
//! another codec before storing it (control batches excepted). The per-codec levels of KIP-390
//! (`compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`) are refused:
//! cairn compresses at fixed levels.
//!
//! `cleanup.policy` is a list: `delete` deletes old segments by `retention.*`, `compact` keeps
//! the latest record of each key (RFC 0007) by the four compaction configs; IncrementalAlter-
//! Configs' APPEND and SUBTRACT add and remove items ([`ConfigChange::Append`]).
//!
//! The other Kafka topic configs (`flush.ms`, `flush.messages`, tiered-storage
//! settings, ...) are refused with [`ConfigError::Unsupported`] and a reason; names Kafka does not
//! know either are [`ConfigError::UnknownKey`]. As in Kafka, values are trimmed of surrounding
//! whitespace and names and enum values are case-sensitive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_types::batch::Compression;
use cairn_types::limits::{
    BATCH_BYTES_MAX, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};

use crate::ConfigChange;

const CLEANUP_POLICY: &str = "cleanup.policy";
const COMPRESSION_TYPE: &str = "compression.type";
const DELETE_RETENTION_MS: &str = "delete.retention.ms";
const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
const RETENTION_BYTES: &str = "retention.bytes";
const RETENTION_MS: &str = "retention.ms";
const SEGMENT_BYTES: &str = "segment.bytes";
const SEGMENT_MS: &str = "segment.ms";

/// Every topic config cairn implements, sorted; [`TopicConfigs::entries`] lists them in this
/// order.
pub const CONFIG_KEYS: &[&str] = &[
    CLEANUP_POLICY,
    COMPRESSION_TYPE,
    DELETE_RETENTION_MS,
    MAX_COMPACTION_LAG_MS,
    MAX_MESSAGE_BYTES,
    MESSAGE_TIMESTAMP_TYPE,
    MIN_CLEANABLE_DIRTY_RATIO,
    MIN_COMPACTION_LAG_MS,
    MIN_INSYNC_REPLICAS,
    RETENTION_BYTES,
    RETENTION_MS,
    SEGMENT_BYTES,
    SEGMENT_MS,
];

/// Kafka topic configs cairn knows of but does not implement, with the reason given to the user.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("compression.gzip.level", COMPRESSION_LEVEL_REASON),
    ("compression.lz4.level", COMPRESSION_LEVEL_REASON),
    ("compression.zstd.level", COMPRESSION_LEVEL_REASON),
    ("file.delete.delay.ms", NOT_IMPLEMENTED_REASON),
    ("flush.messages", FLUSH_REASON),
    ("flush.ms", FLUSH_REASON),
    ("follower.replication.throttled.replicas", NOT_IMPLEMENTED_REASON),
    ("index.interval.bytes", NOT_IMPLEMENTED_REASON),
    ("leader.replication.throttled.replicas", NOT_IMPLEMENTED_REASON),
    ("local.retention.bytes", TIERED_REASON),
    ("local.retention.ms", TIERED_REASON),
    ("message.downconversion.enable", NOT_IMPLEMENTED_REASON),
    ("message.format.version", NOT_IMPLEMENTED_REASON),
    ("message.timestamp.after.max.ms", NOT_IMPLEMENTED_REASON),
    ("message.timestamp.before.max.ms", NOT_IMPLEMENTED_REASON),
    ("message.timestamp.difference.max.ms", NOT_IMPLEMENTED_REASON),
    ("preallocate", NOT_IMPLEMENTED_REASON),
    ("remote.log.copy.disable", TIERED_REASON),
    ("remote.log.delete.on.disable", TIERED_REASON),
    ("remote.storage.enable", TIERED_REASON),
    ("segment.index.bytes", NOT_IMPLEMENTED_REASON),
    ("segment.jitter.ms", NOT_IMPLEMENTED_REASON),
    ("unclean.leader.election.enable", NOT_IMPLEMENTED_REASON),
];

const COMPRESSION_LEVEL_REASON: &str = concat!(
    "cairn compresses at fixed levels (gzip 6, lz4's fast mode, zstd's fastest); ",
    "compression.type chooses only the codec"
);
const FLUSH_REASON: &str =
    "cairn makes data durable by group commit; the producer's acks decide what a request waits for";
const TIERED_REASON: &str = "tiered storage is not supported";
const NOT_IMPLEMENTED_REASON: &str = "cairn does not implement this kafka topic config";

/// Kafka's default `max.message.bytes`: 1 MiB plus the record batch overhead.
const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;
/// Kafka's default `retention.ms` and `segment.ms`: 7 days.
const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `delete.retention.ms`: one day.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// `min.cleanable.dirty.ratio` is kept in millionths.
const RATIO_PARTS: u32 = 1_000_000;
/// Longest key or value quoted in an error: both may come from the network.
const QUOTED_CHARS_MAX: usize = 64;

const _: () = assert!(SEGMENT_BYTES_MAX <= i32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= i32::MAX as u32);
const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT <= BATCH_BYTES_MAX);

/// Why a config (or a change list) is refused; Kafka's `INVALID_CONFIG`. Keys and values in the
/// error are cut to a few dozen characters, since they may come from a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither cairn nor Kafka knows a topic config by this name.
    #[error("unknown topic config {key:?}")]
    UnknownKey {
        /// The refused name.
        key: String,
    },
    /// The value does not parse or is out of range for the key.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The config name.
        key: String,
        /// The refused value.
        value: String,
        /// What the key accepts.
        reason: String,
    },
    /// A valid Kafka config (or value) that cairn does not implement.
    #[error("{key}={value:?} is not supported: {reason}")]
    Unsupported {
        /// The config name.
        key: String,
        /// The refused value.
        value: String,
        /// Why, and what is supported instead.
        reason: &'static str,
    },
    /// The same key appears twice in one request. Kafka answers this with `INVALID_REQUEST` in
    /// IncrementalAlterConfigs.
    #[error("topic config {key} appears more than once")]
    DuplicateKey {
        /// The repeated name.
        key: String,
    },
}

/// `message.timestamp.type`: which timestamp a batch's records carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    #[default]
    CreateTime,
    /// The broker overwrites the batch's max timestamp with its clock at append time.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's name of the value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `compression.type`: the codec a topic stores its batches with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompressionType {
    /// `producer`: every batch as its producer compressed it (Kafka's default).
    #[default]
    Producer,
    /// `uncompressed` ([`Compression::None`]), `gzip`, `snappy`, `lz4` or `zstd`: the broker
    /// recompresses produced batches of any other codec to this one.
    Codec(Compression),
}

impl CompressionType {
    /// Every value, in the order Kafka lists them.
    pub const ALL: [CompressionType; 6] = [
        CompressionType::Codec(Compression::None),
        CompressionType::Codec(Compression::Zstd),
        CompressionType::Codec(Compression::Lz4),
        CompressionType::Codec(Compression::Snappy),
        CompressionType::Codec(Compression::Gzip),
        CompressionType::Producer,
    ];

    /// Kafka's name of the value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Codec(Compression::None) => "uncompressed",
            CompressionType::Codec(Compression::Gzip) => "gzip",
            CompressionType::Codec(Compression::Snappy) => "snappy",
            CompressionType::Codec(Compression::Lz4) => "lz4",
            CompressionType::Codec(Compression::Zstd) => "zstd",
        }
    }

    /// The codec the broker stores batches with; `None` for `producer` (each batch's own).
    #[must_use]
    pub fn codec(self) -> Option<Compression> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Codec(codec) => Some(codec),
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `cleanup.policy`: which of Kafka's two policies a topic has (at least one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `delete`: segments past `retention.ms` / `retention.bytes` are deleted.
    pub delete: bool,
    /// `compact`: the log keeps the latest record of each key (RFC 0007).
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's names of the policies held, comma-separated, `compact` first.
    fn text(self) -> String {
        let names = [(self.compact, "compact"), (self.delete, "delete")];
        names.iter().filter(|(held, _)| *held).map(|(_, name)| *name).collect::<Vec<_>>().join(",")
    }

    /// The policies of `items` (names, trimmed), each at most once, at least one.
    fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<CleanupPolicy, String> {
        let mut policy = CleanupPolicy { delete: false, compact: false };
        for item in items {
            let held = match item {
                "delete" => &mut policy.delete,
                "compact" => &mut policy.compact,
                _ => return Err(format!("{item:?} is not a policy: delete, compact or both")),
            };
            if std::mem::replace(held, true) {
                return Err(format!("{item} is listed twice"));
            }
        }
        if !policy.delete && !policy.compact {
            return Err("must name delete, compact or both".into());
        }
        Ok(policy)
    }
}

/// The compaction configs of a topic whose `cleanup.policy` holds `compact` (RFC 0007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio`, in millionths: a round starts once the dirty part is this
    /// share of the cleanable log.
    pub min_cleanable_dirty_ratio_millionths: u32,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record waits at most this long for a round.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: a tombstone stays this long after its first round.
    pub delete_retention_ms: i64,
}

/// Where a described config's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// Set on the topic (Kafka's `DYNAMIC_TOPIC_CONFIG`, 1).
    TopicOverride,
    /// Not set; the default applies (Kafka's `DEFAULT_CONFIG`, 5).
    Default,
}

/// One config as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name, one of [`CONFIG_KEYS`].
    pub name: String,
    /// Effective value, in canonical text.
    pub value: String,
    /// Whether the value was set on the topic or is the default.
    pub source: ConfigSource,
    /// Whether cairn accepts only one value for it, so it cannot really be changed (none
    /// today). Setting it to that value is still accepted.
    pub read_only: bool,
}

/// A topic's config overrides, validated, with typed accessors that resolve defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    /// What was set on the topic: key to canonical value. Keys are in [`CONFIG_KEYS`].
    overrides: BTreeMap<String, String>,
    /// Every config's typed value: an override, or the default. Derived from `overrides`.
    resolved: Resolved,
}

/// Typed values of every config that has more than one accepted value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resolved {
    cleanup_policy: CleanupPolicy,
    compaction: CompactionConfig,
    retention_ms: i64,
    retention_bytes: i64,
    segment_bytes: u32,
    segment_ms: i64,
    max_message_bytes: u32,
    timestamp_type: TimestampType,
    min_insync_replicas: u32,
    compression_type: CompressionType,
}

impl Default for Resolved {
    fn default() -> Resolved {
        Resolved {
            cleanup_policy: CleanupPolicy { delete: true, compact: false },
            compaction: CompactionConfig {
                min_cleanable_dirty_ratio_millionths: RATIO_PARTS / 2,
                min_compaction_lag_ms: 0,
                max_compaction_lag_ms: i64::MAX,
                delete_retention_ms: DAY_MS,
            },
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            // Lossless: asserted <= i32::MAX above.
            segment_bytes: SEGMENT_BYTES_DEFAULT as u32,
            segment_ms: WEEK_MS,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            min_insync_replicas: 1,
            compression_type: CompressionType::Producer,
        }
    }
}

impl TopicConfigs {
    /// Configs with the given overrides (a CreateTopics request, or a store read back).
    ///
    /// # Errors
    /// The first invalid pair, or [`ConfigError::DuplicateKey`].
    pub fn from_overrides(pairs: &[(String, String)]) -> Result<TopicConfigs, ConfigError> {
        TopicConfigs::default()
            .with_changes(pairs.iter().map(|(key, value)| (key.as_str(), Some(value.as_str()))))
    }

    /// Checks that `value` is acceptable for `key`.
    ///
    /// # Errors
    /// [`ConfigError::UnknownKey`], [`ConfigError::Unsupported`] or
    /// [`ConfigError::InvalidValue`].
    pub fn validate(key: &str, value: &str) -> Result<(), ConfigError> {
        Resolved::default().set(key, value).map(drop)
    }

    /// These configs with `changes` applied in order, or nothing changed: the first invalid
    /// change fails the whole list. Deleting a key that is not set does nothing.
    ///
    /// # Errors
    /// The first invalid change, or [`ConfigError::DuplicateKey`] if a key appears twice.
    pub fn apply(&self, changes: &[ConfigChange]) -> Result<TopicConfigs, ConfigError> {
        let changes: Vec<(&str, Option<String>)> =
            changes.iter().map(|change| self.resolve(change)).collect::<Result<_, _>>()?;
        self.with_changes(changes.iter().map(|(key, value)| (*key, value.as_deref())))
    }

    /// A change as a set or a delete: APPEND and SUBTRACT become the list they leave.
    fn resolve<'a>(
        &self,
        change: &'a ConfigChange,
    ) -> Result<(&'a str, Option<String>), ConfigError> {
        let (key, value, append) = match change {
            ConfigChange::Set { key, value } => return Ok((key, Some(value.clone()))),
            ConfigChange::Delete { key } => return Ok((key, None)),
            ConfigChange::Append { key, value } => (key, value, true),
            ConfigChange::Subtract { key, value } => (key, value, false),
        };
        if key != CLEANUP_POLICY {
            if !CONFIG_KEYS.contains(&key.as_str())
                && !UNSUPPORTED_KEYS.iter().any(|&(name, _)| name == key)
            {
                return Err(ConfigError::UnknownKey { key: quoted(key) });
            }
            let reason = "APPEND and SUBTRACT apply to list configs (cleanup.policy)".into();
            return Err(invalid(key, value, reason));
        }
        let current = self.resolved.text(key);
        let mut items: Vec<&str> = current.split(',').collect();
        for item in value.split(',').map(str::trim) {
            if !append {
                items.retain(|held| *held != item);
            } else if !items.contains(&item) {
                items.push(item);
            }
        }
        Ok((key, Some(items.join(","))))
    }

    /// The overrides: key to canonical value, sorted by key.
    #[must_use]
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Every supported config with its effective value, in [`CONFIG_KEYS`] order.
    #[must_use]
    pub fn entries(&self) -> Vec<ConfigEntry> {
        CONFIG_KEYS
            .iter()
            .map(|&key| ConfigEntry {
                name: key.to_owned(),
                value: self.resolved.text(key),
                source: if self.overrides.contains_key(key) {
                    ConfigSource::TopicOverride
                } else {
                    ConfigSource::Default
                },
                read_only: false,
            })
            .collect()
    }

    /// `cleanup.policy`.
    #[must_use]
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        self.resolved.cleanup_policy
    }

    /// The compaction configs, if `cleanup.policy` holds `compact`.
    #[must_use]
    pub fn compaction(&self) -> Option<CompactionConfig> {
        self.resolved.cleanup_policy.compact.then_some(self.resolved.compaction)
    }

    /// `retention.ms`: delete segments whose newest record is older than this; `None` keeps
    /// them forever (`-1`).
    #[must_use]
    pub fn retention_ms(&self) -> Option<i64> {
        (self.resolved.retention_ms >= 0).then_some(self.resolved.retention_ms)
    }

    /// `retention.bytes`: delete the oldest segments while the partition, without them, still
    /// holds at least this much; `None` keeps everything (`-1`).
    #[must_use]
    pub fn retention_bytes(&self) -> Option<u64> {
        u64::try_from(self.resolved.retention_bytes).ok()
    }

    /// `segment.bytes`: roll to a new segment before the active one would exceed this size.
    #[must_use]
    pub fn segment_bytes(&self) -> u64 {
        u64::from(self.resolved.segment_bytes)
    }

    /// `segment.ms`: roll the active segment once it is this old. Always positive.
    #[must_use]
    pub fn segment_ms(&self) -> i64 {
        self.resolved.segment_ms
    }

    /// `max.message.bytes`: the largest record batch produce accepts for the topic.
    #[must_use]
    pub fn max_message_bytes(&self) -> u32 {
        self.resolved.max_message_bytes
    }

    /// `message.timestamp.type`.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        self.resolved.timestamp_type
    }

    /// `compression.type`: the codec batches are stored with.
    #[must_use]
    pub fn compression_type(&self) -> CompressionType {
        self.resolved.compression_type
    }

    /// `min.insync.replicas`: replicas that must have a batch before an `acks=all` produce
    /// succeeds. At least 1.
    #[must_use]
    pub fn min_insync_replicas(&self) -> u32 {
        self.resolved.min_insync_replicas
    }

    /// Applies `(key, Some(value))` sets and `(key, None)` deletes to a copy of the overrides.
    fn with_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<TopicConfigs, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut overrides = self.overrides.clone();
        for (key, value) in changes {
            if !seen.insert(key) {
                return Err(ConfigError::DuplicateKey { key: quoted(key) });
            }
            match value {
                Some(value) => {
                    let canonical = Resolved::default().set(key, value)?;
                    overrides.insert(key.to_owned(), canonical);
                }
                None => {
                    let known = CONFIG_KEYS.contains(&key)
                        || UNSUPPORTED_KEYS.iter().any(|&(name, _)| name == key);
                    if !known {
                        return Err(ConfigError::UnknownKey { key: quoted(key) });
                    }
                    overrides.remove(key);
                }
            }
        }
        let mut resolved = Resolved::default();
        for (key, value) in &overrides {
            resolved.set(key, value)?;
        }
        Ok(TopicConfigs { overrides, resolved })
    }
}

impl Resolved {
    /// Parses `value` for `key` into its typed field and returns its canonical text.
    fn set(&mut self, key: &str, value: &str) -> Result<String, ConfigError> {
        let trimmed = value.trim();
        match key {
            CLEANUP_POLICY => {
                self.cleanup_policy = CleanupPolicy::parse(trimmed.split(',').map(str::trim))
                    .map_err(|reason| invalid(key, value, reason))?;
            }
            DELETE_RETENTION_MS => {
                self.compaction.delete_retention_ms = int(key, value, 0, i64::MAX)?;
            }
            MAX_COMPACTION_LAG_MS => {
                self.compaction.max_compaction_lag_ms = int(key, value, 1, i64::MAX)?;
            }
            MIN_CLEANABLE_DIRTY_RATIO => {
                self.compaction.min_cleanable_dirty_ratio_millionths = ratio(key, value)?;
            }
            MIN_COMPACTION_LAG_MS => {
                self.compaction.min_compaction_lag_ms = int(key, value, 0, i64::MAX)?;
            }
            COMPRESSION_TYPE => {
                let Some(&parsed) = CompressionType::ALL.iter().find(|c| c.as_str() == trimmed)
                else {
                    let names = CompressionType::ALL.map(CompressionType::as_str).join(", ");
                    return Err(invalid(key, value, format!("must be one of {names}")));
                };
                self.compression_type = parsed;
            }
            MAX_MESSAGE_BYTES => {
                self.max_message_bytes = int(key, value, 0, i64::from(BATCH_BYTES_MAX))?;
            }
            MESSAGE_TIMESTAMP_TYPE => {
                self.timestamp_type = match trimmed {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        let reason = "must be CreateTime or LogAppendTime".into();
                        return Err(invalid(key, value, reason));
                    }
                };
            }
            MIN_INSYNC_REPLICAS => {
                self.min_insync_replicas = int(key, value, 1, i64::from(i32::MAX))?;
            }
            RETENTION_BYTES => self.retention_bytes = int(key, value, -1, i64::MAX)?,
            RETENTION_MS => self.retention_ms = int(key, value, -1, i64::MAX)?,
            SEGMENT_BYTES => {
                // Lossless: both asserted <= i32::MAX above.
                let (min, max) = (SEGMENT_BYTES_MIN as i64, SEGMENT_BYTES_MAX as i64);
                self.segment_bytes = int(key, value, min, max)?;
            }
            SEGMENT_MS => self.segment_ms = int(key, value, 1, i64::MAX)?,
            _ => {
                return Err(match UNSUPPORTED_KEYS.iter().find(|&&(name, _)| name == key) {
                    Some(&(_, reason)) => unsupported(key, value, reason),
                    None => ConfigError::UnknownKey { key: quoted(key) },
                });
            }
        }
        Ok(self.text(key))
    }

    /// The canonical text of `key`'s value; `key` is one of [`CONFIG_KEYS`].
    fn text(&self, key: &str) -> String {
        match key {
            CLEANUP_POLICY => self.cleanup_policy.text(),
            COMPRESSION_TYPE => self.compression_type.as_str().to_owned(),
            DELETE_RETENTION_MS => self.compaction.delete_retention_ms.to_string(),
            MAX_COMPACTION_LAG_MS => self.compaction.max_compaction_lag_ms.to_string(),
            MIN_CLEANABLE_DIRTY_RATIO => {
                let ratio = f64::from(self.compaction.min_cleanable_dirty_ratio_millionths);
                (ratio / f64::from(RATIO_PARTS)).to_string()
            }
            MIN_COMPACTION_LAG_MS => self.compaction.min_compaction_lag_ms.to_string(),
            MAX_MESSAGE_BYTES => self.max_message_bytes.to_string(),
            MESSAGE_TIMESTAMP_TYPE => self.timestamp_type.as_str().to_owned(),
            MIN_INSYNC_REPLICAS => self.min_insync_replicas.to_string(),
            RETENTION_BYTES => self.retention_bytes.to_string(),
            RETENTION_MS => self.retention_ms.to_string(),
            SEGMENT_BYTES => self.segment_bytes.to_string(),
            SEGMENT_MS => self.segment_ms.to_string(),
            _ => unreachable!("text of {key:?}, which is not in CONFIG_KEYS"),
        }
    }
}

/// Parses an integer config in `min..=max` (inclusive) into its field type.
fn int<T: TryFrom<i64>>(key: &str, value: &str, min: i64, max: i64) -> Result<T, ConfigError> {
    let range = || {
        if max == i64::MAX {
            format!("must be an integer of at least {min}")
        } else {
            format!("must be an integer from {min} to {max}")
        }
    };
    let number = value.trim().parse::<i64>().map_err(|_| invalid(key, value, range()))?;
    if !(min..=max).contains(&number) {
        return Err(invalid(key, value, range()));
    }
    T::try_from(number).map_err(|_| invalid(key, value, range()))
}

/// Parses a ratio in `0..=1` into millionths (rounded).
fn ratio(key: &str, value: &str) -> Result<u32, ConfigError> {
    let reason = || "must be a number from 0 to 1".to_owned();
    let number = value.trim().parse::<f64>().map_err(|_| invalid(key, value, reason()))?;
    if !(0.0..=1.0).contains(&number) {
        return Err(invalid(key, value, reason()));
    }
    // In 0..=RATIO_PARTS: checked above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((number * f64::from(RATIO_PARTS)).round() as u32)
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::InvalidValue { key: quoted(key), value: quoted(value), reason }
}

fn unsupported(key: &str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Unsupported { key: quoted(key), value: quoted(value), reason }
}

/// `text`, cut to [`QUOTED_CHARS_MAX`] characters (with `...` appended when cut).
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`check`] expects of a `key=value` pair.
    enum Expect {
        /// Accepted, stored as this canonical text.
        Canonical(&'static str),
        /// [`ConfigError::InvalidValue`].
        Invalid,
        /// [`ConfigError::Unsupported`].
        Unsupported,
        /// [`ConfigError::UnknownKey`].
        Unknown,
    }
    use Expect::{Canonical, Invalid, Unknown, Unsupported};

    fn check(key: &str, value: &str, expect: Expect) {
        let validated = TopicConfigs::validate(key, value);
        let built = TopicConfigs::from_overrides(&[(key.to_owned(), value.to_owned())]);
        match expect {
            Canonical(canonical) => {
                assert_eq!(validated, Ok(()), "{key}={value:?}");
                let configs = built.expect("valid");
                assert_eq!(configs.overrides().get(key).map(String::as_str), Some(canonical));
            }
            Invalid => {
                assert!(
                    matches!(validated, Err(ConfigError::InvalidValue { .. })),
                    "{key}={value:?}: {validated:?}"
                );
                assert_eq!(built.err(), validated.err());
            }
            Unsupported => {
                assert!(
                    matches!(validated, Err(ConfigError::Unsupported { .. })),
                    "{key}={value:?}: {validated:?}"
                );
                assert_eq!(built.err(), validated.err());
            }
            Unknown => {
                assert!(
                    matches!(validated, Err(ConfigError::UnknownKey { .. })),
                    "{key}={value:?}: {validated:?}"
                );
                assert_eq!(built.err(), validated.err());
            }
        }
    }

    #[test]
    fn cleanup_policy() {
        check("cleanup.policy", "delete", Canonical("delete"));
        check("cleanup.policy", " delete ", Canonical("delete"));
        check("cleanup.policy", "compact", Canonical("compact"));
        check("cleanup.policy", "compact,delete", Canonical("compact,delete"));
        check("cleanup.policy", "delete, compact", Canonical("compact,delete"));
        check("cleanup.policy", "", Invalid);
        check("cleanup.policy", "Delete", Invalid);
        check("cleanup.policy", "delete,delete", Invalid);
        check("cleanup.policy", "compact,", Invalid);
    }

    #[test]
    fn compaction_configs() {
        check("min.cleanable.dirty.ratio", "0.5", Canonical("0.5"));
        check("min.cleanable.dirty.ratio", "0", Canonical("0"));
        check("min.cleanable.dirty.ratio", "1", Canonical("1"));
        check("min.cleanable.dirty.ratio", "0.0000004", Canonical("0"));
        check("min.cleanable.dirty.ratio", "1.5", Invalid);
        check("min.cleanable.dirty.ratio", "-0.1", Invalid);
        check("min.cleanable.dirty.ratio", "NaN", Invalid);
        check("delete.retention.ms", "0", Canonical("0"));
        check("delete.retention.ms", "-1", Invalid);
        check("min.compaction.lag.ms", "0", Canonical("0"));
        check("min.compaction.lag.ms", "-1", Invalid);
        check("max.compaction.lag.ms", "0", Invalid);
        check("max.compaction.lag.ms", "60000", Canonical("60000"));
        let defaults = TopicConfigs::default();
        assert_eq!(defaults.compaction(), None, "delete only by default");
        let compacted = defaults.apply(&[set("cleanup.policy", "compact")]).expect("valid");
        let config = compacted.compaction().expect("compact");
        assert_eq!(config.min_cleanable_dirty_ratio_millionths, 500_000);
        assert_eq!(config.delete_retention_ms, 86_400_000);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        assert!(!compacted.cleanup_policy().delete);
    }

    #[test]
    fn append_and_subtract_edit_list_configs() {
        let append = |value: &str| ConfigChange::Append {
            key: "cleanup.policy".into(),
            value: value.into(),
        };
        let subtract = |value: &str| ConfigChange::Subtract {
            key: "cleanup.policy".into(),
            value: value.into(),
        };
        let policy = |configs: &TopicConfigs| configs.cleanup_policy().text();
        let both = TopicConfigs::default().apply(&[append("compact")]).expect("valid");
        assert_eq!(policy(&both), "compact,delete");
        assert_eq!(policy(&both.apply(&[append("delete")]).expect("valid")), "compact,delete");
        let compact = both.apply(&[subtract("delete")]).expect("valid");
        assert_eq!(policy(&compact), "compact");
        assert!(matches!(
            compact.apply(&[subtract("compact")]),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(both.apply(&[append("shred")]), Err(ConfigError::InvalidValue { .. })));
        let not_a_list = ConfigChange::Append { key: "retention.ms".into(), value: "5".into() };
        assert!(matches!(both.apply(&[not_a_list]), Err(ConfigError::InvalidValue { .. })));
        let unknown = ConfigChange::Subtract { key: "no.such".into(), value: "5".into() };
        assert!(matches!(both.apply(&[unknown]), Err(ConfigError::UnknownKey { .. })));
    }

    #[test]
    fn compression_type() {
        for value in ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"] {
            check("compression.type", value, Canonical(value));
        }
        check("compression.type", " zstd ", Canonical("zstd"));
        check("compression.type", "brotli", Invalid);
        check("compression.type", "PRODUCER", Invalid);
        // Kafka's producer spelling of no codec is not a topic value.
        check("compression.type", "none", Invalid);
        for level in ["compression.gzip.level", "compression.lz4.level", "compression.zstd.level"] {
            check(level, "1", Unsupported);
        }
    }

    /// Regression: every codec but `producer` was refused with INVALID_CONFIG, which Kafka's own
    /// client test suites set on topics.
    #[test]
    fn compression_type_codecs_are_accepted_and_resolve_to_their_codec() {
        assert_eq!(TopicConfigs::default().compression_type(), CompressionType::Producer);
        let cases = [
            ("producer", None),
            ("uncompressed", Some(Compression::None)),
            ("gzip", Some(Compression::Gzip)),
            ("snappy", Some(Compression::Snappy)),
            ("lz4", Some(Compression::Lz4)),
            ("zstd", Some(Compression::Zstd)),
        ];
        for (value, codec) in cases {
            let configs = TopicConfigs::default()
                .apply(&[set("compression.type", value)])
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(configs.compression_type().codec(), codec, "{value}");
            let entry = configs.entries().into_iter().find(|e| e.name == "compression.type");
            let entry = entry.expect("listed");
            assert_eq!((entry.value.as_str(), entry.read_only), (value, false));
            let back = configs.apply(&[delete("compression.type")]).expect("delete");
            assert_eq!(back.compression_type(), CompressionType::Producer);
        }
    }

    #[test]
    fn retention() {
        check("retention.ms", "-1", Canonical("-1"));
        check("retention.ms", "0", Canonical("0"));
        check("retention.ms", " 1000 ", Canonical("1000"));
        check("retention.ms", "+1000", Canonical("1000"));
        check("retention.ms", "9223372036854775807", Canonical("9223372036854775807"));
        check("retention.ms", "-2", Invalid);
        check("retention.ms", "9223372036854775808", Invalid);
        check("retention.ms", "1e3", Invalid);
        check("retention.ms", "", Invalid);
        check("retention.bytes", "-1", Canonical("-1"));
        check("retention.bytes", "1073741824", Canonical("1073741824"));
        check("retention.bytes", "-2", Invalid);
        check("retention.bytes", "1.5", Invalid);
    }

    #[test]
    fn segments() {
        check("segment.bytes", "1024", Canonical("1024"));
        check("segment.bytes", "1023", Invalid);
        check("segment.bytes", "2147483647", Canonical("2147483647"));
        check("segment.bytes", "2147483648", Invalid);
        check("segment.bytes", "-1", Invalid);
        check("segment.ms", "1", Canonical("1"));
        check("segment.ms", "0", Invalid);
        check("segment.ms", "-1", Invalid);
    }

    #[test]
    fn message_limits_and_types() {
        check("max.message.bytes", "0", Canonical("0"));
        check("max.message.bytes", "67108864", Canonical("67108864"));
        check("max.message.bytes", "67108865", Invalid);
        check("max.message.bytes", "-1", Invalid);
        check("message.timestamp.type", "CreateTime", Canonical("CreateTime"));
        check("message.timestamp.type", "LogAppendTime", Canonical("LogAppendTime"));
        check("message.timestamp.type", "createtime", Invalid);
        check("min.insync.replicas", "1", Canonical("1"));
        check("min.insync.replicas", "3", Canonical("3"));
        check("min.insync.replicas", "0", Invalid);
        check("min.insync.replicas", "2147483648", Invalid);
    }

    #[test]
    fn unsupported_and_unknown_keys() {
        check("flush.ms", "1000", Unsupported);
        check("flush.messages", "1", Unsupported);
        check("remote.storage.enable", "true", Unsupported);
        check("retention.hours", "1", Unknown);
        check("Retention.ms", "1", Unknown);
        check("", "1", Unknown);
    }

    #[test]
    fn defaults_resolve_when_nothing_is_set() {
        let configs = TopicConfigs::default();
        assert_eq!(configs.retention_ms(), Some(604_800_000));
        assert_eq!(configs.retention_bytes(), None);
        assert_eq!(configs.segment_bytes(), 1_073_741_824);
        assert_eq!(configs.segment_ms(), 604_800_000);
        assert_eq!(configs.max_message_bytes(), 1_048_588);
        assert_eq!(configs.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(configs.min_insync_replicas(), 1);
        assert!(configs.overrides().is_empty());
    }

    #[test]
    fn overrides_resolve_to_typed_values() {
        let pairs = [
            ("retention.ms", "-1"),
            ("retention.bytes", "4096"),
            ("segment.bytes", "2048"),
            ("segment.ms", "60000"),
            ("max.message.bytes", "100"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.insync.replicas", "2"),
        ];
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
        let configs = TopicConfigs::from_overrides(&pairs).expect("valid");
        assert_eq!(configs.retention_ms(), None);
        assert_eq!(configs.retention_bytes(), Some(4096));
        assert_eq!(configs.segment_bytes(), 2048);
        assert_eq!(configs.segment_ms(), 60_000);
        assert_eq!(configs.max_message_bytes(), 100);
        assert_eq!(configs.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(configs.min_insync_replicas(), 2);
    }

    #[test]
    fn entries_list_every_key_with_its_source() {
        let configs = TopicConfigs::default().apply(&[set("retention.ms", "1000")]).expect("valid");
        let entries = configs.entries();
        let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, CONFIG_KEYS);
        for entry in &entries {
            let expected = if entry.name == "retention.ms" {
                ConfigSource::TopicOverride
            } else {
                ConfigSource::Default
            };
            assert_eq!(entry.source, expected, "{}", entry.name);
            // Every value listed is one the key accepts.
            assert_eq!(TopicConfigs::validate(&entry.name, &entry.value), Ok(()), "{entry:?}");
        }
        let value = |name: &str| {
            entries.iter().find(|entry| entry.name == name).map(|entry| entry.value.clone())
        };
        assert_eq!(value("retention.ms").as_deref(), Some("1000"));
        assert_eq!(value("segment.bytes").as_deref(), Some("1073741824"));
        assert_eq!(value("max.message.bytes").as_deref(), Some("1048588"));
        assert_eq!(value("cleanup.policy").as_deref(), Some("delete"));
        assert!(entries.iter().all(|e| !e.read_only));
    }

    #[test]
    fn config_keys_are_sorted_and_disjoint_from_unsupported_keys() {
        assert!(CONFIG_KEYS.is_sorted());
        assert!(UNSUPPORTED_KEYS.is_sorted());
        for (key, _) in UNSUPPORTED_KEYS {
            assert!(!CONFIG_KEYS.contains(key), "{key}");
        }
    }

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set { key: key.to_owned(), value: value.to_owned() }
    }

    fn delete(key: &str) -> ConfigChange {
        ConfigChange::Delete { key: key.to_owned() }
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let base = TopicConfigs::default().apply(&[set("retention.ms", "1000")]).expect("valid");
        let changes =
            [set("segment.ms", "5000"), delete("retention.ms"), set("segment.bytes", "1")];
        let error = base.apply(&changes).expect_err("segment.bytes=1 is invalid");
        assert!(
            matches!(error, ConfigError::InvalidValue { ref key, .. } if key == "segment.bytes")
        );
        // `apply` returns a new value; the base is untouched either way.
        assert_eq!(base.retention_ms(), Some(1000));
        assert_eq!(base.segment_ms(), 604_800_000);

        let changed = base.apply(&changes[..2]).expect("valid");
        assert_eq!(changed.segment_ms(), 5000);
        assert_eq!(changed.retention_ms(), Some(604_800_000));
        assert_eq!(changed.overrides().keys().collect::<Vec<_>>(), ["segment.ms"]);
    }

    #[test]
    fn apply_refuses_duplicates_and_unknown_deletes() {
        let base = TopicConfigs::default();
        assert_eq!(
            base.apply(&[set("retention.ms", "1"), delete("retention.ms")]),
            Err(ConfigError::DuplicateKey { key: "retention.ms".into() })
        );
        assert_eq!(
            base.apply(&[delete("no.such.key")]),
            Err(ConfigError::UnknownKey { key: "no.such.key".into() })
        );
        // Deleting what is not set, even a known unsupported key, changes nothing.
        assert_eq!(base.apply(&[delete("segment.ms"), delete("flush.ms")]), Ok(base.clone()));
        assert_eq!(base.apply(&[]), Ok(base.clone()));
    }

    #[test]
    fn setting_a_default_explicitly_is_an_override() {
        let configs = TopicConfigs::default().apply(&[set("retention.ms", "604800000")]);
        let configs = configs.expect("valid");
        assert_ne!(configs, TopicConfigs::default());
        assert_eq!(configs.retention_ms(), TopicConfigs::default().retention_ms());
    }

    #[test]
    fn errors_quote_at_most_a_few_dozen_characters() {
        let long = "9".repeat(10_000);
        let error = TopicConfigs::validate("retention.ms", &long).expect_err("out of range");
        let message = error.to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.starts_with("invalid value \"999"), "{message}");
        let error = TopicConfigs::validate(&"k".repeat(10_000), "1").expect_err("unknown");
        assert!(error.to_string().len() < 200);
        assert_eq!(quoted("ééé"), "ééé");
        assert_eq!(quoted(&"é".repeat(65)), format!("{}...", "é".repeat(64)));
    }

    #[test]
    fn error_messages_name_key_and_value() {
        let error = TopicConfigs::validate("segment.ms", "0").expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid value \"0\" for segment.ms: must be an integer of at least 1"
        );
        let error = TopicConfigs::validate("flush.ms", "5").expect_err("unsupported");
        assert!(error.to_string().starts_with("flush.ms=\"5\" is not supported: "), "{error}");
        let error = TopicConfigs::validate("segment.bytes", "x").expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid value \"x\" for segment.bytes: must be an integer from 1024 to 2147483647"
        );
    }
}
