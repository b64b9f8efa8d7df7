//! The primary's side of log shipping over `needle-transport`.
//!
//! Replicas pull: each request names the first sequence number the replica needs (so
//! it also acknowledges everything before it), and the primary answers with at most
//! `max` entries as one delta batch, waiting up to `wait_ms` for new writes when it
//! has none (a long poll, so an idle replica costs one request per wait). A replica
//! behind the retained log gets a snapshot through the transport's region transfer.

use crate::replication::primary_replica::epoch::EpochStore;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use needle_transport::{Answer, DeltaCodec, DeltaEntry, Handler, PeerInfo, RegionKey, Transport};
use parking_lot::Mutex;

use crate::replication::consistency::WriteConcern;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::members::{member_name, KnownMembers, Member};
use crate::replication::primary_replica::primary::concern_tracker::AckTracker;
use crate::replication::primary_replica::role::{Role, RoleCell};
use crate::replication::primary_replica::wire::{
    entry_to_wire, PullRequest, Request, SnapshotOffer, NEEDS_SNAPSHOT, PULLED, RESPONSE_HEADER,
};
use crate::served::ServedDatabase;
use crate::Database;
use crate::Error;

/// Wall-clock milliseconds since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    crate::clock::system_ms()
}

/// A replica silent this long (it pulls at least every `sync_interval`) no longer
/// counts for write concerns.
pub(crate) const MAX_SILENCE_MS: u64 = 15_000;

/// Encoded log bytes one pull reply carries at most (one entry always goes, and no
/// entry is over `MAX_OP_BYTES`): a replica far behind gets its backlog in pieces
/// that fit a frame, instead of a reply too large to send, asked for again forever.
pub(crate) const MAX_PULL_BYTES: usize = 16 << 20;

/// The primary's write-concern state, shared by the log server (which records
/// acknowledgements) and the writes waiting on them.
#[derive(Debug)]
pub struct SharedAcks {
    pub tracker: Mutex<AckTracker>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Each replica's cluster address (where its transport listens and pulls from),
    /// by name.
    addresses: Mutex<HashMap<String, std::net::SocketAddr>>,
    /// Every replica known, heard from lately or not (kept in the store).
    known: Mutex<KnownMembers>,
}

impl Default for SharedAcks {
    fn default() -> Self {
        SharedAcks {
            tracker: Mutex::new(AckTracker::new()),
            changed: tokio::sync::watch::Sender::new(0),
            addresses: Mutex::default(),
            known: Mutex::default(),
        }
    }
}

impl SharedAcks {
    /// The replicas heard from within the last 15 s (as write concerns count
    /// them), with their cluster addresses.
    pub fn members(&self) -> Vec<Member> {
        let now = now_ms();
        let tracker = self.tracker.lock();
        let mut members: Vec<Member> = self
            .addresses
            .lock()
            .iter()
            .filter(|(name, _)| {
                tracker
                    .last_seen_ms(name)
                    .is_some_and(|at| now.saturating_sub(at) <= MAX_SILENCE_MS)
            })
            .map(|(name, &addr)| Member {
                name: name.clone(),
                addr,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }

    /// Starts from the replicas a store remembers (all but this node, told apart by
    /// its address: a name may be shared, an address is not).
    pub fn load_known(&self, known: KnownMembers, own_addr: std::net::SocketAddr) {
        let names: Vec<String> = known
            .others(&[own_addr])
            .into_iter()
            .map(|m| m.name)
            .collect();
        *self.known.lock() = known;
        self.know(names);
    }

    /// The name a replica presenting certificate name `name` from `addr` is counted
    /// under. Normally the name itself; but while another address that used the
    /// name is still heard from, the newcomer is counted apart, as `name@addr`: two
    /// nodes sharing a certificate never pass for one. A node that moved (its old
    /// address went silent for 15 s) is then merged back under its name, so it
    /// counts twice at most that long — never too few.
    /// Also says whether a merge changed the known set (which must then be stored).
    fn identify(&self, name: String, addr: std::net::SocketAddr) -> (String, bool) {
        let known_at = self.addresses.lock().get(&name).copied();
        let apart = format!("{name}@{addr}");
        match known_at {
            Some(other) if other != addr => {
                let live = self
                    .tracker
                    .lock()
                    .last_seen_ms(&name)
                    .is_some_and(|at| now_ms().saturating_sub(at) <= MAX_SILENCE_MS);
                if live {
                    tracing::debug!(%name, %addr, %other, "a second address presents this certificate name: counting it apart");
                    (apart, false)
                } else {
                    // The node moved: its old address went quiet.
                    let merged = self.merge(&apart, &name);
                    (name, merged)
                }
            }
            _ => (name, false),
        }
    }

    /// Moves what was counted under `from` to `to` (the same node); whether `from`
    /// was known at all.
    fn merge(&self, from: &str, to: &str) -> bool {
        self.tracker.lock().merge(from, to);
        self.addresses.lock().remove(from);
        self.known.lock().forget(from)
    }

    /// Records a replica pulling as `name` from `addr`; whether the known set
    /// changed (and must be stored).
    fn remember(&self, name: &str, addr: std::net::SocketAddr) -> bool {
        self.addresses.lock().insert(name.to_string(), addr);
        self.known.lock().insert(name, addr)
    }

    /// Forgets replica `name` entirely (retired): it no longer counts for
    /// `majority`. Returns whether it was known, and the known set to store.
    pub fn forget(&self, name: &str) -> (bool, KnownMembers) {
        let in_tracker = self.tracker.lock().forget(name);
        self.addresses.lock().remove(name);
        let mut known = self.known.lock();
        let in_store = known.forget(name);
        drop(known);
        self.changed.send_modify(|v| *v += 1);
        (in_tracker || in_store, self.known.lock().clone())
    }

    /// The replicas `majority` counts, by name.
    pub fn known_replicas(&self) -> Vec<String> {
        self.tracker.lock().known_replicas()
    }

    /// Each replica's cluster address as last seen, by name.
    pub fn addresses(&self) -> HashMap<String, std::net::SocketAddr> {
        self.addresses.lock().clone()
    }

    /// Forgets every replica's acknowledgement, for a new epoch. Sequence numbers are
    /// reused after a demotion discards entries, so an acknowledgement from an
    /// earlier term as primary could otherwise count for a different entry.
    pub fn reset(&self) {
        let mut tracker = self.tracker.lock();
        let known = tracker.known_replicas();
        *tracker = AckTracker::new();
        tracker.know(known);
        drop(tracker);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The cluster has these replicas, heard from lately or not.
    pub fn know(&self, replicas: impl IntoIterator<Item = String>) {
        self.tracker.lock().know(replicas);
        self.changed.send_modify(|v| *v += 1);
    }

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
                return Err(ReplicationError::WriteConcernTimeout {
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

/// A snapshot offered to one replica: its region, its file, and since when.
pub(crate) struct Offer {
    key: RegionKey,
    file: std::path::PathBuf,
    since: std::time::Instant,
}

/// An offer not taken within this long is withdrawn and its file removed (the
/// replica died, was retired, or gave up): offers must not fill the disk.
const OFFER_TTL: Duration = Duration::from_secs(15 * 60);

/// Where a node writes the snapshots it offers: one directory, emptied when the
/// replication role starts, so files a crash or a cancelled offer left behind go.
pub(crate) fn outgoing_dir(db: &Database) -> std::path::PathBuf {
    db.path().join(".outgoing-snapshots")
}

/// Empties (and creates) the outgoing directory.
pub(crate) fn reset_outgoing(db: &Database) -> Result<()> {
    let dir = outgoing_dir(db);
    let failed = |e: std::io::Error| Error::Snapshot(format!("{}: {e}", dir.display()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(failed)?;
    }
    Ok(std::fs::create_dir_all(&dir).map_err(failed)?)
}

/// Withdraws offers older than [`OFFER_TTL`] and removes files in the outgoing
/// directory that no offer holds and that are as old (a write cancelled halfway).
fn sweep_offers(db: &Database, transport: &Transport, offered: &Mutex<HashMap<String, Offer>>) {
    let mut offered = offered.lock();
    let expired: Vec<String> = offered
        .iter()
        .filter(|(_, o)| o.since.elapsed() > OFFER_TTL)
        .map(|(name, _)| name.clone())
        .collect();
    for name in expired {
        if let Some(offer) = offered.remove(&name) {
            transport.remove_region(offer.key);
            let _ = std::fs::remove_file(&offer.file);
            tracing::info!(replica = %name, "withdrew a snapshot offer nobody took");
        }
    }
    let held: Vec<std::path::PathBuf> = offered.values().map(|o| o.file.clone()).collect();
    for entry in std::fs::read_dir(outgoing_dir(db))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > OFFER_TTL);
        if old && !held.contains(&path) {
            let _ = std::fs::remove_file(&path);
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
    /// The snapshot region (and its file) each replica was last offered, freed when
    /// it says it is done or asks again.
    offered: Arc<Mutex<HashMap<String, Offer>>>,
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

impl Handler for LogServer {
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> Answer {
        let db = self.served.current();
        let codec = self.codec;
        let acks = self.acks.clone();
        let max_wait = self.max_wait;
        let transport = self.transport.clone();
        let offered = self.offered.clone();
        let role = self.role.clone();
        Box::pin(async move {
            // Log pulls, snapshots, fences and promises move members' state.
            if !from.role.is_member() {
                return Err(
                    "replication is for cluster members; a client certificate cannot take part"
                        .to_string(),
                );
            }
            let (replica, merged) = acks.identify(member_name(&from.names, from.addr), from.addr);
            let request = Request::decode(&body).map_err(|e| e.to_string())?;
            let current = role.get();
            if matches!(request, Request::Pull(_) | Request::Snapshot) && current != Role::Primary {
                return Err(format!(
                    "this node is not the primary: {}",
                    current.describe()
                ));
            }
            match request {
                Request::Pull(pull) => {
                    if acks.remember(&replica, from.addr) || merged {
                        let known = acks.known.lock().clone();
                        if let Err(e) = known.store(&db) {
                            tracing::warn!(error = %e, "could not store the replicas this node knows of");
                        }
                    }
                    serve_pull(db, codec, Some((&acks, &replica)), pull, max_wait)
                        .await
                        .map_err(|e| e.to_string())
                }
                Request::Members => {
                    let addrs: Vec<std::net::SocketAddr> =
                        acks.members().into_iter().map(|m| m.addr).collect();
                    serde_json::to_vec(&addrs).map_err(|e| e.to_string())
                }
                Request::NamedMembers => {
                    serde_json::to_vec(&acks.members()).map_err(|e| e.to_string())
                }
                // A peer catching up does not acknowledge anything and never waits.
                // This node first promises its promotion to take nothing more from
                // an older primary, so the answer holds all it ever acknowledged.
                Request::CatchUp(pull, fence) => {
                    role.promise(&db, fence).await.map_err(|e| e.to_string())?;
                    serve_pull(db, codec, None, pull, Duration::ZERO)
                        .await
                        .map_err(|e| e.to_string())
                }
                Request::Release(fence) => {
                    let released = role.release(&db, fence).await.map_err(|e| e.to_string())?;
                    Ok(vec![u8::from(released)])
                }
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
                        if offered.get(&replica).map(|o| o.key) == Some(RegionKey(key)) {
                            if let Some(offer) = offered.remove(&replica) {
                                let _ = transport.remove_region(offer.key);
                                let _ = std::fs::remove_file(offer.file);
                            }
                        }
                    }
                    Ok(Vec::new())
                }
            }
        })
    }
}

/// Answers a pull from this node's log; `acks` (with the puller's name) records a
/// replica's acknowledgement.
async fn serve_pull(
    db: Database,
    codec: DeltaCodec,
    acks: Option<(&SharedAcks, &str)>,
    pull: PullRequest,
    max_wait: Duration,
) -> Result<Vec<u8>> {
    if let Some((acks, replica)) = acks {
        acks.record(replica, pull.from.saturating_sub(1));
    }
    if pull.from < db.log_start() {
        let mut out = vec![NEEDS_SNAPSHOT];
        out.extend(db.log_start().to_be_bytes());
        return Ok(out);
    }
    let mut applied = db.watch_applied();
    let wait = Duration::from_millis(u64::from(pull.wait_ms)).min(max_wait);
    let _ = tokio::time::timeout(wait, applied.wait_for(|&seq| seq >= pull.from)).await;
    let limit = pull.max.clamp(1, 100_000) as usize;
    let entries = db.read_log_within(pull.from, limit, MAX_PULL_BYTES)?;
    db.metrics()
        .replication_operations
        .with_label_values(&["primary"])
        .inc_by(entries.len() as u64);
    let wire: Vec<DeltaEntry> = entries
        .iter()
        .map(|(seq, op)| entry_to_wire(*seq, op))
        .collect::<crate::Result<_>>()?;
    let encoded = codec.encode(&wire);
    let metrics = db.metrics();
    metrics.replication_bytes_raw.inc_by(encoded.raw_len as u64);
    metrics
        .replication_bytes_shipped
        .inc_by(encoded.bytes.len() as u64);
    // When the batch's first entry and the first entry after it were committed, so
    // the replica can tell the age of the oldest operation it lacks.
    let primary_last = db.applied_seq();
    let written = |seq: u64| db.committed_ms(seq).unwrap_or_else(now_ms);
    let first_ms = entries.first().map_or(0, |(seq, _)| written(*seq));
    let next = entries.last().map_or(pull.from, |(seq, _)| seq + 1);
    let next_ms = if next <= primary_last {
        written(next)
    } else {
        0
    };
    let mut out = Vec::with_capacity(RESPONSE_HEADER + encoded.bytes.len());
    out.push(PULLED);
    out.extend(primary_last.to_be_bytes());
    out.extend(first_ms.to_be_bytes());
    out.extend(db.epoch_history()?.current().to_be_bytes());
    out.extend(next_ms.to_be_bytes());
    out.push(u8::from(encoded.compressed));
    out.extend(encoded.bytes);
    Ok(out)
}

/// Writes a snapshot of `db` to a file, offers the file as a transport region and
/// answers with where it is; the replica reads it at its own pace, chunk by chunk
/// from disk, so a snapshot of any size costs the primary no memory.
async fn offer_snapshot(
    db: Database,
    transport: &Transport,
    offered: &Mutex<HashMap<String, Offer>>,
    replica: String,
) -> Result<Vec<u8>> {
    sweep_offers(&db, transport, offered);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let file = outgoing_dir(&db).join(format!("offer-{nanos}.snapshot"));
    let (file, applied_seq, len, checksum) =
        tokio::task::spawn_blocking(move || -> Result<(std::path::PathBuf, u64, u64, u64)> {
            let summed = db.write_snapshot(&file).and_then(|written| {
                let (len, checksum) = needle_transport::region::file_checksum(&file)
                    .map_err(|e| Error::Snapshot(format!("reading {}: {e}", file.display())))?;
                Ok((written.info.applied_seq, len, checksum))
            });
            match summed {
                Ok((applied_seq, len, checksum)) => Ok((file, applied_seq, len, checksum)),
                Err(e) => {
                    let _ = std::fs::remove_file(&file);
                    Err(e.into())
                }
            }
        })
        .await
        .map_err(|_| Error::Closed)??;
    let key = match transport.register_file_region(&file) {
        Ok((key, _)) => key,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(ReplicationError::Transport(e));
        }
    };
    let offer = Offer {
        key,
        file,
        since: std::time::Instant::now(),
    };
    if let Some(previous) = offered.lock().insert(replica.clone(), offer) {
        let _ = transport.remove_region(previous.key);
        let _ = std::fs::remove_file(previous.file);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn two_live_replicas_sharing_a_name_are_counted_apart() {
        let acks = SharedAcks::default();
        let (first, _) = acks.identify("node-2".into(), addr(1));
        assert_eq!(first, "node-2");
        acks.remember(&first, addr(1));
        acks.record(&first, 0);
        // Another address with the same name while the first is live: apart.
        let (second, _) = acks.identify("node-2".into(), addr(2));
        assert_eq!(second, "node-2@127.0.0.1:2");
        acks.remember(&second, addr(2));
        acks.record(&second, 0);
        assert_eq!(acks.known_replicas().len(), 2);
        // The same address again is the same replica.
        assert_eq!(acks.identify("node-2".into(), addr(1)).0, "node-2");
        // Once the first address is silent, the second is merged under the name.
        acks.tracker
            .lock()
            .expire_silent(now_ms() + 2 * MAX_SILENCE_MS, MAX_SILENCE_MS);
        acks.tracker.lock().seen("node-2", 0, 0);
        let (merged, changed) = acks.identify("node-2".into(), addr(2));
        assert_eq!(merged, "node-2");
        assert!(changed);
        assert_eq!(acks.known_replicas(), vec!["node-2".to_string()]);
    }
}
