//! The connections a member's Raft clients share: one per peer address for
//! replication and votes, one for heartbeats, used by every group's clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use needle_transport::{Peer, TransportError};
use parking_lot::Mutex;

/// The connections every [`PeerNetwork`] to the same address shares. openraft asks
/// for a new client for every vote, pre-vote and hand-over broadcast and gives each
/// request its `election_timeout_min` (51 ms with needle's election window): a
/// fresh QUIC and mutual-TLS handshake inside that, on a loaded machine, is how
/// pre-votes between two live survivors timed out and a failover took 800 ms.
pub(crate) type OpenConnections = Arc<Mutex<HashMap<SocketAddr, Arc<SharedPeer>>>>;

/// A connection and its timeouts in a row, counted across every client (of every
/// group) using it, so one slow group's timeouts can give it up for all of them:
/// a vote client lives for one request, and would never see a second one.
pub(crate) struct SharedPeer {
    pub peer: Peer,
    pub timeouts: AtomicU32,
    /// Given up on: clients holding it connect afresh too (openraft keeps one
    /// replication client for as long as a member follows).
    forgotten: AtomicBool,
}

impl SharedPeer {
    pub(crate) fn new(peer: Peer) -> SharedPeer {
        SharedPeer {
            peer,
            timeouts: AtomicU32::new(0),
            forgotten: AtomicBool::new(false),
        }
    }

    pub(crate) fn usable(&self) -> bool {
        !self.peer.is_closed() && !self.forgotten.load(Ordering::Relaxed)
    }

    /// Records how an exchange on this connection ended (`None`: answered) and
    /// says whether to give the connection up. A broken connection is given up.
    /// One slow answer is no reason to drop a healthy one, but a connection to a
    /// process that died and came back on the same address only ever times out
    /// (until QUIC's idle timeout), so a second timeout in a row gives it up too.
    pub(crate) fn give_up_after(&self, failure: Option<&TransportError>) -> bool {
        match failure {
            Some(TransportError::Timeout(_)) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= 2
            }
            other => {
                self.timeouts.store(0, Ordering::Relaxed);
                !matches!(other, None | Some(TransportError::Remote(_)))
            }
        }
    }
}

/// Gives up on `peer`: drops it from `shared` (if it is still the one there)
/// and marks it, so that every client connects afresh.
pub(crate) fn forget(shared: &OpenConnections, addr: SocketAddr, peer: &Arc<SharedPeer>) {
    peer.forgotten.store(true, Ordering::Relaxed);
    let mut shared = shared.lock();
    if shared.get(&addr).is_some_and(|p| Arc::ptr_eq(p, peer)) {
        shared.remove(&addr);
    }
}
