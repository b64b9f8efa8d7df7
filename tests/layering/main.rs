//! The layers the README's "Architecture" section draws, checked over the source
//! (the compiler checks them between crates; inside the root package this does):
//!
//! - the core (storage, writer, catalog, search, filters, snapshots: every file of
//!   `node/` outside `replication/`, `http/`, `cli/` and `config/`) names nothing of
//!   replication, HTTP, the CLI or its settings;
//! - no file of the core, of primary–replica or of Raft reaches itself again
//!   through the files it imports (no import cycle inside any of the three).
//!
//! It reads `use` paths and `crate::`/`super::`/`self::` paths in code (comments,
//! strings and `#[cfg(test)] mod` blocks left out), follows `pub use` re-exports to
//! the file that defines a name, and fails with the offending files named.

mod imports;

use imports::SourceTree;

fn tree() -> SourceTree {
    SourceTree::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node"))
}

/// Top-level modules of the root package that are not the core.
const OUTSIDE_CORE: &[&str] = &["replication", "http", "cli", "config"];

fn in_core(module: &[String]) -> bool {
    !module.is_empty() && !OUTSIDE_CORE.contains(&module[0].as_str())
}

#[test]
fn the_core_imports_no_replication_http_or_cli_code() {
    let tree = tree();
    let mut offences = Vec::new();
    for (from, to) in tree.edges() {
        let (from_module, to_module) = (tree.module(from), tree.module(to));
        if in_core(from_module) && !to_module.is_empty() && !in_core(to_module) {
            offences.push(format!("{} uses {}", tree.file(from), tree.file(to)));
        }
    }
    assert!(
        offences.is_empty(),
        "the core must not know these:\n{}",
        offences.join("\n")
    );
}

#[test]
fn neither_the_core_nor_either_replication_mode_has_an_import_cycle() {
    let tree = tree();
    type Member = fn(&[String]) -> bool;
    let groups: [(&str, Member); 3] = [
        ("the core", in_core),
        ("primary–replica", |m| {
            m.starts_with(&["replication".into(), "primary_replica".into()])
        }),
        ("raft", |m| {
            m.starts_with(&["replication".into(), "raft".into()])
        }),
    ];
    let mut found = Vec::new();
    for (name, member) in groups {
        for cycle in tree.cycles_among(member) {
            // Every import inside the cycle, so the one to cut can be chosen.
            let inside: Vec<String> = tree
                .edges()
                .filter(|&(a, b)| {
                    cycle.iter().any(|f| f == tree.file(a))
                        && cycle.iter().any(|f| f == tree.file(b))
                })
                .map(|(a, b)| format!("    {} uses {}", tree.file(a), tree.file(b)))
                .collect();
            found.push(format!(
                "{name}: {}\n{}",
                cycle.join(", "),
                inside.join("\n")
            ));
        }
    }
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
    let planted = imports::SourceTree::from_files(vec![
        ("a.rs".into(), "use crate::b::B; pub struct A;".into()),
        ("b.rs".into(), "pub struct B(crate::c::C);".into()),
        ("c.rs".into(), "use super::a::A; pub struct C;".into()),
    ]);
    assert_eq!(planted.cycles_among(|_| true).len(), 1);
}
