//! The replica's side of log shipping: fetch a batch from the primary, then apply it
//! durably. The two halves are separate so that a replica can stop following (to be
//! promoted) between them, never in the middle of an apply.

use std::net::SocketAddr;
use std::time::Duration;

use needle_transport::{DeltaCodec, DeltaEntry, Peer};

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::epoch::{EpochHistory, Fence};
use crate::replication::primary_replica::replica::stream::{BatchInfo, Follower, FollowerAction};
use crate::replication::primary_replica::wire::{
    decode_epochs, entry_from_wire, u64_at, PullRequest, Request, NEEDS_SNAPSHOT, PULLED,
    RESPONSE_HEADER,
};
use crate::Error;
use crate::{Database, Op};

/// What one pull brought.
#[derive(Debug)]
pub enum Fetched {
    /// A batch (possibly empty) from a primary in `epoch`.
    Batch {
        info: BatchInfo,
        entries: Vec<DeltaEntry>,
        epoch: u64,
    },
    /// The entries this replica needs are gone from the primary's log, which starts at
    /// `log_start`: it needs a snapshot first.
    NeedsSnapshot { log_start: u64 },
}

/// What one pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// Entries (possibly none) were applied; the applied sequence number afterwards.
    Applied(u64),
    /// See [`Fetched::NeedsSnapshot`].
    NeedsSnapshot { log_start: u64 },
}

/// The replica's side, first half: asks `peer` for the entries `follower` needs.
/// Safe to cancel: nothing is written.
pub async fn fetch(
    peer: &Peer,
    follower: &Follower,
    codec: &DeltaCodec,
    max: u32,
    wait: Duration,
) -> Result<Fetched> {
    let request = pull_request(follower, max, wait);
    fetch_as(peer, codec, wait, Request::Pull(request), request.from).await
}

fn pull_request(follower: &Follower, max: u32, wait: Duration) -> PullRequest {
    PullRequest {
        from: follower.next_needed(),
        max,
        wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
    }
}

/// [`fetch`] from a peer that need not be the primary, without waiting for new
/// entries or acknowledging anything (a replica being promoted, to the epoch `fence`
/// names, catching up). The peer promises that promotion first.
pub async fn fetch_from_peer(
    peer: &Peer,
    follower: &Follower,
    codec: &DeltaCodec,
    max: u32,
    fence: Fence,
) -> Result<Fetched> {
    let request = pull_request(follower, max, Duration::ZERO);
    fetch_as(
        peer,
        codec,
        Duration::ZERO,
        Request::CatchUp(request, fence),
        request.from,
    )
    .await
}

/// The epoch history of the node behind `peer` (at `addr`, for the error).
pub async fn epochs_of(peer: &Peer, addr: SocketAddr) -> Result<EpochHistory> {
    let answer = peer
        .request(&Request::Epochs.encode())
        .await
        .map_err(ReplicationError::peer("asking for the epochs of", addr))?;
    Ok(decode_epochs(&answer)?)
}

async fn fetch_as(
    peer: &Peer,
    codec: &DeltaCodec,
    wait: Duration,
    request: Request,
    from: u64,
) -> Result<Fetched> {
    let reply = peer
        .request_within(&request.encode(), wait + Duration::from_secs(10))
        .await
        .map_err(ReplicationError::peer("pulling from", peer.remote_addr()))?;
    if reply.len() == 9 && reply[0] == NEEDS_SNAPSHOT {
        return Ok(Fetched::NeedsSnapshot {
            log_start: u64_at(&reply, 1),
        });
    }
    if reply.len() < RESPONSE_HEADER || reply[0] != PULLED {
        return Err(Error::Corrupt("malformed pull response".into()).into());
    }
    let (primary_last, first_ms, epoch, next_ms, compressed) = (
        u64_at(&reply, 1),
        u64_at(&reply, 9),
        u64_at(&reply, 17),
        u64_at(&reply, 25),
        reply[33] == 1,
    );
    let entries = codec
        .decode(&reply[RESPONSE_HEADER..], compressed)
        .map_err(|e| Error::Corrupt(format!("pull response: {e}")))?;
    let info = BatchInfo {
        first: entries.first().map_or(from, |e| e.seq),
        count: entries.len() as u64,
        primary_last,
        written_ms: first_ms,
        next_written_ms: next_ms,
    };
    Ok(Fetched::Batch {
        info,
        entries,
        epoch,
    })
}

/// The replica's side, second half: applies a fetched batch durably to `db`. Not to
/// be cancelled once started (the write runs to completion on a blocking thread).
pub async fn apply(
    db: &Database,
    follower: &mut Follower,
    info: BatchInfo,
    entries: Vec<DeltaEntry>,
) -> Result<u64> {
    match follower.on_batch(info) {
        FollowerAction::Apply { skip } => {
            let ops: Vec<(u64, Op)> = entries
                .into_iter()
                .skip(skip)
                .map(entry_from_wire)
                .collect::<crate::Result<_>>()?;
            let db = db.clone();
            let applied = tokio::task::spawn_blocking(move || db.apply_entries(ops))
                .await
                .map_err(|_| Error::Closed)??;
            Ok(follower.on_applied(applied))
        }
        FollowerAction::AlreadyApplied | FollowerAction::Resync { .. } => Ok(follower.applied()),
    }
}

/// One pull from `peer`, applied durably to `db`: [`fetch`] then [`apply`].
pub async fn pull_once(
    db: &Database,
    peer: &Peer,
    follower: &mut Follower,
    codec: &DeltaCodec,
    max: u32,
    wait: Duration,
) -> Result<Pulled> {
    match fetch(peer, follower, codec, max, wait).await? {
        Fetched::NeedsSnapshot { log_start } => Ok(Pulled::NeedsSnapshot { log_start }),
        Fetched::Batch { info, entries, .. } => {
            Ok(Pulled::Applied(apply(db, follower, info, entries).await?))
        }
    }
}
