//! The HTTP contract, request by request.

use crate::support::{assert_error, node, vectors, Node};
use serde_json::{json, Value};

#[test]
fn health_reports_backend_and_version() {
    let (_dir, node) = node();
    let (status, body) = node.client().get("/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert!(["cpu", "cuda", "wgpu"].contains(&body["backend"].as_str().unwrap()));
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
        json!({"name": "docs", "dimensions": 3, "distance": "cosine", "storage": "f32", "count": 0})
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
    // The write path: one create and one upsert, each fsynced.
    assert!(text.contains("needle_applied_seq 2"), "{text}");
    assert!(
        text.contains("needle_write_ops_total{op=\"upsert\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("needle_write_commit_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("needle_collection_tombstones{collection=\"m\"} 0"),
        "{text}"
    );
}

#[test]
fn debug_faults_exist_only_with_fault_injection() {
    let (_dir, plain) = node();
    assert_error(&plain.client().get("/debug/faults"), 404, "NOT_FOUND");
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &["--fault-injection"]);
    let c = node.client();
    assert_eq!(
        c.get("/debug/faults").1,
        json!({"faults": {"rules": [], "partitions": [], "seed": 0}})
    );
    let config = json!({
        "rules": [{"peers": ["127.0.0.1:5002"], "drop": 0.5, "delay_ms": [1, 5], "duplicate": 0.1, "reorder": 0.2, "reorder_ms": 30}],
        "partitions": [["127.0.0.1:5001"], ["127.0.0.1:5002", "127.0.0.1:5003"]],
        "seed": 7
    });
    let (status, body) = c.post("/debug/faults", &config);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["faults"], config);
    assert_eq!(c.get("/debug/faults").1["faults"], config);
    assert_error(
        &c.post("/debug/faults", &json!({"drop": 1})),
        400,
        "INVALID_REQUEST",
    );
    assert_eq!(c.delete("/debug/faults").1["faults"]["rules"], json!([]));
}
