//! `needle cluster ...`: look at and change a running Raft cluster through any of
//! its members.

use super::client::{check, AdminTarget};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Any member of the cluster, and its admin key (`status` needs none)
    #[command(flatten)]
    pub target: AdminTarget,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, commit index and every member with its lag.
    Status,
    /// Add a running member (started with --raft and this cluster in its --peers):
    /// it catches up as a learner, then becomes a voter.
    AddNode {
        /// The new member's cluster (QUIC) address
        #[arg(long)]
        cluster_addr: String,
    },
    /// Remove a member.
    RemoveNode {
        #[arg(long)]
        node_id: u64,
    },
    /// Make the leader hand leadership to a member (`--to`) or to its most
    /// up-to-date follower.
    StepDown {
        /// The voter that should lead next.
        #[arg(long)]
        to: Option<u64>,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let node = args.target.node()?;
    let request = match &args.command {
        ClusterCommand::Status => node.get("/cluster/status"),
        ClusterCommand::AddNode { cluster_addr } => node
            .post("/cluster/members")
            .json(&serde_json::json!({ "cluster_addr": cluster_addr })),
        ClusterCommand::RemoveNode { node_id } => {
            node.delete(&format!("/cluster/members/{node_id}"))
        }
        ClusterCommand::StepDown { to } => {
            // Only the leader can hand leadership over: find it first.
            let status = check(node.get("/cluster/status").send()?)?;
            let leader = status["leader_id"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("the cluster has no leader right now"))?;
            let http_addr = status["peers"]
                .as_array()
                .and_then(|peers| peers.iter().find(|p| p["id"].as_u64() == Some(leader)))
                .and_then(|p| p["http_addr"].as_str())
                .ok_or_else(|| anyhow::anyhow!("no HTTP address known for leader {leader}"))?
                .to_string();
            let leader_node = node.at_host(&http_addr);
            match to {
                Some(to) => leader_node.post(&format!("/cluster/step-down?to={to}")),
                None => leader_node.post("/cluster/step-down"),
            }
        }
    };
    let answer = check(request.send()?)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
