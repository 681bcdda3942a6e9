//! `cairn cluster info`: the cluster id, the controller and the brokers, from DescribeCluster
//! (or Metadata, for a broker without DescribeCluster).

use std::fmt::Write as _;

use anyhow::bail;
use cairn_client::codes as errors;
use cairn_client::{Client, ClientError};
use kafka_protocol::messages::DescribeClusterRequest;

use crate::lookup;

/// One broker as the cluster reports it.
struct Broker {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
}

/// Prints the cluster id, the controller and the brokers.
///
/// # Errors
/// A clear message for any failure.
pub async fn info(client: &mut Client) -> anyhow::Result<()> {
    let (cluster_id, controller, mut brokers) = match client.version_of::<DescribeClusterRequest>()
    {
        Ok(_) => {
            let response = client.send(&DescribeClusterRequest::default()).await?;
            if response.error_code != 0 {
                bail!(
                    "describing the cluster failed: {}",
                    errors::describe(response.error_code, response.error_message.as_deref())
                );
            }
            let brokers = response
                .brokers
                .into_iter()
                .map(|b| Broker {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect::<Vec<_>>();
            (Some(response.cluster_id.to_string()), response.controller_id.0, brokers)
        }
        Err(ClientError::Unsupported { .. }) => {
            let response = lookup::metadata(client, Some(&[])).await?;
            let brokers = response
                .brokers
                .into_iter()
                .map(|b| Broker {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect::<Vec<_>>();
            (response.cluster_id.map(|c| c.to_string()), response.controller_id.0, brokers)
        }
        Err(error) => return Err(error.into()),
    };
    brokers.sort_by_key(|b| b.id);
    let mut out = String::new();
    let _ = writeln!(out, "cluster id: {}", cluster_id.as_deref().unwrap_or("(none)"));
    if controller >= 0 {
        let _ = writeln!(out, "controller: {controller}");
    } else {
        let _ = writeln!(out, "controller: (none)");
    }
    let _ = writeln!(out, "brokers: {}", brokers.len());
    for broker in &brokers {
        let _ = write!(out, "  {} {}:{}", broker.id, broker.host, broker.port);
        if let Some(rack) = &broker.rack {
            let _ = write!(out, " rack={rack}");
        }
        if broker.id == controller {
            let _ = write!(out, " (controller)");
        }
        let _ = writeln!(out);
    }
    crate::output::print(&out)
}
