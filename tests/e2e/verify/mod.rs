//! The consistency verification harness: real clusters under a seeded nemesis,
//! clients recording every operation into a history, and checkers over it.
//!
//! - [`history`]: operations and faults, recorded and written as JSON lines;
//! - [`workload`]: the client threads (HTTP and the native RaftClient);
//! - [`nemesis`]: Raft faults (kills, pauses, partitions, slow and lossy links,
//!   step-down, membership changes);
//! - [`failover`]: the primary–replica nemesis (pauses, manual failovers);
//! - [`linearizability`]: the Wing–Gong / Porcupine register checker, with shrinking
//!   to a smallest failing sub-history;
//! - [`checks`]: durability, searches that must see a write, convergence;
//! - [`run`]: one run end to end, and its report.

pub mod checks;
pub mod failover;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod run;
pub mod workload;
