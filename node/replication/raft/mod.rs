//! Raft replication (`needle serve --raft`): every write is ordered by the Raft
//! leader and applied by every member's state machine — the needle database, through
//! the same writer as a standalone write. Built on `needle-consensus` (openraft,
//! the RocksDB log store, Raft RPC over the QUIC transport).
//!
//! - [`command`]: a write as a log entry, and its outcome;
//! - [`state_machine`]: the database as openraft's state machine, snapshots
//!   included ([`state_snapshot`]), for the cluster group or one shard group
//!   ([`state_scope`]);
//! - [`app_rpc`]: the node's own requests between members (bootstrap, forwarded
//!   writes, read index);
//! - [`node`]: [`RaftNode`], start-up and bootstrap;
//! - [`write`]: the write path; [`read_index`]: linearizable reads;
//! - [`sharded_collections`]: sharded collections' settings and shard maps,
//!   committed in the cluster-wide group;
//! - [`status`]: cluster status, metrics and step-down;
//! - [`client`]: [`RaftClient`], the native client, with read preferences.
//! - `planted_bugs`: fail points that break the guarantees on purpose, for the
//!   consistency suite's self-test (only with the `failpoints` feature).

mod app_rpc;
mod applied_marker;
mod batch_sizes;
mod client;
mod cluster_status;
mod command;
mod connections;
mod election_timing;
mod leader_changes;
mod membership;
mod mode;
mod node;
mod planted_bugs;
mod read_index;
mod requests;
#[cfg(test)]
mod shard_group_tests;
mod shard_groups;
mod shard_replicas;
#[cfg(test)]
mod shard_startup_tests;
mod sharded_collections;
mod start;
mod state_machine;
mod state_scope;
mod state_snapshot;
mod status;
mod write;

pub use crate::replication::consistency::ReadConsistency;
pub use client::{RaftClient, ReadPreference, SearchResult};
pub use cluster_status::{ClusterStatus, ClusterView, GroupStatus, PeerStatus};
pub use node::{RaftConfig, RaftNode};
/// The state machine a member runs for each of its Raft groups: the node runs the
/// cluster-wide group's ([`StateScope::Cluster`]); a shard group's
/// ([`StateScope::Shard`], over a database of the shard's own) is what sharded
/// collections are being built on: a member runs one for each replica the shard
/// maps place on it (`shard_groups`), and nothing routes to them yet.
pub use state_machine::{StateMachine, StateScope};
