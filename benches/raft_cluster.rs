//! A three-member Raft cluster of real `needle` processes on loopback (mutual TLS),
//! against one standalone node (the peer) doing the same work in the same run:
//! `cargo bench --bench raft_cluster`.
//! - committed vectors/s, d = 384, batches of 1 and 100 from 64 concurrent clients,
//!   batches of 1000 from 16;
//! - p50/p99 latency of single-vector writes per write concern;
//! - search throughput, linearizable against eventual;
//! - failover: leader SIGKILL → first write a follower acknowledges to a client with
//!   a 100 ms timeout, over 20 kills, against the election alone in the same kills
//!   (`NEEDLE_BENCH_ONLY=failover` runs only this);
//! - the peer for single writes and failover, when installed
//!   (`scripts/setup-bench-peers.sh`): a three-member etcd 3.4 cluster, same box,
//!   same client and values, same probe;
//! - `NEEDLE_BENCH_ONLY=batches`: batches of 1000 alone, raft and standalone, with
//!   where each member's time went; `NEEDLE_BENCH_MEMBERS=N` sets the members.
//!
//! All processes and the clients share this machine's cores.

#[allow(dead_code)]
#[path = "../tests/e2e/cluster.rs"]
mod cluster;
mod etcd_cluster;
mod machine;
mod raft_batches;
#[allow(dead_code)]
#[path = "../tests/e2e/raft_cluster.rs"]
mod raft_cluster;
#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use etcd_cluster::EtcdCluster;
use raft_cluster::RaftCluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{Client, Node};

const DIMS: usize = 384;

fn batch_body(start: usize, n: usize) -> Value {
    let data = needle_kernels::reference::pseudo_random_floats(start as u64, n * DIMS);
    let vectors: Vec<Value> = data
        .chunks_exact(DIMS)
        .enumerate()
        .map(|(i, v)| json!({"id": format!("v{}", start + i), "vector": v}))
        .collect();
    json!({ "vectors": vectors })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What a load run measured: items/s and the p50/p99 of its requests, ms.
struct Load {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` threads each POSTing its `bodies` in turn to `path` at `urls` (client
/// i uses urls[i % len]); `items` counted per request.
fn load(urls: &[String], path: &str, bodies: Vec<Vec<Value>>, items: usize) -> Load {
    let requests: usize = bodies.iter().map(Vec::len).sum();
    let started = Instant::now();
    let threads: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(c, bodies)| {
            let client = Client::new(&urls[c % urls.len()]);
            let path = path.to_string();
            std::thread::spawn(move || {
                bodies
                    .into_iter()
                    .map(|body| {
                        let sent = Instant::now();
                        let (status, answer) = client.post(&path, &body);
                        assert_eq!(status, 200, "{answer}");
                        sent.elapsed().as_secs_f64() * 1e3
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    let mut ms: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let per_s = (requests * items) as f64 / started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    Load {
        per_s,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
    }
}

/// needle write bodies: `clients` × `per_client` batches of `batch` vectors.
fn needle_bodies(clients: usize, per_client: usize, batch: usize) -> Vec<Vec<Value>> {
    (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|b| batch_body((c * per_client + b) * batch + batch * 1_000_000, batch))
                .collect()
        })
        .collect()
}

/// Vectors/s committed by `clients` threads each sending `per_client` batches of
/// `batch` vectors to `urls` (client i uses urls[i % len]).
fn throughput(urls: &[String], clients: usize, per_client: usize, batch: usize) -> f64 {
    eprintln!("  {clients} clients × {per_client} batches of {batch} to {urls:?}");
    let bodies = needle_bodies(clients, per_client, batch);
    load(urls, "/collections/docs/vectors/batch", bodies, batch).per_s
}

/// Vectors/s committed through `RaftClient` (binary, over the cluster transport):
/// `clients` tasks, each `per_client` upserts of `batch` vectors.
fn native_throughput(raft: &RaftCluster, clients: usize, per_client: usize, batch: usize) -> f64 {
    use needle::replication::raft::RaftClient;
    use needle::replication::{TlsConfig, WriteConcern};
    let certs = raft
        .data_dir(0)
        .parent()
        .expect("cluster dir")
        .join("certs");
    let tls = TlsConfig {
        cert_path: certs.join("node-4.pem"),
        key_path: certs.join("node-4-key.pem"),
        ca_path: Some(certs.join("ca.pem")),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addrs = raft.addrs.clone();
    runtime.block_on(async move {
        let client = std::sync::Arc::new(RaftClient::with_tls(addrs, tls).expect("client"));
        let batches: Vec<Vec<needle::VectorRecord>> = (0..clients * per_client)
            .map(|b| {
                let data =
                    needle_kernels::reference::pseudo_random_floats(b as u64 + 7, batch * DIMS);
                data.chunks_exact(DIMS)
                    .enumerate()
                    .map(|(i, v)| needle::VectorRecord::new(format!("n{b}-{i}"), v.to_vec()))
                    .collect()
            })
            .collect();
        let mut queues: Vec<Vec<Vec<needle::VectorRecord>>> =
            (0..clients).map(|_| Vec::new()).collect();
        for (b, records) in batches.into_iter().enumerate() {
            queues[b % clients].push(records);
        }
        let started = Instant::now();
        let tasks: Vec<_> = queues
            .into_iter()
            .map(|queue| {
                let client = client.clone();
                tokio::spawn(async move {
                    for records in queue {
                        client
                            .upsert("docs", records, WriteConcern::Majority)
                            .await
                            .expect("upsert");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        (clients * per_client * batch) as f64 / started.elapsed().as_secs_f64()
    })
}

/// p50 and p99 in ms of `n` sequential single-vector writes with `concern`.
fn latency(url: &str, n: usize, concern: &str, offset: usize) -> (f64, f64) {
    let client = Client::new(url);
    let mut ms: Vec<f64> = (0..n)
        .map(|i| {
            let mut body = batch_body(offset + i, 1);
            body["write_concern"] = json!(concern);
            let started = Instant::now();
            let (status, answer) = client.post("/collections/docs/vectors/batch", &body);
            assert_eq!(status, 200, "{answer}");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Searches/s of 16 clients × `per_client` k = 10 searches at `consistency`.
fn searches(urls: &[String], per_client: usize, consistency: &str) -> f64 {
    let queries = needle_kernels::reference::pseudo_random_floats(99, 16 * DIMS);
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|c| {
            let client = Client::new(&urls[c % urls.len()]);
            let body = json!({"vector": &queries[c * DIMS..(c + 1) * DIMS], "k": 10, "consistency": consistency});
            std::thread::spawn(move || {
                for _ in 0..per_client {
                    let (status, answer) = client.post("/collections/docs/search", &body);
                    assert_eq!(status, 200, "{answer}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    (16 * per_client) as f64 / started.elapsed().as_secs_f64()
}

fn create_docs(url: &str) {
    let (status, answer) = Client::new(url).post(
        "/collections",
        &json!({"name": "docs", "dimensions": DIMS, "distance": "cosine"}),
    );
    assert_eq!(status, 201, "{answer}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("machine: {}", machine::describe());
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var("NEEDLE_BENCH_ONLY").as_deref() == Ok("failover") {
        // Failover alone, after a short sustained load (`NEEDLE_BENCH_ONLY=failover`).
        let mut raft = RaftCluster::start(&dir.path().join("raft"), 3, &[]);
        let leader = raft.leader();
        let leader_url = raft.nodes[leader].as_ref().expect("leader").url.clone();
        create_docs(&leader_url);
        let urls: Vec<String> = raft.urls();
        let loaded = throughput(&urls, 16, 50, 1);
        println!("load before the kills: {loaded:.0} vectors/s (batch 1, 16 clients)");
        let mut etcd =
            etcd_cluster::binary().map(|b| EtcdCluster::start(b, &dir.path().join("etcd")));
        if let Some(etcd) = &etcd {
            let bodies = etcd_bodies(16, 50);
            let loaded = load(&etcd.client_urls, "/v3/kv/put", bodies, 1).per_s;
            println!("etcd load before the kills: {loaded:.0} puts/s (16 clients)");
        }
        print_failovers(&mut raft, etcd.as_mut());
        return;
    }

    if std::env::var("NEEDLE_BENCH_ONLY").as_deref() == Ok("batches") {
        raft_batches::run(dir.path());
        return;
    }

    // The peer: one standalone node, same requests.
    let standalone = Node::start(&dir.path().join("standalone"), &["--backend", "cpu"]);
    let solo = vec![standalone.url.clone()];
    create_docs(&solo[0]);
    let solo_1 = throughput(&solo, 64, 50, 1);
    let solo_100 = throughput(&solo, 64, 4, 100);
    let solo_1000 = throughput(&solo, 16, 2, 1000);
    let solo_latency = latency(&solo[0], 300, "majority", 50_000_000);
    let solo_search = searches(&solo, 100, "eventual");
    drop(standalone);

    // 16 concurrent batches of 1000 queue seconds of work on a small machine: a
    // long write timeout keeps queueing from being counted as failures (the
    // standalone peer has no such limit). Leader changes are counted instead.
    let mut raft = RaftCluster::start(
        &dir.path().join("raft"),
        3,
        &["--write-timeout-ms", "30000"],
    );
    let leader = raft.leader();
    let leader_url = vec![raft.nodes[leader].as_ref().expect("leader").url.clone()];
    let term_before = term(&raft);
    let all_urls: Vec<String> = raft
        .live()
        .iter()
        .map(|&i| raft.nodes[i].as_ref().expect("up").url.clone())
        .collect();
    create_docs(&leader_url[0]);
    let raft_single = load(
        &leader_url,
        "/collections/docs/vectors/batch",
        needle_bodies(64, 50, 1),
        1,
    );
    let raft_1 = raft_single.per_s;
    let single_elections = term(&raft).saturating_sub(term_before);
    let batching = raft_batches::batch_sizes(&raft);
    let raft_1_any = throughput(&all_urls, 64, 50, 1);
    let raft_100 = throughput(&leader_url, 64, 4, 100);
    let raft_1000 = throughput(&leader_url, 16, 2, 1000);
    let native_1000 = native_throughput(&raft, 16, 2, 1000);
    let elections_under_load = term(&raft).saturating_sub(term_before);
    let majority = latency(&leader_url[0], 300, "majority", 60_000_000);
    let all = latency(&leader_url[0], 300, "all", 70_000_000);
    let eventual = searches(&all_urls, 100, "eventual");
    let linearizable = searches(&all_urls, 100, "linearizable");

    println!("\ncommitted vectors/s (d = {DIMS}), raft (3 members, to the leader) vs standalone:");
    for (what, r, s) in [
        ("batch 1, 64 clients", raft_1, solo_1),
        ("batch 100, 64 clients", raft_100, solo_100),
        ("batch 1000, 16 clients", raft_1000, solo_1000),
    ] {
        println!(
            "  {what:<24} raft {r:>9.0}/s  standalone {s:>9.0}/s  ratio {:.2}",
            r / s
        );
    }
    println!(
        "  batch 1, 64 clients spread over all members (followers forward): {raft_1_any:.0}/s"
    );
    println!("  terms (elections) during these writes: {elections_under_load}");
    println!(
        "  batch 1000, 16 clients, native RaftClient (binary over QUIC): {native_1000:.0}/s (ratio to standalone HTTP {:.2})",
        native_1000 / solo_1000
    );
    println!("\nsingle-vector write latency, p50 / p99 ms:");
    println!(
        "  standalone            {:>6.2} / {:>6.2}",
        solo_latency.0, solo_latency.1
    );
    println!(
        "  raft majority         {:>6.2} / {:>6.2}",
        majority.0, majority.1
    );
    println!("  raft all              {:>6.2} / {:>6.2}", all.0, all.1);
    println!("\nsearches/s (16 clients over all members, k = 10):");
    println!("  raft eventual {eventual:.0}/s, linearizable {linearizable:.0}/s (ratio {:.2}); standalone {solo_search:.0}/s", linearizable / eventual);

    // The peer for single writes and failover: etcd 3.4, three members, same box,
    // same client and value (one 384-d vector's JSON body per put).
    let mut etcd = etcd_cluster::binary().map(|b| EtcdCluster::start(b, &dir.path().join("etcd")));
    println!("\nsingle-vector writes, 64 connections to the leader, needle vs etcd 3.4 (3 members each):");
    println!(
        "  needle {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  (elections during it: {single_elections})",
        raft_single.per_s, raft_single.p50_ms, raft_single.p99_ms
    );
    println!("  {batching}");
    match &etcd {
        Some(etcd) => {
            let leader = vec![etcd.client_urls[etcd.leader()].clone()];
            let changes_before = etcd.leader_changes();
            let peer = load(&leader, "/v3/kv/put", etcd_bodies(64, 50), 1);
            println!(
                "  etcd   {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  (leader changes during it: {})",
                peer.per_s,
                peer.p50_ms,
                peer.p99_ms,
                etcd.leader_changes().saturating_sub(changes_before)
            );
            println!(
                "  needle / etcd: writes/s {:.2}, p99 {:.2}",
                raft_single.per_s / peer.per_s,
                raft_single.p99_ms / peer.p99_ms
            );
        }
        None => println!("  etcd: not installed (scripts/setup-bench-peers.sh), no ratio"),
    }

    print_failovers(&mut raft, etcd.as_mut());
}

/// The cluster's current term, as its leader reports it.
fn term(raft: &RaftCluster) -> u64 {
    let started = Instant::now();
    loop {
        let leader = raft.leader();
        if let Some(term) = raft.status(leader).and_then(|s| s["term"].as_u64()) {
            return term;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no term reported"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// etcd puts of the same values needle's single-vector writes carry.
fn etcd_bodies(clients: usize, per_client: usize) -> Vec<Vec<Value>> {
    needle_bodies(clients, per_client, 1)
        .into_iter()
        .enumerate()
        .map(|(c, bodies)| {
            bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| etcd_cluster::put_body(&format!("k{c}-{i}"), &body))
                .collect()
        })
        .collect()
}

/// Leader kills per cluster in the failover measurement.
const KILLS: usize = 20;

/// ms from each kill to the first write a survivor acknowledged to a client with a
/// 100 ms timeout, and to the survivor reporting a new leader; sorted by `sort`.
struct Failovers {
    writes: Vec<f64>,
    elections: Vec<f64>,
}

impl Failovers {
    fn new() -> Failovers {
        Failovers {
            writes: Vec::new(),
            elections: Vec::new(),
        }
    }

    /// One kill, `started` when it was done: `try_write` until it is acknowledged,
    /// while `new_leader_seen` is polled on a thread of its own.
    fn measure(
        &mut self,
        started: Instant,
        mut try_write: impl FnMut() -> bool,
        mut new_leader_seen: impl FnMut() -> bool + Send + 'static,
    ) {
        let watcher = std::thread::spawn(move || loop {
            if new_leader_seen() {
                return started.elapsed().as_secs_f64() * 1e3;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return f64::NAN;
            }
            std::thread::sleep(Duration::from_millis(10));
        });
        while !try_write() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no write acknowledged 30 s after a kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.writes.push(started.elapsed().as_secs_f64() * 1e3);
        self.elections.push(watcher.join().expect("watcher"));
    }

    /// Sorts both series, for their percentiles.
    fn sort(&mut self) {
        self.writes.sort_by(f64::total_cmp);
        self.elections.sort_by(f64::total_cmp);
    }

    fn print(&self, who: &str) {
        println!(
            "  {who:<7} first acknowledged write p50 {:>4.0} ms, p99 {:>4.0} ms, max {:>4.0} ms; survivor reports a new leader p50 {:>4.0} ms, p99 {:>4.0} ms; write / election at p50 {:.2}",
            percentile(&self.writes, 0.5),
            percentile(&self.writes, 0.99),
            self.writes[self.writes.len() - 1],
            percentile(&self.elections, 0.5),
            percentile(&self.elections, 0.99),
            percentile(&self.writes, 0.5) / percentile(&self.elections, 0.5)
        );
    }
}

/// Failover, [`KILLS`] kills: the leader is SIGKILLed, and a client with a 100 ms
/// timeout writes through one survivor (a follower of the new leader, or the new
/// leader itself) until one write is acknowledged; the killed member is restarted
/// on its address before the next kill, so later kills meet members that were
/// themselves restarted. Measured with it: how long the survivor took to report a
/// new leader (detection and election), so the ratio is what failover costs beyond
/// the election.
fn failover(raft: &mut RaftCluster) -> Failovers {
    let mut measured = Failovers::new();
    for kill in 0..KILLS {
        let leader = raft.leader();
        let survivor = (leader + 1) % 3;
        let url = raft.nodes[survivor].as_ref().expect("up").url.clone();
        let client = Client::with_timeout(&url, Duration::from_millis(100));
        let status = Client::with_timeout(&url, Duration::from_millis(100));
        raft.kill(leader);
        let started = Instant::now();
        let body = batch_body(80_000_000 + kill, 1);
        measured.measure(
            started,
            || {
                matches!(
                    client.try_post("/collections/docs/vectors/batch", &body),
                    Ok((200, _))
                )
            },
            move || match status.try_get("/cluster/status") {
                Ok((200, s)) => s["leader_id"]
                    .as_u64()
                    .is_some_and(|id| id != leader as u64 + 1),
                _ => false,
            },
        );
        raft.restart(leader);
        assert!(raft.converged(), "members diverged after kill {kill}");
    }
    measured.sort();
    measured
}

/// [`failover`] for the etcd cluster, same probe: a put through a survivor.
fn etcd_failover(etcd: &mut EtcdCluster) -> Failovers {
    let mut measured = Failovers::new();
    for kill in 0..KILLS {
        let leader = etcd.leader();
        let old_id = etcd.member_id(leader).expect("the leader's member id");
        let survivor = (leader + 1) % 3;
        let url = etcd.client_urls[survivor].clone();
        let client = Client::with_timeout(&url, Duration::from_millis(100));
        let status = Client::with_timeout(&url, Duration::from_millis(100));
        let body = etcd_cluster::put_body(&format!("f{kill}"), &batch_body(80_000_000 + kill, 1));
        etcd.kill(leader);
        let started = Instant::now();
        measured.measure(
            started,
            || matches!(client.try_post("/v3/kv/put", &body), Ok((200, _))),
            move || {
                let seen = etcd_cluster::leader_seen_by(&status);
                seen.is_some_and(|id| id != "0" && id != old_id)
            },
        );
        etcd.restart(leader);
    }
    measured.sort();
    measured
}

/// Failover of needle and, when installed, etcd in the same run.
fn print_failovers(raft: &mut RaftCluster, etcd: Option<&mut EtcdCluster>) {
    let needle = failover(raft);
    println!(
        "\nfailover, leader SIGKILL → first write a survivor acknowledges to a 100 ms client, {KILLS} kills each:"
    );
    needle.print("needle");
    match etcd {
        Some(etcd) => {
            let peer = etcd_failover(etcd);
            peer.print("etcd");
            println!(
                "  needle / etcd: first write p50 {:.2}, p99 {:.2}",
                percentile(&needle.writes, 0.5) / percentile(&peer.writes, 0.5),
                percentile(&needle.writes, 0.99) / percentile(&peer.writes, 0.99)
            );
        }
        None => println!("  etcd: not installed (scripts/setup-bench-peers.sh), no ratio"),
    }
}
