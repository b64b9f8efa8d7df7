//! [`LoadBalancer`]: spreads searches over several nodes' HTTP APIs (replicas of a
//! primary, or members of a Raft cluster), in turn, skipping a node that does not
//! answer. Read scaling without a proxy in front of the fleet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::raft::SearchResult;
use crate::error::ErrorKind;
use crate::replication::error::{ReplicationError, Result};
use crate::Error;

pub struct LoadBalancer {
    bases: Vec<String>,
    http: reqwest::Client,
    next: AtomicUsize,
    api_key: Option<String>,
}

/// How a [`LoadBalancer`] reaches nodes that require more than plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct LoadBalancerOptions {
    /// PEM CA certificates `https://` nodes' certificates chain to.
    pub ca_pem: Option<Vec<u8>>,
    /// The nodes' API key (read-only suffices: it only searches).
    pub api_key: Option<String>,
}

impl LoadBalancer {
    /// Nodes as `host:port`, `http://host:port` or `https://host:port`, with the
    /// CA and key `options` give.
    pub fn with_options<A: AsRef<str>>(
        nodes: Vec<A>,
        options: LoadBalancerOptions,
    ) -> Result<LoadBalancer> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::InvalidRequest(format!("CA certificates: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::InvalidRequest(format!("HTTP client: {e}")))?;
        let mut balancer = LoadBalancer::new(nodes);
        balancer.http = http;
        balancer.api_key = options.api_key;
        Ok(balancer)
    }

    /// Nodes as `host:port` or `http://host:port`.
    pub fn new<A: AsRef<str>>(nodes: Vec<A>) -> LoadBalancer {
        let bases = nodes
            .iter()
            .map(|n| {
                let n = n.as_ref().trim_end_matches('/');
                if n.starts_with("http://") || n.starts_with("https://") {
                    n.to_string()
                } else {
                    format!("http://{n}")
                }
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        LoadBalancer {
            bases,
            http,
            next: AtomicUsize::new(0),
            api_key: None,
        }
    }

    /// `k` nearest neighbours from the next node in turn (eventual consistency).
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Value>,
    ) -> Result<Vec<SearchResult>> {
        if self.bases.is_empty() {
            return Err(
                Error::InvalidRequest("a load balancer needs at least one node".into()).into(),
            );
        }
        let mut body = json!({ "vector": query, "k": k });
        if let Some(filter) = filter {
            body["filter"] = filter.clone();
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = ReplicationError::Http {
            node: "any node".into(),
            detail: "none answered".into(),
        };
        for n in 0..self.bases.len() {
            let base = &self.bases[(first + n) % self.bases.len()];
            let mut request = self
                .http
                .post(format!("{base}/collections/{collection}/search"))
                .json(&body);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let sent = request.send().await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = ReplicationError::Http {
                        node: base.clone(),
                        detail: e.to_string(),
                    };
                    continue;
                }
            };
            let status = response.status();
            let answer: Value = match response.json().await {
                Ok(v) => v,
                Err(e) => {
                    last = ReplicationError::Http {
                        node: base.clone(),
                        detail: format!("unreadable answer: {e}"),
                    };
                    continue;
                }
            };
            if status.is_success() {
                return Ok(results(&answer));
            }
            let error = ReplicationError::Remote {
                code: answer["error"]["code"]
                    .as_str()
                    .unwrap_or("INTERNAL")
                    .to_string(),
                message: answer["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                kind: if status.is_client_error() {
                    ErrorKind::BadRequest
                } else {
                    ErrorKind::Unavailable
                },
            };
            // The request is wrong everywhere; only a node's own trouble moves on.
            if status.is_client_error() {
                return Err(error);
            }
            last = error;
        }
        Err(last)
    }
}

fn results(answer: &Value) -> Vec<SearchResult> {
    answer["results"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| SearchResult {
                    id: h["id"].as_str().unwrap_or_default().to_string(),
                    distance: h["distance"].as_f64().unwrap_or(f64::NAN) as f32,
                    metadata: h["metadata"].as_object().cloned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
