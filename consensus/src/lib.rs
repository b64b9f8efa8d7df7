//! needle's Raft glue, on `openraft`.
//!
//! - [`types`]: the type configuration; commands are opaque bytes, so this crate
//!   does not know collections (the node encodes its operations into them).
//! - [`log_store`]: the Raft log and vote in a RocksDB database of their own, its
//!   appends fsynced in groups by one thread (`wal_syncer`).
//! - [`network`] and [`service`]: Raft RPCs over needle's QUIC transport (mutual
//!   TLS, fault injection), with replication pipelined on one ordered stream per
//!   follower (`append_pipeline`) and snapshots moved by the transport's bulk
//!   region transfer ([`snapshot_file`]).
//!   Heartbeats of many groups to one member travel together
//!   (`heartbeat_batch`).
//! - [`rpc`]: their wire form.
//!
//! The state machine is the node's database and lives in the node.
//!
//! ## Why openraft 0.10.0-alpha.37 and not 0.9.25
//! 0.9.25 is the stable line and carries the fixes for the committed-entry-loss bugs,
//! but 0.10 has them as well, and three things needle needs exist only there:
//! - leader transfer (`trigger().transfer_leader`), which `step_down` is built on;
//!   0.9 can only start an election elsewhere and hope;
//! - read policies (`ReadIndex`, `LeaseRead`) and a read linearizer a follower can
//!   wait on, for linearizable reads served by followers;
//! - a fresh election timeout drawn for every campaign: 0.9 draws one per process,
//!   so two surviving voters can split their votes after every leader loss and
//!   failover time becomes unbounded.
//!
//! It is pinned exactly (`=0.10.0-alpha.37`) because alpha releases change APIs.

mod append_bounds;
mod append_pipeline;
pub mod error;
mod heartbeat_batch;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod service;
mod shared_connections;
pub mod snapshot_file;
pub mod types;
mod wal_syncer;

pub use error::ConsensusError;
pub use heartbeat_batch::{HeartbeatBatch, HeartbeatStats};
pub use log_store::LogStore;
pub use network::Network;
pub use openraft;
pub use service::RaftService;
pub use snapshot_file::{SnapshotFile, SnapshotInbox};
pub use types::{ClusterNode, Command, CommandOutcome, GroupId, NodeId, RequestId, TypeConfig};
