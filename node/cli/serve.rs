use super::address_file::NodeAddressFile;
use crate::config::{
    BackendChoice, FileConfig, GpuFullChoice, Overrides, RoleChoice, ServeConfig, TlsConfig,
};
use crate::{Database, DatabaseOptions};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file; flags and NEEDLE_* variables override its values.
    #[arg(long, env = "NEEDLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (RocksDB) [default: ./needle-data]
    #[arg(long, env = "NEEDLE_DATA")]
    pub data: Option<PathBuf>,
    /// HTTP listen address; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "NEEDLE_HTTP")]
    pub http: Option<String>,
    /// Also serve a Qdrant-compatible REST API (for `qdrant-client`) on this address,
    /// e.g. 127.0.0.1:6333; same data, keys and limits as the native API
    #[arg(long, env = "NEEDLE_QDRANT_HTTP")]
    pub qdrant_http: Option<String>,
    /// Search backend [default: auto]
    #[arg(long, value_enum, env = "NEEDLE_BACKEND")]
    pub backend: Option<BackendChoice>,
    /// When a GPU has no room for a write: refuse it, or serve that collection
    /// from the CPU [default: refuse]
    #[arg(long, value_enum, env = "NEEDLE_GPU_FULL")]
    pub gpu_full: Option<GpuFullChoice>,
    /// WAL fsync policy [default: group]
    #[arg(long, value_enum, env = "NEEDLE_SYNC")]
    pub sync: Option<crate::config::SyncChoice>,
    /// Largest accepted request body in bytes [default: 67108864]
    #[arg(long, env = "NEEDLE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Let concurrent single-query searches share engine calls [default: true]
    #[arg(long, env = "NEEDLE_SEARCH_COALESCING")]
    pub search_coalescing: Option<bool>,
    /// Newest operation-log entries to keep [default: 100000]
    #[arg(long, env = "NEEDLE_LOG_RETENTION", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_retention: Option<u64>,
    /// Test clusters only: let `/debug/faults` drop, delay, duplicate, reorder and
    /// partition this node's transport traffic [default: false]
    #[arg(long, env = "NEEDLE_FAULT_INJECTION", num_args = 0..=1, default_missing_value = "true")]
    pub fault_injection: Option<bool>,
    /// Replication role [default: standalone]
    #[arg(long, value_enum, env = "NEEDLE_ROLE")]
    pub role: Option<RoleChoice>,
    /// Address of the node-to-node (QUIC) transport, e.g. 10.0.0.1:5000 (this
    /// node's own IP: a primary and its replicas know each other by it)
    #[arg(long, env = "NEEDLE_CLUSTER_ADDR")]
    pub cluster_addr: Option<String>,
    /// The primary's cluster address (replicas)
    #[arg(long, env = "NEEDLE_PRIMARY")]
    pub primary: Option<String>,
    /// This node's certificate (PEM) for mutual TLS between nodes
    #[arg(long, env = "NEEDLE_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM)
    #[arg(long, env = "NEEDLE_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) every peer's certificate must chain to
    #[arg(long, env = "NEEDLE_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Development only: node-to-node traffic without authentication [default: false]
    #[arg(long, env = "NEEDLE_INSECURE_DEV", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_dev: Option<bool>,
    /// How long a write on a primary waits for its write concern [default: 5000]
    #[arg(long, env = "NEEDLE_WRITE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout_ms: Option<u64>,
    /// Key the admin routes (failover, membership, snapshots, /reload, /debug) require
    /// as `Authorization: Bearer <key>`
    #[arg(long, env = "NEEDLE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Read-write key of the data routes (`Authorization: Bearer <key>` or `api-key: <key>`)
    #[arg(long, env = "NEEDLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read-only key of the data routes: searches and gets, no writes
    #[arg(long, env = "NEEDLE_READ_ONLY_API_KEY", hide_env_values = true)]
    pub read_only_api_key: Option<String>,
    /// Start with the HTTP API reachable from the network without keys (dangerous)
    #[arg(long, env = "NEEDLE_UNSAFE_NO_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub unsafe_no_auth: Option<bool>,
    /// `/health` and `/metrics` need a key too [default: false]
    #[arg(long, env = "NEEDLE_PROTECT_METRICS", num_args = 0..=1, default_missing_value = "true")]
    pub protect_metrics: Option<bool>,
    /// HTTPS: this node's certificate chain (PEM), with --http-tls-key
    #[arg(long, env = "NEEDLE_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM)
    #[arg(long, env = "NEEDLE_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
    /// Where `POST /admin/snapshot` writes and `POST /reload` reads snapshot files, by name [default: DATA/snapshots]
    #[arg(long, env = "NEEDLE_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Snapshot file `POST /reload` loads when its body names none
    #[arg(long, env = "NEEDLE_RELOAD_FROM")]
    pub reload_from: Option<PathBuf>,
    /// Largest response body in bytes (RESPONSE_TOO_LARGE past it) [default: 67108864]
    #[arg(long, env = "NEEDLE_MAX_RESPONSE_BYTES")]
    pub max_response_bytes: Option<usize>,
    /// Requests processed at once; more get 503 OVERLOADED [default: 512]
    #[arg(long, env = "NEEDLE_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// HTTP connections held open at once [default: 4096]
    #[arg(long, env = "NEEDLE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long a request's headers may take to arrive, in ms [default: 10000]
    #[arg(long, env = "NEEDLE_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// How long a request's body may take to arrive, in ms [default: 60000]
    #[arg(long, env = "NEEDLE_HTTP_BODY_TIMEOUT_MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// Writes waiting for the writer at once; more get 503 OVERLOADED [default: 8192]
    #[arg(long, env = "NEEDLE_WRITE_QUEUE")]
    pub write_queue: Option<usize>,
    /// Log entries per batch a replica pulls [default: 1000]
    #[arg(long, env = "NEEDLE_REPLICATION_BATCH_SIZE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub replication_batch_size: Option<u32>,
    /// How long a replica's pull waits for new entries, in ms [default: 500]
    #[arg(long, env = "NEEDLE_REPLICATION_SYNC_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub replication_sync_interval_ms: Option<u64>,
    /// zstd-compress log batches sent to replicas where it pays [default: true]
    #[arg(long, env = "NEEDLE_REPLICATION_COMPRESSION", num_args = 0..=1, default_missing_value = "true")]
    pub replication_compression: Option<bool>,
    /// Run as a member of a Raft cluster (needs --node-id, --cluster-addr, --peers)
    #[arg(long, env = "NEEDLE_RAFT", num_args = 0..=1, default_missing_value = "true")]
    pub raft: Option<bool>,
    /// This member's Raft id (unique in the cluster, > 0)
    #[arg(long, env = "NEEDLE_NODE_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,
    /// The other members, comma-separated `ID=HOST:PORT` (or `HOST:PORT`) cluster addresses
    #[arg(long, env = "NEEDLE_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Raft log entries between snapshots; the log before a snapshot is purged [default: 10000]
    #[arg(long, env = "NEEDLE_RAFT_SNAPSHOT_EVERY", value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_snapshot_every: Option<u64>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = ServeConfig::resolve(
        &file,
        Overrides {
            data: args.data,
            http: args.http,
            qdrant_http: args.qdrant_http,
            backend: args.backend,
            gpu_full: args.gpu_full,
            sync: args.sync.map(crate::config::SyncChoice::mode),
            max_body_bytes: args.max_body_bytes,
            search_coalescing: args.search_coalescing,
            log_retention: args.log_retention,
            fault_injection: args.fault_injection,
            role: args.role,
            cluster_addr: args.cluster_addr,
            primary: args.primary,
            tls: match (args.tls_cert, args.tls_key, args.tls_ca) {
                (Some(cert_path), Some(key_path), Some(ca_path)) => Some(TlsConfig {
                    cert_path,
                    key_path,
                    ca_path: Some(ca_path),
                }),
                _ => None,
            },
            insecure_dev: args.insecure_dev,
            write_timeout_ms: args.write_timeout_ms,
            admin_key: args.admin_key,
            reload_from: args.reload_from,
            replication_batch_size: args.replication_batch_size,
            replication_sync_interval_ms: args.replication_sync_interval_ms,
            replication_compression: args.replication_compression,
            raft: args.raft,
            node_id: args.node_id,
            peers: args.peers,
            raft_snapshot_every: args.raft_snapshot_every,
            api_key: args.api_key,
            read_only_api_key: args.read_only_api_key,
            unsafe_no_auth: args.unsafe_no_auth,
            protect_metrics: args.protect_metrics,
            http_tls_cert: args.http_tls_cert,
            http_tls_key: args.http_tls_key,
            snapshot_dir: args.snapshot_dir,
            max_response_bytes: args.max_response_bytes,
            max_concurrent_requests: args.max_concurrent_requests,
            max_connections: args.max_connections,
            http_header_timeout_ms: args.http_header_timeout_ms,
            http_body_timeout_ms: args.http_body_timeout_ms,
            write_queue: args.write_queue,
        },
    )?;
    for warning in super::exposure::check(&config)? {
        tracing::warn!("{warning}");
        eprintln!("WARNING: {warning}");
    }
    let options = DatabaseOptions {
        backend: config.backend.kind(),
        on_device_full: config.gpu_full.policy(),
        sync: config.sync,
        log_retention: config.log_retention,
        write_queue: config.write_queue,
        clock: crate::clock::Clock::default(),
    };
    let db = Database::open_with(&config.data, options)
        .with_context(|| format!("opening data directory {}", config.data.display()))?;
    let selection = db.backend_selection();
    for (passed_over, reason) in &selection.passed_over {
        tracing::info!(backend = passed_over, %reason, "search backend not used");
    }
    tracing::info!(backend = db.backend_name(), device = %selection.device, "search backend");
    tracing::info!(
        data = %config.data.display(),
        backend = db.backend_name(),
        sync = ?config.sync,
        collections = db.collections().len(),
        applied_seq = db.applied_seq(),
        "database open"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("needle-http")
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.http)
            .await
            .with_context(|| format!("binding {}", config.http))?;
        super::exposure::check_bound(&config, listener.local_addr()?)?;
        // Tests and scripts read this line to learn the port when --http ends in :0.
        let scheme = if config.http_tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!("listening on {scheme}://{}", listener.local_addr()?);
        let qdrant = match &config.qdrant_http {
            Some(addr) => {
                let qdrant = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding --qdrant-http {addr}"))?;
                super::exposure::check_bound(&config, qdrant.local_addr()?)?;
                // Read by tests and scripts, as the line above.
                tracing::info!(
                    "qdrant-compatible API listening on {scheme}://{}",
                    qdrant.local_addr()?
                );
                Some(qdrant)
            }
            None => None,
        };
        let faults = config.fault_injection.then(|| {
            tracing::warn!("fault injection is ON: /debug/faults can degrade this node's traffic");
            std::sync::Arc::new(needle_transport::faults::FaultInjector::default())
        });
        let served = crate::served::ServedDatabase::new(db);
        let mode =
            super::serve_mode::start(&served, &config, faults.clone(), listener.local_addr()?)
                .await?;
        let options = crate::http::HttpOptions {
            limits: config.http_limits(),
            search_coalescing: config.search_coalescing,
            faults,
            mode: Some(mode.clone()),
            keys: crate::http::AccessKeys {
                admin: config.admin_key.clone(),
                read_write: config.api_key.clone(),
                read_only: config.read_only_api_key.clone(),
                protect_metrics: config.protect_metrics,
            },
            snapshot_dir: config.snapshot_dir.clone(),
            reload_from: config.reload_from.clone(),
            tls: config.http_tls.clone(),
        };
        let address_file = NodeAddressFile::write(
            &config.data,
            listener.local_addr()?,
            config.http_tls.is_some(),
        );
        crate::http::serve(served, listener, qdrant, options, shutdown_signal()).await?;
        mode.shutdown().await;
        drop(address_file);
        tracing::info!("shut down cleanly");
        anyhow::Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM, so in-flight requests finish before exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
