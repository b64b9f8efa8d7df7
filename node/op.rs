//! Operations: the only way data changes. Every committed write is one [`Op`] with a
//! sequence number in the operation log; replication ships exactly these entries.

use crate::error::{Error, Result};
use crate::model::{CollectionConfig, Distance, Metadata, VectorRecord, VectorStorage};
use serde::{Deserialize, Serialize};

/// A validated mutation, as stored in the operation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    CreateCollection(CollectionConfig),
    DropCollection {
        name: String,
    },
    /// Inserts or replaces every record; later records win over earlier ones with the
    /// same id.
    Upsert {
        collection: String,
        #[serde(with = "records_codec")]
        records: Vec<VectorRecord>,
    },
    Delete {
        collection: String,
        ids: Vec<String>,
    },
    /// Changes the metadata of those of `ids` that exist, keeping their vectors:
    /// `set`'s keys are written over the metadata's, then the dotted paths of
    /// `remove` are removed. The writer resolves it into an [`Op::Upsert`] of the
    /// changed records against the state every earlier op left (so it cannot undo a
    /// write ordered before it, as a read-then-upsert by a client could), and logs
    /// that upsert; a Raft log holds the patch itself, which every member resolves
    /// against the same state. Last in the enum, so earlier ops keep their encoding.
    PatchMetadata {
        collection: String,
        ids: Vec<String>,
        #[serde(with = "metadata_codec")]
        set: Option<Metadata>,
        remove: Vec<String>,
    },
}

impl Op {
    /// The collection this op touches.
    pub fn collection(&self) -> &str {
        match self {
            Op::CreateCollection(c) => &c.name,
            Op::DropCollection { name } => name,
            Op::Upsert { collection, .. }
            | Op::Delete { collection, .. }
            | Op::PatchMetadata { collection, .. } => collection,
        }
    }

    /// The op's kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateCollection(_) => "create_collection",
            Op::DropCollection { .. } => "drop_collection",
            Op::Upsert { .. } => "upsert",
            Op::Delete { .. } => "delete",
            Op::PatchMetadata { .. } => "patch_metadata",
        }
    }

    /// At least as many bytes as [`Op::encode`] produces, computed without encoding:
    /// postcard's varints are counted at their widest and metadata by its JSON size.
    pub fn encoded_len_bound(&self) -> usize {
        // Format byte, variant tag, and a length prefix's widest varint.
        const PREFIX: usize = 10;
        let text = |s: &str| PREFIX + s.len();
        1 + PREFIX
            + match self {
                Op::CreateCollection(c) => text(&c.name) + 4 * PREFIX,
                Op::DropCollection { name } => text(name),
                Op::Upsert {
                    collection,
                    records,
                } => {
                    text(collection)
                        + PREFIX
                        + records
                            .iter()
                            .map(|r| {
                                text(&r.id)
                                    + PREFIX
                                    + 4 * r.vector.len()
                                    + 1
                                    + r.metadata
                                        .as_ref()
                                        .map_or(0, |m| PREFIX + crate::model::json_len(m))
                            })
                            .sum::<usize>()
                }
                Op::Delete { collection, ids } => {
                    text(collection) + PREFIX + ids.iter().map(|id| text(id)).sum::<usize>()
                }
                Op::PatchMetadata {
                    collection,
                    ids,
                    set,
                    remove,
                } => {
                    text(collection)
                        + 3 * PREFIX
                        + ids.iter().map(|id| text(id)).sum::<usize>()
                        + set
                            .as_ref()
                            .map_or(0, |m| PREFIX + crate::model::json_len(m))
                        + remove.iter().map(|p| text(p)).sum::<usize>()
                }
            }
    }

    /// Log encoding: a format byte, then postcard. The byte lets a later format be
    /// read alongside this one.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![LOG_FORMAT_V2];
        postcard::to_io(self, &mut out).map_err(|e| Error::Corrupt(format!("encoding op: {e}")))?;
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Op> {
        let corrupt = |e: postcard::Error| Error::Corrupt(format!("decoding op: {e}"));
        match bytes.split_first() {
            Some((&LOG_FORMAT_V2, body)) => postcard::from_bytes(body).map_err(corrupt),
            // v1 differs only in CreateCollection (variant 0), which had no storage.
            Some((&LOG_FORMAT_V1, [0, config @ ..])) => {
                let v1: CollectionConfigV1 = postcard::from_bytes(config).map_err(corrupt)?;
                Ok(Op::CreateCollection(CollectionConfig {
                    name: v1.name,
                    dimensions: v1.dimensions,
                    distance: v1.distance,
                    storage: VectorStorage::F32,
                }))
            }
            Some((&LOG_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(corrupt),
            Some((v, _)) => Err(Error::Corrupt(format!("unknown op format {v}"))),
            None => Err(Error::Corrupt("empty op".into())),
        }
    }
}

/// Format 1: before collections had a storage setting.
const LOG_FORMAT_V1: u8 = 1;
const LOG_FORMAT_V2: u8 = 2;

/// A format-1 `CreateCollection` payload.
#[derive(Serialize, Deserialize)]
struct CollectionConfigV1 {
    name: String,
    dimensions: usize,
    distance: Distance,
}

/// What a write must find before it may be applied. Checked when the op is ordered,
/// against every earlier op, so it holds under concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// Every id in an `Upsert` must be absent (HTTP single insert: 409 otherwise).
    IdsAbsent,
}

/// What an applied op did, for the caller's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The op's position in the operation log.
    pub seq: u64,
    /// Upsert: records written. Delete: ids that existed and were removed.
    pub affected: usize,
    /// Delete: per requested id, whether it existed.
    pub deleted: Vec<bool>,
}

/// A patch's metadata, as JSON text (see `records_codec`).
mod metadata_codec {
    use crate::model::Metadata;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Metadata>, s: S) -> Result<S::Ok, S::Error> {
        m.as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Metadata>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

/// Metadata is stored as JSON text inside the binary log: `serde_json::Value` needs a
/// self-describing format, postcard is not one.
mod records_codec {
    use crate::model::{Metadata, VectorRecord};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wire {
        id: String,
        vector: Vec<f32>,
        metadata: Option<String>,
    }

    pub fn serialize<S: Serializer>(records: &[VectorRecord], s: S) -> Result<S::Ok, S::Error> {
        let wire: Result<Vec<Wire>, _> = records
            .iter()
            .map(|r| {
                let metadata = r.metadata.as_ref().map(serde_json::to_string).transpose()?;
                Ok::<_, serde_json::Error>(Wire {
                    id: r.id.clone(),
                    vector: r.vector.clone(),
                    metadata,
                })
            })
            .collect();
        wire.map_err(serde::ser::Error::custom)?.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VectorRecord>, D::Error> {
        let wire = Vec::<Wire>::deserialize(d)?;
        wire.into_iter()
            .map(|w| {
                let metadata = w
                    .metadata
                    .map(|m| serde_json::from_str::<Metadata>(&m))
                    .transpose()
                    .map_err(serde::de::Error::custom)?;
                Ok(VectorRecord {
                    id: w.id,
                    vector: w.vector,
                    metadata,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_the_log_encoding() {
        let mut meta = crate::model::Metadata::new();
        meta.insert("tags".into(), serde_json::json!(["a", {"b": 1.5}]));
        let ops = vec![
            Op::CreateCollection(CollectionConfig::new("c", 3, Distance::Cosine)),
            Op::CreateCollection(
                CollectionConfig::new("h", 8, Distance::Dot).with_storage(VectorStorage::F16),
            ),
            Op::Upsert {
                collection: "c".into(),
                records: vec![
                    VectorRecord::new("x", vec![1.0, -2.5, 3.25]).with_metadata(meta),
                    VectorRecord::new("y", vec![0.0, 0.0, f32::MIN_POSITIVE]),
                ],
            },
            Op::Delete {
                collection: "c".into(),
                ids: vec!["x".into()],
            },
            Op::PatchMetadata {
                collection: "c".into(),
                ids: vec!["x".into(), "y".into()],
                set: Some(
                    serde_json::from_value(serde_json::json!({"a": [1, {"b": null}]})).unwrap(),
                ),
                remove: vec!["c.d".into()],
            },
            Op::PatchMetadata {
                collection: "c".into(),
                ids: vec![],
                set: None,
                remove: vec![],
            },
            Op::DropCollection { name: "c".into() },
        ];
        for op in ops {
            assert_eq!(Op::decode(&op.encode().unwrap()).unwrap(), op);
            assert!(op.encoded_len_bound() >= op.encode().unwrap().len());
        }
    }

    #[test]
    fn format_1_entries_still_decode() {
        let v1 = CollectionConfigV1 {
            name: "old".into(),
            dimensions: 4,
            distance: Distance::Euclidean,
        };
        let mut bytes = vec![LOG_FORMAT_V1, 0];
        bytes.extend(postcard::to_allocvec(&v1).unwrap());
        let expected = Op::CreateCollection(CollectionConfig::new("old", 4, Distance::Euclidean));
        assert_eq!(Op::decode(&bytes).unwrap(), expected);
        let delete = Op::Delete {
            collection: "old".into(),
            ids: vec!["a".into()],
        };
        let mut bytes = vec![LOG_FORMAT_V1];
        bytes.extend(postcard::to_allocvec(&delete).unwrap());
        assert_eq!(Op::decode(&bytes).unwrap(), delete);
    }

    #[test]
    fn the_length_bound_is_never_below_the_encoding() {
        let mut meta = crate::model::Metadata::new();
        meta.insert("tags".into(), serde_json::json!(["ünïcode", {"b": 1.5}]));
        let long_id = "x".repeat(300);
        let ops = vec![
            Op::CreateCollection(CollectionConfig::new("c", 65_536, Distance::Cosine)),
            Op::DropCollection {
                name: "c".repeat(128),
            },
            Op::Upsert {
                collection: "c".into(),
                records: (0..200)
                    .map(|i| {
                        VectorRecord::new(format!("{long_id}{i}"), vec![i as f32; 130])
                            .with_metadata(meta.clone())
                    })
                    .collect(),
            },
            Op::Delete {
                collection: "c".into(),
                ids: (0..1000).map(|i| format!("{i}")).collect(),
            },
        ];
        for op in ops {
            let encoded = op.encode().unwrap().len();
            let bound = op.encoded_len_bound();
            assert!(bound >= encoded, "{} < {encoded} for {}", bound, op.kind());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Op::decode(&[]).is_err());
        assert!(Op::decode(&[9, 1, 2]).is_err());
        assert!(Op::decode(&[1, 200, 200, 200]).is_err());
    }
}
