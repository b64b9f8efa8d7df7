//! A replica that is behind its primary's retained log installs a snapshot of the
//! primary's state before it streams again.
//!
//! The primary writes a snapshot file (the same format as `needle snapshot`) and
//! offers it as a transport region; the replica reads it in chunks over QUIC
//! straight into a file of its own (never whole in memory, so any size works),
//! checks it against the offered checksum, and reloads from it exactly as
//! `POST /reload` does: a new generation of its data directory, swapped in while
//! searches go on.

use std::time::Duration;

use needle_transport::{Peer, RegionKey};

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::wire::{Request, SnapshotOffer};
use crate::served::ServedDatabase;
use crate::Error;

/// Bytes per region read: well under the transport's frame limit.
const CHUNK: u64 = 4 << 20;
/// Writing the snapshot is the primary's slowest answer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(600);

/// Fetches the primary's snapshot and swaps it in; returns the applied sequence
/// number the replica resumes from.
pub(crate) async fn install_snapshot(served: &ServedDatabase, peer: &Peer) -> Result<u64> {
    let remote = |doing| ReplicationError::peer(doing, peer.remote_addr());
    let reply = peer
        .request_within(&Request::Snapshot.encode(), OFFER_TIMEOUT)
        .await
        .map_err(remote("asking for a snapshot"))?;
    let offer = SnapshotOffer::decode(&reply)?;
    tracing::info!(
        bytes = offer.len,
        applied_seq = offer.applied_seq,
        "installing the primary's snapshot"
    );
    let current = served.current();
    let file = crate::snapshot::scratch_beside(current.store_path(), "incoming")?;
    let read = peer
        .read_region_to_file(
            RegionKey(offer.key),
            offer.len,
            offer.checksum,
            CHUNK,
            &file,
        )
        .await;
    let _ = peer
        .request(&Request::SnapshotDone { key: offer.key }.encode())
        .await;
    read.map_err(remote("reading the snapshot of"))?;
    let reloaded = tokio::task::spawn_blocking(move || {
        let result = current.reload_from(&file);
        let _ = std::fs::remove_file(&file);
        result
    })
    .await
    .map_err(|_| Error::Closed)??;
    let applied = reloaded.applied_seq();
    served.swap_in(reloaded);
    Ok(applied)
}
