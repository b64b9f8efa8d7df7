//! End-to-end tests: the real `needle` binary on a free port with a temporary data
//! directory, driven over HTTP and the command line, killed with SIGKILL and restarted;
//! plus the library API used directly, as the seed docs use it.

mod api;
mod backends;
mod cli;
mod cluster;
mod consistency;
mod convergence;
mod crash;
mod deploy_files;
mod failover;
mod garbage;
mod hardening_auth;
mod hardening_certs;
mod hardening_recovery;
mod hardening_replication;
mod hardening_requests;
mod hardening_server;
mod library;
mod openapi;
mod raft;
mod raft_api;
mod raft_cluster;
mod raft_membership;
mod raft_replay;
mod raft_restarts;
mod replication;
mod replication_api;
mod search;
mod snapshot;
mod support;
mod verify;
