//! The Raft state machine is the needle database: a committed entry is applied by
//! the same writer, checks and batches as a standalone write, and the Raft applied
//! id is written in the same RocksDB batch as the data, so a restart never applies
//! an entry twice nor skips one. Snapshots are the database's own snapshot files
//! (a RocksDB checkpoint as tar + zstd).
//!
//! The Raft log is what makes an entry durable: it is fsynced on a majority before
//! the entry commits, so applying it writes RocksDB's WAL without an fsync of its
//! own (`Durability::ByOrderingLog`). A process crash loses nothing of it; a machine
//! crash may lose the last applied entries, and with them the applied id written
//! beside them, so openraft applies them again at restart: from this member's log,
//! or from the leader's where this member's own copy was not fsynced yet (openraft
//! applies committed entries this member has submitted, not only flushed). The log
//! behind a snapshot is only purged once the snapshot's checkpoint has flushed
//! everything applied before it.
//!
//! One member runs a state machine per Raft group it holds a replica of, each in
//! its [`StateScope`]: the cluster-wide group's over the member's database, each
//! shard group's over a database of the shard's own.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use futures::{FutureExt, Stream, StreamExt};
use needle_consensus::openraft::entry::RaftEntry;
use needle_consensus::openraft::storage::{EntryResponder, RaftStateMachine};
use needle_consensus::openraft::{EntryPayload, OptionalSend};
use needle_consensus::types::{LogId, SnapshotMeta, StoredMembership};
use needle_consensus::{CommandOutcome, SnapshotFile, TypeConfig};

use super::applied_marker::AppliedMarker;
use super::command;
use super::requests::{self, RequestTable};
pub use super::state_scope::StateScope;
pub use super::state_snapshot::SnapshotBuilder;
use super::state_snapshot::{keep_current, CurrentSnapshot, CURRENT};
use crate::error::Result;
use crate::meta_keys::{ORDER_MARKER as META_RAFT_APPLIED, SHARD_SCOPE};
use crate::op::{Applied, Op, Precondition};
use crate::replication::sharding::ShardedCollection;
use crate::served::ServedDatabase;
use crate::writer::{MetaWrite, StoredOutcome};
use crate::Error;
use needle_consensus::RequestId;

type Snapshot = needle_consensus::openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;
type Responder = Option<needle_consensus::openraft::storage::ApplyResponder<TypeConfig>>;

/// Entries taken from the stream into one writer batch at most.
const MAX_BATCH: usize = 1024;

pub struct StateMachine {
    served: ServedDatabase,
    scope: StateScope,
    applied: AppliedMarker,
    requests: RequestTable,
    snapshots: PathBuf,
    /// Told whenever the shard maps this group holds may have changed (a map
    /// applied, a snapshot installed), so the member starts the groups they name.
    maps_changed: Arc<Notify>,
}

fn io_error(e: Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// The state machine of `scope`'s group over `served`; `snapshots` (the
    /// group's own directory) holds its current snapshot file. A shard group's
    /// database is given its collection here if it does not hold it yet, so that
    /// the collection exists for as long as the group runs; one it holds with
    /// other settings is refused.
    pub async fn open(
        served: ServedDatabase,
        snapshots: &Path,
        scope: StateScope,
    ) -> Result<StateMachine> {
        std::fs::create_dir_all(snapshots)
            .map_err(|e| Error::Snapshot(format!("{}: {e}", snapshots.display())))?;
        let db = served.current();
        if let StateScope::Shard { .. } = &scope {
            // Which shard this database is, kept in it: opened again as another
            // (another group, another range) it would apply entries its peers
            // judge otherwise. It changes only with the shard (a split, applied
            // through the group's own log).
            match db.meta_json::<StateScope>(SHARD_SCOPE)? {
                Some(held) if held == scope => {}
                Some(held) => {
                    return Err(Error::InvalidRequest(format!(
                        "this database is the replica of {held:?}, not of {scope:?}"
                    )))
                }
                None => db.set_meta_json(SHARD_SCOPE, Some(&scope))?,
            }
        }
        if let Some(config) = scope.shard_collection() {
            match db.collection(&config.name).and_then(|c| c.config()) {
                Ok(held) if held == *config => {}
                Ok(held) => {
                    return Err(Error::InvalidRequest(format!(
                        "the shard's database holds {:?} as {held:?}, not as {config:?}",
                        config.name
                    )))
                }
                Err(Error::CollectionNotFound(_)) => {
                    db.submit_async(Op::CreateCollection(config.clone()), Precondition::None)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        let applied = db
            .meta_json::<AppliedMarker>(META_RAFT_APPLIED)?
            .unwrap_or_default();
        let requests = RequestTable::load(&db)?;
        Ok(StateMachine {
            served,
            scope,
            applied,
            requests,
            snapshots: snapshots.to_path_buf(),
            maps_changed: Arc::default(),
        })
    }

    /// Notified whenever the shard maps this group holds may have changed.
    pub(crate) fn maps_changed(&self) -> Arc<Notify> {
        self.maps_changed.clone()
    }

    fn marker_json(&self) -> io::Result<Vec<u8>> {
        serde_json::to_vec(&self.applied).map_err(io::Error::other)
    }

    /// Applies entries in log order: runs of writes go to the writer together (one
    /// batch, not fsynced: see the module's note), membership and blank entries are recorded between them. A
    /// write whose request id was already accepted is answered from its record; one
    /// whose id an accepted write with a different request used is refused
    /// (`IDEMPOTENCY_KEY_REUSED`), on every member alike.
    async fn apply_batch(&mut self, batch: Vec<EntryResponder<TypeConfig>>) -> io::Result<()> {
        let db = self.served.current();
        let mut waiting: Vec<Waiting> = Vec::new();
        for (entry, responder) in batch {
            let log_id = entry.log_id();
            let index = log_id.index;
            match entry.payload {
                EntryPayload::Normal(cmd) if command::is_sharded_collection(&cmd) => {
                    // Applied alone, after every write before it: whether its name
                    // is free depends on them, and the writes after it on it.
                    self.finish(std::mem::take(&mut waiting)).await?;
                    self.applied.log_id = Some(log_id);
                    let outcome = self.apply_sharded_collection(&db, &cmd).await?;
                    if let Some(responder) = responder {
                        responder.send(command::outcome(&outcome));
                    }
                }
                EntryPayload::Normal(cmd) => {
                    self.applied.log_id = Some(log_id);
                    let request = cmd.request_id;
                    let hash = requests::request_hash(&cmd);
                    if let Some(id) = request {
                        // A second write with an id already in this batch: settle the
                        // first one before judging it, so the answer depends on the
                        // first's outcome (a refused first leaves no record) and not
                        // on how entries happened to be batched on this member.
                        if waiting.iter().any(|w| w.request.map(|r| r.0) == Some(id)) {
                            self.finish(std::mem::take(&mut waiting)).await?;
                        }
                        if let Some(done) = self.requests.lookup(id, index, hash) {
                            waiting.push(Waiting::new(WriteWait::Done(done), responder));
                            continue;
                        }
                    }
                    // An entry the leader committed that this member cannot decode
                    // (one written by a newer version): every other member applies it,
                    // so this one stops rather than skip it and diverge.
                    let (op, precondition) = match command::decode(&cmd) {
                        Ok(decoded) => decoded,
                        Err(e) => return Err(self.stop_applying(&e)),
                    };
                    // Refused alike on every replica, before anything is prepared
                    // for it: not this group's to apply, or a name a sharded
                    // collection holds.
                    if let Some(refused) = self.scope.refuses(&op).or(sharded_name(&db, &op)?) {
                        waiting.push(Waiting::new(WriteWait::Done(Err(refused)), responder));
                        continue;
                    }
                    let mut meta = vec![MetaWrite::Put(
                        META_RAFT_APPLIED.into(),
                        self.marker_json()?,
                    )];
                    if let Some(id) = request {
                        meta.push(MetaWrite::Outcome {
                            key: requests::key(id),
                            index,
                            request_hash: hash,
                        });
                        meta.extend(
                            self.requests
                                .expire(index)
                                .into_iter()
                                .map(MetaWrite::Delete),
                        );
                    }
                    let collection = op.collection().to_string();
                    let queued = db
                        .apply_ordered(crate::database::OrderedEntry {
                            op,
                            precondition,
                            at: None,
                            meta,
                            durability: crate::database::Durability::ByOrderingLog,
                        })
                        .map(|(durable, visible)| (collection, durable, visible));
                    let wait = match queued {
                        Ok((collection, durable, visible)) => WriteWait::Queued {
                            collection,
                            durable,
                            visible,
                        },
                        // This member cannot apply what the others do: stop, never skip.
                        Err(e) if is_local_failure(&e) => {
                            return Err(self.stop_applying(&e));
                        }
                        Err(e) => WriteWait::Done(Err(e)),
                    };
                    let mut w = Waiting::new(wait, responder);
                    w.request = request.map(|id| (id, index, hash));
                    waiting.push(w);
                }
                payload => {
                    self.finish(std::mem::take(&mut waiting)).await?;
                    if let EntryPayload::Membership(m) = payload {
                        self.applied.membership = StoredMembership::new(Some(log_id), m);
                    }
                    self.applied.log_id = Some(log_id);
                    let (db, marker) = (db.clone(), self.applied.clone());
                    tokio::task::spawn_blocking(move || {
                        db.set_meta_json(META_RAFT_APPLIED, Some(&marker))
                    })
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io_error)?;
                    if let Some(responder) = responder {
                        responder.send(CommandOutcome(Vec::new()));
                    }
                }
            }
        }
        self.finish(waiting).await
    }

    /// Waits until queued writes are in RocksDB, records the outcome of every accepted
    /// write that carried a request id, and answers each client once its write is
    /// also visible to searches. The state machine moves on at durability: a long
    /// search holding one collection's writes back delays only their answers, never
    /// the entries after them.
    ///
    /// A rejection by the database's checks is an answer like any other: every member
    /// rejects the same entry. A failure to write (storage, shutdown) is not: this
    /// member did not apply what the others did, so it stops applying rather than
    /// diverge, and openraft stops the node.
    async fn finish(&mut self, waiting: Vec<Waiting>) -> io::Result<()> {
        // Answers waiting for visibility, per collection: one collection's long
        // search delays only its own writes' answers.
        let mut later: std::collections::BTreeMap<String, Vec<Answer>> = Default::default();
        for w in waiting {
            let (outcome, visible) = match w.wait {
                WriteWait::Queued {
                    collection,
                    durable,
                    visible,
                } => {
                    let result = durable.await.unwrap_or(Err(Error::Interrupted));
                    match &result {
                        Err(e) if is_local_failure(e) => return Err(self.stop_applying(e)),
                        Ok(applied) => {
                            if let Some((id, index, hash)) = w.request {
                                self.requests.record(
                                    id,
                                    StoredOutcome {
                                        index,
                                        seq: applied.seq,
                                        affected: applied.affected,
                                        deleted: applied.deleted.clone(),
                                        request_hash: Some(hash),
                                    },
                                );
                            }
                        }
                        Err(_) => {}
                    }
                    let visible = result.is_ok().then_some((collection, visible));
                    (command::outcome(&result), visible)
                }
                WriteWait::Done(result) => (command::outcome(&result), None),
            };
            let Some(responder) = w.responder else {
                continue;
            };
            match visible {
                Some((collection, mut visible)) => {
                    // Visible already (the common case): answer now.
                    if visible.try_recv().is_ok() {
                        responder.send(outcome);
                    } else {
                        later
                            .entry(collection)
                            .or_default()
                            .push((responder, outcome, visible));
                    }
                }
                None => responder.send(outcome),
            }
        }
        // In log order within each collection, each once its write is visible (at
        // once, unless a search of that collection is holding its writes back).
        for (_, answers) in later {
            tokio::spawn(async move {
                for (responder, outcome, visible) in answers {
                    let _ = visible.await;
                    responder.send(outcome);
                }
            });
        }
        Ok(())
    }
}

/// How a shard map whose groups another map uses is refused (its proposer
/// numbers the groups again).
pub(super) const GROUPS_TAKEN: &str = "already orders another sharded collection's writes";

/// A collection of `op`'s name is sharded: creating it unsharded is refused (the
/// cluster group applies both kinds in one order, so every member agrees).
fn sharded_name(db: &crate::Database, op: &Op) -> io::Result<Option<Error>> {
    // (Read from the store, which holds every map applied before this entry:
    // a map is applied alone, after the writes queued before it.)
    let Op::CreateCollection(config) = op else {
        return Ok(None);
    };
    let held = db
        .meta_json::<ShardedCollection>(&ShardedCollection::key(&config.name))
        .map_err(io_error)?;
    Ok(held.map(|_| Error::CollectionExists(config.name.clone())))
}

/// Errors that say nothing about the entry, only about this member (its store, its
/// writer): every other member applies the entry, so this one must stop rather than
/// record it as refused and move past it.
fn is_local_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage(_)
            | Error::Closed
            | Error::Interrupted
            | Error::Failed(_)
            | Error::Overloaded(_)
    )
}

impl StateMachine {
    /// Commits a sharded collection's settings and shard map, with the applied
    /// marker, in one write; or refuses it, alike on every member: in a shard
    /// group, for a name an unsharded collection or another map holds, for groups
    /// another map uses, or for a map that breaks its rules. The same record
    /// again (a retry of its creation) is answered as applied.
    async fn apply_sharded_collection(
        &mut self,
        db: &crate::Database,
        cmd: &needle_consensus::Command,
    ) -> io::Result<Result<Applied>> {
        let mut record = match command::decode_sharded_collection(cmd) {
            Some(Ok(record)) => record,
            // Committed, so every other member applies it: stop, never skip.
            Some(Err(e)) => return Err(self.stop_applying(&e)),
            None => return Ok(Err(Error::Corrupt("not a shard map".into()))),
        };
        let applied = Applied {
            seq: db.applied_seq(),
            affected: record.map.shards.len(),
            deleted: Vec::new(),
        };
        if !matches!(self.scope, StateScope::Cluster) {
            return Ok(Err(Error::InvalidRequest(
                "shard maps are the cluster group's; a shard group holds none".into(),
            )));
        }
        record.created_by = cmd.request_id;
        if let Err(e) = record.validate() {
            return Ok(Err(Error::InvalidRequest(e.to_string())));
        }
        // Replicas only on voters of the membership this entry was applied in,
        // which every member sees alike (a proposer's view may have been older).
        let voters: std::collections::BTreeSet<_> =
            self.applied.membership.membership().voter_ids().collect();
        let strangers: Vec<_> = record
            .map
            .shards
            .iter()
            .flat_map(|s| s.members.iter())
            .filter(|m| !voters.contains(m))
            .collect();
        if !strangers.is_empty() {
            return Ok(Err(Error::InvalidRequest(format!(
                "shard replicas placed on {strangers:?}, which are not voters of the cluster"
            ))));
        }
        let name = &record.config.name;
        if db.holds_collection(name).map_err(io_error)? {
            return Ok(Err(Error::CollectionExists(name.clone())));
        }
        let held = db
            .meta_json_with_prefix::<ShardedCollection>(crate::meta_keys::SHARD_MAP_PREFIX)
            .map_err(io_error)?;
        if let Some((_, same)) = held.iter().find(|(_, h)| h.config.name == *name) {
            // Its own request again (a retry whose first try committed): applied.
            let again = same.created_by.is_some() && same.created_by == record.created_by;
            return Ok(if again {
                Ok(applied)
            } else {
                Err(Error::CollectionExists(name.clone()))
            });
        }
        let used: std::collections::HashSet<_> =
            held.iter().flat_map(|(_, h)| h.groups()).collect();
        if let Some(taken) = record.groups().find(|g| used.contains(g)) {
            return Ok(Err(Error::InvalidRequest(format!(
                "{taken} {GROUPS_TAKEN}"
            ))));
        }
        let key = ShardedCollection::key(name);
        let value = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let marker = self.marker_json()?;
        let db = db.clone();
        let written = tokio::task::spawn_blocking(move || {
            db.set_meta_batch(&[(META_RAFT_APPLIED, Some(&marker)), (&key, Some(&value))])
        })
        .await
        .map_err(io::Error::other)?;
        match written {
            Ok(()) => {
                self.maps_changed.notify_one();
                Ok(Ok(applied))
            }
            // This member could not record what the others do: stop, never skip.
            Err(e) => Err(self.stop_applying(&e)),
        }
    }

    /// Marks the node failed (so `/health` takes it out) and gives openraft the error
    /// that stops this member.
    fn stop_applying(&self, e: &Error) -> io::Error {
        let message = format!("applying a committed entry failed on this member: {e}");
        self.served.current().health().fail("raft", message.clone());
        io::Error::other(message)
    }
}

/// One write of a batch, waiting to be answered.
struct Waiting {
    wait: WriteWait,
    responder: Responder,
    /// Its request id, log index and request fingerprint, when it carries an id and
    /// was queued.
    request: Option<(RequestId, u64, u64)>,
}

impl Waiting {
    fn new(wait: WriteWait, responder: Responder) -> Waiting {
        Waiting {
            wait,
            responder,
            request: None,
        }
    }
}

/// A client's answer, to be sent once its write is visible.
type Answer = (
    needle_consensus::openraft::storage::ApplyResponder<TypeConfig>,
    CommandOutcome,
    tokio::sync::oneshot::Receiver<Result<Applied>>,
);

enum WriteWait {
    Queued {
        collection: String,
        durable: tokio::sync::oneshot::Receiver<Result<Applied>>,
        visible: tokio::sync::oneshot::Receiver<Result<Applied>>,
    },
    Done(Result<Applied>),
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied.log_id, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some(first) = entries.next().await {
            let mut batch = vec![first?];
            // Whatever else is ready joins the same writer batch.
            while batch.len() < MAX_BATCH {
                match entries.next().now_or_never() {
                    Some(Some(item)) => batch.push(item?),
                    _ => break,
                }
            }
            self.apply_batch(batch).await?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder::new(self.served.clone(), self.snapshots.clone())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let db = self.served.current();
        let (dir, kept_meta) = (self.snapshots.clone(), meta.clone());
        let reloaded = tokio::task::spawn_blocking(move || -> io::Result<crate::Database> {
            let reloaded = db.reload_from(&snapshot.path).map_err(io_error)?;
            keep_current(&dir, &snapshot.path, &kept_meta)?;
            Ok(reloaded)
        })
        .await
        .map_err(io::Error::other)??;
        self.applied = AppliedMarker {
            log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.requests = RequestTable::load(&reloaded).map_err(io_error)?;
        tracing::info!(applied = ?self.applied.log_id, "installed a raft snapshot");
        self.served.swap_in(reloaded);
        self.maps_changed.notify_one();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let record = match tokio::fs::read(self.snapshots.join(CURRENT)).await {
            Ok(bytes) => {
                serde_json::from_slice::<CurrentSnapshot>(&bytes).map_err(io::Error::other)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Snapshot {
            meta: record.meta,
            snapshot: SnapshotFile {
                path: self.snapshots.join(record.file),
            },
        }))
    }
}
