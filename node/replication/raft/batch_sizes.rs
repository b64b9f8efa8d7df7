//! How much openraft does per step, as Prometheus histograms: client writes
//! merged into one proposal (openraft merges `client_write` messages queued
//! together), entries per log append, entries per apply. They show whether
//! concurrent writes share their log appends and fsyncs.

use std::sync::Arc;

use needle_consensus::openraft::metrics::MetricsRecorder;
use prometheus::{Histogram, HistogramOpts, Registry};

#[derive(Debug)]
pub(crate) struct BatchSizes {
    writes: Histogram,
    appends: Histogram,
    applies: Histogram,
}

/// 1, 2, 4, … 4096 entries.
fn buckets() -> Vec<f64> {
    (0..13).map(|i| f64::from(1u32 << i)).collect()
}

impl BatchSizes {
    pub fn register(registry: &Registry) -> Option<Arc<BatchSizes>> {
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets())).ok()?;
            registry.register(Box::new(h.clone())).ok()?;
            Some(h)
        };
        Some(Arc::new(BatchSizes {
            writes: histogram(
                "needle_raft_write_batch_entries",
                "Client writes the leader proposed together, per proposal",
            )?,
            appends: histogram(
                "needle_raft_append_batch_entries",
                "Entries per append to this member's Raft log (one fsync or less each)",
            )?,
            applies: histogram(
                "needle_raft_apply_batch_entries",
                "Committed entries applied to the database together",
            )?,
        }))
    }
}

impl MetricsRecorder for BatchSizes {
    fn record_apply_batch(&self, entry_count: u64) {
        self.applies.observe(entry_count as f64);
    }

    fn record_append_batch(&self, entry_count: u64) {
        self.appends.observe(entry_count as f64);
    }

    fn record_write_batch(&self, entry_count: u64) {
        self.writes.observe(entry_count as f64);
    }

    // needle keeps these from `RaftMetrics` itself (`status.rs`).
    fn set_current_term(&self, _: u64) {}
    fn set_last_log_index(&self, _: u64) {}
    fn set_committed_index(&self, _: u64) {}
    fn set_applied_index(&self, _: u64) {}
    fn set_snapshot_index(&self, _: u64) {}
    fn set_purged_index(&self, _: u64) {}
    fn set_server_state(&self, _: u8) {}
    fn increment_vote(&self) {}
    fn increment_heartbeat(&self) {}
    fn increment_append(&self) {}
}
