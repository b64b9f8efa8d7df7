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
    #[error("region {key:#x}: checksum {got:#018x} does not match the sender's {expected:#018x}")]
    ChecksumMismatch { key: u64, expected: u64, got: u64 },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("certificate generation: {0}")]
    Certificates(String),
    #[error("connecting to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("stream: {0}")]
    Stream(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("peer answered with an error: {0}")]
    Remote(String),
    #[error("unexpected {got} frame, expected {expected}")]
    UnexpectedFrame {
        expected: &'static str,
        got: &'static str,
    },
}

impl TransportError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        TransportError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}
