//! `NEEDLE_NODE.json` in a running node's data directory: where its HTTP API listens,
//! so that commands given only `--data DIR` (`needle snapshot`) can reach the node
//! holding that directory's lock. Removed when the node shuts down cleanly; a stale
//! file is harmless because it is read only while the directory is locked.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "NEEDLE_NODE.json";

#[derive(Debug, Serialize, Deserialize)]
struct NodeAddress {
    http: SocketAddr,
    pid: u32,
    /// Whether the API is served over HTTPS (absent in files of earlier versions).
    #[serde(default)]
    tls: bool,
}

/// The file while the node runs; dropping it removes the file.
pub struct NodeAddressFile {
    path: PathBuf,
}

impl NodeAddressFile {
    /// Best effort: a node that cannot write it still serves, and says why.
    pub fn write(data: &Path, http: SocketAddr, tls: bool) -> Option<NodeAddressFile> {
        let path = data.join(FILE_NAME);
        let address = NodeAddress {
            http,
            pid: std::process::id(),
            tls,
        };
        let written = serde_json::to_vec(&address)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&path, bytes));
        match written {
            Ok(()) => Some(NodeAddressFile { path }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the node address file; `needle snapshot` will not find this node");
                None
            }
        }
    }
}

impl Drop for NodeAddressFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The base URL of the node serving `data`: a wildcard listen address is reached on
/// loopback.
pub fn node_url(data: &Path) -> anyhow::Result<String> {
    let path = data.join(FILE_NAME);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} is locked by a running process but has no {FILE_NAME}: is it a needle node started before this version?",
            data.display()
        )
    })?;
    let address: NodeAddress =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let mut http = address.http;
    if http.ip().is_unspecified() {
        http.set_ip(match http.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let scheme = if address.tls { "https" } else { "http" };
    Ok(format!("{scheme}://{http}"))
}
