//! End-to-end tests of the client commands (`cairn topic|produce|consume|cluster`) against a real
//! `cairn serve` process on free loopback ports with a temporary data directory
//! (`cairn_testkit::ProcessNode`).
//!
//! Every test starts its own node, runs the CLI as processes, and stops the node with SIGTERM,
//! checking that it exits 0. Nothing sleeps to synchronise: start-up is awaited by polling
//! `/health/ready` (each wait also ends early if the process exits), and every process is
//! awaited with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use cairn_testkit::process::{COMMAND_TIMEOUT, wait_with_deadline};
use cairn_testkit::{ProcessNode, Run, clean_command, free_ports};
use serde_json::Value;
use tempfile::TempDir;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// Starts a node on a new temporary directory.
fn start() -> ProcessNode {
    ProcessNode::start(CAIRN)
}

/// Starts a node on the data directory in `dir` (left by an earlier node).
fn start_in(dir: TempDir) -> ProcessNode {
    ProcessNode::builder(CAIRN).start_in(dir)
}

/// Runs `cairn args...` with `stdin`, within the harness's command timeout.
fn run_cairn(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    cairn_testkit::run(CAIRN, args, env, stdin)
}

/// The JSON records `cairn consume --format json` printed.
fn json_records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn topic_names(node: &ProcessNode) -> BTreeSet<String> {
    node.ok(&["topic", "list"]).lines().map(str::to_owned).collect()
}

#[test]
fn topic_administration() {
    let node = start();
    let created = node.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=86400000",
    ]);
    assert_eq!(created, "created topic orders with 3 partitions\n");
    node.ok(&["topic", "create", "events"]);
    assert_eq!(topic_names(&node), BTreeSet::from(["events".to_owned(), "orders".to_owned()]));

    let describe = node.ok(&["topic", "describe", "orders"]);
    assert!(describe.contains("partitions: 3\n"), "{describe}");
    assert!(describe.contains("* retention.ms=86400000\n"), "{describe}");
    assert!(describe.contains("  cleanup.policy=delete\n"), "{describe}");
    let rows: Vec<&str> =
        describe.lines().skip_while(|l| !l.starts_with("partition ")).skip(1).take(3).collect();
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        // partition, leader, epoch, replicas, isr, offline, earliest, latest, error; a new
        // partition's group holds its membership and first blank entry (offsets 0 and 1).
        assert_eq!(cells[0], index.to_string(), "{describe}");
        assert_eq!(cells[1], "0", "{describe}");
        assert_eq!(&cells[3..], ["0", "0", "-", "0", "2", "-"], "{describe}");
    }

    // Offsets show up in describe.
    node.ok_with(&["produce", "orders", "--partition", "1"], b"a\nb\nc\n");
    let describe = node.ok(&["topic", "describe", "orders"]);
    let row = describe.lines().find(|l| l.starts_with("1 ")).expect("partition 1 row");
    assert_eq!(row.split_whitespace().nth(7), Some("5"), "3 records after 2: {describe}");

    let altered = node.ok(&[
        "topic",
        "alter",
        "orders",
        "--set",
        "retention.ms=3600000",
        "--set",
        "segment.ms=60000",
    ]);
    assert!(altered.contains("retention.ms=3600000"), "{altered}");
    let describe = node.ok(&["topic", "describe", "orders"]);
    assert!(describe.contains("* retention.ms=3600000\n"), "{describe}");
    assert!(describe.contains("* segment.ms=60000\n"), "{describe}");
    node.ok(&["topic", "alter", "orders", "--delete", "segment.ms"]);
    let describe = node.ok(&["topic", "describe", "orders"]);
    assert!(describe.contains("  segment.ms=604800000\n"), "{describe}");

    assert_eq!(
        node.ok(&["topic", "alter", "orders", "--partitions", "5"]),
        "topic orders now has 5 partitions\n"
    );
    assert!(node.ok(&["topic", "describe", "orders"]).contains("partitions: 5\n"));

    // Failures name the Kafka error and say what happened.
    let error = node.fails(&["topic", "create", "orders"], b"");
    assert!(error.contains("creating topic orders failed: TOPIC_ALREADY_EXISTS"), "{error}");
    let error = node.fails(&["topic", "alter", "orders", "--partitions", "2"], b"");
    assert!(error.contains("INVALID_PARTITIONS"), "{error}");
    let error = node.fails(&["topic", "alter", "orders", "--set", "retention.ms=soon"], b"");
    assert!(error.contains("INVALID_CONFIG"), "{error}");
    let error = node.fails(&["topic", "describe", "missing"], b"");
    assert_eq!(error, "error: topic missing does not exist\n");

    assert_eq!(node.ok(&["topic", "delete", "orders"]), "deleted topic orders\n");
    assert_eq!(topic_names(&node), BTreeSet::from(["events".to_owned()]));
    let error = node.fails(&["topic", "delete", "orders"], b"");
    assert!(error.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{error}");

    let info = node.ok(&["cluster", "info"]);
    assert!(info.starts_with("cluster id: "), "{info}");
    assert!(info.contains("controller: 0\n"), "{info}");
    assert!(info.contains(&format!("  0 {} (controller)\n", node.bootstrap())), "{info}");
    node.stop();
}

/// The lines of one produce run: keys `key-N`, JSON values with non-ASCII text.
fn keyed_lines(count: usize) -> String {
    (0..count).map(|i| format!("key-{i}\t{{\"n\":{i},\"text\":\"välue {i}\"}}\n")).collect()
}

/// The hex topic id that names `topic`'s partition directories (`topics/<id>-<partition>`).
fn topic_dir_id(node: &ProcessNode, topic: &str) -> String {
    let describe = node.ok(&["topic", "describe", topic]);
    let id = describe.lines().find_map(|line| line.strip_prefix("id: ")).expect("an id");
    id.replace('-', "")
}

#[test]
fn produce_and_consume_every_codec() {
    let node = start();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let input = keyed_lines(1000);
    for codec in codecs {
        let topic = format!("codec-{codec}");
        node.ok(&["topic", "create", &topic, "--partitions", "3"]);
        let header = format!("codec={codec}");
        let produced = node.ok_with(
            &[
                "produce",
                &topic,
                "--key-separator",
                "\\t",
                "--header",
                "source=cli",
                "--header",
                &header,
                "--compression",
                codec,
            ],
            input.as_bytes(),
        );
        assert!(produced.starts_with(&format!("produced 1000 records to {topic}\n")), "{produced}");

        let records = json_records(&node.ok(&["consume", &topic, "--format", "json"]));
        assert_eq!(records.len(), 1000, "{codec}");
        let mut by_partition: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
        let mut seen = BTreeMap::new();
        for record in &records {
            assert_eq!(record["topic"], topic.as_str());
            assert_eq!(
                record["headers"],
                serde_json::json!([{"key": "source", "value": "cli"}, {"key": "codec", "value": codec}])
            );
            assert!(record["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000));
            let key = record["key"].as_str().expect("key");
            let n: usize = key.strip_prefix("key-").and_then(|n| n.parse().ok()).expect("key-N");
            assert_eq!(record["value"], format!("{{\"n\":{n},\"text\":\"välue {n}\"}}").as_str());
            assert!(seen.insert(n, ()).is_none(), "{codec}: key-{n} twice");
            by_partition
                .entry(record["partition"].as_i64().expect("partition"))
                .or_default()
                .push(record);
        }
        // Keys spread over the partitions; each partition's offsets are dense from 2 (after its
        // group's membership and blank entries, control batches consumers skip) and hold its
        // records in the order they were produced.
        assert_eq!(by_partition.len(), 3, "{codec}");
        for records in by_partition.values() {
            let offsets: Vec<i64> =
                records.iter().map(|r| r["offset"].as_i64().expect("offset")).collect();
            assert_eq!(offsets, (2..records.len() as i64 + 2).collect::<Vec<_>>(), "{codec}");
            let order: Vec<usize> = records
                .iter()
                .map(|r| r["key"].as_str().and_then(|k| k[4..].parse().ok()).expect("key-N"))
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{codec}: {order:?}");
        }
        // The same keys go to the same partitions whatever the codec (the partitioner hashes keys).
        if codec == "none" {
            continue;
        }
        let plain = json_records(&node.ok(&["consume", "codec-none", "--format", "json"]));
        let placement = |records: &[Value]| -> BTreeMap<String, i64> {
            records
                .iter()
                .map(|r| {
                    (
                        r["key"].as_str().expect("key").to_owned(),
                        r["partition"].as_i64().expect("p"),
                    )
                })
                .collect()
        };
        assert_eq!(placement(&records), placement(&plain), "{codec}");
    }
    let ids: Vec<String> =
        codecs.iter().map(|codec| topic_dir_id(&node, &format!("codec-{codec}"))).collect();
    let (_dir, data_dir) = node.stop();

    // The batches on disk carry the codec asked for.
    for (codec, id) in codecs.iter().zip(&ids) {
        let dump = run_cairn(
            &["log", "dump", &data_dir.join("topics").join(format!("{id}-0")).to_string_lossy()],
            &[],
            b"",
        );
        assert!(dump.status.success(), "{dump:?}");
        let expected = match *codec {
            "none" => "None",
            "gzip" => "Gzip",
            "snappy" => "Snappy",
            "lz4" => "Lz4",
            _ => "Zstd",
        };
        // After the header: the group's membership and blank entries (control batches), then
        // the produced batches.
        let batches: Vec<&str> = dump.stdout.lines().skip(3).collect();
        assert!(!batches.is_empty(), "{codec}: {dump:?}");
        for batch in batches {
            assert_eq!(batch.split('\t').nth(6), Some(expected), "{codec}: {batch}");
        }
    }
}

#[test]
fn produce_options_and_consume_positions() {
    let node = start();
    node.ok(&["topic", "create", "lines", "--partitions", "2"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("input.txt");
    let lines: String = (0..10).map(|i| format!("line {i}\r\n")).collect();
    std::fs::write(&file, lines).expect("write input");

    // From a file, to one partition, acks=1: the offsets are reported.
    let produced = node.ok(&[
        "produce",
        "lines",
        "--partition",
        "1",
        "--acks",
        "1",
        "--file",
        &file.to_string_lossy(),
    ]);
    assert_eq!(
        produced,
        "produced 10 records to lines\n  partition 1: 10 records, offsets 2..=11\n"
    );
    // acks=1 answers before the records are durable, and consumers see only durable records:
    // wait for all ten rather than stopping at the high watermark of the moment.
    let text =
        node.ok(&["consume", "lines", "--partition", "1", "--follow", "--max-records", "10"]);
    let expected: String = (0..10).map(|i| format!("\tline {i}\n")).collect();
    assert_eq!(text, expected, "text format: empty key, tab, value; CRLF stripped");

    // Positions: an offset, the latest, a timestamp, a record limit.
    // (Offsets 0 and 1 are the partition group's membership and blank entries.)
    let tail = node.ok(&["consume", "lines", "--partition", "1", "--from", "9"]);
    assert_eq!(tail, "\tline 7\n\tline 8\n\tline 9\n");
    assert_eq!(node.ok(&["consume", "lines", "--from", "latest"]), "");
    assert_eq!(
        node.ok(&["consume", "lines", "--partition", "1", "--max-records", "2"]),
        "\tline 0\n\tline 1\n"
    );
    let records =
        json_records(&node.ok(&["consume", "lines", "--partition", "1", "--format", "json"]));
    let last_timestamp = records[9]["timestamp"].as_i64().expect("timestamp");
    let from_time = json_records(&node.ok(&[
        "consume",
        "lines",
        "--partition",
        "1",
        "--format",
        "json",
        "--from",
        &format!("@{last_timestamp}"),
    ]));
    // The first record at or after the time, then everything after it.
    let first = from_time.first().expect("a record at or after the timestamp");
    let first_offset = first["offset"].as_i64().expect("offset");
    assert!(first["timestamp"].as_i64().is_some_and(|t| t >= last_timestamp));
    let first_position = first_offset as usize - 2;
    for earlier in &records[..first_position] {
        assert!(earlier["timestamp"].as_i64().is_some_and(|t| t < last_timestamp));
    }
    assert_eq!(from_time[..], records[first_position..]);
    let future =
        node.ok(&["consume", "lines", "--from", &format!("@{}", last_timestamp + 3_600_000)]);
    assert_eq!(future, "");
    let error = node.fails(&["consume", "lines", "--partition", "1", "--from", "13"], b"");
    assert!(error.contains("offset 13 is out of range for lines-1"), "{error}");

    // Unkeyed records without --partition: round-robin by batch, all of them arrive.
    node.ok_with(&["produce", "lines"], b"x\ny\n");
    let all = json_records(&node.ok(&["consume", "lines", "--format", "json"]));
    let mut values: Vec<&str> = all.iter().filter_map(|r| r["value"].as_str()).collect();
    values.retain(|v| !v.starts_with("line "));
    values.sort_unstable();
    assert_eq!(values, ["x", "y"]);
    let in_partition_0 = all.iter().filter(|r| r["partition"] == 0).count();

    // acks=0: no confirmation; a following consumer sees the records arrive.
    let sent =
        node.ok_with(&["produce", "lines", "--partition", "0", "--acks", "0"], b"z1\nz2\nz3\n");
    assert_eq!(sent, "sent 3 records to lines (acks=0: not confirmed, offsets unknown)\n");
    let expected = (in_partition_0 + 3).to_string();
    let followed =
        node.ok(&["consume", "lines", "--partition", "0", "--follow", "--max-records", &expected]);
    assert!(followed.ends_with("\tz1\n\tz2\n\tz3\n"), "{followed}");

    // Keys with a multi-byte separator (the value keeps later ones); a line without it fails.
    node.ok_with(&["produce", "lines", "--partition", "0", "--key-separator", "::"], b"k1::v::1\n");
    // Partition 0's records start at offset 2, after its group's own entries.
    let after = (in_partition_0 + 3 + 2).to_string();
    let last = node.ok(&["consume", "lines", "--partition", "0", "--from", &after]);
    assert_eq!(last, "k1\tv::1\n");
    let error = node.fails(&["produce", "lines", "--key-separator", "::"], b"no separator\n");
    assert!(error.contains("line 1 has no key separator \"::\""), "{error}");
    node.stop();
}

#[test]
fn failures_are_clear() {
    let node = start();
    node.ok(&["topic", "create", "small", "--config", "max.message.bytes=1000"]);
    let line = format!("{}\n", "x".repeat(5000));
    let error = node.fails(&["produce", "small"], line.as_bytes());
    assert!(
        error.starts_with("error: producing to small-0 failed: MESSAGE_TOO_LARGE (code 10)"),
        "{error}"
    );

    let error = node.fails(&["produce", "missing"], b"x\n");
    assert_eq!(error, "error: topic missing does not exist\n");
    let error = node.fails(&["produce", "small", "--partition", "3"], b"x\n");
    assert!(error.contains("topic small has no partition 3 (it has 1)"), "{error}");
    let error = node.fails(&["consume", "small", "--partition", "3"], b"");
    assert!(error.contains("topic small has no partition 3"), "{error}");
    node.stop();

    // Nothing listens on the port any more.
    let bootstrap = format!("127.0.0.1:{}", free_ports(1)[0]);
    for args in [
        vec!["cluster", "info", "--bootstrap", &bootstrap],
        vec!["topic", "list", "--bootstrap", &bootstrap],
        vec!["consume", "any", "--bootstrap", &bootstrap],
    ] {
        let run = run_cairn(&args, &[], b"");
        assert_eq!(run.status.code(), Some(1), "{run:?}");
        assert_eq!(
            run.stderr,
            format!("error: cannot reach the broker at {bootstrap}: connection refused\n")
        );
    }
    // The environment names the broker too.
    let run = run_cairn(&["produce", "any"], &[("CAIRN_BOOTSTRAP", &bootstrap)], b"x\n");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains(&format!("cannot reach the broker at {bootstrap}")), "{run:?}");
}

#[test]
fn group_offsets_are_reset_described_listed_and_deleted() {
    let node = start();
    node.ok(&["topic", "create", "orders", "--partitions", "2"]);
    node.ok_with(&["produce", "orders", "--partition", "1"], b"a\nb\nc\nd\n");
    // Offsets 0 and 1 are the partition's control batches; the records are at 2..6.
    let plan =
        node.ok(&["group", "reset-offsets", "billing", "--topic", "orders", "--to-offset", "4"]);
    assert!(plan.contains("dry run: nothing changed"), "{plan}");
    let missing = node.fails(&["group", "describe", "billing"], b"");
    assert_eq!(missing, "error: group billing does not exist\n", "a dry run commits nothing");

    let done = node.ok(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-latest",
        "--execute",
    ]);
    assert!(done.ends_with("committed\n"), "{done}");
    node.ok(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--partitions",
        "1",
        "--shift-by",
        "-3",
        "--execute",
    ]);
    assert_eq!(node.ok(&["group", "list"]), "billing\tEmpty\t-\n");
    let describe = node.ok(&["group", "describe", "billing"]);
    assert!(describe.contains("state: Empty\n"), "{describe}");
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .skip_while(|l| !l.starts_with("topic "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // topic, partition, committed, log end, lag, member.
    assert_eq!(rows, [["orders", "0", "2", "2", "0", "-"], ["orders", "1", "3", "6", "3", "-"]]);

    let earlier = node.ok(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-datetime",
        "2000-01-01T00:00:00Z",
    ]);
    let planned: Vec<&str> = earlier
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().last().unwrap_or(""))
        .collect();
    assert_eq!(planned, ["2", "2"], "the first record at or after the time: {earlier}");
    // A usage error, before any connection: exit status 2.
    let args = ["group", "reset-offsets", "billing", "--topic", "orders", "--to-datetime", "soon"];
    let run = run_cairn(&args, &[], b"");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("is not an RFC 3339 time"), "{run:?}");

    assert_eq!(node.ok(&["group", "delete", "billing"]), "deleted group billing\n");
    assert_eq!(node.ok(&["group", "list"]), "");
    let error = node.fails(&["group", "delete", "billing"], b"");
    assert!(error.starts_with("error: group billing: GROUP_ID_NOT_FOUND"), "{error}");
}

/// The only partition directory under `data_dir/topics` (the tests create one topic with one
/// partition; how the directory is named is the broker's business).
fn only_partition_dir(data_dir: &std::path::Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(data_dir.join("topics"))
        .expect("list topics")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().expect("one partition directory")
}

/// Every file name in `dir` with its bytes; `.log` files only with `segments_only`.
fn snapshot(dir: &std::path::Path, segments_only: bool) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .map(|path| {
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let bytes = if segments_only && !name.ends_with(".log") {
                Vec::new()
            } else {
                std::fs::read(&path).expect("read")
            };
            (name, bytes)
        })
        .collect()
}

/// The regression: `cairn log verify` on a running node's partition cut the live end of the log
/// as a "torn tail". The tools now take the node's data directory lock and refuse.
#[test]
fn log_verify_on_a_running_node_destroys_no_acknowledged_data() {
    let node = start();
    node.ok(&["topic", "create", "acked"]);
    let lines: String = (0..2000).map(|i| format!("record {i}\n")).collect();
    node.ok_with(&["produce", "acked", "--acks", "all"], lines.as_bytes());
    let partition = only_partition_dir(node.data_dir());
    let partition_arg = partition.to_string_lossy().into_owned();
    // Segment bytes only: the node may still write its index or checkpoint on its own.
    let before = snapshot(&partition, true);
    for args in [
        vec!["log", "verify", &partition_arg],
        vec!["log", "verify", "--repair", &partition_arg],
        vec!["log", "dump", &partition_arg],
    ] {
        let run = run_cairn(&args, &[], b"");
        assert_eq!(run.status.code(), Some(1), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        let data_dir = node.data_dir().canonicalize().expect("data dir");
        assert!(
            run.stderr.contains(&format!("data directory {}", data_dir.display()))
                && run.stderr.contains("a running cairn node holds"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(snapshot(&partition, true), before, "no segment changed");
    let consumed = node.ok(&["consume", "acked"]);
    let expected: String = (0..2000).map(|i| format!("\trecord {i}\n")).collect();
    assert_eq!(consumed, expected, "every acknowledged record is still readable");
    let (dir, _) = node.stop();

    // Stopped, the partition verifies, and that changes nothing either.
    let before = snapshot(&partition, false);
    let verified = run_cairn(&["log", "verify", &partition_arg], &[], b"");
    assert!(verified.status.success(), "{verified:?}");
    // 2000 records after the group's membership and blank entries.
    assert!(verified.stdout.starts_with("ok: offsets 0..2002 in 1 segment, "), "{verified:?}");
    assert!(verified.stdout.contains("torn tail: none"), "{verified:?}");
    assert_eq!(snapshot(&partition, false), before);
    let node = start_in(dir);
    assert_eq!(node.ok(&["consume", "acked"]), expected);
    node.stop();
}

/// `verify` reports the torn tail a node would cut and cuts nothing; `--repair` reports, then cuts.
#[test]
fn log_verify_reports_a_torn_tail_and_cuts_it_only_with_repair() {
    let node = start();
    node.ok(&["topic", "create", "torn"]);
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    node.ok_with(&["produce", "torn"], lines.as_bytes());
    let (dir, data_dir) = node.stop();
    let partition = only_partition_dir(&data_dir);
    let partition_arg = partition.to_string_lossy().into_owned();
    let segment = partition.join("00000000000000000000-00000000000000000000.log");
    let intact = std::fs::read(&segment).expect("read segment");
    // A crash tore the next write: the first 100 bytes of a batch reached the disk.
    let mut torn = intact.clone();
    torn.extend_from_slice(&intact[..100]);
    std::fs::write(&segment, &torn).expect("append torn bytes");
    let before = snapshot(&partition, false);

    let verified = run_cairn(&["log", "verify", &partition_arg], &[], b"");
    assert!(verified.status.success(), "{verified:?}");
    let cut = format!("torn tail: 100 bytes at byte {} of {}", intact.len(), segment.display());
    assert!(verified.stdout.contains(&cut), "{verified:?}");
    assert!(verified.stdout.contains("nothing was changed"), "{verified:?}");
    let dumped = run_cairn(&["log", "dump", &partition_arg], &[], b"");
    assert!(dumped.status.success(), "{dumped:?}");
    assert!(dumped.stderr.contains("note: torn tail not shown: 100 bytes"), "{dumped:?}");
    assert_eq!(snapshot(&partition, false), before, "verify and dump wrote nothing");

    let repaired = run_cairn(&["log", "verify", "--repair", &partition_arg], &[], b"");
    assert!(repaired.status.success(), "{repaired:?}");
    let report = repaired.stdout.find(&cut).expect("the cut is reported");
    let done = repaired.stdout.find("repaired: cut 100 bytes; the log ends at offset 102");
    assert!(done.is_some_and(|done| done > report), "{repaired:?}");
    assert_eq!(std::fs::read(&segment).expect("read segment"), intact);
    let verified = run_cairn(&["log", "verify", &partition_arg], &[], b"");
    assert!(verified.stdout.contains("torn tail: none"), "{verified:?}");
    let node = start_in(dir);
    let expected: String = (0..100).map(|i| format!("\tline {i}\n")).collect();
    assert_eq!(node.ok(&["consume", "torn"]), expected);
    node.stop();
}

/// Every path below `dir`, recursively.
fn tree(dir: &std::path::Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            paths.extend(tree(&path));
        }
        paths.insert(path);
    }
    paths
}

/// The regression: `cairn log verify <data-dir>/topics` created a segment in `topics/`, said
/// "ok", and the node then failed to start. The tools refuse any directory without segments.
#[test]
fn log_tools_refuse_a_directory_that_is_not_a_partition() {
    let node = start();
    node.ok(&["topic", "create", "kept"]);
    node.ok_with(&["produce", "kept"], b"a\nb\n");
    let (dir, data_dir) = node.stop();
    let topics = data_dir.join("topics");
    let before = tree(&data_dir);
    for target in [topics.clone(), data_dir.clone(), data_dir.join("meta")] {
        let target = target.to_string_lossy().into_owned();
        for args in [
            vec!["log", "verify", &target],
            vec!["log", "verify", "--repair", &target],
            vec!["log", "dump", &target],
        ] {
            let run = run_cairn(&args, &[], b"");
            assert_eq!(run.status.code(), Some(1), "{args:?}: {run:?}");
            assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
            assert!(
                run.stderr.contains("is not a partition directory: it holds no segment files")
                    && run.stderr.contains("00000000000000000000-00000000000000000000.log"),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    let missing = data_dir.join("missing").to_string_lossy().into_owned();
    let run = run_cairn(&["log", "verify", &missing], &[], b"");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("is not a partition directory"), "{run:?}");
    assert_eq!(tree(&data_dir), before, "nothing was created");
    let node = start_in(dir);
    assert_eq!(node.ok(&["consume", "kept"]), "\ta\n\tb\n");
    node.stop();
}

/// Runs `cairn args...` with its standard output's reader closed after `read_bytes` bytes, and
/// checks it exits 0 without a panic message.
fn check_quiet_on_closed_output(args: &[&str], read_bytes: usize) {
    let mut child = clean_command(CAIRN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut head = vec![0; read_bytes];
    stdout.read_exact(&mut head).expect("the first bytes of the output");
    drop(stdout);
    let output = wait_with_deadline(child, COMMAND_TIMEOUT, &format!("cairn {args:?}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cairn {args:?}: {}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "cairn {args:?}: {stderr}");
}

/// The regression: `cairn log dump DIR | head` panicked on the broken pipe (exit 101); so did
/// every command printing with `println!`.
#[test]
fn commands_exit_quietly_when_their_output_is_closed() {
    // A partition with more batches than a pipe buffers, written offline.
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = dir.path().join("p");
    let config = cairn_storage::LogConfig {
        flush: cairn_storage::FlushPolicy::Manual,
        ..cairn_storage::LogConfig::default()
    };
    let clock = std::sync::Arc::new(cairn_storage::SystemClock);
    let mut log = cairn_storage::Log::open(cairn_storage::RealDisk, &partition, config, clock)
        .expect("open log");
    for i in 0..5000u32 {
        let value = i.to_string();
        let mut batch = cairn_types::batch::BatchBuilder::new(0)
            .record(None, Some(value.as_bytes()), &[])
            .build();
        log.append(&mut batch, cairn_types::LeaderEpoch(0)).expect("append");
    }
    log.close().expect("close log");
    let partition = partition.to_string_lossy().into_owned();
    check_quiet_on_closed_output(&["log", "dump", &partition, "--limit", "5000"], 100);

    let node = start();
    node.ok(&["topic", "create", "piped"]);
    node.ok_with(&["produce", "piped"], b"x\ny\n");
    let bootstrap = ["--bootstrap", node.bootstrap()];
    for args in [
        &["topic", "list"][..],
        &["topic", "describe", "piped"],
        &["cluster", "info"],
        &["consume", "piped"],
    ] {
        check_quiet_on_closed_output(&[args, &bootstrap[..]].concat(), 0);
    }
    // Commands that change something finish it, then find their output closed.
    check_quiet_on_closed_output(&[&["topic", "create", "other"][..], &bootstrap].concat(), 0);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "z\n").expect("write input");
    let input = input.to_string_lossy().into_owned();
    check_quiet_on_closed_output(
        &[&["produce", "other", "--file", &input][..], &bootstrap].concat(),
        0,
    );
    assert_eq!(node.ok(&["consume", "other"]), "\tz\n");
    assert_eq!(topic_names(&node), BTreeSet::from(["other".to_owned(), "piped".to_owned()]));
    node.stop();
}

/// The regression: logs written to a file or a pipe carried ANSI colour codes. Colour is for a
/// terminal only.
#[test]
fn serve_logs_through_a_pipe_carry_no_colour_codes() {
    let node =
        ProcessNode::builder(CAIRN).args(["--log-level", "debug"]).log_through_pipe().start();
    let (dir, _) = node.stop();
    let logs = std::fs::read(dir.path().join("cairn.log")).expect("what the node wrote");
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("INFO"), "the node logged: {text}");
    assert!(!logs.contains(&0x1b), "colour codes in piped logs: {text:?}");
}

#[test]
fn deleting_a_topic_with_the_longest_name_and_recreating_it_serves_no_old_records() {
    let node = start();
    let name = "n".repeat(249);
    node.ok(&["topic", "create", &name, "--partitions", "2"]);
    node.ok_with(&["produce", &name, "--partition", "0"], b"old-1\nold-2\nold-3\n");
    assert_eq!(node.ok(&["consume", &name]).lines().count(), 3);
    assert_eq!(node.ok(&["topic", "delete", &name]), format!("deleted topic {name}\n"));
    node.ok(&["topic", "create", &name, "--partitions", "2"]);
    assert_eq!(node.ok(&["consume", &name]), "", "a re-created topic starts empty");
    let (dir, _) = node.stop();
    let node = start_in(dir);
    assert_eq!(node.ok(&["consume", &name]), "", "and stays empty after a restart");
    node.stop();
}

/// Entries of `<data-dir>/topics` (0 if it cannot be listed).
fn topic_dirs(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("topics")).map_or(0, |entries| entries.count())
}

/// Kills the node while it deletes a topic of `partitions` partitions, once at most `left`
/// partition directories remain (observed by polling), restarts it, and checks the outcome:
/// the topic is whole or gone with all its data, and a re-created one is empty.
fn kill_during_deletion(partitions: usize, left: usize) {
    let node = start();
    let count = partitions.to_string();
    node.ok(&["topic", "create", "doomed", "--partitions", &count]);
    let lines: String = (0..2000).map(|i| format!("key-{i}\tvalue-{i}\n")).collect();
    node.ok_with(&["produce", "doomed", "--key-separator", "\t"], lines.as_bytes());
    assert_eq!(topic_dirs(node.data_dir()), partitions);
    let mut delete = clean_command(CAIRN)
        .args(["topic", "delete", "doomed", "--bootstrap", node.bootstrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn delete");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while topic_dirs(node.data_dir()) > left && Instant::now() < deadline {
        if delete.try_wait().expect("poll delete").is_some() && topic_dirs(node.data_dir()) == 0 {
            break;
        }
        std::thread::yield_now();
    }
    let dir = node.kill();
    let _ = delete.kill();
    let _ = delete.wait();

    let node = start_in(dir);
    let remaining = topic_dirs(node.data_dir());
    if topic_names(&node).contains("doomed") {
        assert_eq!(remaining, partitions, "the topic is whole");
        assert_eq!(node.ok(&["consume", "doomed"]).lines().count(), 2000, "with all its data");
    } else {
        assert_eq!(remaining, 0, "the topic is gone with all its data");
        node.ok(&["topic", "create", "doomed", "--partitions", &count]);
        assert_eq!(node.ok(&["consume", "doomed"]), "", "a re-created topic sees no old data");
    }
    assert!(!node.data_dir().join("unrecognised").exists(), "nothing unknown was left");
    node.stop();
}

#[test]
fn a_kill_during_topic_deletion_never_brings_back_old_data() {
    let partitions = 200;
    for left in [partitions, partitions - 1, partitions / 2, 0] {
        kill_during_deletion(partitions, left);
    }
}

#[test]
fn a_corrupt_partition_does_not_stop_the_node_and_readiness_names_it() {
    let node = start();
    node.ok(&["topic", "create", "mixed", "--partitions", "2"]);
    for _ in 0..2 {
        for partition in ["0", "1"] {
            node.ok_with(&["produce", "mixed", "--partition", partition], b"a\nb\n");
        }
    }
    let (dir, data_dir) = node.stop();
    let segment = corrupt_partition(&data_dir, 1);

    let node = start_in(dir);
    let (status, body) = node.admin_get("/health/ready");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.starts_with("not ready, degraded\noffline partitions: 1\nmixed-1: "), "{body}");
    let (_, metrics) = node.admin_get("/metrics");
    assert!(metrics.contains("\ncairn_partitions_offline 1\n"), "{metrics}");
    // The Raft timers, for tools that state times in election timeouts.
    assert!(metrics.contains("\ncairn_raft_election_timeout_min_ms 1500\n"), "{metrics}");
    assert!(metrics.contains("\ncairn_raft_election_timeout_max_ms 3000\n"), "{metrics}");
    let error = node.fails(&["produce", "mixed", "--partition", "1"], b"c\n");
    assert!(error.contains("KAFKA_STORAGE_ERROR"), "{error}");
    node.ok_with(&["produce", "mixed", "--partition", "0"], b"c\n");
    assert_eq!(node.ok(&["consume", "mixed", "--partition", "0"]).lines().count(), 5);
    let log = std::fs::read_to_string(node.log()).expect("log");
    assert_eq!(log.matches("partition log cannot be opened").count(), 1, "logged once");
    assert!(log.contains("partitions opened"), "one summary line");
    let (dir, data_dir) = node.stop();
    assert!(segment.metadata().is_ok_and(|meta| meta.len() > 0), "nothing was cut");
    drop((dir, data_dir));
}

/// Flips a byte inside the first batch of partition `index`'s log under `data_dir`, and removes
/// its checkpoint so the next start walks (and refuses) it. Returns the damaged segment.
fn corrupt_partition(data_dir: &Path, index: u32) -> PathBuf {
    let suffix = format!("-{index}");
    let partition = std::fs::read_dir(data_dir.join("topics"))
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.to_string_lossy().ends_with(&suffix))
        .expect("the partition's directory");
    let segment = partition.join("00000000000000000000-00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[70] ^= 0xff; // Inside the first batch's records: its CRC fails.
    std::fs::write(&segment, bytes).expect("corrupt");
    std::fs::remove_file(partition.join("recovery-point")).expect("walk everything at start");
    segment
}

/// Issue 9: ListOffsets on an offline partition answered offsets of 0 (as if empty), and every
/// produce or fetch to it logged a warning, although it was logged once when it went offline.
#[test]
fn an_offline_partition_answers_list_offsets_with_a_storage_error_and_does_not_flood_the_log() {
    let node = start();
    node.ok(&["topic", "create", "mixed", "--partitions", "2"]);
    // Two batches each: a damaged first batch followed by a valid one is corruption, not a torn
    // tail that a start would cut.
    for partition in ["0", "1", "0", "1"] {
        node.ok_with(&["produce", "mixed", "--partition", partition], b"a\nb\n");
    }
    let (dir, data_dir) = node.stop();
    corrupt_partition(&data_dir, 1);

    let node = start_in(dir);
    let described = node.ok(&["topic", "describe", "mixed"]);
    let rows: Vec<Vec<&str>> =
        described.lines().map(|line| line.split_whitespace().collect()).collect();
    let row = |p: &str| rows.iter().find(|row| row.first() == Some(&p)).expect("partition row");
    // 4 records after the group's membership and blank entries, and the blank of the term
    // the restart began.
    assert_eq!(row("0")[3..8], ["0", "0", "-", "0", "7"], "partition 0 is served\n{described}");
    // Partition 1's only replica is offline: out of the ISR, listed offline.
    assert_eq!(row("1")[3..9], ["0", "-", "0", "-", "-", "KAFKA_STORAGE_ERROR"], "{described}");
    let error = node.fails(&["consume", "mixed", "--partition", "1", "--from", "latest"], b"");
    assert!(error.contains("KAFKA_STORAGE_ERROR"), "{error}");
    for _ in 0..5 {
        let error = node.fails(&["produce", "mixed", "--partition", "1"], b"c\n");
        assert!(error.contains("KAFKA_STORAGE_ERROR"), "{error}");
        let error = node.fails(&["consume", "mixed", "--partition", "1", "--from", "0"], b"");
        assert!(error.contains("KAFKA_STORAGE_ERROR"), "{error}");
    }
    let log = std::fs::read_to_string(node.log()).expect("log");
    assert_eq!(log.matches("partition log cannot be opened").count(), 1, "logged once");
    assert_eq!(log.matches("produce failed").count(), 0, "not once per request\n{log}");
    assert_eq!(log.matches("fetch failed").count(), 0, "not once per request\n{log}");
    drop(node.stop());
}

#[test]
fn startup_never_deletes_what_it_does_not_recognise() {
    let node = start();
    node.ok(&["topic", "create", "kept"]);
    let (dir, data_dir) = node.stop();
    let topics = data_dir.join("topics");
    for index in 0..300 {
        std::fs::write(topics.join(format!("stray-{index}")), b"someone's").expect("write");
    }
    let node = start_in(dir);
    assert_eq!(topic_dirs(&data_dir), 1, "only the topic's partition stays in topics/");
    let aside = std::fs::read_dir(data_dir.join("unrecognised"))
        .expect("moved aside")
        .map(|entry| entry.expect("entry").path())
        .collect::<Vec<_>>();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read_dir(&aside[0]).expect("list").count(), 300, "nothing deleted");
    assert_eq!(std::fs::read(aside[0].join("stray-7")).expect("kept"), b"someone's");
    let log = std::fs::read_to_string(node.log()).expect("log");
    assert_eq!(log.matches("aside").count(), 1, "one log line: {log}");
    node.stop();
}

/// Issue 9, deliverable 6: a restart after a crash logged nothing about recovery. Now each
/// partition that needed recovery says what it verified and cut, and one line sums up the start.
#[test]
fn a_restart_after_a_crash_logs_what_recovery_found_and_cut() {
    const TORN_BYTES: usize = 100;
    let node = start();
    node.ok(&["topic", "create", "crashed"]);
    node.ok_with(&["produce", "crashed"], b"a\nb\nc\n");
    let data_dir = node.data_dir().to_path_buf();
    let dir = node.kill();
    let segment =
        only_partition_dir(&data_dir).join("00000000000000000000-00000000000000000000.log");
    let mut segment_file =
        std::fs::OpenOptions::new().append(true).open(&segment).expect("open segment");
    segment_file.write_all(&[0xab; TORN_BYTES]).expect("a torn write after the last batch");
    drop(segment_file);

    let node = start_in(dir);
    assert_eq!(node.ok(&["consume", "crashed"]), "\ta\n\tb\n\tc\n", "every record, keyless");
    let log = std::fs::read_to_string(node.log()).expect("log");
    let recovered: Vec<&str> =
        log.lines().filter(|line| line.contains("recovered partition log")).collect();
    assert_eq!(recovered.len(), 1, "{log}");
    assert!(recovered[0].contains("topic=\"crashed\" partition=0"), "{}", recovered[0]);
    assert!(recovered[0].contains(&format!("cut_bytes={TORN_BYTES}")), "{}", recovered[0]);
    let summary = log.lines().rfind(|line| line.contains("partitions opened")).expect("summary");
    assert!(summary.contains("recovered=1"), "{summary}");
    assert!(summary.contains(&format!("cut_bytes={TORN_BYTES}")), "{summary}");
}
