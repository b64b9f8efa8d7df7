//! The loop a replica runs while it follows its primary: connect, fetch, apply,
//! install a snapshot when the primary's log no longer reaches back far enough, and
//! learn who the other replicas are.

use crate::replication::primary_replica::epoch::EpochStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::{DeltaCodec, Peer, TransportError};
use tokio::sync::watch;

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::members::{member_name, Member, MemberList};
use crate::replication::primary_replica::primary::log_server::now_ms;
use crate::replication::primary_replica::replica::pull::{apply, epochs_of, fetch, Fetched};
use crate::replication::primary_replica::replica::snapshot_install::install_snapshot;
use crate::replication::primary_replica::replica::stream::Follower;
use crate::replication::primary_replica::running::{Following, Replication};
use crate::replication::primary_replica::wire::Request;

/// How often a replica asks its primary who the other replicas are.
const MEMBERS_REFRESH: Duration = Duration::from_secs(2);

impl Replication {
    pub(in crate::replication) fn spawn_follow(self: &Arc<Self>, primary: SocketAddr) -> Following {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow(Arc::clone(self), primary, stopped));
        Following { stop, task }
    }

    /// Stops the follow loop and waits for it: an apply in progress finishes first.
    pub(in crate::replication) async fn stop_following(&self) {
        if let Some(following) = self.following.lock().await.take() {
            let _ = following.stop.send(true);
            let _ = following.task.await;
        }
        self.replica.lock().connected = false;
    }
}

/// Follows `primary` until told to stop: connect, pull and apply, installing a
/// snapshot when the primary's log no longer reaches back far enough; on any
/// failure wait a second and start again from what is durable here.
async fn follow(
    replication: Arc<Replication>,
    primary: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let codec = DeltaCodec::default();
    let served = replication.served.clone();
    let applied_ops = served
        .current()
        .metrics()
        .replication_operations
        .with_label_values(&["replica"]);
    while !*stopped.borrow() {
        let connected = tokio::select! {
            _ = stopped.changed() => return,
            connected = replication.transport.connect(primary) => connected,
        };
        match connected {
            Ok(peer) => {
                tracing::info!(%primary, "following the primary");
                // The primary is a node of the cluster too, for a later promotion's
                // count (once demoted it will be a replica nobody reported yet).
                let primary_member = Member {
                    name: member_name(&peer.names(), primary),
                    addr: primary,
                };
                remember_members(&replication, vec![primary_member]);
                let mut follower = Follower::new(served.current().applied_seq());
                let mut members_asked = std::time::Instant::now() - MEMBERS_REFRESH;
                loop {
                    let before = follower.applied();
                    let result = tokio::select! {
                        _ = stopped.changed() => return,
                        fetched = fetch(&peer, &follower, &codec, replication.batch_size, replication.sync_interval) => fetched,
                    };
                    // From here to the next fetch nothing is cancelled: an apply that
                    // has started always finishes, so a promotion never races it.
                    let result = match result {
                        Ok(fetched) => {
                            step(&replication, &peer, primary, &mut follower, fetched).await
                        }
                        Err(e) => Err(e),
                    };
                    applied_ops.inc_by(follower.applied().saturating_sub(before));
                    {
                        let mut status = replication.replica.lock();
                        status.applied_seq = follower.applied();
                        status.lag = follower.lag(now_ms());
                        match &result {
                            Ok(()) => {
                                status.connected = true;
                                status.last_error = None;
                            }
                            Err(e) => {
                                tracing::warn!(%primary, error = %e, "replication stream broke");
                                status.connected = false;
                                status.last_error = Some(e.to_string());
                            }
                        }
                    }
                    if result.is_err() {
                        break;
                    }
                    if members_asked.elapsed() >= MEMBERS_REFRESH {
                        members_asked = std::time::Instant::now();
                        // Under the stop signal: a promotion waits for this task, and a
                        // primary cut off mid-request would hold it for the whole
                        // request timeout, long enough for the isolated primary to stop
                        // counting its replicas as connected.
                        let members = tokio::select! {
                            _ = stopped.changed() => return,
                            members = ask_members(&peer) => members,
                        };
                        if let Some(members) = members {
                            // A union, never replaced: a primary that just took over
                            // has heard from only some replicas yet, and a promotion
                            // that counted the cluster smaller would need too few.
                            remember_members(&replication, members);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%primary, error = %e, "cannot reach the primary");
                let mut status = replication.replica.lock();
                status.connected = false;
                status.last_error = Some(e.to_string());
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Applies what one fetch brought: a batch (after checking the primary's epoch) or a
/// snapshot install.
async fn step(
    replication: &Replication,
    peer: &Peer,
    primary: SocketAddr,
    follower: &mut Follower,
    fetched: Fetched,
) -> Result<()> {
    // Nothing is applied while a promise to a promotion is being made (and nothing
    // from an older primary after one).
    let _applying = replication.role.applying().await;
    let db = replication.served.current();
    let promised = db.fenced_by()?;
    let refuse = |epoch: u64| match promised {
        Some(p) if p.epoch > epoch => Err(ReplicationError::Promised {
            primary: p.primary,
            epoch: p.epoch,
        }),
        _ => Ok(()),
    };
    match fetched {
        Fetched::NeedsSnapshot { log_start } => {
            refuse(db.epoch_history()?.current())?;
            tracing::warn!(%primary, needed = follower.next_needed(), log_start, "behind the primary's retained log: installing a snapshot");
            let applied = install_snapshot(&replication.served, peer).await?;
            *follower = Follower::new(applied);
            replication.replica.lock().snapshots_installed += 1;
            Ok(())
        }
        Fetched::Batch {
            info,
            entries,
            epoch,
        } => {
            refuse(epoch)?;
            let mine = db.epoch_history()?;
            if epoch < mine.current() {
                return Err(ReplicationError::OlderEpoch {
                    peer: primary,
                    theirs: epoch,
                    mine: mine.current(),
                });
            }
            if epoch > mine.current() {
                // The primary moved to a new epoch (it was promoted while this node
                // followed it): take its history, so a later demotion compares right.
                let theirs = epochs_of(peer, primary).await?;
                db.set_epoch_history(&theirs)?;
            }
            apply(&db, follower, info, entries).await?;
            Ok(())
        }
    }
}

/// The members the primary knows of, named; from a primary of an earlier version,
/// which answers the named request with an error, by address only. A primary that
/// does not answer at all is not asked twice.
pub(in crate::replication::primary_replica) async fn ask_members(
    peer: &Peer,
) -> Option<Vec<Member>> {
    let reply = match peer.request(&Request::NamedMembers.encode()).await {
        Ok(reply) => reply,
        Err(TransportError::Remote(_)) => peer.request(&Request::Members.encode()).await.ok()?,
        Err(_) => return None,
    };
    decode_members(&reply)
}

/// A primary's answer to [`Request::Members`]: named members, or (from a primary
/// of an earlier version) bare addresses.
fn decode_members(reply: &[u8]) -> Option<Vec<Member>> {
    serde_json::from_slice::<MemberList>(reply)
        .ok()
        .map(MemberList::into_members)
}

/// Adds `members` to those this replica knows of, in memory and in its store.
pub(in crate::replication::primary_replica) fn remember_members(
    replication: &Replication,
    members: Vec<Member>,
) {
    let mut known = replication.members.lock();
    let mut changed = false;
    for member in members {
        changed |= known.insert(&member.name, member.addr);
    }
    if changed {
        if let Err(e) = known.store(&replication.served.current()) {
            tracing::warn!(error = %e, "could not store the replicas this node knows of");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use needle_transport::{BoxFuture, Handler, PeerInfo, Security, Transport, TransportConfig};

    use super::*;

    /// A primary that never answers the named request (cut off mid-request), or
    /// (`older`) answers it with an error, as a primary of an earlier version does.
    struct Primary {
        older: bool,
        asked: Arc<AtomicUsize>,
    }

    impl Handler for Primary {
        fn request(&self, _: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let older = self.older;
            Box::pin(async move {
                match Request::decode(&body) {
                    Ok(Request::NamedMembers) if older => Err("unknown request".into()),
                    Ok(Request::NamedMembers) => std::future::pending().await,
                    Ok(Request::Members) => Ok(br#"["127.0.0.1:7001"]"#.to_vec()),
                    _ => Err("unexpected".into()),
                }
            })
        }
    }

    async fn ask(older: bool) -> (Option<Vec<Member>>, usize) {
        let asked = Arc::new(AtomicUsize::new(0));
        let mut config = TransportConfig::new(Security::InsecureDev);
        config.request_timeout = Duration::from_secs(2);
        let local = "127.0.0.1:0".parse().unwrap();
        let handler = Arc::new(Primary {
            older,
            asked: asked.clone(),
        });
        let server = Transport::bind(local, config.clone(), handler).unwrap();
        let client = Transport::bind(
            local,
            config,
            Arc::new(Primary {
                older,
                asked: Arc::new(AtomicUsize::new(0)),
            }),
        )
        .unwrap();
        let peer = client.connect(server.local_addr().unwrap()).await.unwrap();
        let members = ask_members(&peer).await;
        (members, asked.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_primary_that_does_not_answer_is_asked_once() {
        let (members, asked) = ask(false).await;
        assert_eq!(members, None);
        assert_eq!(
            asked, 1,
            "a timed-out request must not be followed by another"
        );
    }

    #[tokio::test]
    async fn an_older_primary_is_asked_for_addresses() {
        let (members, asked) = ask(true).await;
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            members,
            Some(vec![Member {
                name: addr.to_string(),
                addr
            }])
        );
        assert_eq!(asked, 2);
    }
}
