//! Where a data directory's RocksDB store lives.
//!
//! A data directory is either a store itself (every directory never reloaded) or
//! holds generations `gen-N/`, each a complete store, with the file
//! `NEEDLE_GENERATION` naming the active one. `POST /reload` unpacks a snapshot into
//! the next generation beside the running one, opens it, and only then switches the
//! pointer file by an atomic rename: a crash at any point restarts on either the old
//! state or the new one, never a mix. Generations that are no longer active are
//! removed once nothing has them open.

use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

const POINTER: &str = "NEEDLE_GENERATION";
const PREFIX: &str = "gen-";

fn failed(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Snapshot(format!("{context}: {e}"))
}

/// `gen-N` → N.
fn number(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// The active generation's name, `None` when the directory is a store itself.
fn active_name(data: &Path) -> Result<Option<String>> {
    match fs::read_to_string(data.join(POINTER)) {
        Ok(text) => {
            let name = text.trim().to_string();
            if number(&name).is_none() {
                return Err(Error::Corrupt(format!(
                    "{} names {name:?}, not a generation",
                    data.join(POINTER).display()
                )));
            }
            Ok(Some(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Corrupt(format!(
            "reading {}: {e}",
            data.join(POINTER).display()
        ))),
    }
}

/// The directory of the store a node on `data` opens.
pub(crate) fn active_store(data: &Path) -> Result<PathBuf> {
    Ok(match active_name(data)? {
        Some(name) => data.join(name),
        None => data.to_path_buf(),
    })
}

/// A fresh directory for the next generation: its name and path (not created).
pub(crate) fn next_generation(data: &Path) -> Result<(String, PathBuf)> {
    let mut n = active_name(data)?
        .and_then(|name| number(&name))
        .unwrap_or(0)
        + 1;
    loop {
        let name = format!("{PREFIX}{n}");
        let path = data.join(&name);
        if !path.exists() {
            return Ok((name, path));
        }
        n += 1;
    }
}

/// Makes `name` the generation the next start opens (write, sync, rename, sync dir).
/// The generation's own files must already be on disk (`snapshot::restore` syncs
/// them), since after this the old generation may be deleted.
pub(crate) fn activate(data: &Path, name: &str) -> Result<()> {
    crate::durable::replace_file(&data.join(POINTER), name.as_bytes())
        .map_err(failed("switching the generation pointer"))
}

/// Removes every store under `data` but the active one. A store still open in this
/// process stays (RocksDB refuses to destroy a locked store) and goes on a later
/// call: after the next reload, or at the next start.
pub(crate) fn remove_inactive(data: &Path) {
    let active = match active_name(data) {
        Ok(Some(name)) => name,
        // No generations: the directory itself is the only store.
        Ok(None) | Err(_) => return,
    };
    let stale = fs::read_dir(data)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| number(name).is_some() && *name != active)
        .map(|name| data.join(name));
    for dir in stale {
        match rocksdb::DB::destroy(&rocksdb::Options::default(), &dir) {
            Ok(()) => {
                if let Err(e) = fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an old generation");
                } else {
                    tracing::info!(dir = %dir.display(), "removed an old generation");
                }
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "old generation still open")
            }
        }
    }
    // The store the directory held before its first reload.
    if data.join("CURRENT").is_file() {
        match rocksdb::DB::destroy(&rocksdb::Options::default(), data) {
            Ok(()) => tracing::info!(dir = %data.display(), "removed the pre-reload store"),
            Err(e) => {
                tracing::debug!(dir = %data.display(), error = %e, "pre-reload store still open")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_its_own_store_until_a_generation_is_activated() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        assert_eq!(active_store(data).unwrap(), data);
        let (name, path) = next_generation(data).unwrap();
        assert_eq!(name, "gen-1");
        fs::create_dir(&path).unwrap();
        activate(data, &name).unwrap();
        assert_eq!(active_store(data).unwrap(), data.join("gen-1"));
        // A leftover directory from a reload that crashed before switching is skipped.
        fs::create_dir(data.join("gen-2")).unwrap();
        assert_eq!(next_generation(data).unwrap().0, "gen-3");
        remove_inactive(data);
        assert!(!data.join("gen-2").exists());
        assert!(data.join("gen-1").exists());
    }

    #[test]
    fn a_pointer_naming_something_else_is_an_error_not_a_guess() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(POINTER), "../elsewhere").unwrap();
        assert_eq!(
            active_store(tmp.path()).unwrap_err().code(),
            "STORAGE_CORRUPT"
        );
    }
}
