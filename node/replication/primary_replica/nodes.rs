//! The Rust API of primary–replica replication: [`PrimaryNode`] and [`ReplicaNode`]
//! wrap a [`Database`] with the same machinery `needle serve --role ...` runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), needle::replication::ReplicationError> {
//! use needle::replication::{PrimaryNode, ReplicaNode, ReplicationConfig, TlsConfig, WriteConcern};
//! use needle::{Database, VectorRecord};
//! let tls = TlsConfig {
//!     cert_path: "node-1.pem".into(),
//!     key_path: "node-1-key.pem".into(),
//!     ca_path: Some("ca.pem".into()),
//! };
//! let primary = PrimaryNode::with_config(
//!     Database::open("primary.needle")?,
//!     "10.0.0.1:5000",
//!     ReplicationConfig { sync_interval_ms: 100, batch_size: 1000, compression: true, tls: Some(tls), ..Default::default() },
//! )?;
//! primary.start().await?;
//! primary
//!     .insert_with_concern("docs", VectorRecord::new("doc1", vec![0.1, 0.2]), WriteConcern::Majority)
//!     .await?;
//!
//! let mut replica = ReplicaNode::new("replica.needle")?;
//! replica.connect("primary-host:5000").await?;
//! replica.start_sync().await?;
//! let lag = replica.replication_lag()?; // lag.operations, lag.time_ms
//! replica.promote_to_primary().await?;
//! primary.demote_to_replica("replica-host:5000").await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::op::{Op, Precondition};
use crate::replication::consistency::WriteConcern;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::mode::{ReplicationMode, WriteRequest};
use crate::replication::primary_replica::failover::{Demoted, Promoted};
use crate::replication::primary_replica::replica::stream::Lag;
use crate::replication::primary_replica::role::Role;
use crate::replication::primary_replica::running::{ClusterConfig, Replication};
use crate::replication::TlsConfig;
use crate::served::ServedDatabase;
use crate::Error;
use crate::{Database, VectorRecord};

/// How a node replicates; the same settings as `needle serve`'s flags.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// How long a replica's pull waits on the primary for new entries.
    pub sync_interval_ms: u64,
    /// Log entries per pulled batch.
    pub batch_size: u32,
    /// zstd-compress batches where it pays.
    pub compression: bool,
    /// `None`: unauthenticated transport, for development only.
    pub tls: Option<TlsConfig>,
    /// How long a write waits for its write concern.
    pub write_timeout_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            sync_interval_ms: 500,
            batch_size: 1000,
            compression: true,
            tls: None,
            write_timeout_ms: 5000,
        }
    }
}

impl ReplicationConfig {
    fn cluster(&self, role: Role, cluster_addr: SocketAddr) -> Result<ClusterConfig> {
        let security = TlsConfig::security(self.tls.as_ref())?;
        Ok(ClusterConfig {
            role,
            cluster_addr,
            security,
            faults: None,
            batch_size: self.batch_size.clamp(1, 100_000),
            sync_interval: Duration::from_millis(self.sync_interval_ms.max(1)),
            write_timeout: Duration::from_millis(self.write_timeout_ms.max(1)),
            compression: self.compression,
        })
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::InvalidRequest(format!("{addr:?} is not a reachable HOST:PORT")).into()
        })
}

/// What both wrappers hold: the database, and the replication once started.
struct Node {
    served: ServedDatabase,
    listen: String,
    config: ReplicationConfig,
    running: OnceLock<Arc<Replication>>,
}

impl Node {
    fn new(db: Database, listen: &str, config: ReplicationConfig) -> Node {
        Node {
            served: ServedDatabase::new(db),
            listen: listen.to_string(),
            config,
            running: OnceLock::new(),
        }
    }

    /// Binds the transport and starts `role`, once. Inside a tokio runtime.
    async fn start(&self, role: Role) -> Result<()> {
        if self.running.get().is_some() {
            return Ok(());
        }
        let addr = resolve(&self.listen).await?;
        let replication = Replication::start(&self.served, self.config.cluster(role, addr)?)?;
        let _ = self.running.set(replication);
        Ok(())
    }

    fn replication(&self) -> Result<&Arc<Replication>> {
        self.running.get().ok_or(ReplicationError::NotStarted {
            what: "replication",
        })
    }

    fn cluster_addr(&self) -> Option<SocketAddr> {
        self.running.get().map(|r| r.cluster_addr)
    }

    fn role(&self) -> Option<Role> {
        self.running.get().map(|r| r.role())
    }
}

/// A database serving its operation log to replicas.
pub struct PrimaryNode {
    node: Node,
}

impl PrimaryNode {
    /// A primary with default settings (no TLS: development only).
    pub fn new(db: Database, listen: &str) -> Result<PrimaryNode> {
        Self::with_config(db, listen, ReplicationConfig::default())
    }

    pub fn with_config(
        db: Database,
        listen: &str,
        config: ReplicationConfig,
    ) -> Result<PrimaryNode> {
        Ok(PrimaryNode {
            node: Node::new(db, listen, config),
        })
    }

    /// Binds the transport and starts serving the log. Inside a tokio runtime.
    pub async fn start(&self) -> Result<()> {
        self.node.start(Role::Primary).await
    }

    /// Where the transport listens (its real port when started on port 0).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.node.cluster_addr()
    }

    /// The database as it is now (demotion may replace it with the new primary's).
    pub fn database(&self) -> Database {
        self.node.served.current()
    }

    /// Inserts `record` into `collection` and waits until `concern` is met; the
    /// operation's sequence number. WRITE_CONCERN_TIMEOUT when it is not met in
    /// time (the write is applied here and may still replicate).
    pub async fn insert_with_concern(
        &self,
        collection: &str,
        record: VectorRecord,
        concern: WriteConcern,
    ) -> Result<u64> {
        let write = WriteRequest {
            op: Op::Upsert {
                collection: collection.to_string(),
                records: vec![record],
            },
            precondition: Precondition::IdsAbsent,
            concern,
            request_id: None,
        };
        // The same write path as `needle serve --role primary` (the seam's).
        let applied = ReplicationMode::write(&**self.node.replication()?, write)
            .await
            .map_err(ReplicationError::single_item)?;
        Ok(applied.seq)
    }

    /// Makes this node a replica of `new_primary` (its cluster address), discarding
    /// what that primary never received.
    pub async fn demote_to_replica(&self, new_primary: &str) -> Result<Demoted> {
        let primary = resolve(new_primary).await?;
        self.node.replication()?.demote(primary).await
    }

    pub fn role(&self) -> Option<Role> {
        self.node.role()
    }
}

/// A database following a primary's log.
pub struct ReplicaNode {
    node: Node,
    primary: Option<SocketAddr>,
}

impl ReplicaNode {
    /// Opens (or creates) the database at `path`; default settings (no TLS:
    /// development only); the transport it serves on once promoted listens on a free
    /// loopback port.
    pub fn new(path: impl Into<PathBuf>) -> Result<ReplicaNode> {
        Self::with_config(
            Database::open(path.into())?,
            "127.0.0.1:0",
            ReplicationConfig::default(),
        )
    }

    pub fn with_config(
        db: Database,
        listen: &str,
        config: ReplicationConfig,
    ) -> Result<ReplicaNode> {
        Ok(ReplicaNode {
            node: Node::new(db, listen, config),
            primary: None,
        })
    }

    /// Names the primary to follow (its cluster address).
    pub async fn connect(&mut self, primary: &str) -> Result<()> {
        self.primary = Some(resolve(primary).await?);
        Ok(())
    }

    /// Starts following the primary named by [`ReplicaNode::connect`].
    pub async fn start_sync(&self) -> Result<()> {
        let primary = self.primary.ok_or_else(|| {
            Error::InvalidRequest("connect to a primary before start_sync".into())
        })?;
        self.node.start(Role::Replica { primary }).await
    }

    /// How far behind the primary this replica is: operations, and the age in ms of
    /// the oldest operation received but not applied.
    pub fn replication_lag(&self) -> Result<Lag> {
        Ok(self.node.replication()?.replica.lock().lag)
    }

    /// Makes this replica the primary of a new epoch.
    pub async fn promote_to_primary(&self) -> Result<Promoted> {
        self.node.replication()?.promote(&[], false).await
    }

    /// [`ReplicaNode::promote_to_primary`], after taking from `peers` (the other
    /// replicas' cluster addresses) what they received and this one did not.
    pub async fn promote_to_primary_with_peers(&self, peers: &[&str]) -> Result<Promoted> {
        let mut resolved = Vec::with_capacity(peers.len());
        for peer in peers {
            resolved.push(resolve(peer).await?);
        }
        self.node.replication()?.promote(&resolved, false).await
    }

    /// Where the transport listens (its real port when started on port 0).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.node.cluster_addr()
    }

    /// The database as it is now (a snapshot install replaces it).
    pub fn database(&self) -> Database {
        self.node.served.current()
    }

    pub fn role(&self) -> Option<Role> {
        self.node.role()
    }
}
