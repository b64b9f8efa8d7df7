//! Raft as an implementation of the seam: writes are ordered by the leader (a
//! follower forwards them), reads wait for a read index when they must be
//! linearizable, and the status is the cluster as this member sees it.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::node::RaftNode;
use crate::metrics::Metrics;
use crate::op::Applied;
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::Result;
use crate::replication::mode::{ModeName, ReadBarrier, ReplicationMode, WriteRequest};
use crate::replication::status::{detail_of, NodeStatus};

/// Raft's part of the node status: the cluster as `/cluster/status` shows it.
#[derive(serde::Serialize)]
struct RaftDetail {
    cluster: super::ClusterStatus,
}

impl ReplicationMode for RaftNode {
    fn name(&self) -> ModeName {
        ModeName::Raft
    }

    fn write(&self, write: WriteRequest) -> BoxFuture<'_, Result<Applied>> {
        let WriteRequest {
            op,
            precondition,
            concern,
            request_id,
        } = write;
        RaftNode::write(self, op, precondition, concern, request_id).boxed()
    }

    fn read_barrier<'a>(&'a self, read: ReadConsistency, collection: &'a str) -> ReadBarrier<'a> {
        RaftNode::read_barrier(self, read, collection).boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<NodeStatus>> {
        async move {
            let lag = self.inner.lag.lock().clone();
            Ok(NodeStatus {
                role: "raft".into(),
                applied_seq: self.database().applied_seq(),
                lag,
                detail: detail_of(&RaftDetail {
                    cluster: self.cluster_status().await?,
                }),
            })
        }
        .boxed()
    }

    fn refresh_metrics(&self, _metrics: &Metrics) {
        // Nothing to do at a scrape: the Raft gauges and the lag (from the same list
        // the status shows) follow openraft's metrics on their own (`status.rs`),
        // which is then their only writer.
    }

    fn knows_every_collection(&self) -> bool {
        false
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        RaftNode::shutdown(self).boxed()
    }
}
