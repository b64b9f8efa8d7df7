//! SIGKILL at arbitrary moments during concurrent writes: every acknowledged write is
//! there after restart, unacknowledged batches are all-or-nothing, and the store opens.

use crate::support::{vectors, wait_for, Node};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIMS: usize = 16;
const WRITERS: usize = 4;

/// One write attempt: the ids it carried, their vectors, and whether it was acked.
struct Attempt {
    items: Vec<(String, Vec<f32>)>,
    acked: bool,
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("data"), &[]);
    let (status, _) = node.client().post(
        "/collections",
        &json!({"name": "c", "dimensions": DIMS, "distance": "euclidean"}),
    );
    assert_eq!(status, 201);
    let mut all: Vec<Attempt> = Vec::new();
    for round in 0..3u64 {
        let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let client = node.client();
                let attempts = Arc::clone(&attempts);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let n = if i.is_multiple_of(3) { 1 } else { 7 };
                        let vs = vectors(round * 1_000_000 + w as u64 * 10_000 + i, n, DIMS);
                        let items: Vec<(String, Vec<f32>)> = vs
                            .into_iter()
                            .enumerate()
                            .map(|(j, v)| (format!("r{round}-w{w}-{i}-{j}"), v))
                            .collect();
                        let result = if n == 1 {
                            client.try_post(
                                "/collections/c/vectors",
                                &json!({"id": items[0].0, "vector": items[0].1}),
                            )
                        } else {
                            let body: Vec<_> = items
                                .iter()
                                .map(|(id, v)| json!({"id": id, "vector": v}))
                                .collect();
                            client
                                .try_post("/collections/c/vectors/batch", &json!({"vectors": body}))
                        };
                        let acked = matches!(result, Ok((200 | 201, _)));
                        let failed = result.is_err();
                        attempts.lock().unwrap().push(Attempt { items, acked });
                        if failed {
                            break; // the node is gone
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        // Kill at a different point each round, while all writers are mid-stream.
        let target = 40 + round as usize * 60;
        assert!(wait_for(Duration::from_secs(60), || {
            attempts.lock().unwrap().iter().filter(|a| a.acked).count() >= target
        }));
        node = node.restart();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        all.extend(
            Arc::try_unwrap(attempts)
                .ok()
                .unwrap()
                .into_inner()
                .unwrap(),
        );

        let client = node.client();
        let mut acked_ids = 0;
        for attempt in &all {
            let present: Vec<bool> = attempt
                .items
                .iter()
                .map(|(id, v)| {
                    let (status, body) = client.get(&format!("/collections/c/vectors/{id}"));
                    if status == 200 {
                        let got: Vec<f32> = serde_json::from_value(body["vector"].clone()).unwrap();
                        assert_eq!(&got, v, "vector {id} came back different");
                        true
                    } else {
                        assert_eq!(status, 404);
                        false
                    }
                })
                .collect();
            if attempt.acked {
                acked_ids += present.len();
                assert!(
                    present.iter().all(|p| *p),
                    "acknowledged write lost: {:?}",
                    attempt.items[0].0
                );
            } else {
                assert!(
                    present.iter().all(|p| *p) || present.iter().all(|p| !*p),
                    "torn batch {:?}",
                    attempt.items[0].0
                );
            }
        }
        let count = client.get("/collections/c").1["count"].as_u64().unwrap() as usize;
        assert!(
            count >= acked_ids,
            "count {count} < acknowledged {acked_ids}"
        );
        // The engine was rebuilt too: an acknowledged vector is its own nearest neighbour.
        let probe = all.iter().rev().find(|a| a.acked).unwrap();
        let body = client
            .post(
                "/collections/c/search",
                &json!({"vector": probe.items[0].1, "k": 1}),
            )
            .1;
        assert_eq!(body["results"][0]["id"], probe.items[0].0.as_str());
    }
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "t", "dimensions": 2, "distance": "dot"}),
    );
    c.post(
        "/collections/t/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [1, 2]}]}),
    );
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    let node = Node::start(&dir.path().join("data"), &[]);
    assert_eq!(
        node.client().get("/collections/t/vectors/a").1["vector"],
        json!([1.0, 2.0])
    );
}
