//! Frames on QUIC streams: the async side of [`crate::frame`].

use quinn::{RecvStream, SendStream};

use crate::frame::{Header, HEADER_LEN};
use crate::{FrameKind, TransportError};

pub(crate) fn stream_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Stream(e.to_string())
}

/// Writes one frame whose body is `parts` back to back, without joining them: a
/// vector payload goes from the caller's slice to the stream.
pub(crate) async fn write_frame(
    send: &mut SendStream,
    kind: FrameKind,
    flags: u16,
    request_id: u64,
    parts: &[&[u8]],
    max_body: u32,
) -> Result<(), TransportError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let length = u32::try_from(total).ok().filter(|&l| l <= max_body).ok_or(
        TransportError::FrameTooLarge {
            length: total as u64,
            max: max_body,
        },
    )?;
    let header = Header::new(kind, request_id, length).with_flags(flags);
    send.write_all(&header.to_bytes())
        .await
        .map_err(stream_error)?;
    for part in parts {
        send.write_all(part).await.map_err(stream_error)?;
    }
    Ok(())
}

/// The next frame header, or `None` when the peer finished the stream cleanly
/// between frames.
pub(crate) async fn read_header(
    recv: &mut RecvStream,
    max_body: u32,
) -> Result<Option<Header>, TransportError> {
    let mut bytes = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match recv
            .read(&mut bytes[filled..])
            .await
            .map_err(stream_error)?
        {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(None),
            None => {
                return Err(TransportError::malformed(
                    "frame",
                    format!("stream ended inside a header ({filled} of {HEADER_LEN} bytes)"),
                ))
            }
        }
    }
    Header::parse(&bytes, max_body).map(Some)
}

/// Reads a body of the announced `length`, growing the buffer only as bytes
/// arrive: a peer that announces 64 MiB and sends nothing more costs nothing, so
/// many such streams cannot exhaust memory (QUIC's flow control bounds what is in
/// flight).
pub(crate) async fn read_body(
    recv: &mut RecvStream,
    length: u32,
) -> Result<Vec<u8>, TransportError> {
    let length = length as usize;
    let mut body = Vec::with_capacity(length.min(64 << 10));
    while body.len() < length {
        let chunk = recv
            .read_chunk(length - body.len(), true)
            .await
            .map_err(stream_error)?
            .ok_or_else(|| {
                TransportError::malformed(
                    "frame",
                    format!(
                        "stream ended inside a body ({} of {length} bytes)",
                        body.len()
                    ),
                )
            })?;
        body.extend_from_slice(&chunk.bytes);
    }
    Ok(body)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Result<u64, TransportError> {
    bytes
        .get(at..at + 8)
        .map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
        .ok_or_else(|| {
            TransportError::malformed("frame body", format!("too short for a field at {at}"))
        })
}
