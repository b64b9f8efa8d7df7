//! The transport's Prometheus metrics: traffic per peer and frame kind, delta
//! compression, round-trip time and stream errors. Registered into the node's
//! registry, so they appear at its `/metrics` next to everything else.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

pub struct TransportMetrics {
    pub bytes_sent: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub messages_received: IntCounterVec,
    /// Delta batch bytes before compression (`form="raw"`) and on the wire
    /// (`form="wire"`): their ratio is the compression achieved.
    pub delta_bytes: IntCounterVec,
    pub delta_batches_compressed: IntCounter,
    pub rtt_seconds: GaugeVec,
    pub stream_errors: IntCounterVec,
}

impl TransportMetrics {
    pub fn register(registry: &Registry) -> Result<TransportMetrics, prometheus::Error> {
        fn counter(
            registry: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let peer_kind = ["peer", "kind"];
        let rtt_seconds = GaugeVec::new(
            Opts::new(
                "needle_transport_rtt_seconds",
                "QUIC round-trip time per peer",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(rtt_seconds.clone()))?;
        let delta_batches_compressed = IntCounter::new(
            "needle_transport_delta_batches_compressed_total",
            "Delta batches sent zstd-compressed",
        )?;
        registry.register(Box::new(delta_batches_compressed.clone()))?;
        Ok(TransportMetrics {
            bytes_sent: counter(
                registry,
                "needle_transport_bytes_sent_total",
                "Frame bytes sent",
                &peer_kind,
            )?,
            bytes_received: counter(
                registry,
                "needle_transport_bytes_received_total",
                "Frame bytes received",
                &peer_kind,
            )?,
            messages_sent: counter(
                registry,
                "needle_transport_messages_sent_total",
                "Frames sent",
                &peer_kind,
            )?,
            messages_received: counter(
                registry,
                "needle_transport_messages_received_total",
                "Frames received",
                &peer_kind,
            )?,
            delta_bytes: counter(
                registry,
                "needle_transport_delta_bytes_total",
                "Delta batch bytes, raw and on the wire",
                &["form"],
            )?,
            delta_batches_compressed,
            rtt_seconds,
            stream_errors: counter(
                registry,
                "needle_transport_stream_errors_total",
                "Streams closed on an error",
                &["peer", "reason"],
            )?,
        })
    }
}

/// Counts one peer's traffic; a no-op when the transport has no metrics.
#[derive(Clone)]
pub(crate) struct Meter {
    metrics: Option<std::sync::Arc<TransportMetrics>>,
    peer: String,
}

impl Meter {
    pub fn new(
        metrics: Option<std::sync::Arc<TransportMetrics>>,
        peer: std::net::SocketAddr,
    ) -> Meter {
        Meter {
            metrics,
            peer: peer.to_string(),
        }
    }

    pub fn sent(&self, kind: crate::FrameKind, body_len: usize) {
        if let Some(m) = &self.metrics {
            let labels = [self.peer.as_str(), kind.name()];
            m.messages_sent.with_label_values(&labels).inc();
            m.bytes_sent
                .with_label_values(&labels)
                .inc_by((crate::frame::HEADER_LEN + body_len) as u64);
        }
    }

    pub fn received(&self, kind: crate::FrameKind, body_len: usize) {
        if let Some(m) = &self.metrics {
            let labels = [self.peer.as_str(), kind.name()];
            m.messages_received.with_label_values(&labels).inc();
            m.bytes_received
                .with_label_values(&labels)
                .inc_by((crate::frame::HEADER_LEN + body_len) as u64);
        }
    }

    pub fn delta(&self, raw: usize, wire: usize, compressed: bool) {
        if let Some(m) = &self.metrics {
            m.delta_bytes.with_label_values(&["raw"]).inc_by(raw as u64);
            m.delta_bytes
                .with_label_values(&["wire"])
                .inc_by(wire as u64);
            if compressed {
                m.delta_batches_compressed.inc();
            }
        }
    }

    pub fn rtt(&self, rtt: std::time::Duration) {
        if let Some(m) = &self.metrics {
            m.rtt_seconds
                .with_label_values(&[self.peer.as_str()])
                .set(rtt.as_secs_f64());
        }
    }

    pub fn stream_error(&self, error: &crate::TransportError) {
        if let Some(m) = &self.metrics {
            m.stream_errors
                .with_label_values(&[self.peer.as_str(), error_reason(error)])
                .inc();
        }
    }
}

/// A short, bounded label for an error (never the free-form message).
fn error_reason(error: &crate::TransportError) -> &'static str {
    use crate::TransportError as E;
    match error {
        E::UnsupportedVersion(_) => "version",
        E::UnknownKind(_) | E::UnknownFlags(_) | E::UnexpectedFrame { .. } => "unexpected_frame",
        E::FrameTooLarge { .. } | E::DeltaTooLarge { .. } => "too_large",
        E::Malformed { .. } => "malformed",
        E::NoSuchRegion(_)
        | E::OutOfRegion { .. }
        | E::RegionTooLarge { .. }
        | E::RegionIncomplete { .. } => "region",
        E::ChecksumMismatch { .. } => "checksum",
        E::Timeout(_) => "timeout",
        E::Stream(_) | E::Connect { .. } => "stream",
        E::Remote(_) => "remote",
        E::Tls(_) | E::Certificates(_) => "tls",
    }
}
