//! A Raft cluster of real `needle serve --raft` processes with mutual TLS, for the
//! Raft tests: start, find the leader, kill, pause and partition members.

use crate::cluster::{free_udp_port, tls_args};
use crate::support::{wait_for, Client, Node};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Certificates made beyond the first members: node-(n+1) … node-(n+SPARE_IDENTITIES).
pub const SPARE_IDENTITIES: usize = 12;

pub struct RaftCluster {
    /// `None` while a member is down.
    pub nodes: Vec<Option<Node>>,
    /// Cluster (QUIC) addresses, by member index; node ids are index + 1.
    pub addrs: Vec<String>,
    args: Vec<Vec<String>>,
    dirs: Vec<PathBuf>,
    root: PathBuf,
    extra: Vec<String>,
    /// Environment of every member process (e.g. FAILPOINTS for planted bugs).
    env: Vec<(String, String)>,
}

impl RaftCluster {
    /// `n` members under `dir`; `extra` is appended to every member's arguments.
    pub fn start(dir: &Path, n: usize, extra: &[&str]) -> RaftCluster {
        RaftCluster::start_with_env(dir, n, extra, &[])
    }

    /// `n` members under `dir` with the `docs` collection (3-d, dot) and `written`
    /// upserted through the leader, every one acknowledged; and the leader.
    pub fn start_with_docs(dir: &Path, n: usize, written: &[String]) -> (RaftCluster, usize) {
        let cluster = RaftCluster::start(dir, n, &[]);
        let leader = cluster.leader();
        crate::cluster::create_docs(&cluster.client(leader), 3, "dot");
        assert!(write_ids(&cluster.client(leader), written)
            .iter()
            .all(|s| *s == 200));
        (cluster, leader)
    }

    /// [`RaftCluster::start`] with `env` set for every member process.
    pub fn start_with_env(
        dir: &Path,
        n: usize,
        extra: &[&str],
        env: &[(String, String)],
    ) -> RaftCluster {
        RaftCluster::start_with_member_env(dir, n, extra, env, |_| Vec::new())
    }

    /// [`RaftCluster::start_with_env`], plus `member_env(i)` for member `i` alone.
    pub fn start_with_member_env(
        dir: &Path,
        n: usize,
        extra: &[&str],
        env: &[(String, String)],
        member_env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> RaftCluster {
        let certs = dir.join("certs");
        // Spare identities for members added later, and client certificates
        // (`client-1`, `client-2`) for native clients.
        needle_transport::certs::generate_cluster_with_clients(
            &certs,
            n + SPARE_IDENTITIES,
            2,
            &[],
        )
        .expect("certs");
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_udp_port()))
            .collect();
        let mut args = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let peers: Vec<String> = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("{}={}", j + 1, addrs[j]))
                .collect();
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            args.push(member_args(i + 1, &addrs[i], &peers, &certs, &extra));
            dirs.push(dir.join(format!("n{}", i + 1)));
        }
        let nodes = (0..n)
            .map(|i| {
                let mut env = env.to_vec();
                env.extend(member_env(i));
                Some(crate::cluster::start_with_env(&dirs[i], &args[i], &env))
            })
            .collect();
        RaftCluster {
            nodes,
            addrs,
            args,
            dirs,
            root: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
        }
    }

    /// Starts one more member, fresh, naming the current ones as its peers: it waits
    /// to be added (`needle cluster add-node`). Returns its index.
    pub fn start_joiner(&mut self) -> usize {
        let i = self.nodes.len();
        let addr = format!("127.0.0.1:{}", free_udp_port());
        let peers: Vec<String> = (0..i)
            .map(|j| format!("{}={}", j + 1, self.addrs[j]))
            .collect();
        let a = member_args(i + 1, &addr, &peers, &self.root.join("certs"), &self.extra);
        let dir = self.root.join(format!("n{}", i + 1));
        self.nodes
            .push(Some(crate::cluster::start_with_env(&dir, &a, &self.env)));
        self.addrs.push(addr);
        self.args.push(a);
        self.dirs.push(dir);
        // Its HTTP API answers only once its transport is up.
        assert!(wait_for(Duration::from_secs(30), || self
            .status(i)
            .is_some()));
        i
    }

    /// Whether a spare certificate is left for one more member (the last spare is
    /// kept for clients).
    pub fn can_add_member(&self) -> bool {
        let next_after = self.nodes.len() + 2;
        self.root
            .join("certs")
            .join(format!("node-{next_after}.pem"))
            .exists()
    }

    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].as_ref().expect("member is up").client()
    }

    /// [`RaftCluster::client`] with the members' admin key (fault injection).
    pub fn admin_client(&self, i: usize) -> Client {
        self.nodes[i].as_ref().expect("member is up").admin_client()
    }

    /// A client that gives up quickly, for members that may be paused or cut off.
    pub fn impatient(&self, i: usize) -> Client {
        let url = &self.nodes[i].as_ref().expect("member is up").url;
        Client::with_timeout(url, Duration::from_secs(8))
    }

    pub fn status(&self, i: usize) -> Option<Value> {
        let c = self.nodes[i].as_ref()?;
        let c = Client::with_timeout(&c.url, Duration::from_secs(2));
        match c.try_get("/cluster/status") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// The member index every live member (of `among`) agrees leads, once they do.
    pub fn leader_among(&self, among: &[usize]) -> usize {
        let leader = self.agreed_leader(among, Duration::from_secs(30));
        assert!(
            leader.is_some(),
            "members {among:?} never agreed on a leader among them; their status: {:?}",
            among.iter().map(|&i| self.status(i)).collect::<Vec<_>>()
        );
        leader.expect("leader")
    }

    /// The leader all live members agree on within `timeout`, if they do.
    pub fn leader_within(&self, timeout: Duration) -> Option<usize> {
        self.agreed_leader(&self.live(), timeout)
    }

    fn agreed_leader(&self, among: &[usize], timeout: Duration) -> Option<usize> {
        let mut leader = None;
        wait_for(timeout, || {
            let seen: Vec<Option<u64>> = among
                .iter()
                .map(|&i| self.status(i).and_then(|s| s["leader_id"].as_u64()))
                .collect();
            match seen.first().copied().flatten() {
                Some(id)
                    if seen.iter().all(|s| *s == Some(id))
                        && among.contains(&(id as usize - 1)) =>
                {
                    leader = Some(id as usize - 1);
                    true
                }
                _ => false,
            }
        });
        leader
    }

    /// Every member's HTTP address (`""` for one that is down).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.as_ref().map_or_else(String::new, |n| n.url.clone()))
            .collect()
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    pub fn leader(&self) -> usize {
        self.leader_among(&self.live())
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.kill();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        let env = self.env.clone();
        self.restart_with_env(i, &env);
    }

    /// [`RaftCluster::restart`] with `env` for this member's new process.
    pub fn restart_with_env(&mut self, i: usize, env: &[(String, String)]) {
        self.kill(i);
        self.nodes[i] = Some(crate::cluster::start_with_env(
            &self.dirs[i],
            &self.args[i],
            env,
        ));
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.dirs[i]
    }

    /// Cuts the cluster into `sides` (member indexes); every member is told, so each
    /// side drops the other's traffic in both directions.
    pub fn partition(&self, sides: &[&[usize]]) {
        let partitions: Vec<Vec<String>> = sides
            .iter()
            .map(|side| side.iter().map(|&i| self.addrs[i].clone()).collect())
            .collect();
        for i in self.live() {
            let r = self.admin_client(i).post(
                "/debug/faults",
                &json!({"partitions": partitions, "seed": 7}),
            );
            assert_eq!(r.0, 200, "{}", r.1);
        }
    }

    pub fn heal(&self) {
        for i in self.live() {
            let r = self.admin_client(i).delete("/debug/faults");
            assert_eq!(r.0, 200, "{}", r.1);
        }
    }

    /// Waits until every live member holds the same `docs` collection.
    pub fn converged(&self) -> bool {
        wait_for(Duration::from_secs(30), || {
            let sums: Vec<Value> = self
                .live()
                .iter()
                .map(|&i| self.client(i).get("/collections/docs/checksum").1["checksum"].clone())
                .collect();
            sums.iter().all(|s| s.is_string() && *s == sums[0])
        })
    }
}

/// `needle serve` arguments of member `id` (CPU backend, mutual TLS).
fn member_args(
    id: usize,
    addr: &str,
    peers: &[String],
    certs: &Path,
    extra: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--raft".into(),
        "--node-id".into(),
        id.to_string(),
        "--cluster-addr".into(),
        addr.to_string(),
        "--backend".into(),
        "cpu".into(),
    ];
    // A one-member cluster has no peers to name.
    if !peers.is_empty() {
        args.extend(["--peers".into(), peers.join(",")]);
    }
    args.extend(tls_args(certs, id));
    args.extend(extra.iter().cloned());
    args
}

/// `n` ids `prefix-0`, `prefix-1`, …
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Upserts `ids` into `docs` through `c` (3-d vectors), one request each; returns the
/// statuses.
pub fn write_ids(c: &Client, ids: &[String]) -> Vec<u16> {
    ids.iter()
        .enumerate()
        .map(|(n, id)| {
            let v = [n as f32 + 1.0, 1.0, 0.5];
            match c.try_post(
                "/collections/docs/vectors/batch",
                &json!({"vectors": [{"id": id, "vector": v}]}),
            ) {
                Ok((status, _)) => status,
                Err(_) => 0,
            }
        })
        .collect()
}
