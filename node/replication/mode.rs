//! The seam: how a node takes writes and serves reads, whatever orders its writes.
//!
//! HTTP (and anything else that serves clients) holds one `Arc<dyn
//! ReplicationMode>` and never asks which mode it is for a write or a read. The
//! routes that only make sense in one mode (promotion, Raft membership) reach that
//! mode's own type through [`ReplicationMode::primary_replica`] and
//! [`ReplicationMode::raft`].

use std::sync::Arc;

use futures::future::BoxFuture;
use needle_consensus::RequestId;
use serde::Serialize;

use super::consistency::{ReadConsistency, WriteConcern};
use super::error::Result;
use super::primary_replica::Replication;
use super::raft::RaftNode;
use super::status::NodeStatus;
use crate::metrics::Metrics;
use crate::op::{Applied, Op, Precondition};
use crate::served::ServedDatabase;

/// Which implementation of the seam a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    Standalone,
    PrimaryReplica,
    Raft,
}

/// A write as the seam takes it.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub op: Op,
    pub precondition: Precondition,
    pub concern: WriteConcern,
    /// Makes a retried write idempotent where the mode can promise it (Raft);
    /// elsewhere a write with one is refused.
    pub request_id: Option<RequestId>,
}

/// What [`ReplicationMode::read_barrier`] returns.
pub type ReadBarrier<'a> = BoxFuture<'a, Result<()>>;

pub trait ReplicationMode: Send + Sync + std::fmt::Debug {
    fn name(&self) -> ModeName;

    /// Has the write ordered (here, or by whoever orders writes), applied, and
    /// answers once its concern is met.
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<Applied>>;

    /// Returns once a read of `collection` on this node has `consistency`.
    fn read_barrier<'a>(&'a self, read: ReadConsistency, collection: &'a str) -> ReadBarrier<'a>;

    /// Where this node stands: the part every mode has, and its own.
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus>>;

    /// Sets the mode's gauges, before `/metrics` is rendered.
    fn refresh_metrics(&self, metrics: &Metrics);

    /// Whether this node's own catalog may refuse a write to a collection it does
    /// not have. On Raft the log decides: the collection may be created by an entry
    /// this member has not applied yet.
    fn knows_every_collection(&self) -> bool {
        true
    }

    /// Stops the mode's background work (transport, loops) before the process exits.
    fn shutdown(&self) -> BoxFuture<'_, ()>;

    /// The primary–replica role, for its own routes (promote, demote, forget).
    fn primary_replica(&self) -> Option<&Arc<Replication>> {
        None
    }

    /// The Raft member, for its own routes (membership, step-down).
    fn raft(&self) -> Option<&RaftNode> {
        None
    }
}

/// A write this node orders in its own log (standalone, or as a primary): applied
/// here, before any write concern is waited for. Such a log keeps no request
/// records, so a write with an `Idempotency-Key` is refused rather than applied
/// twice on a retry.
pub(crate) async fn apply_here(served: &ServedDatabase, write: WriteRequest) -> Result<Applied> {
    refuse_request_id(&write)?;
    let db = served.current();
    Ok(db.submit_async(write.op, write.precondition).await?)
}

/// See [`apply_here`]: checked before anything else about the write.
pub(crate) fn refuse_request_id(write: &WriteRequest) -> Result<()> {
    match write.request_id {
        Some(_) => Err(crate::Error::InvalidRequest(
            "Idempotency-Key is honoured by Raft members only (serve --raft)".into(),
        )
        .into()),
        None => Ok(()),
    }
}

/// A linearizable read of writes this node ordered: an acknowledged write is
/// durable here but may still be on its way into the collection's memory (it became
/// primary since, or replicas acknowledge at durability: see `apply_lane`).
pub(crate) async fn visible_here(
    served: &ServedDatabase,
    consistency: ReadConsistency,
    collection: &str,
) {
    if consistency == ReadConsistency::Linearizable {
        served.current().await_visible(collection).await;
    }
}
