//! Shell conveniences that talk to a running node over HTTP or HTTPS.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub(super) const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Where a data command sends its requests, and with what credentials.
#[derive(Debug, Clone, Args)]
pub struct DataTarget {
    /// The node's HTTP API, `http://` or `https://`
    #[arg(long, env = "NEEDLE_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// CA certificates (PEM) an `https://` node's certificate must chain to (a
    /// cluster's own CA, or a system bundle)
    #[arg(long, env = "NEEDLE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The node's API key (read-write, or read-only for reads)
    #[arg(long, env = "NEEDLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl DataTarget {
    pub fn node(&self) -> anyhow::Result<NodeClient> {
        NodeClient::new(&self.url, self.ca_file.as_deref(), self.api_key.clone())
    }
}

/// Where an admin command sends its requests: the admin key instead of an API key.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// The node's HTTP API, `http://` or `https://`
    #[arg(long, global = true, env = "NEEDLE_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// CA certificates (PEM) an `https://` node's certificate must chain to
    #[arg(long, global = true, env = "NEEDLE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The node's admin key, if it has one
    #[arg(long, global = true, env = "NEEDLE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

impl AdminTarget {
    pub fn node(&self) -> anyhow::Result<NodeClient> {
        NodeClient::new(&self.url, self.ca_file.as_deref(), self.admin_key.clone())
    }
}

/// A node's HTTP API: its base URL, a client trusting the right CA, and the key
/// every request carries.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::blocking::Client,
    base: String,
    key: Option<String>,
}

impl NodeClient {
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        key: Option<String>,
    ) -> anyhow::Result<NodeClient> {
        Ok(NodeClient {
            http: http_client(url, ca_file)?,
            base: url.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// The same client and key for another node (`http://` or `https://` as this one).
    pub fn at_host(&self, host_port: &str) -> NodeClient {
        let scheme = if self.base.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        NodeClient {
            base: format!("{scheme}://{host_port}"),
            ..self.clone()
        }
    }

    fn keyed(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.keyed(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.keyed(self.http.post(format!("{}{path}", self.base)))
    }

    pub fn delete(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.keyed(self.http.delete(format!("{}{path}", self.base)))
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

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
    #[command(flatten)]
    pub target: DataTarget,
}

#[derive(Debug, Args)]
pub struct CollectionsArgs {
    #[command(flatten)]
    pub target: DataTarget,
}

/// A blocking client for `url`; an `https://` one trusts exactly the CA
/// certificates in `ca_file`.
pub fn http_client(url: &str, ca_file: Option<&Path>) -> anyhow::Result<reqwest::blocking::Client> {
    let mut builder =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300));
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-file {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-file {}: not PEM certificates", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        None if url.starts_with("https://") => bail!(
            "{url} is HTTPS: pass --ca-file with the CA certificate(s) its certificate chains to"
        ),
        None => {}
    }
    Ok(builder.build()?)
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
    let node = args.target.node()?;
    let result = check(
        node.post(&format!("/collections/{}/search", args.collection))
            .json(&body)
            .send()?,
    )?;
    println!("{}", serde_json::to_string_pretty(&result["results"])?);
    Ok(())
}

pub fn collections(args: CollectionsArgs) -> anyhow::Result<()> {
    let result = check(args.target.node()?.get("/collections").send()?)?;
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
