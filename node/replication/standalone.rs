//! The seam's simplest implementation: no replication. This node orders its own
//! writes in its operation log and is the only copy, so every write concern is met
//! once the write is applied and every read is linearizable once its collection's
//! applied writes are visible.

use futures::future::BoxFuture;
use futures::FutureExt;
use needle_consensus::RequestId;

use super::consistency::{ReadConsistency, WriteConcern};
use super::error::Result;
use super::mode::{refuse_request_id, ModeName, ReplicationMode};
use super::status::{ModeStatus, NodeStatus};
use crate::metrics::Metrics;
use crate::op::{Applied, Op, Precondition};
use crate::served::ServedDatabase;

#[derive(Clone)]
pub struct Standalone {
    served: ServedDatabase,
}

impl Standalone {
    pub fn new(served: ServedDatabase) -> Standalone {
        Standalone { served }
    }
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Standalone")
    }
}

impl ReplicationMode for Standalone {
    fn name(&self) -> ModeName {
        ModeName::Standalone
    }

    fn write(
        &self,
        op: Op,
        precondition: Precondition,
        _concern: WriteConcern,
        request_id: Option<RequestId>,
    ) -> BoxFuture<'_, Result<Applied>> {
        async move {
            refuse_request_id(request_id)?;
            Ok(self.served.current().submit_async(op, precondition).await?)
        }
        .boxed()
    }

    fn read_barrier<'a>(
        &'a self,
        consistency: ReadConsistency,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            if consistency == ReadConsistency::Linearizable {
                // An acknowledged write is durable here but may still be on its way
                // into the collection's memory (see `apply_lane.rs`).
                self.served.current().await_visible(collection).await;
            }
            Ok(())
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<NodeStatus>> {
        async move {
            Ok(NodeStatus {
                role: "standalone".into(),
                applied_seq: self.served.current().applied_seq(),
                lag: Vec::new(),
                detail: ModeStatus::Standalone {},
            })
        }
        .boxed()
    }

    fn refresh_metrics(&self, _metrics: &Metrics) {}

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}
