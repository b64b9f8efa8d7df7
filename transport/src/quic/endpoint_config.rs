//! The endpoint's stateless-reset key and connection-id key, both derived from the
//! node's identity: what lets a node that restarted on the same address tell its
//! peers at once that their connections to its previous incarnation are gone.
//!
//! QUIC answers a packet for a connection it does not know with a stateless reset,
//! but only for a connection id its generator recognises as one of its own, and the
//! peer believes the reset only if it carries the token the old incarnation
//! advertised: an HMAC of the id under the reset key. quinn draws both keys at
//! random per endpoint, so a restarted node dropped the packets and its peers'
//! connections to it failed only at the idle timeout (30 s), every request on them
//! waiting out its own timeout meanwhile. Derived from the identity, both keys
//! survive the restart, and the reset is sent and believed. The ids themselves
//! carry a cryptographic signature ([`SignedConnectionIds`]), so fixed keys do not
//! let an outsider enumerate valid ids and collect their tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::EndpointConfig;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::connection_ids::SignedConnectionIds;

use crate::tls::Security;
use crate::TransportError;

/// Keeps the keys derived here apart from each other and from any other use of
/// the same identity.
const RESET_CONTEXT: &[u8] = b"needle quic stateless reset key v1";
const CID_CONTEXT: &[u8] = b"needle quic connection id key v1";

/// quinn's endpoint settings for a transport with `security` bound to `addr`.
/// An endpoint on a port picked at bind time (a client's) never comes back on the
/// same address, so it gains nothing from fixed keys and keeps quinn's random ones:
/// endpoints sharing a key file (clients with one certificate) then share nothing.
pub(crate) fn endpoint_config(
    security: &Security,
    addr: SocketAddr,
) -> Result<EndpointConfig, TransportError> {
    if addr.port() == 0 {
        return Ok(EndpointConfig::default());
    }
    let identity = identity(security, addr)?;
    let key = |context| hmac::Key::new(hmac::HMAC_SHA256, derive(context, &identity).as_ref());
    let mut nonce_seed = [0u8; 32];
    SystemRandom::new()
        .fill(&mut nonce_seed)
        .map_err(|_| TransportError::Tls("no system randomness for connection ids".into()))?;
    let ids = SignedConnectionIds::new(
        key(CID_CONTEXT),
        hmac::Key::new(hmac::HMAC_SHA256, &nonce_seed),
    );
    let mut config = EndpointConfig::new(Arc::new(key(RESET_CONTEXT)));
    config.cid_generator(move || Box::new(ids.clone()));
    Ok(config)
}

/// What stays the same when the node restarts: its address, and under mutual TLS
/// its private key, so that two endpoints sharing a key file on different addresses
/// get different keys (RFC 9000 §10.3.2: a key shared by two endpoints lets one
/// reset the other's connections).
fn identity(security: &Security, addr: SocketAddr) -> Result<Vec<u8>, TransportError> {
    let mut identity = addr.to_string().into_bytes();
    match security {
        // The private key is this node's alone; only keyed hashes of it leave here.
        Security::Mutual(files) => identity.extend(
            std::fs::read(&files.key_path)
                .map_err(|e| TransportError::Tls(format!("{}: {e}", files.key_path.display())))?,
        ),
        // Nothing is authenticated under `--insecure-dev` anyway: anyone who knows
        // the address can compute the keys, as anyone can impersonate the node.
        Security::InsecureDev => {}
    }
    Ok(identity)
}

fn derive(context: &[u8], identity: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, context), identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_identity_gives_the_same_keys_and_another_different_ones() {
        let a = identity(&Security::InsecureDev, "127.0.0.1:5000".parse().unwrap()).unwrap();
        let b = identity(&Security::InsecureDev, "127.0.0.1:5001".parse().unwrap()).unwrap();
        assert_eq!(
            derive(RESET_CONTEXT, &a).as_ref(),
            derive(RESET_CONTEXT, &a).as_ref()
        );
        assert_ne!(
            derive(RESET_CONTEXT, &a).as_ref(),
            derive(RESET_CONTEXT, &b).as_ref()
        );
        assert_ne!(
            derive(RESET_CONTEXT, &a).as_ref()[..8],
            derive(CID_CONTEXT, &a).as_ref()[..8]
        );
    }
}
