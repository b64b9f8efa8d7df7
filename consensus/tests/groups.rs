//! Many Raft groups on one set of members: each member runs one transport
//! endpoint, one log database and one `RaftService`, and every group (the
//! cluster-wide one and a group per shard) runs on them side by side. What a user
//! of the groups would notice: each group elects, commits and applies only its own
//! entries, a member that does not run a group refuses its traffic, and a new
//! replica of a group catches up from that group's snapshot alone.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::entry::RaftEntry;
use needle_consensus::openraft::impls::leader_id_adv::LeaderId;
use needle_consensus::openraft::storage::RaftLogStorage;
use needle_consensus::openraft::vote::RaftLeaderId;
use needle_consensus::openraft::{self, EntryPayload, Instant, RaftLogReader};
use needle_consensus::rpc::{RaftRequest, RaftResponse};
use needle_consensus::types::{Entry, Vote};
use needle_consensus::{ClusterNode, GroupId, HeartbeatBatch, NodeId, TypeConfig};

#[path = "support/members.rs"]
mod members;
#[path = "support/memory.rs"]
mod memory;

use members::{leader_of, write, Member, WAIT};

/// What every member of `group` applied, once they all agree (a member's metrics
/// may lag what it applied, so the test compares what was applied, until equal).
async fn applied_everywhere(members: &[Member], group: GroupId) -> Vec<Vec<u8>> {
    let holders: Vec<&Member> = members
        .iter()
        .filter(|m| m.groups.contains_key(&group))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT.unwrap();
    loop {
        let applied: Vec<Vec<Vec<u8>>> =
            holders.iter().map(|m| m.memory(group).payloads()).collect();
        if applied.windows(2).all(|w| w[0] == w[1]) {
            return applied.into_iter().next().unwrap();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{group} differs between its members: {applied:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The payloads as text, each once: the test's client retries a write whose
/// leader was lost without knowing whether it committed (payloads are unique, so
/// a second copy is that retry, not the groups mixing).
fn texts(payloads: &[Vec<u8>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_on_shared_members_keep_apart_and_a_new_replica_catches_up_from_its_group_alone() {
    let root = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=3).map(|id| Member::start(id, root.path())).collect();
    // Shard groups beat on each member's one clock, their own timers off.
    for member in &members {
        member
            .service
            .start_heartbeat_clock(Duration::from_millis(50))
            .unwrap();
    }
    let (docs, images) = (GroupId(7), GroupId(9));
    // The cluster group and `docs` on all three members; `images` on 1 and 2 only.
    let placement = [
        (GroupId::CLUSTER, vec![0, 1, 2]),
        (docs, vec![0, 1, 2]),
        (images, vec![0, 1]),
    ];
    for (group, on) in &placement {
        for &i in on {
            members[i].run_group(*group).await;
        }
        let voters: BTreeMap<NodeId, ClusterNode> = on
            .iter()
            .map(|&i| (members[i].id, members[i].node()))
            .collect();
        members[on[0]]
            .raft(*group)
            .initialize(voters)
            .await
            .unwrap();
    }

    for i in 0..20 {
        write(&members, docs, &format!("doc-{i}")).await;
        write(&members, images, &format!("image-{i}")).await;
        if i % 5 == 0 {
            write(&members, GroupId::CLUSTER, &format!("map-{i}")).await;
        }
    }

    // Each group applied its own entries, in order, on each of its members.
    let expected = |prefix: &str, n: usize, step: usize| -> Vec<String> {
        (0..n)
            .step_by(step)
            .map(|i| format!("{prefix}-{i}"))
            .collect()
    };
    assert_eq!(
        texts(&applied_everywhere(&members, docs).await),
        expected("doc", 20, 1)
    );
    assert_eq!(
        texts(&applied_everywhere(&members, images).await),
        expected("image", 20, 1)
    );
    assert_eq!(
        texts(&applied_everywhere(&members, GroupId::CLUSTER).await),
        expected("map", 20, 5)
    );

    // Left alone, each shard group's leader keeps hearing from a quorum: its
    // heartbeats come from the members' clocks (with their own timers off and no
    // clock, an idle leader's last quorum acknowledgement only grows old, until
    // a follower campaigns). Sampled every 100 ms for 2 s; a loaded machine may
    // miss a sample or two.
    let mut stale = Vec::new();
    for sample in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (group, on) in &placement[1..] {
            let acked = on.iter().find_map(|&i| {
                let metrics = members[i].raft(*group).metrics().borrow_watched().clone();
                (metrics.current_leader == Some(members[i].id))
                    .then(|| metrics.last_quorum_acked.map(|at| at.elapsed()))
                    .flatten()
            });
            if acked.is_none_or(|age| age >= Duration::from_millis(250)) {
                stale.push((sample, *group, acked));
            }
        }
    }
    assert!(
        stale.len() <= 2,
        "leaders without a fresh quorum acknowledgement: {stale:?}"
    );

    // The logs keep apart in the one database: `docs`' log holds only docs'
    // entries, and the member that does not run `images` stored nothing of it.
    let mut docs_log = members[2].log.group(docs).unwrap();
    let entries = docs_log.try_get_log_entries(0..u64::MAX).await.unwrap();
    let state = docs_log.get_log_state().await.unwrap();
    // Purged behind snapshots, but what is left is docs' own, up to its end.
    assert!(state.last_log_id.is_some_and(|l| l.index >= 20));
    assert_eq!(
        entries.last().map(|e| e.log_id),
        state.last_log_id.filter(|_| !entries.is_empty())
    );
    assert!(!entries.is_empty() || state.last_purged_log_id == state.last_log_id);
    assert!(entries.iter().all(|e| match &e.payload {
        EntryPayload::Normal(c) => c.payload.starts_with(b"doc-"),
        _ => true,
    }));
    assert_eq!(members[2].log.stored_groups().unwrap(), vec![docs]);
    assert_eq!(members[0].log.stored_groups().unwrap(), vec![docs, images]);
    assert_eq!(
        members[0].service.groups(),
        vec![GroupId::CLUSTER, docs, images]
    );

    // A member that does not run a group refuses its RPCs, as a member that is
    // starting would, instead of handing them to another group.
    let peer = members[0]
        .transport
        .connect(members[2].addr())
        .await
        .unwrap();
    let vote = RaftRequest::Vote(openraft::raft::VoteRequest::new(Vote::new(99, 1), None));
    let answer = peer
        .request(&vote.encode_for(images).unwrap())
        .await
        .unwrap();
    let refused = RaftResponse::decode(&answer).unwrap().unwrap_err();
    assert!(refused.contains("does not run on this member"), "{refused}");

    // A batch of heartbeats to a real member: each item gets its own answer,
    // named by its group, in order; the member refuses items for groups it does
    // not run, the cluster group's (never batched) and any carrying entries.
    let stale = || openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(0, 0),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let mut with_entries = stale();
    with_entries
        .entries
        .push(Entry::new_blank(openraft::LogId::new(
            LeaderId::new(0, 0).to_committed(),
            1,
        )));
    let batch = RaftRequest::Heartbeats(HeartbeatBatch {
        wait_ms: 2000,
        heartbeats: vec![
            (docs, stale()),
            (images, stale()),
            (GroupId::CLUSTER, stale()),
            (docs, with_entries),
        ],
    });
    let answer = peer
        .request(&batch.encode_for(GroupId::CLUSTER).unwrap())
        .await
        .unwrap();
    let Ok(RaftResponse::Heartbeats(answers)) = RaftResponse::decode(&answer).unwrap() else {
        panic!("a heartbeat batch answered with something else");
    };
    let named: Vec<GroupId> = answers.iter().map(|(g, _)| *g).collect();
    assert_eq!(named, vec![docs, images, GroupId::CLUSTER, docs]);
    assert!(
        matches!(
            answers[0].1,
            Ok(openraft::raft::AppendEntriesResponse::HigherVote(_))
        ),
        "{:?}",
        answers[0].1
    );
    let refusal = |i: usize| answers[i].1.as_ref().unwrap_err().clone();
    assert!(
        refusal(1).contains("does not run on this member"),
        "{}",
        refusal(1)
    );
    assert!(refusal(2).contains("cluster group"), "{}", refusal(2));
    assert!(refusal(3).contains("carried entries"), "{}", refusal(3));

    // Snapshots were taken every 8 entries and the log purged behind them, so a
    // new replica of `images` on member 3 can only catch up from its group's
    // snapshot, sent through the shared endpoint.
    members[2].run_group(images).await;
    let node = members[2].node();
    let grown = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            // Asked of whoever leads now: a leader lost meanwhile answers with an
            // error, and the next one is asked.
            let raft = members[leader_of(&members, images).await]
                .raft(images)
                .clone();
            if raft.add_learner(3, node.clone(), true).await.is_ok()
                && raft.change_membership([1, 2, 3], false).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(grown.is_ok(), "member 3 never joined images within 60 s");
    write(&members, images, "image-after").await;
    let mut all = expected("image", 20, 1);
    all.push("image-after".into());
    assert_eq!(texts(&applied_everywhere(&members, images).await), all);
    assert!(
        members[2].memory(images).installed.load(Ordering::SeqCst) >= 1,
        "member 3 caught up without a snapshot: the test no longer shows one"
    );
    // `docs` on member 3 is untouched by `images`' snapshot.
    assert_eq!(
        texts(&members[2].memory(docs).payloads()),
        expected("doc", 20, 1)
    );

    for member in &members {
        for (raft, _) in member.groups.values() {
            raft.shutdown().await.unwrap();
        }
        member.transport.close();
    }
}

#[test]
fn the_heartbeat_clock_needs_a_runtime_and_an_interval_and_starts_once() {
    let root = tempfile::tempdir().unwrap();
    let inbox = needle_consensus::SnapshotInbox::open(&root.path().join("inbox")).unwrap();
    let service =
        needle_consensus::RaftService::<memory::Memory>::new(Arc::new(memory::NoApp), inbox);
    // Outside any runtime: refused, not a panic.
    let refused = service
        .start_heartbeat_clock(Duration::from_millis(50))
        .unwrap_err();
    assert!(refused.to_string().contains("runtime"), "{refused}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let refused = service.start_heartbeat_clock(Duration::ZERO).unwrap_err();
    assert!(refused.to_string().contains("above zero"), "{refused}");
    service
        .start_heartbeat_clock(Duration::from_millis(50))
        .unwrap();
    // Again with the same interval: nothing to do. With another: refused, not
    // silently ignored.
    service
        .start_heartbeat_clock(Duration::from_millis(50))
        .unwrap();
    let refused = service
        .start_heartbeat_clock(Duration::from_millis(10))
        .unwrap_err();
    assert!(refused.to_string().contains("50 ms already"), "{refused}");
}
