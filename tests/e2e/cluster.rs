//! Helpers for tests that run a replicated cluster of `needle` processes over QUIC
//! with mutual TLS: free ports, certificate arguments, role arguments.

use crate::support::{Client, Node};
use serde_json::json;
use std::path::Path;

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tls_args(certs: &Path, node: usize) -> Vec<String> {
    tls_args_trusting(certs, node, &certs.join("ca.pem"))
}

/// Node `node`'s certificate from `certs`, trusting the CA at `ca`.
pub fn tls_args_trusting(certs: &Path, node: usize, ca: &Path) -> Vec<String> {
    let file = |name: String| certs.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("node-{node}.pem")),
        "--tls-key".into(),
        file(format!("node-{node}-key.pem")),
        "--tls-ca".into(),
        ca.display().to_string(),
    ]
}

/// `--role primary` on a free cluster port; returns the arguments and that address.
pub fn primary_args(tls: Vec<String>) -> (Vec<String>, String) {
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut args: Vec<String> = vec![
        "--role".into(),
        "primary".into(),
        "--cluster-addr".into(),
        addr.clone(),
    ];
    args.extend(tls);
    (args, addr)
}

/// `--role replica` following `primary`, on a free cluster port.
pub fn replica_args(primary: &str, tls: Vec<String>) -> Vec<String> {
    replica_args_at(primary, tls).0
}

/// [`replica_args`] and the replica's own cluster address (where it serves once
/// promoted).
pub fn replica_args_at(primary: &str, tls: Vec<String>) -> (Vec<String>, String) {
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut args: Vec<String> = vec![
        "--role".into(),
        "replica".into(),
        "--primary".into(),
        primary.into(),
        "--cluster-addr".into(),
        addr.clone(),
    ];
    args.extend(tls);
    (args, addr)
}

pub fn start(data: &Path, args: &[String]) -> Node {
    start_with_env(data, args, &[])
}

pub fn start_with_env(data: &Path, args: &[String], env: &[(String, String)]) -> Node {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start_with_env(data, &args, env)
}

pub fn caught_up(primary: &Node, replica: &Node) -> bool {
    let p = primary.client().get("/replication/status").1;
    let r = replica.client().get("/replication/status").1;
    r["applied_seq"].as_u64().is_some_and(|a| a > 0)
        && r["applied_seq"] == p["applied_seq"]
        && r["stream"]["lag"]["operations"] == json!(0)
}

/// Creates the collection `docs` every cluster test uses.
pub fn create_docs(c: &Client, dims: usize, distance: &str) {
    let created = c.post(
        "/collections",
        &json!({"name": "docs", "dimensions": dims, "distance": distance}),
    );
    assert_eq!(created.0, 201, "{}", created.1);
}

/// A primary and two replicas under `dir`, with mutual TLS; `extra(n)` is appended
/// to node n's arguments (1: the primary).
pub struct Trio {
    pub p: Node,
    pub r1: Node,
    pub r2: Node,
    /// Cluster addresses.
    pub p_addr: String,
    pub r1_addr: String,
    pub r2_addr: String,
}

pub fn trio(dir: &Path, extra: impl Fn(usize) -> Vec<String>) -> Trio {
    let certs = dir.join("certs");
    needle_transport::certs::generate_cluster(&certs, 3, &[]).expect("certs");
    let (mut args, p_addr) = primary_args(tls_args(&certs, 1));
    args.extend(extra(1));
    let p = start(&dir.join("p"), &args);
    let (mut args, r1_addr) = replica_args_at(&p_addr, tls_args(&certs, 2));
    args.extend(extra(2));
    let r1 = start(&dir.join("r1"), &args);
    let (mut args, r2_addr) = replica_args_at(&p_addr, tls_args(&certs, 3));
    args.extend(extra(3));
    let r2 = start(&dir.join("r2"), &args);
    Trio {
        p,
        r1,
        r2,
        p_addr,
        r1_addr,
        r2_addr,
    }
}
