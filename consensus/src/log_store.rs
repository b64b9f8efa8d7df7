//! The Raft log and vote in RocksDB, in a database of their own (`DIR/raft`) beside
//! the node's data: the log is truncated and purged on Raft's schedule, the data on
//! the node's, and neither should compact or stall the other.
//!
//! Durability: an append is readable when `append` returns and acknowledged to
//! openraft only after the WAL is fsynced (appends made while an fsync runs share
//! the next one: [`crate::wal_syncer`]); a vote is fsynced before `save_vote`
//! returns. Those two are what Raft's safety rests on.
//!
//! Groups: every Raft group of a member keeps its log and vote in this one
//! database, and shares its fsync thread, so appends of many groups made at once
//! cost one fsync. The cluster-wide group keeps the keys it had before there were
//! other groups (the `log` and `meta` column families, keys without a prefix), so
//! an existing data directory opens unchanged; every other group's keys live in
//! `group_log` and `group_meta` behind its id as 8 big-endian bytes. Those two
//! column families are created only when a member first runs another group, so a
//! member that never did can still be opened by a binary from before groups
//! (RocksDB refuses to open a database with column families it is not told of). Log keys are
//! the prefix and then the index as 8 big-endian bytes, so that a group's log is
//! one contiguous, ordered key range.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, Direction, IteratorMode,
    MultiThreaded, Options, WriteBatch,
};

/// Multi-threaded mode: a group's column families are created while other groups
/// read and write.
type DB = DBWithThreadMode<MultiThreaded>;
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::ConsensusError;
use crate::types::{Entry, GroupId, LogId, RequestId, TypeConfig, Vote};
use crate::wal_syncer::WalSyncer;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const CF_GROUP_LOG: &str = "group_log";
const CF_GROUP_META: &str = "group_meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// Who waits for which group's request to reach the disk, and where to say at
/// which index it did.
type FlushWaiters = HashMap<(GroupId, RequestId), oneshot::Sender<u64>>;

/// One group's log store; clones share the database (openraft asks for a reader
/// clone), and so do the stores of a member's other groups ([`LogStore::group`]).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    group: GroupId,
    /// Before every key of this group: empty for the cluster-wide group.
    prefix: Vec<u8>,
    /// Who waits for a request's entry to be on disk here (the `primary` write
    /// concern), by group and request id; shared by every handle of every group.
    flush_waiters: Arc<Mutex<FlushWaiters>>,
    /// Fsyncs appends in groups, on a thread of its own.
    syncer: Arc<WalSyncer>,
}

impl LogStore {
    /// Opens (or creates) the log database at `path`, as the cluster-wide group's
    /// store.
    pub fn open(path: &Path) -> Result<LogStore, ConsensusError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Whatever families are there (the group ones once a group ran), and the
        // cluster group's always.
        // A database that exists but whose families cannot be listed is an error
        // worth its own message, not a fresh log.
        // (`try_exists`: a directory it may not read is an error, not a fresh log.)
        let exists = path
            .join("CURRENT")
            .try_exists()
            .map_err(|e| ConsensusError::Storage(format!("{}: {e}", path.display())))?;
        let mut names: Vec<String> = if exists {
            DB::list_cf(&options, path)?
        } else {
            Vec::new()
        };
        for name in [CF_LOG, CF_META] {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let families = names
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&options, path, families)?);
        let synced = db.clone();
        let syncer = WalSyncer::start(move || synced.flush_wal(true).map_err(io::Error::other))
            .map_err(|e| {
                ConsensusError::Storage(format!("starting the log's fsync thread: {e}"))
            })?;
        Ok(LogStore {
            db,
            group: GroupId::CLUSTER,
            prefix: Vec::new(),
            flush_waiters: Arc::default(),
            syncer: Arc::new(syncer),
        })
    }

    /// `group`'s store, in the same database and behind the same fsync thread;
    /// the first one other than the cluster group's creates the group column
    /// families.
    pub fn group(&self, group: GroupId) -> Result<LogStore, ConsensusError> {
        let prefix = if group.is_cluster() {
            Vec::new()
        } else {
            for name in [CF_GROUP_LOG, CF_GROUP_META] {
                if self.db.cf_handle(name).is_none() {
                    // Two groups starting at once may both try: one creates it.
                    if let Err(e) = self.db.create_cf(name, &Options::default()) {
                        if self.db.cf_handle(name).is_none() {
                            return Err(e.into());
                        }
                    }
                }
            }
            group.0.to_be_bytes().to_vec()
        };
        Ok(LogStore {
            db: self.db.clone(),
            group,
            prefix,
            flush_waiters: self.flush_waiters.clone(),
            syncer: self.syncer.clone(),
        })
    }

    pub fn group_id(&self) -> GroupId {
        self.group
    }

    /// Deletes everything `group` stored here, fsynced; the cluster-wide group is
    /// never deleted. Only for a replica that is no longer in its group's
    /// membership (it moved away, or the collection was dropped), with its Raft
    /// instance shut down: a voter that forgot its vote could vote twice in one
    /// term. A member that later holds the group again joins it as a learner.
    pub fn discard_group(&self, group: GroupId) -> Result<(), ConsensusError> {
        if group.is_cluster() {
            return Err(ConsensusError::Storage(
                "the cluster-wide group's log is never discarded".into(),
            ));
        }
        let from = group.0.to_be_bytes().to_vec();
        // Past every key of the group: its prefix, then more 0xff bytes than any
        // log index or meta name of it has.
        let mut to = from.clone();
        to.extend_from_slice(&[0xff; 9]);
        let mut batch = WriteBatch::default();
        for name in [CF_GROUP_LOG, CF_GROUP_META] {
            // No family: no group ever stored anything here.
            if let Some(cf) = self.db.cf_handle(name) {
                batch.delete_range_cf(&cf, &from, &to);
            }
        }
        self.db.write(batch)?;
        self.fsync()
    }

    /// The groups other than the cluster-wide one that have a vote or log here:
    /// what a member ran before it restarted.
    pub fn stored_groups(&self) -> Result<Vec<GroupId>, ConsensusError> {
        let mut groups = Vec::new();
        for name in [CF_GROUP_META, CF_GROUP_LOG] {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            let mut from = Vec::new();
            loop {
                let mode = IteratorMode::From(&from, Direction::Forward);
                let Some(item) = self.db.iterator_cf(&cf, mode).next() else {
                    break;
                };
                let (key, _) = item?;
                let Some((id, _)) = key.split_first_chunk::<8>() else {
                    return Err(ConsensusError::Storage(format!(
                        "a group key of {} bytes",
                        key.len()
                    )));
                };
                let id = u64::from_be_bytes(*id);
                groups.push(GroupId(id));
                // Skip to the next group's keys.
                match id.checked_add(1) {
                    Some(next) => from = next.to_be_bytes().to_vec(),
                    None => break,
                }
            }
        }
        groups.sort_unstable();
        groups.dedup();
        Ok(groups)
    }

    /// Resolves with the log index once an entry carrying request `id` is appended
    /// to this log and fsynced. Register before proposing; [`LogStore::forget`]
    /// when no longer interested.
    pub fn notify_when_flushed(&self, id: RequestId) -> oneshot::Receiver<u64> {
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.lock().insert((self.group, id), tx);
        rx
    }

    pub fn forget(&self, id: RequestId) {
        self.flush_waiters.lock().remove(&(self.group, id));
    }

    /// Whether this store has ever voted or logged: a node that has is part of a
    /// cluster already and must never be initialised again.
    pub fn is_fresh(&self) -> Result<bool, ConsensusError> {
        let voted = self.get_meta::<Vote>(KEY_VOTE)?.is_some();
        let mode = IteratorMode::From(&self.prefix, Direction::Forward);
        let logged = match self.db.iterator_cf(&self.log_cf()?, mode).next() {
            Some(item) => item?.0.starts_with(&self.prefix),
            None => false,
        };
        let purged = self.get_meta::<LogId>(KEY_PURGED)?.is_some();
        Ok(!(voted || logged || purged))
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>, ConsensusError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| ConsensusError::Storage(format!("column family {name} is missing")))
    }

    fn log_cf(&self) -> Result<Arc<BoundColumnFamily<'_>>, ConsensusError> {
        self.cf(if self.group.is_cluster() {
            CF_LOG
        } else {
            CF_GROUP_LOG
        })
    }

    fn meta_cf(&self) -> Result<Arc<BoundColumnFamily<'_>>, ConsensusError> {
        self.cf(if self.group.is_cluster() {
            CF_META
        } else {
            CF_GROUP_META
        })
    }

    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + suffix.len());
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(suffix);
        key
    }

    fn log_key(&self, index: u64) -> Vec<u8> {
        self.key(&index.to_be_bytes())
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ConsensusError> {
        match self.db.get_cf(&self.meta_cf()?, self.key(key))? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|e| {
                ConsensusError::Storage(format!("decoding {}: {e}", String::from_utf8_lossy(key)))
            }),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), ConsensusError> {
        let bytes = postcard::to_stdvec(value)
            .map_err(|e| ConsensusError::Storage(format!("encoding: {e}")))?;
        self.db.put_cf(&self.meta_cf()?, self.key(key), bytes)?;
        Ok(())
    }

    fn fsync(&self) -> Result<(), ConsensusError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Writes `entries` (not fsynced) and returns the request ids among them, with
    /// their indexes, that someone waits to see on disk.
    fn write_entries(&self, entries: Vec<Entry>) -> Result<Vec<(RequestId, u64)>, ConsensusError> {
        let mut batch = WriteBatch::default();
        let cf = self.log_cf()?;
        let mut awaited = Vec::new();
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry)
                .map_err(|e| ConsensusError::Storage(format!("encoding a log entry: {e}")))?;
            batch.put_cf(&cf, self.log_key(entry.index()), bytes);
            if let openraft::EntryPayload::Normal(command) = &entry.payload {
                if let Some(id) = command.request_id {
                    awaited.push((id, entry.index()));
                }
            }
        }
        self.db.write(batch)?;
        Ok(awaited)
    }

    fn decode_entry(bytes: &[u8]) -> Result<Entry, ConsensusError> {
        postcard::from_bytes(bytes)
            .map_err(|e| ConsensusError::Storage(format!("decoding a log entry: {e}")))
    }

    fn last_entry(&self) -> Result<Option<Entry>, ConsensusError> {
        let last = self.log_key(u64::MAX);
        let mode = IteratorMode::From(&last, Direction::Reverse);
        match self.db.iterator_cf(&self.log_cf()?, mode).next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                if !key.starts_with(&self.prefix) {
                    return Ok(None);
                }
                Self::decode_entry(&value).map(Some)
            }
        }
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, ConsensusError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let from = self.log_key(start);
        let mode = IteratorMode::From(&from, Direction::Forward);
        let cf = self.log_cf()?;
        for item in self.db.iterator_cf(&cf, mode) {
            let (key, value) = item?;
            let Some(index) = key.strip_prefix(self.prefix.as_slice()) else {
                break;
            };
            let index = index_of(index)?;
            if !range.contains(&index) {
                break;
            }
            out.push(Self::decode_entry(&value)?);
        }
        Ok(out)
    }
}

fn index_of(key: &[u8]) -> Result<u64, ConsensusError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| ConsensusError::Storage(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.entries(range)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.get_meta(KEY_VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta(KEY_VOTE, vote)?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.fsync())
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not fsynced: losing it only means re-applying from the state machine's own
        // applied id, which the state machine treats as a no-op.
        match committed {
            Some(id) => self.put_meta(KEY_COMMITTED, &id)?,
            None => self
                .db
                .delete_cf(&self.meta_cf()?, self.key(KEY_COMMITTED))
                .map_err(ConsensusError::from)?,
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta(KEY_COMMITTED)?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let store = self.clone();
        // Encoding and writing megabytes of entries is CPU and I/O work: done on
        // the blocking pool, so the async workers stay free for heartbeats, votes
        // and the transport while it runs.
        let awaited = tokio::task::spawn_blocking(move || store.write_entries(entries))
            .await
            .map_err(io::Error::other)??;
        // Readable from here on; acknowledged only once the WAL is on disk, by an
        // fsync shared with every append made meanwhile.
        let (waiters, group) = (self.flush_waiters.clone(), self.group);
        self.syncer.after_next_sync(Box::new(move |flushed| {
            if flushed.is_ok() && !awaited.is_empty() {
                let mut waiters = waiters.lock();
                for (id, index) in awaited {
                    if let Some(tx) = waiters.remove(&(group, id)) {
                        let _ = tx.send(index);
                    }
                }
            }
            callback.io_completed(flushed);
        }));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.db
            .delete_range_cf(&self.log_cf()?, self.log_key(from), self.log_key(u64::MAX))
            .map_err(ConsensusError::from)?;
        // Entry u64::MAX is outside the range above; no real log reaches it.
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The marker first: entries at or below it are ignored even if the delete
        // below is lost in a crash.
        self.put_meta(KEY_PURGED, &log_id)?;
        self.fsync()?;
        self.db
            .delete_range_cf(
                &self.log_cf()?,
                self.log_key(0),
                self.log_key(log_id.index() + 1),
            )
            .map_err(ConsensusError::from)?;
        Ok(())
    }
}
