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
use crate::replication::raft::{RaftNode, ReadConsistency};
use crate::replication::{Replication, WriteConcern};
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
    /// The node's replication role; `None` when standalone.
    pub replication: Option<Arc<Replication>>,
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
    /// The node's Raft membership, when it runs with `--raft`.
    pub raft: Option<RaftNode>,
}

/// `?write_concern=` on writes without a body (deletes, drops).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConcernQuery {
    pub write_concern: Option<String>,
}

/// `?consistency=` on reads without a body.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConsistencyQuery {
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

    /// Waits until the write at `seq`, applied in `epoch`, meets `concern` (only a
    /// primary with replicas ever waits); WRITE_CONCERN_TIMEOUT when it does not in
    /// time, REPLICATION_ERROR when this node stopped being that epoch's primary.
    pub async fn await_concern(
        &self,
        seq: u64,
        concern: WriteConcern,
        epoch: Option<u64>,
    ) -> Result<(), ApiError> {
        match (&self.replication, epoch) {
            (Some(replication), Some(epoch)) => {
                Ok(replication.await_concern(seq, concern, epoch).await?)
            }
            _ => Ok(()),
        }
    }

    /// The one way a handler writes: through Raft on a Raft member (forwarded to the
    /// leader when this node is not it), else on this node, which must be the
    /// primary (or standalone), then waiting for `concern`.
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

    /// [`AppState::write`], with the database's errors passed through `map` first
    /// (a single-record insert reports its record's error, not `vectors[0]: …`).
    pub async fn write_with(
        &self,
        op: crate::Op,
        precondition: crate::Precondition,
        concern: WriteConcern,
        request_id: Option<needle_consensus::RequestId>,
        map: fn(crate::replication::ReplicationError) -> crate::replication::ReplicationError,
    ) -> Result<crate::Applied, ApiError> {
        if let Some(raft) = &self.raft {
            let written = raft.write(op, precondition, concern, request_id).await;
            return Ok(written.map_err(map)?);
        }
        if request_id.is_some() {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST",
                "Idempotency-Key is honoured by Raft members only (serve --raft)",
            ));
        }
        self.ensure_primary()?;
        // The epoch this node writes in: the concern is judged against it.
        let epoch = match &self.replication {
            Some(replication) => Some(replication.epoch()?),
            None => None,
        };
        let applied = self
            .db()
            .submit_async(op, precondition)
            .await
            .map_err(|e| map(e.into()))?;
        self.await_concern(applied.seq, concern, epoch).await?;
        Ok(applied)
    }

    /// Waits until a read of `collection` on this node has the consistency a request
    /// asked for (default: eventual). A replica of a primary cannot promise
    /// linearizable reads.
    pub async fn read_barrier(
        &self,
        requested: Option<&str>,
        collection: &str,
    ) -> Result<(), ApiError> {
        let consistency = match requested {
            Some(text) => ReadConsistency::parse(text)?,
            None => ReadConsistency::default(),
        };
        if let Some(raft) = &self.raft {
            return Ok(raft.read_barrier(consistency, collection).await?);
        }
        if consistency == ReadConsistency::Linearizable {
            self.ensure_primary()?;
            // A write a majority acknowledged may still be on its way to this node's
            // memory (it became primary since, or replicas acknowledge at durability).
            self.db().await_visible(collection).await;
        }
        Ok(())
    }

    /// Writes go to the primary: a replica answers 421 NOT_PRIMARY.
    pub fn ensure_primary(&self) -> Result<(), ApiError> {
        match self.replication.as_ref().and_then(|r| r.primary()) {
            Some(primary) => Err(ApiError::not_primary(primary)),
            None => Ok(()),
        }
    }
}

/// Server settings beyond the database.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub limits: HttpLimits,
    pub search_coalescing: bool,
    /// Exposes `/debug/faults` to drive this injector.
    pub faults: Option<Arc<FaultInjector>>,
    pub replication: Option<Arc<Replication>>,
    pub keys: AccessKeys,
    /// Where snapshot files are written and read by name.
    pub snapshot_dir: PathBuf,
    pub reload_from: Option<PathBuf>,
    pub raft: Option<RaftNode>,
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
            replication: None,
            keys: AccessKeys::default(),
            snapshot_dir: data.join("snapshots"),
            reload_from: None,
            raft: None,
            tls: None,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight
/// requests.
pub async fn serve(
    served: ServedDatabase,
    listener: TcpListener,
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
    let state = AppState {
        served,
        metrics,
        coalescer,
        faults: options.faults,
        replication: options.replication,
        keys: Arc::new(options.keys),
        gates: limits::Gates::new(&options.limits),
        limits: Arc::new(options.limits.clone()),
        snapshot_dir: Arc::from(options.snapshot_dir.as_path()),
        reload_from: options.reload_from.map(Arc::from),
        reload_lock: Arc::default(),
        raft: options.raft,
    };
    let app = routes::router(state);
    server::serve(listener, app, tls, &options.limits, shutdown).await
}
