//! One status shape for every mode: the part they all have (role, applied sequence
//! number, how far behind each replica or member is), and the mode's own part. The
//! replication lag gauges are set from it, the same way in every mode.

use std::collections::HashSet;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use serde::Serialize;

use crate::metrics::Metrics;

/// Where a node stands (`GET /replication/status`).
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `standalone`, `primary`, `replica`, `fenced` or `raft`.
    pub role: String,
    /// The last operation applied here.
    pub applied_seq: u64,
    /// How far behind each copy is: on a primary its replicas, on a Raft leader
    /// its members, on a replica itself; empty elsewhere.
    pub lag: Vec<ReplicaLag>,
    /// The mode's own part, flattened into the status: each mode serialises its
    /// own typed status here (`PrimaryReplicaStatus`, Raft's `cluster`), so this
    /// shape names no mode.
    #[serde(flatten)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// A mode's own status as [`NodeStatus::detail`]: `status`'s fields, or, with a
/// `key`, `status` under that key.
pub fn detail_of(key: &str, status: &impl Serialize) -> serde_json::Map<String, serde_json::Value> {
    let value = serde_json::to_value(status).unwrap_or_default();
    match (key, value) {
        ("", serde_json::Value::Object(fields)) => fields,
        ("", _) => serde_json::Map::new(),
        (_, value) => serde_json::Map::from_iter([(key.to_string(), value)]),
    }
}

/// How far one replica (or Raft member) is behind the node that orders writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaLag {
    /// Its name: a certificate's node name or a cluster address (primary–replica),
    /// its node id (Raft).
    pub replica: String,
    pub operations: u64,
    /// How long it has been behind: the age of the oldest operation it lacks
    /// (primary–replica) or the time since it last had everything (Raft); `None`
    /// when that is not known (nothing recent enough is remembered).
    pub seconds: Option<f64>,
}

/// Sets `needle_replication_lag_operations{replica}` and
/// `needle_replication_lag_seconds{replica}` to exactly `lag`: the listed series
/// are set first, then those of replicas no longer listed are removed, so a scrape
/// in between never sees the gauges empty.
pub fn publish_lag(metrics: &Metrics, lag: &[ReplicaLag]) {
    let listed: HashSet<&str> = lag.iter().map(|r| r.replica.as_str()).collect();
    let timed: HashSet<&str> = lag
        .iter()
        .filter(|r| r.seconds.is_some())
        .map(|r| r.replica.as_str())
        .collect();
    for replica in lag {
        metrics
            .replication_lag_operations
            .with_label_values(&[replica.replica.as_str()])
            .set(replica.operations as i64);
        if let Some(seconds) = replica.seconds {
            metrics
                .replication_lag_seconds
                .with_label_values(&[replica.replica.as_str()])
                .set(seconds);
        }
    }
    remove_unlisted(&metrics.replication_lag_operations, &listed);
    remove_unlisted(&metrics.replication_lag_seconds, &timed);
}

/// Removes every series of `gauges` whose `replica` label is not in `keep`.
fn remove_unlisted<B: MetricVecBuilder>(gauges: &MetricVec<B>, keep: &HashSet<&str>) {
    let present: Vec<String> = gauges
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .flat_map(|metric| metric.get_label())
        .filter(|label| label.name() == "replica")
        .map(|label| label.value().to_string())
        .collect();
    for replica in present {
        if !keep.contains(replica.as_str()) {
            let _ = gauges.remove_label_values(&[replica.as_str()]);
        }
    }
}
