//! `needle serve`'s replication: the mode its settings chose, checked and started
//! as the one value HTTP holds ([`ReplicationMode`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use needle_transport::faults::FaultInjector;

use crate::config::{ClusterSettings, ModeSettings, ServeConfig};
use crate::replication::raft::{RaftConfig, RaftNode};
use crate::replication::standalone::Standalone;
use crate::replication::{ClusterConfig, Replication, ReplicationMode, Role, TlsConfig};
use crate::served::ServedDatabase;

/// Starts what `config.mode` names: nothing for a standalone node; the transport
/// and the role for a primary or replica; the Raft member for `--raft`.
pub(super) async fn start(
    served: &ServedDatabase,
    config: &ServeConfig,
    faults: Option<Arc<FaultInjector>>,
    http_addr: SocketAddr,
) -> anyhow::Result<Arc<dyn ReplicationMode>> {
    let (role, cluster) = match &config.mode {
        ModeSettings::Standalone => return Ok(Arc::new(Standalone::new(served.clone()))),
        ModeSettings::Raft {
            node_id,
            peers,
            cluster,
        } => {
            warn_if_insecure(cluster);
            let node =
                start_raft(served, config, *node_id, peers, cluster, faults, http_addr).await?;
            return Ok(Arc::new(node));
        }
        ModeSettings::Primary { cluster } => (Role::Primary, cluster),
        ModeSettings::Replica { primary, cluster } => {
            let primary = tokio::net::lookup_host(primary)
                .await
                .with_context(|| format!("resolving --primary {primary}"))?
                .next()
                .ok_or_else(|| anyhow::anyhow!("--primary {primary} resolves to no address"))?;
            (Role::Replica { primary }, cluster)
        }
    };
    warn_if_insecure(cluster);
    let replication = Replication::start(
        served,
        ClusterConfig {
            role,
            cluster_addr: cluster.addr,
            security: TlsConfig::security(cluster.tls.as_ref())?,
            faults,
            batch_size: config.replication_batch_size,
            sync_interval: std::time::Duration::from_millis(config.replication_sync_interval_ms),
            write_timeout: std::time::Duration::from_millis(config.write_timeout_ms),
            compression: config.replication_compression,
        },
    )?;
    // Tests read this line to learn the port when --cluster-addr ends in :0.
    tracing::info!("cluster transport on {}", replication.cluster_addr);
    Ok(replication)
}

fn warn_if_insecure(cluster: &ClusterSettings) {
    if cluster.tls.is_none() {
        tracing::warn!("--insecure-dev: node-to-node traffic is NOT authenticated");
    }
}

async fn start_raft(
    served: &ServedDatabase,
    config: &ServeConfig,
    node_id: u64,
    peer_specs: &[String],
    cluster: &ClusterSettings,
    faults: Option<Arc<FaultInjector>>,
    http_addr: SocketAddr,
) -> anyhow::Result<RaftNode> {
    let mut peers = Vec::new();
    let mut expected_peer_ids = BTreeMap::new();
    for spec in peer_specs {
        let (id, addr) = parse_peer(spec)?;
        let addr = tokio::net::lookup_host(addr)
            .await
            .with_context(|| format!("resolving peer {spec}"))?
            .next()
            .with_context(|| format!("peer {spec} resolves to no address"))?;
        if let Some(id) = id {
            anyhow::ensure!(id != node_id, "--peers names this node's own id {id}");
            expected_peer_ids.insert(addr, id);
        }
        peers.push(addr);
    }
    let node = RaftNode::with_database(
        served.clone(),
        RaftConfig {
            node_id,
            cluster_addr: cluster.addr,
            http_addr: http_addr.to_string(),
            peers,
            expected_peer_ids,
            write_timeout_ms: config.write_timeout_ms,
            snapshot_every: config.raft_snapshot_every,
            tls: cluster.tls.clone(),
            faults,
            ..RaftConfig::default()
        },
    );
    node.start().await?;
    // Tests read this line to learn the port when --cluster-addr ends in :0.
    tracing::info!("cluster transport on {}", node.cluster_addr()?);
    Ok(node)
}

/// `ID=HOST:PORT` or `HOST:PORT`.
fn parse_peer(spec: &str) -> anyhow::Result<(Option<u64>, &str)> {
    match spec.split_once('=') {
        Some((id, addr)) => {
            let id = id
                .trim()
                .parse()
                .with_context(|| format!("peer {spec}: {id:?} is not a node id"))?;
            Ok((Some(id), addr.trim()))
        }
        None => Ok((None, spec.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_peer;

    #[test]
    fn peers_are_read_with_or_without_ids() {
        assert_eq!(
            parse_peer("2=127.0.0.1:5002").unwrap(),
            (Some(2), "127.0.0.1:5002")
        );
        assert_eq!(parse_peer("node3:5000").unwrap(), (None, "node3:5000"));
        assert!(parse_peer("x=127.0.0.1:5002").is_err());
    }
}
