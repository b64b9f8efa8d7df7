//! Resolving an [`Op::PatchMetadata`] into the [`Op::Upsert`] of the records it
//! changes, against the store. The writer commits a patch alone, after every op
//! ordered before it, so the store then holds exactly the state those ops left; a
//! Raft member resolves the same log entry against the same state, so every member
//! writes the same records.

use crate::database::shared::Inner;
use crate::error::{Error, Result};
use crate::model::{patch_metadata, validate_metadata, VectorRecord};
use crate::op::Op;

pub(super) fn resolve(inner: &Inner, op: &Op) -> Result<Op> {
    let Op::PatchMetadata {
        collection,
        ids,
        set,
        remove,
    } = op
    else {
        return Ok(op.clone());
    };
    let state = inner
        .catalog
        .get(collection)
        .ok_or_else(|| Error::CollectionNotFound(collection.clone()))?;
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    // What is logged and replicated is the upsert: it must fit one entry too. Counted
    // as records are read, so an oversized patch stops before it loads them all.
    let too_large = |bytes: usize| Error::OpTooLarge {
        bytes: bytes as u64,
        max: crate::write_checks::MAX_OP_BYTES as u64,
    };
    let mut bytes = 64 + collection.len();
    let per_record = empty_record_bound();
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        if crate::injected_faults::patch_read_fails(collection) {
            return Err(local(Error::Failed(
                "injected: reading a record failed".into(),
            )));
        }
        // Ids that do not exist (any more) are left alone.
        let Some(VectorRecord {
            id,
            vector,
            metadata,
        }) = inner.store.get_vector(state.stored.id, id).map_err(local)?
        else {
            continue;
        };
        let metadata = patch_metadata(metadata, set.as_ref(), remove);
        if let Some(m) = &metadata {
            validate_metadata(m).map_err(|e| Error::InvalidBatchItem {
                index: records.len(),
                source: Box::new(e),
            })?;
        }
        let record = VectorRecord {
            id,
            vector,
            metadata,
        };
        bytes = bytes.saturating_add(record_bound(per_record, &record));
        if bytes > crate::write_checks::MAX_OP_BYTES {
            return Err(too_large(bytes));
        }
        records.push(record);
    }
    let upsert = Op::Upsert {
        collection: collection.clone(),
        records,
    };
    let bytes = upsert.encoded_len_bound();
    if bytes > crate::write_checks::MAX_OP_BYTES {
        return Err(too_large(bytes));
    }
    Ok(upsert)
}

/// A record the store cannot read is this member's problem, not the entry's: under
/// Raft it must stop the member (which the other members do not), never be
/// recorded as the entry's refusal.
fn local(e: Error) -> Error {
    match e {
        Error::Storage(_) | Error::Failed(_) => e,
        other => Error::Failed(format!("reading a record to patch: {other}")),
    }
}

/// What an empty record adds to an upsert's encoding bound, computed once per patch.
fn empty_record_bound() -> usize {
    Op::Upsert {
        collection: String::new(),
        records: vec![VectorRecord {
            id: String::new(),
            vector: Vec::new(),
            metadata: None,
        }],
    }
    .encoded_len_bound()
}

/// At least what one record adds to an upsert's encoding (`Op::encoded_len_bound`).
fn record_bound(empty: usize, record: &VectorRecord) -> usize {
    empty
        + record.id.len()
        + 4 * record.vector.len()
        + record
            .metadata
            .as_ref()
            .map_or(0, |m| 10 + crate::model::json_len(m))
}

#[cfg(test)]
mod tests {
    use crate::model::{CollectionConfig, Distance, Metadata, VectorRecord};
    use crate::op::{Op, Precondition};
    use crate::Database;
    use serde_json::json;

    fn meta(v: serde_json::Value) -> Metadata {
        match v {
            serde_json::Value::Object(m) => m,
            _ => Metadata::new(),
        }
    }

    #[test]
    fn a_patch_changes_metadata_only_and_skips_missing_points() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let c = db
            .create_collection(CollectionConfig::new("c", 2, Distance::Dot))
            .unwrap();
        c.upsert(vec![
            VectorRecord::new("a", vec![1.0, 2.0])
                .with_metadata(meta(json!({"x": 1, "n": {"y": 2, "z": 3}}))),
            VectorRecord::new("b", vec![3.0, 4.0]),
        ])
        .unwrap();
        let applied = db
            .submit(
                Op::PatchMetadata {
                    collection: "c".into(),
                    ids: vec!["a".into(), "b".into(), "gone".into()],
                    set: Some(meta(json!({"x": 9, "new": true}))),
                    remove: vec!["n.y".into()],
                },
                Precondition::None,
            )
            .unwrap();
        assert_eq!(applied.affected, 2, "only the points that exist");
        let a = c.get("a").unwrap();
        assert_eq!(a.vector, vec![1.0, 2.0]);
        assert_eq!(
            a.metadata,
            Some(meta(json!({"x": 9, "n": {"z": 3}, "new": true})))
        );
        assert_eq!(
            c.get("b").unwrap().metadata,
            Some(meta(json!({"x": 9, "new": true})))
        );
        assert!(c.get("gone").is_err());
        // What the log holds is the resolved upsert, which replicas apply as is.
        let logged = db.read_log(applied.seq, 1).unwrap();
        assert!(matches!(&logged[0].1, Op::Upsert { records, .. } if records.len() == 2));
        // A filter on the new metadata sees it.
        let f = crate::Filter::parse(&json!({"new": true})).unwrap();
        assert_eq!(c.count_matching(Some(&f)).unwrap(), 2);
    }

    #[test]
    fn a_patch_never_undoes_a_write_ordered_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let c = db
            .create_collection(CollectionConfig::new("c", 1, Distance::Dot))
            .unwrap();
        c.upsert(vec![VectorRecord::new("p", vec![0.0])]).unwrap();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut last = (0, 0.0);
                for i in 1..=200 {
                    let op = Op::Upsert {
                        collection: "c".into(),
                        records: vec![VectorRecord::new("p", vec![i as f32])],
                    };
                    let seq = db.submit(op, Precondition::None).unwrap().seq;
                    last = (seq, i as f32);
                }
                last
            })
        };
        let mut last_patch = 0;
        for j in 0..200 {
            let op = Op::PatchMetadata {
                collection: "c".into(),
                ids: vec!["p".into()],
                set: Some(meta(json!({"patch": j}))),
                remove: vec![],
            };
            last_patch = db.submit(op, Precondition::None).unwrap().seq;
        }
        let (last_upsert, vector) = writer.join().unwrap();
        let p = c.get("p").unwrap();
        // Whichever came last, the last upsert's vector is there: patches keep it.
        assert_eq!(p.vector, vec![vector]);
        if last_patch > last_upsert {
            assert_eq!(p.metadata, Some(meta(json!({"patch": 199}))));
        } else {
            assert_eq!(p.metadata, None, "an upsert replaces the metadata");
        }
    }

    /// A Raft-ordered patch that fails on this member for a local reason (its store)
    /// stops the member taking any later entry: had the entry after it committed,
    /// the log's applied marker would stand past the failed one and a restart would
    /// never replay it.
    #[cfg(feature = "failpoints")]
    #[test]
    fn a_local_failure_of_an_ordered_patch_stops_every_later_ordered_entry() {
        use crate::database::{Durability, OrderedEntry};
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let name = "patch-read-fails-here";
        let c = db
            .create_collection(CollectionConfig::new(name, 1, Distance::Dot))
            .unwrap();
        c.upsert(vec![VectorRecord::new("p", vec![1.0])]).unwrap();
        let ordered = |op| OrderedEntry {
            op,
            precondition: Precondition::None,
            at: None,
            meta: Vec::new(),
            durability: Durability::ByOrderingLog,
        };
        fail::cfg("patch-read-fails", &format!("return({name})")).unwrap();
        let patch = db.apply_ordered(ordered(Op::PatchMetadata {
            collection: name.into(),
            ids: vec!["p".into()],
            set: Some(meta(json!({"x": 1}))),
            remove: Vec::new(),
        }));
        let later = db.apply_ordered(ordered(Op::Upsert {
            collection: name.into(),
            records: vec![VectorRecord::new("q", vec![2.0])],
        }));
        let patched = patch.map(|(durable, _)| futures::executor::block_on(durable));
        let upserted = later.map(|(durable, _)| futures::executor::block_on(durable));
        fail::remove("patch-read-fails");
        assert!(
            matches!(patched, Ok(Ok(Err(crate::Error::Failed(_))))),
            "{patched:?}"
        );
        // Refused whether it was still queued or arrived after the failure.
        assert!(matches!(upserted, Err(_) | Ok(Ok(Err(_)))), "{upserted:?}");
        assert!(
            c.get("q").is_err(),
            "the entry after the failed one was applied"
        );
        assert!(db.health().failure().is_some());
    }
}
