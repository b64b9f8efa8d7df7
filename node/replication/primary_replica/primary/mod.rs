//! The primary's side: serving the operation log (and snapshots) to replicas, and
//! deciding when a write has as many copies as its write concern asks.

pub mod concern_tracker;
pub mod log_server;
