//! A one-voter group on the real thing: openraft's `Raft` over cairn's log store and partition
//! state machine in a temporary directory. It initializes, elects itself, commits proposals
//! (each `on_commit` names the entry's own log id, each proposal reported with its offsets),
//! then restarts on the same directory and finds the same entries and vote.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_raft::CommitResponder;
use cairn_raft::{NoPeers, Proposal, RaftEntry, TypeConfig};
use cairn_storage::RealDisk;
use cairn_types::Offset;
use cairn_types::batch::BatchBuilder;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{Config, Raft, ServerState};
use support::Opened;

/// Bounds every wait of this test.
const WAIT: Duration = Duration::from_secs(10);

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        enable_pre_vote: Some(true),
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Config::default()
    };
    Arc::new(config.validate().unwrap())
}

async fn start(
    opened: &Opened<RealDisk>,
) -> Raft<TypeConfig, cairn_raft::PartitionStateMachine<RealDisk>> {
    Raft::new(1, config(), NoPeers::default(), opened.store(), opened.state_machine())
        .await
        .unwrap()
}

fn produced(value: &str) -> Bytes {
    Bytes::from(
        BatchBuilder::new(1_700_000_000_000).record(None, Some(value.as_bytes()), &[]).build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_voter_group_commits_proposals_and_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    let opened = Opened::open(RealDisk, &path);
    let raft = start(&opened).await;
    raft.initialize(BTreeSet::from([1u64])).await.unwrap();
    let metrics = raft.wait(Some(WAIT)).state(ServerState::Leader, "elects itself").await.unwrap();
    let term = metrics.current_term;

    let mut commits = Vec::new();
    for ticket in 1..=3u64 {
        let (responder, commit, _applied) = CommitResponder::new();
        let proposal = Proposal { batch: produced(&format!("record {ticket}")), ticket };
        raft.client_write_ff(proposal, Some(responder)).await.unwrap();
        commits.push(commit);
    }
    let mut committed = Vec::new();
    for commit in commits {
        committed.push(tokio::time::timeout(WAIT, commit).await.unwrap().unwrap());
    }
    // Index 0: the membership of `initialize`; 1: the leader's blank entry; then the proposals.
    let indexes: Vec<u64> = committed.iter().map(|id| id.index).collect();
    assert_eq!(indexes, [2, 3, 4]);
    assert!(committed.iter().all(|id| id.leader_id.term == term));

    // Each proposal was reported with its place in the log: one record each, after the
    // membership and blank control batches (offsets 0 and 1).
    let reported = opened.sink.0.lock().unwrap().clone();
    let places: Vec<_> =
        reported.iter().map(|(t, a)| (*t, a.index.0, a.base_offset, a.next_offset)).collect();
    assert_eq!(
        places,
        [(1, 2, Offset(2), Offset(3)), (2, 3, Offset(3), Offset(4)), (3, 4, Offset(4), Offset(5))]
    );
    raft.wait(Some(WAIT)).applied_index(Some(4), "applies the proposals").await.unwrap();
    let vote_before = opened.store().get_log_reader().await.read_vote().await.unwrap();
    raft.shutdown().await.unwrap();
    drop(raft);
    drop(opened);

    let opened = Opened::open(RealDisk, &path);
    let mut reader = opened.store().get_log_reader().await;
    assert_eq!(reader.read_vote().await.unwrap(), vote_before);
    let entries: Vec<RaftEntry> = reader.try_get_log_entries(0..).await.unwrap();
    assert_eq!(entries.len(), 5);
    for (entry, ticket) in entries[2..].iter().zip(1u64..) {
        let stored = entry.proposal().unwrap();
        let records = cairn_types::batch::RecordBatch::validate(&stored.batch).unwrap();
        let record = records.records().next().unwrap().unwrap();
        assert_eq!(record.value.unwrap(), format!("record {ticket}").as_bytes());
        assert_eq!(entry.term(), term);
    }
    // The state machine starts at the committed id: nothing to re-apply (RFC 0003 §11 b).
    let (applied, membership) = opened.state_machine().applied_state().await.unwrap();
    assert_eq!(applied, Some(committed[2]));
    assert_eq!(membership.voter_ids().collect::<Vec<_>>(), [1]);
    let raft = start(&opened).await;
    let metrics = raft.wait(Some(WAIT)).applied_index(Some(4), "starts applied").await.unwrap();
    assert_eq!(metrics.last_log_index, Some(4));
    raft.wait(Some(WAIT)).state(ServerState::Leader, "elects itself again").await.unwrap();
    raft.shutdown().await.unwrap();
}
