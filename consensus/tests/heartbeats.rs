//! Heartbeats of many groups to one member travel as one request, each group
//! still getting its own answer; a member with only the cluster-wide group sends
//! its heartbeats alone, in the wire form it always used.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::impls::leader_id_adv::LeaderId;
use needle_consensus::openraft::network::{RPCOption, RaftNetworkFactory};
use needle_consensus::openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use needle_consensus::openraft::vote::RaftLeaderId;
use needle_consensus::openraft::{LogId, RaftNetworkV2};
use needle_consensus::rpc::{RaftRequest, RaftResponse, RAFT_TAG};
use needle_consensus::types::Vote;
use needle_consensus::{ClusterNode, GroupId, Network, TypeConfig};
use needle_transport::{BoxFuture, Handler, PeerInfo, Security, Transport, TransportConfig};

/// A member that answers heartbeats by group: group 1 matches, group 2 has seen
/// a higher vote, any other group conflicts. It counts the requests it got.
#[derive(Default)]
struct Follower {
    requests: AtomicUsize,
    batched: AtomicUsize,
    alone_in_old_form: AtomicUsize,
}

fn answer_for(group: GroupId) -> AppendEntriesResponse<TypeConfig> {
    match group.0 {
        1 => AppendEntriesResponse::Success,
        2 => AppendEntriesResponse::HigherVote(Vote::new(9, 9)),
        _ => AppendEntriesResponse::Conflict,
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
                Some(Ok((_, RaftRequest::Heartbeats(list)))) => {
                    follower.batched.fetch_add(list.len(), Ordering::SeqCst);
                    RaftResponse::Heartbeats(list.iter().map(|(g, _)| Ok(answer_for(*g))).collect())
                }
                Some(Ok((group, RaftRequest::Append(_)))) => {
                    if old_form {
                        follower.alone_in_old_form.fetch_add(1, Ordering::SeqCst);
                    }
                    RaftResponse::Append(answer_for(group))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_several_groups_share_one_request_and_keep_their_own_answers() {
    let follower = Arc::new(Follower::default());
    let remote = bind(Arc::new(Shared(follower.clone())));
    let node = ClusterNode {
        raft_addr: remote.local_addr().unwrap().to_string(),
        http_addr: String::new(),
    };
    let local = bind(Arc::new(Quiet));
    let cluster = Network::new(local.clone());
    let option = RPCOption::new(Duration::from_millis(500));

    // Only the cluster group: alone, in the old wire form.
    let mut client = cluster.clone().new_heartbeat_client(2, &node).await;
    let answer = client.append_entries(heartbeat(), option.clone()).await;
    assert!(matches!(answer, Ok(AppendEntriesResponse::Conflict)));
    assert_eq!(follower.alone_in_old_form.load(Ordering::SeqCst), 1);

    // Three shard groups and the cluster group beating at once: one request.
    let before = follower.requests.load(Ordering::SeqCst);
    let mut clients = Vec::new();
    for group in [GroupId(1), GroupId(2), GroupId(3)] {
        clients.push(
            cluster
                .for_group(group)
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    clients.push(cluster.clone().new_heartbeat_client(2, &node).await);
    let answers = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| c.append_entries(heartbeat(), option.clone())),
    )
    .await;
    assert_eq!(follower.requests.load(Ordering::SeqCst) - before, 1);
    assert_eq!(follower.batched.load(Ordering::SeqCst), 4);
    assert!(matches!(answers[0], Ok(AppendEntriesResponse::Success)));
    assert!(matches!(answers[1], Ok(AppendEntriesResponse::HigherVote(v)) if v == Vote::new(9, 9)));
    assert!(matches!(answers[2], Ok(AppendEntriesResponse::Conflict)));
    assert!(matches!(answers[3], Ok(AppendEntriesResponse::Conflict)));
    let stats = cluster.heartbeat_stats();
    assert_eq!(stats.heartbeats.load(Ordering::SeqCst), 5);
    assert_eq!(stats.requests.load(Ordering::SeqCst), 2);

    // Batching off: one request per heartbeat again.
    let unbatched = Network::new(local.clone()).with_heartbeat_window(Duration::ZERO);
    let before = follower.requests.load(Ordering::SeqCst);
    let mut clients = Vec::new();
    for group in [GroupId(1), GroupId(2)] {
        clients.push(
            unbatched
                .for_group(group)
                .new_heartbeat_client(2, &node)
                .await,
        );
    }
    let answers = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| c.append_entries(heartbeat(), option.clone())),
    )
    .await;
    assert_eq!(follower.requests.load(Ordering::SeqCst) - before, 2);
    assert!(matches!(answers[0], Ok(AppendEntriesResponse::Success)));

    // A member that is gone: every heartbeat of the batch fails, within its time.
    remote.close();
    let gone = Network::new(local.clone());
    let mut client = gone
        .for_group(GroupId(1))
        .new_heartbeat_client(2, &node)
        .await;
    let short = RPCOption::new(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert!(client.append_entries(heartbeat(), short).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    local.close();
}
