//! Storage faults under replication (issue 10, deliverable 8; DESIGN §3.7), on three real
//! `cairn serve` processes with one partition of replication factor 3 and `acks=all` writes:
//!
//! - a byte flipped inside a follower's committed log, followed by valid batches: the start
//!   finds the corruption, cuts the log at the damaged batch (the rest moved aside, not
//!   deleted), and the replica abstains until the leader has sent everything again; the
//!   damaged bytes are never served, and the logs end byte-identical;
//! - the same flip with the follower's `raft-vote` damaged too: its vote is unknown, so nothing
//!   is cut and the replica stays offline (no group: it neither serves, votes nor campaigns;
//!   Metadata lists it offline, readiness names it), while the other two keep every
//!   acknowledged record and take writes;
//! - a byte flipped in a follower's last committed batch: recovery cannot tell it from a torn
//!   write and cuts it, the group sees that its log lost a committed entry, abstains from
//!   votes and elections until the leader has sent it again, and ends byte-identical to the
//!   others;
//! - the tail of a killed leader's last acknowledged batch cut off: the others elect a leader
//!   meanwhile; the old leader cuts the torn tail at its start, abstains, and is refilled from
//!   the new leader; every acknowledged record is read back and every replica's log is the same.
//!
//! The logs are compared byte for byte once every node stopped (SIGTERM). Nothing sleeps: every
//! wait polls with a deadline (`ProcessNode::wait_until`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_storage::{RealDisk, VoteFile};
use cairn_testkit::{
    ProcessNode, ProcessNodeBuilder, epoch_end, free_ports, kafka_call, wire_name,
};
use cairn_types::batch::{BatchHeader, Frames};
use cairn_types::limits::BATCH_BYTES_MAX;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use tempfile::TempDir;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long a cluster has to elect a leader, agree, replicate or restore a replica.
const AGREE_TIMEOUT: Duration = Duration::from_secs(60);

/// The topic of every test: one partition, three replicas.
const TOPIC: &str = "faults";

/// Three nodes and the builders that restart them on their data.
struct Cluster {
    builders: Vec<ProcessNodeBuilder>,
    nodes: Vec<Option<ProcessNode>>,
}

impl Cluster {
    /// Starts three nodes and creates [`TOPIC`] with replication factor 3.
    fn start() -> Cluster {
        let ports = free_ports(3);
        let peers: Vec<String> =
            (1..=3).zip(&ports).map(|(id, port)| format!("{id}=127.0.0.1:{port}")).collect();
        let peers = peers.join(",");
        let builders: Vec<ProcessNodeBuilder> = (1..=3u64)
            .zip(&ports)
            .map(|(id, port)| {
                ProcessNode::builder(CAIRN).args([
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--peer-listen".to_owned(),
                    format!("127.0.0.1:{port}"),
                    "--peers".to_owned(),
                    peers.clone(),
                ])
            })
            .collect();
        let mut nodes: Vec<Option<ProcessNode>> = builders
            .iter()
            .map(|builder| Some(builder.spawn_in(TempDir::new().expect("a temporary directory"))))
            .collect();
        for node in nodes.iter_mut().flatten() {
            node.wait_ready(AGREE_TIMEOUT);
        }
        let cluster = Cluster { builders, nodes };
        cluster.node(1).ok(&["topic", "create", TOPIC, "--replication-factor", "3"]);
        cluster
    }

    /// Running node `id` (1..=3).
    fn node(&self, id: u64) -> &ProcessNode {
        self.nodes[slot(id)].as_ref().expect("running")
    }

    fn node_mut(&mut self, id: u64) -> &mut ProcessNode {
        self.nodes[slot(id)].as_mut().expect("running")
    }

    /// The running node among `ids` whose replica leads, once one does; waits on node `on`.
    fn wait_leader(&mut self, on: u64, ids: &[u64]) -> u64 {
        let addrs: Vec<(u64, String)> =
            ids.iter().map(|&id| (id, self.node(id).bootstrap().to_owned())).collect();
        let mut leader = 0;
        self.node_mut(on).wait_until("a partition leader", AGREE_TIMEOUT, |_| {
            for (id, addr) in &addrs {
                if epoch_end_error(addr)? == 0 {
                    leader = *id;
                    return Ok(());
                }
            }
            Err(format!("none of {ids:?} leads yet"))
        });
        leader
    }

    /// Produces `lines` with acks=all through `leader`, again while it refuses with
    /// `NOT_LEADER_OR_FOLLOWER` (a new leader's lease; nothing appended). One batch per call.
    fn produce(&mut self, leader: u64, lines: &str) {
        let args = ["produce", TOPIC, "--partition", "0", "--acks", "all"];
        self.node_mut(leader).wait_until("an acknowledged write", AGREE_TIMEOUT, |node| {
            let run = node.cairn(&args, lines.as_bytes());
            if run.status.success() {
                return Ok(());
            }
            assert!(run.stderr.contains("NOT_LEADER_OR_FOLLOWER"), "{}", run.stderr);
            Err(run.stderr)
        });
    }

    /// Waits until `leader`'s Metadata lists every replica in sync (each holds every committed
    /// entry), and then until `follower` saved a committed index at or past its log's last
    /// entry: it knows its whole log committed.
    fn wait_all_committed(&mut self, leader: u64, follower: u64) {
        self.node_mut(leader).wait_until("every replica in sync", AGREE_TIMEOUT, |node| {
            let isr = in_sync(node.bootstrap())?;
            if isr == [1, 2, 3] { Ok(()) } else { Err(format!("isr {isr:?}")) }
        });
        let dir = replica_dir(self.node(follower));
        self.node_mut(follower).wait_until("the whole log committed", AGREE_TIMEOUT, |_| {
            let last = entries(&log_bytes(&dir)).len() as u64 - 1;
            let committed = saved_commit(&dir);
            if committed >= Some(last) { Ok(()) } else { Err(format!("{committed:?} < {last}")) }
        });
    }

    /// Restarts node `id` on its data directory (it was stopped or killed) and waits until it
    /// answers (ready or degraded).
    fn restart(&mut self, id: u64, dir: TempDir) {
        let mut node = self.builders[slot(id)].spawn_in(dir);
        node.wait_ready(AGREE_TIMEOUT);
        self.nodes[slot(id)] = Some(node);
    }

    /// Stops every node (SIGTERM, exit 0); each node's data directory, and the logs it held.
    fn stop(self) -> Vec<(TempDir, Vec<u8>)> {
        let mut stopped = Vec::new();
        for node in self.nodes.into_iter().flatten() {
            let dir = replica_dir(&node);
            let (temp, _) = node.stop();
            let bytes = log_bytes(&dir);
            stopped.push((temp, bytes));
        }
        stopped
    }
}

/// The place of node `id` (ids 1..=3) in a cluster's vectors.
fn slot(id: u64) -> usize {
    usize::try_from(id - 1).expect("node ids start at 1")
}

/// The error of OffsetForLeaderEpoch v4 for partition 0 of [`TOPIC`] through `bootstrap`:
/// 0 on the leader only (`NOT_LEADER_OR_FOLLOWER` elsewhere, `KAFKA_STORAGE_ERROR` offline).
fn epoch_end_error(bootstrap: &str) -> Result<i16, String> {
    epoch_end(bootstrap, TOPIC, -1).map(|(error, ..)| error)
}

/// Waits until `node`'s group, having found committed entries lost and abstained, logs that
/// the leader restored them.
fn wait_restored(node: &mut ProcessNode, what: &str) {
    node.wait_until(what, AGREE_TIMEOUT, |node| {
        if logged(node, &["restored its lost committed entries"]) {
            Ok(())
        } else {
            Err("not restored yet".to_owned())
        }
    });
    assert!(logged(node, &["lost committed entries", "neither votes nor campaigns"]));
}

/// Partition 0 of [`TOPIC`] in Metadata v12 through `bootstrap`, and the topic's id.
fn metadata(
    bootstrap: &str,
) -> Result<
    (kafka_protocol::messages::metadata_response::MetadataResponsePartition, uuid::Uuid),
    String,
> {
    let wanted = MetadataRequestTopic::default().with_name(Some(wire_name(TOPIC)));
    let request = MetadataRequest::default().with_topics(Some(vec![wanted]));
    let response: MetadataResponse = kafka_call(bootstrap, ApiKey::Metadata, 12, &request)?;
    let topic = response.topics.first().ok_or("no topic in the answer")?;
    let partition = topic.partitions.first().ok_or("no partition in the answer")?;
    Ok((partition.clone(), topic.topic_id))
}

/// The in-sync replicas of partition 0 in Metadata through `bootstrap`, sorted.
fn in_sync(bootstrap: &str) -> Result<Vec<i32>, String> {
    let (partition, _) = metadata(bootstrap)?;
    let mut isr: Vec<i32> = partition.isr_nodes.iter().map(|n| n.0).collect();
    isr.sort_unstable();
    Ok(isr)
}

/// The directory of `node`'s replica of partition 0 of [`TOPIC`].
fn replica_dir(node: &ProcessNode) -> PathBuf {
    let (_, id) = metadata(node.bootstrap()).expect("the topic's metadata");
    node.data_dir().join("topics").join(format!("{}-0", id.simple()))
}

/// The segments of the log in `dir`, concatenated in order.
fn log_bytes(dir: &Path) -> Vec<u8> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the replica's directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    segments.iter().flat_map(|path| std::fs::read(path).expect("a segment")).collect()
}

/// The only segment of the log in `dir` (the tests write far less than one segment).
fn only_segment(dir: &Path) -> PathBuf {
    let segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the replica's directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    let [segment] = segments.as_slice() else { panic!("one segment: {segments:?}") };
    segment.clone()
}

/// Each whole batch of `bytes` (position, header): one per Raft entry, index = ordinal.
fn entries(bytes: &[u8]) -> Vec<(usize, BatchHeader)> {
    Frames::new(bytes, BATCH_BYTES_MAX).collect()
}

/// The committed index `raft-vote` in `dir` holds (read through cairn-storage, checksums
/// checked; the running node may be writing the other slot).
fn saved_commit(dir: &Path) -> Option<u64> {
    let (vote, _) = VoteFile::open(RealDisk, dir).expect("the vote file");
    vote.committed().map(|committed| committed.index)
}

/// Flips a byte inside the records of the entry at `index` of the log in `dir`, and removes
/// the recovery checkpoint so the next start walks (and verifies) the whole log.
fn flip_entry(dir: &Path, index: usize) {
    let segment = only_segment(dir);
    let mut bytes = std::fs::read(&segment).expect("the segment");
    let (position, header) = entries(&bytes)[index];
    assert!(header.total_bytes() > 70, "a batch with records: {header:?}");
    bytes[position + 66] ^= 0x40;
    std::fs::write(&segment, bytes).expect("the flipped segment");
    std::fs::remove_file(dir.join("recovery-point")).expect("no checkpoint");
}

/// The values of partition 0 read from the start through `node` (keyless: `\t<value>`).
fn values(node: &mut ProcessNode, count: usize) -> Vec<String> {
    let mut read = Vec::new();
    node.wait_until("the high watermark", AGREE_TIMEOUT, |node| {
        let run = node.cairn(&["consume", TOPIC, "--partition", "0"], b"");
        if !run.status.success() {
            assert!(run.stderr.contains("OFFSET_NOT_AVAILABLE"), "{}", run.stderr);
            return Err(run.stderr);
        }
        read = run.stdout.lines().map(|l| l.strip_prefix('\t').unwrap_or(l).to_owned()).collect();
        if read.len() >= count { Ok(()) } else { Err(format!("{} records", read.len())) }
    });
    read
}

/// `count` lines `{tag}-{i}`, one per record.
fn lines(tag: &str, count: usize) -> String {
    (0..count).map(|i| format!("{tag}-{i}\n")).collect()
}

/// Whether the log of `node` has a line containing every one of `words`.
fn logged(node: &ProcessNode, words: &[&str]) -> bool {
    let log = std::fs::read_to_string(node.log()).unwrap_or_default();
    log.lines().any(|line| words.iter().all(|word| line.contains(word)))
}

/// Every replica's log is the same: the same entries at the same offsets, byte for byte after
/// the group's first entry, and consecutive offsets. The first entry (index 0, the membership
/// every replica writes at `initialize`) carries each replica's own clock as its timestamp
/// (RFC 0003 §3 wants the core's commit time: a finding), so only its length, offset and epoch
/// are compared.
fn assert_identical(stopped: &[(TempDir, Vec<u8>)]) {
    let (first, theirs) = (&stopped[0].1, entries(&stopped[0].1));
    for (dir, bytes) in stopped {
        let ours = entries(bytes);
        assert_eq!(ours.len(), theirs.len(), "{}", dir.path().display());
        let (a, b) = (ours[0].1, theirs[0].1);
        let shape = |h: BatchHeader| (h.base_offset, h.batch_length, h.partition_leader_epoch);
        assert_eq!(shape(a), shape(b), "{}", dir.path().display());
        let (ours_rest, theirs_rest) = (ours[1].0, theirs[1].0);
        assert_eq!(bytes.len() - ours_rest, first.len() - theirs_rest);
        let differs = ours.iter().zip(&theirs).skip(1).position(|((a, ha), (b, _))| {
            let len = ha.total_bytes() as usize;
            bytes[*a..*a + len] != first[*b..*b + len]
        });
        assert_eq!(differs, None, "{} differs after entry 0", dir.path().display());
    }
    let mut next = 0;
    for (_, header) in &theirs {
        assert_eq!(header.base_offset.0, next, "consecutive offsets");
        next = header.next_offset().0;
    }
    let whole: usize = theirs.iter().map(|(_, h)| h.total_bytes() as usize).sum();
    assert_eq!(whole, first.len(), "whole batches only");
}

/// Starts a cluster, writes three acknowledged batches, stops a follower once it knows its
/// whole log committed, and flips a byte in its first batch of records (valid batches follow).
/// The follower's id, its data directory, its replica's directory and the damaged log bytes.
fn flip_inside_a_follower(cluster: &mut Cluster, leader: u64) -> (u64, TempDir, PathBuf, Vec<u8>) {
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    for batch in 0..3 {
        cluster.produce(leader, &lines(&format!("b{batch}"), 10));
    }
    cluster.wait_all_committed(leader, follower);
    let dir = replica_dir(cluster.node(follower));
    let (temp, _) = cluster.nodes[slot(follower)].take().expect("running").stop();
    // The first produced batch: entries 0 and 1 are the group's membership and first blank.
    let damaged = entries(&log_bytes(&dir));
    let first_records = damaged.iter().position(|(_, h)| !h.is_control()).expect("records");
    assert!(first_records + 1 < damaged.len(), "valid batches follow the damage");
    flip_entry(&dir, first_records);
    let flipped = log_bytes(&dir);
    (follower, temp, dir, flipped)
}

/// Every record [`flip_inside_a_follower`] and the tests wrote: `b0`..`b2`, then `after`.
fn all_written() -> Vec<String> {
    ["b0", "b1", "b2", "after"]
        .iter()
        .flat_map(|tag| lines(tag, 10).lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn a_bit_flip_inside_a_followers_committed_log_is_cut_and_refilled_from_the_leader() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(1, &[1, 2, 3]);
    let (follower, temp, dir, flipped) = flip_inside_a_follower(&mut cluster, leader);
    let damaged_at = entries(&flipped).iter().find(|(_, h)| !h.is_control()).expect("records").0;
    // The partition idle, its leader quiesces it with the follower down: the restarted
    // follower, which names that leader from its stored vote, must still be caught up.
    cluster.node_mut(leader).wait_until("the partition to quiesce", AGREE_TIMEOUT, |node| {
        let quiesced = node.metric::<u64>("cairn_raft_groups_quiesced")?;
        if quiesced == 1 { Ok(()) } else { Err(format!("{quiesced} quiesced")) }
    });
    cluster.restart(follower, temp);

    // Detected at the start and cut there: the damaged batch and everything after it moved
    // aside, byte for byte, and the replica never serves them (it does not lead: Fetch through
    // it is refused, never answered with the damaged bytes).
    let node = cluster.node(follower);
    assert!(logged(node, &["damaged inside", "dropped_bytes"]), "{}", node.log_tail());
    assert!(logged(node, &["lost committed entries", "neither votes nor campaigns"]));
    let refused = node.fails(&["consume", TOPIC, "--partition", "0"], b"");
    assert!(refused.contains("NOT_LEADER_OR_FOLLOWER"), "{refused}");
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.join("damaged"))
        .expect("the damaged bytes moved aside")
        .flat_map(|cut| std::fs::read_dir(cut.expect("a cut").path()).expect("a cut's files"))
        .map(|file| file.expect("a file").path())
        .collect();
    let [copy] = aside.as_slice() else { panic!("one file aside: {aside:?}") };
    assert!(std::fs::read(copy).expect("the copy") == flipped[damaged_at..], "kept as it was");

    // The leader sends the log again; the replica votes again and forgets `raft-restore`.
    cluster.node_mut(follower).wait_until("the cut log refilled", AGREE_TIMEOUT, |node| {
        let restored = logged(node, &["restored its lost committed entries"]);
        if restored && !dir.join("raft-restore").exists() {
            Ok(())
        } else {
            Err(format!("restored: {restored}"))
        }
    });
    cluster.produce(leader, &lines("after", 10));
    assert_eq!(values(cluster.node_mut(leader), 40), all_written());
    cluster.wait_all_committed(leader, follower);
    let refused = cluster.node(follower).fails(&["consume", TOPIC, "--partition", "0"], b"");
    assert!(refused.contains("NOT_LEADER_OR_FOLLOWER"), "{refused}");
    assert_identical(&cluster.stop());
}

#[test]
fn a_bit_flip_inside_a_log_whose_vote_is_damaged_too_keeps_that_replica_offline() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(1, &[1, 2, 3]);
    let (follower, temp, dir, flipped) = flip_inside_a_follower(&mut cluster, leader);
    // Every slot of `raft-vote` (at bytes 0 and 4096, the second once written) fails its
    // checksum.
    let vote_path = dir.join("raft-vote");
    let mut vote = std::fs::read(&vote_path).expect("the vote file");
    let len = vote.len();
    for at in [8, 4096 + 8].into_iter().filter(|&at| at < len) {
        vote[at] ^= 0x01;
    }
    std::fs::write(&vote_path, vote).expect("the damaged vote file");
    cluster.restart(follower, temp);

    // Detected at the start, logged, and the replica offline: readiness names it, Metadata
    // through it lists it offline, and it serves nothing.
    let node = cluster.node(follower);
    assert!(logged(node, &["partition log cannot be opened", "corrupt"]), "{}", node.log_tail());
    let (status, body) = node.admin_get("/health/ready");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    assert!(body.contains(&format!("{TOPIC}-0")), "{body}");
    let (partition, _) = metadata(node.bootstrap()).expect("metadata through the follower");
    let offline: Vec<i32> = partition.offline_replicas.iter().map(|n| n.0).collect();
    assert_eq!(offline, [i32::try_from(follower).expect("an id")], "{partition:?}");
    assert_eq!(epoch_end_error(node.bootstrap()), Ok(56), "KAFKA_STORAGE_ERROR, no group");
    let refused = node.fails(&["consume", TOPIC, "--partition", "0"], b"");
    assert!(refused.contains("KAFKA_STORAGE_ERROR"), "{refused}");

    // The others serve every acknowledged record and still take acks=all writes.
    cluster.produce(leader, &lines("after", 10));
    assert_eq!(values(cluster.node_mut(leader), 40), all_written());
    // Nothing was cut, moved or rewritten on the damaged replica.
    let stopped = cluster.stop();
    let kept = stopped.iter().find(|(_, bytes)| bytes.len() == flipped.len() && *bytes == flipped);
    assert!(kept.is_some(), "the damaged log is left as it was");
    assert!(!dir.join("damaged").exists() && !dir.join("raft-restore").exists());
}

#[test]
fn a_bit_flip_in_a_followers_last_committed_batch_is_restored_from_the_leader() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(1, &[1, 2, 3]);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    for batch in 0..3 {
        cluster.produce(leader, &lines(&format!("b{batch}"), 10));
    }
    cluster.wait_all_committed(leader, follower);
    let dir = replica_dir(cluster.node(follower));
    let (temp, _) = cluster.nodes[slot(follower)].take().expect("running").stop();
    let last = entries(&log_bytes(&dir)).len() - 1;
    flip_entry(&dir, last);
    cluster.restart(follower, temp);

    // The start cut the damaged batch as a torn tail; the group found a committed entry lost
    // and abstained until the leader (the same one, same term) sent it again.
    wait_restored(cluster.node_mut(follower), "the lost entry restored");
    let leader_node = cluster.node(leader);
    assert!(!logged(leader_node, &["panicked"]), "{}", leader_node.log_tail());
    cluster.produce(leader, &lines("after", 10));
    let read = values(cluster.node_mut(leader), 40);
    assert_eq!(read.len(), 40, "{read:?}");
    cluster.wait_all_committed(leader, follower);
    assert_identical(&cluster.stop());
}

#[test]
fn a_torn_tail_on_a_killed_leader_is_cut_and_refilled_from_the_new_leader() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(1, &[1, 2, 3]);
    for batch in 0..3 {
        cluster.produce(leader, &lines(&format!("b{batch}"), 10));
    }
    // The leader saved its whole log committed: the tail cut below was acknowledged.
    cluster.wait_all_committed(leader, leader);
    let dir = replica_dir(cluster.node(leader));
    let killed = cluster.nodes[slot(leader)].take().expect("running").kill();
    let segment = only_segment(&dir);
    let length = std::fs::metadata(&segment).expect("the segment").len();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("the segment");
    file.set_len(length - 7).expect("a torn tail");
    drop(file);

    // Meanwhile the others elect a leader, which has every acknowledged record and takes more.
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_leader(survivors[0], &survivors);
    cluster.produce(new_leader, &lines("after", 10));
    cluster.restart(leader, killed);
    wait_restored(cluster.node_mut(leader), "the cut tail refilled");
    let read = values(cluster.node_mut(new_leader), 40);
    let expected: Vec<String> = ["b0", "b1", "b2", "after"]
        .iter()
        .flat_map(|tag| lines(tag, 10).lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(read, expected);
    cluster.wait_all_committed(new_leader, leader);
    assert_identical(&cluster.stop());
}
