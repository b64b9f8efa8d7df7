//! `GET /openapi.json` describes exactly the routes the node serves, and every error
//! code the node's source can answer with. (Bodies and answers are validated against
//! it by `tests/clients/test_openapi.py`.)

use crate::support::{node, Client};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn source(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let (_dir, node) = node();
    let c = node.client();
    let (status, doc) = c.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    let http = reqwest::blocking::Client::new();
    for (template, ops) in paths {
        let path = template
            .replace("{name}", "nothing_here")
            .replace("{id}", "1");
        for method in ops.as_object().expect("operations").keys() {
            operations += 1;
            let method: reqwest::Method = method.to_uppercase().parse().expect("a method");
            let mut request = http.request(method.clone(), format!("{}{path}", node.url));
            if method == reqwest::Method::POST {
                request = request.body("{}");
            }
            let response = request.send().expect("the node answers");
            let status = response.status().as_u16();
            let body: Value = response.json().unwrap_or(Value::Null);
            // The router's fallbacks, which only unserved routes reach.
            let unrouted = (status == 404 && body["error"]["message"] == "no such route")
                || (status == 405 && body["error"]["code"] == "METHOD_NOT_ALLOWED");
            assert!(
                !unrouted,
                "{method} {template} is documented but not served: {body}"
            );
        }
    }
    assert!(operations >= 27, "{operations} operations documented");
    // Served ⊆ documented: every route goes in through `routes!`, which documents
    // it; a plain `.route(` would serve a route the document does not have.
    let routes = source("node/http/routes.rs");
    assert!(
        !routes.contains(".route("),
        "node/http/routes.rs registers a route outside routes!(...)"
    );
    let registered = routes.matches("routes!(").count();
    assert_eq!(
        registered, operations,
        "one routes!() per documented operation"
    );
}

/// The quoted SCREAMING_CASE names in `text`.
fn quoted_codes(text: &str) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for piece in text.split('"').skip(1).step_by(2) {
        if piece.len() > 2
            && piece.starts_with(|c: char| c.is_ascii_uppercase())
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            codes.insert(piece.to_string());
        }
    }
    codes
}

#[test]
fn every_error_code_in_the_source_is_documented_and_no_other() {
    let (_dir, node) = node();
    let (_, doc) = node.client().get("/openapi.json");
    let documented: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut answered = BTreeSet::new();
    for file in ["node/error.rs", "node/replication/error.rs"] {
        answered.extend(quoted_codes(&source(file)));
    }
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/http");
    for entry in std::fs::read_dir(&http).expect("node/http") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("openapi.rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            answered.extend(quoted_codes(&text));
        }
    }
    // Quoted names that are not error codes.
    for not_a_code in [
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "PATCH",
        "CARGO_PKG_VERSION",
    ] {
        answered.remove(not_a_code);
    }
    let undocumented: Vec<_> = answered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from ErrorCode: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&answered).collect();
    assert!(
        stale.is_empty(),
        "documented codes nothing answers: {stale:?}"
    );
}

#[test]
fn the_document_is_open_like_health() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = crate::support::Node::start(
        &dir.path().join("data"),
        &["--api-key", "rw", "--admin-key", "adm"],
    );
    let (status, _) = Client::new(&keyed.url).get("/openapi.json");
    assert_eq!(status, 200);
    let (status, _) = Client::new(&keyed.url).get("/collections");
    assert_eq!(status, 401);
}
