//! Manual failover: promotion (catch up from peers under a quorum, start a new epoch,
//! fence the old primary) and demotion (discard what the new primary never had,
//! resync, follow it).

use crate::replication::primary_replica::epoch::EpochStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::DeltaCodec;

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::epoch::Fence;
use crate::replication::primary_replica::replica::pull::{
    apply, epochs_of, fetch_from_peer, Fetched,
};
use crate::replication::primary_replica::replica::snapshot_install::install_snapshot;
use crate::replication::primary_replica::replica::stream::Follower;
use crate::replication::primary_replica::role::Role;
use crate::replication::primary_replica::running::Replication;
use crate::replication::primary_replica::wire::Request;
use crate::Error;

/// The result of a promotion.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Promoted {
    pub epoch: u64,
    pub applied_seq: u64,
    /// Entries taken from peers before the new epoch began.
    pub caught_up: u64,
}

/// The result of a demotion.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Demoted {
    pub epoch: u64,
    /// Operations this node had that the new primary never received, now gone.
    pub discarded: u64,
    pub applied_seq: u64,
}

/// How long a promotion waits for the old primary to say which replicas it has.
const ASK_OLD_PRIMARY: std::time::Duration = std::time::Duration::from_secs(1);

impl Replication {
    /// The replicas the old primary counts for `majority` now, if it answers within
    /// [`ASK_OLD_PRIMARY`]: this node asks only every 2 s while it follows, so a
    /// replica that joined since would be missing from the cluster a promotion
    /// counts, and the promotion could need too few nodes (while the old primary,
    /// still up, takes acknowledgements from that replica). An old primary that is
    /// down or cut off leaves the membership this node last heard.
    async fn ask_old_primary_for_members(&self, old_primary: SocketAddr) {
        let asked = tokio::time::timeout(ASK_OLD_PRIMARY, async {
            let peer = self.transport.connect(old_primary).await.ok()?;
            crate::replication::primary_replica::replica::follow::ask_members(&peer).await
        })
        .await;
        if let Ok(Some(members)) = asked {
            crate::replication::primary_replica::replica::follow::remember_members(self, members);
        }
    }

    /// Makes this replica (or fenced former primary) the primary of a new epoch. It
    /// stops following first, so no entry from the old primary lands after its own
    /// first write; takes from each of `peers` (other replicas of the same primary)
    /// the entries they received and it did not, so a write a majority acknowledged
    /// survives even when the promoted replica was not among that majority; then
    /// tells the old primary, until it hears it, to stop taking writes. If a peer
    /// cannot be caught up from, nothing changes and the node follows on.
    ///
    /// With no `peers` named, the replicas the old primary last reported are used.
    /// Unless `force`, the promotion needs to hear from enough nodes (itself and
    /// peers it caught up from) that every majority of the last known cluster
    /// includes one of them: then no write a majority acknowledged can be missing.
    pub async fn promote(self: &Arc<Self>, peers: &[SocketAddr], force: bool) -> Result<Promoted> {
        let _one = self.changing.lock().await;
        let old_primary = match self.role() {
            Role::Replica { primary } | Role::Fenced { primary } => primary,
            Role::Primary => {
                return Err(ReplicationError::WrongRole {
                    role: Role::Primary.describe(),
                    needs: "only a replica is promoted",
                })
            }
            Role::Standalone => {
                return Err(ReplicationError::WrongRole {
                    role: Role::Standalone.describe(),
                    needs: "only a replica is promoted",
                })
            }
        };
        self.stop_following().await;
        self.ask_old_primary_for_members(old_primary).await;
        // Every other replica this node has known of, by name.
        let known: Vec<crate::replication::primary_replica::members::Member> = self
            .members
            .lock()
            .others(&[old_primary, self.cluster_addr]);
        let named = !peers.is_empty();
        let candidates: Vec<SocketAddr> = if named {
            // Each node is caught up from, and counted, once.
            let mut unique = peers.to_vec();
            unique.sort();
            unique.dedup();
            unique.retain(|&a| a != self.cluster_addr && a != old_primary);
            unique
        } else {
            known.iter().map(|m| m.addr).collect()
        };
        // The old primary, this node and every other replica known.
        let cluster = 1 + known.len().max(candidates.len()) + 1;
        let needed = cluster - cluster / 2;
        // The epoch this promotion will begin, promised by every peer it catches up
        // from before they answer (see RoleCell::promise).
        let db = self.served.current();
        let seen = db.fenced_by()?.map_or(0, |f| f.epoch);
        let epoch = db.epoch_history()?.current().max(seen) + 1;
        let fence = Fence {
            epoch,
            primary: self.cluster_addr,
        };
        let mut reached = 1;
        let mut caught_up = 0;
        let mut failure = None;
        let mut promised = Vec::new();
        let mut reached_names = Vec::new();
        for &peer in &candidates {
            match self.catch_up_from(peer, fence).await {
                Ok((taken, name)) => {
                    caught_up += taken;
                    reached += 1;
                    promised.push(peer);
                    reached_names.push(name);
                }
                Err(e) if named => {
                    failure = Some(e);
                    break;
                }
                Err(e) => tracing::warn!(%peer, error = %e, "peer not reached for promotion"),
            }
        }
        if failure.is_none() && reached < needed && !force {
            failure = Some(ReplicationError::NoQuorum {
                needed,
                cluster,
                reached,
            });
        }
        if let Some(e) = failure {
            self.release_promises(&promised, fence).await;
            if matches!(self.role(), Role::Replica { .. }) {
                *self.following.lock().await = Some(self.spawn_follow(old_primary));
            }
            return Err(e);
        }
        let mut history = db.epoch_history()?;
        let applied = db.applied_seq();
        history.begin(epoch, applied + 1);
        db.set_epoch_history(&history)?;
        db.set_fenced_by(None)?;
        db.metrics().replication_epoch.set(epoch as i64);
        // Replicas acknowledge this epoch's entries afresh (see SharedAcks::reset),
        // and a majority is one of the whole cluster this promotion counted: every
        // node known but this one, the old primary included.
        self.acks.reset();
        let mut cluster_names: Vec<String> = self
            .members
            .lock()
            .others(&[self.cluster_addr])
            .into_iter()
            .map(|m| m.name)
            .collect();
        cluster_names.extend(reached_names);
        if !cluster_names.iter().any(|n| *n == old_primary.to_string())
            && !self
                .members
                .lock()
                .members()
                .iter()
                .any(|m| m.addr == old_primary)
        {
            cluster_names.push(old_primary.to_string());
        }
        self.acks.know(cluster_names);
        self.role.set(Role::Primary);
        tracing::warn!(epoch, applied_seq = applied, %old_primary, "promoted to primary");
        self.spawn_fence_notice(
            old_primary,
            Fence {
                epoch,
                primary: self.cluster_addr,
            },
        );
        Ok(Promoted {
            epoch,
            applied_seq: applied,
            caught_up,
        })
    }

    /// Tells the peers a failed promotion caught up from that their promise is void,
    /// so they follow the old primary again. Best effort: a peer that does not hear
    /// stays out of the old primary's quorum until it is re-pointed.
    async fn release_promises(&self, peers: &[SocketAddr], fence: Fence) {
        for &addr in peers {
            let released = match self.transport.connect(addr).await {
                Ok(peer) => peer
                    .request(&Request::Release(fence).encode())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = released {
                tracing::warn!(%addr, error = %e, "could not release a failed promotion's promise");
            }
        }
    }

    /// Applies the entries `addr` (a replica of the same primary, in the same epoch)
    /// has past this node's, once it has promised `fence`; returns how many, and the
    /// peer's name.
    async fn catch_up_from(&self, addr: SocketAddr, fence: Fence) -> Result<(u64, String)> {
        let peer = self
            .transport
            .connect(addr)
            .await
            .map_err(ReplicationError::peer("catching up from", addr))?;
        let name = crate::replication::primary_replica::members::member_name(&peer.names(), addr);
        let db = self.served.current();
        let epoch = db.epoch_history()?.current();
        let codec = DeltaCodec::default();
        let mut follower = Follower::new(db.applied_seq());
        let before = follower.applied();
        loop {
            match fetch_from_peer(&peer, &follower, &codec, self.batch_size, fence).await? {
                Fetched::NeedsSnapshot { log_start } => {
                    return Err(ReplicationError::LogPurged {
                        peer: addr,
                        needed: follower.next_needed(),
                        log_start,
                    })
                }
                Fetched::Batch { epoch: theirs, .. } if theirs != epoch => {
                    return Err(ReplicationError::EpochMismatch {
                        peer: addr,
                        theirs,
                        mine: epoch,
                    })
                }
                Fetched::Batch { entries, .. } if entries.is_empty() => break,
                Fetched::Batch { info, entries, .. } => {
                    apply(&db, &mut follower, info, entries).await?;
                }
            }
        }
        let taken = follower.applied() - before;
        if taken > 0 {
            tracing::warn!(%addr, entries = taken, "took entries a peer had and this node lacked before promotion");
        }
        Ok((taken, name))
    }

    /// Makes this node a replica of `primary`, which must be in a newer or the same
    /// epoch. Operations this node has that `primary` never received (a former
    /// primary's unreplicated tail) are discarded, counted and logged, and the node
    /// resyncs from a snapshot of `primary`; otherwise it just streams on.
    pub async fn demote(self: &Arc<Self>, primary: SocketAddr) -> Result<Demoted> {
        let _one = self.changing.lock().await;
        if primary == self.cluster_addr {
            return Err(Error::InvalidRequest("a node cannot follow itself".into()).into());
        }
        let before = self.role();
        if before == Role::Standalone {
            return Err(ReplicationError::WrongRole {
                role: Role::Standalone.describe(),
                needs: "only a primary or a replica follows another primary",
            });
        }
        self.stop_following().await;
        // No more writes from here on, whatever happens next; the ones already past
        // the role check are applied first, so the resync below sees them.
        let closed = self.writes.write().await;
        self.role.set(Role::Replica { primary });
        drop(closed);
        self.acks.reset();
        let outcome = self.resync_from(primary).await;
        if let Err(e) = &outcome {
            tracing::warn!(%primary, error = %e, "demotion failed; still refusing writes and following it");
        }
        *self.following.lock().await = Some(self.spawn_follow(primary));
        outcome
    }

    async fn resync_from(&self, primary: SocketAddr) -> Result<Demoted> {
        let peer = self
            .transport
            .connect(primary)
            .await
            .map_err(ReplicationError::peer("connecting to", primary))?;
        let theirs = epochs_of(&peer, primary).await?;
        let db = self.served.current();
        let mine = db.epoch_history()?;
        if theirs.current() < mine.current() {
            return Err(ReplicationError::OlderEpoch {
                peer: primary,
                theirs: theirs.current(),
                mine: mine.current(),
            });
        }
        let applied = db.applied_seq();
        let shared = mine.shared_prefix(&theirs, applied);
        let discarded = applied - shared;
        if discarded > 0 {
            tracing::warn!(
                first = shared + 1,
                last = applied,
                count = discarded,
                new_primary = %primary,
                "discarding operations the new primary never received"
            );
            db.metrics()
                .replication_discarded_operations
                .inc_by(discarded);
            install_snapshot(&self.served, &peer).await?;
            self.replica.lock().snapshots_installed += 1;
        } else {
            db.set_epoch_history(&theirs)?;
        }
        let db = self.served.current();
        db.set_fenced_by(None)?;
        db.metrics().replication_epoch.set(theirs.current() as i64);
        Ok(Demoted {
            epoch: theirs.current(),
            discarded,
            applied_seq: db.applied_seq(),
        })
    }

    /// Tells `old_primary` about `fence` every second until it answers (it may be
    /// down or cut off), or until this node is no longer the primary of that epoch.
    fn spawn_fence_notice(self: &Arc<Self>, old_primary: SocketAddr, fence: Fence) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while me.role() == Role::Primary && me.epoch().is_ok_and(|e| e == fence.epoch) {
                let told = match me.transport.connect(old_primary).await {
                    Ok(peer) => peer.request(&Request::Fence(fence).encode()).await,
                    Err(e) => Err(e),
                };
                match told {
                    Ok(_) => {
                        tracing::info!(%old_primary, epoch = fence.epoch, "the old primary knows of the new epoch");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%old_primary, error = %e, "old primary not reached; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}
