//! Configuration resolution: precedence (flags > environment > file > defaults) for every field,
//! file and environment errors, validation messages, and the `cairn serve` flag docs.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use cairn_node::config::{
    AdvertisedAddress, ETCD_LISTEN_DEFAULT, NodeConfig, ServeArgs, env_var, resolve_with,
};
use cairn_types::NodeId;
use clap::{CommandFactory, Parser};

/// Stands in for `cairn serve`, whose flags are [`ServeArgs`].
#[derive(Parser, Debug)]
#[command(name = "serve")]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

/// One resolution: command-line flags, environment variables and an optional TOML file.
#[derive(Default)]
struct Case<'a> {
    flags: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    file: Option<&'a str>,
}

impl Case<'_> {
    fn resolve(&self) -> anyhow::Result<NodeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["serve".to_owned()];
        argv.extend(self.flags.iter().map(|flag| (*flag).to_owned()));
        if let Some(text) = self.file {
            let path = dir.path().join("cairn.toml");
            std::fs::write(&path, text).unwrap();
            argv.extend(["--config".to_owned(), path.display().to_string()]);
        }
        let args = Serve::try_parse_from(argv).unwrap().args;
        let env: HashMap<String, String> = self
            .env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        resolve_with(args, |name| env.get(name).cloned())
    }

    #[track_caller]
    fn ok(&self) -> NodeConfig {
        self.resolve().unwrap_or_else(|error| panic!("unexpected error: {error:#}"))
    }

    /// Resolution fails with a message containing every fragment of `expected`.
    #[track_caller]
    fn err(&self, expected: &[&str]) {
        let message = match self.resolve() {
            Ok(config) => panic!("expected an error, resolved {config:?}"),
            Err(error) => format!("{error:#}"),
        };
        for fragment in expected {
            assert!(message.contains(fragment), "{message:?} does not contain {fragment:?}");
        }
    }
}

#[test]
fn defaults() {
    let config = Case::default().ok();
    assert_eq!(config, NodeConfig::default());
    assert_eq!(config.node_id, NodeId(0));
    assert_eq!(config.data_dir, PathBuf::from("./cairn-data"));
    assert_eq!(config.kafka_listen, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(config.admin_listen, "127.0.0.1:9644".parse().unwrap());
    assert_eq!(config.advertise, None);
    assert!(config.auto_create_topics);
    assert_eq!(config.default_partitions, 1);
    assert_eq!(config.log_level, "info,openraft=error");
    assert_eq!(config.connections_max, 1024);
    assert_eq!(config.inflight_requests_max, 16);
}

#[test]
fn precedence_table() {
    /// One layer's value of `default_partitions`, `None` when the layer does not set it.
    type Layer = Option<&'static str>;
    // (flag, environment, file) → resolved default_partitions.
    let table: &[(Layer, Layer, Layer, u32)] = &[
        (None, None, None, 1),
        (None, None, Some("3"), 3),
        (None, Some("4"), None, 4),
        (None, Some("4"), Some("3"), 4),
        (Some("5"), None, None, 5),
        (Some("5"), None, Some("3"), 5),
        (Some("5"), Some("4"), None, 5),
        (Some("5"), Some("4"), Some("3"), 5),
        // An empty variable counts as unset.
        (None, Some(""), Some("3"), 3),
    ];
    for &(flag, env, file, expected) in table {
        let flags: Vec<&str> =
            flag.map(|value| vec!["--default-partitions", value]).unwrap_or_default();
        let env: Vec<(&str, &str)> =
            env.map(|value| vec![("CAIRN_DEFAULT_PARTITIONS", value)]).unwrap_or_default();
        let file = file.map(|value| format!("default_partitions = {value}\n"));
        let case = Case { flags: &flags, env: &env, file: file.as_deref() };
        assert_eq!(
            case.ok().default_partitions,
            expected,
            "flag {flag:?}, env {env:?}, file {file:?}"
        );
    }
}

/// The same configuration, with every field set to a non-default value.
fn everything_changed() -> NodeConfig {
    NodeConfig {
        node_id: NodeId(7),
        data_dir: PathBuf::from("/var/lib/cairn"),
        kafka_listen: "0.0.0.0:19092".parse().unwrap(),
        admin_listen: "[::1]:19644".parse().unwrap(),
        etcd_listen: Some("0.0.0.0:12379".parse().unwrap()),
        etcd_quota_backend_bytes: 1 << 20,
        advertise: Some(AdvertisedAddress { host: "broker-7.example.com".into(), port: 19092 }),
        auto_create_topics: false,
        default_partitions: 12,
        offsets_topic_partitions: 8,
        group_initial_rebalance_delay_ms: 0,
        group_consumer_session_timeout_ms: 6_000,
        group_consumer_heartbeat_interval_ms: 500,
        log_cleaner_backoff_ms: 250,
        log_cleaner_io_bytes_per_sec: 2 << 20,
        log_level: "info,cairn_kafka=debug".into(),
        connections_max: 100,
        inflight_requests_max: 4,
        request_timeout_ms: 5_000,
        connections_max_idle_ms: 60_000,
        shutdown_timeout_ms: 1_000,
        page_cache_window_bytes: 0,
        peer_listen: Some("0.0.0.0:19093".parse().unwrap()),
        peers: Some(PEERS.parse().unwrap()),
        rack: Some("eu-west-1a".into()),
        cluster_id: Some(CLUSTER_ID.parse().unwrap()),
    }
}

/// The `cluster_id` of [`everything_changed`].
const CLUSTER_ID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

/// The `peers` of [`everything_changed`]: node 7 at its peer listener's port.
const PEERS: &str = "7=broker-7.example.com:19093,8=broker-8.example.com:19093";

/// (field, value as text) for [`everything_changed`]: the flag, variable and file key all derive
/// from the field name.
const EVERYTHING: &[(&str, &str)] = &[
    ("node_id", "7"),
    ("data_dir", "/var/lib/cairn"),
    ("kafka_listen", "0.0.0.0:19092"),
    ("admin_listen", "[::1]:19644"),
    ("etcd_listen", "0.0.0.0:12379"),
    ("etcd_quota_backend_bytes", "1048576"),
    ("advertise", "broker-7.example.com:19092"),
    ("auto_create_topics", "false"),
    ("default_partitions", "12"),
    ("offsets_topic_partitions", "8"),
    ("group_initial_rebalance_delay_ms", "0"),
    ("group_consumer_session_timeout_ms", "6000"),
    ("group_consumer_heartbeat_interval_ms", "500"),
    ("log_cleaner_backoff_ms", "250"),
    ("log_cleaner_io_bytes_per_sec", "2097152"),
    ("log_level", "info,cairn_kafka=debug"),
    ("connections_max", "100"),
    ("inflight_requests_max", "4"),
    ("request_timeout_ms", "5000"),
    ("connections_max_idle_ms", "60000"),
    ("shutdown_timeout_ms", "1000"),
    ("page_cache_window_bytes", "0"),
    ("peer_listen", "0.0.0.0:19093"),
    ("peers", PEERS),
    ("rack", "eu-west-1a"),
    ("cluster_id", CLUSTER_ID),
];

fn is_toml_number_or_bool(field: &str) -> bool {
    !matches!(
        field,
        "data_dir"
            | "kafka_listen"
            | "admin_listen"
            | "etcd_listen"
            | "advertise"
            | "log_level"
            | "peer_listen"
            | "peers"
            | "rack"
            | "cluster_id"
    )
}

#[test]
fn every_field_from_flags() {
    let flags: Vec<String> = EVERYTHING
        .iter()
        .flat_map(|(field, value)| [format!("--{}", field.replace('_', "-")), (*value).to_owned()])
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_eq!(Case { flags: &flags, ..Case::default() }.ok(), everything_changed());
}

#[test]
fn every_field_from_env() {
    let names: Vec<String> = EVERYTHING.iter().map(|(field, _)| env_var(field)).collect();
    assert_eq!(names[2], "CAIRN_KAFKA_LISTEN");
    let env: Vec<(&str, &str)> =
        names.iter().zip(EVERYTHING).map(|(name, (_, value))| (name.as_str(), *value)).collect();
    assert_eq!(Case { env: &env, ..Case::default() }.ok(), everything_changed());
}

#[test]
fn every_field_from_file() {
    let file: String = EVERYTHING
        .iter()
        .map(|(field, value)| {
            if is_toml_number_or_bool(field) {
                format!("{field} = {value}\n")
            } else {
                format!("{field} = \"{value}\"\n")
            }
        })
        .collect();
    assert_eq!(Case { file: Some(&file), ..Case::default() }.ok(), everything_changed());
}

#[test]
fn layers_mix_per_field() {
    let config = Case {
        flags: &["--node-id", "3"],
        env: &[("CAIRN_DATA_DIR", "/env/data"), ("CAIRN_NODE_ID", "4")],
        file: Some("node_id = 5\ndata_dir = \"/file/data\"\nlog_level = \"debug\"\n"),
    }
    .ok();
    assert_eq!(config.node_id, NodeId(3));
    assert_eq!(config.data_dir, PathBuf::from("/env/data"));
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.kafka_listen, NodeConfig::default().kafka_listen);
}

#[test]
fn config_file_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "default_partitions = 9\n").unwrap();
    let path = path.display().to_string();
    let config = Case { env: &[("CAIRN_CONFIG", &path)], ..Case::default() }.ok();
    assert_eq!(config.default_partitions, 9);
}

#[test]
fn file_errors_name_the_problem() {
    Case { file: Some("data-dir = \"/x\"\n"), ..Case::default() }
        .err(&["unknown field", "data-dir"]);
    Case { file: Some("config = \"other.toml\"\n"), ..Case::default() }
        .err(&["unknown field", "config"]);
    Case { file: Some("default_partitions = \"three\"\n"), ..Case::default() }.err(&[
        "cairn.toml",
        "default_partitions",
        "line 1",
    ]);
    Case { file: Some("default_partitions = -1\n"), ..Case::default() }
        .err(&["default_partitions"]);
    Case { file: Some("kafka_listen = \"localhost\"\n"), ..Case::default() }.err(&["kafka_listen"]);
    Case { file: Some("advertise = \"0.0.0.0:9092\"\n"), ..Case::default() }
        .err(&["advertise", "wildcard"]);
    Case { file: Some("node_id = 1\nnode_id = 2\n"), ..Case::default() }.err(&["line 2"]);
    Case { file: Some("[broker]\nnode_id = 1\n"), ..Case::default() }
        .err(&["unknown field", "broker"]);

    Case { flags: &["--config", "/nonexistent/cairn.toml"], ..Case::default() }
        .err(&["reading config file /nonexistent/cairn.toml"]);
}

#[test]
fn env_errors_name_the_variable() {
    Case { env: &[("CAIRN_DEFAULT_PARTITIONS", "three")], ..Case::default() }
        .err(&["CAIRN_DEFAULT_PARTITIONS=\"three\"", "invalid digit"]);
    Case { env: &[("CAIRN_KAFKA_LISTEN", "localhost:9092")], ..Case::default() }
        .err(&["CAIRN_KAFKA_LISTEN=\"localhost:9092\""]);
    Case { env: &[("CAIRN_AUTO_CREATE_TOPICS", "yes")], ..Case::default() }
        .err(&["CAIRN_AUTO_CREATE_TOPICS"]);
    // A flag overrides a broken variable, which is then never parsed.
    let config = Case {
        flags: &["--default-partitions", "2"],
        env: &[("CAIRN_DEFAULT_PARTITIONS", "three")],
        ..Case::default()
    }
    .ok();
    assert_eq!(config.default_partitions, 2);
}

#[test]
fn validation_names_the_field_and_its_source() {
    Case { flags: &["--default-partitions", "0"], ..Case::default() }.err(&[
        "invalid default_partitions: 0 is outside 1..=10000",
        "(set by --default-partitions)",
    ]);
    Case { env: &[("CAIRN_CONNECTIONS_MAX", "0")], ..Case::default() }
        .err(&["invalid connections_max", "(set by CAIRN_CONNECTIONS_MAX)"]);
    Case { file: Some("inflight_requests_max = 0\n"), ..Case::default() }.err(&[
        "invalid inflight_requests_max",
        "(set by config file",
        "cairn.toml)",
    ]);
    Case { flags: &["--node-id", "2147483648"], ..Case::default() }.err(&["invalid node_id"]);
    Case { flags: &["--request-timeout-ms", "0"], ..Case::default() }.err(&["request_timeout_ms"]);
    Case { flags: &["--log-level", "info debug"], ..Case::default() }.err(&["log_level"]);
    Case { flags: &["--admin-listen", "127.0.0.1:9092"], ..Case::default() }
        .err(&["admin_listen", "clashes with kafka_listen"]);
    Case {
        flags: &["--admin-listen", "0.0.0.0:9092", "--kafka-listen", "127.0.0.1:9092"],
        ..Case::default()
    }
    .err(&["clashes"]);
}

/// `--peers` and `--peer-listen`: the static core of a cluster, checked before anything starts.
#[test]
fn peers_validation() {
    let three = "1=127.0.0.1:19001,2=127.0.0.1:19002,3=127.0.0.1:19003";
    let node = |id: &'static str, listen: &'static str| -> Vec<&'static str> {
        vec!["--node-id", id, "--peer-listen", listen]
    };
    let with = |flags: Vec<&'static str>, peers: &'static str| {
        let mut flags = flags;
        flags.extend(["--peers", peers]);
        flags
    };
    let config = Case { flags: &with(node("2", "127.0.0.1:19002"), three), ..Case::default() }.ok();
    let peers = config.peers.unwrap();
    assert_eq!(peers.0.len(), 3);
    assert_eq!(peers.to_string(), three);
    assert_eq!(peers.addresses()[&3], "127.0.0.1:19003");
    // A wildcard listener on the named port is this node's address.
    Case { flags: &with(node("1", "0.0.0.0:19001"), three), ..Case::default() }.ok();
    // Spaces around entries are allowed; the environment and the file say the same.
    Case {
        flags: &node("3", "127.0.0.1:19003"),
        env: &[("CAIRN_PEERS", " 1=127.0.0.1:19001, 3=127.0.0.1:19003 ")],
        ..Case::default()
    }
    .ok();

    let bad = |flags: Vec<&'static str>, expected: &[&str]| {
        Case { flags: &flags, ..Case::default() }.err(expected);
    };
    bad(with(node("4", "127.0.0.1:19004"), three), &["invalid peers", "does not name this node"]);
    bad(with(node("1", "127.0.0.1:19009"), three), &["invalid peer_listen", "1=127.0.0.1:19001"]);
    bad(
        with(node("1", "127.0.0.1:19001"), "1=127.0.0.1:19001,2147483648=h:2"),
        &["invalid peers", "node id 2147483648"],
    );
    bad(with(node("1", "127.0.0.2:19001"), three), &["invalid peer_listen"]);
    bad(node("1", "127.0.0.1:19001"), &["invalid peers", "required with peer_listen"]);
    bad(vec!["--node-id", "1", "--peers", three], &["invalid peer_listen", "required with peers"]);
    bad(
        with(node("1", "127.0.0.1:9092"), "1=127.0.0.1:9092"),
        &["invalid peer_listen", "clashes with kafka_listen"],
    );
    // A list that does not parse: through the variable, whose errors the resolution reports
    // (a flag's are clap's, the same text).
    let unparsable = |peers: &'static str, expected: &[&str]| {
        let env = [("CAIRN_PEERS", peers)];
        Case { flags: &node("1", "127.0.0.1:19001"), env: &env, ..Case::default() }.err(expected);
        let error = Serve::try_parse_from(with(vec!["serve"], peers)).unwrap_err().to_string();
        assert!(error.contains(expected[0]), "{error}");
    };
    unparsable("1=127.0.0.1:19001,1=127.0.0.1:19002", &["node id 1 is named twice"]);
    unparsable("1=127.0.0.1:19001,2=127.0.0.1:19001", &["127.0.0.1:19001 is named twice"]);
    unparsable("1=127.0.0.1:19001,x=127.0.0.1:19002", &["not a number"]);
    unparsable("1=127.0.0.1:19001,2", &["ID=HOST:PORT"]);
    unparsable("1=127.0.0.1:19001,2=0.0.0.0:19002", &["wildcard"]);
    unparsable("1=127.0.0.1:0", &["port"]);
    unparsable("1=h:1,2=h:2,3=h:3,4=h:4,5=h:5,6=h:6", &["6 nodes, at most 5 may be core voters"]);
    Case { flags: &["--rack", ""], ..Case::default() }.err(&["invalid rack"]);
}

/// `--cluster-id`: a UUID given to every node of a cluster, only with `--peers`.
#[test]
fn cluster_id_validation() {
    let peers =
        ["--node-id", "1", "--peer-listen", "127.0.0.1:19001", "--peers", "1=127.0.0.1:19001"];
    let given = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let mut flags = peers.to_vec();
    flags.extend(["--cluster-id", given]);
    let config = Case { flags: &flags, ..Case::default() }.ok();
    assert_eq!(config.cluster_id.unwrap().0, *uuid::Uuid::parse_str(given).unwrap().as_bytes());
    let simple = "6ba7b8109dad11d180b400c04fd430c8";
    let file = format!("cluster_id = \"{simple}\"");
    let config = Case { flags: &peers, file: Some(&file), ..Case::default() }.ok();
    assert_eq!(config.cluster_id.unwrap().0, *uuid::Uuid::parse_str(given).unwrap().as_bytes());
    assert_eq!(Case { flags: &peers, ..Case::default() }.ok().cluster_id, None);

    Case { env: &[("CAIRN_CLUSTER_ID", given)], ..Case::default() }.err(&[
        "invalid cluster_id",
        "only with peers",
        "CAIRN_CLUSTER_ID",
    ]);
    let env = [("CAIRN_CLUSTER_ID", "cluster-1")];
    Case { flags: &peers, env: &env, ..Case::default() }.err(&["\"cluster-1\" is not a UUID"]);
    let nil = [("CAIRN_CLUSTER_ID", "00000000-0000-0000-0000-000000000000")];
    Case { flags: &peers, env: &nil, ..Case::default() }.err(&["nil UUID"]);
}

#[test]
fn wildcard_listener_needs_advertise() {
    Case { flags: &["--kafka-listen", "0.0.0.0:9092"], ..Case::default() }.err(&[
        "kafka_listen",
        "0.0.0.0:9092 is a wildcard",
        "advertise",
        "(set by --kafka-listen)",
    ]);
    Case { env: &[("CAIRN_KAFKA_LISTEN", "[::]:9092")], ..Case::default() }
        .err(&["[::]:9092 is a wildcard", "CAIRN_KAFKA_LISTEN"]);
    let config = Case {
        flags: &["--kafka-listen", "0.0.0.0:9092"],
        env: &[("CAIRN_ADVERTISE", "kafka.internal:9092")],
        ..Case::default()
    }
    .ok();
    let bound: SocketAddr = "0.0.0.0:9092".parse().unwrap();
    assert_eq!(config.advertised_address(bound).to_string(), "kafka.internal:9092");
}

#[test]
fn advertised_address_defaults_to_the_bound_listener() {
    let config = Case { flags: &["--kafka-listen", "127.0.0.1:0"], ..Case::default() }.ok();
    let bound: SocketAddr = "127.0.0.1:40123".parse().unwrap();
    let advertised = config.advertised_address(bound);
    assert_eq!(advertised, AdvertisedAddress { host: "127.0.0.1".into(), port: 40123 });
    let bound: SocketAddr = "[::1]:40123".parse().unwrap();
    assert_eq!(config.advertised_address(bound).to_string(), "[::1]:40123");
}

#[test]
fn advertised_address_parsing() {
    let ok = |input: &str, host: &str, port: u16| {
        let parsed: AdvertisedAddress = input.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, AdvertisedAddress { host: host.into(), port }, "{input}");
    };
    ok("localhost:9092", "localhost", 9092);
    ok("broker-1.kafka.svc.cluster.local:9092", "broker-1.kafka.svc.cluster.local", 9092);
    ok("10.0.0.7:1", "10.0.0.7", 1);
    ok("[2001:db8::1]:9092", "2001:db8::1", 9092);
    assert_eq!(
        "[2001:db8::1]:9092".parse::<AdvertisedAddress>().unwrap().to_string(),
        "[2001:db8::1]:9092"
    );

    for (input, reason) in [
        ("localhost", "missing :PORT"),
        (":9092", "host"),
        ("localhost:0", "port"),
        ("localhost:65536", "port"),
        ("localhost:http", "port"),
        ("2001:db8::1:9092", "brackets"),
        ("[2001:db8::1]9092", "[IPV6]:PORT"),
        ("[not-ip]:9092", "IPv6"),
        ("0.0.0.0:9092", "wildcard"),
        ("[::]:9092", "wildcard"),
        ("bad host:9092", "host"),
        ("-lead.example:9092", "host"),
        ("a..b:9092", "host"),
    ] {
        let error = input.parse::<AdvertisedAddress>().unwrap_err().to_string();
        assert!(error.contains(reason), "{input:?}: {error:?} should mention {reason:?}");
    }
}

#[test]
fn flags_are_typed_by_clap() {
    let error = Serve::try_parse_from(["serve", "--advertise", "0.0.0.0:1"]).unwrap_err();
    assert!(error.to_string().contains("wildcard"), "{error}");
    let error = Serve::try_parse_from(["serve", "--default-partitions=many"]).unwrap_err();
    assert!(error.to_string().contains("--default-partitions"), "{error}");
    let args = Serve::try_parse_from(["serve", "--auto-create-topics", "false"]).unwrap().args;
    assert_eq!(args.auto_create_topics, Some(false));
    assert_eq!(Serve::try_parse_from(["serve"]).unwrap().args, ServeArgs::default());
}

/// `cairn serve --help` is the reference: every option documents its variable and, where there
/// is one, the default, and both agree with the code.
#[test]
fn help_documents_env_and_defaults() {
    Serve::command().debug_assert();
    let defaults: HashMap<&str, String> = {
        let d = NodeConfig::default();
        HashMap::from([
            ("node_id", d.node_id.to_string()),
            ("data_dir", d.data_dir.display().to_string()),
            ("kafka_listen", d.kafka_listen.to_string()),
            ("admin_listen", d.admin_listen.to_string()),
            (
                "etcd_listen",
                format!("{ETCD_LISTEN_DEFAULT} for a single node, if free; none with --peers"),
            ),
            ("etcd_quota_backend_bytes", d.etcd_quota_backend_bytes.to_string()),
            ("advertise", "the Kafka listener's address".to_owned()),
            ("auto_create_topics", d.auto_create_topics.to_string()),
            ("default_partitions", d.default_partitions.to_string()),
            ("offsets_topic_partitions", d.offsets_topic_partitions.to_string()),
            ("group_initial_rebalance_delay_ms", d.group_initial_rebalance_delay_ms.to_string()),
            ("group_consumer_session_timeout_ms", d.group_consumer_session_timeout_ms.to_string()),
            (
                "group_consumer_heartbeat_interval_ms",
                d.group_consumer_heartbeat_interval_ms.to_string(),
            ),
            ("log_cleaner_backoff_ms", d.log_cleaner_backoff_ms.to_string()),
            ("log_cleaner_io_bytes_per_sec", d.log_cleaner_io_bytes_per_sec.to_string()),
            ("log_level", d.log_level.clone()),
            ("connections_max", d.connections_max.to_string()),
            ("inflight_requests_max", d.inflight_requests_max.to_string()),
            ("request_timeout_ms", d.request_timeout_ms.to_string()),
            ("connections_max_idle_ms", d.connections_max_idle_ms.to_string()),
            ("shutdown_timeout_ms", d.shutdown_timeout_ms.to_string()),
            ("page_cache_window_bytes", d.page_cache_window_bytes.to_string()),
            ("peer_listen", "none, a single node".to_owned()),
            ("peers", "none, a single node".to_owned()),
            ("rack", "none".to_owned()),
            ("cluster_id", "derived from --peers".to_owned()),
        ])
    };
    let command = Serve::command();
    let mut documented = 0;
    for arg in command.get_arguments().filter(|arg| arg.get_long().is_some()) {
        let field = arg.get_id().as_str();
        if field == "help" {
            continue;
        }
        let help =
            arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
        // Doc comments wrap; compare with whitespace collapsed.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains(&format!("[env: {}]", env_var(field))), "{field}: {help}");
        if field != "config" {
            let default = &defaults[field];
            assert!(help.contains(&format!("[default: {default}]")), "{field}: {help}");
            documented += 1;
        }
    }
    assert_eq!(documented, defaults.len());
}
