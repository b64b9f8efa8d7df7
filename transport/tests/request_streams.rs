//! Ordered request streams on loopback: several requests in flight on one
//! stream, answered in the order sent, and what ends such a stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use needle_transport::faults::{FaultConfig, FaultInjector, FaultRule};
use needle_transport::{
    BoxFuture, BoxStream, Handler, PeerInfo, Security, TlsFiles, Transport, TransportConfig,
    TransportError,
};

/// Answers each streamed request "NAME:MS" after MS milliseconds, with NAME;
/// "stop" ends the answers. Counts the requests it got, and how many it held
/// unanswered at once.
#[derive(Default)]
struct Delayed {
    arrived: Arc<AtomicUsize>,
    in_progress: Arc<AtomicUsize>,
    most_in_progress: Arc<AtomicUsize>,
}

impl Handler for Delayed {
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Plain.request(from, body)
    }

    fn request_stream(
        &self,
        _from: PeerInfo,
        requests: BoxStream<Vec<u8>>,
    ) -> BoxStream<Result<Vec<u8>, String>> {
        let (now, most) = (self.in_progress.clone(), self.most_in_progress.clone());
        let arrived = self.arrived.clone();
        let answers = requests
            .inspect(move |_| {
                arrived.fetch_add(1, Ordering::SeqCst);
            })
            .take_while(|body| std::future::ready(body.as_slice() != b"stop"))
            .map(move |body| {
                let (now, most) = (now.clone(), most.clone());
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(held, Ordering::SeqCst);
                async move {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let (name, ms) = text.split_once(':').unwrap_or((&text, "0"));
                    let ms: u64 = ms.parse().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    if name == "fail" {
                        Err("asked to fail".to_string())
                    } else {
                        Ok(name.as_bytes().to_vec())
                    }
                }
            })
            .buffered(8);
        Box::pin(answers)
    }
}

/// Takes no streams: the transport's default answer.
struct Plain;

impl Handler for Plain {
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let name = from.node_name().unwrap_or("?").to_string();
        Box::pin(async move {
            match body.as_slice() {
                b"who" => Ok(name.into_bytes()),
                _ => Ok(body),
            }
        })
    }
}

fn bind(handler: Arc<dyn Handler>, faults: Option<Arc<FaultInjector>>) -> Transport {
    bind_as(Security::InsecureDev, handler, faults)
}

fn bind_as(
    security: Security,
    handler: Arc<dyn Handler>,
    faults: Option<Arc<FaultInjector>>,
) -> Transport {
    let mut config = TransportConfig::new(security);
    config.faults = faults;
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Transport::bind(addr, config, handler).unwrap()
}

async fn answer(answers: &mut needle_transport::AnswerReceiver) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(10), answers.next())
        .await
        .expect("an answer within 10 s")
        .expect("an answer, not an error")
}

#[tokio::test]
async fn requests_in_flight_together_are_answered_in_the_order_sent() {
    let handler = Arc::new(Delayed::default());
    let server = bind(handler.clone(), None);
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    // The first is the slowest: answered out of order, "e" would come first.
    for request in ["a:400", "b:300", "c:200", "d:100", "e:0"] {
        requests.send(request.as_bytes()).await.unwrap();
    }
    requests.finish().unwrap();
    let mut got = Vec::new();
    while let Some(body) = answer(&mut answers).await {
        got.push(String::from_utf8(body).unwrap());
    }
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
    // They reached the handler without waiting for each other's answers.
    assert!(handler.most_in_progress.load(Ordering::SeqCst) > 1);
}

#[tokio::test]
async fn an_error_answer_is_remote_and_a_handler_that_stops_ends_the_stream() {
    let server = bind(Arc::new(Delayed::default()), None);
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    for request in ["a:0", "fail:0", "stop", "never:0"] {
        requests.send(request.as_bytes()).await.unwrap();
    }
    assert_eq!(answer(&mut answers).await, Some(b"a".to_vec()));
    let failed = tokio::time::timeout(Duration::from_secs(10), answers.next()).await;
    assert!(matches!(failed, Ok(Err(TransportError::Remote(m))) if m == "asked to fail"));
    // The handler took nothing after "stop": the answers end, without "never".
    assert_eq!(answer(&mut answers).await, None);
}

#[tokio::test]
async fn an_endpoint_without_streams_answers_with_an_error() {
    let server = bind(Arc::new(Plain), None);
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    requests.send(b"hello").await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), answers.next()).await;
    assert!(matches!(refused, Ok(Err(TransportError::Remote(_)))));
    // Plain requests on the same connection still work.
    assert_eq!(peer.request(b"ping").await.unwrap(), b"ping");
}

#[tokio::test]
async fn a_lost_request_holds_up_those_behind_it() {
    let faults = Arc::new(FaultInjector::default());
    let handler = Arc::new(Delayed::default());
    let server = bind(handler.clone(), None);
    let client = bind(Arc::new(Plain), Some(faults.clone()));
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    requests.send(b"a:0").await.unwrap();
    assert_eq!(answer(&mut answers).await, Some(b"a".to_vec()));
    faults.set(FaultConfig {
        rules: vec![FaultRule {
            drop: 1.0,
            ..FaultRule::default()
        }],
        ..FaultConfig::default()
    });
    requests.send(b"lost:0").await.unwrap();
    faults.heal();
    // Sent after the heal, but behind a lost one on an ordered stream; and
    // finishing or dropping the sender does not end the stream cleanly either
    // (that would tell the requester what a loss never does).
    requests.send(b"behind:0").await.unwrap();
    requests.finish().unwrap();
    drop(requests);
    let waited = tokio::time::timeout(Duration::from_millis(300), answers.next()).await;
    assert!(waited.is_err(), "nothing may arrive behind a lost request");
    // Neither reached the responder: only "a" did.
    assert_eq!(handler.arrived.load(Ordering::SeqCst), 1);
    // A new stream is not held up.
    let (mut fresh, mut fresh_answers) = peer.open_request_stream().await.unwrap();
    fresh.send(b"fresh:0").await.unwrap();
    assert_eq!(answer(&mut fresh_answers).await, Some(b"fresh".to_vec()));
}

/// A client certificate authenticates, but request streams (Raft replication)
/// are for members: refused with an answer, before the handler sees anything.
#[tokio::test]
async fn a_client_certificate_cannot_open_a_request_stream() {
    let dir = tempfile::tempdir().unwrap();
    needle_transport::certs::generate_cluster_with_clients(dir.path(), 1, 1, &[]).unwrap();
    let tls = |cert: &str, key: &str| {
        Security::Mutual(TlsFiles {
            cert_path: dir.path().join(cert),
            key_path: dir.path().join(key),
            ca_path: dir.path().join("ca.pem"),
        })
    };
    let handler = Arc::new(Delayed::default());
    let member = bind_as(tls("node-1.pem", "node-1-key.pem"), handler.clone(), None);
    let client = bind_as(
        tls("client-1.pem", "client-1-key.pem"),
        Arc::new(Plain),
        None,
    );
    let peer = client.connect(member.local_addr().unwrap()).await.unwrap();
    // Plain requests are the handler's to judge: it sees a client.
    assert_eq!(peer.request(b"who").await.unwrap(), b"client-1");
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    requests.send(b"a:0").await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), answers.next()).await;
    assert!(
        matches!(&refused, Ok(Err(TransportError::Remote(m))) if m.contains("cluster members")),
        "{refused:?}"
    );
    assert_eq!(handler.arrived.load(Ordering::SeqCst), 0);
}

/// A frame of another kind after the first request ends the requests; the
/// answer to the one before it still comes, and the connection stays usable.
#[tokio::test]
async fn a_bad_frame_mid_stream_ends_the_requests_not_the_answers() {
    use needle_transport::frame::{Frame, FrameKind};
    let handler = Arc::new(Delayed::default());
    let server = bind(handler.clone(), None);
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut send, mut recv) = peer.raw_stream().await.unwrap();
    let first = Frame::encode(FrameKind::StreamRequest, 0, 1, b"a:50", 1 << 20).unwrap();
    let bad = Frame::encode(FrameKind::Push, 0, 2, b"b:0", 1 << 20).unwrap();
    send.write_all(&first).await.unwrap();
    send.write_all(&bad).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .unwrap()
        .unwrap();
    let (header, body) = answered.split_at(needle_transport::frame::HEADER_LEN);
    assert_eq!(header[1], FrameKind::Response as u8);
    assert_eq!(body, b"a");
    assert_eq!(handler.arrived.load(Ordering::SeqCst), 1);
    assert_eq!(peer.request(b"ping").await.unwrap(), b"ping");
}

/// A partition configured on the responder cuts a stream that is already open.
#[tokio::test]
async fn a_partition_on_the_responder_cuts_an_open_stream() {
    let faults = Arc::new(FaultInjector::default());
    let handler = Arc::new(Delayed::default());
    let server = bind(handler.clone(), Some(faults.clone()));
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut requests, mut answers) = peer.open_request_stream().await.unwrap();
    requests.send(b"a:0").await.unwrap();
    assert_eq!(answer(&mut answers).await, Some(b"a".to_vec()));
    let (us, them) = (server.local_addr().unwrap(), client.local_addr().unwrap());
    faults.set(FaultConfig {
        partitions: vec![vec![us.to_string()], vec![them.to_string()]],
        ..FaultConfig::default()
    });
    requests.send(b"b:0").await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(10), answers.next())
        .await
        .expect("the stream ends");
    assert!(!matches!(cut, Ok(Some(_))), "{cut:?}");
    assert_eq!(handler.arrived.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_member_holds_hundreds_of_request_streams_open_on_one_connection() {
    // One long-lived replication stream per log a member replicates: quinn's
    // default of 100 open streams would stall the 101st.
    let server = bind(Arc::new(Delayed::default()), None);
    let client = bind(Arc::new(Plain), None);
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..300 {
        let opened =
            tokio::time::timeout(Duration::from_secs(10), peer.open_request_stream()).await;
        let (mut requests, mut answers) = opened.expect("a stream opens").unwrap();
        requests.send(b"x:0").await.unwrap();
        assert_eq!(answer(&mut answers).await, Some(b"x".to_vec()));
        // Kept open, as a replication stream is.
        open.push((requests, answers));
    }
    assert_eq!(open.len(), 300);
}
