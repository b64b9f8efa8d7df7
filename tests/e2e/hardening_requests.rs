//! Requests that used to cost the node far more than they should: answers without a
//! byte bound, filters without a size bound, values that overflow distances,
//! searches that run on after their client left, metric labels without a bound.

use crate::support::{assert_error, node, vectors, wait_for, Client, Node};
use serde_json::{json, Value};
use std::time::Duration;

fn metric(c: &Client, name: &str) -> f64 {
    let (_, text) = c.get_text("/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn answers_larger_than_the_response_budget_are_refused_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &["--max-response-bytes", "200000"],
    );
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "m", "dimensions": 64, "distance": "dot"}),
    );
    let blob = "x".repeat(4000);
    let records: Vec<Value> = vectors(1, 200, 64)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": format!("v{i}"), "vector": v, "metadata": {"blob": blob}}))
        .collect();
    assert_eq!(
        c.post(
            "/collections/m/vectors/batch",
            &json!({ "vectors": records })
        )
        .0,
        200
    );
    let query = vectors(2, 1, 64).remove(0);
    // 200 hits × 4 KB of metadata is ~800 KB: over the 200 KB budget.
    let resp = c.post("/collections/m/search", &json!({"vector": query, "k": 200}));
    assert_error(&resp, 400, "RESPONSE_TOO_LARGE");
    // Without the metadata the same search fits.
    let resp = c.post(
        "/collections/m/search",
        &json!({"vector": query, "k": 200, "include_metadata": false}),
    );
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert_eq!(resp.1["results"].as_array().unwrap().len(), 200);
    // A batch whose smallest possible answer is over budget is refused before any
    // work: 1,000 queries × 200 hits × 64 components.
    let resp = c.post(
        "/collections/m/search/batch",
        &json!({"vectors": vec![query.clone(); 1000], "k": 200, "include_vectors": true}),
    );
    assert_error(&resp, 400, "RESPONSE_TOO_LARGE");
    // A filter makes the smallest possible answer unknown; the budget is then
    // counted while the hits are built, vectors before they are read.
    let resp = c.post(
        "/collections/m/search/batch",
        &json!({"vectors": vec![query.clone(); 50], "k": 200, "include_vectors": true,
                "include_metadata": false, "filter": {"blob": {"$exists": true}}}),
    );
    assert_error(&resp, 400, "RESPONSE_TOO_LARGE");
    let resp = c.post(
        "/collections/m/search",
        &json!({"vector": query, "k": 200, "filter": {"blob": {"$exists": true}}}),
    );
    assert_error(&resp, 400, "RESPONSE_TOO_LARGE");
    assert_eq!(c.get("/health").0, 200);
}

#[test]
fn filters_past_their_size_limit_are_refused() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "f", "dimensions": 2, "distance": "dot"}),
    );
    c.post(
        "/collections/f/vectors",
        &json!({"id": "a", "vector": [1, 0], "metadata": {"tag": 7}}),
    );
    // 65,536 values are allowed and answered through a hash set...
    let values: Vec<u64> = (0..65_536).collect();
    let resp = c.post(
        "/collections/f/search",
        &json!({"vector": [1, 0], "filter": {"tag": {"$in": values}}}),
    );
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert_eq!(resp.1["results"][0]["id"], "a");
    // ...one more is not.
    let values: Vec<u64> = (0..65_537).collect();
    let resp = c.post(
        "/collections/f/search",
        &json!({"vector": [1, 0], "filter": {"tag": {"$in": values}}}),
    );
    assert_error(&resp, 400, "INVALID_FILTER");
    let many: Vec<Value> = (0..1025).map(|i| json!({ format!("k{i}"): 1 })).collect();
    let resp = c.post(
        "/collections/f/search",
        &json!({"vector": [1, 0], "filter": {"$or": many}}),
    );
    assert_error(&resp, 400, "INVALID_FILTER");
}

#[test]
fn components_that_would_overflow_distances_are_refused() {
    let (_dir, node) = node();
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "o", "dimensions": 2, "distance": "euclidean"}),
    );
    // 3e38 is a finite f32, but its square is not: its row would never be found.
    let resp = c.post(
        "/collections/o/vectors",
        &json!({"id": "huge", "vector": [3e38, 0]}),
    );
    assert_error(&resp, 400, "INVALID_VECTOR");
    let resp = c.post(
        "/collections/o/search",
        &json!({"vector": [-3e38, 0], "k": 1}),
    );
    assert_error(&resp, 400, "INVALID_VECTOR");
    assert_eq!(
        c.post(
            "/collections/o/vectors",
            &json!({"id": "big", "vector": [1e16, 0]})
        )
        .0,
        201
    );
    let resp = c.post(
        "/collections/o/search",
        &json!({"vector": [-1e16, 0], "k": 1}),
    );
    assert_eq!(resp.1["results"][0]["id"], "big", "{}", resp.1);
}

#[test]
fn a_search_whose_client_leaves_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        // Enough work that the batch runs for a while: 4 × 1,024 queries × 50k rows.
        let db = needle::Database::open(&data).unwrap();
        let c = db
            .create_collection(needle::CollectionConfig::new(
                "big",
                128,
                needle::Distance::Dot,
            ))
            .unwrap();
        let records = vectors(3, 50_000, 128)
            .into_iter()
            .enumerate()
            .map(|(i, v)| needle::VectorRecord::new(format!("v{i}"), v))
            .collect();
        c.upsert(records).unwrap();
    }
    // The CPU backend: a GPU could finish before the client gives up.
    let node = Node::start(&data, &["--backend", "cpu"]);
    let impatient = Client::with_timeout(&node.url, Duration::from_millis(150));
    let queries = vectors(4, 4000, 128);
    let gone = impatient.try_post(
        "/collections/big/search/batch",
        &json!({"vectors": queries, "k": 10}),
    );
    assert!(gone.is_err(), "the client was to give up first");
    let c = node.client();
    assert!(
        wait_for(Duration::from_secs(60), || metric(
            &c,
            "needle_searches_cancelled_total"
        ) >= 1.0),
        "the search went on after its client left"
    );
}

#[test]
fn metric_labels_stay_bounded() {
    let (_dir, node) = node();
    let c = node.client();
    let http = reqwest::blocking::Client::new();
    for method in ["FOO", "BAR", "X-ANYTHING"] {
        let _ = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/collections", node.url),
            )
            .send();
    }
    c.post(
        "/collections",
        &json!({"name": "tmp", "dimensions": 2, "distance": "dot"}),
    );
    c.post("/collections/tmp/search", &json!({"vector": [1, 0]}));
    let (_, text) = c.get_text("/metrics");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(
        !text.contains("FOO") && !text.contains("X-ANYTHING"),
        "{text}"
    );
    assert!(text.contains("collection=\"tmp\""));
    assert_eq!(c.delete("/collections/tmp").0, 200);
    let (_, text) = c.get_text("/metrics");
    assert!(
        !text.contains("collection=\"tmp\""),
        "a dropped collection's series stayed: {text}"
    );
}
