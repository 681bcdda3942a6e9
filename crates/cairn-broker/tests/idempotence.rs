//! Idempotent produce through a partition's Raft group (RFC 0006 §4), on a real disk: a retry
//! is answered with the original's offsets and not appended again, whether the original is in
//! the log, in the same proposal run, or was written before a restart; a sequence gap and a
//! fenced epoch are refused with nothing appended.

use std::path::Path;
use std::time::Duration;

use cairn_broker::{Acks, PartitionError};
use cairn_meta::{MetadataStore, TopicName, TopicSpec};
use cairn_testkit::broker::{
    ReadRecord, TestBroker, broker_config, committed_records, open_broker,
};
use cairn_types::batch::BatchBuilder;
use cairn_types::{Offset, ProducerId};

const TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "idempotent";

async fn open(dir: &Path) -> TestBroker {
    let broker = open_broker(broker_config(dir)).await;
    if broker.meta().topic(TOPIC).is_none() {
        let name = TopicName::new(TOPIC).expect("valid name");
        let spec = TopicSpec {
            name,
            partitions: 1,
            replication_factor: 1,
            configs: Vec::new(),
            assignments: None,
        };
        broker.create_topic(spec).await.expect("created");
    }
    broker
}

/// A batch of `records` records from producer 7 at `epoch`, starting at `sequence`.
fn batch(epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000).producer(ProducerId(7), epoch, sequence);
    for record in 0..records {
        builder = builder.record(None, Some(format!("{sequence}+{record}").as_bytes()), &[]);
    }
    builder.build()
}

/// Produces `records`; the base and next offsets of the answer.
async fn produce(
    broker: &TestBroker,
    records: Vec<u8>,
    acks: Acks,
) -> Result<(u64, u64), PartitionError> {
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    let appended = partition.produce(records, acks, TIMEOUT).await?;
    Ok((appended.base_offset.0, appended.next_offset.0))
}

/// The record values in the partition, in order, without control batches.
fn values(broker: &TestBroker) -> Vec<String> {
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    let value = |record: ReadRecord| String::from_utf8(record.value.expect("a value"));
    committed_records(&partition).into_iter().map(|r| value(r).expect("utf-8")).collect()
}

#[tokio::test]
async fn retries_are_answered_with_the_original_offsets_and_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let first = produce(&broker, batch(0, 0, 3), Acks::All).await.expect("appended");
    assert_eq!(produce(&broker, batch(0, 0, 3), Acks::All).await.expect("retry"), first);
    assert_eq!(produce(&broker, batch(0, 0, 3), Acks::Leader).await.expect("retry"), first);
    match produce(&broker, batch(0, 5, 1), Acks::All).await {
        Err(PartitionError::OutOfOrderSequence { expected: 3 }) => {}
        other => panic!("a gap is out of order, not {other:?}"),
    }
    let second = produce(&broker, batch(0, 3, 2), Acks::All).await.expect("next in order");
    assert!(second.0 >= first.1);
    let bumped = produce(&broker, batch(1, 0, 1), Acks::All).await.expect("a new epoch at 0");
    match produce(&broker, batch(0, 5, 1), Acks::All).await {
        Err(PartitionError::ProducerFenced { current: 1 }) => {}
        other => panic!("the old epoch is fenced, not {other:?}"),
    }
    assert_eq!(values(&broker), ["0+0", "0+1", "0+2", "3+0", "3+1", "0+0"]);
    broker.shutdown().await;

    // The state is rebuilt from the log: the last batch's retry is still a duplicate.
    let broker = open(dir.path()).await;
    assert_eq!(produce(&broker, batch(1, 0, 1), Acks::All).await.expect("retry"), bumped);
    match produce(&broker, batch(1, 2, 1), Acks::All).await {
        Err(PartitionError::OutOfOrderSequence { expected: 1 }) => {}
        other => panic!("a gap after the restart is out of order, not {other:?}"),
    }
    assert_eq!(values(&broker).len(), 6, "nothing was appended twice");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_retry_proposed_right_behind_its_original_is_answered_with_its_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    // Proposed back to back before either is appended: the group appends them in one run.
    let original = partition.propose(batch(0, 0, 2), Acks::All).await.expect("proposed");
    let retry = partition.propose(batch(0, 0, 2), Acks::All).await.expect("proposed");
    let next = partition.propose(batch(0, 2, 1), Acks::All).await.expect("proposed");
    let original = original.wait(TIMEOUT).await.expect("appended");
    let retry = retry.wait(TIMEOUT).await.expect("answered");
    next.wait(TIMEOUT).await.expect("appended");
    assert_eq!(
        (retry.base_offset, retry.next_offset),
        (original.base_offset, original.next_offset)
    );
    assert!(original.next_offset > Offset(0));
    assert_eq!(values(&broker), ["0+0", "0+1", "2+0"]);
    broker.shutdown().await;
}
