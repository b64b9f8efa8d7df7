//! `needle snapshot` / `needle restore` against real processes: a live node under
//! writes, a stopped node, the admin key, and files that are not snapshots.

use crate::cluster::create_docs;
use crate::support::{assert_error, needle, vectors, Client, Node};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const DIMS: usize = 8;

fn insert(c: &Client, prefix: &str, seed: u64, n: usize) -> Vec<String> {
    let rows = vectors(seed, n, DIMS);
    let items: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": format!("{prefix}{i}"), "vector": v, "metadata": {"i": i}}))
        .collect();
    let resp = c.post(
        "/collections/docs/vectors/batch",
        &json!({ "vectors": items }),
    );
    assert_eq!(resp.0, 200, "{}", resp.1);
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// id → (vector, metadata) for every id in `ids`, as the node returns them.
fn records(c: &Client, ids: &[String]) -> BTreeMap<String, Value> {
    ids.iter()
        .map(|id| {
            let (status, body) = c.get(&format!("/collections/docs/vectors/{id}"));
            assert_eq!(status, 200, "{id}: {body}");
            (id.clone(), json!([body["vector"], body["metadata"]]))
        })
        .collect()
}

fn count(c: &Client) -> u64 {
    let (status, body) = c.get("/collections/docs");
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().expect("count")
}

fn snapshot(data: &Path, out: &Path, key: Option<&str>) -> (bool, Value, String) {
    let mut args = vec![
        "snapshot",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(key) = key {
        args.extend(["--admin-key", key]);
    }
    let (ok, stdout, stderr) = needle(&args);
    let written = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (ok, written, stderr)
}

fn restore(file: &Path, data: &Path) -> (bool, String) {
    let (ok, _, stderr) = needle(&[
        "restore",
        "--snapshot",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    (ok, stderr)
}

#[test]
fn a_live_node_under_writes_snapshots_and_restores_what_it_had_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = Node::start(&data, &["--admin-key", "k3y"]);
    let c = node.client();
    create_docs(&c, DIMS, "cosine");
    let mut ids = insert(&c, "base", 1, 400);

    // A writer keeps inserting while the snapshot is taken.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, acked, stop) = (c.clone(), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let written = insert(&c, &format!("w{round}-"), 100 + round, 10);
                acked.lock().unwrap().extend(written);
                round += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 50 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    // Without the admin key the node refuses, and no file appears.
    let file = dir.path().join("live.snap");
    let (ok, _, stderr) = snapshot(&data, &file, None);
    assert!(!ok && stderr.contains("UNAUTHORIZED"), "{stderr}");
    assert!(!file.exists());
    let resp = c.post("/admin/snapshot", &json!({"name": "x.snap"}));
    assert_error(&resp, 401, "UNAUTHORIZED");

    let acked_before: Vec<String> = acked.lock().unwrap().clone();
    let (ok, written, stderr) = snapshot(&data, &file, Some("k3y"));
    assert!(ok, "{stderr}");
    assert!(written["applied_seq"].as_u64().unwrap() > 0, "{written}");
    assert!(written["bytes"].as_u64().unwrap() > 0, "{written}");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    ids.extend(acked.lock().unwrap().iter().cloned());

    // Every write acknowledged before the snapshot was asked for is in it, intact.
    let restored_dir = dir.path().join("restored");
    let (ok, stderr) = restore(&file, &restored_dir);
    assert!(ok, "{stderr}");
    let restored = Node::start(&restored_dir, &[]);
    let r = restored.client();
    let mut expected_ids: Vec<String> = ids[..400].to_vec();
    expected_ids.extend(acked_before);
    assert_eq!(
        records(&r, &expected_ids),
        records(&c, &expected_ids),
        "restored records differ from the live node's"
    );
    assert!(count(&r) >= expected_ids.len() as u64);
    drop(restored);

    // Once writes stop, a second snapshot (over the first file) restores to exactly
    // the live node's data.
    let (ok, written, stderr) = snapshot(&data, &file, Some("k3y"));
    assert!(ok, "{stderr}");
    let quiet_dir = dir.path().join("quiet");
    let (ok, stderr) = restore(&file, &quiet_dir);
    assert!(ok, "{stderr}");
    let quiet = Node::start(&quiet_dir, &[]);
    let q = quiet.client();
    assert_eq!(count(&q), count(&c));
    assert_eq!(count(&q), ids.len() as u64);
    assert_eq!(records(&q, &ids), records(&c, &ids));
    let (_, health) = q.get("/replication/status");
    assert_eq!(
        health["applied_seq"], written["applied_seq"],
        "health {health} vs snapshot {written}"
    );

    // The admin route writes only into the node's snapshot directory, by name: no
    // path, no way out of it, and no path-taking field at all.
    for name in [
        "../escape.snap",
        "/etc/passwd",
        "sub/dir.snap",
        ".hidden",
        "",
    ] {
        let resp = c.post_with_bearer("/admin/snapshot", "k3y", &json!({ "name": name }));
        assert_error(&resp, 400, "INVALID_REQUEST");
    }
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"keep me").unwrap();
    let resp = c.post_with_bearer("/admin/snapshot", "k3y", &json!({ "out": victim }));
    assert_error(&resp, 400, "INVALID_REQUEST");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let resp = c.post_with_bearer("/admin/snapshot", "k3y", &json!({"name": "nightly.snap"}));
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert!(data.join("snapshots").join("nightly.snap").is_file());
}

#[test]
fn a_stopped_node_snapshots_offline_and_restore_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = Node::start(&data, &[]);
    let c = node.client();
    create_docs(&c, DIMS, "cosine");
    let ids = insert(&c, "v", 7, 300);
    let before = records(&c, &ids);
    assert!(node.terminate().success());

    let file = dir.path().join("offline.snap");
    let (ok, written, stderr) = snapshot(&data, &file, None);
    assert!(ok, "{stderr}");
    assert!(written["applied_seq"].as_u64().unwrap() >= 2, "{written}");

    // Restoring over a directory that holds anything is refused and changes nothing.
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), "keep me").unwrap();
    let (ok, stderr) = restore(&file, &occupied);
    assert!(!ok && stderr.contains("not an empty directory"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt")).unwrap(),
        "keep me"
    );

    // A file that is not a snapshot is refused and leaves no data directory.
    let garbage = dir.path().join("garbage.snap");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let target = dir.path().join("from-garbage");
    let (ok, stderr) = restore(&garbage, &target);
    assert!(
        !ok && stderr.contains("invalid snapshot: unpacking"),
        "{stderr}"
    );
    assert!(!target.exists());

    // Not a data directory at all.
    let (ok, _, stderr) = snapshot(&dir.path().join("nowhere"), &file, None);
    assert!(
        !ok && stderr.contains("not a needle data directory"),
        "{stderr}"
    );

    let restored_dir = dir.path().join("restored");
    let (ok, stderr) = restore(&file, &restored_dir);
    assert!(ok, "{stderr}");
    let restored = Node::start(&restored_dir, &[]);
    assert_eq!(records(&restored.client(), &ids), before);
    // The source directory still serves, untouched by the offline snapshot.
    let again = Node::start(&data, &[]);
    assert_eq!(records(&again.client(), &ids), before);
}

/// Every status the searcher saw, by kind.
#[derive(Default, Debug)]
struct Seen {
    ok: usize,
    not_found: usize,
    other: Vec<String>,
}

#[test]
fn reload_swaps_a_serving_node_to_a_snapshot_while_searches_continue() {
    let dir = tempfile::tempdir().unwrap();
    // The source of the snapshots.
    let source = Node::start(&dir.path().join("source"), &[]);
    let s = source.client();
    create_docs(&s, DIMS, "cosine");
    let mut ids = insert(&s, "a", 3, 300);
    let first = dir.path().join("first.snap");
    let (ok, first_written, stderr) = snapshot(&source.data, &first, None);
    assert!(ok, "{stderr}");
    ids.extend(insert(&s, "b", 4, 200));
    for id in &ids[..20] {
        assert_eq!(s.delete(&format!("/collections/docs/vectors/{id}")).0, 200);
    }
    let live_ids: Vec<String> = ids[20..].to_vec();
    let second = dir.path().join("second.snap");
    let (ok, second_written, stderr) = snapshot(&source.data, &second, None);
    assert!(ok, "{stderr}");

    // The target serves other data and reloads from `first` by default.
    let target_dir = dir.path().join("target");
    let first_s = first.to_str().unwrap();
    let target = Node::start(&target_dir, &["--admin-key", "k", "--reload-from", first_s]);
    let t = target.client();
    assert_eq!(
        t.post(
            "/collections",
            &json!({"name": "other", "dimensions": 4, "distance": "dot"})
        )
        .0,
        201
    );

    // Searches run throughout both reloads; none may fail other than "no such
    // collection" before the first one.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let searcher = {
        let (t, stop, seen) = (t.clone(), Arc::clone(&stop), Arc::clone(&seen));
        let query = vectors(99, 1, DIMS).remove(0);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let resp = t.try_post(
                    "/collections/docs/search",
                    &json!({"vector": query, "k": 5}),
                );
                let mut seen = seen.lock().unwrap();
                match resp {
                    Ok((200, _)) => seen.ok += 1,
                    Ok((404, body)) if body["error"]["code"] == "COLLECTION_NOT_FOUND" => {
                        seen.not_found += 1
                    }
                    Ok((status, body)) => seen.other.push(format!("{status} {body}")),
                    Err(e) => seen.other.push(e.to_string()),
                }
            }
        })
    };

    assert_error(&t.post("/reload", &json!({})), 401, "UNAUTHORIZED");
    let resp = t.post_with_bearer("/reload", "k", &json!({}));
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert_eq!(resp.1["applied_seq"], first_written["applied_seq"]);
    assert_eq!(count(&t), 300);
    assert_error(&t.get("/collections/other"), 404, "COLLECTION_NOT_FOUND");
    let not_found_before = seen.lock().unwrap().not_found;

    // A snapshot is reloaded by name from the target's snapshot directory (files
    // reach it the way file-based replication ships them: copied in).
    std::fs::create_dir_all(target_dir.join("snapshots")).unwrap();
    std::fs::copy(&second, target_dir.join("snapshots").join("second.snap")).unwrap();
    let resp = t.post_with_bearer("/reload", "k", &json!({ "from": "second.snap" }));
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert_eq!(resp.1["applied_seq"], second_written["applied_seq"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    searcher.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.other.is_empty(), "searches failed: {:?}", seen.other);
    assert!(seen.ok > 0, "{seen:?}");
    assert_eq!(
        seen.not_found, not_found_before,
        "docs vanished after the first reload"
    );
    assert_eq!(count(&t), live_ids.len() as u64);
    assert_eq!(records(&t, &live_ids), records(&s, &live_ids));

    // Bad input changes nothing: paths are refused, only names in the snapshot
    // directory are read.
    let resp = t.post_with_bearer("/reload", "k", &json!({ "from": second }));
    assert_error(&resp, 400, "INVALID_REQUEST");
    let resp = t.post_with_bearer("/reload", "k", &json!({"from": "../second.snap"}));
    assert_error(&resp, 400, "INVALID_REQUEST");
    std::fs::write(
        target_dir.join("snapshots").join("garbage.snap"),
        b"definitely not zstd",
    )
    .unwrap();
    let resp = t.post_with_bearer("/reload", "k", &json!({ "from": "garbage.snap" }));
    assert_error(&resp, 400, "INVALID_SNAPSHOT");
    let resp = t.post_with_bearer("/reload", "k", &json!({"form": "/typo"}));
    assert_error(&resp, 400, "INVALID_REQUEST");
    assert_eq!(count(&t), live_ids.len() as u64);

    // A restart opens the reloaded state, and only that generation is left on disk.
    let target = target.restart();
    let t = target.client();
    assert_eq!(records(&t, &live_ids), records(&s, &live_ids));
    let mut entries: Vec<String> = std::fs::read_dir(&target_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "NEEDLE_NODE.json" && name != "snapshots")
        .collect();
    entries.sort();
    assert!(
        entries.len() == 2 && entries[0] == "NEEDLE_GENERATION" && entries[1].starts_with("gen-"),
        "{entries:?}"
    );
}
