//! Primary–replica as an implementation of the seam: a primary orders and applies
//! a write, then waits for its write concern; a replica or a fenced primary refuses
//! writes with NOT_PRIMARY, naming where they go.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::role::Role;
use super::running::Replication;
use crate::metrics::Metrics;
use crate::op::Applied;
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::mode::{
    apply_here, refuse_request_id, visible_here, ModeName, ReadBarrier, ReplicationMode,
    WriteRequest,
};
use crate::replication::status::NodeStatus;

impl Replication {
    /// Writes go to the primary.
    fn ensure_primary(&self) -> Result<()> {
        match self.primary() {
            Some(primary) => Err(ReplicationError::NotPrimary { primary }),
            None => Ok(()),
        }
    }
}

impl ReplicationMode for Replication {
    fn name(&self) -> ModeName {
        ModeName::PrimaryReplica
    }

    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<Applied>> {
        async move {
            let concern = write.concern;
            refuse_request_id(&write)?;
            let applying = self.writes.read().await;
            self.ensure_primary()?;
            // The epoch this node writes in: the concern is judged against it.
            let epoch = self.epoch()?;
            let applied = apply_here(&self.served, write.op, write.precondition).await?;
            drop(applying);
            self.await_concern(applied.seq, concern, epoch).await?;
            Ok(applied)
        }
        .boxed()
    }

    fn read_barrier<'a>(&'a self, read: ReadConsistency, collection: &'a str) -> ReadBarrier<'a> {
        async move {
            // A replica of a primary cannot promise linearizable reads.
            if read == ReadConsistency::Linearizable {
                self.ensure_primary()?;
            }
            visible_here(&self.served, read, collection).await;
            Ok(())
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<NodeStatus>> {
        async move { Ok(self.node_status()) }.boxed()
    }

    fn refresh_metrics(&self, metrics: &Metrics) {
        if let Ok(epoch) = self.epoch() {
            metrics.replication_epoch.set(epoch as i64);
        }
        let shipped = metrics.replication_bytes_shipped.get();
        if self.role() == Role::Primary && shipped > 0 {
            metrics
                .replication_compression_ratio
                .set(metrics.replication_bytes_raw.get() as f64 / shipped as f64);
        }
        // One scrape at a time: status read and gauges set under the same lock.
        let mut series = self.lag_series.lock();
        series.publish(metrics, &self.node_status().lag);
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move { self.close() }.boxed()
    }
}
