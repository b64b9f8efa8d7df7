//! Single-file snapshots of a node's data, for backups and file-based replication.
//!
//! A snapshot is a RocksDB checkpoint packed with `tar` and compressed with zstd. A
//! checkpoint is a consistent point in time (hard links to the live SST files plus a
//! fresh MANIFEST), and since every op commits as one write batch together with its
//! log entry and `applied_seq`, no op is ever half in a snapshot. A marker file,
//! `NEEDLE_SNAPSHOT.json`, records the format and the last applied sequence number,
//! so a restore can refuse files that are not needle snapshots.
//!
//! Both directions write under a temporary name and rename into place: a reader
//! (rsync, a restoring node) never sees half a snapshot, and a failed restore leaves
//! no data directory behind.

use crate::error::{Error, Result};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MARKER: &str = "NEEDLE_SNAPSHOT.json";
const FORMAT: u32 = 1;
/// zstd's default level: SST files are already LZ4-compressed, so higher levels buy
/// little and cost a lot of CPU on a live node.
const ZSTD_LEVEL: i32 = 3;

/// What a snapshot file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub format: u32,
    /// The last operation the snapshot contains.
    pub applied_seq: u64,
    pub created_unix_ms: u64,
    /// Where the log that ordered the snapshot's data stood (a Raft member's applied
    /// id and membership), opaque here: see [`crate::meta_keys::ORDER_MARKER`].
    #[serde(
        default,
        rename = "raft_applied",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_marker: Option<serde_json::Value>,
}

/// A snapshot just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenSnapshot {
    #[serde(flatten)]
    pub info: SnapshotInfo,
    pub path: PathBuf,
    pub bytes: u64,
}

fn failed(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Snapshot(format!("{context}: {e}"))
}

/// A fresh directory name beside `path` (same filesystem, so checkpoints can hard-link
/// and restores can rename).
pub(crate) fn scratch_beside(path: &Path, purpose: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidRequest(format!("{} has no file name", path.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut scratch = name.to_os_string();
    scratch.push(format!(".{purpose}-{}-{nanos}", std::process::id()));
    Ok(path.with_file_name(scratch))
}

/// `out` must name a file in an existing directory.
fn check_out_path(out: &Path) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::InvalidRequest(format!(
            "snapshot output {}: directory {} does not exist",
            out.display(),
            parent.display()
        )));
    }
    if out.is_dir() {
        return Err(Error::InvalidRequest(format!(
            "snapshot output {} is a directory",
            out.display()
        )));
    }
    Ok(())
}

/// Checkpoints `store` (the database at `data`) and packs the checkpoint into `out`,
/// replacing any file there atomically.
pub(crate) fn write(store: &Store, data: &Path, out: &Path) -> Result<WrittenSnapshot> {
    check_out_path(out)?;
    let scratch = scratch_beside(data, "checkpoint")?;
    let result = (|| {
        store.checkpoint(&scratch)?;
        let checkpoint = Store::open_read_only(&scratch)?;
        let applied_seq = checkpoint.applied_seq()?;
        let order_marker = checkpoint.meta_json(crate::meta_keys::ORDER_MARKER)?;
        drop(checkpoint);
        let info = SnapshotInfo {
            format: FORMAT,
            applied_seq,
            order_marker,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let marker = serde_json::to_vec(&info).map_err(|e| Error::Snapshot(e.to_string()))?;
        fs::write(scratch.join(MARKER), marker).map_err(failed("writing the marker"))?;
        let bytes = pack(&scratch, out)?;
        Ok(WrittenSnapshot {
            info,
            path: out.to_path_buf(),
            bytes,
        })
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// tar + zstd of `dir` into `out`, via a temporary file renamed into place.
fn pack(dir: &Path, out: &Path) -> Result<u64> {
    let tmp = scratch_beside(out, "partial")?;
    let result = (|| {
        let file = File::create(&tmp).map_err(failed(format!("creating {}", tmp.display())))?;
        let mut encoder = zstd::Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
            .map_err(failed("starting zstd"))?;
        {
            let mut archive = tar::Builder::new(&mut encoder);
            archive
                .append_dir_all(".", dir)
                .map_err(failed("packing the checkpoint"))?;
            archive.finish().map_err(failed("packing the checkpoint"))?;
        }
        let file = encoder
            .finish()
            .map_err(failed("finishing zstd"))?
            .into_inner()
            .map_err(|e| Error::Snapshot(format!("writing {}: {}", tmp.display(), e.error())))?;
        file.sync_all().map_err(failed("syncing the snapshot"))?;
        let bytes = file
            .metadata()
            .map_err(failed("sizing the snapshot"))?
            .len();
        fs::rename(&tmp, out).map_err(failed(format!("renaming into {}", out.display())))?;
        crate::durable::sync_parent(out).map_err(failed("syncing the snapshot's directory"))?;
        Ok(bytes)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Unpacks `snapshot` into a new data directory `data` (absent or empty), checking
/// that it is a needle snapshot whose store opens and matches its marker.
pub fn restore(snapshot: &Path, data: &Path) -> Result<SnapshotInfo> {
    if data.exists() {
        let empty = data.is_dir()
            && fs::read_dir(data)
                .map_err(failed(format!("reading {}", data.display())))?
                .next()
                .is_none();
        if !empty {
            return Err(Error::InvalidRequest(format!(
                "restore target {} exists and is not an empty directory",
                data.display()
            )));
        }
    }
    let scratch = scratch_beside(data, "restoring")?;
    let result = (|| {
        let invalid = |context: String| {
            move |e: std::io::Error| Error::InvalidSnapshot(format!("{context}: {e}"))
        };
        let file =
            File::open(snapshot).map_err(invalid(format!("opening {}", snapshot.display())))?;
        let decoder = zstd::Decoder::new(file).map_err(failed("starting zstd"))?;
        tar::Archive::new(decoder)
            .unpack(&scratch)
            .map_err(invalid(format!("unpacking {}", snapshot.display())))?;
        let marker = fs::read(scratch.join(MARKER)).map_err(|_| {
            Error::InvalidSnapshot(format!(
                "{} is not a needle snapshot (no {MARKER})",
                snapshot.display()
            ))
        })?;
        let info: SnapshotInfo = serde_json::from_slice(&marker)
            .map_err(|e| Error::InvalidSnapshot(format!("{MARKER}: {e}")))?;
        if info.format != FORMAT {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot format {} is not supported (this needle reads format {FORMAT})",
                info.format
            )));
        }
        fs::remove_file(scratch.join(MARKER)).map_err(failed("removing the marker"))?;
        let applied = Store::open_read_only(&scratch)
            .and_then(|store| store.applied_seq())
            .map_err(|e| Error::InvalidSnapshot(format!("its store does not open: {e}")))?;
        if applied != info.applied_seq {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot says it holds operations up to {}, its store holds {applied}",
                info.applied_seq
            )));
        }
        // Everything unpacked reaches the disk before the directory takes its final
        // name, and the rename does before anyone is told the restore is done (a
        // reload then switches its pointer and deletes the old state).
        crate::durable::sync_tree(&scratch).map_err(failed("syncing the restored files"))?;
        if data.exists() {
            fs::remove_dir(data).map_err(failed(format!("replacing {}", data.display())))?;
        }
        fs::rename(&scratch, data).map_err(failed(format!("moving into {}", data.display())))?;
        crate::durable::sync_parent(data).map_err(failed("syncing the restored directory"))?;
        Ok(info)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&scratch);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CollectionConfig, VectorRecord};
    use crate::Database;

    fn database_with_vectors(dir: &Path) -> Database {
        let db = Database::open(dir).unwrap();
        let config: CollectionConfig = serde_json::from_value(
            serde_json::json!({"name": "docs", "dimensions": 3, "distance": "euclidean"}),
        )
        .unwrap();
        db.create_collection(config).unwrap();
        let docs = db.collection("docs").unwrap();
        let records = (0..50)
            .map(|i| VectorRecord::new(format!("v{i}"), vec![i as f32, 1.0, -1.0]))
            .collect();
        docs.upsert(records).unwrap();
        db
    }

    #[test]
    fn a_restored_snapshot_holds_every_committed_vector() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        let db = database_with_vectors(&live);
        let file = tmp.path().join("snap.needle");
        let written = db.write_snapshot(&file).unwrap();
        assert_eq!(written.info.applied_seq, db.applied_seq());
        assert!(written.bytes > 0);

        let restored_dir = tmp.path().join("restored");
        let info = restore(&file, &restored_dir).unwrap();
        assert_eq!(info, written.info);
        let restored = Database::open(&restored_dir).unwrap();
        assert_eq!(restored.applied_seq(), db.applied_seq());
        let docs = restored.collection("docs").unwrap();
        for i in 0..50 {
            let record = docs.get(&format!("v{i}")).unwrap();
            assert_eq!(record.vector, vec![i as f32, 1.0, -1.0]);
        }
        // Nothing but the two directories and the file: scratch space is cleaned up.
        let mut names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["live", "restored", "snap.needle"]);
    }

    #[test]
    fn a_restore_is_on_disk_before_it_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let db = database_with_vectors(&tmp.path().join("live"));
        let file = tmp.path().join("snap.needle");
        db.write_snapshot(&file).unwrap();
        let restored = tmp.path().join("restored");
        crate::durable::SYNCED.with(|s| s.borrow_mut().clear());
        restore(&file, &restored).unwrap();
        let synced = crate::durable::SYNCED.with(|s| s.borrow().clone());
        // Each unpacked file was synced (under the scratch name it was unpacked to),
        // and so were the restored directory's parent and the store directory.
        let mut files = 0;
        for entry in fs::read_dir(&restored).unwrap() {
            let name = entry.unwrap().file_name();
            files += 1;
            assert!(
                synced
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str())),
                "{name:?} was never synced: {synced:?}"
            );
        }
        assert!(files > 3, "a store has several files");
        assert_eq!(synced.last().map(PathBuf::as_path), Some(tmp.path()));
    }

    #[test]
    fn restore_refuses_a_non_empty_target_and_garbage_files() {
        let tmp = tempfile::tempdir().unwrap();
        let db = database_with_vectors(&tmp.path().join("live"));
        let file = tmp.path().join("snap.needle");
        db.write_snapshot(&file).unwrap();

        let occupied = tmp.path().join("occupied");
        fs::create_dir(&occupied).unwrap();
        fs::write(occupied.join("keep.txt"), b"mine").unwrap();
        let err = restore(&file, &occupied).unwrap_err();
        assert_eq!(err.code(), "INVALID_REQUEST");
        assert_eq!(fs::read(occupied.join("keep.txt")).unwrap(), b"mine");

        let garbage = tmp.path().join("garbage.needle");
        fs::write(&garbage, b"not a snapshot at all").unwrap();
        let target = tmp.path().join("from-garbage");
        let err = restore(&garbage, &target).unwrap_err();
        assert_eq!(err.code(), "INVALID_SNAPSHOT");
        assert!(!target.exists());

        // A truncated snapshot fails the same way and leaves nothing behind.
        let whole = fs::read(&file).unwrap();
        let truncated = tmp.path().join("truncated.needle");
        fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        let err = restore(&truncated, &target).unwrap_err();
        assert_eq!(err.code(), "INVALID_SNAPSHOT");
        assert!(!target.exists());
        let leftovers = fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".restoring-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn snapshot_output_must_be_a_file_in_an_existing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let db = database_with_vectors(&tmp.path().join("live"));
        let err = db
            .write_snapshot(&tmp.path().join("missing").join("snap"))
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_REQUEST");
        let err = db.write_snapshot(tmp.path()).unwrap_err();
        assert_eq!(err.code(), "INVALID_REQUEST");
    }
}
