//! A Raft group's snapshots: the database of the group's state machine as one file
//! (a RocksDB checkpoint as tar + zstd, `crate::snapshot`), its applied id read from
//! the checkpoint itself, and the record of the one a member keeps.

use std::io;
use std::path::{Path, PathBuf};

use needle_consensus::openraft::RaftSnapshotBuilder;
use needle_consensus::types::SnapshotMeta;
use needle_consensus::{SnapshotFile, TypeConfig};
use serde::{Deserialize, Serialize};

use super::applied_marker::AppliedMarker;
use crate::served::ServedDatabase;

type Snapshot = needle_consensus::openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// The record of the snapshot a node keeps (`current.json`): which file, and the
/// Raft meta of what it contains. Replaced by an atomic rename, so it always names a
/// complete file whose contents match the meta.
#[derive(Serialize, Deserialize)]
pub(super) struct CurrentSnapshot {
    pub file: String,
    pub meta: SnapshotMeta,
}

pub(super) const CURRENT: &str = "current.json";

/// Moves `source` into `dir` as the kept snapshot, records it, and removes the
/// snapshot files it replaces.
pub(super) fn keep_current(dir: &Path, source: &Path, meta: &SnapshotMeta) -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
    let file = format!("snap-{index}-{nanos}.snapshot");
    let target = dir.join(&file);
    // The file, then its new name, then the record naming it reach the disk in that
    // order: after a power loss `current.json` never names a file that is not whole.
    crate::durable::sync_file(source)?;
    std::fs::rename(source, &target)?;
    crate::durable::sync_dir(dir)?;
    let record = serde_json::to_vec(&CurrentSnapshot {
        file: file.clone(),
        meta: meta.clone(),
    })
    .map_err(io::Error::other)?;
    crate::durable::replace_file(&dir.join(CURRENT), &record)?;
    for stale in std::fs::read_dir(dir)?.flatten() {
        let name = stale.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap-") && name != file.as_str() {
            let _ = std::fs::remove_file(stale.path());
        }
    }
    Ok(target)
}

/// Builds a snapshot of the database as it is when the build runs; its Raft
/// applied id is read from the checkpoint itself, so id and data always agree even
/// while entries keep being applied.
pub struct SnapshotBuilder {
    served: ServedDatabase,
    snapshots: PathBuf,
}

impl SnapshotBuilder {
    pub(super) fn new(served: ServedDatabase, snapshots: PathBuf) -> SnapshotBuilder {
        SnapshotBuilder { served, snapshots }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let db = self.served.current();
        let dir = self.snapshots.clone();
        tokio::task::spawn_blocking(move || -> io::Result<Snapshot> {
            let building = dir.join("building.snapshot");
            let written = db
                .write_snapshot(&building)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let applied: AppliedMarker = match written.info.order_marker {
                Some(value) => serde_json::from_value(value).map_err(io::Error::other)?,
                None => AppliedMarker::default(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.log_id,
                last_membership: applied.membership,
            };
            let current = keep_current(&dir, &building, &meta)?;
            tracing::info!(applied = ?meta.last_log_id, bytes = written.bytes, "built a raft snapshot");
            Ok(Snapshot {
                meta,
                snapshot: SnapshotFile { path: current },
            })
        })
        .await
        .map_err(io::Error::other)?
    }
}
