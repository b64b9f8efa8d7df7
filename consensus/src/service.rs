//! Raft's incoming RPCs: the transport handler of a Raft node. Raft traffic goes to
//! the local `Raft`; everything else (the node's own requests: forwarded writes,
//! read-index questions) goes to the node's handler, so one QUIC endpoint and one
//! mutual-TLS identity carry both.

use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use needle_transport::{BoxFuture, BoxStream, Handler, PeerInfo, RegionKey, Transport};
use openraft::storage::RaftStateMachine;
use openraft::Raft;

use crate::rpc::{RaftRequest, RaftResponse};
use crate::snapshot_file::{SnapshotFile, SnapshotInbox};
use crate::types::TypeConfig;

/// Bytes per region read while fetching a snapshot.
const SNAPSHOT_CHUNK: u64 = 4 << 20;

/// The transport handler of a Raft node. Built before the transport and the Raft
/// instance exist (both need it); [`RaftService::attach`] completes it.
pub struct RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    state: Arc<ServiceState<SM>>,
}

struct ServiceState<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    attached: OnceLock<(Raft<TypeConfig, SM>, Transport)>,
    app: Arc<dyn Handler>,
    inbox: SnapshotInbox,
}

impl<SM> RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    pub fn new(app: Arc<dyn Handler>, inbox: SnapshotInbox) -> Arc<RaftService<SM>> {
        Arc::new(RaftService {
            state: Arc::new(ServiceState {
                attached: OnceLock::new(),
                app,
                inbox,
            }),
        })
    }

    /// Starts answering Raft RPCs; until then they fail and the sender retries.
    pub fn attach(&self, raft: Raft<TypeConfig, SM>, transport: Transport) {
        let _ = self.state.attached.set((raft, transport));
    }
}

impl<SM> ServiceState<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    async fn answer(
        self: Arc<Self>,
        from: PeerInfo,
        request: RaftRequest,
    ) -> Result<RaftResponse, String> {
        let (raft, transport) = self
            .attached
            .get()
            .ok_or_else(|| "raft is starting".to_string())?;
        let fatal = |e: openraft::error::RaftError<TypeConfig>| e.to_string();
        match request {
            RaftRequest::Append(rpc) => raft
                .append_entries(rpc)
                .await
                .map(RaftResponse::Append)
                .map_err(fatal),
            RaftRequest::Vote(rpc) => raft.vote(rpc).await.map(RaftResponse::Vote).map_err(fatal),
            RaftRequest::PreVote(rpc) => raft
                .pre_vote(rpc)
                .await
                .map(RaftResponse::Vote)
                .map_err(fatal),
            RaftRequest::TransferLeader(rpc) => raft
                .handle_transfer_leader(rpc)
                .await
                .map(RaftResponse::TransferLeader)
                .map_err(|e| e.to_string()),
            RaftRequest::Snapshot {
                vote,
                meta,
                region,
                len,
                checksum,
            } => {
                let peer = transport
                    .connect(from.addr)
                    .await
                    .map_err(|e| format!("connecting back to the snapshot's sender: {e}"))?;
                // Straight to a file, a chunk at a time: any size, no memory.
                let file = self.inbox.next_file();
                peer.read_region_to_file(
                    RegionKey(region),
                    len,
                    checksum,
                    SNAPSHOT_CHUNK,
                    &file.path,
                )
                .await
                .map_err(|e| format!("reading the snapshot: {e}"))?;
                tracing::info!(bytes = len, path = %file.path.display(), "installing a snapshot from the leader");
                raft.install_full_snapshot(
                    vote,
                    openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
                        meta,
                        snapshot: file,
                    },
                )
                .await
                .map(RaftResponse::Snapshot)
                .map_err(|e| e.to_string())
            }
        }
    }
}

impl<SM> Handler for RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        match RaftRequest::decode(&body) {
            None => self.state.app.request(from, body),
            // Votes, appends and snapshots move a member's state: members only.
            Some(_) if !from.role.is_member() => Box::pin(async {
                Err(
                    "raft RPCs are for cluster members; a client certificate cannot send them"
                        .to_string(),
                )
            }),
            Some(Err(e)) => Box::pin(async move { Err(e.to_string()) }),
            Some(Ok(request)) => {
                let this = self.state.clone();
                Box::pin(async move {
                    let result = this.answer(from, request).await;
                    RaftResponse::encode(&result).map_err(|e| e.to_string())
                })
            }
        }
    }

    fn push(&self, from: PeerInfo, body: Vec<u8>, compressed: bool) -> BoxFuture<()> {
        self.state.app.push(from, body, compressed)
    }

    /// A leader's replication stream ([`crate::network`]): AppendEntries in the
    /// order sent, handed to openraft's own pipeline, which takes the next one
    /// while the log still syncs the previous ones. Anything but an AppendEntries
    /// ends the stream.
    fn request_stream(
        &self,
        from: PeerInfo,
        requests: BoxStream<Vec<u8>>,
    ) -> BoxStream<Result<Vec<u8>, String>> {
        let refuse = |message: &str| -> BoxStream<Result<Vec<u8>, String>> {
            let message = message.to_string();
            Box::pin(futures_util::stream::once(async move { Err(message) }))
        };
        if !from.role.is_member() {
            return refuse(
                "raft RPCs are for cluster members; a client certificate cannot send them",
            );
        }
        let Some((raft, _)) = self.state.attached.get() else {
            return refuse("raft is starting");
        };
        let peer = from.addr;
        let appends = requests
            .map(move |body| match RaftRequest::decode(&body) {
                Some(Ok(RaftRequest::Append(rpc))) => Some(rpc),
                other => {
                    let what = match other {
                        Some(Err(e)) => e.to_string(),
                        Some(Ok(_)) => "an RPC other than AppendEntries".to_string(),
                        None => "not Raft traffic".to_string(),
                    };
                    tracing::warn!(%peer, what, "ending a replication stream");
                    None
                }
            })
            .take_while(|rpc| std::future::ready(rpc.is_some()))
            .filter_map(std::future::ready);
        let answers = raft.stream_append(appends).map(|answer| {
            let answer = answer
                .map(RaftResponse::StreamAppend)
                .map_err(|fatal| fatal.to_string());
            RaftResponse::encode(&answer).map_err(|e| e.to_string())
        });
        Box::pin(answers)
    }
}
