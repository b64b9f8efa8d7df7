//! Faults injected on purpose, for the tests of the node's recovery paths: a worker
//! thread that panics, an in-memory apply that fails after its write is durable.
//!
//! Each is a fail point (the `fail` crate): compiled to nothing unless the crate is
//! built with the `failpoints` feature, and even then off unless the process starts
//! with `FAILPOINTS` naming it, e.g. `FAILPOINTS=writer-panic=1*panic` (panic once).

/// `writer-panic`: the writer thread panics while it commits a group of writes.
pub(crate) fn writer_commit() {
    fail::fail_point!("writer-panic");
}

/// `search-engine-panic`: the coalescer's thread panics in an engine call.
pub(crate) fn search_engine_call() {
    fail::fail_point!("search-engine-panic");
}

/// `apply-in-memory-fails`: applying a write to the in-memory index fails after the
/// write was made durable (as a GPU error or a full shard would).
pub(crate) fn apply_in_memory_fails() -> bool {
    fail::fail_point!("apply-in-memory-fails", |_| true);
    false
}

/// `device-full`: the search backend's device reports no room for more rows, as a
/// full GPU would (the CPU backend never does).
pub(crate) fn device_full() -> bool {
    fail::fail_point!("device-full", |_| true);
    false
}

/// `rebuild-fails`: rebuilding a collection's index from the store fails too (after
/// an in-memory apply failed), so the node must stop taking writes.
pub(crate) fn rebuild_fails() -> bool {
    fail::fail_point!("rebuild-fails", |_| true);
    false
}

/// `patch-read-fails`: reading a record to patch fails, as a store error would,
/// in the collection the fail point's argument names (`return(NAME)`), so a test
/// can use it while others patch other collections.
// Without the `failpoints` feature the fail point, the only use of `collection`, is
// compiled out.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn patch_read_fails(collection: &str) -> bool {
    fail::fail_point!("patch-read-fails", |arg: Option<String>| arg.as_deref()
        == Some(collection));
    false
}
