//! Ordered request streams: many requests on one QUIC stream, each answered in
//! turn. A requester keeps several in flight without waiting for each answer,
//! and they cannot overtake one another: Raft's AppendEntries must reach a
//! follower in the order they were sent, or a later one finds a gap and is
//! refused. Each such stream is its own, so a slow one holds up no other traffic
//! on the connection. Only members may open one (`serve.rs` refuses the rest).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use parking_lot::Mutex;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::Semaphore;

use super::serve::{quietly_refuse, refuse, PROTOCOL_ERROR};
use super::wire::{read_body, read_header, stream_error, write_frame};
use super::{PeerInfo, Shared};
use crate::faults::FaultInjector;
use crate::frame::Header;
use crate::metrics::Meter;
use crate::{FrameKind, TransportError};

/// Requests a responder reads and has not answered yet, per stream: past this
/// it reads no further, and QUIC's flow control holds the requester back.
const READ_AHEAD: usize = 16;

/// The sending half of an ordered request stream. Dropped unfinished, it
/// resets the stream, so the responder stops working on what it was sent.
pub struct RequestSender {
    /// `None` once finished, or parked after a loss.
    send: Option<SendStream>,
    /// Where a held-up stream waits, unfinished, until the answers are dropped:
    /// finishing it would let the responder end the stream cleanly, and a loss
    /// would look like an answer.
    parked: Arc<Mutex<Option<SendStream>>>,
    next_id: u64,
    max_body: u32,
    faults: Option<Arc<FaultInjector>>,
    addr: SocketAddr,
    meter: Meter,
    finished: bool,
    /// Fault injection lost a request: on an ordered stream nothing behind it
    /// gets through either, so nothing more is sent, the stream is not even
    /// finished, and the answers stop (as they would behind a lost packet that
    /// is never retransmitted).
    held_up: bool,
}

/// The receiving half: the answers, in the order of the requests.
pub struct AnswerReceiver {
    recv: RecvStream,
    parked: Arc<Mutex<Option<SendStream>>>,
    max_body: u32,
    meter: Meter,
    next_id: u64,
}

pub(crate) fn open(
    (send, recv): (SendStream, RecvStream),
    max_body: u32,
    faults: Option<Arc<FaultInjector>>,
    meter: Meter,
    addr: SocketAddr,
) -> (RequestSender, AnswerReceiver) {
    let parked = Arc::new(Mutex::new(None));
    (
        RequestSender {
            send: Some(send),
            parked: parked.clone(),
            next_id: 1,
            max_body,
            faults,
            addr,
            meter: meter.clone(),
            finished: false,
            held_up: false,
        },
        AnswerReceiver {
            recv,
            parked,
            max_body,
            meter,
            next_id: 1,
        },
    )
}

impl RequestSender {
    /// Sends the next request; its answer comes after those of the requests
    /// sent before it. Delay and loss faults apply; duplication does not (a
    /// QUIC stream never duplicates), and reordering is only its delay (a
    /// stream never reorders).
    pub async fn send(&mut self, body: &[u8]) -> Result<(), TransportError> {
        if let Some(faults) = &self.faults {
            let verdict = faults.decide(self.addr);
            if !verdict.delay.is_zero() {
                tokio::time::sleep(verdict.delay).await;
            }
            self.held_up |= verdict.copies == 0;
        }
        if self.held_up {
            return Ok(());
        }
        let send = self
            .send
            .as_mut()
            .ok_or_else(|| TransportError::Stream("the request stream was finished".into()))?;
        let id = self.next_id;
        self.next_id += 1;
        write_frame(
            send,
            FrameKind::StreamRequest,
            0,
            id,
            &[body],
            self.max_body,
        )
        .await?;
        self.meter.sent(FrameKind::StreamRequest, body.len());
        Ok(())
    }

    /// No more requests: the responder answers those sent, then ends the stream.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.finished = true;
        let Some(mut send) = self.send.take() else {
            return Ok(());
        };
        if self.held_up {
            *self.parked.lock() = Some(send);
            return Ok(());
        }
        send.finish().map_err(stream_error)
    }
}

impl Drop for RequestSender {
    fn drop(&mut self) {
        match self.send.take() {
            Some(send) if self.held_up => *self.parked.lock() = Some(send),
            Some(mut send) if !self.finished => {
                let _ = send.reset(VarInt::from_u32(0));
            }
            _ => {}
        }
    }
}

impl Drop for AnswerReceiver {
    fn drop(&mut self) {
        if let Some(mut send) = self.parked.lock().take() {
            let _ = send.reset(VarInt::from_u32(0));
        }
    }
}

impl AnswerReceiver {
    /// The next answer; `Ok(None)` once the responder ended the stream. An error
    /// answer is [`TransportError::Remote`].
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let result = self.next_frame().await;
        match &result {
            Err(TransportError::Remote(_)) | Ok(_) => {}
            Err(e) => self.meter.stream_error(e),
        }
        result
    }

    async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let Some(header) = read_header(&mut self.recv, self.max_body).await? else {
            return Ok(None);
        };
        let body = read_body(&mut self.recv, header.length).await?;
        self.meter.received(header.kind, body.len());
        // Every answer names its request: one out of turn is a broken responder.
        if header.request_id != self.next_id {
            return Err(TransportError::malformed(
                "request stream",
                format!(
                    "answer to request {} where {} was next",
                    header.request_id, self.next_id
                ),
            ));
        }
        self.next_id += 1;
        match header.kind {
            FrameKind::Response => Ok(Some(body)),
            FrameKind::ErrorResponse => Err(TransportError::Remote(
                String::from_utf8_lossy(&body).into_owned(),
            )),
            other => Err(TransportError::UnexpectedFrame {
                expected: "response",
                got: other.name(),
            }),
        }
    }
}

/// The responder's side, from the stream's first request on. Requests are read
/// while earlier ones are answered, at most [`READ_AHEAD`] unanswered; answers
/// are written as the handler gives them, each with its request's id. A bad
/// frame, a reset, or a partition configured here ends the requests (the
/// handler's answers to those already read still go); the handler ending its
/// answers ends the stream.
pub(crate) async fn serve(
    mut send: SendStream,
    mut recv: RecvStream,
    first: (Header, Vec<u8>),
    from: PeerInfo,
    shared: Arc<Shared>,
) {
    let max_body = shared.config.max_body;
    let meter = Meter::new(shared.config.metrics.clone(), from.addr);
    let unanswered = Arc::new(Semaphore::new(READ_AHEAD));
    // The ids of requests read and not yet answered, oldest first.
    let ids = Arc::new(Mutex::new(VecDeque::from([first.0.request_id])));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = {
        let (from, shared, meter) = (from.clone(), shared.clone(), meter.clone());
        let (unanswered, ids) = (unanswered.clone(), ids.clone());
        async move {
            // The first request takes a slot like the rest.
            let Ok(slot) = unanswered.acquire().await else {
                return;
            };
            slot.forget();
            if tx.send(first.1).is_err() {
                return;
            }
            loop {
                let Ok(slot) = unanswered.acquire().await else {
                    return;
                };
                slot.forget();
                let header = match read_header(&mut recv, max_body).await {
                    Ok(Some(h)) => h,
                    Ok(None) => return,
                    Err(e) => return quietly_refuse(&mut recv, &from, &meter, &e),
                };
                if shared.is_cut(from.addr) {
                    let _ = recv.stop(VarInt::from_u32(PROTOCOL_ERROR));
                    return;
                }
                if header.kind != FrameKind::StreamRequest {
                    let e = TransportError::UnexpectedFrame {
                        expected: "stream_request",
                        got: header.kind.name(),
                    };
                    return refuse(&mut recv, &from, &meter, &e);
                }
                let body = match read_body(&mut recv, header.length).await {
                    Ok(b) => b,
                    Err(e) => return quietly_refuse(&mut recv, &from, &meter, &e),
                };
                meter.received(header.kind, body.len());
                ids.lock().push_back(header.request_id);
                if tx.send(body).is_err() {
                    return;
                }
            }
        }
    };
    let requests = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|body| (body, rx))
    });
    let mut answers = shared
        .handler
        .request_stream(from.clone(), Box::pin(requests));
    let writer = async move {
        // A requester that gave up stops reading: stop answering at once, not at
        // the next answer's write.
        let stopped = send.stopped();
        tokio::pin!(stopped);
        loop {
            let answer = tokio::select! {
                answer = answers.next() => answer,
                _ = &mut stopped => return,
            };
            let Some(answer) = answer else { break };
            // A handler answering more often than it was asked is cut off.
            let Some(id) = ids.lock().pop_front() else {
                tracing::warn!(peer = %from.addr, "a stream handler answered a request it was not sent");
                break;
            };
            let (kind, body) = match answer {
                Ok(body) => (FrameKind::Response, body),
                Err(message) => (FrameKind::ErrorResponse, message.into_bytes()),
            };
            if let Err(e) = write_frame(&mut send, kind, 0, id, &[&body], max_body).await {
                meter.stream_error(&e);
                tracing::debug!(peer = %from.addr, error = %e, "could not answer a stream request");
                return;
            }
            meter.sent(kind, body.len());
            unanswered.add_permits(1);
        }
        let _ = send.finish();
    };
    // The answers outlive the requests (those read are still answered), but
    // not the other way round: once the answers end, so does the reading.
    let reader = std::pin::pin!(reader);
    let writer = std::pin::pin!(writer);
    if let futures_util::future::Either::Right((_, writer)) =
        futures_util::future::select(writer, reader).await
    {
        writer.await;
    }
}
