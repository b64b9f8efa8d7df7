//! Starting a [`RaftNode`]: the log, the transport, Raft itself, the metrics and,
//! on a fresh cluster, the bootstrap. Apart from `node.rs` so that the node's core
//! does not depend on the parts it starts (they depend on it).

use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::{self, Raft, SnapshotPolicy};
use needle_consensus::{LogStore, Network, RaftService, SnapshotInbox};
use needle_transport::Handler;

use super::connections::Connections;
use super::election_timing;
use super::node::{AppHandler, Opened, RaftNode, Running};
use super::state_machine::{StateMachine, StateScope};
use crate::replication::error::{ReplicationError, Result};
use crate::replication::TlsConfig;
use crate::Error;

impl RaftNode {
    /// Opens the Raft log (`DIR/raft`), binds the transport, starts Raft and, on a
    /// fresh cluster, the bootstrap. Must run inside a tokio runtime.
    pub async fn start(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.running.get().is_some() {
            return Ok(());
        }
        let config = &inner.config;
        let raft_dir = inner.served.current().path().join("raft");
        let consensus =
            |e: needle_consensus::ConsensusError| ReplicationError::raft("opening the raft log", e);
        let log_store = LogStore::open(&raft_dir.join("log")).map_err(consensus)?;
        let fresh = log_store.is_fresh().map_err(consensus)?;
        let _ = inner.opened.set(Opened {
            log_store: log_store.clone(),
            fresh,
        });
        let state_machine = StateMachine::open(
            inner.served.clone(),
            &raft_dir.join("snapshots"),
            StateScope::Cluster,
        )
        .await?;
        let maps_changed = state_machine.maps_changed();
        let inbox = SnapshotInbox::open(&raft_dir.join("inbox")).map_err(consensus)?;
        let app: Arc<dyn Handler> = Arc::new(AppHandler {
            inner: Arc::downgrade(inner),
        });
        let service = RaftService::<StateMachine>::new(app, inbox);

        let transport = crate::replication::transport::start(
            &inner.served.current(),
            config.cluster_addr,
            TlsConfig::security(config.tls.as_ref())?,
            config.faults.clone(),
            service.clone(),
        )?;

        let (election_timeout_min, election_timeout_max) = election_timing::openraft_timeouts(
            &config.election_timeout_ms,
            config.heartbeat_interval_ms,
        );
        let raft_config = openraft::Config {
            cluster_name: "needle".into(),
            election_timeout_min,
            election_timeout_max,
            heartbeat_interval: config.heartbeat_interval_ms,
            // A member that only lost touch with a live leader (a starved process, a
            // restart, a one-sided partition) asks first whether it could win, and
            // does not raise the term, so its campaign cannot depose that leader.
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            // Entries kept behind a snapshot, so a briefly lagging member still
            // catches up from the log rather than a whole snapshot.
            max_in_snapshot_log_to_keep: config.snapshot_every.min(1000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidRequest(format!("raft settings: {e}")))?;
        let raft_config = Arc::new(raft_config);
        let network = Network::new(transport.clone());
        let raft = Raft::new(
            config.node_id,
            raft_config.clone(),
            network.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ReplicationError::raft("starting raft", e))?;
        service.attach(raft.clone(), transport.clone());
        // One clock beats every shard group this member leads, so that its
        // heartbeats to one follower travel together.
        service
            .start_heartbeat_clock(Duration::from_millis(config.heartbeat_interval_ms.max(1)))
            .map_err(|e| ReplicationError::raft("starting the heartbeat clock", e))?;
        let _ = inner.running.set(Running {
            connections: Connections::new(transport.clone(), Duration::from_secs(1)),
            transport,
            raft,
            service,
            network,
            raft_config,
        });
        super::status::spawn_metrics(self.clone());
        self.supervise_shard_groups(maps_changed);
        if fresh {
            tokio::spawn(self.clone().bootstrap());
        }
        tracing::info!(node_id = config.node_id, cluster_addr = %self.cluster_addr()?, fresh, "raft node started");
        Ok(())
    }
}
