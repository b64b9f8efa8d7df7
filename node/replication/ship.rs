//! Shipping the operation log from a primary to a replica over `needle-transport`.
//!
//! The replica pulls: each request names the first sequence number it needs (so
//! it also acknowledges everything before it), the primary answers with at most
//! `max` entries as one delta batch, waiting up to `wait_ms` for new writes when it
//! has none (a long poll, so an idle replica costs one request per wait). Vectors
//! travel as raw f32 beside the op's other fields, never through the serializer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;
use std::sync::OnceLock;

use needle_transport::region::checksum as region_checksum;
use needle_transport::{
    AlignedBuf, BoxFuture, DeltaCodec, DeltaEntry, Handler, Peer, PeerInfo, RegionKey, Transport,
};
use parking_lot::Mutex;

use super::concern::{AckTracker, WriteConcern};
use super::epoch::{EpochHistory, Fence};
use super::follower::{BatchInfo, Follower, FollowerAction};
use super::role::{Role, RoleCell};
use crate::error::{Error, Result};
use crate::served::ServedDatabase;
use crate::{Database, Op};

/// One pull: `[from u64][max u32][wait_ms u32]`, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest {
    pub from: u64,
    pub max: u32,
    pub wait_ms: u32,
}

impl PullRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.from.to_be_bytes().to_vec();
        out.extend(self.max.to_be_bytes());
        out.extend(self.wait_ms.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PullRequest> {
        if bytes.len() != 16 {
            return Err(Error::InvalidRequest(format!(
                "pull request of {} bytes",
                bytes.len()
            )));
        }
        let mut from = [0u8; 8];
        from.copy_from_slice(&bytes[..8]);
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Ok(PullRequest {
            from: u64::from_be_bytes(from),
            max: u32_at(8),
            wait_ms: u32_at(12),
        })
    }
}

/// The wire form of one log entry: the op with its vectors taken out (meta:
/// vector count, each length, then the op's log encoding) and the vectors back to back.
pub fn entry_to_wire(seq: u64, op: &Op) -> Result<DeltaEntry> {
    let mut stripped = op.clone();
    let mut vectors = Vec::new();
    let mut lengths: Vec<u32> = Vec::new();
    if let Op::Upsert { records, .. } = &mut stripped {
        for record in records.iter_mut() {
            lengths.push(record.vector.len() as u32);
            vectors.append(&mut record.vector);
        }
    }
    let mut meta = (lengths.len() as u32).to_be_bytes().to_vec();
    for l in &lengths {
        meta.extend(l.to_be_bytes());
    }
    meta.extend(stripped.encode()?);
    Ok(DeltaEntry { seq, meta, vectors })
}

pub fn entry_from_wire(entry: DeltaEntry) -> Result<(u64, Op)> {
    let corrupt = |what: &str| Error::Corrupt(format!("replicated entry {}: {what}", entry.seq));
    let count_bytes = entry
        .meta
        .get(..4)
        .ok_or_else(|| corrupt("no vector count"))?;
    let count = u32::from_be_bytes([
        count_bytes[0],
        count_bytes[1],
        count_bytes[2],
        count_bytes[3],
    ]) as usize;
    let lengths_end = count
        .checked_mul(4)
        .and_then(|n| n.checked_add(4))
        .filter(|&end| end <= entry.meta.len())
        .ok_or_else(|| corrupt("vector lengths run past the entry"))?;
    let lengths: Vec<usize> = entry.meta[4..lengths_end]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let mut op = Op::decode(&entry.meta[lengths_end..])?;
    if lengths.iter().sum::<usize>() != entry.vectors.len() {
        return Err(corrupt("vector lengths do not add up"));
    }
    if let Op::Upsert { records, .. } = &mut op {
        if records.len() != lengths.len() {
            return Err(corrupt("record and vector counts differ"));
        }
        let mut at = 0;
        for (record, len) in records.iter_mut().zip(&lengths) {
            record.vector = entry.vectors[at..at + len].to_vec();
            at += len;
        }
    } else if !lengths.is_empty() {
        return Err(corrupt("vectors on an op that has none"));
    }
    Ok((entry.seq, op))
}

/// What a replica asks its primary; the first byte tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The next batch of log entries.
    Pull(PullRequest),
    /// A snapshot of the primary's whole state, for a replica behind its retained log.
    Snapshot,
    /// The replica has read the snapshot region `key`: the primary frees it.
    SnapshotDone { key: u64 },
    /// The node's epoch history (a demoted node compares it with its own).
    Epochs,
    /// A newer primary announces itself: a primary in an older epoch stops taking
    /// writes.
    Fence(Fence),
}

const TAG_PULL: u8 = 0;
const TAG_SNAPSHOT: u8 = 1;
const TAG_SNAPSHOT_DONE: u8 = 2;
const TAG_EPOCHS: u8 = 3;
const TAG_FENCE: u8 = 4;

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Pull(pull) => {
                let mut out = vec![TAG_PULL];
                out.extend(pull.encode());
                out
            }
            Request::Snapshot => vec![TAG_SNAPSHOT],
            Request::SnapshotDone { key } => {
                let mut out = vec![TAG_SNAPSHOT_DONE];
                out.extend(key.to_be_bytes());
                out
            }
            Request::Epochs => vec![TAG_EPOCHS],
            Request::Fence(fence) => {
                let mut out = vec![TAG_FENCE];
                out.extend(fence.epoch.to_be_bytes());
                out.extend(fence.primary.to_string().into_bytes());
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Request> {
        match bytes.split_first() {
            Some((&TAG_PULL, rest)) => Ok(Request::Pull(PullRequest::decode(rest)?)),
            Some((&TAG_SNAPSHOT, [])) => Ok(Request::Snapshot),
            Some((&TAG_SNAPSHOT_DONE, rest)) if rest.len() == 8 => Ok(Request::SnapshotDone {
                key: u64_at(rest, 0),
            }),
            Some((&TAG_EPOCHS, [])) => Ok(Request::Epochs),
            Some((&TAG_FENCE, rest)) if rest.len() > 8 => {
                let primary = std::str::from_utf8(&rest[8..])
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| {
                        Error::InvalidRequest("fence without a primary address".into())
                    })?;
                Ok(Request::Fence(Fence {
                    epoch: u64_at(rest, 0),
                    primary,
                }))
            }
            _ => Err(Error::InvalidRequest(format!(
                "replication request of {} bytes with tag {:?}",
                bytes.len(),
                bytes.first()
            ))),
        }
    }
}

/// The primary's offer of a snapshot: the region holding the file and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOffer {
    pub key: u64,
    pub len: u64,
    pub checksum: u64,
    pub applied_seq: u64,
}

impl SnapshotOffer {
    pub fn encode(&self) -> Vec<u8> {
        [self.key, self.len, self.checksum, self.applied_seq]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotOffer> {
        if bytes.len() != 32 {
            return Err(Error::Corrupt(format!(
                "snapshot offer of {} bytes",
                bytes.len()
            )));
        }
        Ok(SnapshotOffer {
            key: u64_at(bytes, 0),
            len: u64_at(bytes, 8),
            checksum: u64_at(bytes, 16),
            applied_seq: u64_at(bytes, 24),
        })
    }
}

/// Big-endian u64 at `at`; the caller has checked the length.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Wall-clock milliseconds since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A replica silent this long (it pulls at least every `sync_interval`) no longer
/// counts for write concerns.
const MAX_SILENCE_MS: u64 = 15_000;

/// The primary's write-concern state, shared by the log server (which records
/// acknowledgements) and the writes waiting on them.
#[derive(Debug)]
pub struct SharedAcks {
    pub tracker: Mutex<AckTracker>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for SharedAcks {
    fn default() -> Self {
        SharedAcks {
            tracker: Mutex::new(AckTracker::new()),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl SharedAcks {
    /// `replica` has applied everything up to `applied`.
    pub fn record(&self, replica: &str, applied: u64) {
        self.tracker.lock().seen(replica, applied, now_ms());
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until the write at `seq` has met `concern`, at most `timeout`.
    pub async fn wait(&self, seq: u64, concern: WriteConcern, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            {
                let mut tracker = self.tracker.lock();
                tracker.expire_silent(now_ms(), MAX_SILENCE_MS);
                if tracker.is_met(seq, concern) {
                    return Ok(());
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::WriteConcernTimeout {
                    seq,
                    concern,
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            // Re-check at least every second, for replicas going silent.
            let step = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(step, changed.changed()).await;
        }
    }
}

/// The primary's side: answers pulls from its operation log, records each puller's
/// acknowledgement for write concerns, and hands a replica that is behind the
/// retained log a snapshot through the transport's region transfer.
pub struct LogServer {
    served: ServedDatabase,
    codec: DeltaCodec,
    acks: Arc<SharedAcks>,
    max_wait: Duration,
    /// Set once the transport is bound (it needs this handler first).
    transport: Arc<OnceLock<Transport>>,
    /// The snapshot region each replica was last offered, freed when it says it is
    /// done or asks again.
    offered: Arc<Mutex<HashMap<String, RegionKey>>>,
    /// Only a primary serves its log.
    role: Arc<RoleCell>,
}

impl LogServer {
    pub fn new(
        served: ServedDatabase,
        codec: DeltaCodec,
        acks: Arc<SharedAcks>,
        transport: Arc<OnceLock<Transport>>,
        role: Arc<RoleCell>,
    ) -> LogServer {
        LogServer {
            served,
            codec,
            acks,
            max_wait: Duration::from_secs(5),
            transport,
            offered: Arc::default(),
            role,
        }
    }
}

/// Decodes a node's answer to [`Request::Epochs`].
pub fn decode_epochs(bytes: &[u8]) -> Result<EpochHistory> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("epoch history: {e}")))
}

/// Pull response tags.
const PULLED: u8 = 0;
const NEEDS_SNAPSHOT: u8 = 1;
/// Pull response after its tag: `[primary_last u64][sent_ms u64][epoch u64]
/// [compressed u8]`, then the delta batch; or after NEEDS_SNAPSHOT, `[log_start u64]`.
const RESPONSE_HEADER: usize = 26;

impl Handler for LogServer {
    fn request(
        &self,
        from: PeerInfo,
        body: Vec<u8>,
    ) -> BoxFuture<std::result::Result<Vec<u8>, String>> {
        let db = self.served.current();
        let codec = self.codec;
        let acks = self.acks.clone();
        let max_wait = self.max_wait;
        let transport = self.transport.clone();
        let offered = self.offered.clone();
        let role = self.role.clone();
        Box::pin(async move {
            let replica = from
                .node_name()
                .map_or_else(|| from.addr.to_string(), str::to_string);
            let request = Request::decode(&body).map_err(|e| e.to_string())?;
            let current = role.get();
            if matches!(request, Request::Pull(_) | Request::Snapshot) && current != Role::Primary {
                return Err(format!(
                    "this node is not the primary: {}",
                    current.describe()
                ));
            }
            match request {
                Request::Pull(pull) => serve_pull(db, codec, &acks, &replica, pull, max_wait)
                    .await
                    .map_err(|e| e.to_string()),
                Request::Epochs => {
                    let history = db.epoch_history().map_err(|e| e.to_string())?;
                    serde_json::to_vec(&history).map_err(|e| e.to_string())
                }
                Request::Fence(fence) => {
                    let fenced = role.fence(&db, fence).map_err(|e| e.to_string())?;
                    Ok(vec![u8::from(fenced)])
                }
                Request::Snapshot => {
                    let transport = transport
                        .get()
                        .ok_or("the primary's transport is starting")?
                        .clone();
                    offer_snapshot(db, &transport, &offered, replica)
                        .await
                        .map_err(|e| e.to_string())
                }
                Request::SnapshotDone { key } => {
                    if let Some(transport) = transport.get() {
                        let mut offered = offered.lock();
                        if offered.get(&replica) == Some(&RegionKey(key)) {
                            offered.remove(&replica);
                            let _ = transport.take_region(RegionKey(key));
                        }
                    }
                    Ok(Vec::new())
                }
            }
        })
    }

    fn push(&self, _from: PeerInfo, _body: Vec<u8>, _compressed: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

async fn serve_pull(
    db: Database,
    codec: DeltaCodec,
    acks: &SharedAcks,
    replica: &str,
    pull: PullRequest,
    max_wait: Duration,
) -> Result<Vec<u8>> {
    acks.record(replica, pull.from.saturating_sub(1));
    if pull.from < db.log_start() {
        let mut out = vec![NEEDS_SNAPSHOT];
        out.extend(db.log_start().to_be_bytes());
        return Ok(out);
    }
    let mut applied = db.watch_applied();
    let wait = Duration::from_millis(u64::from(pull.wait_ms)).min(max_wait);
    let _ = tokio::time::timeout(wait, applied.wait_for(|&seq| seq >= pull.from)).await;
    let limit = pull.max.clamp(1, 100_000) as usize;
    let entries = db.read_log(pull.from, limit)?;
    db.metrics()
        .replication_operations
        .with_label_values(&["primary"])
        .inc_by(entries.len() as u64);
    let wire: Vec<DeltaEntry> = entries
        .iter()
        .map(|(seq, op)| entry_to_wire(*seq, op))
        .collect::<Result<_>>()?;
    let encoded = codec.encode(&wire);
    let mut out = Vec::with_capacity(RESPONSE_HEADER + encoded.bytes.len());
    out.push(PULLED);
    out.extend(db.applied_seq().to_be_bytes());
    out.extend(now_ms().to_be_bytes());
    out.extend(db.epoch_history()?.current().to_be_bytes());
    out.push(u8::from(encoded.compressed));
    out.extend(encoded.bytes);
    Ok(out)
}

/// Writes a snapshot of `db`, loads it into a transport region and answers with
/// where it is; the replica reads the region at its own pace.
async fn offer_snapshot(
    db: Database,
    transport: &Transport,
    offered: &Mutex<HashMap<String, RegionKey>>,
    replica: String,
) -> Result<Vec<u8>> {
    let (buf, applied_seq) = tokio::task::spawn_blocking(move || -> Result<(AlignedBuf, u64)> {
        let file = crate::snapshot::scratch_beside(db.store_path(), "outgoing")?;
        let written = db.write_snapshot(&file);
        let loaded = written.and_then(|written| {
            let bytes = std::fs::read(&file)
                .map_err(|e| Error::Snapshot(format!("reading {}: {e}", file.display())))?;
            let mut buf = AlignedBuf::zeroed(bytes.len());
            buf.as_bytes_mut().copy_from_slice(&bytes);
            Ok((buf, written.info.applied_seq))
        });
        let _ = std::fs::remove_file(&file);
        loaded
    })
    .await
    .map_err(|_| Error::Closed)??;
    let (len, checksum) = (buf.len() as u64, region_checksum(buf.as_bytes()));
    let key = transport
        .register_filled_region(buf)
        .map_err(|e| Error::Replication(format!("offering a snapshot: {e}")))?;
    if let Some(previous) = offered.lock().insert(replica.clone(), key) {
        let _ = transport.take_region(previous);
    }
    tracing::info!(%replica, bytes = len, applied_seq, "offered a snapshot to a replica behind the log");
    Ok(SnapshotOffer {
        key: key.0,
        len,
        checksum,
        applied_seq,
    }
    .encode())
}

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
    let request = PullRequest {
        from: follower.next_needed(),
        max,
        wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
    };
    let reply = peer
        .request_within(
            &Request::Pull(request).encode(),
            wait + Duration::from_secs(10),
        )
        .await
        .map_err(|e| Error::Replication(format!("pulling from the primary: {e}")))?;
    if reply.len() == 9 && reply[0] == NEEDS_SNAPSHOT {
        return Ok(Fetched::NeedsSnapshot {
            log_start: u64_at(&reply, 1),
        });
    }
    if reply.len() < RESPONSE_HEADER || reply[0] != PULLED {
        return Err(Error::Corrupt("malformed pull response".into()));
    }
    let (primary_last, sent_ms, epoch, compressed) = (
        u64_at(&reply, 1),
        u64_at(&reply, 9),
        u64_at(&reply, 17),
        reply[25] == 1,
    );
    let entries = codec
        .decode(&reply[RESPONSE_HEADER..], compressed)
        .map_err(|e| Error::Corrupt(format!("pull response: {e}")))?;
    let info = BatchInfo {
        first: entries.first().map_or(request.from, |e| e.seq),
        count: entries.len() as u64,
        primary_last,
        written_ms: sent_ms,
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
                .collect::<Result<_>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollectionConfig, Distance, VectorRecord};

    fn ops() -> Vec<Op> {
        let mut meta = crate::Metadata::new();
        meta.insert("lang".into(), serde_json::json!("en"));
        vec![
            Op::CreateCollection(CollectionConfig::new("c", 2, Distance::Dot)),
            Op::Upsert {
                collection: "c".into(),
                records: vec![
                    VectorRecord::new("a", vec![1.0, f32::MIN_POSITIVE]).with_metadata(meta),
                    VectorRecord::new("b", vec![-0.0, 3.5]),
                ],
            },
            Op::Delete {
                collection: "c".into(),
                ids: vec!["a".into()],
            },
            Op::DropCollection { name: "c".into() },
        ]
    }

    #[test]
    fn entries_round_trip_with_vectors_outside_the_serializer() {
        for (i, op) in ops().into_iter().enumerate() {
            let wire = entry_to_wire(i as u64 + 1, &op).unwrap();
            if let Op::Upsert { .. } = op {
                assert_eq!(wire.vectors, vec![1.0, f32::MIN_POSITIVE, -0.0, 3.5]);
            } else {
                assert!(wire.vectors.is_empty());
            }
            assert_eq!(entry_from_wire(wire).unwrap(), (i as u64 + 1, op));
        }
    }

    #[test]
    fn damaged_entries_are_errors() {
        let good = entry_to_wire(7, &ops()[1]).unwrap();
        let mut short = good.clone();
        short.vectors.pop();
        assert!(entry_from_wire(short).is_err());
        let mut lying = good.clone();
        lying.meta[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(entry_from_wire(lying).is_err());
        let mut truncated = good;
        truncated.meta.truncate(3);
        assert!(entry_from_wire(truncated).is_err());
        assert!(PullRequest::decode(&[1, 2, 3]).is_err());
        let pull = PullRequest {
            from: 9,
            max: 100,
            wait_ms: 250,
        };
        assert_eq!(PullRequest::decode(&pull.encode()).unwrap(), pull);
        for request in [
            Request::Pull(pull),
            Request::Snapshot,
            Request::SnapshotDone { key: 77 },
            Request::Epochs,
            Request::Fence(Fence {
                epoch: 3,
                primary: "127.0.0.1:5000".parse().unwrap(),
            }),
        ] {
            assert_eq!(Request::decode(&request.encode()).unwrap(), request);
        }
        assert!(Request::decode(&[9]).is_err());
        assert!(Request::decode(&[TAG_SNAPSHOT_DONE, 1]).is_err());
        assert!(Request::decode(&[]).is_err());
        let offer = SnapshotOffer {
            key: 1,
            len: 2,
            checksum: 3,
            applied_seq: 4,
        };
        assert_eq!(SnapshotOffer::decode(&offer.encode()).unwrap(), offer);
        assert!(SnapshotOffer::decode(&[0; 31]).is_err());
    }
}
