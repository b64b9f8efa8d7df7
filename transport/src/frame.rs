//! Frames: a fixed 16-byte header and a body, and a sans-IO decoder that turns a
//! byte stream into frames.
//!
//! ```text
//! 0        1      2        4                12         16
//! +--------+------+--------+----------------+----------+------ - -
//! |version | kind | flags  | request id     | length   | body (length bytes)
//! +--------+------+--------+----------------+----------+------ - -
//!            (all integers big-endian)
//! ```
//! The header is parsed and checked (version, kind, flags, length against the
//! configured maximum) before any body byte is buffered, so a peer cannot make a node
//! allocate for a frame it will refuse, and a region write's body can be read straight
//! into the region instead of through a message buffer.

use crate::TransportError;

/// The frame format this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of every frame header.
pub const HEADER_LEN: usize = 16;
/// Default largest body: a batch of deltas or one region write must fit.
pub const DEFAULT_MAX_BODY: u32 = 64 << 20;

/// What a frame carries. Unknown kinds are errors: a peer of a newer version must
/// negotiate rather than send frames this node cannot interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A request expecting one `Response` or `ErrorResponse` with the same id.
    Request = 1,
    Response = 2,
    ErrorResponse = 3,
    /// One-way message (delta stream, notifications); no reply.
    Push = 4,
    /// The requester gave up on request `request_id`; the responder may stop work.
    Cancel = 5,
    /// One-sided write into a registered region: body = key, offset, bytes.
    RegionWrite = 6,
    /// Asks for bytes of a region: body = key, offset, length.
    RegionRead = 7,
    /// Bytes answering a `RegionRead`: body = key, offset, bytes.
    RegionData = 8,
    /// The sender finished writing a region: body = key, expected checksum.
    RegionDone = 9,
    /// One of many requests on the same stream, answered in the order sent (one
    /// `Response` or `ErrorResponse` each): pipelined RPCs whose order matters.
    StreamRequest = 10,
}

impl FrameKind {
    pub fn from_u8(byte: u8) -> Result<FrameKind, TransportError> {
        Ok(match byte {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::ErrorResponse,
            4 => FrameKind::Push,
            5 => FrameKind::Cancel,
            6 => FrameKind::RegionWrite,
            7 => FrameKind::RegionRead,
            8 => FrameKind::RegionData,
            9 => FrameKind::RegionDone,
            10 => FrameKind::StreamRequest,
            other => return Err(TransportError::UnknownKind(other)),
        })
    }

    /// Label for metrics.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Request => "request",
            FrameKind::Response => "response",
            FrameKind::ErrorResponse => "error_response",
            FrameKind::Push => "push",
            FrameKind::Cancel => "cancel",
            FrameKind::RegionWrite => "region_write",
            FrameKind::RegionRead => "region_read",
            FrameKind::RegionData => "region_data",
            FrameKind::RegionDone => "region_done",
            FrameKind::StreamRequest => "stream_request",
        }
    }
}

/// Header flag bits.
pub mod flags {
    /// The body is zstd-compressed (see [`crate::delta`]).
    pub const COMPRESSED: u16 = 1 << 0;
    /// Every flag this version understands.
    pub const KNOWN: u16 = COMPRESSED;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub flags: u16,
    pub request_id: u64,
    /// Body length in bytes.
    pub length: u32,
}

impl Header {
    pub fn new(kind: FrameKind, request_id: u64, length: u32) -> Header {
        Header {
            kind,
            flags: 0,
            request_id,
            length,
        }
    }

    pub fn with_flags(self, flags: u16) -> Header {
        Header { flags, ..self }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = PROTOCOL_VERSION;
        out[1] = self.kind as u8;
        out[2..4].copy_from_slice(&self.flags.to_be_bytes());
        out[4..12].copy_from_slice(&self.request_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// Parses and checks a header; `max_body` bounds the length a peer may announce.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<Header, TransportError> {
        if bytes[0] != PROTOCOL_VERSION {
            return Err(TransportError::UnsupportedVersion(bytes[0]));
        }
        let kind = FrameKind::from_u8(bytes[1])?;
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        if flags & !flags::KNOWN != 0 {
            return Err(TransportError::UnknownFlags(flags));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[4..12]);
        let length = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if length > max_body {
            return Err(TransportError::FrameTooLarge {
                length: u64::from(length),
                max: max_body,
            });
        }
        Ok(Header {
            kind,
            flags,
            request_id: u64::from_be_bytes(id),
            length,
        })
    }
}

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub body: Vec<u8>,
}

impl Frame {
    /// Header and body as one buffer, after checking the body against `max_body`.
    pub fn encode(
        kind: FrameKind,
        flags: u16,
        request_id: u64,
        body: &[u8],
        max_body: u32,
    ) -> Result<Vec<u8>, TransportError> {
        let length = u32::try_from(body.len())
            .ok()
            .filter(|&l| l <= max_body)
            .ok_or(TransportError::FrameTooLarge {
                length: body.len() as u64,
                max: max_body,
            })?;
        let header = Header::new(kind, request_id, length).with_flags(flags);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(body);
        Ok(out)
    }
}

/// Turns the bytes of one stream, fed in pieces of any size, into frames.
///
/// After an error the decoder stays failed and returns that error again: the stream
/// is unusable (its framing is lost) and must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    max_body: u32,
    buf: Vec<u8>,
    header: Option<Header>,
    failed: Option<TransportError>,
}

impl FrameDecoder {
    pub fn new(max_body: u32) -> FrameDecoder {
        FrameDecoder {
            max_body,
            buf: Vec::new(),
            header: None,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let header = match self.header {
            Some(h) => h,
            None => {
                let Some(head) = self.buf.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let mut bytes = [0u8; HEADER_LEN];
                bytes.copy_from_slice(head);
                match Header::parse(&bytes, self.max_body) {
                    Ok(h) => {
                        self.buf.drain(..HEADER_LEN);
                        self.header = Some(h);
                        h
                    }
                    Err(e) => {
                        self.buf = Vec::new();
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let length = header.length as usize;
        if self.buf.len() < length {
            return Ok(None);
        }
        let rest = self.buf.split_off(length);
        let body = std::mem::replace(&mut self.buf, rest);
        self.header = None;
        Ok(Some(Frame { header, body }))
    }

    /// Whether the stream ended cleanly: no partial frame is pending.
    pub fn is_idle(&self) -> bool {
        self.failed.is_none() && self.header.is_none() && self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    fn kind_strategy() -> impl Strategy<Value = FrameKind> {
        (1u8..=10).prop_map(|k| FrameKind::from_u8(k).unwrap())
    }

    proptest! {
        /// Any sequence of frames, cut into arbitrary pieces, decodes to itself.
        #[test]
        fn frames_round_trip_through_any_split(
            frames in prop::collection::vec(
                (kind_strategy(), any::<bool>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..300)),
                1..8,
            ),
            cuts in prop::collection::vec(1usize..64, 1..40),
        ) {
            let mut stream = Vec::new();
            for (kind, compressed, id, body) in &frames {
                let flags = if *compressed { flags::COMPRESSED } else { 0 };
                stream.extend(Frame::encode(*kind, flags, *id, body, MAX).unwrap());
            }
            let mut decoder = FrameDecoder::new(MAX);
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= stream.len() { break; }
                let end = (at + cut).min(stream.len());
                decoder.push(&stream[at..end]);
                at = end;
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            prop_assert!(decoder.is_idle());
            prop_assert_eq!(got.len(), frames.len());
            for (frame, (kind, compressed, id, body)) in got.iter().zip(&frames) {
                prop_assert_eq!(frame.header.kind, *kind);
                prop_assert_eq!(frame.header.flags & flags::COMPRESSED != 0, *compressed);
                prop_assert_eq!(frame.header.request_id, *id);
                prop_assert_eq!(&frame.body, body);
            }
        }

        /// Garbage never panics: it yields frames, an error, or a wait for more bytes.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut decoder = FrameDecoder::new(MAX);
            decoder.push(&bytes);
            for _ in 0..bytes.len() + 1 {
                match decoder.next_frame() {
                    Ok(Some(frame)) => prop_assert!(frame.body.len() <= MAX as usize),
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// A valid stream with one byte changed or cut short never panics either.
        #[test]
        fn corrupted_or_truncated_streams_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..200),
            flip in any::<prop::sample::Index>(),
            xor in 1u8..,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut stream = Frame::encode(FrameKind::Push, 0, 7, &body, MAX).unwrap();
            let i = flip.index(stream.len());
            stream[i] ^= xor;
            stream.truncate(cut.index(stream.len() + 1));
            let mut decoder = FrameDecoder::new(MAX);
            decoder.push(&stream);
            let _ = decoder.next_frame();
            let _ = decoder.next_frame();
        }
    }

    fn header_bytes(version: u8, kind: u8, flags: u16, length: u32) -> Vec<u8> {
        let mut h = vec![version, kind];
        h.extend(flags.to_be_bytes());
        h.extend(42u64.to_be_bytes());
        h.extend(length.to_be_bytes());
        h
    }

    #[test]
    fn bad_headers_are_refused_before_any_body_is_buffered() {
        let cases = [
            (
                header_bytes(2, 1, 0, 4),
                TransportError::UnsupportedVersion(2),
            ),
            (header_bytes(1, 0, 0, 4), TransportError::UnknownKind(0)),
            (header_bytes(1, 11, 0, 4), TransportError::UnknownKind(11)),
            (
                header_bytes(1, 4, 0x8000, 4),
                TransportError::UnknownFlags(0x8000),
            ),
            (
                header_bytes(1, 4, 0, MAX + 1),
                TransportError::FrameTooLarge {
                    length: u64::from(MAX) + 1,
                    max: MAX,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut decoder = FrameDecoder::new(MAX);
            decoder.push(&bytes);
            assert_eq!(decoder.next_frame(), Err(expected.clone()));
            // The stream stays failed, and later bytes are not buffered.
            decoder.push(&[0; 100]);
            assert_eq!(decoder.buffered(), 0);
            assert_eq!(decoder.next_frame(), Err(expected));
        }
    }

    #[test]
    fn oversized_bodies_are_refused_when_encoding() {
        let err = Frame::encode(FrameKind::Push, 0, 1, &[0; 11], 10).unwrap_err();
        assert_eq!(
            err,
            TransportError::FrameTooLarge {
                length: 11,
                max: 10
            }
        );
    }
}
