//! The seam: how a node takes writes and serves reads, whatever orders its writes.
//!
//! HTTP (and anything else that serves clients) holds one `Arc<dyn
//! ReplicationMode>` and never asks which mode it is for a write or a read. The
//! routes that only make sense in one mode (promotion, Raft membership) take that
//! mode's own type out of it with [`mode_as`]; this file names no implementation,
//! so a new mode is a new file, not an edit here.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use needle_consensus::RequestId;
use serde::Serialize;

use super::consistency::{ReadConsistency, WriteConcern};
use super::error::Result;
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

pub trait ReplicationMode: Any + Send + Sync + std::fmt::Debug {
    fn name(&self) -> ModeName;

    /// Has the write ordered (here, or by whoever orders writes), applied, and
    /// answers once its concern is met.
    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<Applied>>;

    /// Returns once a read of `collection` on this node has `consistency`.
    fn read_barrier<'a>(&'a self, read: ReadConsistency, collection: &'a str) -> ReadBarrier<'a>;

    /// Where this node stands: the part every mode has, and its own.
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus>>;

    /// Sets the mode's gauges, before `/metrics` is rendered.
    fn refresh_metrics(&self, _metrics: &Metrics) {}

    /// Whether this node's own catalog may refuse a write to a collection it does
    /// not have. On Raft the log decides: the collection may be created by an entry
    /// this member has not applied yet.
    fn knows_every_collection(&self) -> bool {
        true
    }

    /// Stops the mode's background work (transport, loops) before the process exits.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The mode as its own type `M`, when it is one: how a mode's own routes
/// (promotion, Raft membership) reach it.
pub fn mode_as<M: Any + Send + Sync>(mode: &Arc<dyn ReplicationMode>) -> Option<Arc<M>> {
    (Arc::clone(mode) as Arc<dyn Any + Send + Sync>)
        .downcast::<M>()
        .ok()
}

/// A write this node orders in its own log (standalone, or as a primary): applied
/// here, before any write concern is waited for. Such a log keeps no request
/// records, so a write with an `Idempotency-Key` is refused ([`refuse_request_id`])
/// rather than applied twice on a retry.
pub(crate) async fn apply_here(
    served: &ServedDatabase,
    op: Op,
    precondition: Precondition,
) -> Result<Applied> {
    Ok(served.current().submit_async(op, precondition).await?)
}

/// Such a log keeps no request records (see [`apply_here`]): checked before
/// anything else about the write.
pub(crate) fn refuse_request_id(write: &WriteRequest) -> Result<()> {
    match write.request_id {
        Some(_) => Err(super::error::ReplicationError::IdempotencyUnsupported),
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
