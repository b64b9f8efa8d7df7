//! Primary–replica replication, as far as it is built: the write-concern tracker a
//! primary consults before acknowledging a write ([`concern`]) and the replica's
//! view of the stream it follows ([`follower`]), both sans-IO (plain structs driven
//! by method calls, tested without a network); and log shipping over
//! `needle-transport` ([`ship`]): a primary's [`ship::LogServer`] answers pulls from
//! its operation log, a replica's [`ship::pull_once`] applies each batch durably.
//!
//! Not built yet: the roles in `needle serve`, write concerns on HTTP writes, lag
//! and status routes, promotion/demotion with epochs, snapshots and `/reload`.

pub mod concern;
pub mod epoch;
pub mod follower;
mod install;
pub mod role;
pub mod ship;

pub use concern::{AckTracker, Ticket, Wait, WriteConcern};
pub use follower::{Follower, FollowerAction, Lag};
pub use role::{ClusterConfig, Replication, Role};
