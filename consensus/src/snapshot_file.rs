//! Snapshot data as Raft carries it: a file on disk. The node writes it (a RocksDB
//! checkpoint packed as tar + zstd) and installs it; this crate only moves it
//! between nodes, through the transport's bulk region transfer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ConsensusError;

/// A snapshot file. Whoever holds the value owns the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// Where received snapshots are written before they are installed.
#[derive(Debug)]
pub struct SnapshotInbox {
    dir: PathBuf,
    next: AtomicU64,
}

impl SnapshotInbox {
    /// Creates `dir` and removes anything a crash left in it.
    pub fn open(dir: &Path) -> Result<SnapshotInbox, ConsensusError> {
        let failed =
            |e: std::io::Error| ConsensusError::Snapshot(format!("{}: {e}", dir.display()));
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(failed)?;
        }
        std::fs::create_dir_all(dir).map_err(failed)?;
        Ok(SnapshotInbox {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(0),
        })
    }

    /// A new file name in the inbox for the next snapshot to arrive.
    pub fn next_file(&self) -> SnapshotFile {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        SnapshotFile {
            path: self.dir.join(format!("received-{n}.snapshot")),
        }
    }
}
