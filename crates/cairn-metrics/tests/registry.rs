//! The registry through its public API: exact exposition text, escaping, declaration errors,
//! concurrent updates and the per-family cardinality bound.

use std::sync::Arc;
use std::thread;

use cairn_metrics::{
    Error, Histogram, LATENCY_BUCKETS_SECONDS, OVERFLOW_LABEL_VALUE, Registry,
    SERIES_PER_FAMILY_MAX,
};

/// Renders `registry` and compares with `expected`, printing both on a mismatch.
#[track_caller]
fn check(registry: &Registry, expected: &str) {
    let actual = registry.render();
    assert!(actual == expected, "rendered:\n{actual}\nexpected:\n{expected}");
}

#[test]
fn empty_registry_renders_nothing() {
    check(&Registry::new(), "");
}

#[test]
fn small_registry_renders_sorted_exposition() {
    let registry = Registry::new();
    let requests = registry
        .counter_family("cairn_requests_total", "Requests handled.", &["api", "version"])
        .unwrap();
    let latency = registry
        .histogram_family("cairn_request_seconds", "Request latency.", &["api"], &[0.01, 0.1, 1.0])
        .unwrap();
    let connections = registry.gauge("cairn_connections", "Open connections.").unwrap();
    let appended = registry.counter("cairn_appended_bytes_total", "Bytes appended.").unwrap();
    let empty = registry.gauge_family("cairn_lag", "Consumer lag.", &["group"]).unwrap();

    requests.with(&["produce", "9"]).add(3);
    requests.with(&["fetch", "12"]).inc();
    requests.with(&["produce", "10"]).inc();
    let produce = latency.with(&["produce"]);
    produce.observe(0.005);
    produce.observe(0.01); // bounds are inclusive
    produce.observe(0.5);
    produce.observe(7.0);
    connections.set(4);
    connections.dec();
    appended.add(1024);
    assert!(empty.is_empty());

    check(
        &registry,
        "\
# HELP cairn_appended_bytes_total Bytes appended.
# TYPE cairn_appended_bytes_total counter
cairn_appended_bytes_total 1024
# HELP cairn_connections Open connections.
# TYPE cairn_connections gauge
cairn_connections 3
# HELP cairn_lag Consumer lag.
# TYPE cairn_lag gauge
# HELP cairn_request_seconds Request latency.
# TYPE cairn_request_seconds histogram
cairn_request_seconds_bucket{api=\"produce\",le=\"0.01\"} 2
cairn_request_seconds_bucket{api=\"produce\",le=\"0.1\"} 2
cairn_request_seconds_bucket{api=\"produce\",le=\"1\"} 3
cairn_request_seconds_bucket{api=\"produce\",le=\"+Inf\"} 4
cairn_request_seconds_sum{api=\"produce\"} 7.515
cairn_request_seconds_count{api=\"produce\"} 4
# HELP cairn_requests_total Requests handled.
# TYPE cairn_requests_total counter
cairn_requests_total{api=\"fetch\",version=\"12\"} 1
cairn_requests_total{api=\"produce\",version=\"10\"} 1
cairn_requests_total{api=\"produce\",version=\"9\"} 3
",
    );
}

#[test]
fn unlabelled_histogram() {
    let registry = Registry::new();
    let histogram = registry.histogram("flush_seconds", "Fsync time.", &[0.5, 2.0]).unwrap();
    histogram.observe(0.25);
    histogram.observe(f64::NAN); // ignored
    histogram.observe(f64::INFINITY);
    check(
        &registry,
        "\
# HELP flush_seconds Fsync time.
# TYPE flush_seconds histogram
flush_seconds_bucket{le=\"0.5\"} 1
flush_seconds_bucket{le=\"2\"} 1
flush_seconds_bucket{le=\"+Inf\"} 2
flush_seconds_sum +Inf
flush_seconds_count 2
",
    );
}

#[test]
fn escaping_of_help_and_label_values() {
    let registry = Registry::new();
    let family = registry
        .counter_family("weird_total", "Back\\slash and\nnewline \"quoted\".", &["topic"])
        .unwrap();
    family.with(&["a\\b\"c\nd"]).inc();
    check(
        &registry,
        "\
# HELP weird_total Back\\\\slash and\\nnewline \"quoted\".
# TYPE weird_total counter
weird_total{topic=\"a\\\\b\\\"c\\nd\"} 1
",
    );
}

#[test]
fn latency_buckets_span_100us_to_10s() {
    let histogram = Histogram::latency();
    assert_eq!(histogram.bounds(), LATENCY_BUCKETS_SECONDS);
    assert_eq!(histogram.bounds().first(), Some(&0.0001));
    assert_eq!(histogram.bounds().last(), Some(&10.0));
    histogram.observe_duration(std::time::Duration::from_micros(100));
    histogram.observe_duration(std::time::Duration::from_secs(11));
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.cumulative.first(), Some(&1));
    assert_eq!(snapshot.cumulative[LATENCY_BUCKETS_SECONDS.len() - 1], 1);
    assert_eq!(snapshot.cumulative.last(), Some(&2));
    assert_eq!(snapshot.count, 2);
}

#[test]
fn declaration_errors() {
    let registry = Registry::new();
    registry.counter("taken_total", "").unwrap();
    registry.histogram("latency", "", &[1.0]).unwrap();

    let cases: Vec<(Result<(), Error>, Error)> = vec![
        (
            registry.counter("bad-name", "").map(drop),
            Error::InvalidMetricName { name: "bad-name".into() },
        ),
        (
            registry.gauge("taken_total", "").map(drop),
            Error::NameTaken { name: "taken_total".into() },
        ),
        // A histogram claims its sample names.
        (
            registry.counter("latency_count", "").map(drop),
            Error::NameTaken { name: "latency_count".into() },
        ),
        (registry.counter("latency", "").map(drop), Error::NameTaken { name: "latency".into() }),
        (
            registry.counter_family("f_total", "", &["a", "a"]).map(drop),
            Error::DuplicateLabelName { name: "a".into() },
        ),
        (
            registry.counter_family("g_total", "", &["__a"]).map(drop),
            Error::InvalidLabelName { name: "__a".into() },
        ),
        (
            registry.histogram_family("h", "", &["le"], &[1.0]).map(drop),
            Error::InvalidLabelName { name: "le".into() },
        ),
        (registry.counter_family("i_total", "", &[]).map(drop), Error::LabelCount { count: 0 }),
        (
            registry.histogram("j", "", &[1.0, 1.0]).map(drop),
            Error::InvalidBuckets { reason: "bounds are not strictly increasing" },
        ),
        (registry.histogram("k", "", &[]).map(drop), Error::InvalidBuckets { reason: "no bounds" }),
        (
            registry.histogram("l", "", &[1.0, f64::INFINITY]).map(drop),
            Error::InvalidBuckets { reason: "a bound is not finite (the +Inf bucket is implicit)" },
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, Err(expected));
    }
    // A histogram claims `_bucket`, `_sum` and `_count`, not every suffix.
    registry.histogram("taken", "", &[1.0]).unwrap();
}

#[test]
fn concurrent_updates_are_all_counted() {
    const THREADS: u64 = 8;
    const INCREMENTS: u64 = 10_000;
    let registry = Arc::new(Registry::new());
    let family = registry.counter_family("hits_total", "Hits.", &["thread_parity"]).unwrap();
    let latency = registry.histogram("work_seconds", "Work.", &[1.0]).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let family = Arc::clone(&family);
            let latency = Arc::clone(&latency);
            let registry = Arc::clone(&registry);
            thread::spawn(move || {
                let parity = (thread % 2).to_string();
                let counter = family.with(&[&parity]);
                for _ in 0..INCREMENTS {
                    counter.inc();
                    latency.observe(0.5);
                }
                // Scrapes while others write must not block or tear.
                assert!(registry.render().contains("hits_total{thread_parity="));
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let total = THREADS / 2 * INCREMENTS;
    assert_eq!(family.with(&["0"]).get(), total);
    assert_eq!(family.with(&["1"]).get(), total);
    let snapshot = latency.snapshot();
    assert_eq!(snapshot.count, THREADS * INCREMENTS);
    assert_eq!(snapshot.sum, 0.5 * (THREADS * INCREMENTS) as f64);
}

#[test]
fn cardinality_overflow_goes_to_one_series() {
    let registry = Registry::new();
    let family =
        registry.counter_family("by_client_total", "Per client.", &["client", "api"]).unwrap();
    for client in 0..SERIES_PER_FAMILY_MAX {
        family.with(&[&client.to_string(), "fetch"]).inc();
    }
    assert_eq!(family.len(), SERIES_PER_FAMILY_MAX);

    // Existing tuples keep their series; new ones share the overflow series.
    family.with(&["0", "fetch"]).inc();
    assert_eq!(family.with(&["0", "fetch"]).get(), 2);
    family.with(&["new-1", "fetch"]).inc();
    family.with(&["new-2", "produce"]).add(5);
    let overflow = family.with(&["new-3", "x"]);
    assert_eq!(overflow.get(), 6);
    assert!(Arc::ptr_eq(&overflow, &family.with(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE])));
    assert_eq!(family.len(), SERIES_PER_FAMILY_MAX + 1);

    let text = registry.render();
    assert!(text.contains("by_client_total{client=\"_overflow\",api=\"_overflow\"} 6\n"), "{text}");
    assert!(!text.contains("new-"));
    assert_eq!(text.lines().count(), 2 + SERIES_PER_FAMILY_MAX + 1);
}

#[test]
#[should_panic(expected = "was given values")]
fn wrong_label_count_panics() {
    let registry = Registry::new();
    let family = registry.counter_family("x_total", "", &["a", "b"]).unwrap();
    let _ = family.with(&["only-one"]);
}
