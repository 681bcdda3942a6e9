//! cairn-bench against a real broker in this process (`cairn_testkit::TestNode`:
//! `cairn_kafka::serve` over TCP on a free loopback port, partition logs in a temporary
//! directory): tiny produce, consume and e2e runs, checking that every record is counted once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn_bench::cli::{Cli, Command};
use cairn_testkit::TestNode;
use clap::Parser;

/// Bound on each run: generous, these runs take well under a second.
const BOUND: Duration = Duration::from_secs(60);

/// A node taking 64 connections with 16 requests in flight each, as a load generator opens.
async fn start() -> TestNode {
    let node = TestNode::builder().server(|config| {
        config.connections_max = 64;
        config.inflight_requests_max = 16;
    });
    node.start().await
}

/// Runs `cairn-bench ARGS... --bootstrap <node> --quiet` within [`BOUND`].
async fn bench(node: &TestNode, args: &[&str]) -> cairn_bench::report::Report {
    let bootstrap = node.bootstrap();
    let mut argv = vec!["cairn-bench"];
    argv.extend_from_slice(args);
    if args[0] != "disk" {
        argv.extend_from_slice(&["--bootstrap", &bootstrap]);
    }
    argv.push("--quiet");
    let cli = Cli::try_parse_from(&argv).unwrap();
    let report = tokio::time::timeout(BOUND, cairn_bench::run(&cli.command))
        .await
        .unwrap_or_else(|_| panic!("{argv:?} did not finish within {BOUND:?}"))
        .unwrap_or_else(|error| panic!("{argv:?} failed: {error:#}"));
    assert_eq!(report.errors, 0, "{}", report.table());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_count_every_record_once() {
    let node = start().await;

    // Closed loop, 3 partitions created on the fly, 2 pipelined producers, random keys.
    let report = bench(
        &node,
        &[
            "produce",
            "--topic",
            "t",
            "--partitions",
            "3",
            "--producers",
            "2",
            "--records",
            "1000",
            "--max",
            "--keys",
            "random",
            "--record-bytes",
            "100",
            "--batch-bytes",
            "2048",
            "--inflight",
            "4",
        ],
    )
    .await;
    assert_eq!(report.records, 1000);
    assert_eq!(report.bytes, 1000 * 108, "8-byte keys and 100-byte values");
    assert_eq!(report.latencies["ack"].count, 1000, "one latency per record");
    assert_eq!(report.series.iter().map(|p| p.records).sum::<u64>(), 1000);

    // Open loop, compressed, sequential keys, acks=1.
    let report = bench(
        &node,
        &[
            "produce",
            "--topic",
            "t",
            "--records",
            "500",
            "--rate",
            "50000",
            "--keys",
            "sequential",
            "--compression",
            "lz4",
            "--acks",
            "1",
            "--record-bytes",
            "64",
        ],
    )
    .await;
    assert_eq!(report.records, 500);
    assert_eq!(report.latencies["ack"].count, 500);

    // acks=0: counted when written; a later consume sees them.
    let report =
        bench(&node, &["produce", "--topic", "t", "--records", "100", "--max", "--acks", "0"])
            .await;
    assert_eq!(report.records, 100);
    assert!(report.latencies.is_empty());

    // Everything, split over two consumers (acks=0 records may land a moment after their write:
    // the consumer reads up to the high watermarks at its start, so wait for them first).
    let report = tokio::time::timeout(BOUND, async {
        loop {
            let report = bench(&node, &["consume", "--topic", "t", "--consumers", "2"]).await;
            if report.records == 1600 {
                return report;
            }
            assert!(report.records < 1600, "{}", report.table());
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(report.bytes, 1000 * 108 + 500 * 72 + 100 * 1024);
    assert!(report.latencies["fetch"].count >= 1);

    // --records stops early (at least that many: whole fetches).
    let report = bench(&node, &["consume", "--topic", "t", "--records", "10"]).await;
    assert!((10..=1600).contains(&report.records), "{}", report.table());

    tokio::time::timeout(BOUND, node.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_receives_every_acknowledged_record_with_its_latency() {
    let node = start().await;
    let report = bench(
        &node,
        &[
            "e2e",
            "--topic",
            "e",
            "--partitions",
            "2",
            "--records",
            "1000",
            "--rate",
            "20000",
            "--record-bytes",
            "32",
        ],
    )
    .await;
    assert_eq!(report.records, 1000, "{}", report.table());
    assert_eq!(report.values["records_acked"], 1000.0);
    assert_eq!(report.latencies["e2e"].count, 1000);
    assert_eq!(report.latencies["ack"].count, 1000);
    assert!(report.latencies["e2e"].max_us < BOUND.as_micros() as u64);

    // The outputs of the last run.
    let json = node.dir().join("e2e.json");
    let svg = node.dir().join("e2e.svg");
    let output = cairn_bench::cli::Output {
        json: Some(json.clone()),
        plot: Some(svg.clone()),
        quiet: true,
        broker_pid: Vec::new(),
    };
    cairn_bench::write_outputs(&report, &output).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(value["command"], "e2e");
    assert_eq!(value["latencies"]["e2e"]["count"], 1000);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    tokio::time::timeout(BOUND, node.stop()).await.unwrap();
}

#[tokio::test]
async fn a_missing_broker_or_topic_is_a_clear_error() {
    let node = start().await;
    let cli = Cli::try_parse_from([
        "cairn-bench",
        "consume",
        "--topic",
        "nope",
        "--bootstrap",
        &node.bootstrap(),
    ])
    .unwrap();
    let error = cairn_bench::run(&cli.command).await.err().unwrap();
    assert_eq!(error.to_string(), "topic nope does not exist: produce to it first");
    let cli =
        Cli::try_parse_from(["cairn-bench", "produce", "--max", "--bootstrap", "127.0.0.1:1"])
            .unwrap();
    let Command::Produce(_) = &cli.command else { panic!() };
    let error = cairn_bench::run(&cli.command).await.err().unwrap();
    assert!(format!("{error:#}").contains("connection refused"), "{error:#}");
}
