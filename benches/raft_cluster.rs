//! A three-member Raft cluster of real `needle` processes on loopback (mutual TLS),
//! against one standalone node (the peer) doing the same work in the same run:
//! `cargo bench --bench raft_cluster`.
//! - committed vectors/s, d = 384, batches of 1 and 100 from 64 concurrent clients,
//!   batches of 1000 from 16;
//! - p50/p99 latency of single-vector writes per write concern;
//! - search throughput, linearizable against eventual;
//! - failover: leader SIGKILL → first write a follower acknowledges to a client with
//!   a 100 ms timeout, over 20 kills, against the election alone in the same kills
//!   (`NEEDLE_BENCH_ONLY=failover` runs only this).
//!
//! All processes and the clients share this machine's cores.

#[allow(dead_code)]
#[path = "../tests/e2e/cluster.rs"]
mod cluster;
mod machine;
#[allow(dead_code)]
#[path = "../tests/e2e/raft_cluster.rs"]
mod raft_cluster;
#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

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

/// Vectors/s committed by `clients` threads each sending `per_client` batches of
/// `batch` vectors to `urls` (client i uses urls[i % len]).
fn throughput(urls: &[String], clients: usize, per_client: usize, batch: usize) -> f64 {
    eprintln!("  {clients} clients × {per_client} batches of {batch} to {urls:?}");
    let bodies: Vec<Vec<Value>> = (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|b| batch_body((c * per_client + b) * batch + batch * 1_000_000, batch))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(c, bodies)| {
            let client = Client::new(&urls[c % urls.len()]);
            std::thread::spawn(move || {
                for body in bodies {
                    let (status, answer) = client.post("/collections/docs/vectors/batch", &body);
                    assert_eq!(status, 200, "{answer}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    (clients * per_client * batch) as f64 / started.elapsed().as_secs_f64()
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
        failover(&mut raft);
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

    let mut raft = RaftCluster::start(&dir.path().join("raft"), 3, &[]);
    let leader = raft.leader();
    let leader_url = vec![raft.nodes[leader].as_ref().expect("leader").url.clone()];
    let all_urls: Vec<String> = raft
        .live()
        .iter()
        .map(|&i| raft.nodes[i].as_ref().expect("up").url.clone())
        .collect();
    create_docs(&leader_url[0]);
    let raft_1 = throughput(&leader_url, 64, 50, 1);
    let raft_1_any = throughput(&all_urls, 64, 50, 1);
    let raft_100 = throughput(&leader_url, 64, 4, 100);
    let raft_1000 = throughput(&leader_url, 16, 2, 1000);
    let native_1000 = native_throughput(&raft, 16, 2, 1000);
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

    failover(&mut raft);
}

/// Failover, 20 kills: the leader is SIGKILLed, and a client with a 100 ms timeout
/// writes through one survivor (a follower of the new leader, or the new leader
/// itself) until one write is acknowledged; the killed member
/// is restarted on its address before the next kill, so later kills meet members
/// that were themselves restarted. The peer, in the same run: how long the
/// survivors took to report a new leader (detection and election), so the ratio
/// is what failover costs beyond the election.
fn failover(raft: &mut RaftCluster) {
    let mut failovers = Vec::new();
    let mut elections = Vec::new();
    for kill in 0..20 {
        let leader = raft.leader();
        let survivor = (leader + 1) % 3;
        let url = raft.nodes[survivor].as_ref().expect("up").url.clone();
        let client = Client::with_timeout(&url, Duration::from_millis(100));
        raft.kill(leader);
        let started = Instant::now();
        let watcher = {
            let status = Client::with_timeout(&url, Duration::from_millis(100));
            std::thread::spawn(move || loop {
                if let Ok((200, s)) = status.try_get("/cluster/status") {
                    if s["leader_id"]
                        .as_u64()
                        .is_some_and(|id| id != leader as u64 + 1)
                    {
                        return started.elapsed().as_secs_f64() * 1e3;
                    }
                }
                if started.elapsed() > Duration::from_secs(30) {
                    return f64::NAN;
                }
                std::thread::sleep(Duration::from_millis(10));
            })
        };
        loop {
            let body = batch_body(80_000_000 + kill, 1);
            if let Ok((200, _)) = client.try_post("/collections/docs/vectors/batch", &body) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let statuses: Vec<_> = raft.live().iter().map(|&i| raft.status(i)).collect();
                panic!("no write acknowledged 30 s after kill {kill}: {statuses:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        failovers.push(started.elapsed().as_secs_f64() * 1e3);
        elections.push(watcher.join().expect("watcher"));
        raft.restart(leader);
        assert!(raft.converged(), "members diverged after kill {kill}");
    }
    failovers.sort_by(f64::total_cmp);
    elections.sort_by(f64::total_cmp);
    println!(
        "\nfailover, leader SIGKILL → first write a survivor acknowledges to a 100 ms client, {} kills: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        failovers.len(),
        percentile(&failovers, 0.5),
        percentile(&failovers, 0.99),
        failovers[failovers.len() - 1]
    );
    println!(
        "  peer, same kills: survivor reports a new leader p50 {:.0} ms, p99 {:.0} ms; failover / election at p50 {:.2}",
        percentile(&elections, 0.5),
        percentile(&elections, 0.99),
        percentile(&failovers, 0.5) / percentile(&elections, 0.5)
    );
}
