//! Every metric the node exports, registered in one place and rendered at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The node's metrics. One instance per server, shared by all handlers.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub collection_vectors: IntGaugeVec,
    pub search_batch_size: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "needle_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "needle_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18)?),
            &["route", "method"],
        )?;
        let collection_vectors = IntGaugeVec::new(
            Opts::new("needle_collection_vectors", "Live vectors per collection"),
            &["collection"],
        )?;
        let search_batch_size = HistogramVec::new(
            HistogramOpts::new("needle_search_batch_size", "Queries per engine call")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 14)?),
            &["collection"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(collection_vectors.clone()))?;
        registry.register(Box::new(search_batch_size.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            collection_vectors,
            search_batch_size,
        })
    }

    /// Prometheus text exposition of every metric, with per-collection gauges refreshed
    /// from `collections` first so dropped collections disappear.
    pub fn render(&self, collections: &[crate::CollectionInfo]) -> String {
        self.collection_vectors.reset();
        for c in collections {
            self.collection_vectors
                .with_label_values(&[c.config.name.as_str()])
                .set(c.count as i64);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
