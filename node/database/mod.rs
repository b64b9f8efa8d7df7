//! [`Database`]: a RocksDB directory plus the in-memory search engine built from it.

pub(crate) mod options;
pub(crate) mod shared;

pub use crate::model::CollectionInfo;
pub use options::{BackendSelection, DatabaseOptions, DEFAULT_LOG_RETENTION};
pub(crate) use shared::Inner;

use crate::catalog::{Catalog, CollectionState};
use crate::error::{Error, Result};
use crate::generations;
use crate::metrics::Metrics;
use crate::op::{Applied, Op, Precondition};
use crate::storage::Store;
use crate::write_checks;
use crate::writer::{Pending, Replies, WriterHandle};
use needle_kernels::select_backend;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where the writer answers what an op did.
pub(crate) type AppliedReceiver = oneshot::Receiver<Result<Applied>>;

/// An open needle database. Cheap to clone; every clone shares the same store, engine
/// and writer. The last clone to drop finishes queued writes and closes RocksDB.
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
    writer: Arc<WriterHandle>,
}

/// An entry ordered elsewhere, for [`Database::apply_ordered`].
pub(crate) struct OrderedEntry {
    pub op: Op,
    pub precondition: Precondition,
    /// The sequence number it must land at (a primary's log numbers every entry), or
    /// `None` for the next one here (a Raft log numbers its own).
    pub at: Option<u64>,
    /// `meta` changes that ride in the same batch when the entry is accepted.
    pub meta: Vec<crate::writer::MetaWrite>,
    /// Whether this write is the entry's only durable copy on this member.
    pub durability: Durability,
}

/// What makes an ordered entry survive a machine crash on this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Its own write here, fsynced before it is answered (a replica of a primary:
    /// nothing else on this member holds the entry).
    Fsynced,
    /// The log that ordered it, fsynced on this member before the entry was
    /// applied (a Raft log). The write reaches RocksDB's WAL without an fsync of
    /// its own; the ordering marker written with it says how far the database got,
    /// so after a machine crash the entries it lost are applied again from the log.
    /// A process crash loses nothing: the WAL is in the kernel's hands already.
    ByOrderingLog,
}

impl Database {
    /// Opens (creating if needed) the database at `path` with default options: the best
    /// available backend and group commit.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Self::open_with(path, DatabaseOptions::default())
    }

    /// Opens the database and loads every collection into the search engine.
    pub fn open_with(path: impl AsRef<Path>, options: DatabaseOptions) -> Result<Database> {
        let path = path.as_ref().to_path_buf();
        let store_path = generations::active_store(&path)?;
        let db = Self::open_store(path, store_path, options, None)?;
        generations::remove_inactive(&db.inner.path);
        Ok(db)
    }

    /// Opens the store at `store_path` as the database of data directory `path`;
    /// `metrics` carries the registry over from the database this one replaces.
    fn open_store(
        path: PathBuf,
        store_path: PathBuf,
        options: DatabaseOptions,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Database> {
        let store = Store::open(&store_path)?;
        let chosen = select_backend(options.backend, options.on_device_full)?;
        let backend = chosen.backend;
        let selection = BackendSelection {
            backend: backend.name(),
            device: backend.describe(),
            passed_over: chosen
                .passed_over
                .into_iter()
                .map(|(kind, reason)| (kind.name(), reason))
                .collect(),
        };
        let applied = store.applied_seq()?;
        let log_start = store.first_log_seq()?.unwrap_or(applied + 1);
        let catalog = Catalog::default();
        for stored in store.load_collections()? {
            let name = stored.config.name.clone();
            let state = CollectionState::load(stored, backend.as_ref(), &store)?;
            tracing::info!(collection = %name, vectors = state.index.read().live(), "loaded collection");
            catalog.insert(state);
        }
        let metrics = match metrics {
            Some(metrics) => metrics,
            None => Arc::new(Metrics::new().map_err(|e| Error::Metrics(e.to_string()))?),
        };
        metrics.applied_seq.set(applied as i64);
        metrics
            .backend_info
            .with_label_values(&[selection.backend, selection.device.as_str()])
            .set(1);
        metrics.oplog_first_seq.set(log_start as i64);
        let inner = Arc::new(Inner {
            store,
            backend,
            selection,
            catalog,
            applied_seq: AtomicU64::new(applied),
            applied_watch: tokio::sync::watch::Sender::new(applied),
            commit_times: Default::default(),
            log_start: AtomicU64::new(log_start),
            log_retention: options.log_retention.max(1),
            metrics,
            path,
            store_path,
            options,
        });
        let writer = Arc::new(WriterHandle::start(
            Arc::clone(&inner),
            options.sync,
            options.write_queue,
        )?);
        Ok(Database { inner, writer })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The RocksDB store inside the data directory (see `generations.rs`).
    pub(crate) fn store_path(&self) -> &Path {
        &self.inner.store_path
    }

    /// The search backend in use: `cpu`, `cuda` or `wgpu`.
    /// The options it was opened with (a shard replica's database is opened
    /// with its member's).
    pub fn options(&self) -> DatabaseOptions {
        self.inner.options
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The backend in use, the device it runs on, and why better ones were not used.
    pub fn backend_selection(&self) -> &BackendSelection {
        &self.inner.selection
    }

    /// Collections whose shards a GPU backend is serving from host memory because
    /// the device had no room for them.
    pub fn collections_on_host(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .catalog
            .all()
            .into_iter()
            // Recursive: a glance at the index, which must not queue behind a lane's
            // drainer waiting for a long search (health checks would stall).
            .filter(|state| state.index.read_recursive().shard.on_device() == Some(false))
            .map(|state| state.stored.config.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Sequence number of the last op applied.
    pub fn applied_seq(&self) -> u64 {
        self.inner.applied_seq.load(Ordering::Acquire)
    }

    /// The metrics registry of this database; the HTTP server exports it.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Sequence number of the oldest operation-log entry still kept.
    pub fn log_start(&self) -> u64 {
        self.inner.log_start.load(Ordering::Acquire)
    }

    /// Drops a collection and all of its vectors.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.submit(
            Op::DropCollection {
                name: name.to_string(),
            },
            Precondition::None,
        )?;
        Ok(())
    }

    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let state = self.state(name)?;
        Ok(info(&state))
    }

    /// Every collection, sorted by name.
    pub fn collections(&self) -> Vec<CollectionInfo> {
        self.inner.catalog.all().iter().map(|s| info(s)).collect()
    }

    pub(crate) fn state(&self, name: &str) -> Result<Arc<CollectionState>> {
        self.inner
            .catalog
            .get(name)
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))
    }

    /// Orders, persists and applies one op, blocking until it is durable and visible
    /// to searches.
    pub fn submit(&self, op: Op, precondition: Precondition) -> Result<Applied> {
        let rx = self.enqueue(op, precondition)?;
        futures::executor::block_on(rx).map_err(|_| Error::Interrupted)?
    }

    /// [`Database::submit`] for async callers: waits without blocking a runtime thread.
    pub async fn submit_async(&self, op: Op, precondition: Precondition) -> Result<Applied> {
        let rx = self.enqueue(op, precondition)?;
        rx.await.map_err(|_| Error::Interrupted)?
    }

    /// Static validation happens here, on the caller's thread, so the single writer
    /// thread only does the checks that need the current state.
    fn enqueue(&self, op: Op, precondition: Precondition) -> Result<AppliedReceiver> {
        self.refuse_if_failed()?;
        self.validate(&op)?;
        let (visible, rx) = oneshot::channel();
        self.writer.send(Pending {
            op,
            precondition,
            seq: None,
            ordered: false,
            meta: Vec::new(),
            fsync: true,
            reply: Replies {
                durable: None,
                visible,
            },
        })?;
        Ok(rx)
    }

    /// Applies ops that were ordered elsewhere — a primary's log — at their own
    /// sequence numbers, through the same writer, batches and checks as local writes.
    /// Idempotent: entries at or below [`Database::applied_seq`] are skipped, so a
    /// replayed or retried stream is harmless. An entry that is not the next sequence
    /// number fails with `LOG_GAP` and nothing after it is applied. Returns once the
    /// entries are durable (they become visible to searches right after, or once a
    /// long search of their collection ends), with the applied sequence number.
    pub fn apply_entries(&self, entries: Vec<(u64, Op)>) -> Result<u64> {
        let mut waiting = Vec::with_capacity(entries.len());
        for (seq, op) in entries {
            let (durable, _visible) = self.apply_ordered(OrderedEntry {
                op,
                precondition: Precondition::None,
                at: Some(seq),
                meta: Vec::new(),
                durability: Durability::Fsynced,
            })?;
            waiting.push(durable);
        }
        // All entries are queued before the first wait, so the writer groups them.
        for rx in waiting {
            futures::executor::block_on(rx).map_err(|_| Error::Interrupted)??;
        }
        Ok(self.applied_seq())
    }

    /// Queues an entry whose place in the order was decided elsewhere (a primary's
    /// log, a Raft log): the one door every replication mode applies through. Its
    /// `meta` changes land in the same atomic batch as its data. Only the
    /// context-free checks run here; the rest run in order on the writer, so every
    /// member accepts or rejects the same entries, and nothing local (a full device)
    /// refuses one. The first receiver answers once the entry is durable, the second
    /// once it is visible.
    pub(crate) fn apply_ordered(
        &self,
        entry: OrderedEntry,
    ) -> Result<(AppliedReceiver, AppliedReceiver)> {
        self.refuse_if_failed()?;
        write_checks::validate_context_free(&entry.op)?;
        let (durable, durable_rx) = oneshot::channel();
        let (visible, visible_rx) = oneshot::channel();
        self.writer.send(Pending {
            op: entry.op,
            precondition: entry.precondition,
            seq: entry.at,
            ordered: true,
            meta: entry.meta,
            fsync: entry.durability == Durability::Fsynced,
            reply: Replies {
                durable: Some(durable),
                visible,
            },
        })?;
        Ok((durable_rx, visible_rx))
    }

    /// The checks a write must pass against the current state before it is worth
    /// ordering (a Raft member refuses a bad write before it reaches the log).
    pub(crate) fn precheck(&self, op: &Op) -> Result<()> {
        self.refuse_if_failed()?;
        self.validate(op)
    }

    /// Whether this node's device has room for `op`: checked by whoever orders it (a
    /// Raft leader, before proposing), since the members that apply the entry will
    /// not refuse it for that.
    pub(crate) fn check_room(&self, op: &Op) -> Result<()> {
        match op {
            Op::Upsert {
                collection,
                records,
            } => self.check_room_for(collection, records.len()),
            _ => Ok(()),
        }
    }

    /// [`Database::check_room`] for `rows` new rows of `collection`.
    pub(crate) fn check_room_for(&self, collection: &str, rows: usize) -> Result<()> {
        let state = self.state(collection)?;
        let index = state.index.read_recursive();
        let rows = rows.saturating_add(state.lane.pending_rows());
        write_checks::room_on_device(index.shard.as_ref(), rows)?;
        Ok(())
    }

    /// `NODE_FAILED` once the node stopped applying writes (see [`crate::health`]).
    fn refuse_if_failed(&self) -> Result<()> {
        match self.inner.metrics.health.failure() {
            Some(problem) => Err(Error::Failed(problem.message)),
            None => Ok(()),
        }
    }

    /// Waits until every write to `collection` that is durable now is also visible
    /// to its searches: the last step of a linearizable read. Immediate unless a long
    /// search of that collection is holding its writes back.
    pub async fn await_visible(&self, collection: &str) {
        if let Some(state) = self.inner.catalog.get(collection) {
            state.lane.wait_visible().await;
        }
    }

    /// [`Database::await_visible`] for every collection.
    pub async fn await_all_visible(&self) {
        for state in self.inner.catalog.all() {
            state.lane.wait_visible().await;
        }
    }

    /// The node's health: what it recovered from, and whether it stopped taking writes.
    pub fn health(&self) -> std::sync::Arc<crate::health::NodeHealth> {
        std::sync::Arc::clone(&self.inner.metrics.health)
    }

    /// A JSON value its owner keeps in `meta` (keys: [`crate::meta_keys`]).
    pub(crate) fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.inner.store.meta_json(key)
    }

    /// Every `meta` JSON value under a key prefix (request records).
    pub(crate) fn meta_json_with_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        self.inner.store.meta_json_with_prefix(prefix)
    }

    /// Whether a collection of this name is stored: what the store holds, which a
    /// member whose memory failed to load one still agrees on with the others.
    pub(crate) fn holds_collection(&self, name: &str) -> Result<bool> {
        self.inner.store.holds_collection(name)
    }

    /// Stores (or with `None` removes) several raw `meta` values in one atomic,
    /// durable write: what an owner must never see half of.
    pub(crate) fn set_meta_batch(&self, entries: &[(&str, Option<&[u8]>)]) -> Result<()> {
        self.inner.store.set_meta_batch(entries)
    }

    /// Stores a JSON value in `meta` (`None` removes it), durably.
    pub(crate) fn set_meta_json<T: serde::Serialize>(
        &self,
        key: &str,
        value: Option<&T>,
    ) -> Result<()> {
        self.inner.store.set_meta_json(key, value)
    }

    /// Every check of a write this node is about to order (see `write_checks.rs`).
    fn validate(&self, op: &Op) -> Result<()> {
        write_checks::validate_new(op, |name| Ok(self.state(name)?.stored.config.dimensions))
    }

    /// A checksum of a collection's stored ids, vectors and metadata: equal on two
    /// nodes exactly when they hold the same data (replica verification).
    pub fn collection_checksum(&self, name: &str) -> Result<crate::storage::CollectionChecksum> {
        let id = self.state(name)?.stored.id;
        self.inner.store.collection_checksum(id)
    }

    /// Writes a consistent single-file snapshot of this live database to `out`
    /// (see [`crate::snapshot`]); writes go on meanwhile.
    pub fn write_snapshot(&self, out: &Path) -> Result<crate::snapshot::WrittenSnapshot> {
        crate::snapshot::write(&self.inner.store, &self.inner.store_path, out)
    }

    /// Opens the state of snapshot file `from` as this data directory's next
    /// generation and makes it the one a restart opens. Returns the new database; the
    /// caller swaps it in for this one, whose store is removed once the last handle
    /// to it is gone (see `generations.rs`). Nothing changes if it fails.
    pub fn reload_from(&self, from: &Path) -> Result<Database> {
        let data = &self.inner.path;
        let (name, dir) = generations::next_generation(data)?;
        let opened = crate::snapshot::restore(from, &dir).and_then(|_| {
            Self::open_store(
                data.clone(),
                dir.clone(),
                self.inner.options,
                Some(Arc::clone(&self.inner.metrics)),
            )
        });
        let db = match opened.and_then(|db| generations::activate(data, &name).map(|()| db)) {
            Ok(db) => db,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        tracing::info!(
            from = %from.display(),
            generation = %name,
            applied_seq = db.applied_seq(),
            "reloaded from a snapshot"
        );
        // Memory was built afresh from the snapshot: whatever made it disagree with
        // the store before is gone.
        db.inner.metrics.health.clear_failure();
        Ok(db)
    }

    /// Removes stores of this data directory that are no longer active and no longer
    /// open (best effort).
    pub fn remove_inactive_generations(&self) {
        generations::remove_inactive(&self.inner.path);
    }

    /// What time it is by this database's clock (`DatabaseOptions::clock`), in ms
    /// since the Unix epoch: the clock commit times are recorded with.
    pub fn now_ms(&self) -> u64 {
        self.inner.options.clock.now_ms()
    }

    /// When operation `seq` was committed here (ms since the epoch), if it is recent
    /// enough to be remembered (see `commit_times.rs`).
    pub fn committed_ms(&self, seq: u64) -> Option<u64> {
        self.inner.commit_times.committed_ms(seq)
    }

    /// A receiver that sees every new applied sequence number (the latest one; it
    /// may skip values under load).
    pub fn watch_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.applied_watch.subscribe()
    }

    /// Operation-log entries with `seq >= from`, at most `limit`, oldest first.
    pub fn read_log(&self, from: u64, limit: usize) -> Result<Vec<(u64, Op)>> {
        self.inner.store.read_log(from, limit)
    }

    /// [`Database::read_log`] within `max_bytes` of encoded entries (at least one
    /// entry, whatever its size).
    pub fn read_log_within(
        &self,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Op)>> {
        self.inner.store.read_log_within(from, limit, max_bytes)
    }
}

fn info(state: &CollectionState) -> CollectionInfo {
    // Recursive, as in `collections_on_host`: counts never wait behind a drainer.
    let index = state.index.read_recursive();
    CollectionInfo {
        config: state.stored.config.clone(),
        count: index.live(),
        tombstones: index.tombstones(),
    }
}
