//! Primary → replica replication on loopback, in one process (two databases, two
//! QUIC endpoints with mutual TLS): `cargo bench --bench replication`.
//! - bulk: vectors/s until the replica has applied everything, against the primary's
//!   own write rate in the same run (the peer);
//! - steady rate: the delay from a write's acknowledgement on the primary to its
//!   application on the replica, p50/p99, at a fixed write rate.

mod machine;

use needle::replication::primary_replica::primary::log_server::{LogServer, SharedAcks};
use needle::replication::primary_replica::replica::pull::pull_once;
use needle::replication::primary_replica::role::RoleCell;
use needle::replication::primary_replica::wire::entry_to_wire;
use needle::replication::{Follower, Role};
use needle::served::ServedDatabase;
use needle::{CollectionConfig, Database, Distance, VectorRecord};
use needle_transport::certs::generate_cluster;
use needle_transport::{BoxFuture, DeltaCodec, Handler, PeerInfo, Transport, TransportConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIMS: usize = 128;

struct Nothing;

impl Handler for Nothing {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("no requests".to_string()) })
    }
    fn push(&self, _: PeerInfo, _: Vec<u8>, _: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

fn batch(start: usize, n: usize) -> Vec<VectorRecord> {
    let data = needle_kernels::reference::pseudo_random_floats(start as u64, n * DIMS);
    data.chunks_exact(DIMS)
        .enumerate()
        .map(|(i, v)| VectorRecord::new(format!("v{}", start + i), v.to_vec()))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!("machine: {}", machine::describe());
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        let files = generate_cluster(&certs, 2, &[]).expect("certs");
        let primary = Database::open(dir.path().join("p")).expect("primary");
        let replica = Database::open(dir.path().join("r")).expect("replica");
        let docs = primary
            .create_collection(CollectionConfig::new("docs", DIMS, Distance::Cosine))
            .expect("collection");
        let acks = Arc::new(SharedAcks::default());
        let server = LogServer::new(
            ServedDatabase::new(primary.clone()),
            DeltaCodec::default(),
            acks,
            Arc::default(),
            Arc::new(RoleCell::new(Role::Primary)),
        );
        let addr = "127.0.0.1:0".parse().expect("addr");
        let p = Transport::bind(addr, TransportConfig::new(files.security(1).expect("node 1")), Arc::new(server)).expect("bind");
        let r = Transport::bind(addr, TransportConfig::new(files.security(2).expect("node 2")), Arc::new(Nothing)).expect("bind");
        let peer = r.connect(p.local_addr().expect("addr")).await.expect("connect");
        let follower_db = replica.clone();
        tokio::spawn(async move {
            let mut follower = Follower::new(follower_db.applied_seq());
            let codec = DeltaCodec::default();
            loop {
                if pull_once(&follower_db, &peer, &mut follower, &codec, 1000, Duration::from_millis(200))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });

        // Bulk: 20,000 vectors in batches of 500.
        let total = 20_000;
        let start = Instant::now();
        for i in (0..total).step_by(500) {
            let d = docs.clone();
            tokio::task::spawn_blocking(move || d.upsert(batch(i, 500)))
                .await
                .expect("join")
                .expect("upsert");
        }
        let primary_done = start.elapsed();
        let target = primary.applied_seq();
        while replica.applied_seq() < target {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let replica_done = start.elapsed();
        let rate = |d: Duration| total as f64 / d.as_secs_f64();
        println!("peer: the primary's own write rate, same run");
        println!(
            "bulk {total} × d={DIMS}: primary {:.0} vectors/s, replica caught up at {:.0} vectors/s ({:.2}x the primary), {:.0} ms after the last write",
            rate(primary_done),
            rate(replica_done),
            rate(replica_done) / rate(primary_done),
            (replica_done - primary_done).as_secs_f64() * 1e3
        );

        // Steady: 100 vectors every 20 ms (5,000 vectors/s) for 3 s.
        let mut delays = Vec::new();
        let mut next = total;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let tick = Instant::now();
            let d = docs.clone();
            let i = next;
            tokio::task::spawn_blocking(move || d.upsert(batch(i, 100)))
                .await
                .expect("join")
                .expect("upsert");
            next += 100;
            let seq = primary.applied_seq();
            let acked = Instant::now();
            while replica.applied_seq() < seq {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            delays.push(acked.elapsed().as_secs_f64() * 1e3);
            if let Some(rest) = Duration::from_millis(20).checked_sub(tick.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        delays.sort_by(f64::total_cmp);
        println!(
            "steady 5,000 vectors/s for 3 s: replication delay after the primary's acknowledgement p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} writes)",
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or(0.0),
            delays.len()
        );
        let metrics = primary.metrics();
        println!(
            "shipped by the primary's log server (compression on): {} bytes raw, {} on the wire ({:.2}x)",
            metrics.replication_bytes_raw.get(),
            metrics.replication_bytes_shipped.get(),
            metrics.replication_bytes_raw.get() as f64 / metrics.replication_bytes_shipped.get().max(1) as f64
        );

        // Bytes on the wire with and without compression, for the log above (random
        // f32 vectors, no metadata) and for a document-like one (small vectors,
        // text metadata, deletes), batched 1,000 entries at a time as a pull is.
        // Database calls block on the writer thread: off the runtime's threads.
        let db = primary.clone();
        tokio::task::spawn_blocking(move || {
            let notes = db
                .create_collection(CollectionConfig::new("notes", 32, Distance::Cosine))
                .expect("collection");
            let words = ["vector", "search", "replica", "primary", "epoch", "snapshot", "tensor", "kernel"];
            for b in 0..20 {
                let records: Vec<VectorRecord> = batch(b * 250, 250)
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let n = b * 250 + i;
                        let body: Vec<&str> = (0..40).map(|w| words[(n * 7 + w * 3) % words.len()]).collect();
                        let mut meta = needle::Metadata::new();
                        meta.insert("title".into(), serde_json::json!(format!("note {n}")));
                        meta.insert("body".into(), serde_json::json!(body.join(" ")));
                        meta.insert("lang".into(), serde_json::json!("en"));
                        VectorRecord::new(r.id, r.vector[..32].to_vec()).with_metadata(meta)
                    })
                    .collect();
                notes.upsert(records).expect("upsert");
                for i in 0..25 {
                    notes.delete(&format!("v{}", b * 250 + i * 10)).expect("delete");
                }
            }
        })
        .await
        .expect("join");
        let log = primary.read_log(1, 1_000_000).expect("log");
        let (vectors_log, notes_log): (Vec<_>, Vec<_>) = log.into_iter().partition(|(_, op)| {
            !matches!(op, needle::Op::Upsert { collection, .. } | needle::Op::Delete { collection, .. } if collection == "notes")
        });
        println!("peer: the same batches sent raw (compression off), same run");
        for (name, entries) in [("random vectors, d=128", vectors_log), ("documents: d=32 + text metadata, deletes", notes_log)] {
            let wire: Vec<_> = entries
                .iter()
                .map(|(seq, op)| entry_to_wire(*seq, op).expect("wire"))
                .collect();
            let mut sizes = [0usize; 2];
            let mut seconds = 0.0;
            for chunk in wire.chunks(1000) {
                sizes[1] += DeltaCodec::uncompressed().encode(chunk).bytes.len();
                let t = Instant::now();
                sizes[0] += DeltaCodec::default().encode(chunk).bytes.len();
                seconds += t.elapsed().as_secs_f64();
            }
            println!(
                "bytes on the wire, {name} ({} entries): compression on {} B, off {} B ({:.2}x smaller), compressing took {:.1} ms",
                wire.len(),
                sizes[0],
                sizes[1],
                sizes[1] as f64 / sizes[0] as f64,
                seconds * 1e3
            );
        }
    });
}
