//! Cancellation of work a client no longer waits for.
//!
//! A search runs on a blocking thread, which keeps going when the HTTP handler that
//! asked for it is dropped (hyper drops it when the client disconnects). The handler
//! holds a [`CancelOnDrop`] guard; the search checks the [`CancelToken`] between
//! engine calls and while it builds a filter's mask, and stops with
//! [`Error::Cancelled`](crate::Error::Cancelled) instead of burning the node's cores
//! on an answer nobody will read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared flag: set once the requester is gone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is never cancelled (library calls, tests).
    pub fn never() -> CancelToken {
        CancelToken::default()
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// A guard that cancels this token when dropped, unless disarmed first.
    pub fn guard(&self) -> CancelOnDrop {
        CancelOnDrop {
            token: Some(self.clone()),
        }
    }

    /// `Err(Cancelled)` once cancelled: for `?` between steps of long work.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Cancels its token when dropped: held by the future that waits for the work.
#[derive(Debug)]
pub struct CancelOnDrop {
    token: Option<CancelToken>,
}

impl CancelOnDrop {
    /// The work finished and its answer was taken: dropping no longer cancels.
    pub fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_cancels_unless_disarmed() {
        let token = CancelToken::never();
        drop(token.guard());
        assert!(token.is_cancelled());
        assert_eq!(token.check().unwrap_err().code(), "CANCELLED");
        let token = CancelToken::never();
        token.guard().disarm();
        assert!(!token.is_cancelled());
        assert!(token.check().is_ok());
    }
}
