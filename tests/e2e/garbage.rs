//! Arbitrary bodies at every write and search route: always a 4xx with an error code,
//! never a 5xx, never a crash, and nothing stored changes. The node runs with its
//! address space capped, so a request that makes it allocate by an unchecked count
//! kills it (and fails the test) instead of passing on a machine with memory to spare.

use crate::support::Node;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Room for the node's threads, RocksDB and the test's data, and far less than any
/// allocation sized by a hostile count.
const ADDRESS_SPACE: u64 = 4 << 30;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z$._]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                "[a-z$._]{0,8}|vector|id|k|filter|vectors|metadata|name|dimensions|distance",
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn garbage_bodies_get_client_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_address_space_limit(&dir.path().join("data"), &[], ADDRESS_SPACE);
    let c = node.client();
    c.post(
        "/collections",
        &json!({"name": "g", "dimensions": 2, "distance": "dot"}),
    );
    c.post(
        "/collections/g/vectors",
        &json!({"id": "keep", "vector": [1, 2], "metadata": {"a": 1}}),
    );
    let routes = [
        "/collections",
        "/collections/g/vectors",
        "/collections/g/vectors/batch",
        "/collections/g/search",
        "/collections/g/search/batch",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    });
    runner
        .run(&(0..routes.len(), json_value()), |(route, body)| {
            let (status, resp) = c.post(routes[route], &body);
            // A garbage body may by chance be valid (e.g. a search with an empty
            // filter); what it may never do is fail on the server's side.
            prop_assert!(status < 500, "{} {body} -> {status} {resp}", routes[route]);
            if status >= 400 {
                prop_assert!(
                    resp["error"]["code"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty()),
                    "{resp}"
                );
            }
            Ok(())
        })
        .unwrap();
    // Not even JSON: random bytes.
    runner
        .run(
            &(0..routes.len(), prop::collection::vec(any::<u8>(), 0..200)),
            |(route, bytes)| {
                let (status, resp) = c.post_raw(routes[route], bytes);
                prop_assert!(
                    (400..500).contains(&status),
                    "{} -> {status} {resp}",
                    routes[route]
                );
                Ok(())
            },
        )
        .unwrap();
    // Counts that would size huge allocations if they were trusted before checking:
    // a million empty queries against a 65,536-dimension collection (262 GB as a
    // query buffer), and a huge k with vectors asked for.
    c.post(
        "/collections",
        &json!({"name": "wide", "dimensions": 65536, "distance": "dot"}),
    );
    let million_empty = format!(
        "{{\"vectors\":[{}],\"k\":1}}",
        vec!["[]"; 1_000_000].join(",")
    );
    let (status, resp) = c.post_raw("/collections/wide/search/batch", million_empty);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["code"], "DIMENSION_MISMATCH", "{resp}");
    let (status, resp) = c.post(
        "/collections/g/search/batch",
        &json!({"vectors": vec![[1.0, 2.0]; 100], "k": 10_000, "include_vectors": true}),
    );
    assert!(status == 200 || status == 400, "{status} {resp}");
    let (status, resp) = c.post(
        "/collections/g/search",
        &json!({"vector": [1.0, 2.0], "k": 10_001}),
    );
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (400, json!("INVALID_K"))
    );
    // Still serving, and the stored vector is untouched unless a valid write said so.
    let (status, kept) = c.get("/collections/g/vectors/keep");
    assert_eq!(status, 200);
    assert_eq!(kept["vector"], json!([1.0, 2.0]));
    assert_eq!(c.get("/health").0, 200);
}
