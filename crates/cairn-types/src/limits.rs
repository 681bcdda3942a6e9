//! Every bound of the system, in one place (TigerBeetle's rule: a limit on everything).
//!
//! A `*_max` is a hard ceiling that configuration cannot raise; a `*_DEFAULT` is what a node uses
//! when nothing is configured. Relationships between limits are checked at compile time below.

/// Largest Kafka RecordBatch accepted anywhere (produce, replication, disk). A batch over this is
/// rejected as invalid input before anything is allocated for it.
pub const BATCH_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Largest request frame a connection may announce (Kafka's `socket.request.max.bytes`).
pub const FRAME_BYTES_MAX: u32 = 100 * 1024 * 1024;

/// Bytes of a request frame's body the server reads, and charges to the node's request memory
/// budget, at a time: a connection holds at most this much of the budget beyond the bytes it has
/// actually sent, so connections that announce large frames and stall cannot take the budget
/// from the others. A multiple of 1 KiB, the budget's unit.
pub const FRAME_CHUNK_BYTES: u32 = 64 * 1024;

/// First pause after a listener's `accept` failed (out of file descriptors, typically: the
/// failure repeats at once while the condition lasts, so retrying without a pause would spin and
/// log without bound). Each further failure in a row doubles it, up to
/// [`ACCEPT_BACKOFF_MS_MAX`]; an accepted connection resets it.
pub const ACCEPT_BACKOFF_MS_MIN: u64 = 10;

/// Longest pause between two failed `accept`s: how late a listener notices that descriptors
/// were freed.
pub const ACCEPT_BACKOFF_MS_MAX: u64 = 1000;

const _: () = assert!(ACCEPT_BACKOFF_MS_MIN > 0 && ACCEPT_BACKOFF_MS_MIN <= ACCEPT_BACKOFF_MS_MAX);

/// Default of the longest a client may take to send a request frame's body once its length
/// prefix arrived, and the longest the broker works on one request (Kafka's
/// `request.timeout.ms` default). A node's `request_timeout_ms` overrides it.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Largest buffer of concatenated batches that one `append` call may carry.
pub const APPEND_BYTES_MAX: usize = FRAME_BYTES_MAX as usize;

/// Largest segment data file. Positions inside a segment are stored as `u32` in the offset index,
/// and Kafka's `segment.bytes` is an `i32`.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Smallest configurable segment; small segments are useful in tests, useless in production.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// Segment size used when the topic does not set `segment.bytes` (Kafka's default).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Bytes of log data between two sparse index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// Records one segment may hold: offsets inside a segment are stored relative to its base as `u32`.
pub const SEGMENT_RECORDS_MAX: u64 = u32::MAX as u64;

/// Largest number of bytes one read may return (Kafka's `fetch.max.bytes` ceiling).
pub const READ_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Largest number of file ranges one read returns; a read stops early rather than exceed it.
pub const READ_RANGES_MAX: usize = 64;

/// Buffer used to walk batch headers during recovery, index rebuilds and lookups.
pub const SCAN_BUFFER_BYTES: usize = 1024 * 1024;

/// Bytes of unsynced index entries after which the index files are fsynced, bounding how much of
/// the log a reopen after a crash must walk to catch the indexes up.
pub const INDEX_SYNC_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// File descriptors of segment, index and checkpoint files a process keeps open at once before
/// the least recently used clean ones are closed (`cairn-storage`'s descriptor cache), when
/// nothing configured it from the open-file limit (offline tools, tests).
pub const DESCRIPTORS_CACHED_DEFAULT: usize = 256;

/// Smallest descriptor cache derived from the open-file limit: below it, files would be
/// reopened on almost every use.
pub const DESCRIPTORS_CACHED_MIN: usize = 32;

/// Largest descriptor cache derived from the open-file limit, however high the limit.
pub const DESCRIPTORS_CACHED_MAX: usize = 65_536;

/// The descriptor cache takes one descriptor in this many of the soft open-file limit; the rest
/// is headroom for sockets, descriptors leased to in-flight sends, directory syncs and files
/// opened outside the cache (metadata, the data directory lock).
pub const DESCRIPTORS_CACHED_LIMIT_DIVISOR: u64 = 2;

/// Smallest possible encoded record (length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, each one byte). Bounds the record count an uncompressed batch
/// may claim.
pub const RECORD_BYTES_MIN: u32 = 7;

/// Headers one record may carry.
pub const RECORD_HEADERS_MAX: u32 = 1024 * 1024;

const _: () = assert!(FRAME_CHUNK_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(FRAME_CHUNK_BYTES.is_multiple_of(1024) && FRAME_CHUNK_BYTES > 0);
const _: () = assert!(BATCH_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= FRAME_BYTES_MAX);
const _: () = assert!(READ_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SCAN_BUFFER_BYTES >= 2 * crate::batch::HEADER_BYTES);
const _: () = assert!(DESCRIPTORS_CACHED_MIN <= DESCRIPTORS_CACHED_DEFAULT);
const _: () = assert!(DESCRIPTORS_CACHED_DEFAULT <= DESCRIPTORS_CACHED_MAX);
const _: () = assert!(DESCRIPTORS_CACHED_LIMIT_DIVISOR >= 2);

/// Longest topic name in bytes (Kafka's rule: 249, so that `<topic>-<partition>` directory names
/// and Kafka's own derived names stay under the usual 255-byte file name limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Partitions one topic may have (create and create-partitions both check it).
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;

/// Partitions a node opens, creates or closes at once (at start, for one CreateTopics or
/// CreatePartitions request, at shutdown), each on its own thread. The work is mostly small
/// writes and fsyncs of different files, which the file system's journal commits together, so
/// a few in flight multiply throughput; more would only add threads.
pub const PARTITION_OPENS_PARALLEL_MAX: usize = 16;

/// Topics the cluster may hold.
pub const TOPICS_MAX: usize = 100_000;

/// Partitions of all topics together: every partition is a log with open files on its replicas.
pub const CLUSTER_PARTITIONS_MAX: u64 = 200_000;

/// Largest metadata file `cairn-meta` writes or reads (`LocalMetadata`'s `metadata.json`); a file
/// claiming more is damaged, and is refused before anything is allocated for it.
pub const METADATA_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

const _: () = assert!(TOPIC_PARTITIONS_MAX as u64 <= CLUSTER_PARTITIONS_MAX);

/// Largest Raft snapshot of one partition (`raft-snapshot`: the Raft layer's encoding of its last
/// log id, membership, log start offset and, later, producer state). Today's content stays under
/// 1 KiB; the margin is for producer state. A file claiming more is damaged and is refused
/// before anything is allocated for it.
pub const SNAPSHOT_BYTES_MAX: usize = 64 * 1024;

/// Largest records part a compressed batch may decompress to. The broker decompresses every
/// produced compressed batch into a buffer to check its records, and stops (rejecting the batch)
/// as soon as the output would pass this, so a decompression bomb costs at most this much memory.
/// It equals [`BATCH_BYTES_MAX`]: compression may not smuggle in records that would be refused
/// uncompressed, and refuses none that would be accepted, so a produce costs the same memory
/// either way. Kafka's default `max.message.bytes` is about 1 MiB, so this leaves a 64x ratio.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = BATCH_BYTES_MAX as usize;

const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX >= BATCH_BYTES_MAX as usize);

/// Most bytes one produce request may store, summed over its partitions, once batches are
/// recompressed to their topic's `compression.type`. A recompressed batch may be larger than
/// the one sent (a highly compressed batch stored uncompressed), so without this a request of
/// small compressed batches could make the broker hold up to [`DECOMPRESSED_BATCH_BYTES_MAX`]
/// per batch. It equals what the request's frame could hold: the stored bytes replace the copy
/// of the request's records the broker makes anyway, so recompression needs no more memory
/// than a request sent as it will be stored. Partitions past it are refused
/// (`MESSAGE_TOO_LARGE`).
pub const PRODUCE_STORED_BYTES_MAX: usize = FRAME_BYTES_MAX as usize;

const _: () = assert!(PRODUCE_STORED_BYTES_MAX >= BATCH_BYTES_MAX as usize);

/// Array elements and tagged fields one request body may declare in total. `kafka-protocol`
/// allocates every array up front from its declared count, so the shape check holds a request
/// to this before decoding it: what decoding allocates is bounded by this times the largest
/// element, whatever the frame size.
pub const REQUEST_ELEMENTS_MAX: u32 = 256 * 1024;

/// Depth of arrays and structs nested in a request schema. The schemas are static and a test
/// keeps them within it; the shape check enforces it so that its recursion is bounded anyway.
pub const REQUEST_NESTING_MAX: u32 = 8;

/// Configurations in one Raft membership: one, or two during a joint-consensus change (what
/// openraft's `change_membership` writes). A stored membership with more is corrupt.
pub const RAFT_MEMBERSHIP_CONFIGS_MAX: usize = 2;

/// Node ids in one Raft membership configuration, and learners beside them: far above any
/// cluster cairn runs (the consistent core has at most 5 voters), small enough that a decoded
/// membership is bounded however its counts are corrupted.
pub const RAFT_MEMBERSHIP_NODES_MAX: usize = 4096;

const _: () = assert!(RAFT_MEMBERSHIP_CONFIGS_MAX >= 2);
const _: () = assert!(RAFT_MEMBERSHIP_NODES_MAX <= u16::MAX as usize);

/// Replicas of one partition: one Raft group's voters. Five tolerates two failures; more would
/// slow every commit for little more safety (Kafka's tools rarely go above 3).
pub const REPLICATION_FACTOR_MAX: u16 = 5;

/// Replicas of a partition when the request leaves the factor to the cluster (CreateTopics'
/// `-1`): this many, or every live node if there are fewer.
pub const REPLICATION_FACTOR_DEFAULT: u16 = 3;

/// Nodes the consistent core registers. Far above the clusters cairn targets; it bounds the
/// core's state and every placement's work.
pub const CLUSTER_NODES_MAX: usize = 1024;

/// Longest peer address (`host:port`) or Kafka host name a node registers with the core.
pub const NODE_ADDRESS_BYTES_MAX: usize = 512;

/// Longest rack name a node registers with the core.
pub const RACK_BYTES_MAX: usize = 255;

/// Producer ids the consistent core hands out in one allocation (Kafka's block size). A node
/// assigns them to producers locally and asks for a new block when it runs out.
pub const PRODUCER_IDS_PER_BLOCK: i64 = 1000;

/// Largest encoded snapshot of the consistent core's state. Its biggest part is the
/// assignments: at most `CLUSTER_PARTITIONS_MAX` partitions of `REPLICATION_FACTOR_MAX` node ids
/// each, well within it. A snapshot claiming more is damaged and refused before anything is
/// allocated for it.
pub const CORE_SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Entries the consistent core applies between two snapshots of its state (RFC 0003 §5); the
/// log is purged behind each.
pub const CORE_SNAPSHOT_ENTRIES_DEFAULT: u64 = 10_000;

/// Bytes of commands the consistent core applies between two snapshots, whichever of this and
/// [`CORE_SNAPSHOT_ENTRIES_DEFAULT`] comes first.
pub const CORE_SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// Segment size of the consistent core's log: a few snapshots' worth, so a purge after a
/// snapshot deletes whole segments soon.
pub const CORE_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Answers of applied core commands kept for their waiters; a waiter that gave up leaves its
/// answer behind, and the oldest beyond this are dropped.
pub const CORE_REPLIES_MAX: usize = 1024;

/// How long a metadata change waits for the consistent core (a leader, the commit, the apply)
/// before it is an unknown outcome.
pub const CORE_WRITE_TIMEOUT_MS: u64 = 30_000;

const _: () = assert!(REPLICATION_FACTOR_DEFAULT <= REPLICATION_FACTOR_MAX);
const _: () = assert!(CLUSTER_NODES_MAX <= RAFT_MEMBERSHIP_NODES_MAX);
const _: () = assert!(CORE_SEGMENT_BYTES >= SEGMENT_BYTES_MIN);
const _: () = assert!(CORE_SNAPSHOT_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(NODE_ADDRESS_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(RACK_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(
    CLUSTER_PARTITIONS_MAX * (REPLICATION_FACTOR_MAX as u64 * 8 + 16)
        < CORE_SNAPSHOT_BYTES_MAX as u64
);

/// Bytes of entries one Raft log read returns (AppendEntries, `limited_get_log_entries`): at
/// least one entry, then whole entries up to this (openraft has no byte cap, RFC 0003 §11 f).
pub const RAFT_READ_BYTES_MAX: u32 = 1024 * 1024;

const _: () = assert!(RAFT_READ_BYTES_MAX <= READ_BYTES_MAX);

/// Bytes of a peer frame's fixed header (RFC 0003 §6): length, CRC32C, kind, version,
/// correlation id, group and `ttl_ms`.
pub const PEER_FRAME_HEADER_BYTES: u32 = 4 + 4 + 2 + 2 + 8 + 8 + 4;

/// Bytes an AppendEntries body adds around its entries: vote, previous and commit log ids,
/// entry count (43 today, rounded up for growth).
pub const PEER_APPEND_FIXED_BYTES: u32 = 64;

/// Bytes an AppendEntries body adds per entry: its log id (term, index) and batch length.
pub const PEER_ENTRY_OVERHEAD_BYTES: u32 = 8 + 8 + 4;

/// Largest peer frame a node sends or accepts, checked against the length prefix before
/// anything is allocated for the frame. It holds an AppendEntries of [`RAFT_READ_BYTES_MAX`]
/// of batches plus one batch of [`BATCH_BYTES_MAX`] (checked below).
pub const PEER_FRAME_BYTES_MAX: u32 = BATCH_BYTES_MAX + 2 * 1024 * 1024;

/// Largest frame a peer may send before its handshake is accepted: a `Hello` or `Goodbye`. An
/// unauthenticated connection cannot make a node allocate more than this.
pub const PEER_HANDSHAKE_FRAME_BYTES_MAX: u32 = 1024;

/// Groups in one `Heartbeats` frame, and in its answer (RFC 0003 §6: a peer's coalescer sends
/// every 1,000 groups).
pub const PEER_HEARTBEATS_GROUPS_MAX: u32 = 1000;

/// Bytes of the text of a `Goodbye` reason or an error answer.
pub const PEER_MESSAGE_BYTES_MAX: usize = 512;

/// Default bytes of frames queued for one peer's control lane (votes, heartbeats) and not yet
/// written; a call that would pass it fails at once as unreachable.
pub const PEER_CONTROL_QUEUE_BYTES_DEFAULT: usize = 4 * 1024 * 1024;

/// Default bytes of frames queued for one peer's data lane (appends) and not yet written (RFC
/// 0003 §6: 64 MiB). A frame is queued into an empty queue whatever its size, so a lane holds
/// at most this plus one frame.
pub const PEER_DATA_QUEUE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Requests from one peer connection that a node runs at once; one more is answered `Busy`
/// at once rather than queued, so a flood cannot stall the connection's answers.
pub const PEER_INBOUND_REQUESTS_MAX: usize = 1024;

/// Calls one peer connection waits for answers to at once; one more fails at once as
/// unreachable.
pub const PEER_CALLS_PENDING_MAX: usize = 4096;

/// First pause before a node dials a peer again after a failed dial, handshake or connection
/// (RFC 0003 §6); each failure in a row doubles it up to [`PEER_RECONNECT_BACKOFF_MS_MAX`], each
/// pause is jittered down to half, and a connection that completes its handshake resets it.
pub const PEER_RECONNECT_BACKOFF_MS_MIN: u64 = 50;

/// Longest pause between two dials of the same peer lane.
pub const PEER_RECONNECT_BACKOFF_MS_MAX: u64 = 2000;

/// Longest a peer connection may take from connect to an accepted handshake.
pub const PEER_HANDSHAKE_TIMEOUT_MS: u64 = 5000;

/// Calls on one peer lane that may time out (or fail to be queued) in a row, with no frame at
/// all from the peer in the meantime, before the lane may be taken for stuck: closed so that it
/// is dialled again (a stream that stalls without an error: a middlebox holding segments, a
/// peer whose reader is wedged). A lane that answers anything, even late, is alive.
pub const PEER_LANE_SILENT_TIMEOUTS_MAX: u32 = 3;

/// How long a peer lane must also have been silent (no frame at all) before it is taken for
/// stuck: long enough that a peer merely slowed down (a busy machine, a long fsync) is not
/// disconnected, which would only add reconnections to its load.
pub const PEER_LANE_SILENT_MS: u64 = 5000;

/// Groups one node's ping lists (those it leads), and refused groups in its answer (RFC 0004):
/// 17 bytes each, so a ping stays far below [`PEER_FRAME_BYTES_MAX`]. A node leading more
/// groups keeps the rest awake and unannounced.
pub const PEER_QUIESCED_GROUPS_MAX: u32 = 65_536;

/// Longest a peer's heartbeat coalescer holds a group's heartbeat before it sends the batch
/// (RFC 0003 §6: one `Heartbeats` frame per peer every 10 ms, or every
/// [`PEER_HEARTBEATS_GROUPS_MAX`] groups); on a link without a frame for ten windows, a
/// heartbeat goes out at once.
pub const PEER_HEARTBEATS_WINDOW_MS: u64 = 10;

/// Heartbeats waiting in one peer's coalescer; one more fails at once as unreachable (the
/// group's next heartbeat retries).
pub const PEER_HEARTBEATS_QUEUED_MAX: usize = 4 * PEER_HEARTBEATS_GROUPS_MAX as usize;

/// Bytes of entries one group's pipelined append stream keeps in flight to one peer (RFC 0003
/// §6: 4 MiB); one request is sent whatever its size when none is in flight.
pub const PEER_APPEND_INFLIGHT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Appends from peers one group holds in its receive pipeline (started in order, answered as
/// they are flushed); one more is answered `Busy`.
pub const RAFT_APPENDS_QUEUED_MAX: usize = 256;

const _: () = assert!(
    PEER_FRAME_BYTES_MAX as u64
        >= (PEER_FRAME_HEADER_BYTES + PEER_APPEND_FIXED_BYTES) as u64
            + RAFT_READ_BYTES_MAX as u64
            + BATCH_BYTES_MAX as u64
            + (RAFT_READ_BYTES_MAX as u64 / crate::batch::HEADER_BYTES as u64 + 1)
                * PEER_ENTRY_OVERHEAD_BYTES as u64
);
const _: () = assert!(PEER_HANDSHAKE_FRAME_BYTES_MAX >= PEER_FRAME_HEADER_BYTES + 64);
const _: () = assert!((PEER_QUIESCED_GROUPS_MAX as u64) * 17 + 64 < PEER_FRAME_BYTES_MAX as u64);
const _: () = assert!(PEER_HANDSHAKE_FRAME_BYTES_MAX < PEER_FRAME_BYTES_MAX);
const _: () = assert!(PEER_MESSAGE_BYTES_MAX + 64 <= PEER_HANDSHAKE_FRAME_BYTES_MAX as usize);
const _: () = assert!(RAFT_READ_BYTES_MAX as usize <= PEER_DATA_QUEUE_BYTES_DEFAULT);
const _: () = assert!(PEER_APPEND_INFLIGHT_BYTES_MAX <= PEER_DATA_QUEUE_BYTES_DEFAULT);
const _: () = assert!(PEER_HEARTBEATS_QUEUED_MAX >= PEER_HEARTBEATS_GROUPS_MAX as usize);
const _: () = assert!(
    PEER_RECONNECT_BACKOFF_MS_MIN > 0
        && PEER_RECONNECT_BACKOFF_MS_MIN <= PEER_RECONNECT_BACKOFF_MS_MAX
);

// Consumer groups (RFC 0006), named as Kafka's broker configs.

/// Shortest session timeout a member may join with (`group.min.session.timeout.ms`).
pub const GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT: i32 = 6_000;

/// Longest session timeout a member may join with (`group.max.session.timeout.ms`).
pub const GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT: i32 = 1_800_000;

/// How long the first rebalance of an empty group waits for more members
/// (`group.initial.rebalance.delay.ms`).
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: i64 = 3_000;

/// Most members of one group (`group.max.size`; Kafka's default is unbounded).
pub const GROUP_MEMBERS_MAX_DEFAULT: usize = 1_000;

/// How long a group's offsets outlive the group's last member (`offsets.retention.minutes`,
/// seven days).
pub const GROUP_OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 3_600_000;

/// Longest metadata string of one committed offset (`offset.metadata.max.bytes`).
pub const GROUP_OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4_096;

/// How long a consumer-protocol member may go without a heartbeat before it is fenced
/// (`group.consumer.session.timeout.ms`, RFC 0008).
pub const GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT: i32 = 45_000;

/// How often consumer-protocol members are told to heartbeat
/// (`group.consumer.heartbeat.interval.ms`).
pub const GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT: i32 = 5_000;

/// How long a member that joined during a rebalance may take to rejoin before it is dropped
/// (Kafka's `NewMemberJoinTimeoutMs`).
pub const GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

const _: () = assert!(
    0 < GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT
        && GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT <= GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT
);

// Idempotent producers (RFC 0006 §4).

/// Batches of one producer a partition keeps to recognise retries: Kafka's five, the most a
/// producer may have in flight with idempotence on (`max.in.flight.requests.per.connection`).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// Producers one partition keeps state for; a new one beyond evicts the one written least
/// recently (Kafka keeps any number, KIP-936).
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// How long a producer's state outlives its last batch (`producer.id.expiration.ms`, a day).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;

/// The largest encoding of one partition's producer state (`cairn-storage`'s
/// `ProducerStates::encode`): a version and a count, then per producer its id, epoch, last
/// timestamp and batch count, and per batch two sequences, two offsets and a timestamp.
pub const PRODUCER_STATE_BYTES_MAX: usize = 1
    + 4
    + PRODUCERS_PER_PARTITION_MAX * (8 + 2 + 8 + 1 + PRODUCER_BATCHES_KEPT * (4 + 4 + 8 + 8 + 8));

const _: () = assert!(PRODUCER_BATCHES_KEPT <= u8::MAX as usize);
