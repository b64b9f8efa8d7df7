//! Log shipping between two databases over the QUIC transport with mutual TLS, in
//! one process: everything the primary commits reaches the replica, in order and
//! exactly once, including across a replica restart.

use needle::replication::ship::{pull_once, LogServer};
use needle::replication::{AckTracker, Follower, Wait, WriteConcern};
use needle::{CollectionConfig, Database, Distance, VectorRecord};
use needle_transport::certs::generate_cluster;
use needle_transport::{DeltaCodec, Security, TlsFiles, Transport, TransportConfig};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

fn security(dir: &std::path::Path, node: usize) -> Security {
    Security::Mutual(TlsFiles {
        cert_path: dir.join(format!("node-{node}.pem")),
        key_path: dir.join(format!("node-{node}-key.pem")),
        ca_path: dir.join("ca.pem"),
    })
}

struct NoRequests;

impl needle_transport::Handler for NoRequests {
    fn request(
        &self,
        _: needle_transport::PeerInfo,
        _: Vec<u8>,
    ) -> needle_transport::BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("a replica serves no pulls".to_string()) })
    }
    fn push(
        &self,
        _: needle_transport::PeerInfo,
        _: Vec<u8>,
        _: bool,
    ) -> needle_transport::BoxFuture<()> {
        Box::pin(async {})
    }
}

fn write_some(db: &Database, start: usize, n: usize) {
    let docs = db.collection("docs").unwrap();
    let batch: Vec<VectorRecord> = (start..start + n)
        .map(|i| {
            let mut meta = needle::Metadata::new();
            meta.insert("i".into(), serde_json::json!(i));
            VectorRecord::new(format!("v{i}"), vec![i as f32, 1.0, -(i as f32)]).with_metadata(meta)
        })
        .collect();
    for chunk in batch.chunks(50) {
        docs.upsert(chunk.to_vec()).unwrap();
    }
    for i in (start..start + n).step_by(7) {
        docs.delete(&format!("v{i}")).unwrap();
    }
}

async fn catch_up(
    primary: &Database,
    replica: &Database,
    peer: &needle_transport::Peer,
    follower: &mut Follower,
) {
    let codec = DeltaCodec::default();
    for _ in 0..200 {
        if replica.applied_seq() == primary.applied_seq() {
            return;
        }
        pull_once(
            replica,
            peer,
            follower,
            &codec,
            64,
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    }
    panic!(
        "replica stuck at {} of {}",
        replica.applied_seq(),
        primary.applied_seq()
    );
}

fn same_contents(primary: &Database, replica: &Database) {
    let (p, r) = (
        primary.collection("docs").unwrap(),
        replica.collection("docs").unwrap(),
    );
    assert_eq!(p.count().unwrap(), r.count().unwrap());
    let query = [3.0, 1.0, -3.0];
    let (hp, hr) = (
        p.search(&query, 20, None).unwrap(),
        r.search(&query, 20, None).unwrap(),
    );
    assert_eq!(format!("{hp:?}"), format!("{hr:?}"));
    assert_eq!(
        primary.read_log(1, 10_000).unwrap(),
        replica.read_log(1, 10_000).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_the_primary_log_over_mutual_tls_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    generate_cluster(&dir.path().join("certs"), 2, &[]).unwrap();
    let certs = dir.path().join("certs");
    let primary = Database::open(dir.path().join("primary")).unwrap();
    let replica_path = dir.path().join("replica");
    let mut replica = Database::open(&replica_path).unwrap();
    primary
        .create_collection(CollectionConfig::new("docs", 3, Distance::Euclidean))
        .unwrap();
    write_some(&primary, 0, 300);

    let acks = Arc::new(Mutex::new(AckTracker::new()));
    let server = LogServer::new(primary.clone(), DeltaCodec::default(), acks.clone());
    let addr = "127.0.0.1:0".parse().unwrap();
    let p_transport = Transport::bind(
        addr,
        TransportConfig::new(security(&certs, 1)),
        Arc::new(server),
    )
    .unwrap();
    let r_transport = Transport::bind(
        addr,
        TransportConfig::new(security(&certs, 2)),
        Arc::new(NoRequests),
    )
    .unwrap();
    let peer = r_transport
        .connect(p_transport.local_addr().unwrap())
        .await
        .unwrap();

    let mut follower = Follower::new(replica.applied_seq());
    catch_up(&primary, &replica, &peer, &mut follower).await;
    same_contents(&primary, &replica);
    assert_eq!(follower.lag(0).operations, 0);

    // The primary knows what node-2 holds: the next pull acknowledges everything.
    let last = primary.applied_seq();
    pull_once(
        &replica,
        &peer,
        &mut follower,
        &DeltaCodec::default(),
        64,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(acks.lock().wait(last, WriteConcern::All), Wait::Met);

    // Restart the replica mid-stream: it resumes from what it made durable.
    write_some(&primary, 300, 200);
    pull_once(
        &replica,
        &peer,
        &mut follower,
        &DeltaCodec::default(),
        5,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    drop(replica);
    replica = Database::open(&replica_path).unwrap();
    let mut follower = Follower::new(replica.applied_seq());
    assert!(follower.next_needed() > 1 && follower.next_needed() <= primary.applied_seq());
    catch_up(&primary, &replica, &peer, &mut follower).await;
    same_contents(&primary, &replica);
}
