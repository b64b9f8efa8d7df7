//! The RocksDB layout. Column families:
//!
//! | cf            | key                          | value                                   |
//! |---------------|------------------------------|-----------------------------------------|
//! | `meta`        | `applied_seq`                | u64 big-endian: last op applied          |
//! | `collections` | name                         | JSON [`StoredCollection`]                |
//! | `vectors`     | collection id (u64 BE) ‖ id  | f32 little-endian components             |
//! | `metadata`    | collection id (u64 BE) ‖ id  | JSON object (absent when none)           |
//! | `oplog`       | seq (u64 BE)                 | encoded [`Op`]                           |
//!
//! A collection's id is the sequence number of the op that created it, so a dropped
//! and re-created collection of the same name never sees the old one's keys. Every op
//! is written as one `WriteBatch` holding its log entry, its data and `applied_seq`,
//! which is what makes a crash at any point leave either all of an op or none of it.

use crate::error::{Error, Result};
use crate::model::{CollectionConfig, Metadata, VectorRecord};
use crate::op::Op;
use rocksdb::{
    ColumnFamily, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

const CF_META: &str = "meta";
const CF_COLLECTIONS: &str = "collections";
const CF_VECTORS: &str = "vectors";
const CF_METADATA: &str = "metadata";
const CF_OPLOG: &str = "oplog";
const KEY_APPLIED_SEQ: &[u8] = crate::meta_keys::APPLIED_SEQ.as_bytes();

/// A collection as persisted: its config plus the id that prefixes its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCollection {
    #[serde(flatten)]
    pub config: CollectionConfig,
    pub id: u64,
}

/// A collection checksum and the applied sequence number it includes, read from one
/// RocksDB snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CollectionChecksum {
    pub vectors: u64,
    pub checksum: u64,
    /// The last operation the checksummed state includes.
    pub applied_seq: u64,
}

/// One key change of an op, prepared before anything touches the batch.
enum Write<'a> {
    Put(&'a ColumnFamily, Vec<u8>, Vec<u8>),
    Delete(&'a ColumnFamily, Vec<u8>),
    DeleteRange(&'a ColumnFamily, [u8; 8], [u8; 8]),
}

pub(crate) struct Store {
    db: DB,
}

fn vector_key(collection_id: u64, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&collection_id.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    decode_vector_into(bytes, &mut out)?;
    Ok(out)
}

/// Decodes into `out`, reusing its allocation.
fn decode_vector_into(bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::Corrupt(format!(
            "vector value of {} bytes",
            bytes.len()
        )));
    }
    out.clear();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(())
}

fn decode_metadata(bytes: &[u8]) -> Result<Metadata> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("metadata: {e}")))
}

const COLUMN_FAMILIES: [&str; 5] = [CF_META, CF_COLLECTIONS, CF_VECTORS, CF_METADATA, CF_OPLOG];

fn options() -> Options {
    let mut opts = Options::default();
    opts.set_max_background_jobs(2);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let mut opts = options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, path, COLUMN_FAMILIES)?;
        Ok(Store { db })
    }

    /// Opens an existing store without taking its lock or writing to it (a checkpoint
    /// being verified); fails where there is no store.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let db = DB::open_cf_for_read_only(&options(), path, COLUMN_FAMILIES, false)?;
        Ok(Store { db })
    }

    /// A consistent copy of the store in the new directory `dir`: hard links to its
    /// SST files where the filesystem allows, after flushing the memtables.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        // Writes made without an fsync (`commit_unsynced`) are on disk before the
        // checkpoint says they are: a Raft member purges its log behind a snapshot,
        // and what the purged entries wrote must not live only in the page cache.
        self.db.flush_wal(true)?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("missing column family {name}")))
    }

    pub fn applied_seq(&self) -> Result<u64> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_APPLIED_SEQ)? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt("applied_seq is not 8 bytes".into()))?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    pub fn load_collections(&self) -> Result<Vec<StoredCollection>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_COLLECTIONS)?, IteratorMode::Start)
        {
            let (_, value) = item?;
            out.push(
                serde_json::from_slice(&value)
                    .map_err(|e| Error::Corrupt(format!("collection record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Whether a collection of this name is stored (whatever memory holds).
    pub fn holds_collection(&self, name: &str) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_COLLECTIONS)?, name.as_bytes())?
            .is_some())
    }

    /// Calls `f` with every (key without prefix, value) pair of `cf` under `prefix`,
    /// in key order. A raw iterator (no per-entry allocation), large readahead and no
    /// block-cache fill: start-up reads each collection once, front to back.
    fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        opts.set_readahead_size(8 << 20);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, opts);
        it.seek(prefix);
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let Some(suffix) = key.strip_prefix(prefix) else {
                break;
            };
            f(suffix, value)?;
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// A checksum of a collection's ids, vectors and metadata, read from one RocksDB
    /// snapshot (so concurrent writes never split it), and its vector count. Nodes
    /// holding the same data give the same value whatever order they applied it in.
    pub fn collection_checksum(&self, collection_id: u64) -> Result<CollectionChecksum> {
        let snapshot = self.db.snapshot();
        let applied_seq = match snapshot.get_cf(self.cf(CF_META)?, KEY_APPLIED_SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt("applied_seq is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        let prefix = collection_id.to_be_bytes();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut count = 0u64;
        for (cf, counted) in [(CF_VECTORS, true), (CF_METADATA, false)] {
            let mut opts = ReadOptions::default();
            opts.fill_cache(false);
            opts.set_snapshot(&snapshot);
            let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, opts);
            it.seek(prefix);
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                let Some(id) = key.strip_prefix(&prefix[..]) else {
                    break;
                };
                // Lengths first, so (id, value) pairs can never run into each other.
                hasher.update(&(id.len() as u32).to_be_bytes());
                hasher.update(id);
                hasher.update(&(value.len() as u32).to_be_bytes());
                hasher.update(value);
                count += u64::from(counted);
                it.next();
            }
            it.status()?;
            hasher.update(cf.as_bytes());
        }
        Ok(CollectionChecksum {
            vectors: count,
            checksum: hasher.digest(),
            applied_seq,
        })
    }

    /// Calls `f` for every vector of a collection, in key order.
    pub fn for_each_vector(
        &self,
        collection_id: u64,
        mut f: impl FnMut(&str, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut vector = Vec::new();
        self.scan_prefix(CF_VECTORS, &collection_id.to_be_bytes(), |id, value| {
            let id = std::str::from_utf8(id)
                .map_err(|_| Error::Corrupt("vector id is not UTF-8".into()))?;
            decode_vector_into(value, &mut vector)?;
            f(id, &vector)
        })
    }

    /// Calls `f` for every metadata object of a collection, in key order.
    pub fn for_each_metadata(
        &self,
        collection_id: u64,
        mut f: impl FnMut(&str, Metadata) -> Result<()>,
    ) -> Result<()> {
        self.scan_prefix(CF_METADATA, &collection_id.to_be_bytes(), |id, value| {
            let id = std::str::from_utf8(id)
                .map_err(|_| Error::Corrupt("metadata id is not UTF-8".into()))?;
            f(id, decode_metadata(value)?)
        })
    }

    /// Whether the store holds vector `id` of the collection (the committed state,
    /// which the writer checks preconditions against).
    pub fn vector_exists(&self, collection_id: u64, id: &str) -> Result<bool> {
        let key = vector_key(collection_id, id);
        Ok(self.db.get_pinned_cf(self.cf(CF_VECTORS)?, key)?.is_some())
    }

    /// One vector and its metadata, read from a single snapshot so the two agree.
    pub fn get_vector(&self, collection_id: u64, id: &str) -> Result<Option<VectorRecord>> {
        let key = vector_key(collection_id, id);
        let snapshot = self.db.snapshot();
        let Some(vector) = snapshot.get_cf(self.cf(CF_VECTORS)?, &key)? else {
            return Ok(None);
        };
        let metadata = snapshot
            .get_cf(self.cf(CF_METADATA)?, &key)?
            .map(|m| decode_metadata(&m))
            .transpose()?;
        Ok(Some(VectorRecord {
            id: id.to_string(),
            vector: decode_vector(&vector)?,
            metadata,
        }))
    }

    /// The oldest retained log entry's sequence number, if the log has any.
    pub fn first_log_seq(&self) -> Result<Option<u64>> {
        Ok(self.read_log(0, 1)?.first().map(|(seq, _)| *seq))
    }

    /// Adds the removal of log entries `[from, below)` to `batch`: the log is trimmed
    /// in the same atomic write as the op that pushes it past its retention.
    pub fn stage_log_trim(&self, batch: &mut WriteBatch, from: u64, below: u64) -> Result<()> {
        batch.delete_range_cf(self.cf(CF_OPLOG)?, from.to_be_bytes(), below.to_be_bytes());
        Ok(())
    }

    /// Log entries with `seq >= from`, at most `limit` of them, in order.
    pub fn read_log(&self, from: u64, limit: usize) -> Result<Vec<(u64, Op)>> {
        self.read_log_within(from, limit, usize::MAX)
    }

    /// [`Store::read_log`], stopping before the entries' encoded bytes pass
    /// `max_bytes` (the first entry always comes, whatever its size): a reply built
    /// from them fits the budget of one message.
    pub fn read_log_within(
        &self,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Op)>> {
        let start = from.to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_OPLOG)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in iter.take(limit) {
            let (key, value) = item?;
            bytes = bytes.saturating_add(value.len());
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            let seq: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("log key is not 8 bytes".into()))?;
            out.push((u64::from_be_bytes(seq), Op::decode(&value)?));
        }
        Ok(out)
    }

    /// Adds one op to `batch`: its log entry, its effect on the data, and the new
    /// applied sequence. `collection_id` is the id of the collection the op touches
    /// (for `CreateCollection`, the id it gets: `seq`). Everything that can fail is
    /// done before the first byte goes into `batch`, so an op that fails here leaves
    /// the batch — shared with the other ops of its group — untouched.
    pub fn stage(
        &self,
        batch: &mut WriteBatch,
        seq: u64,
        op: &Op,
        collection_id: u64,
    ) -> Result<()> {
        for write in self.writes(seq, op, collection_id)? {
            match write {
                Write::Put(cf, key, value) => batch.put_cf(cf, key, value),
                Write::Delete(cf, key) => batch.delete_cf(cf, key),
                Write::DeleteRange(cf, from, to) => batch.delete_range_cf(cf, from, to),
            }
        }
        Ok(())
    }

    /// Every key change of one op, computed (and every encoding done) up front.
    fn writes(&self, seq: u64, op: &Op, collection_id: u64) -> Result<Vec<Write<'_>>> {
        let (collections, vectors, metadata) = (
            self.cf(CF_COLLECTIONS)?,
            self.cf(CF_VECTORS)?,
            self.cf(CF_METADATA)?,
        );
        let mut writes = vec![
            Write::Put(self.cf(CF_OPLOG)?, seq.to_be_bytes().to_vec(), op.encode()?),
            Write::Put(
                self.cf(CF_META)?,
                KEY_APPLIED_SEQ.to_vec(),
                seq.to_be_bytes().to_vec(),
            ),
        ];
        match op {
            Op::CreateCollection(config) => {
                let stored = StoredCollection {
                    config: config.clone(),
                    id: collection_id,
                };
                let value = serde_json::to_vec(&stored)
                    .map_err(|e| Error::Corrupt(format!("encoding collection: {e}")))?;
                writes.push(Write::Put(
                    collections,
                    config.name.as_bytes().to_vec(),
                    value,
                ));
            }
            Op::DropCollection { name } => {
                let (from, to) = (
                    collection_id.to_be_bytes(),
                    (collection_id + 1).to_be_bytes(),
                );
                writes.push(Write::Delete(collections, name.as_bytes().to_vec()));
                writes.push(Write::DeleteRange(vectors, from, to));
                writes.push(Write::DeleteRange(metadata, from, to));
            }
            Op::Upsert { records, .. } => {
                for r in records {
                    let key = vector_key(collection_id, &r.id);
                    writes.push(Write::Put(vectors, key.clone(), encode_vector(&r.vector)));
                    writes.push(match &r.metadata {
                        Some(m) => Write::Put(
                            metadata,
                            key,
                            serde_json::to_vec(m)
                                .map_err(|e| Error::Corrupt(format!("encoding metadata: {e}")))?,
                        ),
                        None => Write::Delete(metadata, key),
                    });
                }
            }
            Op::Delete { ids, .. } => {
                for id in ids {
                    let key = vector_key(collection_id, id);
                    writes.push(Write::Delete(vectors, key.clone()));
                    writes.push(Write::Delete(metadata, key));
                }
            }
            // Resolved into an upsert before it is staged (`writer/patch.rs`).
            Op::PatchMetadata { .. } => {
                return Err(Error::Corrupt(
                    "an unresolved metadata patch reached the store".into(),
                ))
            }
        }
        Ok(writes)
    }

    /// A JSON value kept in the `meta` column family (replication bookkeeping).
    pub fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.db.get_cf(self.cf(CF_META)?, key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("meta {key}: {e}"))),
        }
    }

    /// Adds a raw `meta` value to a batch, to be written with it.
    pub fn stage_meta(&self, batch: &mut WriteBatch, key: &str, value: &[u8]) -> Result<()> {
        batch.put_cf(self.cf(CF_META)?, key.as_bytes(), value);
        Ok(())
    }

    pub fn stage_meta_delete(&self, batch: &mut WriteBatch, key: &str) -> Result<()> {
        batch.delete_cf(self.cf(CF_META)?, key.as_bytes());
        Ok(())
    }

    /// Every `meta` entry whose key starts with `prefix`, as JSON values.
    pub fn meta_json_with_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META)?, mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8_lossy(&key).into_owned();
            let value = serde_json::from_slice(&value)
                .map_err(|e| Error::Corrupt(format!("meta {key}: {e}")))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Stores (or with `None` removes) a JSON value in `meta`, durably.
    pub fn set_meta_json<T: Serialize>(&self, key: &str, value: Option<&T>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_META)?;
        match value {
            Some(value) => {
                let bytes = serde_json::to_vec(value)
                    .map_err(|e| Error::Corrupt(format!("meta {key}: {e}")))?;
                batch.put_cf(cf, key.as_bytes(), bytes);
            }
            None => batch.delete_cf(cf, key.as_bytes()),
        }
        Ok(self.commit(batch)?)
    }

    /// Stores (or with `None` removes) several raw `meta` values in one atomic,
    /// durable write.
    pub fn set_meta_batch(&self, entries: &[(&str, Option<&[u8]>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_META)?;
        for (key, value) in entries {
            match value {
                Some(value) => batch.put_cf(cf, key.as_bytes(), value),
                None => batch.delete_cf(cf, key.as_bytes()),
            }
        }
        Ok(self.commit(batch)?)
    }

    /// Writes a batch with fsync of the WAL before returning: once this returns, the
    /// ops in it survive a crash of the process or the machine.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)
    }

    /// Writes a batch to the WAL without waiting for an fsync: it survives a crash of
    /// the process (the kernel holds the WAL) but not necessarily of the machine. For
    /// writes another fsynced log can replay (`Durability::ByOrderingLog`).
    pub fn commit_unsynced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        self.db.write(batch)
    }
}
