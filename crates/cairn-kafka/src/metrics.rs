//! The Kafka front door's metrics: per API (requests, latency, bytes, errors), per partition
//! (bytes and records produced and fetched) and connections.

use std::sync::Arc;

use cairn_metrics::{CounterFamily, Gauge, HistogramFamily, LATENCY_BUCKETS_SECONDS, Registry};

/// Every metric the Kafka layer records; registered once per node.
pub(crate) struct KafkaMetrics {
    pub requests: Arc<CounterFamily>,
    pub request_seconds: Arc<HistogramFamily>,
    pub request_bytes: Arc<CounterFamily>,
    pub response_bytes: Arc<CounterFamily>,
    /// Error codes answered, by API and code (partition-level and top-level).
    pub errors: Arc<CounterFamily>,
    pub connections: Arc<Gauge>,
    /// Connections closed for a protocol violation or limit, by reason.
    pub connections_rejected: Arc<CounterFamily>,
    /// Failed accepts, by reason (`descriptors`: out of file descriptors; `other`).
    pub accept_errors: Arc<CounterFamily>,
    pub produced_bytes: Arc<CounterFamily>,
    pub produced_records: Arc<CounterFamily>,
    pub fetched_bytes: Arc<CounterFamily>,
}

impl KafkaMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<KafkaMetrics, cairn_metrics::Error> {
        let api = &["api"];
        let partition = &["topic", "partition"];
        Ok(KafkaMetrics {
            requests: registry.counter_family(
                "cairn_kafka_requests_total",
                "Kafka requests served.",
                api,
            )?,
            request_seconds: registry.histogram_family(
                "cairn_kafka_request_duration_seconds",
                "Time from a request's decode to its response, in seconds.",
                api,
                LATENCY_BUCKETS_SECONDS,
            )?,
            request_bytes: registry.counter_family(
                "cairn_kafka_request_bytes_total",
                "Bytes of request frames.",
                api,
            )?,
            response_bytes: registry.counter_family(
                "cairn_kafka_response_bytes_total",
                "Bytes of response frames.",
                api,
            )?,
            errors: registry.counter_family(
                "cairn_kafka_errors_total",
                "Kafka error codes answered (per partition where the API has partitions).",
                &["api", "code"],
            )?,
            connections: registry.gauge("cairn_kafka_connections", "Open Kafka connections.")?,
            connections_rejected: registry.counter_family(
                "cairn_kafka_connections_closed_total",
                "Kafka connections closed by the broker, by reason.",
                &["reason"],
            )?,
            accept_errors: registry.counter_family(
                "cairn_kafka_accept_errors_total",
                "Failed accepts of the Kafka listener, by reason (descriptors: out of file descriptors).",
                &["reason"],
            )?,
            produced_bytes: registry.counter_family(
                "cairn_partition_produced_bytes_total",
                "Bytes appended by produce requests.",
                partition,
            )?,
            produced_records: registry.counter_family(
                "cairn_partition_produced_records_total",
                "Records appended by produce requests.",
                partition,
            )?,
            fetched_bytes: registry.counter_family(
                "cairn_partition_fetched_bytes_total",
                "Bytes returned to fetch requests.",
                partition,
            )?,
        })
    }

    /// Counts an error code answered by `api` (nothing for "no error").
    pub(crate) fn error(&self, api: &str, code: i16) {
        if code != 0 {
            self.errors.with(&[api, &code.to_string()]).inc();
        }
    }
}
