//! Heartbeats of many shard groups to one member: one goes at once, those that
//! come while it is in flight go together as one request, each group still gets
//! its own answer (or its own failure), and the cluster-wide group's heartbeats
//! always go alone, in the wire form they always had.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::network::PeerNetwork;
use needle_consensus::openraft::impls::leader_id_adv::LeaderId;
use needle_consensus::openraft::network::{RPCOption, RaftNetworkFactory};
use needle_consensus::openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use needle_consensus::openraft::vote::RaftLeaderId;
use needle_consensus::openraft::{LogId, RaftNetworkV2};
use needle_consensus::rpc::{RaftRequest, RaftResponse, RAFT_TAG};
use needle_consensus::types::Vote;
use needle_consensus::{ClusterNode, GroupId, Network, TypeConfig};
use needle_transport::{BoxFuture, Handler, PeerInfo, Security, Transport, TransportConfig};

/// A member that answers heartbeats by group: group 1 matches (slowly, so that
/// others queue behind it), group 2 has seen a higher vote, group 4 does not run
/// here, any other group conflicts. In a batch it leaves out the answer for group
/// 5 and names group 6's answer as another group's. It counts what it got.
#[derive(Default)]
struct Follower {
    requests: AtomicUsize,
    batches: AtomicUsize,
    batched: AtomicUsize,
    alone_in_old_form: AtomicUsize,
}

fn answer_for(group: GroupId) -> Result<AppendEntriesResponse<TypeConfig>, String> {
    match group.0 {
        1 => Ok(AppendEntriesResponse::Success),
        2 => Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 9))),
        4 => Err("group 4 does not run on this member".to_string()),
        _ => Ok(AppendEntriesResponse::Conflict),
    }
}

struct Shared(Arc<Follower>);

impl Handler for Shared {
    fn request(&self, _: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let follower = self.0.clone();
        Box::pin(async move {
            follower.requests.fetch_add(1, Ordering::SeqCst);
            let old_form = body.first() == Some(&RAFT_TAG);
            let answer = match RaftRequest::decode(&body) {
                Some(Ok((_, RaftRequest::Heartbeats(batch)))) => {
                    follower.batches.fetch_add(1, Ordering::SeqCst);
                    follower
                        .batched
                        .fetch_add(batch.heartbeats.len(), Ordering::SeqCst);
                    let answers = batch
                        .heartbeats
                        .iter()
                        .filter(|(g, _)| g.0 != 5)
                        .map(|(g, _)| match g.0 {
                            6 => (GroupId(7), answer_for(*g)),
                            _ => (*g, answer_for(*g)),
                        })
                        .collect();
                    RaftResponse::Heartbeats(answers)
                }
                Some(Ok((group, RaftRequest::Append(_)))) => {
                    if old_form {
                        follower.alone_in_old_form.fetch_add(1, Ordering::SeqCst);
                    }
                    if group.0 == 1 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    RaftResponse::Append(answer_for(group)?)
                }
                _ => return Err("unexpected".to_string()),
            };
            RaftResponse::encode(&Ok(answer)).map_err(|e| e.to_string())
        })
    }
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new(LeaderId::new(3, 1).to_committed(), 10)),
        entries: vec![],
        leader_commit: None,
    }
}

fn bind(handler: Arc<dyn Handler>) -> Transport {
    Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        TransportConfig::new(Security::InsecureDev),
        handler,
    )
    .unwrap()
}

struct Quiet;

impl Handler for Quiet {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("none".to_string()) })
    }
}

async fn beat(
    clients: &mut [PeerNetwork],
    ttl: Duration,
) -> Vec<Result<AppendEntriesResponse<TypeConfig>, String>> {
    let option = RPCOption::new(ttl);
    futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| c.append_entries(heartbeat(), option.clone())),
    )
    .await
    .into_iter()
    .map(|a| a.map_err(|e| e.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_heartbeats_queued_behind_one_in_flight_share_one_request_and_keep_their_answers() {
    let follower = Arc::new(Follower::default());
    let remote = bind(Arc::new(Shared(follower.clone())));
    let node = ClusterNode {
        raft_addr: remote.local_addr().unwrap().to_string(),
        http_addr: String::new(),
    };
    let local = bind(Arc::new(Quiet));
    let cluster = Network::new(local.clone());
    let ttl = Duration::from_millis(2000);
    let count = |c: &AtomicUsize| c.load(Ordering::SeqCst);

    // Group 1's heartbeat goes at once and is slow; 2, 3 and 4 come while it
    // is in flight and go together; the cluster group's goes alone, at once.
    let mut clients = Vec::new();
    for group in [1, 2, 3, 4] {
        clients.push(
            cluster
                .for_group(GroupId(group))
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    clients.push(cluster.clone().new_heartbeat_client(2, &node).await);
    let answers = beat(&mut clients, ttl).await;
    assert!(
        matches!(answers[0], Ok(AppendEntriesResponse::Success)),
        "{:?}",
        answers[0]
    );
    assert!(matches!(answers[1], Ok(AppendEntriesResponse::HigherVote(v)) if v == Vote::new(9, 9)));
    assert!(matches!(answers[2], Ok(AppendEntriesResponse::Conflict)));
    let refused = answers[3].as_ref().unwrap_err();
    assert!(refused.contains("does not run on this member"), "{refused}");
    assert!(matches!(answers[4], Ok(AppendEntriesResponse::Conflict)));
    assert_eq!(
        count(&follower.requests),
        3,
        "group 1, the batch, the cluster group"
    );
    assert_eq!((count(&follower.batches), count(&follower.batched)), (1, 3));
    // Group 1 alone went group-addressed; only the cluster group used the old form.
    assert_eq!(count(&follower.alone_in_old_form), 1);
    let stats = cluster.heartbeat_stats();
    assert_eq!(stats.heartbeats.load(Ordering::SeqCst), 5);
    assert_eq!(stats.requests.load(Ordering::SeqCst), 3);

    // A batch answered with an answer missing fails every heartbeat in it; an
    // answer naming another group fails that heartbeat.
    // (A network of its own each time: the last one's lane may still be
    // finishing, and these heartbeats would queue behind it.)
    let fresh = Network::new(local.clone());
    let mut clients = Vec::new();
    for group in [1, 5, 3] {
        clients.push(
            fresh
                .for_group(GroupId(group))
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    let answers = beat(&mut clients, ttl).await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(answers[1].is_err() && answers[2].is_err(), "{answers:?}");
    let fresh = Network::new(local.clone());
    let mut clients = Vec::new();
    for group in [1, 6, 3] {
        clients.push(
            fresh
                .for_group(GroupId(group))
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    let answers = beat(&mut clients, ttl).await;
    assert!(answers[1].is_err(), "{answers:?}");
    assert!(matches!(answers[2], Ok(AppendEntriesResponse::Conflict)));

    // Batching off: one request per heartbeat again.
    let unbatched = Network::new(local.clone()).with_heartbeat_batching(false);
    let before = count(&follower.requests);
    let mut clients = Vec::new();
    for group in [1, 2, 3] {
        clients.push(
            unbatched
                .for_group(GroupId(group))
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    let answers = beat(&mut clients, ttl).await;
    assert_eq!(count(&follower.requests) - before, 3);
    assert!(matches!(
        answers[1],
        Ok(AppendEntriesResponse::HigherVote(_))
    ));

    // A member that is gone: the heartbeat fails within its time.
    remote.close();
    let gone = Network::new(local.clone());
    let mut clients = vec![
        gone.for_group(GroupId(3))
            .new_heartbeat_client(2, &node)
            .await,
    ];
    let started = std::time::Instant::now();
    assert!(beat(&mut clients, Duration::from_millis(200)).await[0].is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    local.close();
}
