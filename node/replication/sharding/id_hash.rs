//! The hash that routes a point to its shard.
//!
//! `id_hash(id)` is XXH3-64 (the XXH3 specification, seed 0, no secret) of the
//! id's UTF-8 bytes, read as an unsigned 64-bit integer. A point belongs to the
//! shard whose inclusive range `[lo, hi]` holds it. This is part of needle's data
//! format: the tests pin its values, because a different hash would send every
//! existing point of every sharded collection to another shard. XXH3's output is
//! fixed by its specification (and stable since xxHash 0.8), is the same on every
//! platform and endianness, and spreads short, similar ids (`doc-1`, `doc-2`, …)
//! evenly, which std's `DefaultHasher` promises none of.

/// The routing hash of a point id.
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_hash_never_changes() {
        // The empty input's value is the XXH3 specification's own test vector.
        assert_eq!(id_hash(""), 0x2d06_8005_38d3_94c2);
        // Pinned: if any of these change, existing sharded data is misrouted.
        assert_eq!(id_hash("a"), PINNED_A);
        assert_eq!(id_hash("doc-1"), PINNED_DOC_1);
        assert_eq!(id_hash("点"), PINNED_CJK);
    }

    const PINNED_A: u64 = 0xe6c6_32b6_1e96_4e1f;
    const PINNED_DOC_1: u64 = 0xc11d_9f2d_eee2_f041;
    const PINNED_CJK: u64 = 0xb04d_7bc7_a560_d213;
}
