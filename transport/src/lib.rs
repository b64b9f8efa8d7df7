//! needle's node-to-node transport.
//!
//! This crate is the sans-IO core, modelled on `quinn-proto`: the frame format and
//! its decoder ([`frame`]), the compressed delta batches that carry operation-log
//! entries ([`delta`]) and the bookkeeping of one-sided memory-region transfers
//! ([`region`]). Each is a plain state machine driven by method calls and tested
//! without sockets. [`quic`] is the async shell over `quinn` + tokio that carries
//! them between nodes, with mutual TLS ([`tls`], [`certs`]).
//!
//! Nothing here knows Raft, collections or HTTP: entries are sequence numbers with
//! opaque bytes and f32 payloads, regions are byte ranges.

pub mod certs;
pub mod delta;
mod error;
pub mod faults;
pub mod frame;
pub mod metrics;
pub mod quic;
pub mod region;
pub mod tls;

pub use delta::{DeltaCodec, DeltaEntry, EncodedDelta};
pub use error::TransportError;
pub use frame::{Frame, FrameDecoder, FrameKind, Header};
pub use quic::{
    Answer, AnswerReceiver, BoxFuture, BoxStream, Handler, Peer, PeerInfo, RequestSender,
    Transport, TransportConfig,
};
pub use region::{AlignedBuf, Completion, RegionKey, RegionTable};
pub use tls::{Security, TlsFiles};
