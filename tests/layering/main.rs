//! The layers the README's "Architecture" section draws, checked over the source
//! (the compiler checks them between crates; inside the root package this does):
//!
//! - the core (storage, writer, catalog, search, filters, snapshots: every file of
//!   `node/` outside `replication/`, `http/`, `cli/` and `config/`) names nothing of
//!   replication, HTTP, the CLI or its settings, nor the crates only they use;
//! - no file of the core, of the replication code (the seam and its modes), or of
//!   either mode reaches itself again through the files it imports.
//!
//! It reads `use` paths and `crate::`/`super::`/`self::` paths in code (comments,
//! strings and `#[cfg(test)] mod` blocks left out), follows `pub use` re-exports to
//! the file that defines a name, and fails with the offending files named. What it
//! cannot see: a method called on a type defined elsewhere needs no path, so the
//! files of one type's `impl` blocks (say `RaftNode`'s) depend on each other without
//! an import; those are one concept split for size, not a layer.
//!
//! Why a check and not a `needle-core` crate, which the compiler would enforce: the
//! core and the modes share one crate's `pub(crate)` internals today (the writer's
//! ordered-apply door, the store's `meta` access), and a crate boundary would make
//! them public API. This check holds the same line at test time; moving the core
//! into its own crate is the next step if that API is wanted.

mod imports;

use imports::SourceTree;

fn tree() -> SourceTree {
    SourceTree::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node"))
}

/// Top-level modules of the root package that are not the core.
const OUTSIDE_CORE: &[&str] = &["replication", "http", "cli", "config"];

/// Crates only the layers above the core use: the CLI, HTTP, the transport and
/// consensus.
const NOT_FOR_THE_CORE: &[&str] = &[
    "clap",
    "axum",
    "hyper",
    "hyper_util",
    "reqwest",
    "tokio_rustls",
    "needle_transport",
    "needle_consensus",
];

fn in_core(module: &[String]) -> bool {
    !module.is_empty() && !OUTSIDE_CORE.contains(&module[0].as_str())
}

fn under(module: &[String], prefix: &[&str]) -> bool {
    module.len() >= prefix.len() && module.iter().zip(prefix).all(|(m, p)| m == p)
}

/// What the core names that it must not: files above it, or their crates.
fn core_offences(tree: &SourceTree) -> Vec<String> {
    let mut offences = Vec::new();
    for (from, to) in tree.edges() {
        let (from_module, to_module) = (tree.module(from), tree.module(to));
        if in_core(from_module) && !to_module.is_empty() && !in_core(to_module) {
            offences.push(format!("{} uses {}", tree.file(from), tree.file(to)));
        }
    }
    for (file, krate) in tree.users_of(NOT_FOR_THE_CORE) {
        if in_core(tree.module(file)) {
            offences.push(format!("{} uses the crate {krate}", tree.file(file)));
        }
    }
    offences.sort();
    offences
}

/// Import cycles inside the core, inside all of the replication code (the seam and
/// its modes), and inside each mode.
fn cycles(tree: &SourceTree) -> Vec<String> {
    type Member = fn(&[String]) -> bool;
    let groups: [(&str, Member); 4] = [
        ("the core", in_core),
        ("replication", |m| under(m, &["replication"])),
        ("primary–replica", |m| {
            under(m, &["replication", "primary_replica"])
        }),
        ("raft", |m| under(m, &["replication", "raft"])),
    ];
    let mut found = Vec::new();
    for (name, member) in groups {
        for cycle in tree.cycles_among(member) {
            // Every import inside the cycle, so the one to cut can be chosen.
            let inside = |file: usize| cycle.iter().any(|f| f == tree.file(file));
            let imports: Vec<String> = tree
                .edges()
                .filter(|&(a, b)| inside(a) && inside(b))
                .map(|(a, b)| format!("    {} uses {}", tree.file(a), tree.file(b)))
                .collect();
            found.push(format!(
                "{name}: {}\n{}",
                cycle.join(", "),
                imports.join("\n")
            ));
        }
    }
    found
}

#[test]
fn the_core_imports_no_replication_http_or_cli_code() {
    let offences = core_offences(&tree());
    assert!(
        offences.is_empty(),
        "the core must not know these:\n{}",
        offences.join("\n")
    );
}

#[test]
fn neither_the_core_nor_the_replication_code_has_an_import_cycle() {
    let found = cycles(&tree());
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    // The checks above pass vacuously if the reader finds no edges: make sure it
    // finds ones that exist.
    let tree = tree();
    let edge = |from: &str, to: &str| {
        tree.edges()
            .any(|(a, b)| tree.file(a) == from && tree.file(b) == to)
    };
    assert!(edge("http/mod.rs", "replication/mode.rs"));
    assert!(edge("replication/raft/mode.rs", "replication/status.rs"));
    // Through the `pub use` in lib.rs to the file that defines `Database`.
    assert!(edge("replication/standalone.rs", "served.rs"));
    assert!(edge("http/mod.rs", "database/mod.rs"));

    // Planted: a core file that names replication code and the CLI's crate, one
    // whose string and test module do (which does not count), and a cycle.
    let planted = SourceTree::from_files(vec![
        ("lib.rs".into(), "pub use store::Store;".into()),
        (
            "store.rs".into(),
            "use crate::replication::Mode; pub struct Store(clap::Id);".into(),
        ),
        // Paths a reader might take for something else: a turbofish, a `for … in`,
        // next to a visibility path that is not an import.
        (
            "catalog.rs".into(),
            "pub(in crate::store) fn f() { crate::replication::g::<u8>(); }\n\
             fn h() { for x in crate::replication::mode::ALL {} }"
                .into(),
        ),
        (
            "search.rs".into(),
            "pub fn f() -> &'static str { \"crate::replication::Mode\" }\n\
             #[cfg(test)]\nmod tests { use crate::replication::Mode; }"
                .into(),
        ),
        (
            "replication/mod.rs".into(),
            "pub(in crate) use mode::Mode;".into(),
        ),
        (
            "replication/mode.rs".into(),
            "pub struct Mode(crate::Store, crate::replication::raft::R);".into(),
        ),
        (
            "replication/raft.rs".into(),
            "pub struct R(super::Mode);".into(),
        ),
    ]);
    let offences = core_offences(&planted);
    assert_eq!(
        offences,
        [
            "catalog.rs uses replication/mod.rs",
            "catalog.rs uses replication/mode.rs",
            "store.rs uses replication/mode.rs",
            "store.rs uses the crate clap"
        ],
        "{offences:?}"
    );
    let found = cycles(&planted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("replication: replication/mode.rs, replication/raft.rs"),
        "{found:?}"
    );
}
