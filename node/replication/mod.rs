//! Primary–replica replication.
//!
//! Sans-IO parts, plain structs tested without a network:
//! - [`concern`]: the write-concern tracker a primary consults before acknowledging
//!   a write;
//! - [`follower`]: a replica's view of the stream it follows;
//! - [`epoch`]: epoch histories, which tell a demoted node what to discard.
//!
//! Log shipping over `needle-transport`:
//! - [`wire`]: the messages;
//! - [`ship`]: the primary's [`ship::LogServer`], which answers pulls from its
//!   operation log and offers snapshots;
//! - [`pull`]: the replica's fetch-then-apply.
//!
//! [`PrimaryNode`] and [`ReplicaNode`] are the Rust API; [`role`] runs it all in a node: the transport, the follow loop, promotion,
//! demotion and fencing. A replica behind the primary's retained log installs a
//! snapshot (`install`).

pub mod concern;
pub mod epoch;
pub mod error;
mod failover;
mod follow;
pub mod follower;
mod install;
mod load_balancer;
pub mod members;
mod nodes;
pub mod pull;
pub mod raft;
pub mod role;
pub mod ship;
pub mod wire;

pub use concern::{AckTracker, Ticket, Wait, WriteConcern};
pub use error::ReplicationError;
pub use failover::{Demoted, Promoted};
pub use follower::{Follower, FollowerAction, Lag};
pub use load_balancer::{LoadBalancer, LoadBalancerOptions};
pub use nodes::{PrimaryNode, ReplicaNode, ReplicationConfig, TlsConfig};
pub use role::{ClusterConfig, Replication, Role};
