//! Bugs planted on purpose, for the consistency suite's self-test
//! (`tests/e2e/consistency.rs`): a checker that cannot see these cannot be trusted to
//! see real ones.
//!
//! Each is a fail point (the `fail` crate): compiled to nothing unless the crate is
//! built with the `failpoints` feature, and even then off unless the process starts
//! with `FAILPOINTS=<name>=return` in its environment.

/// `FAILPOINTS=raft-ack-before-commit=return`: a `majority` or `all` write is
/// acknowledged as soon as the leader's own log has it, before a majority does, as if
/// it were a `primary` write. A leader cut off from the rest then acknowledges writes
/// the next leader discards.
pub(super) fn acknowledges_before_commit() -> bool {
    fail::fail_point!("raft-ack-before-commit", |_| true);
    false
}

/// `FAILPOINTS=raft-local-linearizable-reads=return`: a `linearizable` read is served
/// from this member's state without asking the leader for a read index, so a lagging
/// follower or a deposed leader answers with stale data.
pub(super) fn serves_linearizable_reads_locally() -> bool {
    fail::fail_point!("raft-local-linearizable-reads", |_| true);
    false
}
