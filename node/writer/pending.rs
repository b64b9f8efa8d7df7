//! An op on its way through the writer, and where its outcome goes.

use tokio::sync::oneshot;

use super::meta::MetaWrite;
use crate::error::{Error, Result};
use crate::op::{Applied, Op, Precondition};

pub(crate) struct Pending {
    pub op: Op,
    pub precondition: Precondition,
    /// Set when the op was ordered elsewhere (a primary) and must land at exactly
    /// this sequence number; `None` when this node gives it the next one.
    pub seq: Option<u64>,
    /// Ordered elsewhere (a primary's log or a Raft log): every member applies it,
    /// so nothing local (a full device) may refuse it.
    pub ordered: bool,
    /// `meta` changes written in the same batch as the op, when it is accepted
    /// (where the ordering log stood, request records), so data and bookkeeping can
    /// never disagree.
    pub meta: Vec<MetaWrite>,
    /// Its batch is fsynced before it is answered; `false` when another fsynced log
    /// (Raft's) already holds it and the ordering marker in `meta` records how far
    /// this database got.
    pub fsync: bool,
    pub reply: Replies,
}

/// Where a pending op's outcome goes.
pub(crate) struct Replies {
    /// Answered once the op is durable (or refused), before it is visible:
    /// replication moves on as soon as its entries are on disk.
    pub durable: Option<oneshot::Sender<Result<Applied>>>,
    /// Answered once the op is visible to searches (or refused): a client's answer.
    pub visible: oneshot::Sender<Result<Applied>>,
}

impl Replies {
    pub(super) fn refuse(self, e: Error) {
        if let Some(durable) = self.durable {
            let _ = durable.send(Err(e.clone()));
        }
        let _ = self.visible.send(Err(e));
    }
}
