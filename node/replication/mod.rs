//! How a node takes writes and serves reads: the seam between the core (which knows
//! nothing of replication) and the three ways a node can run.
//!
//! - [`ReplicationMode`] (`mode.rs`): the one interface — submit a write with a
//!   write concern, wait at a read barrier for a consistency level, report status.
//!   HTTP holds one `Arc<dyn ReplicationMode>`.
//! - Its implementations: [`standalone::Standalone`], [`primary_replica`] (one
//!   primary orders writes, replicas pull its log) and [`raft`] (a Raft leader orders
//!   them; every member applies the committed log).
//! - What they share: [`consistency`] (write concerns, read consistency), [`error`]
//!   (typed errors on top of the core's), [`transport`] (TLS settings and the one
//!   transport start-up), [`status`] (one status shape), [`retry`] (retrying until a
//!   deadline).
//!
//! A node that orders a write itself (standalone, a primary) hands it to the core's
//! writer (`Database::submit`); an entry ordered elsewhere (a primary's log on a
//! replica, a committed Raft entry) comes in through the core's one door for those,
//! `Database::apply_ordered`. A fourth mode (sharding: many Raft groups) is another
//! implementation of [`ReplicationMode`]; the seam itself (`mode.rs`, `status.rs`)
//! names none of them.

pub mod consistency;
pub mod error;
mod load_balancer;
mod mode;
pub mod primary_replica;
pub mod raft;
mod retry;
pub mod sharding;
pub mod standalone;
pub mod status;
pub mod transport;

pub use consistency::{ReadConsistency, WriteConcern};
pub use error::ReplicationError;
pub use load_balancer::{LoadBalancer, LoadBalancerOptions};
pub use mode::{mode_as, ModeName, ReadBarrier, ReplicationMode, WriteRequest};
pub use primary_replica::primary::concern_tracker::{AckTracker, Ticket, Wait};
pub use primary_replica::replica::stream::{Follower, FollowerAction, Lag};
pub use primary_replica::{
    ClusterConfig, Demoted, PrimaryNode, Promoted, ReplicaNode, Replication, ReplicationConfig,
    Role,
};
pub use transport::TlsConfig;
