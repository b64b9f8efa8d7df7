//! Who may call what: API keys, the admin key, HTTPS, and the settings a node
//! refuses to start with.

use crate::support::{assert_error, Client, Node, BIN};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `needle serve ARGS` on a fresh directory and expects it to exit by itself
/// (a refused start) within 30 s; returns its success and stderr. A node that
/// starts anyway is killed and reported as such.
fn serve_expecting_exit(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("NEEDLE_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn needle");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            use std::io::Read;
            let _ = child
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (true, "the node started and kept running".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_reachable_from_the_network_needs_keys_or_says_loudly_it_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = serve_expecting_exit(dir.path(), &["--http", "0.0.0.0:0"], &[]);
    assert!(
        !ok && stderr.contains("--admin-key and --api-key"),
        "{stderr}"
    );
    let (ok, stderr) = serve_expecting_exit(
        dir.path(),
        &["--http", "0.0.0.0:0", "--admin-key", "a"],
        &[],
    );
    assert!(!ok && stderr.contains("--api-key"), "{stderr}");
    let (ok, stderr) = serve_expecting_exit(dir.path(), &["--admin-key", ""], &[]);
    assert!(!ok && stderr.contains("empty"), "{stderr}");
    // Unauthenticated cluster traffic on a reachable address, even from the
    // environment: refused, with no override.
    let (ok, stderr) = serve_expecting_exit(
        dir.path(),
        &["--role", "primary", "--cluster-addr", "0.0.0.0:0"],
        &[("NEEDLE_INSECURE_DEV", "true")],
    );
    assert!(!ok && stderr.contains("loopback only"), "{stderr}");
    // Told so, it starts and says so loudly; loopback clients still reach it.
    let mut child = Command::new(BIN)
        .args(["serve", "--http", "0.0.0.0:0", "--unsafe-no-auth", "--data"])
        .arg(dir.path().join("unsafe"))
        .env_remove("NEEDLE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn needle");
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut warned = false;
    let mut port = None;
    use std::io::BufRead;
    for line in stderr.lines().map_while(Result::ok) {
        warned |= line.contains("WARNING: --unsafe-no-auth");
        if let Some(at) = line.find("listening on http://0.0.0.0:") {
            port = Some(
                line[at + "listening on http://0.0.0.0:".len()..]
                    .trim()
                    .to_string(),
            );
            break;
        }
    }
    let port = port.expect("the node did not start");
    assert!(warned, "no loud warning");
    let c = Client::new(&format!("http://127.0.0.1:{port}"));
    assert_eq!(c.get("/health").0, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn data_routes_take_api_keys_and_admin_routes_the_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &[
            "--api-key",
            "rw-key",
            "--read-only-api-key",
            "ro-key",
            "--admin-key",
            "admin-key",
            "--fault-injection",
        ],
    );
    let open = node.client();
    let rw = node.client().with_bearer("rw-key");
    let ro = node.client().with_bearer("ro-key");
    let admin = node.client().with_bearer("admin-key");
    let create = json!({"name": "k", "dimensions": 2, "distance": "dot"});
    assert_error(&open.post("/collections", &create), 401, "UNAUTHORIZED");
    assert_error(&ro.post("/collections", &create), 403, "FORBIDDEN");
    assert_error(
        &node
            .client()
            .with_bearer("guess")
            .post("/collections", &create),
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(rw.post("/collections", &create).0, 201);
    // `api-key:` works as well as a bearer token.
    let (status, _) = open.post_with_header(
        "/collections/k/vectors",
        ("api-key", "rw-key"),
        &json!({"id": "a", "vector": [1, 0]}),
    );
    assert_eq!(status, 201);
    assert_error(&open.get("/collections/k"), 401, "UNAUTHORIZED");
    assert_eq!(ro.get("/collections/k").1["count"], 1);
    let search = json!({"vector": [1, 0], "k": 1});
    assert_eq!(
        ro.post("/collections/k/search", &search).1["results"][0]["id"],
        "a"
    );
    assert_error(&ro.delete("/collections/k/vectors/a"), 403, "FORBIDDEN");
    // Admin routes: the admin key only; an API key is not enough.
    assert_error(&rw.get("/debug/faults"), 401, "UNAUTHORIZED");
    assert_error(&open.delete("/debug/faults"), 401, "UNAUTHORIZED");
    assert_eq!(admin.get("/debug/faults").0, 200);
    assert_error(
        &rw.post("/admin/snapshot", &json!({"name": "s"})),
        401,
        "UNAUTHORIZED",
    );
    // The admin key also opens the data routes.
    assert_eq!(admin.get("/collections/k").0, 200);
    // Health and metrics stay open (without --protect-metrics).
    assert_eq!(open.get("/health").0, 200);
    assert_eq!(open.get_text("/metrics").0, 200);
}

#[test]
fn protected_metrics_need_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &[
            "--api-key",
            "rw",
            "--read-only-api-key",
            "ro",
            "--protect-metrics",
        ],
    );
    assert_error(&node.client().get("/health"), 401, "UNAUTHORIZED");
    assert_eq!(node.client().get_text("/metrics").0, 401);
    assert_eq!(node.client().with_bearer("ro").get("/health").0, 200);
    assert_eq!(node.client().with_bearer("ro").get_text("/metrics").0, 200);
}

#[test]
fn https_serves_the_api_and_the_cli_follows_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    // A node certificate names localhost and 127.0.0.1: good for an HTTPS listener.
    needle_transport::certs::generate_cluster(&certs, 1, &[]).unwrap();
    let cert = certs.join("node-1.pem");
    let key = certs.join("node-1-key.pem");
    let ca = certs.join("ca.pem");
    let node = Node::start(
        &dir.path().join("data"),
        &[
            "--http-tls-cert",
            cert.to_str().unwrap(),
            "--http-tls-key",
            key.to_str().unwrap(),
            "--api-key",
            "k",
        ],
    );
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let c = Client::with_ca(&node.url, &std::fs::read(&ca).unwrap()).with_bearer("k");
    assert_eq!(
        c.post(
            "/collections",
            &json!({"name": "t", "dimensions": 2, "distance": "dot"})
        )
        .0,
        201
    );
    assert_eq!(
        c.post(
            "/collections/t/vectors",
            &json!({"id": "a", "vector": [1, 0]})
        )
        .0,
        201
    );
    // The load balancer reaches it the same way: https, the CA, the key.
    let balancer = needle::replication::LoadBalancer::with_options(
        vec![node.url.clone()],
        needle::replication::LoadBalancerOptions {
            ca_pem: Some(std::fs::read(&ca).unwrap()),
            api_key: Some("k".into()),
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hits = runtime
        .block_on(balancer.search("t", &[1.0, 0.0], 1, None))
        .unwrap();
    assert_eq!(hits[0].id, "a");
    let keyless = needle::replication::LoadBalancer::with_options(
        vec![node.url.clone()],
        needle::replication::LoadBalancerOptions {
            ca_pem: Some(std::fs::read(&ca).unwrap()),
            api_key: None,
        },
    )
    .unwrap();
    let refused = runtime.block_on(keyless.search("t", &[1.0, 0.0], 1, None));
    assert_eq!(refused.unwrap_err().code(), "UNAUTHORIZED");
    // Plain HTTP on the TLS port gets nothing.
    let plain = Client::with_timeout(
        &node.url.replace("https://", "http://"),
        Duration::from_secs(5),
    );
    assert!(!matches!(plain.try_get("/health"), Ok((200, _))));
    // The command line: https:// with the CA file and the key.
    let (ok, stdout, stderr) = crate::support::needle(&[
        "collections",
        "--url",
        &node.url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--api-key",
        "k",
    ]);
    assert!(
        ok && stdout.lines().any(|l| l.starts_with("t ")),
        "{stdout}{stderr}"
    );
    let (ok, _, stderr) = crate::support::needle(&["collections", "--url", &node.url]);
    assert!(!ok && stderr.contains("--ca-file"), "{stderr}");
}

#[test]
fn a_raft_member_refuses_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::raft_cluster::RaftCluster::start(dir.path(), 1, &["--admin-key", "k"]);
    let resp = cluster
        .admin_client(0)
        .post("/reload", &json!({"from": "anything.snap"}));
    assert_error(&resp, 409, "ROLE_CONFLICT");
}
