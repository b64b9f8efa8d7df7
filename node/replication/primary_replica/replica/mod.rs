//! The replica's side: following a primary (`follow`), pulling and applying its log
//! ([`pull`]), the stream's state without I/O ([`stream`]), and installing a snapshot
//! when the primary's log no longer reaches back far enough (`snapshot_install`).

pub(crate) mod follow;
pub mod pull;
pub(crate) mod snapshot_install;
pub mod stream;
