//! The QUIC transport on loopback, against plain TCP (the peer) in the same run:
//! `cargo bench -p needle-transport --bench transport_loopback`.
//! - bulk: 1 GiB of f32 written into a registered region (4 parallel streams, 1 MiB
//!   writes, mutual TLS, checksum confirmed) vs the same bytes over one TCP stream;
//! - small RPCs: sequential round trips per second, and with 64 in flight.

#[path = "machine.rs"]
mod machine;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use needle_transport::certs::generate_cluster;
use needle_transport::{
    BoxFuture, Handler, PeerInfo, Security, TlsFiles, Transport, TransportConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BULK: usize = 1 << 30;

struct Echo;

impl Handler for Echo {
    fn request(&self, _from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async move { Ok(body) })
    }
    fn push(&self, _from: PeerInfo, _body: Vec<u8>, _compressed: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

fn node(dir: &std::path::Path, n: usize) -> Transport {
    let files = TlsFiles {
        cert_path: dir.join(format!("node-{n}.pem")),
        key_path: dir.join(format!("node-{n}-key.pem")),
        ca_path: dir.join("ca.pem"),
    };
    let mut config = TransportConfig::new(Security::Mutual(files));
    config.request_timeout = Duration::from_secs(120);
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Transport::bind(addr, config, Arc::new(Echo)).expect("bind")
}

async fn tcp_copy(data: &[u8]) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("tcp bind");
    let addr = listener.local_addr().expect("tcp addr");
    let len = data.len();
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; len];
        socket.read_exact(&mut buf).await.expect("read");
        buf.len()
    });
    let start = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for chunk in data.chunks(1 << 20) {
        socket.write_all(chunk).await.expect("write");
    }
    socket.flush().await.expect("flush");
    assert_eq!(reader.await.expect("reader"), len);
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!("machine: {}", machine::describe());
        println!("peer: plain TCP on loopback (tokio), same run");
        let dir = tempfile::tempdir().expect("tempdir");
        generate_cluster(dir.path(), 2, &[]).expect("certs");
        let (a, b) = (node(dir.path(), 1), node(dir.path(), 2));
        let peer = a.connect(b.local_addr().expect("addr")).await.expect("connect");

        let floats: Vec<f32> = (0..BULK / 4).map(|i| (i as f32) * 1e-3).collect();
        let data: &[u8] = bytemuck::cast_slice(&floats);
        let mut tcp = Vec::new();
        let mut quic = Vec::new();
        for _ in 0..2 {
            tcp.push(tcp_copy(data).await);
            let key = b.register_region(data.len() as u64).expect("region");
            let start = Instant::now();
            peer.send_region(key, data, (1 << 20) - 16, 4).await.expect("send_region");
            quic.push(start.elapsed());
            b.take_region(key).expect("take");
        }
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let gbs = |d: Duration| BULK as f64 / d.as_secs_f64() / 1e9;
        let (t, q) = (best(&tcp), best(&quic));
        println!("bulk 1 GiB: TCP {:.2} GB/s, needle region {:.2} GB/s (4 streams, mTLS, checksum) = {:.2}x TCP (best of 2)", gbs(t), gbs(q), gbs(q) / gbs(t));

        let n = 5000;
        let start = Instant::now();
        for _ in 0..n {
            peer.request(b"ping-64-bytes-of-payload-ping-64-bytes-of-payload-ping-64-bytes").await.expect("rpc");
        }
        let sequential = n as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let peer = &peer;
        for _ in 0..(n / 64) {
            futures_util::future::try_join_all((0..64).map(|_| peer.request(b"ping"))).await.expect("rpc");
        }
        let concurrent = (n / 64 * 64) as f64 / start.elapsed().as_secs_f64();
        println!("small RPC: {sequential:.0} round trips/s sequential, {concurrent:.0}/s with 64 in flight (RTT {:?})", peer.rtt());
    });
}
