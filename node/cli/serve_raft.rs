//! `needle serve --raft`: the settings of a Raft member, checked and turned into a
//! started [`RaftNode`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;

use crate::config::ServeConfig;
use crate::replication::raft::{RaftConfig, RaftNode};
use crate::replication::TlsConfig;
use crate::served::ServedDatabase;

/// Starts the Raft member when `--raft` is set; `None` otherwise.
pub(super) async fn start(
    served: &ServedDatabase,
    config: &ServeConfig,
    faults: Option<std::sync::Arc<needle_transport::faults::FaultInjector>>,
    http_addr: SocketAddr,
) -> anyhow::Result<Option<RaftNode>> {
    if !config.raft {
        return Ok(None);
    }
    let node_id = config.node_id.context("--raft needs --node-id N")?;
    let cluster_addr = config
        .cluster_addr
        .as_deref()
        .context("--raft needs --cluster-addr IP:PORT")?;
    let cluster_addr: SocketAddr = cluster_addr
        .parse()
        .with_context(|| format!("--cluster-addr {cluster_addr}: expected IP:PORT"))?;
    // Checked for its error message; the TLS files travel as RaftConfig.tls.
    super::serve::transport_security(config, "raft member")?;
    let mut peers = Vec::new();
    let mut expected_peer_ids = BTreeMap::new();
    for spec in &config.peers {
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
            cluster_addr,
            http_addr: http_addr.to_string(),
            peers,
            expected_peer_ids,
            write_timeout_ms: config.write_timeout_ms,
            snapshot_every: config.raft_snapshot_every,
            tls: config.tls.as_ref().map(|tls| TlsConfig {
                cert_path: tls.cert_path.clone(),
                key_path: tls.key_path.clone(),
                ca_path: Some(tls.ca_path.clone()),
            }),
            faults,
            ..RaftConfig::default()
        },
    );
    node.start().await?;
    // Tests read this line to learn the port when --cluster-addr ends in :0.
    tracing::info!("cluster transport on {}", node.cluster_addr()?);
    Ok(Some(node))
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
