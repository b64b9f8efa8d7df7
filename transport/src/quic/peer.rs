//! The connecting side: a connection to one peer and the operations on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;

use super::wire::{read_body, read_header, stream_error, u64_at, write_frame};
use super::TransportConfig;
use crate::delta::{DeltaCodec, DeltaEntry, EncodedDelta};
use crate::faults::{FaultInjector, Verdict};
use crate::frame::{flags, Frame};
use crate::metrics::Meter;
use crate::region::{checksum, plan_writes, Completion, RegionKey};
use crate::{FrameKind, TransportError};

/// An open, authenticated connection to one peer. Cheap to share by reference;
/// every call opens its own stream, so calls run concurrently.
pub struct Peer {
    conn: quinn::Connection,
    max_body: u32,
    timeout: Duration,
    next_id: AtomicU64,
    faults: Option<Arc<FaultInjector>>,
    meter: Meter,
}

impl Peer {
    pub(crate) fn new(conn: quinn::Connection, config: &TransportConfig) -> Peer {
        Peer {
            max_body: config.max_body,
            timeout: config.request_timeout,
            next_id: AtomicU64::new(1),
            faults: config.faults.clone(),
            meter: Meter::new(config.metrics.clone(), conn.remote_address()),
            conn,
        }
    }

    /// What fault injection does to the next message (always delivery without it).
    fn verdict(&self) -> Verdict {
        self.faults
            .as_ref()
            .map_or(Verdict::DELIVER, |f| f.decide(self.conn.remote_address()))
    }

    /// Whether the connection is gone: closed by either side, timed out, or reset
    /// by a process that restarted on the peer's address. A closed connection
    /// never comes back; connect again.
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    pub fn remote_addr(&self) -> std::net::SocketAddr {
        self.conn.remote_address()
    }

    /// Current round-trip time estimate of the connection.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Sends a request and waits for its answer, at most the configured timeout.
    pub async fn request(&self, body: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.request_within(body, self.timeout).await
    }

    /// Sends a request and waits at most `timeout`. On timeout (or when the returned
    /// future is dropped) the stream is abandoned and the responder's work for it is
    /// cancelled.
    pub async fn request_within(
        &self,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let verdict = self.verdict();
        let attempt = async {
            tokio::time::sleep(verdict.delay).await;
            match verdict.copies {
                // A lost request looks like one: no answer.
                0 => std::future::pending().await,
                1 => self.exchange(FrameKind::Request, &[body]).await,
                _ => {
                    let parts: [&[u8]; 1] = [body];
                    let (first, _) = tokio::join!(
                        self.exchange(FrameKind::Request, &parts),
                        self.exchange(FrameKind::Request, &parts)
                    );
                    first
                }
            }
        };
        let frame = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| TransportError::Timeout(timeout))??;
        match frame.header.kind {
            FrameKind::Response => Ok(frame.body),
            FrameKind::ErrorResponse => Err(TransportError::Remote(
                String::from_utf8_lossy(&frame.body).into_owned(),
            )),
            other => Err(TransportError::UnexpectedFrame {
                expected: "response",
                got: other.name(),
            }),
        }
    }

    /// One frame out on a new bidirectional stream, one frame back.
    async fn exchange(&self, kind: FrameKind, parts: &[&[u8]]) -> Result<Frame, TransportError> {
        let result = self.exchange_once(kind, parts).await;
        match &result {
            Ok(frame) => {
                self.meter.received(frame.header.kind, frame.body.len());
                self.meter.rtt(self.conn.rtt());
            }
            Err(e) => self.meter.stream_error(e),
        }
        result
    }

    async fn exchange_once(
        &self,
        kind: FrameKind,
        parts: &[&[u8]],
    ) -> Result<Frame, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(stream_error)?;
        write_frame(&mut send, kind, 0, id, parts, self.max_body).await?;
        self.meter.sent(kind, parts.iter().map(|p| p.len()).sum());
        send.finish().map_err(stream_error)?;
        let header = read_header(&mut recv, self.max_body)
            .await?
            .ok_or_else(|| {
                TransportError::Stream("peer closed the stream without answering".into())
            })?;
        let body = read_body(&mut recv, header.length).await?;
        Ok(Frame { header, body })
    }

    /// A one-way message on its own stream.
    pub async fn push(&self, body: &[u8], compressed: bool) -> Result<(), TransportError> {
        let flags = if compressed { flags::COMPRESSED } else { 0 };
        let verdict = self.verdict();
        if verdict == Verdict::DELIVER {
            return push_on(&self.conn, &self.meter, flags, body, self.max_body).await;
        }
        // Injected faults: delayed copies go out from their own task, so that pushes
        // sent after this one can overtake it.
        for _ in 0..verdict.copies {
            let (conn, meter) = (self.conn.clone(), self.meter.clone());
            let (body, max_body) = (body.to_vec(), self.max_body);
            tokio::spawn(async move {
                tokio::time::sleep(verdict.delay).await;
                let _ = push_on(&conn, &meter, flags, &body, max_body).await;
            });
        }
        Ok(())
    }

    /// Encodes `entries` with `codec` and pushes them; returns what was sent.
    pub async fn push_delta(
        &self,
        codec: &DeltaCodec,
        entries: &[DeltaEntry],
    ) -> Result<EncodedDelta, TransportError> {
        let encoded = codec.encode(entries);
        self.push(&encoded.bytes, encoded.compressed).await?;
        self.meter
            .delta(encoded.raw_len, encoded.bytes.len(), encoded.compressed);
        Ok(encoded)
    }

    /// Writes `bytes` at `offset` of the peer's region `key`, one-sidedly.
    pub async fn write_region(
        &self,
        key: RegionKey,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        let verdict = self.verdict();
        tokio::time::sleep(verdict.delay).await;
        if verdict.copies == 0 {
            return Ok(());
        }
        let mut send = self.conn.open_uni().await.map_err(stream_error)?;
        self.write_region_frame(&mut send, key, offset, bytes)
            .await?;
        send.finish().map_err(stream_error)
    }

    async fn write_region_frame(
        &self,
        send: &mut quinn::SendStream,
        key: RegionKey,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        let (k, o) = (key.0.to_be_bytes(), offset.to_be_bytes());
        write_frame(
            send,
            FrameKind::RegionWrite,
            0,
            0,
            &[&k, &o, bytes],
            self.max_body,
        )
        .await?;
        self.meter.sent(FrameKind::RegionWrite, 16 + bytes.len());
        Ok(())
    }

    /// Writes all of `data` into region `key` from offset 0, in chunks of at most
    /// `chunk` bytes spread over `streams` parallel streams, then asks the peer to
    /// confirm the region with `data`'s checksum.
    pub async fn send_region(
        &self,
        key: RegionKey,
        data: &[u8],
        chunk: usize,
        streams: usize,
    ) -> Result<Completion, TransportError> {
        let chunk = chunk.clamp(1, self.max_body.saturating_sub(16).max(1) as usize);
        let plan = plan_writes(data.len() as u64, chunk as u64, streams);
        try_join_all(plan.into_iter().filter(|ranges| !ranges.is_empty()).map(
            |ranges| async move {
                let mut send = self.conn.open_uni().await.map_err(stream_error)?;
                for r in ranges {
                    self.write_region_frame(
                        &mut send,
                        key,
                        r.start,
                        &data[r.start as usize..r.end as usize],
                    )
                    .await?;
                }
                send.finish().map_err(stream_error)
            },
        ))
        .await?;
        self.finish_region(key, checksum(data)).await
    }

    /// Asks the peer to confirm that region `key` is complete and has `checksum`.
    pub async fn finish_region(
        &self,
        key: RegionKey,
        checksum: u64,
    ) -> Result<Completion, TransportError> {
        let (k, c) = (key.0.to_be_bytes(), checksum.to_be_bytes());
        let frame = tokio::time::timeout(
            self.timeout,
            self.exchange(FrameKind::RegionDone, &[&k, &c]),
        )
        .await
        .map_err(|_| TransportError::Timeout(self.timeout))??;
        match frame.header.kind {
            FrameKind::Response => Ok(Completion {
                key,
                len: u64_at(&frame.body, 0)?,
                checksum: u64_at(&frame.body, 8)?,
            }),
            FrameKind::ErrorResponse => Err(TransportError::Remote(
                String::from_utf8_lossy(&frame.body).into_owned(),
            )),
            other => Err(TransportError::UnexpectedFrame {
                expected: "response",
                got: other.name(),
            }),
        }
    }

    /// Reads `len` bytes at `offset` of the peer's region `key`.
    pub async fn read_region(
        &self,
        key: RegionKey,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let (k, o, l) = (key.0.to_be_bytes(), offset.to_be_bytes(), len.to_be_bytes());
        let frame = tokio::time::timeout(
            self.timeout,
            self.exchange(FrameKind::RegionRead, &[&k, &o, &l]),
        )
        .await
        .map_err(|_| TransportError::Timeout(self.timeout))??;
        match frame.header.kind {
            FrameKind::RegionData => Ok(frame.body),
            FrameKind::ErrorResponse => Err(TransportError::Remote(
                String::from_utf8_lossy(&frame.body).into_owned(),
            )),
            other => Err(TransportError::UnexpectedFrame {
                expected: "region_data",
                got: other.name(),
            }),
        }
    }

    /// Reads all `len` bytes of the peer's region `key` in `chunk`-sized reads into
    /// a new file at `path`, checks them against the sender's xxh3 `checksum` and
    /// makes the file durable: how snapshots are fetched. Only one chunk is ever in
    /// memory; on any failure the partial file is removed.
    pub async fn read_region_to_file(
        &self,
        key: RegionKey,
        len: u64,
        checksum: u64,
        chunk: u64,
        path: &std::path::Path,
    ) -> Result<(), TransportError> {
        let result = self
            .read_region_into(key, len, checksum, chunk.max(1), path)
            .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    async fn read_region_into(
        &self,
        key: RegionKey,
        len: u64,
        checksum: u64,
        chunk: u64,
        path: &std::path::Path,
    ) -> Result<(), TransportError> {
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| TransportError::Stream(format!("{}: {e}", path.display()));
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut offset = 0;
        while offset < len {
            let want = chunk.min(len - offset);
            let part = self.read_region(key, offset, want).await?;
            if part.len() as u64 != want {
                return Err(TransportError::Malformed {
                    what: "region data",
                    detail: format!("read at {offset} returned {} of {want} bytes", part.len()),
                });
            }
            hasher.update(&part);
            file.write_all(&part).await.map_err(io)?;
            offset += want;
        }
        let got = hasher.digest();
        if got != checksum {
            return Err(TransportError::ChecksumMismatch {
                key: key.0,
                expected: checksum,
                got,
            });
        }
        file.sync_all().await.map_err(io)?;
        Ok(())
    }

    /// The names in the certificate this connection's peer presented (empty under
    /// `--insecure-dev`).
    pub fn names(&self) -> std::sync::Arc<[String]> {
        super::certificate_names(&self.conn)
    }

    /// Opens an ordered request stream: requests sent on it are answered in the
    /// order sent, and a requester need not wait for one answer to send the next.
    pub async fn open_request_stream(
        &self,
    ) -> Result<(super::RequestSender, super::AnswerReceiver), TransportError> {
        let streams = self.conn.open_bi().await.map_err(stream_error)?;
        Ok(super::request_stream::open(
            streams,
            self.max_body,
            self.faults.clone(),
            self.meter.clone(),
            self.conn.remote_address(),
        ))
    }

    /// Opens a raw bidirectional stream, for tests that must send malformed bytes.
    #[doc(hidden)]
    pub async fn raw_stream(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        self.conn.open_bi().await.map_err(stream_error)
    }
}

async fn push_on(
    conn: &quinn::Connection,
    meter: &Meter,
    flags: u16,
    body: &[u8],
    max_body: u32,
) -> Result<(), TransportError> {
    let mut send = conn.open_uni().await.map_err(stream_error)?;
    write_frame(&mut send, FrameKind::Push, flags, 0, &[body], max_body).await?;
    meter.sent(FrameKind::Push, body.len());
    send.finish().map_err(stream_error)
}
