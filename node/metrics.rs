//! Every metric the node exports, registered in one place and rendered at `/metrics`.

use crate::gpu_metrics::GpuMetrics;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Registers `collector` and hands it back, so each metric is created and
/// registered in one expression.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// The node's metrics. One instance per database, shared by the writer and every
/// HTTP handler.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    /// Error answers by route and error code (`WRITE_CONCERN_TIMEOUT`, ...): what
    /// alerts key on, which a status code alone cannot tell apart.
    pub http_errors: IntCounterVec,
    pub http_duration: HistogramVec,
    pub collection_vectors: IntGaugeVec,
    pub collection_tombstones: IntGaugeVec,
    pub search_batch_size: HistogramVec,
    /// Committed ops by kind (`create_collection`, `drop_collection`, `upsert`, `delete`).
    pub write_ops: IntCounterVec,
    /// Ops per RocksDB batch: how much group commit is grouping.
    pub write_group_ops: Histogram,
    /// Time to write one batch (and fsync it, unless a Raft log holds its ops).
    pub write_commit_seconds: Histogram,
    /// Sequence number of the last applied op.
    pub applied_seq: IntGauge,
    /// Sequence number of the oldest retained operation-log entry.
    pub oplog_first_seq: IntGauge,
    /// Entries behind, per replica (on a primary: each replica; on a replica: itself).
    pub replication_lag_operations: IntGaugeVec,
    /// Age of the oldest entry a replica has received but not applied.
    pub replication_lag_seconds: prometheus::GaugeVec,
    /// Log entries shipped (`role="primary"`) or applied (`role="replica"`).
    pub replication_operations: IntCounterVec,
    /// The replication epoch this node is in.
    pub replication_epoch: IntGauge,
    /// Operations a demoted node discarded because the new primary never had them.
    pub replication_discarded_operations: prometheus::IntCounter,
    /// Log batches a primary encoded for replicas: bytes before compression...
    pub replication_bytes_raw: prometheus::IntCounter,
    /// ...and bytes sent.
    pub replication_bytes_shipped: prometheus::IntCounter,
    /// Raw over shipped bytes so far (1 when nothing compressed).
    pub replication_compression_ratio: prometheus::Gauge,
    /// Which search backend runs, as `needle_backend_info{backend,device} 1`.
    pub backend_info: IntGaugeVec,
    /// Searches stopped because their client went away.
    pub searches_cancelled: prometheus::IntCounter,
    /// HTTP requests holding one of the `--max-concurrent-requests` slots.
    pub http_in_flight: IntGauge,
    /// Collections a GPU backend serves from host memory (1) because the device
    /// filled up.
    pub collection_on_host: IntGaugeVec,
    /// Problems the node recovered from, and whether it failed (`/health`).
    pub health: std::sync::Arc<crate::health::NodeHealth>,
    /// NVML gauges; `None` without an NVIDIA driver.
    gpu: Option<GpuMetrics>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "needle_http_requests_total",
                    "HTTP requests by route, method and status",
                ),
                &["route", "method", "status"],
            )?,
        )?;
        let http_errors = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "needle_http_errors_total",
                    "HTTP error answers by route and error code",
                ),
                &["route", "code"],
            )?,
        )?;
        let http_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "needle_http_request_duration_seconds",
                    "HTTP request latency by route",
                )
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18)?),
                &["route", "method"],
            )?,
        )?;
        let collection_vectors = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("needle_collection_vectors", "Live vectors per collection"),
                &["collection"],
            )?,
        )?;
        let search_batch_size = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("needle_search_batch_size", "Queries per engine call")
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 14)?),
                &["collection"],
            )?,
        )?;
        let collection_tombstones = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "needle_collection_tombstones",
                    "Deleted rows awaiting compaction per collection",
                ),
                &["collection"],
            )?,
        )?;
        let write_ops = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("needle_write_ops_total", "Committed operations by kind"),
                &["op"],
            )?,
        )?;
        let write_group_ops = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("needle_write_group_ops", "Operations per written batch")
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 10)?),
            )?,
        )?;
        let write_commit_seconds = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "needle_write_commit_seconds",
                    "Time to write one batch of operations, with its fsync where it has one",
                )
                .buckets(prometheus::exponential_buckets(0.00005, 2.0, 16)?),
            )?,
        )?;
        let applied_seq = registered(
            &registry,
            IntGauge::new(
                "needle_applied_seq",
                "Sequence number of the last applied operation",
            )?,
        )?;
        let oplog_first_seq = registered(
            &registry,
            IntGauge::new(
                "needle_oplog_first_seq",
                "Sequence number of the oldest retained operation-log entry",
            )?,
        )?;
        let backend_info = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("needle_backend_info", "The search backend in use (value 1)"),
                &["backend", "device"],
            )?,
        )?;
        let gpu = GpuMetrics::register(&registry)?;
        let replication_lag_operations = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "needle_replication_lag_operations",
                    "Operation-log entries a replica is behind its primary",
                ),
                &["replica"],
            )?,
        )?;
        let replication_lag_seconds = registered(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "needle_replication_lag_seconds",
                    "Age of the oldest entry a replica has received but not applied",
                ),
                &["replica"],
            )?,
        )?;
        let replication_operations = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "needle_replication_operations_total",
                    "Log entries shipped by a primary or applied by a replica",
                ),
                &["role"],
            )?,
        )?;
        let replication_epoch = registered(
            &registry,
            IntGauge::new(
                "needle_replication_epoch",
                "The replication epoch this node is in (promotions start new ones)",
            )?,
        )?;
        let replication_discarded_operations = registered(
            &registry,
            prometheus::IntCounter::new(
                "needle_replication_discarded_operations_total",
                "Operations a demoted primary discarded because the new primary never had them",
            )?,
        )?;
        let replication_bytes_raw = registered(
            &registry,
            prometheus::IntCounter::new(
                "needle_replication_bytes_raw_total",
                "Bytes of log batches a primary encoded for replicas, before compression",
            )?,
        )?;
        let replication_bytes_shipped = registered(
            &registry,
            prometheus::IntCounter::new(
                "needle_replication_bytes_shipped_total",
                "Bytes of log batches a primary sent to replicas (compressed where it paid)",
            )?,
        )?;
        let replication_compression_ratio = registered(
            &registry,
            prometheus::Gauge::new(
                "needle_replication_compression_ratio",
                "Bytes of log batches before compression over bytes sent, since start",
            )?,
        )?;
        let collection_on_host = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "needle_collection_on_host",
                    "1 for a collection a GPU backend serves from host memory because the device is full",
                ),
                &["collection"],
            )?,
        )?;
        let health = std::sync::Arc::new(crate::health::NodeHealth::register(&registry)?);
        let searches_cancelled = registered(
            &registry,
            prometheus::IntCounter::new(
                "needle_searches_cancelled_total",
                "Searches stopped before they finished because their client went away",
            )?,
        )?;
        let http_in_flight = registered(
            &registry,
            IntGauge::new(
                "needle_http_requests_in_flight",
                "HTTP requests being processed (bodies read), of --max-concurrent-requests",
            )?,
        )?;
        Ok(Metrics {
            http_in_flight,
            searches_cancelled,
            collection_on_host,
            health,
            replication_compression_ratio,
            replication_bytes_raw,
            replication_bytes_shipped,
            replication_epoch,
            replication_discarded_operations,
            replication_lag_operations,
            replication_lag_seconds,
            replication_operations,
            backend_info,
            gpu,
            registry,
            http_requests,
            http_errors,
            http_duration,
            collection_vectors,
            collection_tombstones,
            search_batch_size,
            write_ops,
            write_group_ops,
            write_commit_seconds,
            applied_seq,
            oplog_first_seq,
        })
    }

    /// Drops the per-collection series of a dropped collection, so label values do
    /// not pile up as collections come and go.
    pub fn forget_collection(&self, name: &str) {
        let _ = self.search_batch_size.remove_label_values(&[name]);
        let _ = self.collection_vectors.remove_label_values(&[name]);
        let _ = self.collection_tombstones.remove_label_values(&[name]);
        let _ = self.collection_on_host.remove_label_values(&[name]);
    }

    /// The registry, for components (the transport) that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric, with per-collection gauges refreshed
    /// from `collections` first so dropped collections disappear.
    pub fn render(
        &self,
        collections: &[crate::model::CollectionInfo],
        on_host: &[String],
    ) -> String {
        self.collection_vectors.reset();
        self.collection_tombstones.reset();
        self.collection_on_host.reset();
        for name in on_host {
            self.collection_on_host.with_label_values(&[name]).set(1);
        }
        for c in collections {
            let name = [c.config.name.as_str()];
            self.collection_vectors
                .with_label_values(&name)
                .set(c.count as i64);
            self.collection_tombstones
                .with_label_values(&name)
                .set(c.tombstones as i64);
        }
        if let Some(gpu) = &self.gpu {
            gpu.refresh();
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
