//! Clients that never finish, or that come in crowds: they must not starve the rest.

use crate::cluster::{primary_args, replica_args};
use crate::support::{assert_error, wait_for, Client, Node};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn host_port(node: &Node) -> String {
    node.url.trim_start_matches("http://").to_string()
}

/// Whether the server has closed `stream` (EOF or reset) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An error response (408) before the close counts too.
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn hundreds_of_stalled_clients_do_not_starve_a_normal_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &[
            "--http-header-timeout-ms",
            "1500",
            "--http-body-timeout-ms",
            "1500",
        ],
    );
    let addr = host_port(&node);
    // 300 connections that never finish their headers, and 50 whose bodies stop
    // short of what they announced.
    let mut stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /collections HTTP/1.1\r\nHost: x\r\nContent-Ty")
                .unwrap();
            s
        })
        .collect();
    let mut trickling: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(
                b"POST /collections HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"name\":",
            )
            .unwrap();
            s
        })
        .collect();
    // A normal client is served at once, again and again (5 s is a failure bound,
    // far above what an unloaded node needs).
    let c = Client::with_timeout(&node.url, Duration::from_secs(5));
    for i in 0..20 {
        let (status, body) = c.try_get("/health").expect("a normal request was starved");
        assert_eq!(status, 200, "{i}: {body}");
    }
    assert_eq!(
        c.try_post(
            "/collections",
            &json!({"name": "fine", "dimensions": 2, "distance": "dot"})
        )
        .expect("a normal write was starved")
        .0,
        201
    );
    // The stalled ones are cut off by the header and body timeouts.
    for s in stalled.iter_mut().take(20) {
        assert!(
            closed_by_server(s, Duration::from_secs(10)),
            "a stalled header was kept"
        );
    }
    let mut answer = String::new();
    trickling[0]
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = trickling[0].read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("BODY_TIMEOUT"), "{answer}");
    for s in trickling.iter_mut().skip(1).take(10) {
        assert!(
            closed_by_server(s, Duration::from_secs(10)),
            "a trickling body was kept"
        );
    }
}

#[test]
fn past_the_concurrent_request_limit_requests_are_shed_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut args, p_addr) = primary_args(vec!["--insecure-dev".into()]);
    args.extend(
        [
            "--max-concurrent-requests",
            "1",
            "--write-timeout-ms",
            "4000",
        ]
        .map(String::from),
    );
    let p = crate::cluster::start(&dir.path().join("p"), &args);
    let mut r_args = replica_args(&p_addr, vec!["--insecure-dev".into()]);
    r_args.extend(["--replication-sync-interval-ms", "50"].map(String::from));
    let r = crate::cluster::start(&dir.path().join("r"), &r_args);
    let c = p.client();
    crate::cluster::create_docs(&c, 2, "dot");
    assert!(wait_for(Duration::from_secs(30), || {
        crate::cluster::caught_up(&p, &r)
    }));
    // With the replica paused, a majority write waits out its write timeout,
    // holding the only processing slot.
    r.signal("STOP");
    let holder = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.post(
                "/collections/docs/vectors",
                &json!({"id": "slow", "vector": [1, 0]}),
            )
        })
    };
    // Until the write holds the slot (`/metrics` is never shed).
    assert!(wait_for(Duration::from_secs(10), || {
        let (_, text) = c.get_text("/metrics");
        text.lines()
            .any(|l| l == "needle_http_requests_in_flight 1")
    }));
    let http = reqwest::blocking::Client::new();
    let shed = http.get(format!("{}/collections", p.url)).send().unwrap();
    assert_eq!(shed.status().as_u16(), 503);
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = shed.json().unwrap();
    assert_eq!(body["error"]["code"], "OVERLOADED", "{body}");
    // Health checks are never shed.
    assert_eq!(c.get("/health").0, 200);
    let (status, body) = holder.join().unwrap();
    assert_eq!(status, 504, "{body}");
    r.signal("CONT");
    assert_eq!(c.get("/collections").0, 200);
    assert_error(
        &c.post(
            "/collections/docs/search",
            &json!({"vector": [1, 0], "k": 0}),
        ),
        400,
        "INVALID_K",
    );
}
