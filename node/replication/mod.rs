//! Replication's decision logic, kept free of sockets and timers (sans-IO, as the
//! design asks): the write-concern tracker a primary consults before acknowledging
//! a write ([`concern`]), and the replica's view of the stream it follows
//! ([`follower`]). Each is a plain struct driven by method calls and returning what
//! to do next, so every rule is tested without a network.
//!
//! What is not here yet: the async roles that move operation-log batches between
//! processes over `needle-transport`, the CLI/HTTP surface and snapshots. Those are
//! the rest of the primary–replica work.

pub mod concern;
pub mod follower;

pub use concern::{AckTracker, Ticket, Wait, WriteConcern};
pub use follower::{Follower, FollowerAction, Lag};
