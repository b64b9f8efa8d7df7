//! How a node takes writes, as one choice: `--role` and `--raft` together, with the
//! cluster address and transport security every mode but standalone needs, checked
//! and parsed once when the settings are resolved (not when the mode starts).

use std::net::SocketAddr;

use anyhow::Context;

use super::{RoleChoice, TlsConfig};

/// Where a replicated node's node-to-node transport listens, and how it is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `--cluster-addr`.
    pub addr: SocketAddr,
    /// Mutual TLS from the cluster CA; `None` only with `--insecure-dev` (an
    /// unauthenticated transport, for development).
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSettings {
    Standalone,
    /// Orders writes and serves its log to replicas.
    Primary {
        cluster: ClusterSettings,
    },
    /// Follows the primary at `primary` (HOST:PORT, resolved at start).
    Replica {
        primary: String,
        cluster: ClusterSettings,
    },
    /// A member of a Raft cluster.
    Raft {
        node_id: u64,
        /// The other members, each `ID=HOST:PORT` or `HOST:PORT`.
        peers: Vec<String>,
        cluster: ClusterSettings,
    },
}

/// The settings a mode is chosen from, already merged from flags, environment and file.
#[derive(Debug, Clone, Default)]
pub struct ModeInputs {
    pub role: RoleChoice,
    pub raft: bool,
    pub primary: Option<String>,
    pub node_id: Option<u64>,
    pub peers: Vec<String>,
    pub cluster_addr: Option<String>,
    pub tls: Option<TlsConfig>,
    pub insecure_dev: bool,
}

impl ModeSettings {
    /// The one mode `inputs` name, or why they name none. A standalone node ignores
    /// the cluster settings: it listens on no transport.
    pub fn resolve(inputs: ModeInputs) -> anyhow::Result<ModeSettings> {
        let cluster = |mode: &str| cluster_settings(&inputs, mode);
        Ok(match (inputs.role, inputs.raft) {
            (RoleChoice::Standalone, false) => ModeSettings::Standalone,
            (RoleChoice::Standalone, true) => ModeSettings::Raft {
                node_id: inputs
                    .node_id
                    .ok_or_else(|| anyhow::anyhow!("--raft needs --node-id N"))?,
                peers: inputs.peers.clone(),
                cluster: cluster("--raft")?,
            },
            (_, true) => {
                anyhow::bail!("--raft and --role are two kinds of replication: choose one")
            }
            (RoleChoice::Primary, false) => ModeSettings::Primary {
                cluster: cluster("--role Primary")?,
            },
            (RoleChoice::Replica, false) => ModeSettings::Replica {
                primary: inputs
                    .primary
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("--role Replica needs --primary HOST:PORT"))?,
                cluster: cluster("--role Replica")?,
            },
        })
    }

    /// The transport settings, for every mode but standalone.
    pub fn cluster(&self) -> Option<&ClusterSettings> {
        match self {
            ModeSettings::Standalone => None,
            ModeSettings::Primary { cluster }
            | ModeSettings::Replica { cluster, .. }
            | ModeSettings::Raft { cluster, .. } => Some(cluster),
        }
    }
}

/// `--cluster-addr` as IP:PORT, and either TLS files or `--insecure-dev` (never both,
/// never neither).
fn cluster_settings(inputs: &ModeInputs, mode: &str) -> anyhow::Result<ClusterSettings> {
    let addr = inputs
        .cluster_addr
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{mode} needs --cluster-addr IP:PORT"))?;
    let addr = addr
        .parse()
        .with_context(|| format!("--cluster-addr {addr}: expected IP:PORT"))?;
    let tls = match (&inputs.tls, inputs.insecure_dev) {
        (Some(tls), false) => Some(tls.clone()),
        (None, true) => None,
        (Some(_), true) => anyhow::bail!("give either TLS files or --insecure-dev, not both"),
        (None, false) => anyhow::bail!(
            "{mode} needs --tls-cert, --tls-key and --tls-ca (see `needle certs generate`) or, for development, --insecure-dev"
        ),
    };
    Ok(ClusterSettings { addr, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_raft_resolve_to_one_mode() {
        let insecure = |role, raft, primary: Option<&str>, node_id| ModeInputs {
            role,
            raft,
            primary: primary.map(str::to_string),
            node_id,
            cluster_addr: Some("127.0.0.1:5000".into()),
            insecure_dev: true,
            ..ModeInputs::default()
        };
        let cluster = ClusterSettings {
            addr: "127.0.0.1:5000".parse().unwrap(),
            tls: None,
        };
        assert_eq!(
            ModeSettings::resolve(insecure(RoleChoice::Standalone, false, None, None)).unwrap(),
            ModeSettings::Standalone
        );
        assert_eq!(
            ModeSettings::resolve(insecure(RoleChoice::Replica, false, Some("p:5000"), None))
                .unwrap(),
            ModeSettings::Replica {
                primary: "p:5000".into(),
                cluster: cluster.clone(),
            }
        );
        assert_eq!(
            ModeSettings::resolve(insecure(RoleChoice::Standalone, true, None, Some(2))).unwrap(),
            ModeSettings::Raft {
                node_id: 2,
                peers: Vec::new(),
                cluster,
            }
        );
        let refused = |inputs: ModeInputs, says: &str| {
            let e = ModeSettings::resolve(inputs).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        };
        refused(
            insecure(RoleChoice::Primary, true, None, Some(1)),
            "choose one",
        );
        refused(
            insecure(RoleChoice::Replica, false, None, None),
            "needs --primary",
        );
        refused(
            insecure(RoleChoice::Standalone, true, None, None),
            "needs --node-id",
        );
        let primary = insecure(RoleChoice::Primary, false, None, None);
        refused(
            ModeInputs {
                cluster_addr: None,
                ..primary.clone()
            },
            "--role Primary needs --cluster-addr",
        );
        refused(
            ModeInputs {
                cluster_addr: Some("node-1:5000".into()),
                ..primary.clone()
            },
            "expected IP:PORT",
        );
        refused(
            ModeInputs {
                insecure_dev: false,
                ..primary.clone()
            },
            "--insecure-dev",
        );
        refused(
            ModeInputs {
                tls: Some(TlsConfig {
                    cert_path: "c.pem".into(),
                    key_path: "k.pem".into(),
                    ca_path: Some("ca.pem".into()),
                }),
                ..primary
            },
            "not both",
        );
    }
}
