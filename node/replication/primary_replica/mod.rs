//! Primary–replica replication (`needle serve --role primary|replica`): one primary
//! orders every write in its operation log; replicas pull that log and apply it at
//! the primary's sequence numbers; a promotion starts a new epoch.
//!
//! - [`primary`]: the side that serves the log ([`primary::log_server`]) and counts
//!   acknowledgements against write concerns ([`primary::concern_tracker`]);
//! - [`replica`]: the side that follows it: the follow loop, the pull-then-apply, the
//!   stream's sans-IO state, and snapshot installs when the log no longer reaches back;
//! - [`wire`]: the messages between the two;
//! - [`epoch`], [`members`], [`failover`]: who was primary when, who is in the
//!   cluster, and promotion, demotion and fencing;
//! - [`role`]: what the node is (primary, replica, fenced) and the cell it is
//!   shared through; [`running`]: [`Replication`], the role running on a node, which
//!   is this mode's implementation of the seam ([`crate::replication::ReplicationMode`],
//!   in `mode.rs`); [`status`]: its part of the node status;
//! - `nodes`: [`PrimaryNode`] and [`ReplicaNode`], the Rust API.

pub mod epoch;
mod failover;
pub mod members;
mod mode;
mod nodes;
pub mod primary;
pub mod replica;
pub mod role;
pub mod running;
pub mod status;
pub mod wire;

pub use failover::{Demoted, Promoted};
pub use nodes::{PrimaryNode, ReplicaNode, ReplicationConfig};
pub use role::Role;
pub use running::{ClusterConfig, Replication};
