//! `needle certs generate`: a development CA and node certificates for the
//! transport's mutual TLS.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write ca.pem, ca-key.pem, node-N.pem / node-N-key.pem and (with --clients)
    /// client-N.pem / client-N-key.pem into a directory.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// How many node certificates.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub nodes: u16,
    /// How many client certificates (for `RaftClient`): they authenticate a client
    /// but give it no member's powers (no replication, no Raft RPCs).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub clients: u16,
    /// Extra host names or IP addresses every node certificate also names.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Generate(g) => {
            let files = needle_transport::certs::generate_cluster_with_clients(
                &g.out,
                usize::from(g.nodes),
                usize::from(g.clients),
                &g.hosts,
            )?;
            println!(
                "CA: {} (key {})",
                files.ca_cert.display(),
                files.ca_key.display()
            );
            for (cert, key) in &files.nodes {
                println!("node: {} (key {})", cert.display(), key.display());
            }
            for (cert, key) in &files.clients {
                println!("client: {} (key {})", cert.display(), key.display());
            }
            Ok(())
        }
    }
}
