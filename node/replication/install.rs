//! A replica that is behind its primary's retained log installs a snapshot of the
//! primary's state before it streams again.
//!
//! The primary writes a snapshot file (the same format as `needle snapshot`) into a
//! transport region; the replica reads the region in chunks over QUIC, checks the
//! whole file against the offered checksum, and reloads from it exactly as
//! `POST /reload` does: a new generation of its data directory, swapped in while
//! searches go on.

use std::time::Duration;

use needle_transport::region::checksum as region_checksum;
use needle_transport::{Peer, RegionKey};

use super::wire::{Request, SnapshotOffer};
use crate::error::{Error, Result};
use crate::served::ServedDatabase;

/// Bytes per region read: well under the transport's frame limit.
const CHUNK: u64 = 4 << 20;
/// Writing the snapshot is the primary's slowest answer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(600);

/// Fetches the primary's snapshot and swaps it in; returns the applied sequence
/// number the replica resumes from.
pub(crate) async fn install_snapshot(served: &ServedDatabase, peer: &Peer) -> Result<u64> {
    let remote = |what: &'static str| {
        move |e: needle_transport::TransportError| Error::Replication(format!("{what}: {e}"))
    };
    let reply = peer
        .request_within(&Request::Snapshot.encode(), OFFER_TIMEOUT)
        .await
        .map_err(remote("asking the primary for a snapshot"))?;
    let offer = SnapshotOffer::decode(&reply)?;
    tracing::info!(
        bytes = offer.len,
        applied_seq = offer.applied_seq,
        "installing the primary's snapshot"
    );
    let mut bytes = Vec::with_capacity(offer.len as usize);
    let mut offset = 0;
    while offset < offer.len {
        let len = CHUNK.min(offer.len - offset);
        let chunk = peer
            .read_region(RegionKey(offer.key), offset, len)
            .await
            .map_err(remote("reading the snapshot"))?;
        if chunk.len() as u64 != len {
            return Err(Error::Replication(format!(
                "snapshot read at {offset} returned {} of {len} bytes",
                chunk.len()
            )));
        }
        bytes.extend(chunk);
        offset += len;
    }
    let _ = peer
        .request(&Request::SnapshotDone { key: offer.key }.encode())
        .await;
    if region_checksum(&bytes) != offer.checksum {
        return Err(Error::Replication(
            "the snapshot's checksum does not match the primary's".into(),
        ));
    }
    let current = served.current();
    let reloaded = tokio::task::spawn_blocking(move || {
        let file = crate::snapshot::scratch_beside(current.store_path(), "incoming")?;
        let result = std::fs::write(&file, &bytes)
            .map_err(|e| Error::Snapshot(format!("writing {}: {e}", file.display())))
            .and_then(|()| current.reload_from(&file));
        let _ = std::fs::remove_file(&file);
        result
    })
    .await
    .map_err(|_| Error::Closed)??;
    let applied = reloaded.applied_seq();
    drop(served.replace(reloaded.clone()));
    tokio::spawn(async move {
        // Requests on the old state finish first; see `Database::reload_from`.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tokio::task::spawn_blocking(move || reloaded.remove_inactive_generations()).await;
    });
    Ok(applied)
}
