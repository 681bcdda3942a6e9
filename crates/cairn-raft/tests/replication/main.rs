//! Raft groups of three voters across three nodes in one process, over the real peer transport
//! on 127.0.0.1 (every link through a `FaultProxy`) and real log stores on temporary
//! directories: an election and 1,000 commits with byte-identical logs; a stopped leader
//! replaced and caught up after its restart; a partitioned leader's uncommitted suffix
//! truncated, and a partitioned follower kept from deposing the leader by pre-vote; 100 groups
//! over one connection pair with batched heartbeats; a follower whose disk fails its fsyncs
//! stopped (fail-stop) while the other two keep committing; a follower that installs a
//! snapshot gets the idempotent producers with it.
//!
//! No sleeps: every wait is on openraft's metrics or the transport's counters, with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod fault_disk;

use cairn_raft::{Timers, leader_with_lease};
use cairn_testkit::{Direction, Fault};
use cluster::{Cluster, WAIT};
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

const GROUP: u64 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_one_leader_commit_1000_proposals_and_hold_identical_logs() {
    let cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (leader, term) = cluster.leader(GROUP, 0).await;

    let last = cluster.commit(leader, GROUP, "record", 1000).await;
    // Index 0: the membership of `initialize`; then a blank per elected term, the proposals.
    assert!(last >= 1001, "1,000 proposals after the membership and a blank: {last}");
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, last).await;
    }
    cluster.assert_identical(GROUP, last);
    // Still the one leader of that term: nothing disturbed the group.
    assert_eq!(cluster.leader(GROUP, 0).await, (leader, term));
    // Appends went on the data lane, pipelined by the leader's streams.
    assert!(cluster.stats(leader).appends_sent > 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_in_a_higher_term_and_catches_up_after_its_restart() {
    let mut cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (old_leader, old_term) = cluster.leader(GROUP, 0).await;
    let before = cluster.commit(old_leader, GROUP, "before", 50).await;

    cluster.stop(old_leader).await;
    let (leader, term) = cluster.leader(GROUP, old_term).await;
    assert_ne!(leader, old_leader);
    let after = cluster.commit(leader, GROUP, "after", 50).await;
    assert!(after > before);

    cluster.restart(old_leader).await;
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, after).await;
    }
    cluster.assert_identical(GROUP, after);
    // The restarted node follows the new leader; it did not depose it.
    assert_eq!(cluster.leader(GROUP, 0).await, (leader, term));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_loses_its_uncommitted_suffix_and_nothing_committed() {
    let cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (old_leader, old_term) = cluster.leader(GROUP, 0).await;
    let committed = cluster.commit(old_leader, GROUP, "committed", 20).await;
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, committed).await;
    }
    let committed_bytes = cluster.entry_bytes(old_leader, GROUP, committed);

    // Cut every link of the leader, then give it proposals it cannot commit (at once: it
    // takes writes only while its lease lasts).
    cluster.isolate(old_leader, Fault::Reject).await;
    let stranded = cluster.propose(old_leader, GROUP, "stranded", 5).await;
    let old_raft = cluster.raft(old_leader, GROUP);
    let why = "the isolated leader appends its proposals";
    old_raft.wait(Some(WAIT)).log_index_at_least(Some(committed + 5), why).await.unwrap();
    // Still Leader in openraft's eyes, it stops naming itself once its lease runs out: no
    // client is sent back to it while it cannot commit.
    let lease = std::time::Duration::from_millis(cluster::timers().election_timeout_max_ms);
    let named =
        |raft: &cluster::GroupRaft| leader_with_lease(&raft.metrics().borrow_watched(), lease);
    assert_eq!(named(old_raft), Some(old_leader), "named while its lease lasts");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(20));
    while named(old_raft).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "an isolated leader named itself");
        poll.tick().await;
    }

    // The majority elects a leader of its own and commits.
    let majority: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != old_leader).collect();
    let new_leader = wait_for_leader_among(&cluster, &majority, old_term).await;
    let last = cluster.commit(new_leader, GROUP, "majority", 10).await;

    cluster.heal();
    let (leader, _) = cluster.leader(GROUP, old_term).await;
    assert_eq!(leader, new_leader);
    let why = "the old leader follows the new one";
    old_raft.wait(Some(WAIT)).current_leader(new_leader, why).await.unwrap();
    assert_eq!(named(old_raft), Some(new_leader), "it names the new leader");
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, last).await;
    }
    cluster.assert_identical(GROUP, last);
    // What was committed before the partition is still there, byte for byte.
    assert_eq!(cluster.entry_bytes(old_leader, GROUP, committed), committed_bytes);
    // The stranded proposals were cut from the old leader's log, never committed.
    for pending in stranded {
        let outcome = tokio::time::timeout(WAIT, pending.commit).await.expect("an outcome in time");
        assert!(outcome.is_err(), "a stranded proposal committed: {outcome:?}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_vote_keeps_a_returning_partitioned_follower_from_deposing_the_leader() {
    let cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (leader, term) = cluster.leader(GROUP, 0).await;
    let committed = cluster.commit(leader, GROUP, "first", 10).await;
    let follower = [1, 2, 3].into_iter().find(|&n| n != leader).expect("a follower");
    cluster.applied(follower, GROUP, committed).await;

    // Blackhole the follower's links (connections stay open, bytes vanish): its election
    // timer fires and it sends pre-votes that nobody answers, round after round.
    let mut stats = cluster.nodes[&follower].peer.stats();
    let pre_votes = stats.borrow().pre_votes_sent;
    cluster.isolate(follower, Fault::Drop(Direction::Both)).await;
    let rounds = tokio::time::timeout(WAIT, stats.wait_for(|s| s.pre_votes_sent >= pre_votes + 4));
    assert!(rounds.await.is_ok(), "the isolated follower campaigns with pre-votes");
    let metrics = cluster.raft(follower, GROUP).metrics().borrow_watched().clone();
    assert_eq!(metrics.current_term, term, "a pre-vote never raises the term");
    assert_eq!(metrics.state, ServerState::Follower);

    cluster.heal();
    let last = cluster.commit(leader, GROUP, "second", 10).await;
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, last).await;
    }
    // The leader of that same term still leads: the follower's return deposed nobody.
    assert_eq!(cluster.leader(GROUP, 0).await, (leader, term));
    assert_eq!(cluster.raft(follower, GROUP).metrics().borrow_watched().current_term, term);
    cluster.assert_identical(GROUP, last);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_groups_share_one_connection_pair_and_batch_their_heartbeats() {
    let groups: Vec<u64> = (1..=100).collect();
    // Production timers (heartbeats every 250 ms): 300 groups in one process on two cores.
    let cluster = Cluster::start_with(&[1, 2, 3], &groups, Timers::default()).await;
    for &group in &groups {
        // Leaders spread over the nodes: each group is initialized from one of them.
        cluster.initialize(group % 3 + 1, group).await;
    }
    // Every group elects a leader that a quorum acknowledged, all over the same links.
    for &group in &groups {
        cluster.leader(group, 0).await;
    }
    // Idle now: only heartbeats flow. Wait for a few thousand of them.
    let base = [1, 2, 3].map(|node| cluster.stats(node));
    for (node, before) in [1, 2, 3].into_iter().zip(&base) {
        let mut stats = cluster.nodes[&node].peer.stats();
        let enough = stats.wait_for(|s| s.heartbeats_sent >= before.heartbeats_sent + 1000);
        assert!(tokio::time::timeout(WAIT, enough).await.is_ok(), "node {node} sends heartbeats");
    }
    for (node, before) in [1, 2, 3].into_iter().zip(&base) {
        let now = cluster.stats(node);
        // One connection per peer and lane, never replaced: 2 peers × 2 lanes.
        assert_eq!(now.connections, 4, "node {node}: {now:?}");
        assert_eq!(now.protocol_errors, 0);
        let heartbeats = now.heartbeats_sent - before.heartbeats_sent;
        let frames = now.heartbeat_frames_sent - before.heartbeat_frames_sent;
        eprintln!("node {node}: {heartbeats} heartbeats in {frames} frames");
        assert!(
            heartbeats >= 2 * frames,
            "node {node}: {heartbeats} heartbeats in {frames} frames"
        );
    }
    cluster.shutdown().await;
}

/// Waits until one of `nodes` leads `group` in a term above `above` and the others follow it.
async fn wait_for_leader_among(cluster: &Cluster, nodes: &[u64], above: u64) -> u64 {
    let first = cluster.raft(nodes[0], GROUP);
    let metrics = first
        .wait(Some(WAIT))
        .metrics(|m| m.current_term > above && m.current_leader.is_some(), "a new leader")
        .await
        .unwrap();
    let leader = metrics.current_leader.expect("a leader");
    assert!(nodes.contains(&leader), "the majority's leader {leader} is one of {nodes:?}");
    for &node in nodes {
        let why = format!("node {node} follows {leader}");
        cluster.raft(node, GROUP).wait(Some(WAIT)).current_leader(leader, why).await.unwrap();
    }
    let lease = cluster.raft(leader, GROUP).wait(Some(WAIT));
    lease.leader_with_quorum_acked(None, "the new leader's lease").await.unwrap();
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_the_peer_does_not_host_is_unreachable_to_openraft() {
    use cairn_raft::peer::{AppendRequest, Vote, VoteRequest};
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};

    let cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    cluster.leader(GROUP, 0).await;
    let option = RPCOption::new(std::time::Duration::from_secs(5));
    let mut unknown = cluster.nodes[&1].network.group(GROUP + 1);
    let mut client = unknown.new_client(2, &openraft::EmptyNode {}).await;
    let request = VoteRequest::new(Vote::new(1, 1), None);
    let vote = client.vote(request.clone(), option.clone()).await;
    assert!(matches!(vote, Err(RPCError::Unreachable(_))), "{vote:?}");
    let pre_vote = client.pre_vote(request, option.clone()).await;
    assert!(matches!(pre_vote, Err(RPCError::Unreachable(_))), "{pre_vote:?}");
    let append = AppendRequest {
        vote: Vote::new(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let appended = client.append_entries(append.clone(), option.clone()).await;
    assert!(matches!(appended, Err(RPCError::Unreachable(_))), "{appended:?}");
    // Through the heartbeat coalescer alike.
    let mut heartbeats = unknown.new_heartbeat_client(3, &openraft::EmptyNode {}).await;
    let beat = heartbeats.append_entries(append, option.clone()).await;
    assert!(matches!(beat, Err(RPCError::Unreachable(_))), "{beat:?}");
    // A node that is not a peer at all.
    let mut stranger = unknown.new_client(9, &openraft::EmptyNode {}).await;
    let vote = stranger.vote(VoteRequest::new(Vote::new(1, 1), None), option).await;
    assert!(matches!(vote, Err(RPCError::Unreachable(_))), "{vote:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_eio_stops_that_replica_and_the_other_two_keep_every_acknowledged_entry() {
    let mut cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (leader, _) = cluster.leader(GROUP, 0).await;
    let before = cluster.commit(leader, GROUP, "before", 20).await;
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, before).await;
    }
    let failing = (1..=3).find(|&node| node != leader).unwrap();
    let healthy = (1..=3).find(|&node| node != leader && node != failing).unwrap();
    cluster.nodes[&failing].disk.fail_syncs();

    // Every write is committed (on a majority's disks) by the leader and the healthy follower.
    let after = cluster.commit(leader, GROUP, "after", 50).await;
    for node in [leader, healthy] {
        cluster.applied(node, GROUP, after).await;
    }

    // The failing replica stopped at its first failed fsync, its log out of service: nothing
    // became durable there since, and the leader counted no acknowledgement of it beyond what
    // was durable before.
    let stopped = cluster.raft(failing, GROUP).wait(Some(WAIT));
    stopped.metrics(|m| m.running_state.is_err(), "the replica stopped").await.unwrap();
    assert!(cluster.nodes[&failing].disk.failed_syncs() >= 1);
    let log = cluster.nodes[&failing].groups[&GROUP].opened.group.clone();
    let durable = log.with_log(|log| log.durable_index());
    assert!(durable.0 <= after, "the replica made the later entries durable: {durable:?}");
    let matched = |cluster: &Cluster| {
        let metrics = cluster.raft(leader, GROUP).metrics().borrow_watched().clone();
        metrics.replication.unwrap()[&failing].map(|id| id.index)
    };
    assert!(
        matched(&cluster).is_none_or(|index| index < durable.0),
        "acknowledged past {durable:?}"
    );

    // Fail-stop, not retry-and-continue: more writes, and it still holds what it held.
    let more = cluster.commit(leader, GROUP, "more", 10).await;
    assert_eq!(log.with_log(|log| log.durable_index()), durable);
    assert!(matched(&cluster).is_none_or(|index| index < durable.0));
    assert!(cluster.raft(failing, GROUP).metrics().borrow_watched().running_state.is_err());
    cluster.applied(healthy, GROUP, more).await;
    let held = cluster.entry_bytes(leader, GROUP, more);
    assert!(held == cluster.entry_bytes(healthy, GROUP, more), "the others' logs differ");
    for value in (0..20).map(|n| format!("before-{n}")).chain((0..50).map(|n| format!("after-{n}")))
    {
        let found = held.windows(value.len()).any(|window| window == value.as_bytes());
        assert!(found, "acknowledged {value} is readable");
    }

    // Restarted on a sound disk, it catches up with everything.
    cluster.stop(failing).await;
    cluster.restart(failing).await;
    for node in [1, 2, 3] {
        cluster.applied(node, GROUP, more).await;
    }
    cluster.assert_identical(GROUP, more);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_installs_a_snapshot_knows_the_idempotent_producers() {
    let mut cluster = Cluster::start(&[1, 2, 3], &[GROUP]).await;
    cluster.initialize(1, GROUP).await;
    let (leader, _) = cluster.leader(GROUP, 0).await;
    let behind = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    cluster.stop(behind).await;
    // Enough idempotent batches to fill several 4 KiB segments, from two producers.
    let batches = (0..80).map(|n: i32| {
        cairn_types::batch::BatchBuilder::new(1_700_000_000_000)
            .producer(cairn_types::ProducerId(i64::from(n % 2)), 0, n / 2)
            .record(None, Some(&[7; 100]), &[])
            .build()
    });
    let proposed = cluster.propose_batches(leader, GROUP, batches).await;
    let last = cluster.committed(leader, proposed).await;
    // Everything the two running nodes hold is snapshotted and purged but the active segment.
    for node in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.applied(node, GROUP, last).await;
        let raft = cluster.raft(node, GROUP);
        raft.trigger().snapshot().await.unwrap();
        raft.wait(Some(WAIT))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
            .await
            .unwrap();
        raft.trigger().purge_log(last).await.unwrap();
        raft.wait(Some(WAIT)).metrics(|m| m.purged.is_some(), "purged").await.unwrap();
    }
    let producers = |cluster: &Cluster, node: u64| {
        cluster.nodes[&node].groups[&GROUP].opened.group.with_log(|log| log.producers().clone())
    };
    let expected = producers(&cluster, leader);
    assert_eq!(expected.len(), 2);
    cluster.restart(behind).await;
    cluster.applied(behind, GROUP, last).await;
    let start =
        cluster.nodes[&behind].groups[&GROUP].opened.group.with_log(|log| log.start_index());
    assert!(start.0 > 1, "the follower caught up by a snapshot, not from the first entry");
    assert_eq!(producers(&cluster, behind), expected);
    cluster.stop(behind).await;
    cluster.restart(behind).await;
    assert_eq!(producers(&cluster, behind), expected, "kept across a restart");
    cluster.shutdown().await;
}
