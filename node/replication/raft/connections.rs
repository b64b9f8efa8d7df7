//! Connections to members for the node's own requests (`app_rpc`), by cluster
//! address: opened on first use, shared, and replaced after any failure or once
//! closed (a process that died and came back on the same address resets them). Used
//! by members and by [`super::RaftClient`] alike.

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
    peers: Arc<Mutex<BTreeMap<SocketAddr, Arc<Peer>>>>,
    connect_timeout: Duration,
}

impl Connections {
    pub fn new(transport: Transport, connect_timeout: Duration) -> Connections {
        Connections {
            transport,
            peers: Arc::new(Mutex::new(BTreeMap::new())),
            connect_timeout,
        }
    }

    /// The connection to `addr`, opened if there is none.
    pub async fn peer(&self, addr: SocketAddr) -> Result<Arc<Peer>> {
        if let Some(peer) = self.peers.lock().get(&addr).filter(|p| !p.is_closed()) {
            return Ok(peer.clone());
        }
        let peer = tokio::time::timeout(self.connect_timeout, self.transport.connect(addr))
            .await
            .map_err(|_| TransportError::Timeout(self.connect_timeout))
            .and_then(|connected| connected)
            .map_err(ReplicationError::peer("connecting to", addr))?;
        let peer = Arc::new(peer);
        self.peers.lock().insert(addr, peer.clone());
        Ok(peer)
    }

    /// Sends `request` to the member at `addr` and waits at most `timeout`. The
    /// exchange runs in its own task, so a caller that gives up first (a client's
    /// timeout dropping a forwarded write) does not skip replacing a connection that
    /// failed: impatient callers would otherwise meet the same dead connection on
    /// every try.
    pub async fn ask(
        &self,
        addr: SocketAddr,
        request: &AppRequest,
        timeout: Duration,
    ) -> Result<AppResponse> {
        let peer = self.peer(addr).await?;
        let body = request.encode()?;
        let peers = self.peers.clone();
        let exchange = tokio::spawn(async move {
            let answer = peer.request_within(&body, timeout).await;
            if answer.is_err() {
                let mut peers = peers.lock();
                // Only this connection: another caller may have replaced it already.
                if peers.get(&addr).is_some_and(|p| Arc::ptr_eq(p, &peer)) {
                    peers.remove(&addr);
                }
            }
            answer
        });
        match exchange.await {
            Ok(Ok(reply)) => AppResponse::decode(&reply),
            Ok(Err(source)) => Err(ReplicationError::peer("asking", addr)(source)),
            Err(e) => Err(ReplicationError::peer("asking", addr)(
                TransportError::Stream(format!("the exchange task failed: {e}")),
            )),
        }
    }
}
