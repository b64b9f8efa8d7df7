//! Node configuration: defaults, overridden by a TOML file, overridden by `NEEDLE_*`
//! environment variables and command-line flags (clap reads those two, flags first).

pub mod http_limits;
mod mode_settings;

use crate::SyncMode;
pub use http_limits::{HttpLimits, DEFAULT_MAX_BODY_BYTES};
pub use mode_settings::{ClusterSettings, ModeInputs, ModeSettings};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_DATA_DIR: &str = "./needle-data";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Which search backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The best backend this machine has.
    #[default]
    Auto,
    /// NVIDIA GPUs through CUDA; fails to start without one.
    Cuda,
    /// Any Vulkan, Metal or DX12 adapter (software ones included when forced).
    Wgpu,
    /// Always the CPU backend.
    Cpu,
}

impl BackendChoice {
    pub fn kind(self) -> needle_kernels::BackendKind {
        match self {
            BackendChoice::Auto => needle_kernels::BackendKind::Auto,
            BackendChoice::Cuda => needle_kernels::BackendKind::Cuda,
            BackendChoice::Wgpu => needle_kernels::BackendKind::Wgpu,
            BackendChoice::Cpu => needle_kernels::BackendKind::Cpu,
        }
    }
}

/// `--sync`: when the write-ahead log is fsynced (see [`SyncMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncChoice {
    /// Ops waiting together share one fsync (nothing is acknowledged before it).
    Group,
    /// Every op gets its own fsync.
    PerWrite,
}

impl SyncChoice {
    pub fn mode(self) -> SyncMode {
        match self {
            SyncChoice::Group => SyncMode::Group,
            SyncChoice::PerWrite => SyncMode::PerWrite,
        }
    }
}

/// What a GPU backend does with a write that would not fit in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GpuFullChoice {
    /// Refuse the write with DEVICE_MEMORY_FULL before it is committed.
    #[default]
    Refuse,
    /// Accept it and serve that collection from the CPU (host copy).
    Cpu,
}

impl GpuFullChoice {
    pub fn policy(self) -> needle_kernels::OnDeviceFull {
        match self {
            GpuFullChoice::Refuse => needle_kernels::OnDeviceFull::Refuse,
            GpuFullChoice::Cpu => needle_kernels::OnDeviceFull::ServeFromHost,
        }
    }
}

/// A node's part in replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RoleChoice {
    /// No replication.
    #[default]
    Standalone,
    /// Takes writes and serves its operation log to replicas.
    Primary,
    /// Follows a primary (`--primary`) and serves reads.
    Replica,
}

/// `tls { cert_path, key_path, ca_path }` in the config file: the one TLS settings
/// type of the node-to-node transport.
pub use crate::replication::TlsConfig;

/// The TOML file's contents; every key optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub http: Option<String>,
    pub qdrant_http: Option<String>,
    pub backend: Option<BackendChoice>,
    pub gpu_full: Option<GpuFullChoice>,
    pub sync: Option<SyncMode>,
    pub max_body_bytes: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub search_coalescing: Option<bool>,
    pub log_retention: Option<u64>,
    pub fault_injection: Option<bool>,
    pub role: Option<RoleChoice>,
    pub cluster_addr: Option<String>,
    pub primary: Option<String>,
    pub tls: Option<TlsConfig>,
    pub insecure_dev: Option<bool>,
    pub write_timeout_ms: Option<u64>,
    pub admin_key: Option<String>,
    pub reload_from: Option<PathBuf>,
    pub replication_batch_size: Option<u32>,
    pub replication_sync_interval_ms: Option<u64>,
    pub replication_compression: Option<bool>,
    pub raft: Option<bool>,
    pub node_id: Option<u64>,
    pub peers: Option<Vec<String>>,
    pub raft_snapshot_every: Option<u64>,
    pub api_key: Option<String>,
    pub read_only_api_key: Option<String>,
    pub unsafe_no_auth: Option<bool>,
    pub protect_metrics: Option<bool>,
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    pub snapshot_dir: Option<PathBuf>,
    pub max_response_bytes: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    pub max_connections: Option<usize>,
    pub http_header_timeout_ms: Option<u64>,
    pub http_body_timeout_ms: Option<u64>,
    pub write_queue: Option<usize>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }
}

/// The settings `needle serve` runs with, after every source is merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub http: String,
    /// Where the Qdrant-compatible REST API listens, if anywhere.
    pub qdrant_http: Option<String>,
    pub backend: BackendChoice,
    pub gpu_full: GpuFullChoice,
    pub sync: SyncMode,
    pub max_body_bytes: usize,
    /// Whether concurrent single-query searches share engine calls.
    pub search_coalescing: bool,
    /// Operation-log entries kept.
    pub log_retention: u64,
    /// Test clusters only: transport faults driven over `/debug/faults`.
    pub fault_injection: bool,
    /// Standalone, primary, replica or Raft member, with what each needs (the
    /// cluster address and transport security included).
    pub mode: ModeSettings,
    /// How long a write on a primary waits for its write concern.
    pub write_timeout_ms: u64,
    /// Guards the admin routes (`/admin/...`, `/reload`) when set.
    pub admin_key: Option<String>,
    /// The snapshot file `POST /reload` uses when its body names none.
    pub reload_from: Option<PathBuf>,
    /// Log entries per batch a replica pulls.
    pub replication_batch_size: u32,
    /// How long a replica's pull waits on the primary for new entries.
    pub replication_sync_interval_ms: u64,
    /// Whether a primary compresses log batches (zstd, where it pays).
    pub replication_compression: bool,
    /// Raft log entries between snapshots (the log before a snapshot is purged).
    pub raft_snapshot_every: u64,
    /// Data routes' keys: read-write and read-only.
    pub api_key: Option<String>,
    pub read_only_api_key: Option<String>,
    /// Start reachable from the network without keys anyway (logged loudly).
    pub unsafe_no_auth: bool,
    /// `/health` and `/metrics` need a key too.
    pub protect_metrics: bool,
    /// HTTPS: certificate chain and private key (PEM).
    pub http_tls: Option<(PathBuf, PathBuf)>,
    /// Where snapshot files are written and read by name (default `DATA/snapshots`).
    pub snapshot_dir: PathBuf,
    pub max_response_bytes: usize,
    pub max_concurrent_requests: usize,
    pub max_connections: usize,
    pub http_header_timeout_ms: u64,
    pub http_body_timeout_ms: u64,
    /// Writes this node orders that may wait for the writer at once.
    pub write_queue: usize,
}

/// Values given on the command line or in the environment (already merged by clap).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub http: Option<String>,
    pub qdrant_http: Option<String>,
    pub backend: Option<BackendChoice>,
    pub gpu_full: Option<GpuFullChoice>,
    pub sync: Option<SyncMode>,
    pub max_body_bytes: Option<usize>,
    pub search_coalescing: Option<bool>,
    pub log_retention: Option<u64>,
    pub fault_injection: Option<bool>,
    pub role: Option<RoleChoice>,
    pub cluster_addr: Option<String>,
    pub primary: Option<String>,
    pub tls: Option<TlsConfig>,
    pub insecure_dev: Option<bool>,
    pub write_timeout_ms: Option<u64>,
    pub admin_key: Option<String>,
    pub reload_from: Option<PathBuf>,
    pub replication_batch_size: Option<u32>,
    pub replication_sync_interval_ms: Option<u64>,
    pub replication_compression: Option<bool>,
    pub raft: Option<bool>,
    pub node_id: Option<u64>,
    pub peers: Option<Vec<String>>,
    pub raft_snapshot_every: Option<u64>,
    pub api_key: Option<String>,
    pub read_only_api_key: Option<String>,
    pub unsafe_no_auth: Option<bool>,
    pub protect_metrics: Option<bool>,
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    pub snapshot_dir: Option<PathBuf>,
    pub max_response_bytes: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    pub max_connections: Option<usize>,
    pub http_header_timeout_ms: Option<u64>,
    pub http_body_timeout_ms: Option<u64>,
    pub write_queue: Option<usize>,
}

impl ServeConfig {
    pub fn resolve(file: &FileConfig, over: Overrides) -> anyhow::Result<ServeConfig> {
        let data = over
            .data
            .or_else(|| file.data.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let defaults = HttpLimits::default();
        let http_tls = match (
            over.http_tls_cert.or_else(|| file.http_tls_cert.clone()),
            over.http_tls_key.or_else(|| file.http_tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("HTTPS needs both --http-tls-cert and --http-tls-key"),
        };
        let tls = over.tls.or_else(|| file.tls.clone());
        if tls.as_ref().is_some_and(|tls| tls.ca_path.is_none()) {
            // Checked here, with the rest of the file, rather than once the node
            // starts its transport.
            anyhow::bail!(
                "tls needs ca_path too: TLS between nodes is mutual (name the cluster CA)"
            );
        }
        Ok(ServeConfig {
            snapshot_dir: over
                .snapshot_dir
                .or_else(|| file.snapshot_dir.clone())
                .unwrap_or_else(|| data.join("snapshots")),
            data,
            http: over
                .http
                .or_else(|| file.http.clone())
                .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string()),
            qdrant_http: over.qdrant_http.or_else(|| file.qdrant_http.clone()),
            backend: over.backend.or(file.backend).unwrap_or_default(),
            gpu_full: over.gpu_full.or(file.gpu_full).unwrap_or_default(),
            sync: over.sync.or(file.sync).unwrap_or_default(),
            max_body_bytes: over
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            search_coalescing: over
                .search_coalescing
                .or(file.search_coalescing)
                .unwrap_or(true),
            log_retention: over
                .log_retention
                .or(file.log_retention)
                .unwrap_or(crate::DEFAULT_LOG_RETENTION)
                .max(1),
            fault_injection: over
                .fault_injection
                .or(file.fault_injection)
                .unwrap_or(false),
            mode: ModeSettings::resolve(ModeInputs {
                role: over.role.or(file.role).unwrap_or_default(),
                raft: over.raft.or(file.raft).unwrap_or(false),
                primary: over.primary.or_else(|| file.primary.clone()),
                node_id: over.node_id.or(file.node_id),
                peers: over
                    .peers
                    .or_else(|| file.peers.clone())
                    .unwrap_or_default(),
                cluster_addr: over.cluster_addr.or_else(|| file.cluster_addr.clone()),
                tls,
                insecure_dev: over.insecure_dev.or(file.insecure_dev).unwrap_or(false),
            })?,
            write_timeout_ms: over
                .write_timeout_ms
                .or(file.write_timeout_ms)
                .unwrap_or(5_000),
            admin_key: over.admin_key.or_else(|| file.admin_key.clone()),
            reload_from: over.reload_from.or_else(|| file.reload_from.clone()),
            replication_batch_size: over
                .replication_batch_size
                .or(file.replication_batch_size)
                .unwrap_or(1000),
            replication_sync_interval_ms: over
                .replication_sync_interval_ms
                .or(file.replication_sync_interval_ms)
                .unwrap_or(500),
            replication_compression: over
                .replication_compression
                .or(file.replication_compression)
                .unwrap_or(true),
            raft_snapshot_every: over
                .raft_snapshot_every
                .or(file.raft_snapshot_every)
                .unwrap_or(10_000)
                .max(1),
            api_key: over.api_key.or_else(|| file.api_key.clone()),
            read_only_api_key: over
                .read_only_api_key
                .or_else(|| file.read_only_api_key.clone()),
            unsafe_no_auth: over.unsafe_no_auth.or(file.unsafe_no_auth).unwrap_or(false),
            protect_metrics: over
                .protect_metrics
                .or(file.protect_metrics)
                .unwrap_or(false),
            http_tls,
            max_response_bytes: over
                .max_response_bytes
                .or(file.max_response_bytes)
                .unwrap_or(defaults.max_response_bytes)
                .max(1024),
            max_concurrent_requests: over
                .max_concurrent_requests
                .or(file.max_concurrent_requests)
                .unwrap_or(defaults.max_requests)
                .max(1),
            max_connections: over
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections)
                .max(1),
            http_header_timeout_ms: over
                .http_header_timeout_ms
                .or(file.http_header_timeout_ms)
                .unwrap_or(defaults.header_timeout.as_millis() as u64)
                .max(1),
            http_body_timeout_ms: over
                .http_body_timeout_ms
                .or(file.http_body_timeout_ms)
                .unwrap_or(defaults.body_timeout.as_millis() as u64)
                .max(1),
            write_queue: over
                .write_queue
                .or(file.write_queue)
                .unwrap_or(crate::writer::DEFAULT_WRITE_QUEUE)
                .max(1),
        })
    }

    /// The HTTP server's limits these settings give.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_body_bytes: self.max_body_bytes,
            max_response_bytes: self.max_response_bytes,
            max_requests: self.max_concurrent_requests,
            max_body_bytes_in_flight: HttpLimits::default()
                .max_body_bytes_in_flight
                .max(self.max_body_bytes),
            body_timeout: std::time::Duration::from_millis(self.http_body_timeout_ms),
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: FileConfig = toml::from_str(
            "data = \"/srv/needle\"\nhttp = \"0.0.0.0:9000\"\nsync = \"per-write\"\nbackend = \"wgpu\"\ngpu_full = \"cpu\"\n",
        )
        .unwrap();
        let cfg = ServeConfig::resolve(
            &file,
            Overrides {
                http: Some("127.0.0.1:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.http, "127.0.0.1:1");
        assert_eq!(cfg.data, PathBuf::from("/srv/needle"));
        assert_eq!(cfg.sync, SyncMode::PerWrite);
        assert_eq!(cfg.backend, BackendChoice::Wgpu);
        assert_eq!(cfg.gpu_full, GpuFullChoice::Cpu);
        let cfg = ServeConfig::resolve(&FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(
            cfg.snapshot_dir,
            PathBuf::from(DEFAULT_DATA_DIR).join("snapshots")
        );
        assert_eq!(cfg.data, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(cfg.http, DEFAULT_HTTP_ADDR);
        assert_eq!(cfg.sync, SyncMode::Group);
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(cfg.search_coalescing);
        assert_eq!(cfg.backend, BackendChoice::Auto);
        assert_eq!(cfg.gpu_full, GpuFullChoice::Refuse);
    }

    #[test]
    fn a_tls_table_without_a_ca_is_refused_at_load() {
        let no_ca: FileConfig =
            toml::from_str("[tls]\ncert_path = \"c.pem\"\nkey_path = \"k.pem\"\n").unwrap();
        let e = ServeConfig::resolve(&no_ca, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("ca_path"), "{e}");
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err());
        assert!(toml::from_str::<FileConfig>("sync = \"sometimes\"").is_err());
    }
}
