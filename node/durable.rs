//! Making files survive a power loss: what `fsync` a step needs before the next one
//! may depend on it.
//!
//! A rename is only as durable as the directory that holds it, and a file's data
//! only as durable as its last `fsync`: unpacking a snapshot and then switching a
//! pointer to it (and deleting the old state) without syncing both first can leave,
//! after a power loss, a pointer to files that never reached the disk. Every step
//! that activates new files goes through here.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Flushes a file's data and metadata to disk.
pub(crate) fn sync_file(path: &Path) -> io::Result<()> {
    record(path);
    File::open(path)?.sync_all()
}

/// Flushes a directory's entries (renames, creations, removals in it) to disk.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    record(path);
    File::open(path)?.sync_all()
}

/// [`sync_dir`] of the directory holding `path` (its parent; `.` for a bare name).
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Every file and directory under `dir` (itself included), files first: after this,
/// a tree unpacked into `dir` is on disk.
pub(crate) fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file beside it,
/// synced, renamed over it, and the directory synced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        record(&tmp);
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

// Tests see which paths were synced, in order (a spy on the real calls).
#[cfg(test)]
thread_local! {
    pub(crate) static SYNCED: std::cell::RefCell<Vec<std::path::PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn record(path: &Path) {
    SYNCED.with(|s| s.borrow_mut().push(path.to_path_buf()));
}

#[cfg(not(test))]
fn record(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_synced_file_by_file_then_by_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), b"1").unwrap();
        std::fs::write(root.join("sub").join("b"), b"2").unwrap();
        SYNCED.with(|s| s.borrow_mut().clear());
        sync_tree(&root).unwrap();
        let synced = SYNCED.with(|s| s.borrow().clone());
        for p in [
            root.join("a"),
            root.join("sub").join("b"),
            root.join("sub"),
            root.clone(),
        ] {
            assert!(
                synced.contains(&p),
                "{} not synced: {synced:?}",
                p.display()
            );
        }
        let pos = |p: &Path| synced.iter().position(|s| s == p).unwrap();
        assert!(pos(&root.join("sub").join("b")) < pos(&root.join("sub")));
        assert_eq!(synced.last(), Some(&root));
        replace_file(&root.join("c"), b"3").unwrap();
        assert_eq!(std::fs::read(root.join("c")).unwrap(), b"3");
        assert!(!root.join("c.tmp").exists());
    }
}
