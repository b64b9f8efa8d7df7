//! Log shipping between two databases over the QUIC transport with mutual TLS, in
//! one process: everything the primary commits reaches the replica, in order and
//! exactly once, including across a replica restart.

use needle::replication::primary_replica::primary::log_server::{LogServer, SharedAcks};
use needle::replication::primary_replica::replica::pull::pull_once;
use needle::replication::primary_replica::role::RoleCell;
use needle::replication::{Follower, Role, Wait, WriteConcern};
use needle::served::ServedDatabase;
use needle::{CollectionConfig, Database, Distance, VectorRecord};
use needle_transport::certs::generate_cluster;
use needle_transport::{DeltaCodec, Transport, TransportConfig};
use std::sync::Arc;
use std::time::Duration;

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
    let files = generate_cluster(&dir.path().join("certs"), 2, &[]).unwrap();
    let primary = Database::open(dir.path().join("primary")).unwrap();
    let replica_path = dir.path().join("replica");
    let mut replica = Database::open(&replica_path).unwrap();
    primary
        .create_collection(CollectionConfig::new("docs", 3, Distance::Euclidean))
        .unwrap();
    write_some(&primary, 0, 300);

    let acks = Arc::new(SharedAcks::default());
    let server = LogServer::new(
        ServedDatabase::new(primary.clone()),
        DeltaCodec::default(),
        acks.clone(),
        Arc::default(),
        Arc::new(RoleCell::new(Role::Primary)),
    );
    let addr = "127.0.0.1:0".parse().unwrap();
    let p_transport = Transport::bind(
        addr,
        TransportConfig::new(files.security(1).unwrap()),
        Arc::new(server),
    )
    .unwrap();
    let r_transport = Transport::bind(
        addr,
        TransportConfig::new(files.security(2).unwrap()),
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
    assert_eq!(acks.tracker.lock().wait(last, WriteConcern::All), Wait::Met);

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

mod processes {
    //! A primary and a replica as separate `needle` processes over QUIC + mTLS.

    use crate::cluster::{
        caught_up, create_docs, primary_args, replica_args, start, tls_args, tls_args_trusting,
    };
    use crate::support::{assert_error, vectors, wait_for, Node};
    use serde_json::{json, Value};
    use std::time::Duration;

    fn search(node: &Node) -> Value {
        node.client()
            .post(
                "/collections/docs/search",
                &json!({"vector": [0.1, 0.2, 0.3, 0.4], "k": 15, "filter": {"even": true}}),
            )
            .1
    }

    #[test]
    fn a_replica_process_follows_refuses_writes_and_catches_up_after_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        needle_transport::certs::generate_cluster(&certs, 2, &[]).unwrap();
        let (primary_args, primary_addr) = primary_args(tls_args(&certs, 1));
        let primary = start(&dir.path().join("p"), &primary_args);
        let replica_args = replica_args(&primary_addr, tls_args(&certs, 2));
        let replica = start(&dir.path().join("r"), &replica_args);

        let c = primary.client();
        create_docs(&c, 4, "cosine");
        let items: Vec<Value> = vectors(5, 600, 4)
            .into_iter()
            .enumerate()
            .map(|(i, v)| json!({"id": format!("v{i}"), "vector": v, "metadata": {"even": i % 2 == 0}}))
            .collect();
        for chunk in items.chunks(200) {
            assert_eq!(
                c.post(
                    "/collections/docs/vectors/batch",
                    &json!({"vectors": chunk})
                )
                .0,
                200
            );
        }
        for i in (0..600).step_by(9) {
            c.delete(&format!("/collections/docs/vectors/v{i}"));
        }
        assert!(
            wait_for(Duration::from_secs(30), || caught_up(&primary, &replica)),
            "replica did not catch up"
        );
        assert_eq!(
            replica.client().get("/collections/docs").1["count"],
            primary.client().get("/collections/docs").1["count"]
        );
        assert_eq!(search(&replica), search(&primary));

        // Writes to a replica are refused with the primary's address.
        let refused = replica.client().post(
            "/collections/docs/vectors",
            &json!({"id": "x", "vector": [1, 0, 0, 0]}),
        );
        assert_error(&refused, 421, "NOT_PRIMARY");
        assert_eq!(refused.1["error"]["primary"], primary_addr);

        // The primary knows the replica by its certificate name, and counts traffic.
        let status = c.get("/replication/status").1;
        assert_eq!(status["role"], "primary");
        assert_eq!(status["replicas"][0]["replica"], "node-2", "{status}");
        let metrics = c.get_text("/metrics").1;
        assert!(
            metrics.contains("needle_transport_bytes_received_total"),
            "{metrics}"
        );
        assert!(
            metrics.contains("needle_replication_lag_operations{replica=\"node-2\"} 0"),
            "{metrics}"
        );
        // A primary's lag in seconds, as a Raft leader's (the replica has everything).
        assert!(
            metrics.contains("needle_replication_lag_seconds{replica=\"node-2\"} 0"),
            "{metrics}"
        );
        assert_eq!(status["lag"][0]["replica"], "node-2", "{status}");
        assert!(
            metrics.contains("needle_replication_operations_total{role=\"primary\"}"),
            "{metrics}"
        );
        let replica_metrics = replica.client().get_text("/metrics").1;
        let applied_line = replica_metrics
            .lines()
            .find(|l| l.starts_with("needle_replication_operations_total{role=\"replica\"}"))
            .unwrap_or_else(|| panic!("{replica_metrics}"));
        assert!(!applied_line.ends_with(" 0"), "{applied_line}");
        assert!(
            replica_metrics.contains("needle_replication_lag_seconds"),
            "{replica_metrics}"
        );

        // SIGKILL the replica, write more, restart it: it resumes where it stopped.
        let replica = {
            let data = replica.kill();
            // With the only replica down, the default (majority of 2) cannot be met:
            // these writes ask for the primary alone.
            for chunk in items.chunks(200) {
                let moved: Vec<Value> = chunk
                    .iter()
                    .map(|item| {
                        let mut item = item.clone();
                        item["metadata"]["even"] = json!(true);
                        item
                    })
                    .collect();
                assert_eq!(
                    c.post(
                        "/collections/docs/vectors/batch",
                        &json!({"vectors": moved, "write_concern": "primary"})
                    )
                    .0,
                    200
                );
            }
            // The primary tells how far behind the stopped replica is: the writes it
            // lacks, and the age of the oldest one.
            std::thread::sleep(Duration::from_millis(50));
            let metrics = c.get_text("/metrics").1;
            let gauge = |name: &str| {
                let prefix = format!("{name}{{replica=\"node-2\"}} ");
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix.as_str()))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            assert!(
                gauge("needle_replication_lag_operations").is_some_and(|v| v >= 1.0),
                "{metrics}"
            );
            assert!(
                gauge("needle_replication_lag_seconds").is_some_and(|v| v > 0.0),
                "{metrics}"
            );
            start(&data, &replica_args)
        };
        assert!(
            wait_for(Duration::from_secs(30), || caught_up(&primary, &replica)),
            "replica did not resume"
        );
        assert_eq!(search(&replica), search(&primary));
    }

    #[test]
    fn a_replica_with_a_certificate_from_another_ca_gets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (certs, strangers) = (dir.path().join("certs"), dir.path().join("other"));
        needle_transport::certs::generate_cluster(&certs, 1, &[]).unwrap();
        needle_transport::certs::generate_cluster(&strangers, 2, &[]).unwrap();
        let (primary_args, primary_addr) = primary_args(tls_args(&certs, 1));
        let primary = start(&dir.path().join("p"), &primary_args);
        assert_eq!(
            primary
                .client()
                .post(
                    "/collections",
                    &json!({"name": "docs", "dimensions": 4, "distance": "cosine"})
                )
                .0,
            201
        );
        // Trusts the real CA (so only the primary's check can refuse it).
        let tls = tls_args_trusting(&strangers, 2, &certs.join("ca.pem"));
        let args = replica_args(&primary_addr, tls);
        let stranger = start(&dir.path().join("s"), &args);
        assert!(wait_for(Duration::from_secs(20), || {
            let s = stranger.client().get("/replication/status").1;
            s["stream"]["last_error"].is_string() && s["stream"]["connected"] == json!(false)
        }));
        assert_eq!(
            stranger.client().get("/collections").1["collections"],
            json!([])
        );
    }

    #[test]
    fn write_concerns_wait_for_replicas_and_time_out_when_one_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        needle_transport::certs::generate_cluster(&certs, 3, &[]).unwrap();
        let (mut primary_args, primary_addr) = primary_args(tls_args(&certs, 1));
        primary_args.extend(["--write-timeout-ms".into(), "1000".into()]);
        let primary = start(&dir.path().join("p"), &primary_args);
        let replicas: Vec<Node> = (2..=3)
            .map(|n| {
                let args = replica_args(&primary_addr, tls_args(&certs, n));
                start(&dir.path().join(format!("r{n}")), &args)
            })
            .collect();
        let c = primary.client();
        let create =
            json!({"name": "docs", "dimensions": 2, "distance": "dot", "write_concern": "all"});
        // Until both replicas have connected, "all" may count fewer; wait for both.
        assert!(wait_for(Duration::from_secs(20), || {
            c.get("/replication/status").1["replicas"]
                .as_array()
                .is_some_and(|r| r.len() == 2)
        }));
        assert_eq!(c.post("/collections", &create).0, 201);
        let insert = |id: &str, concern: &str| {
            c.post(
                "/collections/docs/vectors",
                &json!({"id": id, "vector": [1, 2], "write_concern": concern}),
            )
        };
        assert_eq!(insert("a", "all").0, 201);
        for r in &replicas {
            assert_eq!(
                r.client().get("/collections/docs/vectors/a").0,
                200,
                "acknowledged with all"
            );
        }
        assert_error(&insert("bad", "most"), 400, "INVALID_REQUEST");
        assert_eq!(
            c.get("/collections/docs/vectors/bad").0,
            404,
            "a bad concern writes nothing"
        );

        replicas[1].signal("STOP");
        let started = std::time::Instant::now();
        let timed_out = insert("b", "all");
        assert_error(&timed_out, 504, "WRITE_CONCERN_TIMEOUT");
        assert!(timed_out.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("applied on the primary"));
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert_eq!(
            c.get("/collections/docs/vectors/b").0,
            200,
            "applied on the primary"
        );
        assert_eq!(
            insert("c", "majority").0,
            201,
            "primary + one replica is a majority of 3"
        );
        assert_eq!(insert("d", "primary").0, 201);
        assert_eq!(
            replicas[0].client().get("/collections/docs/vectors/c").0,
            200
        );

        replicas[1].signal("CONT");
        assert!(wait_for(Duration::from_secs(20), || caught_up(
            &primary,
            &replicas[1]
        )));
        assert_eq!(
            replicas[1].client().get("/collections/docs/vectors/b").0,
            200
        );
    }

    #[test]
    fn a_replica_behind_the_retained_log_installs_a_snapshot_then_streams() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        needle_transport::certs::generate_cluster(&certs, 2, &[]).unwrap();
        let (mut args, primary_addr) = primary_args(tls_args(&certs, 1));
        args.extend(["--log-retention".to_string(), "16".to_string()]);
        let primary = start(&dir.path().join("p"), &args);
        let c = primary.client();
        create_docs(&c, 4, "cosine");
        let insert = |from: usize, to: usize| {
            for chunk in (from..to).collect::<Vec<_>>().chunks(10) {
                let items: Vec<Value> = chunk
                    .iter()
                    .map(|&i| {
                        let v = vectors(i as u64, 1, 4).remove(0);
                        json!({"id": format!("v{i}"), "vector": v, "metadata": {"even": i % 2 == 0}})
                    })
                    .collect();
                let resp = c.post(
                    "/collections/docs/vectors/batch",
                    &json!({ "vectors": items }),
                );
                assert_eq!(resp.0, 200, "{}", resp.1);
            }
        };
        // 40 writes: far past a 16-entry log, so entry 1 is long gone.
        insert(0, 400);
        let status = c.get("/replication/status").1;
        assert!(status["applied_seq"].as_u64().unwrap() > 16, "{status}");

        let replica = start(
            &dir.path().join("r"),
            &replica_args(&primary_addr, tls_args(&certs, 2)),
        );
        assert!(
            wait_for(Duration::from_secs(60), || caught_up(&primary, &replica)),
            "replica did not catch up: {}",
            replica.client().get("/replication/status").1
        );
        let stream = &replica.client().get("/replication/status").1["stream"];
        assert_eq!(stream["snapshots_installed"], 1, "{stream}");
        assert_eq!(search(&replica), search(&primary));

        // After the snapshot it streams: new writes arrive without another one.
        insert(400, 450);
        c.delete("/collections/docs/vectors/v3");
        assert!(
            wait_for(Duration::from_secs(30), || caught_up(&primary, &replica)),
            "replica stopped following after the snapshot"
        );
        assert_eq!(search(&replica), search(&primary));
        let r = replica.client();
        assert_eq!(r.get("/collections/docs").1["count"], 449);
        assert_eq!(r.get("/collections/docs/vectors/v3").0, 404);
        let stream = &r.get("/replication/status").1["stream"];
        assert_eq!(stream["snapshots_installed"], 1, "{stream}");

        // A restarted replica opens the installed state and resumes from it.
        let replica = replica.restart();
        insert(450, 460);
        assert!(
            wait_for(Duration::from_secs(30), || caught_up(&primary, &replica)),
            "restarted replica did not catch up"
        );
        let stream = &replica.client().get("/replication/status").1["stream"];
        assert_eq!(stream["snapshots_installed"], 0, "{stream}");
        assert_eq!(replica.client().get("/collections/docs").1["count"], 459);
    }
}
