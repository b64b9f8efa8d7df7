//! The HTTP contract, request by request.

use crate::support::{assert_error, vectors, Node};
use serde_json::{json, Value};

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    (dir, node)
}

#[test]
fn health_reports_backend_and_version() {
    let (_dir, node) = node();
    let (status, body) = node.client().get("/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "cpu");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn collections_lifecycle() {
    let (_dir, node) = node();
    let c = node.client();
    let (status, body) = c.post(
        "/collections",
        &json!({"name": "docs", "dimensions": 3, "distance": "cosine"}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"name": "docs", "dimensions": 3, "distance": "cosine", "count": 0})
    );
    assert_error(
        &c.post(
            "/collections",
            &json!({"name": "docs", "dimensions": 3, "distance": "cosine"}),
        ),
        409,
        "COLLECTION_EXISTS",
    );
    assert_eq!(
        c.post(
            "/collections",
            &json!({"name": "a-2", "dimensions": 2, "distance": "dot"})
        )
        .0,
        201
    );
    let (status, list) = c.get("/collections");
    assert_eq!(status, 200);
    let names: Vec<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a-2", "docs"]);
    assert_eq!(c.get("/collections/docs").1["dimensions"], 3);
    assert_eq!(c.delete("/collections/docs").0, 200);
    assert_error(&c.get("/collections/docs"), 404, "COLLECTION_NOT_FOUND");
    assert_error(&c.delete("/collections/docs"), 404, "COLLECTION_NOT_FOUND");
    // Re-created under the same name, it starts empty.
    c.post(
        "/collections/a-2/vectors",
        &json!({"id": "v", "vector": [1, 2]}),
    );
    c.delete("/collections/a-2");
    c.post(
        "/collections",
        &json!({"name": "a-2", "dimensions": 2, "distance": "dot"}),
    );
    assert_eq!(c.get("/collections/a-2").1["count"], 0);
    assert_error(
        &c.get("/collections/a-2/vectors/v"),
        404,
        "VECTOR_NOT_FOUND",
    );
}

#[test]
fn collection_creation_rejects_bad_input() {
    let (_dir, node) = node();
    let c = node.client();
    let bad = [
        (
            json!({"name": "x", "dimensions": 3, "distance": "manhattan"}),
            "INVALID_DISTANCE",
        ),
        (json!({"name": "x", "dimensions": 3}), "INVALID_REQUEST"),
        (
            json!({"name": "x y", "dimensions": 3, "distance": "dot"}),
            "INVALID_COLLECTION_NAME",
        ),
        (
            json!({"name": "a".repeat(129), "dimensions": 3, "distance": "dot"}),
            "INVALID_COLLECTION_NAME",
        ),
        (
            json!({"name": "x", "dimensions": 0, "distance": "dot"}),
            "INVALID_DIMENSIONS",
        ),
        (
            json!({"name": "x", "dimensions": 65537, "distance": "dot"}),
            "INVALID_DIMENSIONS",
        ),
        (
            json!({"name": "x", "dimensions": -1, "distance": "dot"}),
            "INVALID_REQUEST",
        ),
    ];
    for (body, code) in bad {
        assert_error(&c.post("/collections", &body), 400, code);
    }
    assert_error(
        &c.post_raw("/collections", "{\"name\": "),
        400,
        "MALFORMED_JSON",
    );
    assert_eq!(c.get("/collections").1["collections"], json!([]));
}

#[test]
fn vectors_insert_get_delete() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "v", "dimensions": 3, "distance": "euclidean"}),
    );
    let (status, _) = c.post(
        "/collections/v/vectors",
        &json!({"id": "a", "vector": [1, 2, 3], "metadata": {"k": "x"}}),
    );
    assert_eq!(status, 201);
    assert_error(
        &c.post(
            "/collections/v/vectors",
            &json!({"id": "a", "vector": [0, 0, 0]}),
        ),
        409,
        "VECTOR_EXISTS",
    );
    let (status, got) = c.get("/collections/v/vectors/a");
    assert_eq!(status, 200);
    assert_eq!(
        got,
        json!({"id": "a", "vector": [1.0, 2.0, 3.0], "metadata": {"k": "x"}})
    );
    assert_error(&c.get("/collections/v/vectors/zz"), 404, "VECTOR_NOT_FOUND");
    assert_eq!(
        c.delete("/collections/v/vectors/a"),
        (200, json!({"deleted": true}))
    );
    assert_eq!(
        c.delete("/collections/v/vectors/a"),
        (200, json!({"deleted": false}))
    );
    assert_error(&c.get("/collections/v/vectors/a"), 404, "VECTOR_NOT_FOUND");
    assert_eq!(c.get("/collections/v").1["count"], 0);
}

#[test]
fn bad_vectors_are_rejected_and_change_nothing() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "v", "dimensions": 3, "distance": "dot"}),
    );
    let cases = [
        (
            json!({"id": "a", "vector": [1, 2]}),
            400,
            "DIMENSION_MISMATCH",
        ),
        (
            json!({"id": "a", "vector": [1, 2, 1e39]}),
            400,
            "INVALID_VECTOR",
        ),
        (json!({"id": "", "vector": [1, 2, 3]}), 400, "INVALID_ID"),
        (
            json!({"id": "x".repeat(1025), "vector": [1, 2, 3]}),
            400,
            "INVALID_ID",
        ),
        (
            json!({"id": "a", "vector": [1, 2, 3], "metadata": [1]}),
            400,
            "INVALID_METADATA",
        ),
        (
            json!({"id": "a", "vector": [1, 2, 3], "metadata": {"b": "x".repeat(70_000)}}),
            400,
            "INVALID_METADATA",
        ),
        (
            json!({"id": 5, "vector": [1, 2, 3]}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"id": "a", "vector": ["x", 2, 3]}),
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (body, status, code) in cases {
        assert_error(&c.post("/collections/v/vectors", &body), status, code);
    }
    assert_error(
        &c.post_raw(
            "/collections/v/vectors",
            "{\"id\":\"a\",\"vector\":[NaN,1,2]}",
        ),
        400,
        "MALFORMED_JSON",
    );
    assert_error(
        &c.post(
            "/collections/nope/vectors",
            &json!({"id": "a", "vector": [1, 2, 3]}),
        ),
        404,
        "COLLECTION_NOT_FOUND",
    );
    // Batch: one bad item rejects all, and names its index.
    let batch = json!({"vectors": [
        {"id": "ok1", "vector": [1, 2, 3]},
        {"id": "ok2", "vector": [1, 2, 3]},
        {"id": "bad", "vector": [1, 2]},
    ]});
    let resp = c.post("/collections/v/vectors/batch", &batch);
    assert_error(&resp, 400, "DIMENSION_MISMATCH");
    assert!(
        resp.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vectors[2]"),
        "{}",
        resp.1
    );
    let resp = c.post(
        "/collections/v/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [1, 2, 3]}, {"vector": [1, 2, 3]}]}),
    );
    assert_error(&resp, 400, "INVALID_REQUEST");
    assert!(resp.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vectors[1]"));
    assert_eq!(c.get("/collections/v").1["count"], 0, "nothing was written");
}

#[test]
fn batch_upsert_overwrites_and_counts() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "v", "dimensions": 2, "distance": "dot"}),
    );
    let (status, body) = c.post(
        "/collections/v/vectors/batch",
        &json!({"vectors": [
            {"id": "a", "vector": [1, 0], "metadata": {"n": 1}},
            {"id": "b", "vector": [0, 1]},
        ]}),
    );
    assert_eq!((status, body["upserted"].clone()), (200, json!(2)));
    c.post(
        "/collections/v/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [5, 5]}]}),
    );
    assert_eq!(c.get("/collections/v").1["count"], 2);
    let got = c.get("/collections/v/vectors/a").1;
    assert_eq!(got["vector"], json!([5.0, 5.0]));
    assert!(
        got.get("metadata").is_none(),
        "upsert without metadata replaces it: {got}"
    );
    assert_eq!(
        c.post("/collections/v/vectors/batch", &json!({"vectors": []}))
            .1["upserted"],
        0
    );
}

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

#[test]
fn oversized_bodies_get_413_and_unknown_routes_404() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &["--max-body-bytes", "4096"]);
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "v", "dimensions": 256, "distance": "dot"}),
    );
    let items: Vec<Value> = vectors(1, 20, 256)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i.to_string(), "vector": v}))
        .collect();
    assert_error(
        &c.post("/collections/v/vectors/batch", &json!({"vectors": items})),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(c.get("/collections/v").1["count"], 0);
    assert_error(&c.get("/nope"), 404, "NOT_FOUND");
    assert_error(&c.delete("/collections"), 405, "METHOD_NOT_ALLOWED");
}

#[test]
fn metrics_count_requests_vectors_and_batch_sizes() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "m", "dimensions": 2, "distance": "dot"}),
    );
    c.post(
        "/collections/m/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}]}),
    );
    c.post(
        "/collections/m/search/batch",
        &json!({"vectors": [[1, 0], [0, 1], [1, 1]], "k": 1}),
    );
    c.get("/collections/m/vectors/missing");
    let (status, text) = c.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("needle_collection_vectors{collection=\"m\"} 2"),
        "{text}"
    );
    assert!(text.contains("needle_http_requests_total{method=\"GET\",route=\"/collections/{name}/vectors/{id}\",status=\"404\"} 1"), "{text}");
    assert!(
        text.contains("needle_search_batch_size_sum{collection=\"m\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("needle_http_request_duration_seconds_bucket"),
        "{text}"
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
