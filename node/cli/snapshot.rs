//! `needle snapshot` and `needle restore`: single-file copies of a data directory.

use super::address_file::node_url;
use super::client::{check, http_client};
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
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    let store_path = crate::generations::active_store(&data)?;
    if !store_path.join("CURRENT").is_file() {
        bail!("{} is not a needle data directory", data.display());
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let written = match Store::open(&store_path) {
        Ok(store) => serde_json::to_value(write(&store, &store_path, &out)?)?,
        Err(e) if is_locked(&e) => ask_running_node(&data, &out, args.admin_key.as_deref())?,
        Err(e) => return Err(e).with_context(|| format!("opening {}", data.display())),
    };
    println!("{}", serde_json::to_string_pretty(&written)?);
    Ok(())
}

fn is_locked(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Storage(inner) if inner.to_string().contains("lock file"))
}

fn ask_running_node(
    data: &Path,
    out: &Path,
    admin_key: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/admin/snapshot", node_url(data)?);
    let mut request = http_client()?
        .post(&url)
        .json(&serde_json::json!({ "out": out }));
    if let Some(key) = admin_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .with_context(|| format!("asking the node that holds {} ({url})", data.display()))?;
    check(response)
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
