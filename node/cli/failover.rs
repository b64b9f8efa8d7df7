//! `needle promote`, `needle demote` and `needle replica forget`: manual failover
//! and membership on a running node of a primary–replica cluster.

use super::client::{check, AdminTarget};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Another replica's cluster address (repeat for each): promotion first takes
    /// what it received and this replica did not
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Promote even if too few nodes are reachable to be sure no write a majority
    /// acknowledged is lost
    #[arg(long)]
    pub force: bool,
    /// The node to promote (a replica)
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(Debug, Args)]
pub struct DemoteArgs {
    /// The new primary's cluster address
    #[arg(long)]
    pub primary: String,
    /// The node to demote (a former primary, or a replica to re-point)
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(Debug, Args)]
pub struct ReplicaArgs {
    #[command(subcommand)]
    pub command: ReplicaCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Forget a retired or re-addressed replica: it no longer counts for
    /// `majority` writes or promotions (until it pulls again). Ask the primary, and
    /// every replica that may be promoted.
    Forget {
        /// The replica's name: its certificate's node name (`node-3`), or its cluster
        /// address for nodes without certificates
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

fn post(target: &AdminTarget, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let answer = check(target.node()?.post(path).json(&body).send()?)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn replica(args: ReplicaArgs) -> anyhow::Result<()> {
    match args.command {
        ReplicaCommand::Forget { name, target } => post(
            &target,
            "/replication/forget",
            serde_json::json!({ "name": name }),
        ),
    }
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    post(
        &args.target,
        "/replication/promote",
        serde_json::json!({ "peers": args.peers, "force": args.force }),
    )
}

pub fn demote(args: DemoteArgs) -> anyhow::Result<()> {
    post(
        &args.target,
        "/replication/demote",
        serde_json::json!({ "primary": args.primary }),
    )
}
