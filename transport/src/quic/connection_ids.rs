//! Connection ids an endpoint on a fixed address can recognise after a restart,
//! without making its stateless-reset tokens collectable.
//!
//! A restarted node answers a packet for a connection id it issued before the
//! restart with a stateless reset only if it recognises the id as its own, so the
//! check must survive the restart: it is a keyed signature under a key derived from
//! the node's identity. quinn's own generator, given a fixed key, would do that with
//! 3 random bytes and a non-cryptographic hash: an outsider could recover the key
//! from two ids, enumerate all 2^24 valid ids, and collect a reset token for each
//! (tokens no longer change across restarts), then reset any connection to the node.
//! Here an id is 8 unpredictable bytes and 8 bytes of HMAC-SHA256 over them: valid
//! ids cannot be guessed, so the only tokens anyone sees are for ids they saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use ring::hmac;

const NONCE_LEN: usize = 8;
const SIGNATURE_LEN: usize = 8;

/// Issues and recognises this endpoint's connection ids.
#[derive(Clone)]
pub(crate) struct SignedConnectionIds {
    /// Stable across restarts: what recognises the ids of an earlier incarnation.
    signing: hmac::Key,
    /// Drawn at start-up: makes nonces unpredictable, without a fallible random draw
    /// per id (the trait's methods cannot fail).
    nonces: hmac::Key,
    /// Shared by every generator the endpoint makes, so no two issue the same nonce.
    next: Arc<AtomicU64>,
}

impl SignedConnectionIds {
    pub(crate) fn new(signing: hmac::Key, nonces: hmac::Key) -> SignedConnectionIds {
        SignedConnectionIds {
            signing,
            nonces,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn signature(&self, nonce: &[u8]) -> [u8; SIGNATURE_LEN] {
        let tag = hmac::sign(&self.signing, nonce);
        let mut out = [0; SIGNATURE_LEN];
        out.copy_from_slice(&tag.as_ref()[..SIGNATURE_LEN]);
        out
    }
}

impl ConnectionIdGenerator for SignedConnectionIds {
    fn generate_cid(&mut self) -> ConnectionId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0; NONCE_LEN + SIGNATURE_LEN];
        id[..NONCE_LEN]
            .copy_from_slice(&hmac::sign(&self.nonces, &n.to_le_bytes()).as_ref()[..NONCE_LEN]);
        let signature = self.signature(&id[..NONCE_LEN]);
        id[NONCE_LEN..].copy_from_slice(&signature);
        ConnectionId::new(&id)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if cid.len() != NONCE_LEN + SIGNATURE_LEN {
            return Err(InvalidCid);
        }
        let (nonce, signature) = cid.split_at(NONCE_LEN);
        // Compared without an early exit: the time taken says nothing of how many
        // bytes of a guess were right.
        let differs = self
            .signature(nonce)
            .iter()
            .zip(signature)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs == 0 {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        NONCE_LEN + SIGNATURE_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, bytes)
    }

    #[test]
    fn ids_are_recognised_by_a_generator_with_the_same_signing_key_only() {
        let mut first = SignedConnectionIds::new(key(b"node"), key(b"run 1"));
        let restarted = SignedConnectionIds::new(key(b"node"), key(b"run 2"));
        let other = SignedConnectionIds::new(key(b"another node"), key(b"run 1"));
        let a = first.generate_cid();
        let b = first.generate_cid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(restarted.validate(&a).is_ok());
        assert!(other.validate(&a).is_err());
        let mut forged = a;
        let mut bytes = forged.to_vec();
        bytes[15] ^= 1;
        forged = ConnectionId::new(&bytes);
        assert!(restarted.validate(&forged).is_err());
        assert!(restarted.validate(&ConnectionId::new(&bytes[..8])).is_err());
    }
}
