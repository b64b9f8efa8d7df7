//! Arbitrary bodies at every write and search route: always a 4xx with an error code,
//! never a 5xx, never a crash, and nothing stored changes.

use crate::support::node;
use proptest::prelude::*;
use serde_json::{json, Value};

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
    let (_dir, node) = node();
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
    // Still serving, and the stored vector is untouched unless a valid write said so.
    let (status, kept) = c.get("/collections/g/vectors/keep");
    assert_eq!(status, 200);
    assert_eq!(kept["vector"], json!([1.0, 2.0]));
    assert_eq!(c.get("/health").0, 200);
}
