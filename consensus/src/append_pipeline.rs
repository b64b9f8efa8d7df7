//! Replication to one follower as a pipeline. openraft hands the network a
//! stream of AppendEntries (a new one as soon as its leader has submitted more
//! entries to its own log); stop-and-wait would send the next only after the
//! follower answered the previous one, so every batch would wait out a round
//! trip and the follower's fsync. Here up to [`IN_FLIGHT`] are on their way at
//! once on one ordered transport stream: the follower takes the next while its
//! log still syncs the previous ones (its syncs then merge), and answers come
//! back in order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use needle_transport::{AnswerReceiver, RequestSender, TransportError};
use openraft::error::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::append_bounds::{bounded_append, plausible, APPEND_TIMEOUT, MAX_APPEND_BYTES};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::shared_connections::{forget, OpenConnections, SharedPeer};
use crate::types::{GroupId, LogId, NodeId, TypeConfig, Vote};

/// AppendEntries sent and not yet answered, at most. Each carries at most
/// [`MAX_APPEND_BYTES`] of entries.
pub const IN_FLIGHT: usize = 8;

/// How long an answer to an entry-less AppendEntries (a new commit index) may
/// take once the one before it came (an answer with entries may take
/// [`APPEND_TIMEOUT`]: the follower also syncs them). Longer than openraft's
/// 50 ms, which is a heartbeat's; heartbeats have a lane of their own.
const EMPTY_ANSWER: Duration = Duration::from_millis(500);

type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// What the sending task tells the answering side about each request it sent.
enum Sent {
    /// Sent, and awaiting its answer.
    Request(InFlight),
    /// Sending failed: the stream ends with this error; `broken` when the
    /// connection is to blame (not a request that could not be encoded).
    Failed {
        error: RPCError<TypeConfig>,
        broken: bool,
    },
}

/// A request sent and not yet answered. Its answer may take `wait` from when the
/// answering side starts waiting for it, i.e. once the answer before it came: a
/// deadline on progress, so that requests queued behind megabytes do not share one
/// budget. `last` says this was the stream's last request (its entries were cut to
/// fit, and openraft sends the rest anew).
struct InFlight {
    wait: Duration,
    last: bool,
    /// What was sent: the entries after `prev` up to `upto`, with `vote`.
    prev: Option<LogId>,
    upto: Option<LogId>,
    vote: Vote,
    /// Held until the answer comes: the pipeline's depth.
    slot: OwnedSemaphorePermit,
}

/// The shared connection a pipeline runs on, and where it reports it broken.
pub(crate) struct PeerLink {
    pub peer: Arc<SharedPeer>,
    pub shared: OpenConnections,
    pub addr: std::net::SocketAddr,
    pub target: NodeId,
    /// Whose log this stream replicates: every request on it names the group.
    pub group: GroupId,
}

/// Sends `input` on `sender` as it comes, up to [`IN_FLIGHT`] unanswered, and
/// returns the answers in order. The stream ends at the first refusal or
/// failure, or after the input ends and everything sent was answered.
pub(crate) fn run<S>(
    mut sender: RequestSender,
    answers: AnswerReceiver,
    mut input: S,
    link: PeerLink,
) -> impl Stream<Item = Answer> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let (sent_tx, sent_rx) = mpsc::channel::<Sent>(IN_FLIGHT + 1);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let group = link.group;
    let sending = tokio::spawn(async move {
        loop {
            // A slot first: openraft counts a request as sent once it is taken.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Some(rpc) = input.next().await else {
                let _ = sender.finish();
                return;
            };
            let (rpc, cut_at) = bounded_append(rpc, MAX_APPEND_BYTES);
            let (prev, vote) = (rpc.prev_log_id, rpc.vote);
            let upto = rpc.entries.last().map(|e| e.log_id).or(prev);
            let wait = if rpc.entries.is_empty() {
                EMPTY_ANSWER
            } else {
                APPEND_TIMEOUT
            };
            let failed = match RaftRequest::Append(rpc).encode_for(group) {
                // Bounded: a follower that is alive but reads nothing would
                // otherwise hold the send, and this stream, forever.
                Ok(body) => match tokio::time::timeout(APPEND_TIMEOUT, sender.send(&body))
                    .await
                    .unwrap_or(Err(TransportError::Timeout(APPEND_TIMEOUT)))
                {
                    Ok(()) => None,
                    Err(e @ TransportError::FrameTooLarge { .. }) => {
                        Some((network_error(e), false))
                    }
                    Err(e) => Some((network_error(e), true)),
                },
                Err(e) => Some((
                    RPCError::Network(NetworkError::from_string(e.to_string())),
                    false,
                )),
            };
            if let Some((error, broken)) = failed {
                // A request that could not go: what was sent before it is still
                // answered (a reset would throw it away, and its diagnosis).
                if !broken {
                    let _ = sender.finish();
                }
                let _ = sent_tx.send(Sent::Failed { error, broken }).await;
                return;
            }
            let last = cut_at.is_some();
            let told = sent_tx.send(Sent::Request(InFlight {
                wait,
                last,
                prev,
                upto,
                vote,
                slot,
            }));
            if told.await.is_err() || last {
                let _ = sender.finish();
                return;
            }
        }
    });
    let state = Answering {
        answers,
        sent: sent_rx,
        _sending: AbortOnDrop(sending),
        link,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let answer = state.next_answer().await?;
        Some((answer, state))
    })
}

struct Answering {
    answers: AnswerReceiver,
    sent: mpsc::Receiver<Sent>,
    /// Dropped with the answers: openraft dropping the stream stops the sending.
    _sending: AbortOnDrop,
    link: PeerLink,
    done: bool,
}

impl Answering {
    /// The answer to the oldest request unanswered; `None` when the sending task
    /// ended and every request it sent was answered.
    async fn next_answer(&mut self) -> Option<Answer> {
        let InFlight {
            wait,
            last,
            prev,
            upto,
            vote,
            slot,
        } = match self.sent.recv().await? {
            Sent::Failed { error, broken } => {
                self.done = true;
                if broken {
                    self.link.forget();
                }
                return Some(Err(error));
            }
            Sent::Request(in_flight) => in_flight,
        };
        let answer = tokio::time::timeout(wait, self.answers.next()).await;
        // Answered or given up on: either way no longer in flight.
        drop(slot);
        let target = self.link.target;
        let result = match answer {
            Err(_) => {
                if self
                    .link
                    .peer
                    .give_up_after(Some(&TransportError::Timeout(wait)))
                {
                    self.link.forget();
                }
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "node {target} did not answer an append in time"
                ))))
            }
            Ok(Err(e)) => {
                if self.link.peer.give_up_after(Some(&e)) {
                    self.link.forget();
                }
                Err(network_error(e))
            }
            Ok(Ok(None)) => Err(RPCError::Network(NetworkError::from_string(format!(
                "node {target} ended the replication stream with appends unanswered"
            )))),
            Ok(Ok(Some(body))) => {
                self.link.peer.give_up_after(None);
                match RaftResponse::decode(&body) {
                    Ok(Ok(RaftResponse::StreamAppend(result)))
                        if plausible(&result, prev.as_ref(), upto.as_ref(), &vote) =>
                    {
                        Ok(result)
                    }
                    Ok(Ok(RaftResponse::StreamAppend(_))) => {
                        self.link.forget();
                        Err(RPCError::Network(NetworkError::from_string(format!(
                            "node {target} answered an append with a log position it was not sent"
                        ))))
                    }
                    Ok(Ok(_)) => Err(RPCError::Network(NetworkError::from_string(format!(
                        "node {target} answered a different RPC"
                    )))),
                    Ok(Err(remote)) => Err(RPCError::Network(NetworkError::from_string(format!(
                        "node {target}: {remote}"
                    )))),
                    Err(e) => Err(RPCError::Network(NetworkError::from_string(e.to_string()))),
                }
            }
        };
        // A refusal (conflict, higher vote) or failure ends the stream; so does a
        // request whose entries were cut, which openraft resumes in a new one.
        self.done = last || !matches!(result, Ok(Ok(_)));
        Some(result)
    }
}

impl PeerLink {
    fn forget(&self) {
        forget(&self.shared, self.addr, &self.peer);
    }
}

fn network_error(e: TransportError) -> RPCError<TypeConfig> {
    match e {
        TransportError::Timeout(_) => {
            RPCError::Unreachable(Unreachable::from_string(e.to_string()))
        }
        _ => RPCError::Network(NetworkError::from_string(e.to_string())),
    }
}

/// Aborts the sending task when the answering side goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use needle_transport::{BoxFuture, BoxStream, Handler, PeerInfo, Security, Transport};
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::network::{RPCOption, RaftNetworkFactory};
    use openraft::raft::StreamAppendError;
    use openraft::vote::RaftLeaderId;
    use openraft::{LogId, RaftNetworkV2};

    use super::*;
    use crate::types::{ClusterNode, Entry, Vote};
    use crate::{Command, Network};

    fn log_id(index: u64) -> crate::types::LogId {
        LogId::new(LeaderId::new(1, 1).to_committed(), index)
    }

    /// Entries `after+1 ..= after+n` of `bytes` each.
    fn append(after: u64, n: u64, bytes: usize) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: (after > 0).then(|| log_id(after)),
            entries: (after + 1..=after + n)
                .map(|i| {
                    Entry::new_normal(
                        log_id(i),
                        Command {
                            request_id: None,
                            payload: vec![0; bytes],
                        },
                    )
                })
                .collect(),
            leader_commit: None,
        }
    }

    /// Answers appends as a follower would, the first ones slowest (answered out
    /// of order they would overtake each other), refuses the one after
    /// `conflict_after` as a log mismatch, and never answers an entry-less one
    /// after `silent_after`.
    struct Follower {
        conflict_after: Option<u64>,
        silent_after: Option<u64>,
        in_progress: Arc<AtomicUsize>,
        most_in_progress: Arc<AtomicUsize>,
    }

    impl Handler for Follower {
        fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
            Box::pin(async { Err("streams only".to_string()) })
        }

        fn request_stream(
            &self,
            _: PeerInfo,
            requests: BoxStream<Vec<u8>>,
        ) -> BoxStream<Result<Vec<u8>, String>> {
            let (now, most) = (self.in_progress.clone(), self.most_in_progress.clone());
            let (conflict_after, silent_after) = (self.conflict_after, self.silent_after);
            let answers = requests
                .map(move |body| {
                    let (now, most) = (now.clone(), most.clone());
                    most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    async move {
                        let Some(Ok((_, RaftRequest::Append(rpc)))) = RaftRequest::decode(&body)
                        else {
                            return Err("not an append".to_string());
                        };
                        let prev = rpc.prev_log_id.map_or(0, |l| l.index);
                        if silent_after.is_some_and(|at| prev > at) && rpc.entries.is_empty() {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(60u64.saturating_sub(prev * 5)))
                            .await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        let result = match (conflict_after, rpc.prev_log_id) {
                            (Some(at), Some(prev)) if prev.index > at => {
                                Err(StreamAppendError::Conflict(prev))
                            }
                            _ => Ok(rpc
                                .entries
                                .last()
                                .map(RaftEntry::log_id)
                                .or(rpc.prev_log_id)),
                        };
                        RaftResponse::encode(&Ok(RaftResponse::StreamAppend(result)))
                            .map_err(|e| e.to_string())
                    }
                })
                .buffered(IN_FLIGHT);
            Box::pin(answers)
        }
    }

    struct Pair {
        follower: Arc<Follower>,
        _follower_transport: Transport,
        network: Network,
        node: ClusterNode,
    }

    fn pair(conflict_after: Option<u64>, silent_after: Option<u64>) -> Pair {
        let follower = Arc::new(Follower {
            conflict_after,
            silent_after,
            in_progress: Arc::default(),
            most_in_progress: Arc::default(),
        });
        let any = "127.0.0.1:0".parse().unwrap();
        let config = || needle_transport::TransportConfig::new(Security::InsecureDev);
        let follower_transport = Transport::bind(any, config(), follower.clone()).unwrap();
        let leader_transport = Transport::bind(any, config(), follower.clone()).unwrap();
        let node = ClusterNode {
            raft_addr: follower_transport.local_addr().unwrap().to_string(),
            http_addr: String::new(),
        };
        Pair {
            follower,
            _follower_transport: follower_transport,
            network: Network::new(leader_transport),
            node,
        }
    }

    async fn replicate(
        pair: &mut Pair,
        requests: Vec<AppendEntriesRequest<TypeConfig>>,
    ) -> Vec<Answer> {
        let mut client = pair.network.new_client(2, &pair.node).await;
        let input = futures_util::stream::iter(requests);
        let option = RPCOption::new(Duration::from_millis(50));
        let answers = client.stream_append(input, option).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), answers.collect())
            .await
            .unwrap()
    }

    fn matched(answers: &[Answer]) -> Vec<Option<u64>> {
        answers
            .iter()
            .map(|a| match a {
                Ok(Ok(Some(id))) => Some(id.index),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn appends_travel_together_and_are_answered_in_order() {
        let mut pair = pair(None, None);
        let requests = (0..6).map(|k| append(k * 2, 2, 100)).collect();
        let answers = replicate(&mut pair, requests).await;
        let want: Vec<Option<u64>> = (1..=6).map(|k| Some(k * 2)).collect();
        assert_eq!(matched(&answers), want);
        assert!(pair.follower.most_in_progress.load(Ordering::SeqCst) > 1);
    }

    #[tokio::test]
    async fn a_refused_append_ends_the_stream() {
        let mut pair = pair(Some(2), None);
        let requests = (0..6).map(|k| append(k * 2, 2, 100)).collect();
        let answers = replicate(&mut pair, requests).await;
        // The third append (after entry 4) is refused.
        assert_eq!(answers.len(), 3, "nothing after the refusal");
        assert_eq!(matched(&answers[..2]), [Some(2), Some(4)]);
        assert!(matches!(
            answers[2],
            Ok(Err(StreamAppendError::Conflict(prev))) if prev.index == 4
        ));
    }

    #[tokio::test]
    async fn an_append_cut_to_fit_is_the_last_of_its_stream() {
        let mut pair = pair(None, None);
        // Three 3 MiB entries: two fit in one append, openraft resends the third.
        let requests = vec![append(0, 3, 3 << 20), append(3, 1, 10)];
        let answers = replicate(&mut pair, requests).await;
        assert_eq!(matched(&answers), [Some(2)]);
    }

    #[tokio::test]
    async fn an_unanswered_append_ends_the_stream_and_the_next_one_gets_through() {
        let mut pair = pair(None, Some(1));
        let mut client = pair.network.new_client(2, &pair.node).await;
        // Twice in a row: the second timeout gives the connection up.
        for _ in 0..2 {
            let requests = vec![append(0, 2, 100), append(2, 0, 0), append(2, 2, 100)];
            let input = futures_util::stream::iter(requests);
            let option = RPCOption::new(Duration::from_millis(50));
            let answers = client.stream_append(input, option).await.unwrap();
            let answers: Vec<Answer> =
                tokio::time::timeout(Duration::from_secs(20), answers.collect())
                    .await
                    .unwrap();
            assert_eq!(answers.len(), 2, "nothing after the unanswered one");
            assert_eq!(matched(&answers[..1]), [Some(2)]);
            assert!(matches!(answers[1], Err(RPCError::Unreachable(_))));
        }
        // The same client connects afresh and replicates.
        let answers = {
            let input = futures_util::stream::iter(vec![append(0, 2, 100)]);
            let option = RPCOption::new(Duration::from_millis(50));
            let answers = client.stream_append(input, option).await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), answers.collect::<Vec<_>>())
                .await
                .unwrap()
        };
        assert_eq!(matched(&answers), [Some(2)]);
    }
}
