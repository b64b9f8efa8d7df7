use super::Filter;
use serde_json::{json, Value};

fn doc(v: Value) -> crate::model::Metadata {
    match v {
        Value::Object(m) => m,
        _ => panic!("test document must be an object"),
    }
}

fn check(filter: Value, metadata: Value) -> bool {
    Filter::parse(&filter)
        .unwrap()
        .matches(Some(&doc(metadata)))
}

#[test]
fn equality_and_implicit_and() {
    let m = json!({"color": "red", "size": 3, "nested": {"a": {"b": true}}});
    assert!(check(json!({"color": "red"}), m.clone()));
    assert!(!check(json!({"color": "blue"}), m.clone()));
    assert!(check(json!({"color": "red", "size": 3.0}), m.clone()));
    assert!(!check(json!({"color": "red", "size": 4}), m.clone()));
    assert!(check(json!({"nested.a.b": true}), m.clone()));
    assert!(check(json!({"nested": {"a": {"b": true}}}), m));
}

#[test]
fn comparison_operators() {
    let m = json!({"price": 10, "name": "m"});
    assert!(check(json!({"price": {"$gt": 5}}), m.clone()));
    assert!(!check(json!({"price": {"$gt": 10}}), m.clone()));
    assert!(check(json!({"price": {"$gte": 10}}), m.clone()));
    assert!(check(json!({"price": {"$lt": 10.5}}), m.clone()));
    assert!(check(json!({"price": {"$lte": 10, "$gte": 10}}), m.clone()));
    assert!(!check(json!({"price": {"$lt": 10}}), m.clone()));
    assert!(check(json!({"name": {"$gt": "a", "$lt": "z"}}), m.clone()));
    // Across types nothing compares.
    assert!(!check(json!({"name": {"$gt": 1}}), m.clone()));
    assert!(check(json!({"price": {"$ne": 11}}), m.clone()));
    assert!(check(json!({"price": {"$eq": 10}}), m));
}

#[test]
fn membership_existence_and_missing_fields() {
    let m = json!({"tag": "b", "tags": ["x", "y"], "none": null});
    assert!(check(json!({"tag": {"$in": ["a", "b"]}}), m.clone()));
    assert!(!check(json!({"tag": {"$nin": ["a", "b"]}}), m.clone()));
    assert!(
        check(json!({"tags": "y"}), m.clone()),
        "array field matches any element"
    );
    assert!(check(json!({"tags": {"$in": ["z", "x"]}}), m.clone()));
    assert!(
        check(json!({"tags": ["x", "y"]}), m.clone()),
        "whole-array equality"
    );
    assert!(check(json!({"tags.1": "y"}), m.clone()), "index into array");
    assert!(check(json!({"none": {"$exists": true}}), m.clone()));
    assert!(check(json!({"missing": {"$exists": false}}), m.clone()));
    assert!(!check(json!({"missing": {"$gt": 0}}), m.clone()));
    assert!(
        check(json!({"missing": {"$ne": 1}}), m.clone()),
        "$ne matches a missing field"
    );
    assert!(check(json!({"missing": {"$nin": [1]}}), m));
}

#[test]
fn logical_operators() {
    let m = json!({"a": 1, "b": 2});
    assert!(check(json!({"$or": [{"a": 2}, {"b": 2}]}), m.clone()));
    assert!(!check(json!({"$and": [{"a": 1}, {"b": 3}]}), m.clone()));
    assert!(check(json!({"$not": {"a": 2}}), m.clone()));
    assert!(!check(
        json!({"$not": {"$or": [{"a": 1}, {"b": 9}]}}),
        m.clone()
    ));
    assert!(check(json!({"a": {"$not": {"$gt": 5}}}), m.clone()));
    assert!(!check(json!({"a": {"$not": {"$gte": 0, "$lte": 1}}}), m));
}

#[test]
fn vectors_without_metadata_see_an_empty_object() {
    let f = Filter::parse(&json!({"a": {"$exists": false}})).unwrap();
    assert!(f.matches(None));
    let f = Filter::parse(&json!({"a": 1})).unwrap();
    assert!(!f.matches(None));
}

#[test]
fn malformed_filters_are_rejected_with_a_reason() {
    for bad in [
        json!([1, 2]),
        json!("x"),
        json!({"$foo": 1}),
        json!({"a": {"$regex": "x"}}),
        json!({"a": {"$in": 3}}),
        json!({"a": {"$gt": [1]}}),
        json!({"a": {"$exists": "yes"}}),
        json!({"$and": []}),
        json!({"$or": {"a": 1}}),
        json!({"$and": [{"a": {"$bad": 1}}]}),
        json!({"a..b": 1}),
        json!({"a": {"$not": 5}}),
    ] {
        let err = Filter::parse(&bad).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
}
