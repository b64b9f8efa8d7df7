//! Connections to members for the node's own requests (`app_rpc`), by cluster
//! address: opened on first use, shared, and replaced after any failure or once
//! closed (a process that died and came back on the same address resets them). Used
//! by members and by [`super::RaftClient`] alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use needle_transport::{Peer, Transport, TransportError};
use parking_lot::Mutex;

use super::app_rpc::{AppRequest, AppResponse};
use crate::replication::error::{ReplicationError, Result};

pub(crate) struct Connections {
    transport: Transport,
    peers: Mutex<BTreeMap<SocketAddr, Tracked>>,
    connect_timeout: Duration,
}

/// A shared connection and how many answers came back on it: a request given up
/// on says nothing against a connection that answered someone else meanwhile.
#[derive(Clone)]
struct Tracked {
    peer: Arc<Peer>,
    answers: Arc<AtomicU64>,
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
        Ok(self.tracked(addr).await?.peer)
    }

    async fn tracked(&self, addr: SocketAddr) -> Result<Tracked> {
        if let Some(open) = self.peers.lock().get(&addr).filter(|t| !t.peer.is_closed()) {
            return Ok(open.clone());
        }
        let peer = tokio::time::timeout(self.connect_timeout, self.transport.connect(addr))
            .await
            .map_err(|_| TransportError::Timeout(self.connect_timeout))
            .and_then(|connected| connected)
            .map_err(ReplicationError::peer("connecting to", addr))?;
        let tracked = Tracked {
            peer: Arc::new(peer),
            answers: Arc::default(),
        };
        self.peers.lock().insert(addr, tracked.clone());
        Ok(tracked)
    }

    /// Sends `request` to the member at `addr` and waits at most `timeout`. The
    /// connection is dropped unless the member answered: after a failure, and also
    /// when the caller gives up first (a client's timeout dropping a forwarded
    /// write), since a connection to a process that died unnoticed answers nothing
    /// and impatient callers would otherwise meet it on every try. A caller that
    /// gives up leaves the connection alone if anything was answered on it since
    /// its request went out: the member is alive, and a client resetting its own
    /// requests must not cost two members a new handshake each time. The exchange
    /// itself ends with its caller, so nothing outlives the request's limits.
    pub async fn ask(
        &self,
        addr: SocketAddr,
        request: &AppRequest,
        timeout: Duration,
    ) -> Result<AppResponse> {
        let tracked = self.tracked(addr).await?;
        let body = request.encode()?;
        let mut unanswered = DropUnanswered {
            peers: &self.peers,
            addr,
            tracked: &tracked,
            answers_before: tracked.answers.load(Ordering::Acquire),
            answered: false,
        };
        let answer = tracked.peer.request_within(&body, timeout).await;
        // An error response is an answer: the connection works.
        unanswered.answered = matches!(answer, Ok(_) | Err(TransportError::Remote(_)));
        if unanswered.answered {
            tracked.answers.fetch_add(1, Ordering::AcqRel);
        }
        match answer {
            Ok(reply) => AppResponse::decode(&reply),
            Err(source) => Err(ReplicationError::peer("asking", addr)(source)),
        }
    }
}

/// Forgets a connection that did not answer (nor answered anyone else since this
/// request went out), when the exchange ends or is dropped.
struct DropUnanswered<'a> {
    peers: &'a Mutex<BTreeMap<SocketAddr, Tracked>>,
    addr: SocketAddr,
    tracked: &'a Tracked,
    answers_before: u64,
    answered: bool,
}

impl Drop for DropUnanswered<'_> {
    fn drop(&mut self) {
        if self.answered || self.tracked.answers.load(Ordering::Acquire) != self.answers_before {
            return;
        }
        let mut peers = self.peers.lock();
        // Only this connection: another caller may have replaced it already.
        if peers
            .get(&self.addr)
            .is_some_and(|t| Arc::ptr_eq(&t.peer, &self.tracked.peer))
        {
            peers.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use needle_transport::{Answer, Handler, PeerInfo, Security, TransportConfig};

    use super::*;

    /// A member that answers `Status` with an error and never answers anything else
    /// (a process that died unnoticed).
    struct Silent;

    impl Handler for Silent {
        fn request(&self, _: PeerInfo, body: Vec<u8>) -> Answer {
            Box::pin(async move {
                match AppRequest::decode(&body) {
                    Ok(AppRequest::Status) => Err("not now".into()),
                    _ => std::future::pending().await,
                }
            })
        }
    }

    /// A member that answers nothing but status (with an error), its address,
    /// and this node's connections.
    fn silent_member() -> (Transport, std::net::SocketAddr, Connections) {
        let config = TransportConfig::new(Security::InsecureDev);
        let local = "127.0.0.1:0".parse().unwrap();
        let member = Transport::bind(local, config.clone(), Arc::new(Silent)).unwrap();
        let addr = member.local_addr().unwrap();
        let own = Transport::bind(local, config, Arc::new(Silent)).unwrap();
        (member, addr, Connections::new(own, Duration::from_secs(2)))
    }

    #[tokio::test]
    async fn a_connection_is_dropped_when_its_caller_gives_up_and_kept_after_an_error_answer() {
        let (_member, addr, connections) = silent_member();
        let long = Duration::from_secs(30);
        // An error answer: the connection works and stays.
        let refused = connections.ask(addr, &AppRequest::Status, long).await;
        assert!(refused.is_err());
        let first = connections.peer(addr).await.unwrap();
        // A caller that gives up long before the exchange's own timeout.
        let write = AppRequest::AppliedAtLeast(1);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            connections.ask(addr, &write, long),
        )
        .await;
        assert!(gave_up.is_err());
        let next = connections.peer(addr).await.unwrap();
        assert!(
            !Arc::ptr_eq(&first, &next),
            "the unanswered connection was kept"
        );
    }

    #[tokio::test]
    async fn a_request_given_up_on_keeps_a_connection_that_answered_meanwhile() {
        let (_member, addr, connections) = silent_member();
        let long = Duration::from_secs(30);
        let first = connections.peer(addr).await.unwrap();
        let never = AppRequest::AppliedAtLeast(1);
        let given_up = tokio::time::timeout(
            Duration::from_millis(200),
            connections.ask(addr, &never, long),
        );
        let answered_meanwhile = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            connections.ask(addr, &AppRequest::Status, long).await
        };
        let (gave_up, refused) = tokio::join!(given_up, answered_meanwhile);
        assert!(gave_up.is_err());
        assert!(refused.is_err(), "Status is answered with an error");
        let after = connections.peer(addr).await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &after),
            "a connection that answered was dropped"
        );
    }
}
