//! Shell conveniences that talk to a running node over HTTP.

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::Value;

pub(super) const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[arg(long)]
    pub collection: String,
    /// The query vector as a JSON array, e.g. '[0.1, 0.2, 0.3]'.
    #[arg(long)]
    pub vector: String,
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// A MongoDB-style filter as JSON.
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long, env = "NEEDLE_URL", default_value = DEFAULT_URL)]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct CollectionsArgs {
    #[arg(long, env = "NEEDLE_URL", default_value = DEFAULT_URL)]
    pub url: String,
}

pub fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()?)
}

/// The JSON body of a successful response, or the server's error code and message.
pub fn check(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let code = body["error"]["code"].as_str().unwrap_or("UNKNOWN");
    let message = body["error"]["message"].as_str().unwrap_or("");
    bail!("{status} {code}: {message}")
}

pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    let vector: Value = serde_json::from_str(&args.vector)
        .map_err(|e| anyhow!("--vector is not a JSON array: {e}"))?;
    let mut body = serde_json::json!({ "vector": vector, "k": args.k });
    if let Some(f) = &args.filter {
        body["filter"] =
            serde_json::from_str(f).map_err(|e| anyhow!("--filter is not JSON: {e}"))?;
    }
    let url = format!(
        "{}/collections/{}/search",
        args.url.trim_end_matches('/'),
        args.collection
    );
    let result = check(http_client()?.post(url).json(&body).send()?)?;
    println!("{}", serde_json::to_string_pretty(&result["results"])?);
    Ok(())
}

pub fn collections(args: CollectionsArgs) -> anyhow::Result<()> {
    let url = format!("{}/collections", args.url.trim_end_matches('/'));
    let result = check(http_client()?.get(url).send()?)?;
    println!(
        "{:<32} {:>10} {:>10} {:>12}",
        "NAME", "DIMENSIONS", "DISTANCE", "COUNT"
    );
    for c in result["collections"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:>10} {:>10} {:>12}",
            c["name"].as_str().unwrap_or(""),
            c["dimensions"],
            c["distance"].as_str().unwrap_or(""),
            c["count"]
        );
    }
    Ok(())
}
