//! needle's node-to-node transport.
//!
//! This crate is the sans-IO core, modelled on `quinn-proto`: the frame format and
//! its decoder ([`frame`]), the compressed delta batches that carry operation-log
//! entries ([`delta`]) and the bookkeeping of one-sided memory-region transfers
//! ([`region`]). Each is a plain state machine driven by method calls and tested
//! without sockets. The async QUIC shell over `quinn` builds on these.
//!
//! Nothing here knows Raft, collections or HTTP: entries are sequence numbers with
//! opaque bytes and f32 payloads, regions are byte ranges.

pub mod delta;
mod error;
pub mod frame;
pub mod region;

pub use delta::{DeltaCodec, DeltaEntry, EncodedDelta};
pub use error::TransportError;
pub use frame::{Frame, FrameDecoder, FrameKind, Header};
pub use region::{AlignedBuf, Completion, RegionKey, RegionTable};
