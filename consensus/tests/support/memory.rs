//! An in-memory Raft state machine whose snapshots are files, as the node's are,
//! and a transport handler with no application requests: what the consensus
//! tests and the heartbeat bench run many groups on.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use needle_consensus::openraft::entry::RaftEntry;
use needle_consensus::openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use needle_consensus::openraft::{self, EntryPayload, OptionalSend};
use needle_consensus::types::{LogId, SnapshotMeta, StoredMembership};
use needle_consensus::{CommandOutcome, SnapshotFile, TypeConfig};
use needle_transport::{BoxFuture, Handler, PeerInfo};
use parking_lot::Mutex;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// What a group's state machine has applied: the payloads, in log order.
#[derive(Default)]
pub struct Applied {
    pub log_id: Option<LogId>,
    pub membership: StoredMembership,
    pub payloads: Vec<Vec<u8>>,
}

/// An in-memory state machine whose snapshots are files, as the node's are.
#[derive(Clone)]
pub struct Memory {
    pub applied: Arc<Mutex<Applied>>,
    pub current: Arc<Mutex<Option<Snapshot>>>,
    /// Snapshots installed from a leader.
    pub installed: Arc<AtomicUsize>,
    dir: PathBuf,
}

impl Memory {
    pub fn new(dir: PathBuf) -> Memory {
        std::fs::create_dir_all(&dir).unwrap();
        Memory {
            applied: Arc::default(),
            current: Arc::default(),
            installed: Arc::default(),
            dir,
        }
    }

    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.applied.lock().payloads.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Memory {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, bytes) = {
            let applied = self.applied.lock();
            let meta = SnapshotMeta {
                last_log_id: applied.log_id,
                last_membership: applied.membership.clone(),
            };
            (meta, postcard::to_stdvec(&applied.payloads).unwrap())
        };
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let path = self.dir.join(format!("snapshot-{index}"));
        std::fs::write(&path, bytes)?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        };
        *self.current.lock() = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for Memory {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Memory;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let applied = self.applied.lock();
        Ok((applied.log_id, applied.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            {
                let mut applied = self.applied.lock();
                applied.log_id = Some(log_id);
                match entry.payload {
                    EntryPayload::Normal(command) => applied.payloads.push(command.payload),
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(log_id), m)
                    }
                    EntryPayload::Blank => {}
                }
            }
            if let Some(responder) = responder {
                responder.send(CommandOutcome(Vec::new()));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Memory {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let payloads: Vec<Vec<u8>> =
            postcard::from_bytes(&std::fs::read(&snapshot.path)?).map_err(io::Error::other)?;
        *self.applied.lock() = Applied {
            log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
            payloads,
        };
        *self.current.lock() = Some(Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        self.installed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(self.current.lock().clone())
    }
}

/// The node's own requests: none in this test.
pub struct NoApp;

impl Handler for NoApp {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("no application requests here".to_string()) })
    }
}
