//! Search over HTTP: ranking, filters, distances, validation, and coalescing of
//! concurrent single queries.

use crate::support::{assert_error, node, vectors, Node};
use serde_json::{json, Value};

#[test]
fn search_ranks_filters_and_validates() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "s", "dimensions": 2, "distance": "euclidean"}),
    );
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("p{i}"), "vector": [i as f32, 0.0], "metadata": {"i": i, "even": i % 2 == 0, "tag": {"group": i / 10}}}))
        .collect();
    c.post("/collections/s/vectors/batch", &json!({"vectors": items}));
    let (status, body) = c.post(
        "/collections/s/search",
        &json!({"vector": [10.2, 0.0], "k": 3}),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["p10", "p11", "p9"]);
    assert!((results[0]["distance"].as_f64().unwrap() - 0.2).abs() < 1e-4);
    assert_eq!(results[0]["metadata"]["i"], 10);
    assert!(results[0].get("vector").is_none());
    // Default k is 10.
    assert_eq!(
        c.post("/collections/s/search", &json!({"vector": [0, 0]}))
            .1["results"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    // Filters restrict but never approximate: k results whenever k match.
    let body = c
        .post(
            "/collections/s/search",
            &json!({"vector": [0, 0], "k": 5, "filter": {"even": false, "tag.group": {"$gte": 4}}}),
        )
        .1;
    let ids: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["p41", "p43", "p45", "p47", "p49"]);
    let body = c.post("/collections/s/search", &json!({"vector": [0, 0], "k": 5, "filter": {"i": {"$in": [3, 30]}}, "include_vectors": true, "include_metadata": false})).1;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["vector"], json!([30.0, 0.0]));
    assert!(results[0].get("metadata").is_none());
    // Batch: one engine call, one result list per query.
    let body = c
        .post(
            "/collections/s/search/batch",
            &json!({"vectors": [[0, 0], [49, 0], [25.1, 0]], "k": 1}),
        )
        .1;
    let firsts: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(firsts, vec!["p0", "p49", "p25"]);
    // Errors.
    assert_error(
        &c.post("/collections/s/search", &json!({"vector": [0, 0], "k": 0})),
        400,
        "INVALID_K",
    );
    assert_error(
        &c.post(
            "/collections/s/search",
            &json!({"vector": [0, 0], "k": 10001}),
        ),
        400,
        "INVALID_K",
    );
    assert_error(
        &c.post("/collections/s/search", &json!({"vector": [0, 0, 0]})),
        400,
        "DIMENSION_MISMATCH",
    );
    assert_error(
        &c.post(
            "/collections/s/search",
            &json!({"vector": [0, 0], "filter": {"i": {"$near": 1}}}),
        ),
        400,
        "INVALID_FILTER",
    );
    assert_error(
        &c.post(
            "/collections/s/search",
            &json!({"vector": [0, 0], "filter": [1]}),
        ),
        400,
        "INVALID_FILTER",
    );
    assert_error(
        &c.post("/collections/x/search", &json!({"vector": [0, 0]})),
        404,
        "COLLECTION_NOT_FOUND",
    );
    assert_error(
        &c.post(
            "/collections/s/search/batch",
            &json!({"vectors": [[0, 0], [1]], "k": 1}),
        ),
        400,
        "DIMENSION_MISMATCH",
    );
    assert_error(
        &c.post_raw("/collections/s/search", "not json"),
        400,
        "MALFORMED_JSON",
    );
    // queries × k past the per-search limit is refused, not attempted.
    let many: Vec<[f32; 2]> = vec![[0.0, 0.0]; 101];
    assert_error(
        &c.post(
            "/collections/s/search/batch",
            &json!({"vectors": many, "k": 10000}),
        ),
        400,
        "TOO_MANY_RESULTS",
    );
}

#[test]
fn cosine_and_dot_distances_are_as_documented() {
    let (_dir, node) = node();
    let c = node.client();
    for (name, distance) in [("c", "cosine"), ("d", "dot")] {
        c.post(
            "/collections",
            &json!({"name": name, "dimensions": 2, "distance": distance}),
        );
        c.post(&format!("/collections/{name}/vectors/batch"), &json!({"vectors": [
            {"id": "x", "vector": [2, 0]}, {"id": "y", "vector": [0, 3]}, {"id": "z", "vector": [1, 1]}
        ]}));
    }
    let r = c
        .post("/collections/c/search", &json!({"vector": [1, 0], "k": 3}))
        .1;
    let d: Vec<f64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["distance"].as_f64().unwrap())
        .collect();
    assert_eq!(r["results"][0]["id"], "x");
    assert!(
        (d[0] - 0.0).abs() < 1e-6
            && (d[1] - (1.0 - 0.5f64.sqrt())).abs() < 1e-5
            && (d[2] - 1.0).abs() < 1e-6,
        "{d:?}"
    );
    let r = c
        .post("/collections/d/search", &json!({"vector": [1, 2], "k": 3}))
        .1;
    let got: Vec<(String, f64)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["distance"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("y".into(), -6.0), ("z".into(), -3.0), ("x".into(), -2.0)]
    );
}

/// Concurrent single searches are answered exactly as sequential ones, with different
/// k and filters mixed in, and share engine calls (fewer calls than requests).
#[test]
fn concurrent_single_searches_are_coalesced_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        // Large enough that one engine call takes a while, loaded through the library.
        let db = needle::Database::open(&data).unwrap();
        let c = db
            .create_collection(needle::CollectionConfig::new(
                "big",
                128,
                needle::Distance::Dot,
            ))
            .unwrap();
        for (chunk, vs) in vectors(3, 60_000, 128).chunks(10_000).enumerate() {
            let records = vs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let n = chunk * 10_000 + i;
                    let meta = json!({"bucket": n % 4}).as_object().unwrap().clone();
                    needle::VectorRecord::new(n.to_string(), v.clone()).with_metadata(meta)
                })
                .collect();
            c.upsert(records).unwrap();
        }
    }
    let node = Node::start(&data, &[]);
    let queries = vectors(4, 24, 128);
    let request = |i: usize| {
        let mut body = json!({"vector": queries[i], "k": 3 + i % 5});
        if i % 2 == 1 {
            body["filter"] = json!({"bucket": {"$in": [i % 4, (i + 1) % 4]}});
        }
        body
    };
    let client = node.client();
    let expected: Vec<Value> = (0..queries.len())
        .map(|i| client.post("/collections/big/search", &request(i)).1)
        .collect();
    let engine_calls = |c: &crate::support::Client| -> u64 {
        let text = c.get_text("/metrics").1;
        text.lines()
            .find(|l| l.starts_with("needle_search_batch_size_count{collection=\"big\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = engine_calls(&client);
    let barrier = std::sync::Barrier::new(queries.len());
    let rounds = 4;
    std::thread::scope(|s| {
        for i in 0..queries.len() {
            let (client, barrier, expected, request) =
                (node.client(), &barrier, &expected, &request);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..rounds {
                    let (status, body) = client.post("/collections/big/search", &request(i));
                    assert_eq!(status, 200);
                    assert_eq!(body, expected[i], "query {i} differs under concurrency");
                }
            });
        }
    });
    let calls = engine_calls(&client) - before;
    let requests = (queries.len() * rounds) as u64;
    assert!(
        calls < requests,
        "{calls} engine calls for {requests} concurrent requests: nothing was coalesced"
    );
}

#[test]
fn search_coalescing_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &["--search-coalescing", "false"]);
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "o", "dimensions": 2, "distance": "dot"}),
    );
    c.post(
        "/collections/o/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}]}),
    );
    std::thread::scope(|s| {
        for _ in 0..8 {
            let c = node.client();
            s.spawn(move || {
                let body = c
                    .post("/collections/o/search", &json!({"vector": [0, 2], "k": 1}))
                    .1;
                assert_eq!(body["results"][0]["id"], "b");
            });
        }
    });
    let text = c.get_text("/metrics").1;
    assert!(
        text.contains("needle_search_batch_size_count{collection=\"o\"} 8"),
        "one engine call per request: {text}"
    );
}
