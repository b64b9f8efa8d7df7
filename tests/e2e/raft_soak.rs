//! A long run of random faults on a Raft cluster (`--ignored`).

use crate::cluster::create_docs;
use crate::raft_cluster::{write_ids, RaftCluster};
use serde_json::json;
use std::time::Duration;

/// A longer run of random faults under continuous writes: leader kills and restarts,
/// pauses, isolated members and step-downs, from a printed seed. Afterwards every
/// acknowledged write must be on every member. `NEEDLE_SOAK_SECS` sets the length
/// (default 600); run with `cargo test --release --test e2e raft_soak -- --ignored`.
#[test]
#[ignore]
fn soak_random_faults_lose_no_acknowledged_write() {
    let secs: u64 = std::env::var("NEEDLE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("NEEDLE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    println!("soak: {secs} s, seed {seed} (NEEDLE_SOAK_SEED={seed} replays the fault schedule)");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &["--fault-injection", "--admin-key", "k"]);
    let leader = cluster.leader();
    create_docs(&cluster.client(leader), 3, "cosine");
    // A restarted member listens on a new HTTP port: the writer reads them afresh.
    let urls = std::sync::Arc::new(parking_lot::Mutex::new(cluster.urls()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let urls = urls.clone();
        let urls = urls.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = urls.lock()[n % 3].clone();
                let c = crate::support::Client::with_timeout(&url, Duration::from_secs(5));
                let id = format!("soak-{n}");
                if write_ids(&c, std::slice::from_ref(&id)) == vec![200] {
                    acked.push(id);
                }
                n += 1;
            }
            acked
        })
    };
    let mut rng = seed | 1;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    let started = std::time::Instant::now();
    let mut faults = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let victim = next(3) as usize;
        match next(4) {
            0 => {
                let leader = cluster.leader();
                cluster.kill(leader);
                std::thread::sleep(Duration::from_millis(200 + next(800)));
                cluster.restart(leader);
                *urls.lock() = cluster.urls();
            }
            1 => {
                let node = cluster.nodes[victim].as_ref().unwrap();
                node.signal("STOP");
                std::thread::sleep(Duration::from_millis(200 + next(800)));
                node.signal("CONT");
            }
            2 => {
                let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
                cluster.partition(&[&[victim], &rest]);
                std::thread::sleep(Duration::from_millis(200 + next(800)));
                cluster.heal();
            }
            _ => {
                let leader = cluster.leader();
                let _ =
                    cluster
                        .client(leader)
                        .post_with_bearer("/cluster/step-down", "k", &json!({}));
            }
        }
        faults += 1;
        std::thread::sleep(Duration::from_millis(100 + next(400)));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    cluster.heal();
    assert!(cluster.converged(), "members diverged (seed {seed})");
    let leader = cluster.leader();
    let mut missing = Vec::new();
    for id in &acked {
        let got = cluster
            .client(leader)
            .get(&format!("/collections/docs/vectors/{id}"));
        if got.0 != 200 {
            missing.push(id.clone());
        }
    }
    println!(
        "soak: {faults} faults, {} acknowledged writes, {} missing",
        acked.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged writes lost (seed {seed}): {missing:?}"
    );
}
