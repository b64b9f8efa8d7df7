//! Manual failover with real processes: a primary cut off from its two replicas keeps
//! taking writes that never replicate; a replica is promoted (a new epoch), the other
//! re-pointed to it, the old primary is fenced once it can be reached and, demoted,
//! discards exactly its unreplicated tail. Writes acknowledged with `majority` survive.

use crate::cluster::{caught_up, create_docs, trio, Trio};
use crate::support::{assert_error, needle, vectors, wait_for, Client, Node};
use serde_json::{json, Value};
use std::time::Duration;

fn insert(c: &Client, id: &str, seed: u64, concern: &str) -> (u16, Value) {
    c.post(
        "/collections/docs/vectors",
        &json!({"id": id, "vector": vectors(seed, 1, 4)[0], "write_concern": concern}),
    )
}

fn failover(url: &str, args: &[&str]) -> Value {
    let mut all = vec![args[0], "--url", url, "--admin-key", "k"];
    all.extend(&args[1..]);
    let (ok, stdout, stderr) = needle(&all);
    assert!(ok, "needle {all:?}: {stderr}");
    serde_json::from_str(&stdout).expect("JSON answer")
}

fn status(node: &Node) -> Value {
    node.client().get("/replication/status").1
}

fn search(node: &Node) -> Value {
    node.client()
        .post(
            "/collections/docs/search",
            &json!({"vector": [0.3, -0.2, 0.5, 0.1], "k": 20}),
        )
        .1
}

#[test]
fn promotion_fences_the_old_primary_and_demotion_discards_only_its_unreplicated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let Trio {
        p,
        r1,
        r2,
        p_addr,
        r1_addr,
        r2_addr,
    } = trio(dir.path(), |n| {
        let mut args = ["--admin-key", "k", "--write-timeout-ms", "500"]
            .map(String::from)
            .to_vec();
        if n == 1 {
            args.push("--fault-injection".into());
        }
        args
    });
    let c = p.client();
    create_docs(&c, 4, "cosine");
    let mut kept: Vec<String> = Vec::new();
    for i in 0..60 {
        let id = format!("v{i}");
        assert_eq!(insert(&c, &id, i, "majority").0, 201);
        kept.push(id);
    }
    assert!(wait_for(Duration::from_secs(30), || caught_up(&p, &r1)
        && caught_up(&p, &r2)));
    assert_eq!(status(&p)["epoch"], 1);

    // Cut the primary off from both replicas; it goes on taking writes nobody gets.
    let cut = p.admin_client().post(
        "/debug/faults",
        &json!({"partitions": [[p_addr], [r1_addr, r2_addr]]}),
    );
    assert_eq!(cut.0, 200, "{}", cut.1);
    // A long poll the replicas had in flight when the cut came may still return one
    // batch; let those finish so the writes below reach no one.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..5 {
        assert_eq!(insert(&c, &format!("tail{i}"), 100 + i, "primary").0, 201);
    }
    // A majority write cannot be confirmed: applied on the primary, reported as such.
    assert_error(
        &insert(&c, "unconfirmed", 200, "majority"),
        504,
        "WRITE_CONCERN_TIMEOUT",
    );

    // Failover routes need the admin key.
    assert_error(
        &r1.client().post("/replication/promote", &json!({})),
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &c.post("/replication/demote", &json!({"primary": r1_addr})),
        401,
        "UNAUTHORIZED",
    );
    // Promote r1: epoch 2. It takes writes at once.
    let promoted = failover(&r1.url, &["promote"]);
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    assert_eq!(status(&r1)["role"], "primary");
    let r1c = r1.client();
    for i in 0..3 {
        let id = format!("new{i}");
        assert_eq!(insert(&r1c, &id, 300 + i, "primary").0, 201);
        kept.push(id);
    }
    // Re-point r2: it never had anything r1 lacks, so nothing is discarded.
    let repointed = failover(&r2.url, &["demote", "--primary", &r1_addr]);
    assert_eq!(repointed["discarded"], 0, "{repointed}");
    assert_eq!(repointed["epoch"], 2, "{repointed}");
    let id = "after-repoint".to_string();
    assert_eq!(
        insert(&r1c, &id, 400, "all").0,
        201,
        "r2 acknowledges r1's writes"
    );
    kept.push(id);

    // Until the partition heals the old primary cannot hear of epoch 2; then it is
    // fenced within seconds and sends writers to r1.
    assert_eq!(p.admin_client().delete("/debug/faults").0, 200);
    assert!(
        wait_for(Duration::from_secs(15), || insert(
            &c, "late", 500, "primary"
        )
        .0 == 421),
        "the old primary was not fenced: {}",
        status(&p)
    );
    let refused = insert(&c, "late2", 501, "primary");
    assert_error(&refused, 421, "NOT_PRIMARY");
    assert_eq!(refused.1["error"]["primary"], r1_addr.as_str());
    assert_eq!(status(&p)["role"], "fenced");
    let late_writes = if c.get("/collections/docs/vectors/late").0 == 200 {
        1
    } else {
        0
    };

    // Demote the old primary: its 6 (or 7, with a "late" write before the fence)
    // operations past epoch 1's end are discarded, counted and reported.
    let p_applied = status(&p)["applied_seq"].as_u64().unwrap();
    let demoted = failover(&p.url, &["demote", "--primary", &r1_addr]);
    // Exactly what it applied past the point r1 was promoted at.
    assert_eq!(
        demoted["discarded"].as_u64().unwrap(),
        p_applied - promoted["applied_seq"].as_u64().unwrap(),
        "{demoted}"
    );
    assert_eq!(demoted["discarded"], 6 + late_writes, "{demoted}");
    assert_eq!(demoted["epoch"], 2);
    let metrics = c.get_text("/metrics").1;
    assert!(
        metrics.contains(&format!(
            "needle_replication_discarded_operations_total {}",
            6 + late_writes
        )),
        "{metrics}"
    );

    // All three converge on r1's history.
    assert!(
        wait_for(Duration::from_secs(30), || caught_up(&r1, &p)
            && caught_up(&r1, &r2)),
        "no convergence: {} {} {}",
        status(&r1),
        status(&p),
        status(&r2)
    );
    for node in [&p, &r1, &r2] {
        let nc = node.client();
        for id in &kept {
            assert_eq!(
                nc.get(&format!("/collections/docs/vectors/{id}")).0,
                200,
                "{id} on {}",
                node.url
            );
        }
        for id in ["tail0", "tail4", "unconfirmed", "late", "late2"] {
            assert_eq!(
                nc.get(&format!("/collections/docs/vectors/{id}")).0,
                404,
                "{id} on {}",
                node.url
            );
        }
        assert_eq!(nc.get("/collections/docs").1["count"], kept.len());
        assert_eq!(status(node)["epoch"], 2);
    }
    assert_eq!(search(&p), search(&r1));
    assert_eq!(search(&r2), search(&r1));
    // The old primary now follows: a write there is sent to r1.
    assert_error(&insert(&c, "x", 1, "primary"), 421, "NOT_PRIMARY");
}

#[test]
fn promoting_a_lagging_replica_takes_what_its_peer_has_and_needs_a_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let Trio {
        p,
        r1,
        r2,
        p_addr,
        r2_addr,
        ..
    } = trio(dir.path(), |n| {
        let mut args = ["--admin-key", "k"].map(String::from).to_vec();
        if n == 3 {
            args.push("--fault-injection".into());
        }
        args
    });
    let c = p.client();
    create_docs(&c, 4, "cosine");
    for i in 0..20 {
        assert_eq!(insert(&c, &format!("v{i}"), i, "majority").0, 201);
    }
    assert!(wait_for(Duration::from_secs(30), || caught_up(&p, &r1)
        && caught_up(&p, &r2)));

    // r2 loses the primary; three writes still reach a majority through r1.
    let r2c = r2.admin_client();
    assert_eq!(
        r2c.post(
            "/debug/faults",
            &json!({"partitions": [[r2_addr], [p_addr]]})
        )
        .0,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..3 {
        assert_eq!(insert(&c, &format!("m{i}"), 50 + i, "majority").0, 201);
    }
    assert!(wait_for(Duration::from_secs(10), || caught_up(&p, &r1)));
    assert_eq!(r2c.get("/collections/docs/vectors/m0").0, 404);

    // The primary dies. r2, the replica that missed them, cannot be promoted while
    // r1 is unreachable: of the three nodes it would hear only from itself, and the
    // three writes live on the other two.
    drop(p);
    assert_eq!(r2c.delete("/debug/faults").0, 200);
    r1.signal("STOP");
    let (ok, _, stderr) = needle(&["promote", "--url", &r2.url, "--admin-key", "k"]);
    r1.signal("CONT");
    assert!(!ok && stderr.contains("ROLE_CONFLICT"), "{stderr}");
    assert_eq!(status(&r2)["role"], "replica");
    // With r1 back, promotion finds it among the replicas the primary last reported
    // and takes the three writes from it before its epoch begins.
    let promoted = failover(&r2.url, &["promote"]);
    assert_eq!(promoted["caught_up"], 3, "{promoted}");
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    let demoted = failover(&r1.url, &["demote", "--primary", &r2_addr]);
    assert_eq!(demoted["discarded"], 0, "{demoted}");
    assert_eq!(insert(&r2c, "after", 99, "all").0, 201);
    for node in [&r1, &r2] {
        let nc = node.client();
        for id in ["m0", "m1", "m2", "v19", "after"] {
            assert_eq!(
                nc.get(&format!("/collections/docs/vectors/{id}")).0,
                200,
                "{id} on {}",
                node.url
            );
        }
        assert_eq!(nc.get("/collections/docs").1["count"], 24);
    }
}

/// A trio with fault injection and a 1 s write timeout, `docs` created and one write
/// ("before") on every node.
fn trio_with_one_write(dir: &std::path::Path) -> Trio {
    let trio = trio(dir, |_| {
        [
            "--admin-key",
            "k",
            "--write-timeout-ms",
            "1000",
            "--fault-injection",
        ]
        .map(String::from)
        .to_vec()
    });
    let c = trio.p.client();
    create_docs(&c, 4, "cosine");
    assert_eq!(insert(&c, "before", 1, "majority").0, 201);
    assert!(wait_for(Duration::from_secs(10), || caught_up(
        &trio.p, &trio.r1
    ) && caught_up(
        &trio.p, &trio.r2
    )));
    trio
}

/// The race the consistency suite found: a promotion catches up from r2 while the old
/// primary, which has not heard of the promotion yet, keeps taking writes. r2 has
/// promised the new epoch, so it acknowledges none of them: a `majority` write on the
/// old primary times out instead of being acknowledged and then discarded.
#[test]
fn a_replica_a_promotion_caught_up_from_acknowledges_nothing_more_to_the_old_primary() {
    let dir = tempfile::tempdir().unwrap();
    let Trio {
        p,
        r1,
        r2,
        p_addr,
        r1_addr,
        r2_addr,
    } = trio_with_one_write(dir.path());
    let c = p.client();
    // r1 cannot reach the old primary, so its fence notice does not arrive yet.
    let cut = json!({"partitions": [[r1_addr], [p_addr]]});
    assert_eq!(r1.admin_client().post("/debug/faults", &cut).0, 200);
    let promoted = failover(&r1.url, &["promote", "--peer", &r2_addr]);
    assert_eq!(promoted["epoch"], 2, "{promoted}");
    assert_eq!(status(&p)["role"], "primary");
    // r2 still follows the old primary but has promised epoch 2: no acknowledgement.
    assert_error(
        &insert(&c, "during", 2, "majority"),
        504,
        "WRITE_CONCERN_TIMEOUT",
    );
    assert!(
        wait_for(Duration::from_secs(5), || status(&r2)["stream"]
            ["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("promised"))),
        "{}",
        status(&r2)
    );
    assert_eq!(r2.client().get("/collections/docs/vectors/during").0, 404);
    // Healed: the old primary learns of epoch 2 and, demoted, discards the write
    // nobody else has; r2, re-pointed, discards nothing.
    assert_eq!(r1.admin_client().delete("/debug/faults").0, 200);
    assert!(wait_for(Duration::from_secs(10), || status(&p)["role"] == "fenced"));
    let demoted = failover(&p.url, &["demote", "--primary", &r1_addr]);
    assert_eq!(demoted["discarded"], 1, "{demoted}");
    let repointed = failover(&r2.url, &["demote", "--primary", &r1_addr]);
    assert_eq!(repointed["discarded"], 0, "{repointed}");
    assert_eq!(insert(&r1.client(), "after", 3, "all").0, 201);
    for node in [&p, &r1, &r2] {
        let nc = node.client();
        assert_eq!(nc.get("/collections/docs/vectors/before").0, 200);
        assert_eq!(nc.get("/collections/docs/vectors/after").0, 200);
        assert_eq!(nc.get("/collections/docs/vectors/during").0, 404);
    }
}

/// The second bug the consistency suite found: a primary kept its replicas'
/// acknowledgements across epochs. Sequence numbers are reused after a demotion
/// discards entries, so when p became primary again, r2's acknowledgement of an entry
/// p had discarded counted for a new one, and a `majority` write nobody else had was
/// acknowledged at once.
#[test]
fn acknowledgements_from_an_earlier_epoch_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let Trio {
        p,
        r1,
        r2,
        p_addr,
        r1_addr,
        r2_addr,
    } = trio_with_one_write(dir.path());
    let c = p.client();
    // r1 is cut off from both; p writes five entries only r2 acknowledges.
    let cut = json!({"partitions": [[r1_addr], [p_addr, r2_addr]]});
    assert_eq!(r1.admin_client().post("/debug/faults", &cut).0, 200);
    for i in 0..5 {
        assert_eq!(insert(&c, &format!("m{i}"), 10 + i, "majority").0, 201);
    }
    // r1 is forced in without them (epoch 2); p and r2 discard them when re-pointed.
    let forced = failover(&r1.url, &["promote", "--force"]);
    assert_eq!(forced["epoch"], 2, "{forced}");
    assert_eq!(r1.admin_client().delete("/debug/faults").0, 200);
    // (A pull already in flight may have brought r1 the first of them.)
    let r2_discarded = failover(&r2.url, &["demote", "--primary", &r1_addr])["discarded"].clone();
    assert!(
        r2_discarded.as_u64().is_some_and(|d| d >= 4),
        "{r2_discarded}"
    );
    let p_discarded = failover(&p.url, &["demote", "--primary", &r1_addr])["discarded"].clone();
    assert_eq!(p_discarded, r2_discarded);
    assert_eq!(insert(&r1.client(), "b0", 20, "all").0, 201);
    // p is promoted again (epoch 3) with r1 and r2 behind it, then both stop.
    let promoted = failover(&p.url, &["promote", "--peer", &r2_addr]);
    assert_eq!(promoted["epoch"], 3, "{promoted}");
    failover(&r2.url, &["demote", "--primary", &p_addr]);
    failover(&r1.url, &["demote", "--primary", &p_addr]);
    assert!(wait_for(Duration::from_secs(10), || caught_up(&p, &r2)));
    r1.signal("STOP");
    r2.signal("STOP");
    // r2's old acknowledgement of m0..m4 must not stand for this write.
    let lonely = insert(&c, "lonely", 30, "majority");
    r1.signal("CONT");
    r2.signal("CONT");
    assert_error(&lonely, 504, "WRITE_CONCERN_TIMEOUT");
}
