//! The seam's simplest implementation: no replication. This node orders its own
//! writes in its operation log and is the only copy, so every write concern is met
//! once the write is applied and every read is linearizable once its collection's
//! applied writes are visible.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::consistency::ReadConsistency;
use super::error::Result;
use super::mode::{
    apply_here, refuse_request_id, visible_here, ModeName, ReadBarrier, ReplicationMode,
    WriteRequest,
};
use super::status::NodeStatus;
use crate::op::Applied;
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

    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<Applied>> {
        async move {
            refuse_request_id(&write)?;
            apply_here(&self.served, write.op, write.precondition).await
        }
        .boxed()
    }

    fn read_barrier<'a>(&'a self, read: ReadConsistency, collection: &'a str) -> ReadBarrier<'a> {
        async move {
            visible_here(&self.served, read, collection).await;
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
                detail: serde_json::Map::new(),
            })
        }
        .boxed()
    }
}
