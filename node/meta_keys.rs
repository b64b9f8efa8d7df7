//! Every key of the store's `meta` column family, in one place, so no two owners
//! can pick the same one. The core writes `applied_seq` and `order_marker`; the
//! others belong to whoever orders writes (a replication mode), which stores them
//! through [`crate::Database::meta_json`] and friends. The core gives them no
//! meaning.
//!
//! The strings are on disk: renaming one is a data-format change.

/// The last operation applied (u64 big-endian; written by the store itself).
pub(crate) const APPLIED_SEQ: &str = "applied_seq";

/// Where the log that ordered the data stood, written in the same batch as the data
/// each ordered entry produced, and carried in snapshot files. Opaque to the core
/// (Raft keeps its applied log id and membership here; the name predates the seam).
pub const ORDER_MARKER: &str = "raft_applied";

/// Primary–replica: the epochs this node's log went through.
pub const EPOCHS: &str = "epochs";

/// Primary–replica: the newer primary that fenced this node, or that a promotion
/// was promised.
pub const FENCED_BY: &str = "fenced_by";

/// Primary–replica: every node this one has known in the cluster.
pub const MEMBERS: &str = "replication_members";

/// Prefix of request records: what a write with a request id did, so a retry of it
/// is answered instead of applied again (Raft's idempotency keys).
pub const REQUEST_RECORD_PREFIX: &str = "raft_request/";

/// A shard replica's database: which shard it is (group, collection, hash range),
/// so that it is never opened as another.
pub const SHARD_SCOPE: &str = "shard_scope";

/// Prefix of the sharded collections the cluster-wide group committed: followed
/// by the collection's name; the value is its settings and shard map.
pub const SHARD_MAP_PREFIX: &str = "shard_map/";
