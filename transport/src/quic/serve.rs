//! The accepting side: connections, then each stream on its own task.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};

use super::wire::{read_body, read_header, stream_error, u64_at, write_frame};
use super::{PeerInfo, Shared};
use crate::frame::Header;
use crate::metrics::Meter;
use crate::region::RegionKey;
use crate::{FrameKind, TransportError};

/// Application error code on a stream closed for a protocol violation.
pub(super) const PROTOCOL_ERROR: u32 = 1;

/// Bidirectional streams a member may hold open at once on one connection.
pub(crate) const MEMBER_STREAMS: u32 = 8192;

pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            match incoming.await {
                Ok(conn) => serve_connection(conn, shared).await,
                // A peer without a certificate from the cluster CA ends here.
                Err(e) => tracing::warn!(peer = %addr, error = %e, "refused connection"),
            }
        });
    }
}

async fn serve_connection(conn: quinn::Connection, shared: Arc<Shared>) {
    let names = super::certificate_names(&conn);
    let from = PeerInfo {
        addr: conn.remote_address(),
        role: super::PeerRole::of(&shared.config.security, &names),
        names,
    };
    // A member multiplexes many independent conversations on one connection (a
    // replication stream for each log it replicates to this node, and requests
    // beside them): quinn's default of 100 open streams would stall them past a
    // hundred. Clients keep the default, which bounds what one client can hold.
    if from.role.is_member() {
        conn.set_max_concurrent_bi_streams(VarInt::from_u32(MEMBER_STREAMS));
    }
    // A partition configured on this node cuts incoming traffic too.
    let cut = |shared: &Shared| shared.is_cut(from.addr);
    loop {
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((_, mut recv)) if cut(&shared) => {
                    let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
                }
                Ok((send, recv)) => {
                    tokio::spawn(serve_bi(send, recv, from.clone(), shared.clone()));
                }
                Err(e) => {
                    tracing::debug!(peer = %from.addr, error = %e, "connection ended");
                    return;
                }
            },
            uni = conn.accept_uni() => match uni {
                Ok(mut recv) if cut(&shared) => {
                    let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
                }
                Ok(recv) => {
                    tokio::spawn(serve_uni(recv, from.clone(), shared.clone()));
                }
                Err(e) => {
                    tracing::debug!(peer = %from.addr, error = %e, "connection ended");
                    return;
                }
            },
        }
    }
}

pub(super) fn refuse(recv: &mut RecvStream, from: &PeerInfo, meter: &Meter, e: &TransportError) {
    tracing::warn!(peer = %from.addr, error = %e, "closing stream");
    meter.stream_error(e);
    let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
}

/// [`refuse`], but a reset or lost connection (how a requester that gave up
/// says so) is not worth a warning.
pub(super) fn quietly_refuse(
    recv: &mut RecvStream,
    from: &PeerInfo,
    meter: &Meter,
    e: &TransportError,
) {
    if matches!(e, TransportError::Stream(_)) {
        tracing::debug!(peer = %from.addr, error = %e, "stream ended");
        meter.stream_error(e);
        let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
    } else {
        refuse(recv, from, meter, e);
    }
}

async fn serve_bi(mut send: SendStream, mut recv: RecvStream, from: PeerInfo, shared: Arc<Shared>) {
    let max_body = shared.config.max_body;
    let meter = Meter::new(shared.config.metrics.clone(), from.addr);
    let header = match read_header(&mut recv, max_body).await {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => return quietly_refuse(&mut recv, &from, &meter, &e),
    };
    let body = match read_body(&mut recv, header.length).await {
        Ok(b) => b,
        Err(e) => return quietly_refuse(&mut recv, &from, &meter, &e),
    };
    meter.received(header.kind, body.len());
    // Regions hold members' state (snapshots): a client certificate reads none.
    if matches!(header.kind, FrameKind::RegionRead | FrameKind::RegionDone)
        && !from.role.is_member()
    {
        let e = TransportError::Remote(
            "regions are for cluster members; a client certificate cannot read them".into(),
        );
        return refuse(&mut recv, &from, &meter, &e);
    }
    // Request streams carry replication between members only: refused before
    // any handler sees a byte, with an answer saying why.
    if header.kind == FrameKind::StreamRequest && !from.role.is_member() {
        let message: &[u8] =
            b"request streams are for cluster members; a client certificate cannot open one";
        let kind = FrameKind::ErrorResponse;
        let _ = write_frame(&mut send, kind, 0, header.request_id, &[message], max_body).await;
        let _ = send.finish();
        let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
        return;
    }
    let answer = match header.kind {
        FrameKind::StreamRequest => {
            return super::request_stream::serve(send, recv, (header, body), from, shared).await
        }
        FrameKind::Request => {
            let work = shared.handler.request(from.clone(), body);
            // A requester that gives up stops its receiving side: drop the work.
            tokio::select! {
                result = work => Ok(result),
                _ = send.stopped() => {
                    tracing::debug!(peer = %from.addr, request = header.request_id, "request cancelled");
                    return;
                }
            }
        }
        FrameKind::RegionRead => Ok(read_region(&shared, &body).await.map_err(|e| e.to_string())),
        FrameKind::RegionDone => Ok(finish_region(&shared, &body)
            .await
            .map_err(|e| e.to_string())),
        other => Err(TransportError::UnexpectedFrame {
            expected: "request, stream_request, region_read or region_done",
            got: other.name(),
        }),
    };
    let result = match answer {
        Ok(result) => result,
        Err(e) => return refuse(&mut recv, &from, &meter, &e),
    };
    let (kind, reply) = match result {
        Ok(reply) => (
            if header.kind == FrameKind::RegionRead {
                FrameKind::RegionData
            } else {
                FrameKind::Response
            },
            reply,
        ),
        Err(message) => (FrameKind::ErrorResponse, message.into_bytes()),
    };
    let sent = write_frame(&mut send, kind, 0, header.request_id, &[&reply], max_body).await;
    match sent.and_then(|()| send.finish().map_err(stream_error)) {
        Ok(()) => meter.sent(kind, reply.len()),
        Err(e) => {
            meter.stream_error(&e);
            tracing::debug!(peer = %from.addr, error = %e, "could not answer");
        }
    }
}

async fn read_region(shared: &Shared, body: &[u8]) -> Result<Vec<u8>, TransportError> {
    let key = RegionKey(u64_at(body, 0)?);
    let offset = u64_at(body, 8)?;
    let len = u64_at(body, 16)?;
    if len > u64::from(shared.config.max_body) {
        return Err(TransportError::FrameTooLarge {
            length: len,
            max: shared.config.max_body,
        });
    }
    let data = shared.regions.lock().read_data(key, offset, len)?;
    match data {
        crate::region::RegionData::Bytes(bytes) => Ok(bytes),
        crate::region::RegionData::File { file, offset, len } => {
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut out = vec![0u8; len as usize];
                file.read_exact_at(&mut out, offset)?;
                Ok::<_, std::io::Error>(out)
            })
            .await
            .map_err(stream_error)?
            .map_err(stream_error)
        }
    }
}

/// Waits for writes still in flight on other streams (up to half the request
/// timeout, so the sender hears "incomplete" before it gives up), then checks the
/// region's checksum against the sender's.
async fn finish_region(shared: &Shared, body: &[u8]) -> Result<Vec<u8>, TransportError> {
    let key = RegionKey(u64_at(body, 0)?);
    let expected = u64_at(body, 8)?;
    let deadline = tokio::time::Instant::now() + shared.config.request_timeout / 2;
    let done = loop {
        let progress = shared.region_progress.notified();
        match shared.regions.lock().complete(key) {
            Ok(done) => break done,
            Err(TransportError::RegionIncomplete { .. })
                if tokio::time::Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), progress).await;
    };
    if done.checksum != expected {
        return Err(TransportError::ChecksumMismatch {
            key: key.0,
            expected,
            got: done.checksum,
        });
    }
    let mut reply = done.len.to_be_bytes().to_vec();
    reply.extend(done.checksum.to_be_bytes());
    Ok(reply)
}

async fn serve_uni(mut recv: RecvStream, from: PeerInfo, shared: Arc<Shared>) {
    let max_body = shared.config.max_body;
    let meter = Meter::new(shared.config.metrics.clone(), from.addr);
    loop {
        let header = match read_header(&mut recv, max_body).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => return refuse(&mut recv, &from, &meter, &e),
        };
        meter.received(header.kind, header.length as usize);
        let handled = match header.kind {
            FrameKind::Push => match read_body(&mut recv, header.length).await {
                Ok(body) => {
                    let compressed = header.flags & crate::frame::flags::COMPRESSED != 0;
                    shared.handler.push(from.clone(), body, compressed).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            FrameKind::RegionWrite if !from.role.is_member() => Err(TransportError::Remote(
                "regions are for cluster members; a client certificate cannot write them".into(),
            )),
            FrameKind::RegionWrite => receive_region_write(&mut recv, &header, &shared).await,
            other => Err(TransportError::UnexpectedFrame {
                expected: "push or region_write",
                got: other.name(),
            }),
        };
        if let Err(e) = handled {
            return refuse(&mut recv, &from, &meter, &e);
        }
    }
}

/// Streams a write's payload from QUIC's receive buffers straight into the
/// region, chunk by chunk, then commits it.
async fn receive_region_write(
    recv: &mut RecvStream,
    header: &Header,
    shared: &Shared,
) -> Result<(), TransportError> {
    let mut prefix = [0u8; 16];
    if header.length < 16 {
        return Err(TransportError::malformed(
            "region write",
            "shorter than its key and offset",
        ));
    }
    recv.read_exact(&mut prefix).await.map_err(stream_error)?;
    let key = RegionKey(u64_at(&prefix, 0)?);
    let offset = u64_at(&prefix, 8)?;
    let len = u64::from(header.length - 16);
    // Check the bounds before reading a byte of payload.
    shared.regions.lock().slot(key, offset, len)?;
    let mut at = 0u64;
    while at < len {
        let chunk = recv
            .read_chunk((len - at) as usize, true)
            .await
            .map_err(stream_error)?
            .ok_or_else(|| {
                TransportError::malformed("region write", "stream ended inside the payload")
            })?;
        let n = chunk.bytes.len() as u64;
        shared
            .regions
            .lock()
            .slot(key, offset + at, n)?
            .copy_from_slice(&chunk.bytes);
        at += n;
    }
    shared.regions.lock().commit(key, offset, len)?;
    shared.region_progress.notify_waiters();
    Ok(())
}
