//! A static cluster of real `cairn serve` processes (`--node-id`, `--peer-listen`, `--peers`) on
//! free loopback ports: the consistent core across three nodes, writes forwarded to its leader,
//! a failover after the leader is killed, a restart that rejoins without initializing again,
//! a killed node dropped from Metadata's brokers by the core leader and listed again once back,
//! `cairn cluster status` of one node and of three (liveness included) and its errors,
//! a peer of another cluster refused at the handshake, a bad `--peers` refused at start, and
//! after a partition leader is killed: OffsetForLeaderEpoch through the new leader ending the
//! old epoch right after its last acknowledged offset, a follower refusing it, and the KIP-951
//! leader hint of a follower's Produce (v12) and Fetch (v16) refusals; explicit replica
//! assignments (CreateTopics, CreatePartitions, `validate_only`) sent through a node that does
//! not lead the core, refused with Kafka's messages or hosted where the client said; a dead
//! node's replicas offline and out of the ISR, never named leader, partitions without a live
//! leader answered with LEADER_NOT_AVAILABLE and refused without a hint.
//!
//! Nothing sleeps to synchronise: readiness and every agreement between nodes are polled with a
//! deadline (`ProcessNode::wait_until`, which also ends if the node exits); every node is
//! stopped (SIGTERM, exit 0) or killed by its test, and killed if a test panics first.

use std::time::{Duration, Instant};

use cairn_node::status::{ClusterStatus, LivenessView};
use cairn_testkit::{
    ProcessNode, ProcessNodeBuilder, epoch_end, free_ports, kafka_call, metadata_brokers, wire_name,
};
use cairn_types::batch::BatchBuilder;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use tempfile::TempDir;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long a cluster has to elect a leader, agree, or fail over.
const AGREE_TIMEOUT: Duration = Duration::from_secs(60);

/// The builder of node `id` of the static peer set `peers`, on peer port `port`.
fn member(id: u64, port: u16, peers: &str) -> ProcessNodeBuilder {
    let listen = format!("127.0.0.1:{port}");
    ProcessNode::builder(CAIRN).args([
        "--node-id".to_owned(),
        id.to_string(),
        "--peer-listen".to_owned(),
        listen,
        "--peers".to_owned(),
        peers.to_owned(),
    ])
}

/// Node ids 1..=count, their builders and the `--peers` value they share.
fn members(count: u64) -> (Vec<ProcessNodeBuilder>, String) {
    let ports = free_ports(count as usize);
    let peers: Vec<String> =
        (1..=count).zip(&ports).map(|(id, port)| format!("{id}=127.0.0.1:{port}")).collect();
    let peers = peers.join(",");
    let builders = (1..=count).zip(&ports).map(|(id, &port)| member(id, port, &peers)).collect();
    (builders, peers)
}

/// Spawns every node at once (none is ready before a quorum runs), then waits for each.
fn start_all(builders: &[ProcessNodeBuilder]) -> Vec<ProcessNode> {
    let mut nodes: Vec<ProcessNode> = builders
        .iter()
        .map(|builder| builder.spawn_in(TempDir::new().expect("a temporary directory")))
        .collect();
    for node in &mut nodes {
        node.wait_ready(AGREE_TIMEOUT);
    }
    nodes
}

/// What `cairn cluster info` says through `node`: the controller and the brokers' ids.
fn cluster_info(node: &ProcessNode) -> Result<(i64, Vec<i64>), String> {
    let run = node.cairn(&["cluster", "info"], b"");
    if !run.status.success() {
        return Err(format!("cluster info failed: {}", run.stderr));
    }
    let field = |name: &str| {
        run.stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<i64>().ok())
    };
    let controller = field("controller:").ok_or_else(|| format!("no controller: {run:?}"))?;
    let brokers = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect();
    Ok((controller, brokers))
}

/// Waits until every node names the same controller (not -1, not `not`) and `brokers`.
fn wait_agreed(nodes: &mut [&mut ProcessNode], brokers: &[i64], not: Option<i64>) -> i64 {
    let (first, rest) = nodes.split_first_mut().expect("a node");
    let mut agreed = -1;
    first.wait_until("the nodes to agree on the controller", AGREE_TIMEOUT, |me| {
        let mut controllers = Vec::new();
        for node in std::iter::once(me).chain(rest.iter().map(|n| &**n)) {
            let (controller, seen) = cluster_info(node)?;
            if seen != brokers {
                return Err(format!("brokers {seen:?}, expected {brokers:?}"));
            }
            controllers.push(controller);
        }
        let controller = controllers[0];
        if controller == -1
            || Some(controller) == not
            || controllers.iter().any(|&c| c != controller)
        {
            return Err(format!("controllers {controllers:?}"));
        }
        agreed = controller;
        Ok(())
    });
    agreed
}

/// Running node `id` of `nodes`.
fn live(nodes: &[Option<ProcessNode>], id: i64) -> &ProcessNode {
    nodes[slot(id)].as_ref().expect("running")
}

/// The place of node `id` (ids 1..=n) in a cluster's vector.
fn slot(id: i64) -> usize {
    usize::try_from(id - 1).expect("node ids start at 1")
}

fn topics(node: &ProcessNode) -> Vec<String> {
    node.ok(&["topic", "list"]).lines().map(str::to_owned).collect()
}

#[test]
fn three_nodes_share_one_core_forward_writes_and_fail_over() {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let controller = {
        let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut all, &[1, 2, 3], None)
    };

    // A topic created through node 2 is listed through node 3 at once, whichever leads.
    live(&nodes, 2).ok(&["topic", "create", "through-two", "--partitions", "2"]);
    assert!(topics(live(&nodes, 3)).contains(&"through-two".to_owned()));
    // No replication factor given (Kafka's -1): the default, min(3, live nodes).
    let described = live(&nodes, 3).ok(&["topic", "describe", "through-two"]);
    assert!(described.contains("replication factor: 3"), "{described}");
    // And one created through a node that does not lead (its write is forwarded), through the
    // third node.
    let follower = (1..=3).find(|&id| id != controller).expect("a follower");
    let third = (1..=3).find(|&id| id != controller && id != follower).expect("a third node");
    live(&nodes, follower).ok(&["topic", "create", "through-a-follower"]);
    assert!(topics(live(&nodes, third)).contains(&"through-a-follower".to_owned()));
    let refused = live(&nodes, follower).fails(&["topic", "create", "through-two"], b"");
    assert!(refused.contains("TOPIC_ALREADY_EXISTS"), "{refused}");

    // SIGKILL the core leader: the other two elect another and still take writes.
    let killed = nodes[slot(controller)].take().expect("running").kill();
    // The new leader marks the killed node dead after its grace: the brokers are the two.
    let survivors: Vec<i64> = (1..=3).filter(|&id| id != controller).collect();
    let new_controller = {
        let mut alive: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut alive, &survivors, Some(controller))
    };
    assert!(survivors.contains(&new_controller), "{new_controller} leads");
    live(&nodes, survivors[0]).ok(&["topic", "create", "after-failover"]);
    assert!(topics(live(&nodes, survivors[1])).contains(&"after-failover".to_owned()));

    // The killed node restarts on its data: its core log is there, it does not initialize
    // again, it catches up and sees every topic.
    let raft_dir = killed.path().join("data/meta/raft");
    let logs = std::fs::read_dir(&raft_dir).expect("the core directory").count();
    assert!(logs > 0, "{} is empty", raft_dir.display());
    let mut restarted = builders[slot(controller)].spawn_in(killed);
    restarted.wait_ready(AGREE_TIMEOUT);
    let log = std::fs::read_to_string(restarted.log()).expect("the log");
    let initialized = r#"initialized a new group with its static voters group="core""#;
    assert_eq!(log.matches(initialized).count(), 1, "{}", restarted.log_tail());
    assert!(log.contains("not initialized again"), "{}", restarted.log_tail());
    let listed = topics(&restarted);
    for topic in ["after-failover", "through-a-follower", "through-two"] {
        assert!(listed.contains(&topic.to_owned()), "{listed:?}");
    }
    nodes[slot(controller)] = Some(restarted);
    {
        let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut all, &[1, 2, 3], None);
    }
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// The liveness grace of the default timers (3 × the 1.5 s shortest election timeout): a node
/// silent for longer is marked dead by the core leader.
const LIVENESS_GRACE: Duration = Duration::from_millis(4500);

/// The longest a killed node may stay in the others' Metadata: the grace, a retry period of
/// 3 s in case the first proposal is lost, and room for a slow machine to commit and apply.
const LIVENESS_BOUND: Duration = Duration::from_secs(20);

/// Waits until Metadata through every node of `nodes` lists `brokers` and `controller`.
fn wait_metadata(nodes: &mut [&mut ProcessNode], controller: i64, brokers: &[i64]) {
    let expected: Vec<i32> = brokers.iter().map(|&id| i32::try_from(id).expect("an id")).collect();
    let controller = i32::try_from(controller).expect("an id");
    let (first, rest) = nodes.split_first_mut().expect("a node");
    first.wait_until("every node's Metadata to list the brokers", AGREE_TIMEOUT, |me| {
        for node in std::iter::once(me).chain(rest.iter().map(|n| &**n)) {
            let seen = metadata_brokers(node.bootstrap())?;
            if seen != (controller, expected.clone()) {
                return Err(format!("{} answers {seen:?}", node.bootstrap()));
            }
        }
        Ok(())
    });
}

#[test]
#[expect(clippy::print_stderr, reason = "the measured time until a killed node is dropped")]
fn a_killed_node_leaves_the_brokers_after_the_grace_and_returns_when_restarted() {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let controller = {
        let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut all, &[1, 2, 3], None)
    };
    // SIGKILL a node that does not lead: the leader stops hearing it.
    let victim = (1..=3).find(|&id| id != controller).expect("a follower");
    let survivors: Vec<i64> = (1..=3).filter(|&id| id != victim).collect();
    let killed_at = Instant::now();
    let dir = nodes[slot(victim)].take().expect("running").kill();
    {
        let mut alive: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_metadata(&mut alive, controller, &survivors);
    }
    let dropped = killed_at.elapsed();
    eprintln!("node {victim} left the brokers {dropped:?} after SIGKILL");
    // Not before the grace (less a heartbeat interval: the last answer was to a heartbeat sent
    // up to one interval before the kill), and within the bound.
    assert!(dropped >= LIVENESS_GRACE - Duration::from_millis(500), "dropped after {dropped:?}");
    assert!(dropped <= LIVENESS_BOUND, "dropped after {dropped:?}");
    // `cairn cluster status` through a survivor says so too.
    let status = cluster_status(live(&nodes, survivors[0]));
    assert_eq!(status.core.leader, Some(controller as u64));
    assert_eq!(status.core.voters, vec![1, 2, 3]);
    let liveness: Vec<(u64, LivenessView)> =
        status.nodes.iter().map(|n| (n.id, n.liveness)).collect();
    let expected: Vec<(u64, LivenessView)> = (1..=3)
        .map(|id| (id, if id == victim as u64 { LivenessView::Dead } else { LivenessView::Alive }))
        .collect();
    assert_eq!(liveness, expected);
    let table = live(&nodes, survivors[0]).ok(&[
        "cluster",
        "status",
        "--admin",
        &live(&nodes, survivors[0]).admin().to_string(),
    ]);
    let victim_row = format!("  {victim} ");
    let row =
        table.lines().find(|l| l.starts_with(&victim_row)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("dead"), "{table}");
    let leader_log = std::fs::read_to_string(live(&nodes, controller).log()).expect("a log");
    let marked = leader_log.lines().filter(|l| l.contains("core leader set a node's liveness"));
    assert_eq!(marked.count(), 1, "one proposal for one change\n{leader_log}");

    // Restarted on its data, it registers again and is listed again by every node.
    let mut restarted = builders[slot(victim)].spawn_in(dir);
    restarted.wait_ready(AGREE_TIMEOUT);
    nodes[slot(victim)] = Some(restarted);
    let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
    wait_metadata(&mut all, controller, &[1, 2, 3]);
    drop(all);
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// `cairn cluster status --json` through `node`'s admin endpoint, decoded.
fn cluster_status(node: &ProcessNode) -> ClusterStatus {
    let admin = node.admin().to_string();
    let json = node.ok(&["cluster", "status", "--admin", &admin, "--json"]);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn cluster_status_of_a_single_node_and_its_errors() {
    let node = ProcessNode::start(CAIRN);
    let status = cluster_status(&node);
    assert_eq!(status.node_id, 0);
    assert_eq!(status.core.leader, Some(0));
    assert_eq!(status.core.voters, vec![0]);
    let committed = status.core.committed_index.expect("the core committed its start");
    let applied = status.core.applied_index.expect("and applied it");
    assert!(applied <= committed && applied >= 1, "{status:?}");
    let [only] = status.nodes.as_slice() else { panic!("{status:?}") };
    assert_eq!((only.id, only.kafka.as_str()), (0, node.bootstrap()));
    assert_eq!(
        (only.peer.as_str(), only.liveness, only.voter),
        ("none", LivenessView::Alive, true)
    );
    assert_eq!(status.cluster_id.as_ref().map(String::len), Some(32));

    let admin = node.admin().to_string();
    let table = node.ok(&["cluster", "status", "--admin", &admin]);
    assert!(table.contains("core: leader 0, term "), "{table}");
    assert!(table.contains("LIVENESS"), "{table}");
    let row = table.lines().find(|l| l.starts_with("  0 ")).unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["0", node.bootstrap(), "none", "-", "alive", "leader"], "{table}");

    // Nobody listening: a clear error, exit 1.
    let port = free_ports(1)[0];
    let nobody = format!("127.0.0.1:{port}");
    let refused = node.fails(&["cluster", "status", "--admin", &nobody], b"");
    assert!(
        refused.contains(&format!("cannot reach the admin endpoint of a node at {nobody}")),
        "{refused}"
    );
    // The Kafka listener is not an admin endpoint: it closes on the HTTP request.
    let kafka = node.fails(&["cluster", "status", "--admin", node.bootstrap()], b"");
    assert!(
        kafka.contains("answered no valid HTTP response") || kafka.contains("cannot reach"),
        "{kafka}"
    );
    let bad = node.fails(&["cluster", "status", "--admin", "no-port"], b"");
    assert!(bad.contains("--admin no-port is not a HOST:PORT"), "{bad}");
    drop(node.stop());
}

#[test]
fn a_peer_of_another_cluster_is_refused_at_the_handshake() {
    // Cluster A: node 1 alone. Node 0 names node 1 in its own, other peer set, so it dials it
    // (the lower id dials) with another cluster id.
    let ports = free_ports(2);
    let a_peers = format!("1=127.0.0.1:{}", ports[0]);
    let b_peers = format!("0=127.0.0.1:{},1=127.0.0.1:{}", ports[1], ports[0]);
    let mut a = member(1, ports[0], &a_peers).start();
    let mut b = member(0, ports[1], &b_peers).spawn_in(TempDir::new().expect("a directory"));
    let refused = |node: &ProcessNode, line: &str| {
        let log = std::fs::read_to_string(node.log()).unwrap_or_default();
        if log.lines().any(|l| l.contains(line) && l.contains("WrongCluster")) {
            Ok(())
        } else {
            Err(format!("no {line:?} with WrongCluster yet"))
        }
    };
    a.wait_until("the refusal in cluster A's log", AGREE_TIMEOUT, |a| {
        refused(a, "peer handshake refused")
    });
    b.wait_until("the refusal in the other node's log", AGREE_TIMEOUT, |b| {
        refused(b, "cannot connect to peer")
    });
    drop(b.kill());
    // Cluster A is untouched: it still leads itself and knows one broker.
    assert_eq!(cluster_info(&a), Ok((1, vec![1])));
    drop(a.stop());
}

#[test]
fn a_bad_peer_list_is_refused_at_start() {
    let dir = TempDir::new().expect("a directory");
    let data = dir.path().join("data").display().to_string();
    let serve = |node_id: &str, peers: &str| {
        let args = [
            "serve",
            "--data-dir",
            &data,
            "--node-id",
            node_id,
            "--peer-listen",
            "127.0.0.1:19001",
            "--peers",
            peers,
        ];
        let run = cairn_testkit::run(CAIRN, &args, &[], b"");
        assert!(!run.status.success(), "{run:?}");
        run.stderr
    };
    let twice = serve("1", "1=127.0.0.1:19001,1=127.0.0.1:19002");
    assert!(twice.contains("node id 1 is named twice"), "{twice}");
    let missing = serve("4", "1=127.0.0.1:19001,2=127.0.0.1:19002");
    assert!(missing.contains("does not name this node"), "{missing}");
    let many = serve("1", "1=h:1,2=h:2,3=h:3,4=h:4,5=h:5,6=h:6");
    assert!(many.contains("at most 5 may be core voters"), "{many}");
    assert!(!dir.path().join("data").exists(), "nothing is created for a refused start");
}

/// The values of partition 0 of `topic` (keyless records: each line `\t<value>`), read from
/// the start through `node` once there are at least `count`: an acks=all write is answered at
/// commit and the high watermark moves at apply, just after (until a new leader's first apply,
/// `OFFSET_NOT_AVAILABLE`). Any other failure fails the test.
fn values(node: &mut ProcessNode, topic: &str, count: usize) -> Vec<String> {
    let mut read = Vec::new();
    node.wait_until("the high watermark", AGREE_TIMEOUT, |node| {
        let run = node.cairn(&["consume", topic, "--partition", "0"], b"");
        if !run.status.success() {
            assert!(run.stderr.contains("OFFSET_NOT_AVAILABLE"), "{}", run.stderr);
            return Err(run.stderr);
        }
        let lines = run.stdout.lines();
        read = lines.map(|line| line.strip_prefix('\t').unwrap_or(line).to_owned()).collect();
        if read.len() >= count { Ok(()) } else { Err(format!("{} records", read.len())) }
    });
    read
}

/// Produces `lines` with acks=all to partition 0 of `topic` through `leader`, again while it
/// answers `NOT_LEADER_OR_FOLLOWER` (a new leader refuses writes until its term's lease is
/// established: a refusal, nothing appended); any other failure fails the test.
fn produce_all(leader: &mut ProcessNode, topic: &str, lines: &str) {
    let args = ["produce", topic, "--partition", "0", "--acks", "all"];
    leader.wait_until("the leader to take writes", AGREE_TIMEOUT, |node| {
        let run = node.cairn(&args, lines.as_bytes());
        if run.status.success() {
            return Ok(());
        }
        assert!(run.stderr.contains("NOT_LEADER_OR_FOLLOWER"), "{}", run.stderr);
        Err(run.stderr)
    });
}

/// Waits until `leader`'s `topic describe` lists `isr` as partition 0's in-sync replicas.
fn wait_isr(leader: &mut ProcessNode, topic: &str, isr: &[i64]) {
    let want = isr.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    leader.wait_until("the in-sync replicas", AGREE_TIMEOUT, |node| {
        let run = node.cairn(&["topic", "describe", topic], b"");
        let row = run.stdout.lines().find(|line| line.split_whitespace().next() == Some("0"));
        let seen = row.and_then(|row| row.split_whitespace().nth(4)).unwrap_or("?").to_owned();
        if seen == want { Ok(()) } else { Err(format!("isr {seen}, want {want}")) }
    });
}

/// Three nodes (their builders, the running nodes and their Kafka addresses) with `topic` of
/// one partition and three replicas, and the node that leads it.
fn three_with_topic(
    topic: &str,
) -> (Vec<ProcessNodeBuilder>, Vec<Option<ProcessNode>>, Vec<String>, i64) {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.bootstrap().to_owned()).collect();
    let create = ["topic", "create", topic, "--partitions", "1", "--replication-factor", "3"];
    live(&nodes, 1).ok(&create);
    let mut leader = 0;
    nodes[0].as_mut().expect("node 1").wait_until("a partition leader", AGREE_TIMEOUT, |_| {
        leader = answering_leader(&addrs, &[1, 2, 3], topic)?;
        Ok(())
    });
    (builders, nodes, addrs, leader)
}

/// SIGKILLs `leader` (of one of three nodes) and waits for another to lead `topic`: the killed
/// node's data and the new leader.
fn kill_leader(
    nodes: &mut [Option<ProcessNode>],
    addrs: &[String],
    leader: i64,
    topic: &str,
) -> (TempDir, i64) {
    let killed = nodes[slot(leader)].take().expect("running").kill();
    let survivors: Vec<i64> = (1..=3).filter(|&id| id != leader).collect();
    let mut new_leader = 0;
    nodes[slot(survivors[0])].as_mut().expect("running").wait_until(
        "a new partition leader",
        AGREE_TIMEOUT,
        |_| {
            new_leader = answering_leader(addrs, &survivors, topic)?;
            Ok(())
        },
    );
    (killed, new_leader)
}

#[test]
fn a_replicated_partition_keeps_every_acknowledged_record_when_its_leader_is_killed() {
    let (builders, mut nodes, addrs, leader) = three_with_topic("r");
    // A follower refuses produce: only the group's leader appends.
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let refused = live(&nodes, follower).fails(&["produce", "r", "--partition", "0"], b"x\n");
    assert!(refused.contains("NOT_LEADER_OR_FOLLOWER"), "{refused}");

    let first: String = (0..100).map(|i| format!("before-{i}\n")).collect();
    produce_all(nodes[slot(leader)].as_mut().expect("running"), "r", &first);
    assert_eq!(values(nodes[slot(leader)].as_mut().expect("running"), "r", 100).len(), 100);

    // SIGKILL the leader: another replica is elected, has every acknowledged record, and
    // takes writes.
    let (killed, new_leader) = kill_leader(&mut nodes, &addrs, leader, "r");
    let second: String = (0..100).map(|i| format!("after-{i}\n")).collect();
    produce_all(nodes[slot(new_leader)].as_mut().expect("running"), "r", &second);
    let read = values(nodes[slot(new_leader)].as_mut().expect("running"), "r", 200);
    let expected: Vec<String> = first.lines().chain(second.lines()).map(str::to_owned).collect();
    assert_eq!(read, expected);

    // The new leader's Metadata leaves the killed replica out of the ISR.
    let survivors_isr: Vec<i64> = (1..=3).filter(|&id| id != leader).collect();
    wait_isr(nodes[slot(new_leader)].as_mut().expect("running"), "r", &survivors_isr);

    // The killed replica restarts on its data, rejoins its group and is in sync again.
    let mut restarted = builders[slot(leader)].spawn_in(killed);
    restarted.wait_ready(AGREE_TIMEOUT);
    nodes[slot(leader)] = Some(restarted);
    wait_isr(nodes[slot(new_leader)].as_mut().expect("running"), "r", &[1, 2, 3]);

    // Deleted through one node, the topic's replicas are removed from every node.
    live(&nodes, new_leader).ok(&["topic", "delete", "r"]);
    for node in nodes.iter_mut().flatten() {
        node.wait_until("the deleted topic's data to go", AGREE_TIMEOUT, |node| {
            let topics = node.data_dir().join("topics");
            let left = std::fs::read_dir(&topics).map_err(|e| e.to_string())?.count();
            if left == 0 { Ok(()) } else { Err(format!("{left} entries in {}", topics.display())) }
        });
    }
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// Partition 0 of `topic` in `node`'s Metadata (v12): its leader, leader epoch and the topic id.
fn leader_and_epoch(bootstrap: &str, topic: &str) -> Result<(i32, i32, uuid::Uuid), String> {
    let wanted = MetadataRequestTopic::default().with_name(Some(wire_name(topic)));
    let request = MetadataRequest::default().with_topics(Some(vec![wanted]));
    let response: MetadataResponse = kafka_call(bootstrap, ApiKey::Metadata, 12, &request)?;
    let found = response.topics.first().ok_or("no topic in the answer")?;
    let partition = found.partitions.first().ok_or("no partition in the answer")?;
    if partition.error_code != 0 || partition.leader_id.0 < 0 {
        return Err(format!("no leader yet: {partition:?}"));
    }
    Ok((partition.leader_id.0, partition.leader_epoch, found.topic_id))
}

/// Produces `count` records to partition 0 of `topic` through `bootstrap` (acks=all, Produce
/// `version`): the answer.
fn produce_batch(
    bootstrap: &str,
    topic: &str,
    count: usize,
    version: i16,
) -> Result<ProduceResponse, String> {
    let mut batch = BatchBuilder::new(1_700_000_000_000);
    for i in 0..count {
        batch = batch.record(None, Some(format!("v{i}").as_bytes()), &[]);
    }
    let data =
        PartitionProduceData::default().with_index(0).with_records(Some(batch.build().into()));
    let topic_data =
        TopicProduceData::default().with_name(wire_name(topic)).with_partition_data(vec![data]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic_data]);
    kafka_call(bootstrap, ApiKey::Produce, version, &request)
}

/// The `host:port` of each node endpoint of a KIP-951 answer, by id.
fn endpoints<'a>(nodes: impl Iterator<Item = (i32, &'a StrBytes, i32)>) -> Vec<(i32, String)> {
    nodes.map(|(id, host, port)| (id, format!("{host}:{port}"))).collect()
}

/// The node among `ids` whose replica of partition 0 of `topic` leads: the one that answers
/// OffsetForLeaderEpoch, which only a leader does. (Metadata may still name the old leader
/// after it died: a follower names the leader it last knew until it campaigns, or until the
/// core marks that node dead.)
fn answering_leader(addrs: &[String], ids: &[i64], topic: &str) -> Result<i64, String> {
    for &id in ids {
        if epoch_end(&addrs[slot(id)], topic, -1)?.0 == 0 {
            return Ok(id);
        }
    }
    Err(format!("none of {ids:?} leads {topic} yet"))
}

#[test]
fn a_new_leader_answers_where_the_killed_leaders_epoch_ended_and_followers_hint_at_it() {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.bootstrap().to_owned()).collect();
    let addr = |id: i64| addrs[slot(id)].as_str();
    live(&nodes, 1).ok(&["topic", "create", "e", "--partitions", "1", "--replication-factor", "3"]);
    // Writes acknowledged under one epoch of one leader: the last offset of the last batch.
    let (mut leader, mut old_epoch, mut topic_id, mut last_acked) = (0, 0, uuid::Uuid::nil(), -1);
    nodes[0].as_mut().expect("node 1").wait_until("writes acknowledged", AGREE_TIMEOUT, |_| {
        leader = answering_leader(&addrs, &[1, 2, 3], "e")?;
        let before = leader_and_epoch(addr(leader), "e")?;
        for _ in 0..3 {
            let response = produce_batch(addr(leader), "e", 10, 9)?;
            let answer = &response.responses[0].partition_responses[0];
            if answer.error_code != 0 {
                return Err(format!("produce refused: {answer:?}"));
            }
            last_acked = answer.base_offset + 9;
        }
        let after = leader_and_epoch(addr(leader), "e")?;
        if before != after || i64::from(after.0) != leader {
            return Err(format!("leadership moved: {before:?} then {after:?}"));
        }
        (old_epoch, topic_id) = (after.1, after.2);
        Ok(())
    });
    assert_eq!(epoch_end(addr(leader), "e", old_epoch), Ok((0, old_epoch, last_acked + 1)));

    let _killed = nodes[slot(leader)].take().expect("running").kill();
    let survivors: Vec<i64> = (1..=3).filter(|&id| id != leader).collect();
    let mut new_leader = 0;
    nodes[slot(survivors[0])].as_mut().expect("running").wait_until(
        "a new partition leader",
        AGREE_TIMEOUT,
        |_| {
            new_leader = answering_leader(&addrs, &survivors, "e")?;
            // Metadata names it once a quorum acknowledged it (its lease).
            leader_and_epoch(addr(new_leader), "e").map(drop)
        },
    );
    // The old epoch ends right after the last offset acknowledged under it.
    assert_eq!(epoch_end(addr(new_leader), "e", old_epoch), Ok((0, old_epoch, last_acked + 1)));
    let new = leader_and_epoch(addr(new_leader), "e").expect("the new leader's metadata");
    assert_eq!(i64::from(new.0), new_leader, "a leader names itself");
    let new_epoch = new.1;
    assert!(new_epoch > old_epoch, "{new_epoch} after {old_epoch}");

    let follower = *survivors.iter().find(|&&id| id != new_leader).expect("a follower");
    let at_leader = vec![(new.0, addr(new_leader).to_owned())];
    assert_eq!(epoch_end(addr(follower), "e", old_epoch), Ok((6, -1, -1)));
    nodes[slot(follower)].as_mut().expect("running").wait_until(
        "the follower to hint at the new leader",
        AGREE_TIMEOUT,
        |node| {
            let produced = produce_batch(node.bootstrap(), "e", 1, 12)?;
            let answer = &produced.responses[0].partition_responses[0];
            let hint = (
                answer.error_code,
                answer.current_leader.leader_id.0,
                answer.current_leader.leader_epoch,
            );
            if hint != (6, new.0, new_epoch) {
                return Err(format!("produce answered {answer:?}"));
            }
            let listed = produced.node_endpoints.iter().map(|n| (n.node_id.0, &n.host, n.port));
            assert_eq!(endpoints(listed), at_leader);
            let fetched = fetch_v16(node.bootstrap(), topic_id)?;
            let answer = &fetched.responses[0].partitions[0];
            let hint = (
                answer.error_code,
                answer.current_leader.leader_id.0,
                answer.current_leader.leader_epoch,
            );
            assert_eq!(hint, (6, new.0, new_epoch), "{answer:?}");
            let listed = fetched.node_endpoints.iter().map(|n| (n.node_id.0, &n.host, n.port));
            assert_eq!(endpoints(listed), at_leader);
            Ok(())
        },
    );
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// A Fetch v16 of partition 0 of the topic `topic_id` from offset 0.
fn fetch_v16(bootstrap: &str, topic_id: uuid::Uuid) -> Result<FetchResponse, String> {
    let partition = FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic_id(topic_id).with_partitions(vec![partition]);
    let request = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![topic]);
    kafka_call(bootstrap, ApiKey::Fetch, 16, &request)
}

/// A CreateTopics request for `topic` with the manual assignment `lists` (one broker list per
/// partition, in index order), `validate_only` or not.
fn create_assigned(topic: &str, lists: &[&[i32]], validate_only: bool) -> CreateTopicsRequest {
    let assignments = lists
        .iter()
        .zip(0..)
        .map(|(brokers, index)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(index)
                .with_broker_ids(brokers.iter().map(|&id| BrokerId(id)).collect())
        })
        .collect();
    let wanted = CreatableTopic::default()
        .with_name(wire_name(topic))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(assignments);
    CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_validate_only(validate_only)
        .with_topics(vec![wanted])
}

/// A CreatePartitions request raising `topic` to `count` with the replica lists `lists`.
fn grow_assigned(topic: &str, count: i32, lists: &[&[i32]]) -> CreatePartitionsRequest {
    let assignments = lists
        .iter()
        .map(|brokers| {
            CreatePartitionsAssignment::default()
                .with_broker_ids(brokers.iter().map(|&id| BrokerId(id)).collect())
        })
        .collect();
    let wanted = CreatePartitionsTopic::default()
        .with_name(wire_name(topic))
        .with_count(count)
        .with_assignments(Some(assignments));
    CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![wanted])
}

/// The error code and message of a CreateTopics answer's first topic.
fn created(bootstrap: &str, request: &CreateTopicsRequest) -> Result<(i16, String), String> {
    let response: CreateTopicsResponse = kafka_call(bootstrap, ApiKey::CreateTopics, 5, request)?;
    let result = response.topics.first().ok_or("no topic in the answer")?;
    let message = result.error_message.as_ref().map(ToString::to_string).unwrap_or_default();
    Ok((result.error_code, message))
}

/// Each partition of `topic` in `bootstrap`'s Metadata (v12): error, leader, replicas, ISR
/// and offline replicas.
type PartitionView = (i16, i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn partitions_of(bootstrap: &str, topic: &str) -> Result<Vec<PartitionView>, String> {
    let wanted = MetadataRequestTopic::default().with_name(Some(wire_name(topic)));
    let request = MetadataRequest::default().with_topics(Some(vec![wanted]));
    let response: MetadataResponse = kafka_call(bootstrap, ApiKey::Metadata, 12, &request)?;
    let found = response.topics.first().ok_or("no topic in the answer")?;
    let ids = |nodes: &[BrokerId]| nodes.iter().map(|n| n.0).collect::<Vec<_>>();
    let mut partitions: Vec<_> = found.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    Ok(partitions
        .iter()
        .map(|p| {
            let (replicas, isr) = (ids(&p.replica_nodes), ids(&p.isr_nodes));
            (p.error_code, p.leader_id.0, replicas, isr, ids(&p.offline_replicas))
        })
        .collect())
}

/// The partition indexes of topic `id` whose directories `node` holds.
fn hosted_partitions(node: &ProcessNode, id: uuid::Uuid) -> Result<Vec<u32>, String> {
    let prefix = format!("{}-", id.simple());
    let entries = std::fs::read_dir(node.data_dir().join("topics")).map_err(|e| e.to_string())?;
    let mut hosted: Vec<u32> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix(&prefix)?.parse().ok()
        })
        .collect();
    hosted.sort_unstable();
    Ok(hosted)
}

#[test]
fn explicit_assignments_place_replicas_where_the_client_says() {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let controller = {
        let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut all, &[1, 2, 3], None)
    };
    // Through a node that does not lead the core: the request and its refusals are forwarded.
    let through = (1..=3).find(|&id| id != controller).expect("a follower of the core");
    let addr = live(&nodes, through).bootstrap().to_owned();
    let refusals: [(&[&[i32]], &str); 3] = [
        (
            &[&[1, 9]],
            "The manual partition assignment includes broker 9, but no such broker is registered.",
        ),
        (
            &[&[1, 2], &[3]],
            "The manual partition assignment includes a partition with 1 replica(s), but this is not consistent with previous partitions, which have 2 replica(s).",
        ),
        (&[&[2, 2]], "The manual partition assignment includes the broker 2 more than once."),
    ];
    for validate_only in [true, false] {
        for (lists, message) in refusals {
            let answer = created(&addr, &create_assigned("placed", lists, validate_only));
            assert_eq!(answer, Ok((39, message.to_owned())), "{lists:?}");
        }
    }
    let valid: &[&[i32]] = &[&[3, 1], &[2, 3]];
    assert_eq!(created(&addr, &create_assigned("placed", valid, true)), Ok((0, String::new())));
    assert!(!topics(live(&nodes, 1)).contains(&"placed".to_owned()), "only validated");
    assert_eq!(created(&addr, &create_assigned("placed", valid, false)), Ok((0, String::new())));
    // Every node lists the replicas as given, and hosts exactly its own.
    let id = topic_id(&addr, "placed");
    let expected: [(i64, Vec<u32>); 3] = [(1, vec![0]), (2, vec![1]), (3, vec![0, 1])];
    for (node, hosts) in expected {
        nodes[slot(node)].as_mut().expect("running").wait_until(
            "the assigned replicas",
            AGREE_TIMEOUT,
            |me| {
                let seen = partitions_of(me.bootstrap(), "placed")?;
                let replicas: Vec<&Vec<i32>> = seen.iter().map(|p| &p.2).collect();
                if replicas != [&vec![3, 1], &vec![2, 3]] {
                    return Err(format!("replicas {replicas:?}"));
                }
                let hosted = hosted_partitions(me, id)?;
                if hosted == hosts { Ok(()) } else { Err(format!("hosts {hosted:?}")) }
            },
        );
    }
    // CreatePartitions through the same node: Kafka's refusal, then the lists as given.
    let grow: CreatePartitionsResponse =
        kafka_call(&addr, ApiKey::CreatePartitions, 3, &grow_assigned("placed", 4, &[&[1, 2]]))
            .expect("an answer");
    let refused = &grow.results[0];
    assert_eq!(refused.error_code, 39);
    assert_eq!(
        refused.error_message.as_ref().map(ToString::to_string).as_deref(),
        Some(
            "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
        )
    );
    let grow: CreatePartitionsResponse =
        kafka_call(&addr, ApiKey::CreatePartitions, 3, &grow_assigned("placed", 3, &[&[1, 2]]))
            .expect("an answer");
    assert_eq!(grow.results[0].error_code, 0, "{grow:?}");
    nodes[slot(2)].as_mut().expect("running").wait_until(
        "the new partition",
        AGREE_TIMEOUT,
        |me| {
            let seen = partitions_of(me.bootstrap(), "placed")?;
            let hosted = hosted_partitions(me, id)?;
            match seen.get(2) {
                Some(p) if p.2 == [1, 2] && hosted == [1, 2] => Ok(()),
                other => Err(format!("partition 2: {other:?}, hosts {hosted:?}")),
            }
        },
    );
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// The id of `topic` in `bootstrap`'s Metadata (v12).
fn topic_id(bootstrap: &str, topic: &str) -> uuid::Uuid {
    let wanted = MetadataRequestTopic::default().with_name(Some(wire_name(topic)));
    let request = MetadataRequest::default().with_topics(Some(vec![wanted]));
    let response: MetadataResponse =
        kafka_call(bootstrap, ApiKey::Metadata, 12, &request).expect("metadata");
    response.topics.first().expect("the topic").topic_id
}

/// Creates `topic` through `bootstrap` with the manual assignment `lists`; panics if refused.
fn create_or_panic(bootstrap: &str, topic: &str, lists: &[&[i32]]) {
    let answer = created(bootstrap, &create_assigned(topic, lists, false));
    assert_eq!(answer, Ok((0, String::new())), "creating {topic}");
}

/// After a node dies: its replicas are offline and out of the ISR everywhere; a partition whose
/// only replica it held has no leader (LEADER_NOT_AVAILABLE, leader -1) through the nodes that
/// do not host it; a replica left without a majority knows no live leader, answers Metadata
/// with LEADER_NOT_AVAILABLE and refuses Produce and Fetch with NOT_LEADER_OR_FOLLOWER and no
/// KIP-951 hint; no node names the dead node as a leader.
#[test]
fn a_dead_nodes_replicas_are_offline_and_it_is_never_named_leader() {
    let (builders, _) = members(3);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.bootstrap().to_owned()).collect();
    let addr = |id: i64| addrs[slot(id)].clone();
    let controller = {
        let mut all: Vec<&mut ProcessNode> = nodes.iter_mut().flatten().collect();
        wait_agreed(&mut all, &[1, 2, 3], None)
    };
    // A two-replica partition on the two nodes that do not lead the core; the one that leads
    // it dies, so the core keeps its majority and marks it dead.
    let pair: Vec<i64> = (1..=3).filter(|&id| id != controller).collect();
    let as_broker = |id: i64| i32::try_from(id).expect("a broker id");
    let pair_lists: &[&[i32]] = &[&[as_broker(pair[0]), as_broker(pair[1])]];
    create_or_panic(&addr(controller), "pair", pair_lists);
    let mut victim = 0;
    nodes[slot(controller)].as_mut().expect("running").wait_until(
        "a leader of pair",
        AGREE_TIMEOUT,
        |_| {
            victim = answering_leader(&addrs, &pair, "pair")?;
            Ok(())
        },
    );
    let survivor = *pair.iter().find(|&&id| id != victim).expect("the other replica");
    let v = as_broker(victim);
    create_or_panic(&addr(controller), "solo", &[&[v]]);
    create_or_panic(&addr(controller), "trio", &[&[v, as_broker(controller), as_broker(survivor)]]);
    nodes[slot(victim)].as_mut().expect("running").wait_until(
        "every partition led",
        AGREE_TIMEOUT,
        |me| {
            for topic in ["solo", "trio"] {
                let seen = partitions_of(me.bootstrap(), topic)?;
                if seen.iter().any(|p| p.0 != 0 || p.1 < 0) {
                    return Err(format!("{topic}: {seen:?}"));
                }
            }
            Ok(())
        },
    );
    let _killed = nodes[slot(victim)].take().expect("running").kill();
    for id in [controller, survivor] {
        nodes[slot(id)].as_mut().expect("running").wait_until(
            "the dead node's replicas offline",
            AGREE_TIMEOUT,
            |me| dead_node_seen(me.bootstrap(), v, id == survivor),
        );
    }
    // The replica without a majority refuses writes and reads without naming a leader.
    let produced = produce_batch(&addr(survivor), "pair", 1, 12).expect("an answer");
    let answer = &produced.responses[0].partition_responses[0];
    let hint = (answer.current_leader.leader_id.0, answer.current_leader.leader_epoch);
    assert_eq!((answer.error_code, hint), (6, (-1, -1)), "{answer:?}");
    assert!(produced.node_endpoints.is_empty(), "{produced:?}");
    let fetched = fetch_v16(&addr(survivor), topic_id(&addr(survivor), "pair")).expect("an answer");
    let answer = &fetched.responses[0].partitions[0];
    let hint = (answer.current_leader.leader_id.0, answer.current_leader.leader_epoch);
    assert_eq!((answer.error_code, hint), (6, (-1, -1)), "{answer:?}");
    assert!(fetched.node_endpoints.is_empty(), "{fetched:?}");
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// Whether Metadata through `bootstrap` shows broker `dead` dead: offline and out of every ISR,
/// never a leader; `solo` (its only replica there) without a leader; and, if `hosts_pair`
/// (this node holds pair's other replica, which has no majority), pair without a leader too.
fn dead_node_seen(bootstrap: &str, dead: i32, hosts_pair: bool) -> Result<(), String> {
    let lna = ResponseError::LeaderNotAvailable.code();
    for topic in ["solo", "trio", "pair"] {
        for p in partitions_of(bootstrap, topic)? {
            let (error, leader, _, isr, offline) = &p;
            if offline != &[dead] || isr.contains(&dead) || *leader == dead {
                return Err(format!("{topic}: {p:?}"));
            }
            let leaderless = (*error, *leader) == (lna, -1);
            let led = *error == 0 && *leader >= 0;
            let fits = match topic {
                "solo" => leaderless,
                "pair" if hosts_pair => leaderless,
                // Through the node without a replica: the preferred leader if alive, else none.
                "pair" => leaderless || led,
                _ => led,
            };
            if !fits {
                return Err(format!("{topic}: {p:?}"));
            }
        }
    }
    Ok(())
}

/// The gauge of a node's quiesced groups.
const QUIESCED: &str = "cairn_raft_groups_quiesced";

/// Waits until every node in `nodes` has `count` quiesced groups.
fn wait_quiesced(nodes: &mut [Option<ProcessNode>], count: u64) {
    for node in nodes.iter_mut().flatten() {
        node.wait_until("the idle partition to quiesce", AGREE_TIMEOUT, |node| {
            let seen = node.metric::<u64>(QUIESCED)?;
            if seen == count { Ok(()) } else { Err(format!("{seen} quiesced")) }
        });
    }
}

#[test]
fn an_idle_partition_quiesces_keeps_its_leader_and_wakes_on_a_write_and_on_a_kill() {
    let (builders, mut nodes, addrs, leader) = three_with_topic("q");
    let first: String = (0..10).map(|i| format!("first-{i}\n")).collect();
    produce_all(nodes[slot(leader)].as_mut().expect("running"), "q", &first);

    // Idle, every replica stops its timers; meanwhile the leader is still named, with every
    // replica in sync (the quiesced leader's ping lease), by the leader and by a follower.
    wait_quiesced(&mut nodes, 1);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    for asked in [leader, follower] {
        nodes[slot(asked)].as_mut().expect("running").wait_until(
            "the quiesced leader named in sync",
            AGREE_TIMEOUT,
            |node| {
                let before = node.metric::<u64>(QUIESCED)?;
                let named = answering_leader(&addrs, &[1, 2, 3], "q")?;
                let (_, epoch, id) = leader_and_epoch(node.bootstrap(), "q")?;
                let views = partitions_of(node.bootstrap(), "q")?;
                let after = node.metric::<u64>(QUIESCED)?;
                let isr = views.first().map(|view| view.3.clone()).unwrap_or_default();
                let settled = before == 1 && after == 1 && named == leader && isr == [1, 2, 3];
                if settled { Ok(()) } else { Err(format!("{named} {epoch} {id} {isr:?}")) }
            },
        );
    }

    // The first write wakes the group and is acknowledged at once (no retriable refusal).
    let second: String = (0..10).map(|i| format!("second-{i}\n")).collect();
    let args = ["produce", "q", "--partition", "0", "--acks", "all"];
    let run = live(&nodes, leader).cairn(&args, second.as_bytes());
    assert!(run.status.success(), "the waking write failed: {}", run.stderr);

    // Quiesced again, the leader is killed: its pings stop, the followers wake and elect.
    wait_quiesced(&mut nodes, 1);
    let (killed, new_leader) = kill_leader(&mut nodes, &addrs, leader, "q");
    let third: String = (0..10).map(|i| format!("third-{i}\n")).collect();
    produce_all(nodes[slot(new_leader)].as_mut().expect("running"), "q", &third);
    let read = values(nodes[slot(new_leader)].as_mut().expect("running"), "q", 30);
    let expected: Vec<String> =
        first.lines().chain(second.lines()).chain(third.lines()).map(str::to_owned).collect();
    assert_eq!(read, expected);

    // With one replica dead the other two quiesce again; the killed node, restarted, refuses
    // the leader's first ping, which wakes the group: it catches up and quiesces with them.
    wait_quiesced(&mut nodes, 1);
    let mut restarted = builders[slot(leader)].spawn_in(killed);
    restarted.wait_ready(AGREE_TIMEOUT);
    nodes[slot(leader)] = Some(restarted);
    wait_quiesced(&mut nodes, 1);
    // Quiesced only once every follower it hears holds the last entry: all three in sync.
    wait_isr(nodes[slot(new_leader)].as_mut().expect("running"), "q", &[1, 2, 3]);
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}

/// A node without a replica of a partition names the leader its peers announce in their pings
/// (RFC 0004), with its epoch, not the core's preferred leader once leadership moved away:
/// four nodes, a partition on nodes 1 to 3, asked through node 4.
#[test]
fn a_node_without_a_replica_names_the_leader_its_peers_announce() {
    let (builders, _) = members(4);
    let mut nodes: Vec<Option<ProcessNode>> = start_all(&builders).into_iter().map(Some).collect();
    let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.bootstrap().to_owned()).collect();
    create_or_panic(&addrs[slot(4)], "a", &[&[1, 2, 3]]);
    let mut leader = 0;
    nodes[0].as_mut().expect("node 1").wait_until("a partition leader", AGREE_TIMEOUT, |_| {
        leader = answering_leader(&addrs, &[1, 2, 3], "a")?;
        Ok(())
    });
    if leader == 1 {
        // Move leadership off the preferred replica: kill it, let another lead, restart it.
        let killed = nodes[slot(1)].take().expect("running").kill();
        nodes[slot(2)].as_mut().expect("node 2").wait_until("a new leader", AGREE_TIMEOUT, |_| {
            leader = answering_leader(&addrs, &[2, 3], "a")?;
            Ok(())
        });
        let mut restarted = builders[slot(1)].spawn_in(killed);
        restarted.wait_ready(AGREE_TIMEOUT);
        nodes[slot(1)] = Some(restarted);
    }
    nodes[slot(4)].as_mut().expect("node 4").wait_until(
        "node 4 to name the announced leader",
        AGREE_TIMEOUT,
        |node| {
            let (named, epoch, _) = leader_and_epoch(node.bootstrap(), "a")?;
            let (actual, actual_epoch, _) = leader_and_epoch(&addrs[slot(leader)], "a")?;
            let agreed = (named, epoch) == (actual, actual_epoch) && i64::from(actual) == leader;
            if agreed {
                Ok(())
            } else {
                Err(format!("{named}@{epoch}, leader {actual}@{actual_epoch}"))
            }
        },
    );
    for node in nodes.into_iter().flatten() {
        drop(node.stop());
    }
}
