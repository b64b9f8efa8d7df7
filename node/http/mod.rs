//! The HTTP API (axum). Handlers translate JSON to library calls and library errors to
//! `{"error":{"code","message"}}` responses; they hold no logic of their own.

mod admin;
pub mod auth;
mod budget;
mod cluster;
mod collections;
mod debug;
mod error;
mod extract;
mod failover;
pub mod limits;
mod observability;
pub mod openapi;
pub mod qdrant;
mod routes;
mod search;
mod send_deadline;
pub mod server;
mod vectors;

pub use auth::AccessKeys;
pub use error::ApiError;
pub use limits::HttpLimits;

use crate::coalesce::SearchCoalescer;
use crate::metrics::Metrics;
use crate::replication::{ReadConsistency, ReplicationMode, WriteConcern};
use crate::served::ServedDatabase;
use crate::Database;
use needle_transport::faults::FaultInjector;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use crate::config::http_limits::DEFAULT_MAX_BODY_BYTES;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    served: ServedDatabase,
    pub metrics: Arc<Metrics>,
    /// Single-query searches go through here so concurrent ones share engine calls;
    /// `None` when coalescing is switched off.
    pub coalescer: Option<Arc<SearchCoalescer>>,
    /// The transport fault injector, only when started with `--fault-injection`.
    pub faults: Option<Arc<FaultInjector>>,
    /// How this node takes writes and serves reads: standalone, primary–replica or
    /// Raft. Writes, reads and status never ask which; only the routes of one mode
    /// (promotion, Raft membership) and `/reload` do.
    pub mode: Arc<dyn ReplicationMode>,
    /// The API and admin keys each route class requires.
    pub keys: Arc<AccessKeys>,
    pub limits: Arc<HttpLimits>,
    gates: limits::Gates,
    /// Where `POST /admin/snapshot` writes and `POST /reload` reads snapshot files:
    /// requests name files in it, never paths.
    pub snapshot_dir: Arc<std::path::Path>,
    /// The snapshot file `POST /reload` uses when its body names none.
    pub reload_from: Option<Arc<std::path::Path>>,
    /// Serialises reloads.
    pub reload_lock: Arc<tokio::sync::Mutex<()>>,
}

/// `?write_concern=` on writes without a body (deletes, drops).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConcernQuery {
    /// `primary`, `majority` (default) or `all`.
    pub write_concern: Option<String>,
}

/// `?consistency=` on reads without a body.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// `linearizable` or `eventual` (default).
    pub consistency: Option<String>,
}

impl AppState {
    /// The database to use for this request.
    pub fn db(&self) -> Database {
        self.served.current()
    }

    /// Serves `db` from now on (after a reload); returns the one it replaces.
    pub fn replace_db(&self, db: Database) -> Database {
        self.served.replace(db)
    }

    /// The write concern a request asked for (default: majority), checked before
    /// anything is written.
    pub fn concern(&self, requested: Option<&str>) -> Result<WriteConcern, ApiError> {
        Ok(match requested {
            Some(text) => WriteConcern::parse(text)?,
            None => WriteConcern::default(),
        })
    }

    /// The one way a handler writes: through whoever orders this node's writes
    /// (see [`ReplicationMode::write`]), waiting for `concern`.
    pub async fn write(
        &self,
        op: crate::Op,
        precondition: crate::Precondition,
        concern: WriteConcern,
        request_id: Option<needle_consensus::RequestId>,
    ) -> Result<crate::Applied, ApiError> {
        self.write_with(op, precondition, concern, request_id, |e| e)
            .await
    }

    /// [`AppState::write`], with errors passed through `map` first (a
    /// single-record insert reports its record's error, not `vectors[0]: …`).
    pub async fn write_with(
        &self,
        op: crate::Op,
        precondition: crate::Precondition,
        concern: WriteConcern,
        request_id: Option<needle_consensus::RequestId>,
        map: fn(crate::replication::ReplicationError) -> crate::replication::ReplicationError,
    ) -> Result<crate::Applied, ApiError> {
        let write = crate::replication::WriteRequest {
            op,
            precondition,
            concern,
            request_id,
        };
        let written = self.mode.write(write).await;
        Ok(written.map_err(map)?)
    }

    /// Waits until a read of `collection` on this node has the consistency a request
    /// asked for (default: eventual).
    pub async fn read_barrier(
        &self,
        requested: Option<&str>,
        collection: &str,
    ) -> Result<(), ApiError> {
        let consistency = match requested {
            Some(text) => ReadConsistency::parse(text)?,
            None => ReadConsistency::default(),
        };
        Ok(self.mode.read_barrier(consistency, collection).await?)
    }
}

/// Server settings beyond the database.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub limits: HttpLimits,
    pub search_coalescing: bool,
    /// Exposes `/debug/faults` to drive this injector.
    pub faults: Option<Arc<FaultInjector>>,
    /// How the node takes writes; `None` serves it standalone.
    pub mode: Option<Arc<dyn ReplicationMode>>,
    pub keys: AccessKeys,
    /// Where snapshot files are written and read by name.
    pub snapshot_dir: PathBuf,
    pub reload_from: Option<PathBuf>,
    /// HTTPS: the certificate chain and private key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl HttpOptions {
    /// Defaults for a node on `data`: snapshots under `data/snapshots`, no keys.
    pub fn for_data(data: &std::path::Path) -> HttpOptions {
        HttpOptions {
            limits: HttpLimits::default(),
            search_coalescing: true,
            faults: None,
            mode: None,
            keys: AccessKeys::default(),
            snapshot_dir: data.join("snapshots"),
            reload_from: None,
            tls: None,
        }
    }
}

/// Serves the API on `listener`, and the Qdrant-compatible API on `qdrant` when
/// given, until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    served: ServedDatabase,
    listener: TcpListener,
    qdrant: Option<TcpListener>,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = served.current().metrics();
    let coalescer = if options.search_coalescing {
        let batch_sizes = metrics.search_batch_size.clone();
        let observe = move |collection: &str, size: usize| {
            batch_sizes
                .with_label_values(&[collection])
                .observe(size as f64);
        };
        Some(Arc::new(SearchCoalescer::start(
            Box::new(observe),
            Arc::clone(&metrics.health),
            crate::coalesce::DEFAULT_QUEUE,
        )?))
    } else {
        None
    };
    let tls = match &options.tls {
        Some((cert, key)) => Some(server::tls_acceptor(cert, key)?),
        None => None,
    };
    std::fs::create_dir_all(&options.snapshot_dir)?;
    let mode = options.mode.unwrap_or_else(|| {
        Arc::new(crate::replication::standalone::Standalone::new(
            served.clone(),
        ))
    });
    let state = AppState {
        served,
        metrics,
        coalescer,
        faults: options.faults,
        mode,
        keys: Arc::new(options.keys),
        gates: limits::Gates::new(&options.limits),
        limits: Arc::new(options.limits.clone()),
        snapshot_dir: Arc::from(options.snapshot_dir.as_path()),
        reload_from: options.reload_from.map(Arc::from),
        reload_lock: Arc::default(),
    };
    let Some(qdrant) = qdrant else {
        let app = routes::router(state);
        return server::serve(listener, app, tls, &options.limits, shutdown).await;
    };
    // One shutdown, two listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_early = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let when_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let native = server::serve(
        listener,
        routes::router(state.clone()),
        tls.clone(),
        &options.limits,
        when_stopped(stopped.clone()),
    );
    let compatible = server::serve(
        qdrant,
        qdrant::router(state),
        tls,
        &options.limits,
        when_stopped(stopped),
    );
    // Either listener ending (an error, or the shutdown) stops the other too: a
    // node never goes on half-served.
    tokio::pin!(native, compatible);
    tokio::select! {
        first = &mut native => {
            let _ = stop_early.send(true);
            first.and(compatible.await)
        }
        first = &mut compatible => {
            let _ = stop_early.send(true);
            first.and(native.await)
        }
    }
}
