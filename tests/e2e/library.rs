//! The Rust library without the server: `Database::open` and `Collection`, durability
//! across reopen, concurrent writers, the operation log, and exactness against a
//! brute-force model under random operations.

use crate::support::vectors;
use needle::{CollectionConfig, Database, Distance, Filter, Metadata, Op, VectorRecord};
use needle_kernels::{reference, Metric};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

fn meta(v: serde_json::Value) -> Metadata {
    v.as_object().unwrap().clone()
}

#[test]
fn data_survives_reopen_and_the_log_records_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("primary.needle");
    {
        let db = Database::open(&path).unwrap();
        let docs = db
            .create_collection(CollectionConfig::new("docs", 3, Distance::Cosine))
            .unwrap();
        docs.insert(
            VectorRecord::new("a", vec![1.0, 0.0, 0.0]).with_metadata(meta(json!({"lang": "en"}))),
        )
        .unwrap();
        assert_eq!(
            docs.insert(VectorRecord::new("a", vec![0.0, 1.0, 0.0]))
                .unwrap_err()
                .code(),
            "VECTOR_EXISTS"
        );
        docs.upsert(vec![
            VectorRecord::new("b", vec![0.0, 1.0, 0.0]),
            VectorRecord::new("c", vec![0.0, 0.0, 1.0]),
        ])
        .unwrap();
        assert!(docs.delete("c").unwrap());
        assert!(!docs.delete("c").unwrap());
        db.create_collection(CollectionConfig::new("gone", 2, Distance::Dot))
            .unwrap();
        db.drop_collection("gone").unwrap();
        assert_eq!(db.applied_seq(), 7);
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.applied_seq(), 7);
    let names: Vec<String> = db
        .collections()
        .into_iter()
        .map(|c| c.config.name)
        .collect();
    assert_eq!(names, vec!["docs"]);
    let docs = db.collection("docs").unwrap();
    assert_eq!(docs.count().unwrap(), 2);
    assert_eq!(docs.get("a").unwrap().metadata.unwrap()["lang"], "en");
    assert_eq!(docs.get("c").unwrap_err().code(), "VECTOR_NOT_FOUND");
    let hits = docs.search(&[0.9, 0.1, 0.0], 10, None).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let log = db.read_log(1, 100).unwrap();
    assert_eq!(
        log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert!(matches!(log[0].1, Op::CreateCollection(_)));
    assert!(matches!(&log[4].1, Op::Delete { ids, .. } if ids == &vec!["c".to_string()]));
    assert!(matches!(&log[6].1, Op::DropCollection { name } if name == "gone"));
    assert_eq!(db.read_log(6, 1).unwrap().len(), 1);
}

#[test]
fn concurrent_writers_all_land_with_consecutive_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let c = db
        .create_collection(CollectionConfig::new("c", 4, Distance::Euclidean))
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = c.clone();
            s.spawn(move || {
                for (i, v) in vectors(t, 50, 4).into_iter().enumerate() {
                    c.insert(VectorRecord::new(format!("{t}-{i}"), v)).unwrap();
                }
            });
        }
    });
    assert_eq!(c.count().unwrap(), 400);
    assert_eq!(db.applied_seq(), 401);
    let seqs: Vec<u64> = db
        .read_log(0, 1000)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, (1..=401).collect::<Vec<_>>());
}

#[test]
fn a_second_open_of_a_live_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Database::open(dir.path()).unwrap();
    let err = Database::open(dir.path()).err().expect("second open fails");
    assert_eq!(err.code(), "STORAGE_ERROR");
}

#[test]
fn filters_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let c = db
        .create_collection(CollectionConfig::new("f", 1, Distance::Euclidean))
        .unwrap();
    let records = (0..100)
        .map(|i| {
            VectorRecord::new(i.to_string(), vec![i as f32]).with_metadata(meta(json!({"i": i})))
        })
        .collect();
    c.upsert(records).unwrap();
    let f = Filter::parse(&json!({"$or": [{"i": {"$lt": 3}}, {"i": {"$gt": 97}}]})).unwrap();
    let hits = c.search(&[50.0], 10, Some(&f)).unwrap();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["0", "1", "2", "98", "99"]);
}

/// A random operation against a small collection.
#[derive(Debug, Clone)]
enum Action {
    Upsert(u8, Vec<f32>, u8),
    Delete(u8),
}

fn action(dims: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0u8..40, prop::collection::vec(-10.0f32..10.0, dims), 0u8..4).prop_map(|(id, v, tag)| Action::Upsert(id, v, tag)),
        1 => (0u8..40).prop_map(Action::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// After any sequence of upserts and deletes — and again after reopening — every
    /// search returns exactly the brute-force answer over the model's contents.
    #[test]
    fn engine_matches_a_brute_force_model(
        actions in prop::collection::vec(action(5), 1..80),
        query in prop::collection::vec(-10.0f32..10.0, 5),
        distance in prop_oneof![Just(Distance::Cosine), Just(Distance::Euclidean), Just(Distance::Dot)],
        k in 1usize..12,
        tag in prop::option::of(0u8..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<String, (Vec<f32>, u8)> = BTreeMap::new();
        {
            let db = Database::open(dir.path()).unwrap();
            let c = db.create_collection(CollectionConfig::new("p", 5, distance)).unwrap();
            for (step, a) in actions.iter().enumerate() {
                // Filtered searches between writes: the cached filter masks must follow.
                if step % 5 == 0 {
                    check(&db, &model, &query, k, tag, distance)?;
                }
                match a {
                    Action::Upsert(id, v, t) => {
                        c.upsert(vec![VectorRecord::new(id.to_string(), v.clone()).with_metadata(meta(json!({"tag": t})))]).unwrap();
                        model.insert(id.to_string(), (v.clone(), *t));
                    }
                    Action::Delete(id) => {
                        prop_assert_eq!(c.delete(&id.to_string()).unwrap(), model.remove(&id.to_string()).is_some());
                    }
                }
            }
            check(&db, &model, &query, k, tag, distance)?;
        }
        let db = Database::open(dir.path()).unwrap();
        check(&db, &model, &query, k, tag, distance)?;
    }
}

fn check(
    db: &Database,
    model: &BTreeMap<String, (Vec<f32>, u8)>,
    query: &[f32],
    k: usize,
    tag: Option<u8>,
    distance: Distance,
) -> Result<(), TestCaseError> {
    let metric = match distance {
        Distance::Cosine => Metric::Cosine,
        Distance::Euclidean => Metric::Euclidean,
        Distance::Dot => Metric::Dot,
    };
    let c = db.collection("p").unwrap();
    prop_assert_eq!(c.count().unwrap(), model.len());
    let filter = tag.map(|t| Filter::parse(&json!({"tag": t})).unwrap());
    let hits = c.search(query, k, filter.as_ref()).unwrap();
    let mut expected: Vec<(f32, &String)> = model
        .iter()
        .filter(|(_, (_, t))| tag.is_none_or(|want| *t == want))
        .map(|(id, (v, _))| (reference::naive_distance(metric, query, v), id))
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0));
    expected.truncate(k);
    prop_assert_eq!(hits.len(), expected.len());
    for (hit, (want, _)) in hits.iter().zip(&expected) {
        prop_assert!(
            (hit.distance - want).abs() <= 1e-3 * (1.0 + want.abs()),
            "{} vs {}",
            hit.distance,
            want
        );
        let (v, _) = &model[&hit.id];
        let own = reference::naive_distance(metric, query, v);
        prop_assert!((hit.distance - own).abs() <= 1e-3 * (1.0 + own.abs()));
    }
    Ok(())
}

#[test]
fn mass_deletes_are_compacted_in_the_background_and_results_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let c = db
        .create_collection(CollectionConfig::new("m", 1, Distance::Euclidean))
        .unwrap();
    let records = (0..6000)
        .map(|i| {
            VectorRecord::new(i.to_string(), vec![i as f32]).with_metadata(meta(json!({"i": i})))
        })
        .collect();
    c.upsert(records).unwrap();
    // Cache this filter's mask before the deletes; it must follow them and compaction.
    let f = Filter::parse(&json!({"i": {"$gte": 5990}})).unwrap();
    assert_eq!(c.search(&[0.0], 10, Some(&f)).unwrap().len(), 10);
    let doomed: Vec<String> = (0..6000)
        .filter(|i| i % 3 != 0)
        .map(|i: i32| i.to_string())
        .collect();
    db.submit(
        Op::Delete {
            collection: "m".into(),
            ids: doomed,
        },
        needle::Precondition::None,
    )
    .unwrap();
    assert_eq!(c.count().unwrap(), 2000);
    // Searches during and after compaction see exactly the survivors.
    let compacted = crate::support::wait_for(std::time::Duration::from_secs(30), || {
        let hits = c.search(&[3001.0], 3, None).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, vec!["3000", "3003", "2997"]);
        c.tombstones().unwrap() == 0
    });
    assert!(
        compacted,
        "4000 tombstones out of 6000 rows trigger compaction"
    );
    let hits = c.search(&[0.0], 10, Some(&f)).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        vec!["5991", "5994", "5997"]
    );
    // Writes after compaction address the right rows.
    c.upsert(vec![VectorRecord::new("3", vec![3001.0])])
        .unwrap();
    assert_eq!(c.search(&[3001.0], 1, None).unwrap()[0].id, "3");
    assert!(c.delete("3000").unwrap());
    assert_eq!(
        c.search(&[3000.5], 2, None)
            .unwrap()
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>(),
        vec!["3", "3003"]
    );
}

#[test]
fn the_operation_log_keeps_only_its_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let options = needle::DatabaseOptions {
        log_retention: 16,
        ..Default::default()
    };
    {
        let db = Database::open_with(dir.path(), options).unwrap();
        let c = db
            .create_collection(CollectionConfig::new("r", 2, Distance::Dot))
            .unwrap();
        for i in 0..100 {
            c.insert(VectorRecord::new(i.to_string(), vec![i as f32, 1.0]))
                .unwrap();
        }
        assert_eq!(db.applied_seq(), 101);
        let log = db.read_log(0, 1000).unwrap();
        // Trimmed in steps: between the retention and an eighth more entries remain.
        assert!((16..=18).contains(&log.len()), "{} entries kept", log.len());
        assert_eq!(log.first().unwrap().0, db.log_start());
        assert_eq!(log.last().unwrap().0, 101);
        let seqs: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (db.log_start()..=101).collect::<Vec<_>>(), "no gaps");
    }
    // The data does not depend on the log: everything is there after a restart, and
    // the log window is where it was.
    let db = Database::open_with(dir.path(), options).unwrap();
    let c = db.collection("r").unwrap();
    assert_eq!(c.count().unwrap(), 100);
    assert_eq!(c.get("0").unwrap().vector, vec![0.0, 1.0]);
    assert_eq!(db.read_log(0, 1).unwrap()[0].0, db.log_start());
    c.insert(VectorRecord::new("x", vec![0.0, 0.0])).unwrap();
    assert_eq!(
        db.read_log(db.log_start(), 1000).unwrap().last().unwrap().0,
        102
    );
}

/// The operation log is the replication unit: another database that applies it at the
/// same sequence numbers ends up identical, replays are no-ops, and gaps are refused.
#[test]
fn applying_another_databases_log_reproduces_it_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Database::open(dir.path().join("primary")).unwrap();
    let c = primary
        .create_collection(CollectionConfig::new("docs", 3, Distance::Cosine))
        .unwrap();
    let records: Vec<VectorRecord> = vectors(5, 40, 3)
        .into_iter()
        .enumerate()
        .map(|(i, v)| VectorRecord::new(i.to_string(), v).with_metadata(meta(json!({"i": i}))))
        .collect();
    c.upsert(records[..20].to_vec()).unwrap();
    c.upsert(records[20..].to_vec()).unwrap();
    c.delete("3").unwrap();
    primary
        .create_collection(CollectionConfig::new("tmp", 2, Distance::Dot))
        .unwrap();
    primary.drop_collection("tmp").unwrap();
    let log = primary.read_log(1, 1000).unwrap();
    assert_eq!(log.len(), 6);

    let replica_path = dir.path().join("replica");
    let replica = Database::open(&replica_path).unwrap();
    // A gap is refused and changes nothing.
    let err = replica.apply_entries(log[1..].to_vec()).unwrap_err();
    assert_eq!(err.code(), "LOG_GAP");
    assert_eq!(replica.applied_seq(), 0);
    assert!(replica.collections().is_empty());
    // In two parts, the second overlapping the first: the overlap is skipped.
    assert_eq!(replica.apply_entries(log[..4].to_vec()).unwrap(), 4);
    assert_eq!(replica.apply_entries(log[2..].to_vec()).unwrap(), 6);
    assert_eq!(
        replica.apply_entries(log.clone()).unwrap(),
        6,
        "a full replay is a no-op"
    );
    drop(replica);

    let replica = Database::open(&replica_path).unwrap();
    assert_eq!(
        replica.read_log(1, 1000).unwrap(),
        log,
        "same log, same sequence numbers"
    );
    // Tombstones differ (the replica was reopened, which packs rows); contents do not.
    let summary = |db: &Database| -> Vec<(CollectionConfig, usize)> {
        db.collections()
            .into_iter()
            .map(|c| (c.config, c.count))
            .collect()
    };
    assert_eq!(summary(&replica), summary(&primary));
    let query = [0.3, -0.2, 0.9];
    let f = Filter::parse(&json!({"i": {"$gte": 10}})).unwrap();
    let a = primary
        .collection("docs")
        .unwrap()
        .search(&query, 5, Some(&f))
        .unwrap();
    let b = replica
        .collection("docs")
        .unwrap()
        .search(&query, 5, Some(&f))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        replica.collection("docs").unwrap().get("7").unwrap(),
        c.get("7").unwrap()
    );
}

/// The ±1e16 component bound is for new writes: an entry an older version already
/// ordered (with a larger component) still applies, so members cannot diverge over it.
#[test]
fn entries_ordered_elsewhere_are_not_held_to_the_new_component_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let c = db
        .create_collection(CollectionConfig::new("c", 2, Distance::Dot))
        .unwrap();
    let huge = VectorRecord::new("h", vec![3e38, 0.0]);
    assert_eq!(c.insert(huge.clone()).unwrap_err().code(), "INVALID_VECTOR");
    let ordered = needle::Op::Upsert {
        collection: "c".into(),
        records: vec![huge],
    };
    assert_eq!(db.apply_entries(vec![(2, ordered)]).unwrap(), 2);
    assert_eq!(c.get("h").unwrap().vector, vec![3e38, 0.0]);
}
