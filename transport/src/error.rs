use thiserror::Error;

/// Everything the transport core can reject. Each is a property of the bytes a peer
/// sent (or of a local request), never a reason to panic: the shell closes the
/// offending stream or connection and logs the message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    #[error("frame version {0} is not supported (this node speaks {supported})", supported = crate::frame::PROTOCOL_VERSION)]
    UnsupportedVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("unknown frame flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("frame body of {length} bytes exceeds the maximum of {max}")]
    FrameTooLarge { length: u64, max: u32 },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("decompressed delta would exceed {max} bytes")]
    DeltaTooLarge { max: usize },
    #[error("no region with key {0:#x}")]
    NoSuchRegion(u64),
    #[error("region {key:#x}: {len} bytes at offset {offset} fall outside its {size} bytes")]
    OutOfRegion {
        key: u64,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("region of {requested} bytes exceeds the limit of {max}")]
    RegionTooLarge { requested: u64, max: u64 },
    #[error("region {key:#x} is incomplete: {missing} of {size} bytes not written")]
    RegionIncomplete { key: u64, missing: u64, size: u64 },
}

impl TransportError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        TransportError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}
