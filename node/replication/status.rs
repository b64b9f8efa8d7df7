//! One status shape for every mode: the part they all have (role, applied sequence
//! number, how far behind each replica or member is), and the mode's own part. The
//! replication lag gauges are set from it, the same way in every mode.

use std::collections::HashSet;

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

/// A mode's own status as [`NodeStatus::detail`]: the fields of `status`, which
/// serialises as an object (a struct).
pub fn detail_of(status: &impl Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
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

/// The lag gauges as one writer last set them: `needle_replication_lag_operations
/// {replica}` and `needle_replication_lag_seconds{replica}`. Each mode keeps one
/// (a primary behind a lock, since scrapes set it; Raft in its metrics loop).
#[derive(Debug, Default)]
pub struct LagSeries {
    operations: HashSet<String>,
    seconds: HashSet<String>,
}

impl LagSeries {
    /// Sets the gauges to exactly `lag`: the listed series first, then those this
    /// writer set before and no longer lists are removed, so a scrape in between
    /// never sees them empty.
    pub fn publish(&mut self, metrics: &Metrics, lag: &[ReplicaLag]) {
        let mut operations = HashSet::with_capacity(lag.len());
        let mut seconds = HashSet::with_capacity(lag.len());
        for replica in lag {
            let name = replica.replica.as_str();
            metrics
                .replication_lag_operations
                .with_label_values(&[name])
                .set(replica.operations as i64);
            operations.insert(replica.replica.clone());
            if let Some(behind) = replica.seconds {
                metrics
                    .replication_lag_seconds
                    .with_label_values(&[name])
                    .set(behind);
                seconds.insert(replica.replica.clone());
            }
        }
        for gone in self.operations.difference(&operations) {
            let _ = metrics
                .replication_lag_operations
                .remove_label_values(&[gone.as_str()]);
        }
        for gone in self.seconds.difference(&seconds) {
            let _ = metrics
                .replication_lag_seconds
                .remove_label_values(&[gone.as_str()]);
        }
        (self.operations, self.seconds) = (operations, seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::{LagSeries, ReplicaLag};
    use crate::metrics::Metrics;

    fn lag(replica: &str, operations: u64, seconds: Option<f64>) -> ReplicaLag {
        ReplicaLag {
            replica: replica.into(),
            operations,
            seconds,
        }
    }

    #[test]
    fn a_replica_no_longer_listed_loses_its_series_and_the_others_stay() {
        let metrics = Metrics::new().unwrap();
        let mut series = LagSeries::default();
        series.publish(
            &metrics,
            &[lag("node-2", 3, Some(1.5)), lag("node-3", 0, Some(0.0))],
        );
        let text = metrics.render(&[], &[]);
        assert!(
            text.contains("needle_replication_lag_operations{replica=\"node-2\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("needle_replication_lag_seconds{replica=\"node-2\"} 1.5"),
            "{text}"
        );
        // node-2 left; node-3's commit time is no longer known.
        series.publish(&metrics, &[lag("node-3", 7, None)]);
        let text = metrics.render(&[], &[]);
        assert!(!text.contains("replica=\"node-2\""), "{text}");
        assert!(
            text.contains("needle_replication_lag_operations{replica=\"node-3\"} 7"),
            "{text}"
        );
        assert!(
            !text.contains("needle_replication_lag_seconds{replica=\"node-3\"}"),
            "{text}"
        );
    }
}
