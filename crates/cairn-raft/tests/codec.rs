//! The entry ⇄ batch codec against its rules: round trips, corruption, the reserved form, and
//! what Kafka consumers see of Raft's own entries.

use std::collections::BTreeSet;

use bytes::Bytes;
use cairn_raft::codec::{self, CONTROL_TYPE_BLANK, CONTROL_TYPE_MEMBERSHIP};
use cairn_raft::{CodecError, LogId, Members, Proposal, RaftEntry, TermError};
use cairn_types::batch::{self, BatchBuilder, RecordBatch};
use cairn_types::{BatchError, LeaderEpoch, Offset, ProducerId};
use openraft::entry::RaftEntry as _;
use proptest::prelude::*;

const TIMESTAMP_MS: i64 = 1_700_000_000_000;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new_term_index(term, index)
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

/// What the leader's log append does to a batch: assigns its offset and stamps the term.
fn stamp(bytes: &Bytes, base_offset: u64, term: u64) -> Bytes {
    let mut stamped = bytes.to_vec();
    batch::set_base_offset(&mut stamped, Offset(base_offset));
    batch::set_partition_leader_epoch(&mut stamped, LeaderEpoch(term as i32));
    Bytes::from(stamped)
}

fn produced(records: &[(Vec<u8>, Vec<u8>)], timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp);
    for (key, value) in records {
        builder = builder.record(Some(key), Some(value), &[]);
    }
    Bytes::from(builder.build())
}

fn members() -> impl Strategy<Value = Members> {
    let node_set = || proptest::collection::btree_set(any::<u64>(), 1..6);
    let configs = proptest::collection::vec(node_set(), 1..=2);
    (configs, proptest::collection::btree_set(any::<u64>(), 0..4)).prop_map(
        |(configs, learners)| {
            let learners =
                learners.into_iter().filter(|l| !configs.iter().any(|c| c.contains(l))).collect();
            Members::new(configs, learners).expect("non-empty configurations, disjoint learners")
        },
    )
}

/// Entries of every kind at terms that have an epoch.
fn entries() -> impl Strategy<Value = RaftEntry> {
    let records = proptest::collection::vec(
        (
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::collection::vec(any::<u8>(), 0..32),
        ),
        1..4,
    );
    prop_oneof![
        position().prop_map(|(term, index)| RaftEntry::blank(term, index)),
        (position(), records, any::<i64>()).prop_map(|((term, index), records, timestamp)| {
            let proposal =
                Proposal { batch: produced(&records, timestamp), ticket: Proposal::TICKET_NONE };
            RaftEntry::normal(term, index, proposal)
        }),
        (position(), members())
            .prop_map(|((term, index), members)| RaftEntry::membership(term, index, &members)),
    ]
}

/// A term that has an epoch, and an index.
fn position() -> impl Strategy<Value = (u64, u64)> {
    (0..=i32::MAX as u64, any::<u64>())
}

fn control_entries() -> impl Strategy<Value = RaftEntry> {
    prop_oneof![
        position().prop_map(|(term, index)| RaftEntry::blank(term, index)),
        (position(), members())
            .prop_map(|((term, index), members)| RaftEntry::membership(term, index, &members)),
    ]
}

/// Encodes `entry` and stamps it as the log would: the batch as stored.
fn stored(entry: &RaftEntry, base_offset: u64, timestamp_ms: i64) -> Bytes {
    let bytes = codec::encode(entry, timestamp_ms).expect("a valid entry encodes");
    stamp(&bytes, base_offset, entry.term())
}

/// `entry` as read back from `bytes`, its stored form: a normal entry's batch carries the
/// offset and epoch the log stamped.
fn as_stored(entry: &RaftEntry, bytes: &Bytes) -> RaftEntry {
    match entry.proposal() {
        Some(_) => {
            let proposal = Proposal { batch: bytes.clone(), ticket: Proposal::TICKET_NONE };
            RaftEntry::normal(entry.term(), entry.index(), proposal)
        }
        None => entry.clone(),
    }
}

proptest! {
    #[test]
    fn entry_to_batch_to_entry(entry in entries(), base_offset in 0..u64::MAX / 2, timestamp: i64) {
        let bytes = stored(&entry, base_offset, timestamp);
        let id = log_id(entry.term(), entry.index());
        let decoded = codec::decode(bytes.clone(), id).expect("an encoded entry decodes");
        prop_assert_eq!(&decoded, &as_stored(&entry, &bytes));
        prop_assert_eq!(decoded.get_membership(), entry.get_membership());
        // A decoded entry is appended again as the very batch it came from (a follower stores
        // the leader's bytes), whatever the timestamp the follower would have used.
        prop_assert_eq!(codec::encode(&decoded, timestamp.wrapping_add(1)), Ok(bytes));
    }

    #[test]
    fn a_corrupted_control_batch_is_refused_or_the_same_entry(
        entry in control_entries(),
        base_offset in 0..u64::MAX / 2,
        flip in 1..=u8::MAX,
    ) {
        let bytes = stored(&entry, base_offset, TIMESTAMP_MS);
        let id = log_id(entry.term(), entry.index());
        for position in 0..bytes.len() {
            let mut corrupted = bytes.to_vec();
            corrupted[position] ^= flip;
            if let Ok(decoded) = codec::decode(Bytes::from(corrupted), id) {
                // Only the base offset lies outside both the CRC and the epoch check, and an
                // entry does not carry it.
                prop_assert!(position < 8, "byte {} changed undetected", position);
                prop_assert_eq!(&decoded, &entry);
            }
        }
    }

    #[test]
    fn a_truncated_batch_is_refused(entry in entries(), cut: prop::sample::Index) {
        let bytes = stored(&entry, 0, TIMESTAMP_MS);
        let length = cut.index(bytes.len());
        let id = log_id(entry.term(), entry.index());
        let error = codec::decode(bytes.slice(..length), id).unwrap_err();
        prop_assert!(matches!(error, CodecError::Batch(_)), "{error:?}");
    }

    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = codec::decode(Bytes::from(bytes), log_id(0, 0));
    }
}

#[test]
fn every_replica_writes_the_same_bytes_for_the_same_entry() {
    let members = Members::new(vec![set(&[1, 2, 3])], set(&[4])).unwrap();
    let on = |_replica: u64| codec::encode(&RaftEntry::membership(0, 0, &members), TIMESTAMP_MS);
    assert_eq!(on(1), on(2));
    let blank = |_replica: u64| codec::encode(&RaftEntry::blank(7, 40), TIMESTAMP_MS);
    assert_eq!(blank(1), blank(2));
    // The timestamp is the one free field, and it is an input.
    assert_ne!(blank(1), codec::encode(&RaftEntry::blank(7, 40), TIMESTAMP_MS + 1));
}

/// The control batches as a consumer receives them: each a control batch of one record with
/// the 4-byte key `(0, type)`, in cairn's walk and in kafka-protocol's decoder (what the Rust
/// clients use); consumers skip control batches.
#[test]
fn kafka_consumers_see_control_batches() {
    let members = Members::new(vec![set(&[1, 2, 3]), set(&[2, 3, 4])], set(&[])).unwrap();
    let entries = [RaftEntry::blank(3, 10), RaftEntry::membership(3, 11, &members)];
    let mut log = Vec::new();
    for (offset, entry) in entries.iter().enumerate() {
        log.extend_from_slice(&stored(entry, 100 + offset as u64, TIMESTAMP_MS));
    }
    let walked: Vec<_> = batch::Batches::new(&log, u32::MAX).collect::<Result<_, _>>().unwrap();
    assert_eq!(walked.len(), 2);
    for (batch, control_type) in walked.iter().zip([CONTROL_TYPE_BLANK, CONTROL_TYPE_MEMBERSHIP]) {
        let header = batch.header();
        assert!(header.is_control());
        assert_eq!(header.producer_id, ProducerId::NONE);
        assert_eq!(header.partition_leader_epoch, LeaderEpoch(3));
        let records: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 1);
        let key = [0, 0, (control_type >> 8) as u8, control_type as u8];
        assert_eq!(records[0].key, Some(&key[..]));
    }
    assert_eq!(walked[1].records().next().unwrap().unwrap().value, Some(&members.encode()[..]));

    let mut buf = Bytes::from(log);
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).unwrap();
    let records: Vec<_> = sets.iter().flat_map(|set| &set.records).collect();
    assert_eq!(records.len(), 2);
    for (offset, record) in records.iter().enumerate() {
        assert!(record.control, "record {offset} is not marked as a control record");
        assert!(!record.transactional);
        assert_eq!(record.offset, 100 + offset as i64);
        assert_eq!(record.key.as_ref().map(Bytes::len), Some(4));
    }
}

#[test]
fn a_proposal_in_the_reserved_form_is_refused() {
    let forged = BatchBuilder::new(TIMESTAMP_MS)
        .control()
        .record(Some(&[0, 0, 0, 101]), Some(&members_bytes()), &[])
        .build();
    let proposal = Proposal { batch: Bytes::from(forged), ticket: 1 };
    let entry = RaftEntry::normal(1, 5, proposal);
    assert_eq!(codec::encode(&entry, TIMESTAMP_MS), Err(CodecError::ReservedProposal));
}

fn members_bytes() -> Vec<u8> {
    Members::new(vec![set(&[9])], set(&[])).expect("one voter").encode()
}

/// A transaction marker carries its producer: it is a normal entry, stored and read as is.
#[test]
fn a_transaction_marker_is_a_normal_entry() {
    let marker = BatchBuilder::new(TIMESTAMP_MS)
        .control()
        .producer(ProducerId(7), 0, -1)
        .record(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .build();
    let proposal = Proposal { batch: Bytes::from(marker), ticket: Proposal::TICKET_NONE };
    let entry = RaftEntry::normal(2, 9, proposal);
    let bytes = stored(&entry, 50, TIMESTAMP_MS);
    assert_eq!(codec::decode(bytes.clone(), log_id(2, 9)), Ok(as_stored(&entry, &bytes)));
}

#[test]
fn a_proposal_that_is_not_one_batch_is_refused() {
    let one = produced(&[(b"k".to_vec(), b"v".to_vec())], TIMESTAMP_MS);
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    let error =
        codec::encode(&RaftEntry::normal(1, 1, Proposal { batch: two.into(), ticket: 1 }), 0);
    assert!(matches!(error, Err(CodecError::Batch(BatchError::Truncated { .. }))), "{error:?}");
    let short = one.slice(..20);
    let error = codec::encode(&RaftEntry::normal(1, 1, Proposal { batch: short, ticket: 1 }), 0);
    assert!(matches!(error, Err(CodecError::Batch(_))), "{error:?}");
}

#[test]
fn the_epoch_must_be_the_term() {
    let bytes = stored(&RaftEntry::blank(4, 1), 0, TIMESTAMP_MS);
    let error = codec::decode(bytes.clone(), log_id(5, 1));
    assert_eq!(error, Err(CodecError::EpochMismatch { term: 5, epoch: LeaderEpoch(4) }));
    // An unstamped batch (epoch -1) was never appended by a leader.
    let unstamped = codec::encode(&RaftEntry::blank(4, 1), TIMESTAMP_MS).unwrap();
    let error = codec::decode(unstamped, log_id(4, 1));
    assert_eq!(error, Err(TermError::NegativeEpoch { epoch: LeaderEpoch(-1) }.into()));
}

/// Raft control batches that break the written form, each re-checksummed so that only the
/// form is wrong.
#[test]
fn malformed_control_batches_are_refused() {
    let check = |builder: BatchBuilder, expected: CodecError| {
        let bytes = stamp(&Bytes::from(builder.build()), 0, 1);
        assert_eq!(codec::decode(bytes, log_id(1, 0)), Err(expected));
    };
    let control = || BatchBuilder::new(TIMESTAMP_MS).control();
    let malformed = |reason| CodecError::Control { reason };
    check(
        control().record(Some(&[0, 0, 0, 100]), Some(b"x"), &[]),
        malformed("blank with a value"),
    );
    check(control().record(Some(&[0, 0, 0, 100]), None, &[]), malformed("no value"));
    check(control().record(Some(&[0, 0, 100]), Some(b""), &[]), malformed("control key size"));
    check(control().record(None, Some(b""), &[]), malformed("no control key"));
    let two = control().record(Some(&[0, 0, 0, 100]), Some(b""), &[]);
    check(two.record(Some(&[0, 0, 0, 100]), Some(b""), &[]), malformed("not exactly one record"));
    let headers: &[(&[u8], Option<&[u8]>)] = &[(b"h", None)];
    check(control().record(Some(&[0, 0, 0, 100]), Some(b""), headers), malformed("record fields"));
    let future = UnknownControl(1, 100);
    check(control().record(Some(&[0, 1, 0, 100]), Some(b""), &[]), future.into());
    check(control().record(Some(&[0, 0, 0, 103]), Some(b""), &[]), UnknownControl(0, 103).into());
    let short_round = control().record(Some(&[0, 0, 0, 102]), Some(b""), &[]);
    check(short_round, malformed("compaction round size"));
    let bad_members = control().record(Some(&[0, 0, 0, 101]), Some(&[9]), &[]);
    check(bad_members, cairn_raft::MembersError::UnknownVersion { version: 9 }.into());
}

struct UnknownControl(i16, i16);

impl From<UnknownControl> for CodecError {
    fn from(UnknownControl(version, control_type): UnknownControl) -> CodecError {
        CodecError::UnknownControl { version, control_type }
    }
}

#[test]
fn a_membership_decodes_to_openraft_membership() {
    let members = Members::new(vec![set(&[1, 2, 3])], set(&[7])).unwrap();
    let bytes = stored(&RaftEntry::membership(0, 0, &members), 0, TIMESTAMP_MS);
    let entry = codec::decode(bytes, log_id(0, 0)).unwrap();
    let membership = entry.get_membership().expect("a membership entry");
    assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(membership.learner_ids().collect::<Vec<_>>(), vec![7]);
    assert_eq!(entry.members(), Ok(Some(members)));
    assert!(RecordBatch::validate(&codec::encode(&entry, 0).unwrap()).is_ok());
}

/// A compaction round over `[from, to)`, its index left to its entry.
fn round(from: u64, to: u64) -> cairn_storage::CompactionRound {
    cairn_storage::CompactionRound {
        index: cairn_types::RaftIndex(0),
        from: Offset(from),
        to: Offset(to),
        time_ms: TIMESTAMP_MS,
        delete_retention_ms: 86_400_000,
        keys: 77,
    }
}

#[test]
fn a_compaction_round_round_trips_as_a_normal_entry_consumers_skip() {
    let round = round(10, 500);
    let proposal = Proposal { batch: codec::compaction_batch(&round), ticket: 3 };
    let entry = RaftEntry::normal(4, 9, proposal);
    let want = cairn_storage::CompactionRound { index: cairn_types::RaftIndex(9), ..round };
    assert_eq!(entry.compaction(), Some(want));
    assert!(entry.applied_whole());
    let stored = stamp(&codec::encode(&entry, 0).expect("a compaction round encodes"), 41, 4);
    let decoded = codec::decode(stored.clone(), log_id(4, 9)).expect("decodes");
    assert_eq!(decoded.compaction(), Some(want));
    assert!(codec::is_reserved(RecordBatch::validate(&stored).expect("valid").header()));
    let records = [(b"k".to_vec(), b"v".to_vec())];
    let plain =
        RaftEntry::normal(4, 9, Proposal { batch: produced(&records, TIMESTAMP_MS), ticket: 1 });
    assert_eq!(plain.compaction(), None);
    assert!(!plain.applied_whole());
}

#[test]
fn a_compaction_round_that_ends_before_it_starts_is_refused() {
    let proposal = Proposal { batch: codec::compaction_batch(&round(500, 10)), ticket: 3 };
    let entry = RaftEntry::normal(4, 9, proposal);
    assert_eq!(codec::encode(&entry, TIMESTAMP_MS), Err(CodecError::ReservedProposal));
}
