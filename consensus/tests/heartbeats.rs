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

/// A heartbeat client of each of `groups` on `network`, to `node` (member 2).
async fn heartbeat_clients(
    network: &Network,
    groups: &[u64],
    node: &ClusterNode,
) -> Vec<PeerNetwork> {
    let mut clients = Vec::new();
    for &group in groups {
        clients.push(
            network
                .for_group(GroupId(group))
                .new_heartbeat_client(2, node)
                .await,
        );
    }
    clients
}

async fn beat(
    clients: &mut [PeerNetwork],
    ttl: Duration,
) -> Vec<Result<AppendEntriesResponse<TypeConfig>, String>> {
    let ttls = vec![ttl; clients.len()];
    beat_each(clients, &ttls).await
}

/// One heartbeat from each client, all at once, each waiting its own `ttls[i]`.
async fn beat_each(
    clients: &mut [PeerNetwork],
    ttls: &[Duration],
) -> Vec<Result<AppendEntriesResponse<TypeConfig>, String>> {
    futures_util::future::join_all(
        clients
            .iter_mut()
            .zip(ttls)
            .map(|(c, ttl)| c.append_entries(heartbeat(), RPCOption::new(*ttl))),
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
    let mut clients = heartbeat_clients(&cluster, &[1, 2, 3, 4], &node).await;
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
    // (Group 5's answer last: the answers left are then named rightly, so 3's
    // fails for the missing one alone.)
    let mut clients = heartbeat_clients(&fresh, &[1, 3, 5], &node).await;
    let answers = beat(&mut clients, ttl).await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(answers[1].is_err() && answers[2].is_err(), "{answers:?}");
    let fresh = Network::new(local.clone());
    let mut clients = heartbeat_clients(&fresh, &[1, 6, 3], &node).await;
    let answers = beat(&mut clients, ttl).await;
    assert!(answers[1].is_err(), "{answers:?}");
    assert!(matches!(answers[2], Ok(AppendEntriesResponse::Conflict)));

    // Batching off: one request per heartbeat again.
    let unbatched = Network::new(local.clone()).with_heartbeat_batching(false);
    let before = count(&follower.requests);
    let mut clients = heartbeat_clients(&unbatched, &[1, 2, 3], &node).await;
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

/// A member whose group 1 stalls on a heartbeat sent alone; it notes what each
/// batch carried and how many requests were still unanswered when it came.
#[derive(Default)]
struct Stalling {
    unanswered: AtomicUsize,
    batched: parking_lot::Mutex<Vec<(u64, usize)>>,
}

struct StallingHandler(Arc<Stalling>);

impl Handler for StallingHandler {
    fn request(&self, _: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let member = self.0.clone();
        Box::pin(async move {
            let answer = match RaftRequest::decode(&body) {
                Some(Ok((_, RaftRequest::Heartbeats(batch)))) => {
                    let unanswered = member.unanswered.load(Ordering::SeqCst);
                    let mut batched = member.batched.lock();
                    for (group, _) in &batch.heartbeats {
                        batched.push((group.0, unanswered));
                    }
                    RaftResponse::Heartbeats(
                        batch
                            .heartbeats
                            .iter()
                            .map(|(g, _)| (*g, Ok(AppendEntriesResponse::Success)))
                            .collect(),
                    )
                }
                Some(Ok((_, RaftRequest::Append(_)))) => {
                    member.unanswered.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    member.unanswered.fetch_sub(1, Ordering::SeqCst);
                    RaftResponse::Append(AppendEntriesResponse::Success)
                }
                _ => return Err("unexpected".to_string()),
            };
            RaftResponse::encode(&Ok(answer)).map_err(|e| e.to_string())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_queued_behind_a_stalled_one_still_go_and_each_group_sends_its_newest() {
    let member = Arc::new(Stalling::default());
    let remote = bind(Arc::new(StallingHandler(member.clone())));
    let node = ClusterNode {
        raft_addr: remote.local_addr().unwrap().to_string(),
        http_addr: String::new(),
    };
    let local = bind(Arc::new(Quiet));
    let network = Network::new(local.clone());
    // Group 1's heartbeat stalls on the follower for 1.5 s. Behind it queue
    // two of group 2 (the newer replaces the older) and one of group 3, whose
    // sender stops waiting after 100 ms.
    let mut clients = heartbeat_clients(&network, &[1, 2, 2, 3], &node).await;
    let long = Duration::from_secs(3);
    let answers = beat_each(
        &mut clients,
        &[long, long, long, Duration::from_millis(100)],
    )
    .await;
    assert!(
        matches!(answers[0], Ok(AppendEntriesResponse::Success)),
        "{answers:?}"
    );
    let replaced = answers[1].as_ref().unwrap_err();
    assert!(replaced.contains("replaced by a newer one"), "{replaced}");
    assert!(
        matches!(answers[2], Ok(AppendEntriesResponse::Success)),
        "{answers:?}"
    );
    assert!(answers[3].is_err(), "{answers:?}");
    // They went while group 1's request was still unanswered, one heartbeat
    // per group, group 3's too: it still resets its follower's election timer.
    let mut batched = member.batched.lock().clone();
    batched.sort_unstable();
    assert_eq!(batched, vec![(2, 1), (3, 1)]);
    let stats = network.heartbeat_stats();
    assert_eq!(stats.heartbeats.load(Ordering::SeqCst), 3);
    assert_eq!(stats.answered.load(Ordering::SeqCst), 3);
    remote.close();
    local.close();
}
