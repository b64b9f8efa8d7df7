//! The QUIC shell on loopback: requests, pushes, cancellation, region transfers,
//! mutual TLS acceptance and rejection, and bad frames that close only their stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use needle_transport::certs::{generate_cluster, CertAuthority};
use needle_transport::faults::{FaultConfig, FaultInjector, FaultRule};
use needle_transport::frame::{Frame, FrameKind};
use needle_transport::{
    BoxFuture, DeltaCodec, DeltaEntry, Handler, PeerInfo, Security, TlsFiles, Transport,
    TransportConfig, TransportError,
};
use tokio::sync::mpsc;

/// Echoes requests (prefixed), fails on "fail", sleeps on "slow" (recording whether
/// it was cancelled), and forwards pushes to a channel.
struct Echo {
    pushes: mpsc::UnboundedSender<(Vec<u8>, bool)>,
    slow_finished: Arc<AtomicBool>,
}

impl Handler for Echo {
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let finished = self.slow_finished.clone();
        let name = from.node_name().unwrap_or("?").to_string();
        Box::pin(async move {
            match body.as_slice() {
                b"who" => Ok(name.into_bytes()),
                b"fail" => Err("asked to fail".to_string()),
                b"slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok(b"late".to_vec())
                }
                _ => Ok([b"echo:".as_slice(), &body].concat()),
            }
        })
    }

    fn push(&self, _from: PeerInfo, body: Vec<u8>, compressed: bool) -> BoxFuture<()> {
        let _ = self.pushes.send((body, compressed));
        Box::pin(async {})
    }
}

struct Node {
    transport: Transport,
    pushes: mpsc::UnboundedReceiver<(Vec<u8>, bool)>,
    slow_finished: Arc<AtomicBool>,
}

fn start(security: Security) -> Node {
    start_with(security, |_| {})
}

/// A node whose transport settings `configure` may change (faults, metrics).
fn start_with(security: Security, configure: impl FnOnce(&mut TransportConfig)) -> Node {
    let (tx, rx) = mpsc::unbounded_channel();
    let slow_finished = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(Echo {
        pushes: tx,
        slow_finished: slow_finished.clone(),
    });
    let mut config = TransportConfig::new(security);
    config.request_timeout = Duration::from_secs(5);
    config.max_body = 1 << 20;
    configure(&mut config);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Node {
        transport: Transport::bind(addr, config, handler).unwrap(),
        pushes: rx,
        slow_finished,
    }
}

fn files(dir: &std::path::Path, node: usize) -> TlsFiles {
    TlsFiles {
        cert_path: dir.join(format!("node-{node}.pem")),
        key_path: dir.join(format!("node-{node}-key.pem")),
        ca_path: dir.join("ca.pem"),
    }
}

fn cluster() -> (tempfile::TempDir, Node, Node) {
    let dir = tempfile::tempdir().unwrap();
    generate_cluster(dir.path(), 2, &[]).unwrap();
    let a = start(Security::Mutual(files(dir.path(), 1)));
    let b = start(Security::Mutual(files(dir.path(), 2)));
    (dir, a, b)
}

#[tokio::test]
async fn requests_get_answers_and_errors_over_mutual_tls() {
    let (_dir, a, b) = cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    assert_eq!(peer.request(b"hello").await.unwrap(), b"echo:hello");
    // The responder knows which node asked, from its verified certificate.
    assert_eq!(peer.request(b"who").await.unwrap(), b"node-1");
    assert_eq!(
        peer.request(b"fail").await,
        Err(TransportError::Remote("asked to fail".into()))
    );
    // Concurrent requests on one connection each get their own answer.
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let peer = &peer;
        async move { peer.request(format!("{i}").as_bytes()).await.unwrap() }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, format!("echo:{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_timed_out_request_is_cancelled_on_the_responder() {
    let (_dir, a, b) = cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    let err = peer
        .request_within(b"slow", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::Timeout(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !b.slow_finished.load(Ordering::SeqCst),
        "the handler ran to completion"
    );
    assert_eq!(
        peer.request(b"still there").await.unwrap(),
        b"echo:still there"
    );
}

#[tokio::test]
async fn pushes_and_compressed_deltas_arrive() {
    let (_dir, a, mut b) = cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    peer.push(b"one-way", false).await.unwrap();
    assert_eq!(b.pushes.recv().await.unwrap(), (b"one-way".to_vec(), false));
    let codec = DeltaCodec::default();
    let entries: Vec<DeltaEntry> = (0..100)
        .map(|i| DeltaEntry {
            seq: i,
            meta: format!(r#"{{"op":"delete","collection":"docs","ids":["doc-{i:06}"]}}"#)
                .into_bytes(),
            vectors: Vec::new(),
        })
        .collect();
    let sent = peer.push_delta(&codec, &entries).await.unwrap();
    assert!(sent.compressed);
    let (body, compressed) = b.pushes.recv().await.unwrap();
    assert!(compressed);
    assert_eq!(codec.decode(&body, compressed).unwrap(), entries);
}

#[tokio::test]
async fn regions_are_written_in_parallel_and_verified_by_checksum() {
    let (_dir, a, b) = cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    let floats: Vec<f32> = (0..300_000).map(|i| (i as f32).sin()).collect();
    let bytes: &[u8] = bytemuck::cast_slice(&floats);
    let key = b.transport.register_region(bytes.len() as u64).unwrap();
    let done = peer.send_region(key, bytes, 64 * 1024, 4).await.unwrap();
    assert_eq!(done.len, bytes.len() as u64);
    assert_eq!(done.checksum, needle_transport::region::checksum(bytes));
    assert_eq!(
        peer.read_region(key, 400, 8).await.unwrap(),
        &bytes[400..408]
    );
    assert_eq!(
        b.transport.take_region(key).unwrap().as_f32().unwrap(),
        &floats[..]
    );

    // A region missing a chunk, or with a wrong checksum, is not confirmed.
    let key = b.transport.register_region(1000).unwrap();
    peer.write_region(key, 0, &[1; 600]).await.unwrap();
    let short = peer.finish_region(key, 0).await.unwrap_err();
    assert!(
        matches!(short, TransportError::Remote(ref m) if m.contains("incomplete")),
        "{short}"
    );
    peer.write_region(key, 600, &[2; 400]).await.unwrap();
    let wrong = peer.finish_region(key, 12345).await.unwrap_err();
    assert!(
        matches!(wrong, TransportError::Remote(ref m) if m.contains("checksum")),
        "{wrong}"
    );
    // Writes outside a region close that stream only.
    peer.write_region(key, 990, &[0; 20]).await.unwrap();
    assert!(peer.read_region(key, 990, 20).await.is_err());
    assert_eq!(peer.request(b"ok").await.unwrap(), b"echo:ok");
}

#[tokio::test]
async fn bad_frames_close_their_stream_and_nothing_else() {
    let (_dir, a, b) = cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    // Wrong version.
    let (mut send, mut recv) = peer.raw_stream().await.unwrap();
    let mut frame = Frame::encode(FrameKind::Request, 0, 1, b"x", 100).unwrap();
    frame[0] = 99;
    send.write_all(&frame).await.unwrap();
    let _ = send.finish();
    assert!(recv
        .read_to_end(1024)
        .await
        .map(|b| b.is_empty())
        .unwrap_or(true));
    // A length over the receiver's maximum.
    let (mut send, mut recv) = peer.raw_stream().await.unwrap();
    let header = needle_transport::Header::new(FrameKind::Request, 2, 2 << 20).to_bytes();
    let _ = send.write_all(&header).await;
    let _ = send.finish();
    assert!(recv
        .read_to_end(1024)
        .await
        .map(|b| b.is_empty())
        .unwrap_or(true));
    // The connection and the node are fine.
    assert_eq!(peer.request(b"after").await.unwrap(), b"echo:after");
}

async fn refused(client: Security, server: &Node) -> bool {
    let stranger = start(client);
    match stranger
        .transport
        .connect(server.transport.local_addr().unwrap())
        .await
    {
        Err(_) => true,
        // With TLS 1.3 the server may reject the client's certificate after the
        // client considers the handshake done: the first request then fails.
        Ok(peer) => peer
            .request_within(b"hi", Duration::from_secs(3))
            .await
            .is_err(),
    }
}

#[tokio::test]
async fn peers_outside_the_cluster_ca_are_refused() {
    let (dir, _a, b) = cluster();
    // A node of another cluster (its own CA, trusting the real CA so only the
    // server's check can refuse it).
    let other = tempfile::tempdir().unwrap();
    generate_cluster(other.path(), 1, &[]).unwrap();
    let wrong_ca = TlsFiles {
        ca_path: dir.path().join("ca.pem"),
        ..files(other.path(), 1)
    };
    assert!(
        refused(Security::Mutual(wrong_ca), &b).await,
        "a certificate from another CA"
    );
    // An expired certificate: issued by a CA kept in memory, which also signs the
    // server's (valid) certificate.
    let ca = CertAuthority::new("test CA").unwrap();
    let expired = ca
        .issue(
            "old",
            &[],
            Some((
                time::OffsetDateTime::now_utc() - Duration::from_secs(86_400 * 30),
                time::OffsetDateTime::now_utc() - Duration::from_secs(86_400),
            )),
        )
        .unwrap();
    let fresh = ca.issue("new", &[], None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_path = write("ca.pem", ca.cert_pem());
    let server = start(Security::Mutual(TlsFiles {
        cert_path: write("new.pem", &fresh.cert_pem),
        key_path: write("new-key.pem", &fresh.key_pem),
        ca_path: ca_path.clone(),
    }));
    let expired_files = TlsFiles {
        cert_path: write("old.pem", &expired.cert_pem),
        key_path: write("old-key.pem", &expired.key_pem),
        ca_path,
    };
    assert!(
        refused(Security::Mutual(expired_files), &server).await,
        "an expired certificate"
    );
    // No client certificate at all.
    assert!(
        refused(Security::InsecureDev, &b).await,
        "a client without a certificate"
    );
}

#[tokio::test]
async fn insecure_dev_mode_talks_to_itself_only() {
    let a = start(Security::InsecureDev);
    let b = start(Security::InsecureDev);
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    assert_eq!(peer.request(b"dev").await.unwrap(), b"echo:dev");
    assert_eq!(
        peer.request(b"who").await.unwrap(),
        b"?",
        "no certificate, no name"
    );
}

fn faulty_cluster() -> (tempfile::TempDir, Node, Node, Arc<FaultInjector>) {
    let dir = tempfile::tempdir().unwrap();
    generate_cluster(dir.path(), 2, &[]).unwrap();
    let faults = Arc::new(FaultInjector::default());
    let a = start_with(Security::Mutual(files(dir.path(), 1)), |config| {
        config.faults = Some(faults.clone())
    });
    let b = start(Security::Mutual(files(dir.path(), 2)));
    (dir, a, b, faults)
}

fn rule() -> FaultRule {
    FaultRule {
        reorder_ms: 50,
        ..FaultRule::default()
    }
}

#[tokio::test]
async fn injected_loss_and_delay_then_heal() {
    let (_dir, a, b, faults) = faulty_cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    faults.set(FaultConfig {
        rules: vec![FaultRule {
            drop: 1.0,
            ..rule()
        }],
        ..FaultConfig::default()
    });
    let lost = peer.request_within(b"x", Duration::from_millis(300)).await;
    assert_eq!(
        lost,
        Err(TransportError::Timeout(Duration::from_millis(300)))
    );
    faults.set(FaultConfig {
        rules: vec![FaultRule {
            delay_ms: Some((300, 300)),
            ..rule()
        }],
        ..FaultConfig::default()
    });
    let start = std::time::Instant::now();
    assert_eq!(peer.request(b"slowly").await.unwrap(), b"echo:slowly");
    assert!(start.elapsed() >= Duration::from_millis(300));
    faults.heal();
    assert_eq!(peer.request(b"healed").await.unwrap(), b"echo:healed");
}

#[tokio::test]
async fn injected_duplicates_and_reordering_of_pushes() {
    let (_dir, a, mut b, faults) = faulty_cluster();
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    faults.set(FaultConfig {
        rules: vec![FaultRule {
            duplicate: 1.0,
            ..rule()
        }],
        ..FaultConfig::default()
    });
    peer.push(b"twice", false).await.unwrap();
    assert_eq!(b.pushes.recv().await.unwrap().0, b"twice");
    assert_eq!(b.pushes.recv().await.unwrap().0, b"twice");
    faults.set(FaultConfig {
        // Held-back pushes wait 500 ms, far longer than sending all 20 takes even
        // on a loaded machine, so the overtaking is certain, not a race.
        rules: vec![FaultRule {
            reorder: 0.5,
            reorder_ms: 500,
            ..rule()
        }],
        seed: 3,
        ..FaultConfig::default()
    });
    for i in 0..20u8 {
        peer.push(&[i], false).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(b.pushes.recv().await.unwrap().0[0]);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..20).collect::<Vec<u8>>(), "every push arrives");
    assert_ne!(got, sorted, "some pushes were overtaken");
}

#[tokio::test]
async fn a_partition_configured_on_one_node_cuts_both_directions() {
    let (_dir, a, b, faults) = faulty_cluster();
    let (a_addr, b_addr) = (
        a.transport.local_addr().unwrap(),
        b.transport.local_addr().unwrap(),
    );
    let a_to_b = a.transport.connect(b_addr).await.unwrap();
    let b_to_a = b.transport.connect(a_addr).await.unwrap();
    faults.set(FaultConfig {
        partitions: vec![vec![a_addr.to_string()], vec![b_addr.to_string()]],
        ..FaultConfig::default()
    });
    assert!(a_to_b
        .request_within(b"x", Duration::from_millis(300))
        .await
        .is_err());
    assert!(b_to_a
        .request_within(b"x", Duration::from_millis(300))
        .await
        .is_err());
    faults.heal();
    assert_eq!(a_to_b.request(b"x").await.unwrap(), b"echo:x");
    assert_eq!(b_to_a.request(b"y").await.unwrap(), b"echo:y");
}

#[tokio::test]
async fn traffic_is_counted_per_peer_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    generate_cluster(dir.path(), 2, &[]).unwrap();
    let registry = prometheus::Registry::new();
    let metrics =
        Arc::new(needle_transport::metrics::TransportMetrics::register(&registry).unwrap());
    let a = start_with(Security::Mutual(files(dir.path(), 1)), |config| {
        config.metrics = Some(metrics.clone())
    })
    .transport;
    let b = start(Security::Mutual(files(dir.path(), 2)));
    let b_addr = b.transport.local_addr().unwrap();
    let peer = a.connect(b_addr).await.unwrap();
    for _ in 0..3 {
        peer.request(b"12345").await.unwrap();
    }
    let entries: Vec<DeltaEntry> = (0..50)
        .map(|i| DeltaEntry {
            seq: i,
            meta: b"{\"op\":\"delete\",\"ids\":[\"same-old-id\"]}".to_vec(),
            vectors: Vec::new(),
        })
        .collect();
    peer.push_delta(&DeltaCodec::default(), &entries)
        .await
        .unwrap();
    let peer_label = b_addr.to_string();
    let request = [peer_label.as_str(), "request"];
    assert_eq!(metrics.messages_sent.with_label_values(&request).get(), 3);
    assert_eq!(
        metrics.bytes_sent.with_label_values(&request).get(),
        3 * (16 + 5)
    );
    assert_eq!(
        metrics
            .messages_received
            .with_label_values(&[peer_label.as_str(), "response"])
            .get(),
        3
    );
    let raw = metrics.delta_bytes.with_label_values(&["raw"]).get();
    let wire = metrics.delta_bytes.with_label_values(&["wire"]).get();
    assert!(
        wire * 4 < raw,
        "compression ratio recorded: {wire} of {raw}"
    );
    assert!(
        metrics
            .rtt_seconds
            .with_label_values(&[peer_label.as_str()])
            .get()
            > 0.0
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(text.contains("needle_transport_bytes_sent_total"), "{text}");
}

/// A file region of any size (here far past the node's memory-region bound) goes
/// from file to file in chunks; neither side holds it in memory.
#[tokio::test]
async fn a_file_region_streams_from_file_to_file_past_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    generate_cluster(dir.path(), 2, &[]).unwrap();
    let small = |config: &mut TransportConfig| config.max_region = 4096;
    let a = start_with(Security::Mutual(files(dir.path(), 1)), small);
    let b = start_with(Security::Mutual(files(dir.path(), 2)), small);
    let source = dir.path().join("snapshot.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&source, &data).unwrap();
    let (len, checksum) = needle_transport::region::file_checksum(&source).unwrap();
    assert_eq!(len, data.len() as u64);
    let (key, registered_len) = b.transport.register_file_region(&source).unwrap();
    assert_eq!(registered_len, len);
    let peer = a
        .transport
        .connect(b.transport.local_addr().unwrap())
        .await
        .unwrap();
    let target = dir.path().join("received.bin");
    peer.read_region_to_file(key, len, checksum, 256 << 10, &target)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), data);
    // A wrong checksum fails the transfer and leaves no partial file.
    let bad = dir.path().join("bad.bin");
    let err = peer
        .read_region_to_file(key, len, checksum ^ 1, 256 << 10, &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(!bad.exists());
    assert!(b.transport.remove_region(key));
}

/// A client certificate authenticates, but regions are for members only.
#[tokio::test]
async fn a_client_certificate_cannot_read_regions() {
    let dir = tempfile::tempdir().unwrap();
    needle_transport::certs::generate_cluster_with_clients(dir.path(), 1, 1, &[]).unwrap();
    let member = start(Security::Mutual(files(dir.path(), 1)));
    let client = start(Security::Mutual(TlsFiles {
        cert_path: dir.path().join("client-1.pem"),
        key_path: dir.path().join("client-1-key.pem"),
        ca_path: dir.path().join("ca.pem"),
    }));
    let mut buf = needle_transport::AlignedBuf::zeroed(64);
    buf.as_bytes_mut().copy_from_slice(&[7; 64]);
    let key = member.transport.register_filled_region(buf).unwrap();
    let peer = client
        .transport
        .connect(member.transport.local_addr().unwrap())
        .await
        .unwrap();
    // Requests are the handler's to judge: it sees a client.
    assert_eq!(peer.request(b"who").await.unwrap(), b"client-1");
    assert!(peer.read_region(key, 0, 8).await.is_err());
}
