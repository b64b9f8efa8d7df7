//! A node's primary–replica role: what it is ([`Role`]) and the cell the transport's
//! handler, the follow loop and failover share it through ([`RoleCell`]).

use crate::replication::primary_replica::epoch::EpochStore;
use std::net::SocketAddr;

use parking_lot::Mutex;

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::epoch::Fence;
use crate::Database;

/// How a node takes part in replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No replication: the only copy, no transport.
    Standalone,
    /// Takes writes and serves its log on `cluster_addr`.
    Primary,
    /// Follows `primary`; refuses writes (NOT_PRIMARY).
    Replica { primary: SocketAddr },
    /// Was the primary until a newer one (`primary`, in a higher epoch) announced
    /// itself: refuses writes until it is demoted.
    Fenced { primary: SocketAddr },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Primary => "primary",
            Role::Replica { .. } => "replica",
            Role::Fenced { .. } => "fenced",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Role::Replica { primary } => format!("a replica of {primary}"),
            Role::Fenced { primary } => {
                format!("a fenced former primary; the primary is {primary}")
            }
            other => other.name().to_string(),
        }
    }
}

/// The role, shared by the transport's handler and the rest of the node.
#[derive(Debug)]
pub struct RoleCell {
    role: Mutex<Role>,
    /// Held by a replica while it applies what its primary sent, and while it makes
    /// a promise to a promotion: a promise never lands in the middle of an apply.
    applying: tokio::sync::Mutex<()>,
}

impl RoleCell {
    pub fn new(role: Role) -> RoleCell {
        RoleCell {
            role: Mutex::new(role),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self) -> Role {
        *self.role.lock()
    }

    pub(in crate::replication) fn set(&self, role: Role) {
        *self.role.lock() = role;
    }

    /// Held while a replica applies a batch from its primary (see
    /// [`RoleCell::promise`]).
    pub(in crate::replication) async fn applying(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.applying.lock().await
    }

    /// A replica promises the promotion `fence` names, before that promotion reads
    /// its log: from now on (durably) it applies nothing from a primary of an older
    /// epoch. So every entry it acknowledged to the old primary is in what the
    /// promotion reads, and a write a majority acknowledged cannot be lost to it. One
    /// promise per epoch: a second promotion to the same epoch is refused.
    pub(in crate::replication) async fn promise(&self, db: &Database, fence: Fence) -> Result<()> {
        let _applying = self.applying.lock().await;
        if !matches!(self.get(), Role::Replica { .. }) {
            return Err(ReplicationError::WrongRole {
                role: self.get().describe(),
                needs: "only a replica can be caught up from",
            });
        }
        let current = db.epoch_history()?.current();
        if fence.epoch <= current {
            return Err(ReplicationError::StalePromotion {
                offered: fence.epoch,
                current,
            });
        }
        if let Some(promised) = db.fenced_by()? {
            if promised != fence && promised.epoch >= fence.epoch {
                return Err(ReplicationError::Promised {
                    primary: promised.primary,
                    epoch: promised.epoch,
                });
            }
        }
        if db.fenced_by()? != Some(fence) {
            db.set_fenced_by(Some(&fence))?;
            tracing::warn!(epoch = fence.epoch, primary = %fence.primary, "a promotion is catching up from this replica: nothing more from an older primary");
        }
        Ok(())
    }

    /// Releases the promise made to `fence` (its promotion failed). Returns whether
    /// there was one.
    pub(in crate::replication) async fn release(
        &self,
        db: &Database,
        fence: Fence,
    ) -> Result<bool> {
        let _applying = self.applying.lock().await;
        if db.fenced_by()? == Some(fence) && matches!(self.get(), Role::Replica { .. }) {
            db.set_fenced_by(None)?;
            tracing::info!(epoch = fence.epoch, "promotion failed: promise released");
            return Ok(true);
        }
        Ok(false)
    }

    /// A newer primary announced itself. A primary in an older epoch stops taking
    /// writes, durably (it stays fenced after a restart). Returns whether it fenced.
    pub fn fence(&self, db: &Database, fence: Fence) -> Result<bool> {
        let mut role = self.role.lock();
        if *role != Role::Primary || fence.epoch <= db.epoch_history()?.current() {
            return Ok(false);
        }
        db.set_fenced_by(Some(&fence))?;
        *role = Role::Fenced {
            primary: fence.primary,
        };
        tracing::warn!(epoch = fence.epoch, primary = %fence.primary, "a newer primary exists: this node takes no more writes");
        Ok(true)
    }
}
