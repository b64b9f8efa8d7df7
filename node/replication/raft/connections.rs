//! Connections to members for the node's own requests (`app_rpc`), by cluster
//! address: opened on first use, shared, and replaced after any failure (one to a
//! process that died and came back on the same address would otherwise only ever
//! time out). Used by members and by [`super::RaftClient`] alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::{Peer, Transport, TransportError};
use parking_lot::Mutex;

use super::app_rpc::{AppRequest, AppResponse};
use crate::replication::error::{ReplicationError, Result};

pub(crate) struct Connections {
    transport: Transport,
    peers: Mutex<BTreeMap<SocketAddr, Arc<Peer>>>,
    connect_timeout: Duration,
}

impl Connections {
    pub fn new(transport: Transport, connect_timeout: Duration) -> Connections {
        Connections {
            transport,
            peers: Mutex::new(BTreeMap::new()),
            connect_timeout,
        }
    }

    /// The connection to `addr`, opened if there is none.
    pub async fn peer(&self, addr: SocketAddr) -> Result<Arc<Peer>> {
        if let Some(peer) = self.peers.lock().get(&addr) {
            return Ok(peer.clone());
        }
        let peer = tokio::time::timeout(self.connect_timeout, self.transport.connect(addr))
            .await
            .map_err(|_| TransportError::Timeout(self.connect_timeout))
            .and_then(|connected| connected)
            .map_err(|source| ReplicationError::Peer {
                doing: "connecting to",
                peer: addr,
                source,
            })?;
        let peer = Arc::new(peer);
        self.peers.lock().insert(addr, peer.clone());
        Ok(peer)
    }

    /// Sends `request` to the member at `addr` and waits at most `timeout`.
    pub async fn ask(
        &self,
        addr: SocketAddr,
        request: &AppRequest,
        timeout: Duration,
    ) -> Result<AppResponse> {
        let peer = self.peer(addr).await?;
        match peer.request_within(&request.encode()?, timeout).await {
            Ok(reply) => AppResponse::decode(&reply),
            Err(e) => {
                self.peers.lock().remove(&addr);
                Err(ReplicationError::Peer {
                    doing: "asking",
                    peer: addr,
                    source: e,
                })
            }
        }
    }
}
