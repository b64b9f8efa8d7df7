//! The peer of the Raft benchmark: a three-member etcd cluster (Debian's
//! `etcd-server`, installed by `scripts/setup-bench-peers.sh`) on loopback, driven
//! over its HTTP/JSON gateway by the same client and the same values as needle.
//! Timings as the issue states them for etcd: election timeout 300 ms, heartbeat
//! 50 ms. Its peer links are plain TCP (needle's are mutual TLS): the comparison
//! favours etcd there.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Client;

/// The etcd binary, when installed.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("NEEDLE_BENCH_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    path.exists().then_some(path)
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub struct EtcdCluster {
    binary: PathBuf,
    /// `None` while a member is down.
    procs: Vec<Option<Child>>,
    pub client_urls: Vec<String>,
    peer_urls: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl EtcdCluster {
    /// Three members under `dir`, running once each has answered.
    pub fn start(binary: PathBuf, dir: &Path) -> EtcdCluster {
        let n = 3;
        let client_urls: Vec<String> = (0..n)
            .map(|_| format!("http://127.0.0.1:{}", free_tcp_port()))
            .collect();
        let peer_urls: Vec<String> = (0..n)
            .map(|_| format!("http://127.0.0.1:{}", free_tcp_port()))
            .collect();
        let dirs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("etcd-{i}"))).collect();
        let mut cluster = EtcdCluster {
            binary,
            procs: (0..n).map(|_| None).collect(),
            client_urls,
            peer_urls,
            dirs,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            assert!(
                cluster.wait_healthy(i, Duration::from_secs(30)),
                "etcd member {i} did not start"
            );
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .peer_urls
            .iter()
            .enumerate()
            .map(|(j, url)| format!("e{j}={url}"))
            .collect();
        let child = Command::new(&self.binary)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .args(["--listen-client-urls", &self.client_urls[i]])
            .args(["--advertise-client-urls", &self.client_urls[i]])
            .args(["--listen-peer-urls", &self.peer_urls[i]])
            .args(["--initial-advertise-peer-urls", &self.peer_urls[i]])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "300"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        self.procs[i] = Some(child);
    }

    fn wait_healthy(&self, i: usize, within: Duration) -> bool {
        let client = Client::with_timeout(&self.client_urls[i], Duration::from_millis(500));
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok((200, _)) = client.try_post("/v3/maintenance/status", &json!({})) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].is_some())
            .collect()
    }

    /// The member that reports itself leader; waits for one.
    pub fn leader(&self) -> usize {
        let started = Instant::now();
        loop {
            for i in self.live() {
                if self.is_leader(i) {
                    return i;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd elected no leader"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_leader(&self, i: usize) -> bool {
        let client = Client::with_timeout(&self.client_urls[i], Duration::from_millis(500));
        match client.try_post("/v3/maintenance/status", &json!({})) {
            Ok((200, s)) => s["leader"] == s["header"]["member_id"],
            _ => false,
        }
    }

    /// The id member `i` has in the cluster.
    pub fn member_id(&self, i: usize) -> Option<String> {
        let client = Client::with_timeout(&self.client_urls[i], Duration::from_millis(500));
        match client.try_post("/v3/maintenance/status", &json!({})) {
            Ok((200, s)) => s["header"]["member_id"].as_str().map(str::to_string),
            _ => None,
        }
    }

    /// Leader changes the members have seen, summed
    /// (`etcd_server_leader_changes_seen_total`).
    pub fn leader_changes(&self) -> u64 {
        self.live()
            .iter()
            .map(|&i| {
                let client = Client::with_timeout(&self.client_urls[i], Duration::from_secs(2));
                let text = client.get_text("/metrics").1;
                text.lines()
                    .find_map(|l| l.strip_prefix("etcd_server_leader_changes_seen_total "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map_or(0, |v| v as u64)
            })
            .sum()
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory (it rejoins from its WAL).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        assert!(
            self.wait_healthy(i, Duration::from_secs(30)),
            "etcd member {i} did not restart"
        );
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// The leader id the member behind `client` reports ("0" while it knows none).
pub fn leader_seen_by(client: &Client) -> Option<String> {
    match client.try_post("/v3/maintenance/status", &json!({})) {
        Ok((200, s)) => s["leader"].as_str().map(str::to_string),
        _ => None,
    }
}

/// The etcd request that stores `value` (a needle write body) under `key`.
pub fn put_body(key: &str, value: &Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "key": b64.encode(key),
        "value": b64.encode(value.to_string()),
    })
}
