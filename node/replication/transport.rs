//! What both modes share about the node-to-node transport: one TLS settings type,
//! one conversion to the transport's security, and one start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use needle_transport::faults::FaultInjector;
use needle_transport::metrics::TransportMetrics;
use needle_transport::{Handler, Security, TlsFiles, Transport, TransportConfig};

use crate::replication::error::{ReplicationError, Result};
use crate::{Database, Error};

/// Node-to-node TLS: this node's certificate and key, and the cluster CA every
/// peer's certificate must chain to (mutual TLS needs it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: Option<PathBuf>,
}

impl TlsConfig {
    /// The transport's security from optional TLS settings; `None` is the development
    /// mode without authentication, logged loudly.
    pub(crate) fn security(tls: Option<&TlsConfig>) -> Result<Security> {
        match tls {
            Some(tls) => Ok(Security::Mutual(TlsFiles {
                cert_path: tls.cert_path.clone(),
                key_path: tls.key_path.clone(),
                ca_path: tls.ca_path.clone().ok_or_else(|| {
                    Error::InvalidRequest(
                        "TLS between nodes is mutual: ca_path must name the cluster CA".into(),
                    )
                })?,
            })),
            None => {
                tracing::warn!("no TLS: node-to-node traffic is NOT authenticated");
                Ok(Security::InsecureDev)
            }
        }
    }
}

/// Binds the transport on `addr` with `security`, answering with `handler`. Its
/// traffic is counted in `db`'s metrics registry (when the counters cannot be
/// registered, it runs without them rather than not at all). `faults` is the
/// injector `/debug/faults` drives, for test clusters.
pub(crate) fn start(
    db: &Database,
    addr: SocketAddr,
    security: Security,
    faults: Option<Arc<FaultInjector>>,
    handler: Arc<dyn Handler>,
) -> Result<Transport> {
    let mut config = TransportConfig::new(security);
    config.faults = faults;
    config.metrics = match TransportMetrics::register(db.metrics().registry()) {
        Ok(metrics) => Some(Arc::new(metrics)),
        Err(e) => {
            tracing::warn!(error = %e, "transport metrics not registered");
            None
        }
    };
    Transport::bind(addr, config, handler).map_err(ReplicationError::Transport)
}
