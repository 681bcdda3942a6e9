//! A shard's writes as the runtime proposes them ([`records::batch`]) and a new coordinator's
//! load of them ([`Shard::replay_batches`]): the groups come back as they were, records that
//! are not the coordinator's and control batches are skipped, and the walk ends at a damaged
//! batch.

use cairn_group::records::{self, RecordError};
use cairn_group::{
    CommitRequest, Effects, HeartbeatRequest, OffsetToCommit, Shard, ShardConfig, TopicInfo, Waiter,
};
use cairn_types::Offset;
use cairn_types::batch::{BatchBuilder, set_base_offset};

const GROUP: &str = "g";
const TOPIC: [u8; 16] = [7; 16];
const NOW: i64 = 1_000_000;

/// The partition's log: batches with consecutive offsets.
#[derive(Default)]
struct Log {
    bytes: Vec<u8>,
    next: u64,
}

impl Log {
    /// Appends `batch` at the log's next offset.
    fn append(&mut self, mut batch: Vec<u8>, records: u64) {
        set_base_offset(&mut batch, Offset(self.next));
        self.next += records;
        self.bytes.extend(batch);
    }

    /// Writes `effects`' records as the runtime does (one batch for the call's writes) and
    /// reports them durable.
    fn write(&mut self, shard: &mut Shard, effects: Effects) {
        if effects.writes.is_empty() {
            return;
        }
        let all: Vec<_> = effects.writes.iter().flat_map(|w| w.records.clone()).collect();
        self.append(records::batch(&all, NOW), all.len() as u64);
        for write in effects.writes {
            let more = shard.written(write.id, NOW);
            self.write(shard, more);
        }
    }
}

fn join(member: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: GROUP.into(),
        member_id: member.into(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 5_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        subscribed_topic_regex: None,
        server_assignor: None,
        owned: Some(Vec::new()),
        client_id: "c".into(),
        client_host: "/h".into(),
    }
}

fn commit(member: &str, epoch: i32, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: GROUP.into(),
        generation_id: epoch,
        member_id: member.into(),
        group_instance_id: None,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }],
    }
}

/// A shard with two members and a commit, and the log of its writes.
fn written() -> (Shard, Log) {
    let topics = |name: &str| (name == "t").then_some(TopicInfo { id: TOPIC, partitions: 4 });
    let mut shard = Shard::new(ShardConfig::default(), 1);
    let mut log = Log::default();
    for (waiter, member) in [(1, "a"), (2, "b")] {
        let effects = shard.consumer_heartbeat(Waiter(waiter), join(member), 1, &topics, NOW);
        log.write(&mut shard, effects);
    }
    let epoch = shard.describe_consumer(GROUP).expect("a group").members[0].member_epoch;
    let effects = shard.commit(Waiter(3), commit("a", epoch, 42), NOW);
    log.write(&mut shard, effects);
    (shard, log)
}

#[test]
fn a_shard_s_writes_replay_into_the_same_groups_past_what_is_not_its_own() {
    let (shard, mut log) = written();
    let keyless = log.next;
    log.append(BatchBuilder::new(NOW).record(None, Some(b"a client's"), &[]).build(), 1);
    log.append(BatchBuilder::new(NOW).control().record(Some(&[0; 4]), None, &[]).build(), 1);
    let mut loaded = Shard::new(ShardConfig::default(), 2);
    let replayed = loaded.replay_batches(&log.bytes, NOW);
    assert_eq!(replayed.next_offset, log.next);
    assert_eq!(replayed.skipped, vec![(keyless, RecordError::NoKey)]);
    assert_eq!(loaded.describe_consumer(GROUP), shard.describe_consumer(GROUP));
    assert_eq!(loaded.offsets(GROUP, None), shard.offsets(GROUP, None));
    assert_eq!(loaded.offsets(GROUP, None)[0].2.as_ref().map(|o| o.offset), Some(42));
}

#[test]
fn the_replay_ends_at_a_damaged_batch() {
    let (_, mut log) = written();
    let intact = (log.bytes.len(), log.next);
    log.append(BatchBuilder::new(NOW).record(Some(b"k"), Some(b"v"), &[]).build(), 1);
    let last = log.bytes.len() - 1;
    log.bytes[last] ^= 0xff;
    log.append(BatchBuilder::new(NOW).record(Some(b"k"), Some(b"v"), &[]).build(), 1);
    let mut loaded = Shard::new(ShardConfig::default(), 2);
    let replayed = loaded.replay_batches(&log.bytes, NOW);
    assert_eq!(replayed.next_offset, intact.1, "the walk stopped before the damage");
    assert!(replayed.skipped.is_empty(), "{replayed:?}");
    let mut whole = Shard::new(ShardConfig::default(), 2);
    whole.replay_batches(&log.bytes[..intact.0], NOW);
    assert_eq!(loaded.describe_consumer(GROUP), whole.describe_consumer(GROUP));
}
