//! The `needle` command line.

mod address_file;
mod certs;
mod client;
mod cluster;
pub mod exposure;
mod failover;
mod import;
mod serve;
mod serve_mode;
mod snapshot;

use crate::config::LogFormat;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "needle", version, about = "A vector search node")]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, env = "NEEDLE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: open the data directory and serve the HTTP API.
    Serve(Box<serve::ServeArgs>),
    /// Load vectors from a .jsonl, .npy or .fvecs file into a collection.
    Import(import::ImportArgs),
    /// Search a collection on a running node.
    Search(client::SearchArgs),
    /// List the collections of a running node.
    Collections(client::CollectionsArgs),
    /// Development certificates for node-to-node mutual TLS.
    Certs(certs::CertsArgs),
    /// Write a consistent single-file snapshot of a data directory (node running or not).
    Snapshot(snapshot::SnapshotArgs),
    /// Create a data directory from a snapshot file.
    Restore(snapshot::RestoreArgs),
    /// Make a running replica the primary of a new epoch.
    Promote(failover::PromoteArgs),
    /// Make a running node a replica of a new primary, discarding what it never had.
    Demote(failover::DemoteArgs),
    /// The replicas a primary–replica cluster counts.
    Replica(failover::ReplicaArgs),
    /// A Raft cluster: status, membership changes, leadership hand-over.
    Cluster(cluster::ClusterArgs),
}

impl Cli {
    /// The log format from the flag or environment, else from `serve --config`'s file.
    pub fn log_format(&self) -> anyhow::Result<LogFormat> {
        if let Some(f) = self.log_format {
            return Ok(f);
        }
        if let Command::Serve(args) = &self.command {
            if let Some(path) = &args.config {
                return Ok(crate::config::FileConfig::load(path)?
                    .log_format
                    .unwrap_or_default());
            }
        }
        Ok(LogFormat::default())
    }

    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve::run(*args),
            Command::Import(args) => import::run(args),
            Command::Search(args) => client::search(args),
            Command::Collections(args) => client::collections(args),
            Command::Certs(args) => certs::run(args),
            Command::Snapshot(args) => snapshot::snapshot(args),
            Command::Restore(args) => snapshot::restore_snapshot(args),
            Command::Promote(args) => failover::promote(args),
            Command::Demote(args) => failover::demote(args),
            Command::Replica(args) => failover::replica(args),
            Command::Cluster(args) => cluster::run(args),
        }
    }
}
