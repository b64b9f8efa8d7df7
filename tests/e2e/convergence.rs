//! A primary and two replicas as separate processes under a bulk load and a stream of
//! small writes: the lag the primary reports rises while writes pour in and returns
//! to zero, and all three end with identical collection checksums (ids, vectors,
//! metadata).

use crate::cluster::{caught_up, create_docs, trio, Trio};
use crate::support::{vectors, wait_for, Client, Node};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DIMS: usize = 64;

fn checksum(node: &Node) -> Value {
    let (status, body) = node.client().get("/collections/docs/checksum");
    assert_eq!(status, 200, "{body}");
    body
}

/// The largest lag, in operations, the primary reports for any replica.
fn primary_lag(c: &Client) -> u64 {
    c.get("/replication/status").1["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["lag_operations"].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn two_replicas_converge_to_identical_checksums_after_a_bulk_load_and_lag_returns_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let Trio { p, r1, r2, .. } = trio(dir.path(), |_| Vec::new());
    let c = p.client();
    create_docs(&c, DIMS, "dot");

    // Bulk load: 20,000 vectors in batches, acknowledged by the primary alone so the
    // load runs ahead of the replicas.
    let rows = vectors(11, 20_000, DIMS);
    for (b, chunk) in rows.chunks(1000).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = b * 1000 + i;
                json!({"id": format!("bulk{n}"), "vector": v, "metadata": {"batch": b, "tag": format!("t{}", n % 7)}})
            })
            .collect();
        let resp = c.post(
            "/collections/docs/vectors/batch",
            &json!({"vectors": items, "write_concern": "primary"}),
        );
        assert_eq!(resp.0, 200, "{}", resp.1);
    }

    // Then a stream of small writes from two clients while the lag is sampled.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (c, peak, done) = (c.clone(), Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(primary_lag(&c), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..600 {
                    let id = format!("w{w}-{i}");
                    let v = vectors(1000 + (w * 600 + i) as u64, 1, DIMS).remove(0);
                    let resp = c.post(
                        "/collections/docs/vectors",
                        &json!({"id": id, "vector": v, "metadata": {"writer": w}, "write_concern": "primary"}),
                    );
                    assert_eq!(resp.0, 201, "{}", resp.1);
                    if i % 10 == 0 {
                        let gone = c.delete(&format!("/collections/docs/vectors/bulk{}", w * 10_000 + i));
                        assert_eq!(gone.0, 200, "{}", gone.1);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(60), || caught_up(&p, &r1)
            && caught_up(&p, &r2)),
        "replicas did not catch up"
    );
    assert!(
        wait_for(Duration::from_secs(10), || primary_lag(&c) == 0),
        "lag did not return to zero: {}",
        c.get("/replication/status").1
    );
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(
        peak.load(Ordering::Relaxed) > 0,
        "the primary never reported a replica behind during the load"
    );

    let replicas = c.get("/replication/status").1["replicas"].clone();
    assert_eq!(replicas.as_array().map(Vec::len), Some(2), "{replicas}");
    for r in replicas.as_array().into_iter().flatten() {
        assert_eq!(r["connected"], true, "{r}");
        assert_eq!(r["lag_operations"], 0, "{r}");
    }

    let expected = checksum(&p);
    assert_eq!(expected["vectors"], 20_000 + 1_200 - 120);
    assert_eq!(checksum(&r1), expected);
    assert_eq!(checksum(&r2), expected);
}
