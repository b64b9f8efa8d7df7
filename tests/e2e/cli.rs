//! The command line: import in every format, directly and through a node; search and
//! collections against a running node; config from a file and the environment.

use crate::support::{needle, vectors, Node, BIN};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::Command;

fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dims = rows[0].len();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dims}), }}",
        rows.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for v in rows.iter().flatten() {
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in rows {
        f.write_all(&(r.len() as i32).to_le_bytes()).unwrap();
        for v in r {
            f.write_all(&v.to_le_bytes()).unwrap();
        }
    }
}

#[test]
fn import_npy_into_a_stopped_data_directory_then_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rows = vectors(7, 2500, 8);
    let file = dir.path().join("rows.npy");
    write_npy(&file, &rows);
    let data_s = data.to_str().unwrap();
    let (ok, stdout, stderr) = needle(&[
        "import",
        "--collection",
        "n",
        "--data",
        data_s,
        "--create",
        "euclidean",
        "--batch-size",
        "700",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("imported 2500 vectors"), "{stdout}");
    // Without --create an unknown collection is an error, not a guess.
    let (ok, _, stderr) = needle(&[
        "import",
        "--collection",
        "other",
        "--data",
        data_s,
        file.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
    let node = Node::start(&data, &[]);
    let c = node.client();
    assert_eq!(
        c.get("/collections/n").1,
        json!({"name": "n", "dimensions": 8, "distance": "euclidean", "storage": "f32", "count": 2500})
    );
    let got = c.get("/collections/n/vectors/1234").1;
    let v: Vec<f32> = serde_json::from_value(got["vector"].clone()).unwrap();
    assert_eq!(v, rows[1234]);
}

#[test]
fn import_jsonl_and_fvecs_through_a_running_node_and_query_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    let rows = vectors(8, 300, 4);
    let jsonl = dir.path().join("a.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    for (i, r) in rows.iter().enumerate() {
        writeln!(
            f,
            "{}",
            json!({"id": format!("j{i}"), "vector": r, "metadata": {"parity": i % 2}})
        )
        .unwrap();
    }
    drop(f);
    let (ok, _, stderr) = needle(&[
        "import",
        "--collection",
        "mix",
        "--url",
        &node.url,
        "--create",
        "cosine",
        jsonl.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let fvecs = dir.path().join("b.fvecs");
    write_fvecs(&fvecs, &rows[..100]);
    let (ok, _, stderr) = needle(&[
        "import",
        "--collection",
        "mix",
        "--url",
        &node.url,
        "--id-prefix",
        "f",
        fvecs.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(node.client().get("/collections/mix").1["count"], 400);
    // A file with the wrong dimension fails with the server's error code.
    let bad = dir.path().join("bad.fvecs");
    write_fvecs(&bad, &vectors(9, 3, 5));
    let (ok, _, stderr) = needle(&[
        "import",
        "--collection",
        "mix",
        "--url",
        &node.url,
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("DIMENSION_MISMATCH"), "{stderr}");

    let (ok, stdout, stderr) = needle(&["collections", "--url", &node.url]);
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("mix") && l.contains("cosine") && l.trim_end().ends_with("400")),
        "{stdout}"
    );
    let query = serde_json::to_string(&rows[17]).unwrap();
    let (ok, stdout, stderr) = needle(&[
        "search",
        "--url",
        &node.url,
        "--collection",
        "mix",
        "--vector",
        &query,
        "-k",
        "3",
        "--filter",
        "{\"parity\": 1}",
    ]);
    assert!(ok, "{stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(results[0]["id"], "j17");
    assert_eq!(results.as_array().unwrap().len(), 3);
    assert!(results
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["metadata"]["parity"] == 1));
}

#[test]
fn serve_reads_a_toml_config_and_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("needle.toml");
    let data_from_file = dir.path().join("from-file");
    // The file's address is unusable: the node only starts if the environment wins.
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nhttp = \"256.0.0.1:1\"\nsync = \"per-write\"\nlog_format = \"json\"\n",
            data_from_file
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NEEDLE_HTTP", "127.0.0.1:0")
        .env("NEEDLE_BACKEND", "cpu")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stderr);
    let mut url = None;
    for _ in 0..50 {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        // JSON logs: one object per line.
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if let Some(m) = v["fields"]["message"].as_str() {
            if let Some(addr) = m.strip_prefix("listening on ") {
                url = Some(addr.to_string());
                break;
            }
        }
    }
    let url = url.expect("node announced its address");
    let body = crate::support::Client::new(&url).get("/health").1;
    assert_eq!(body["backend"], "cpu");
    assert!(
        data_from_file.join("CURRENT").exists(),
        "RocksDB opened in the configured directory"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A bad config is a clear error.
    std::fs::write(&config, "colour = 1\n").unwrap();
    let (ok, _, stderr) = needle(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!ok && stderr.contains("colour"), "{stderr}");
}

#[test]
fn certs_generate_writes_a_ca_and_node_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let (ok, stdout, stderr) = needle(&[
        "certs",
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--nodes",
        "3",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("node-3.pem"), "{stdout}");
    for name in [
        "ca.pem",
        "ca-key.pem",
        "node-1.pem",
        "node-1-key.pem",
        "node-3.pem",
        "node-3-key.pem",
    ] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(text.starts_with("-----BEGIN"), "{name}: {text}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("node-1-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "private keys are readable by their owner only"
    );
    let (ok, _, stderr) = needle(&[
        "certs",
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--nodes",
        "0",
    ]);
    assert!(!ok && stderr.contains("0"), "{stderr}");
}
