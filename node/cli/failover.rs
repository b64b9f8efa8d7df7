//! `needle promote` and `needle demote`: manual failover on a running node.

use super::client::{check, http_client};
use clap::Args;

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
    #[arg(long, env = "NEEDLE_URL", default_value = super::client::DEFAULT_URL)]
    pub url: String,
    /// The node's admin key, if it has one
    #[arg(long, env = "NEEDLE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoteArgs {
    /// The new primary's cluster address
    #[arg(long)]
    pub primary: String,
    /// The node to demote (a former primary, or a replica to re-point)
    #[arg(long, env = "NEEDLE_URL", default_value = super::client::DEFAULT_URL)]
    pub url: String,
    /// The node's admin key, if it has one
    #[arg(long, env = "NEEDLE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

fn post(
    url: &str,
    path: &str,
    admin_key: Option<&str>,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let mut request = http_client()?
        .post(format!("{}{path}", url.trim_end_matches('/')))
        .json(&body);
    if let Some(key) = admin_key {
        request = request.bearer_auth(key);
    }
    let answer = check(request.send()?)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    post(
        &args.url,
        "/replication/promote",
        args.admin_key.as_deref(),
        serde_json::json!({ "peers": args.peers, "force": args.force }),
    )
}

pub fn demote(args: DemoteArgs) -> anyhow::Result<()> {
    post(
        &args.url,
        "/replication/demote",
        args.admin_key.as_deref(),
        serde_json::json!({ "primary": args.primary }),
    )
}
