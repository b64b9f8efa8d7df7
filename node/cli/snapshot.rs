//! `needle snapshot` and `needle restore`: single-file copies of a data directory.

use super::address_file::node_url;
use super::client::{check, NodeClient};
use crate::snapshot::{restore, write};
use crate::storage::Store;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Data directory of the node (running or stopped) [default: ./needle-data]
    #[arg(long, env = "NEEDLE_DATA")]
    pub data: Option<PathBuf>,
    /// The snapshot file to write (replaced atomically if it exists)
    #[arg(long)]
    pub out: PathBuf,
    /// The running node's admin key, if it has one
    #[arg(long, env = "NEEDLE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// CA certificates (PEM) the running node's HTTPS certificate chains to
    #[arg(long, env = "NEEDLE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file, from `needle snapshot`
    #[arg(long)]
    pub snapshot: PathBuf,
    /// The data directory to create (absent or empty)
    #[arg(long)]
    pub data: PathBuf,
}

/// A stopped node's directory is opened and checkpointed here; a running node holds
/// the RocksDB lock, so it is asked to write the snapshot itself.
pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    let store_path = crate::generations::active_store(&data)?;
    if !store_path.join("CURRENT").is_file() {
        bail!("{} is not a needle data directory", data.display());
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let written = match Store::open(&store_path) {
        Ok(store) => serde_json::to_value(write(&store, &store_path, &out)?)?,
        Err(e) if is_locked(&e) => ask_running_node(&data, &out, &args)?,
        Err(e) => return Err(e).with_context(|| format!("opening {}", data.display())),
    };
    println!("{}", serde_json::to_string_pretty(&written)?);
    Ok(())
}

fn is_locked(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Storage(inner) if inner.to_string().contains("lock file"))
}

/// The node writes the snapshot into its own snapshot directory (it writes nowhere
/// else); this command then moves it to `out`.
fn ask_running_node(
    data: &Path,
    out: &Path,
    args: &SnapshotArgs,
) -> anyhow::Result<serde_json::Value> {
    let url = node_url(data)?;
    let node = NodeClient::new(&url, args.ca_file.as_deref(), args.admin_key.clone())?;
    let name = format!(
        "cli-{}-{}.snapshot",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let response = node
        .post("/admin/snapshot")
        .json(&serde_json::json!({ "name": name }))
        .send()
        .with_context(|| format!("asking the node that holds {} ({url})", data.display()))?;
    let mut written = check(response)?;
    let made = PathBuf::from(
        written["path"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the node did not say where it wrote the snapshot"))?,
    );
    move_file(&made, out)?;
    written["path"] = serde_json::json!(out);
    Ok(written)
}

/// Renames `from` to `to`, or copies and syncs it when they are on different
/// filesystems; `to` appears whole or not at all.
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let partial = crate::snapshot::scratch_beside(to, "partial")?;
    let copied = std::fs::copy(from, &partial)
        .and_then(|_| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, to));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("moving {} to {}", from.display(), to.display()));
    }
    let _ = std::fs::remove_file(from);
    Ok(())
}

pub fn restore_snapshot(args: RestoreArgs) -> anyhow::Result<()> {
    let info = restore(&args.snapshot, &args.data)
        .with_context(|| format!("restoring {}", args.snapshot.display()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "data": args.data,
            "applied_seq": info.applied_seq,
            "created_unix_ms": info.created_unix_ms,
        }))?
    );
    Ok(())
}
