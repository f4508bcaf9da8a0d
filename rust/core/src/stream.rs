//! WebTransport streams as the application sees them.
//!
//! The application never touches quinn's stream objects: quinn holds its connection
//! lock while the connection driver runs (including UDP sends), so an application
//! thread calling into quinn stalls behind it. Instead each half has a small pump task
//! on the runtime that owns the quinn half, and the application exchanges data with it
//! through a bounded buffer under a lock of its own (uncontended, held for a copy).

use crate::error::{connection_lost, Error, Result};
use crate::h3;
use crate::sync::lock;
use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Bytes a send half buffers before `poll_write` waits (quinn buffers more, up to the
/// peer's flow-control window).
const SEND_BUFFER: usize = 1024 * 1024;
/// Most bytes a receive half buffers ahead of the application; beyond its current
/// read-ahead the pump stops reading and QUIC flow control holds the peer back.
const RECV_BUFFER: usize = 1024 * 1024;
/// The read-ahead a receive half starts with. It doubles (up to [`RECV_BUFFER`]) each
/// time the application drains a buffer that was at least half full, so a bulk reader
/// gets the full read-ahead within a few reads while a stream nobody reads holds only
/// this much beyond what flow control bounds.
const RECV_AHEAD_INITIAL: usize = 64 * 1024;

/// A task a new stream needs running (the pump of one of its halves), handed to a
/// [`Spawner`].
pub type StreamTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Starts the tasks of newly opened streams (see [`crate::OpenBi::poll_spawning`]).
///
/// Awaiting an opening spawns them on the current tokio runtime. A caller polling
/// from a thread outside the runtime can collect them instead and start a whole
/// batch with one hand-off to the runtime's thread (the Python bindings do: one wake-up
/// per event-loop turn rather than one per pump); when they start is its choice.
pub trait Spawner {
    /// Takes `task`, which must eventually run on the session's tokio runtime (until
    /// it does, the stream's data does not move).
    fn spawn(&mut self, task: StreamTask);
}

/// Starts `pump` through `spawner`, or on the current runtime without one (unboxed).
fn start(spawner: Option<&mut dyn Spawner>, pump: impl Future<Output = ()> + Send + 'static) {
    match spawner {
        Some(s) => s.spawn(Box::pin(pump)),
        None => {
            tokio::spawn(pump);
        }
    }
}

pub(crate) fn map_write_error(e: quinn::WriteError) -> Error {
    match e {
        quinn::WriteError::Stopped(code) => {
            Error::StreamStopped(h3::h3_code_to_wt(code.into_inner()))
        }
        quinn::WriteError::ConnectionLost(e) => connection_lost(e),
        quinn::WriteError::ClosedStream => Error::StreamClosed,
        quinn::WriteError::ZeroRttRejected => Error::Connection("0-RTT rejected".into()),
    }
}

pub(crate) fn map_read_error(e: quinn::ReadError) -> Error {
    match e {
        quinn::ReadError::Reset(code) => Error::StreamReset(h3::h3_code_to_wt(code.into_inner())),
        quinn::ReadError::ConnectionLost(e) => connection_lost(e),
        quinn::ReadError::ClosedStream => Error::StreamClosed,
        quinn::ReadError::IllegalOrderedRead => Error::Protocol("unordered read".into()),
        quinn::ReadError::ZeroRttRejected => Error::Connection("0-RTT rejected".into()),
    }
}

/// Wakes a waker taken out of a state lock. Always called after the guard is dropped:
/// waking under the lock lets the woken thread run straight into it and sleep on it.
fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

#[derive(Default)]
struct SendState {
    queue: VecDeque<Bytes>,
    queued: usize,
    fin: bool,
    /// The reset asked for, as the code that goes on the wire (already mapped into the
    /// WebTransport range, or an HTTP/3 code such as WT_SESSION_GONE).
    reset: Option<u64>,
    error: Option<Error>,
    sent: u64,
    app: Option<Waker>,
    pump: Option<Waker>,
    /// The pump has ended: a FIN set now is never sent, so it is not counted in the
    /// session's [`Finished`].
    pump_gone: bool,
}

/// The sending half of a WebTransport stream.
pub struct SendStream {
    state: Arc<Mutex<SendState>>,
    finished: Arc<Finished>,
    id: u64,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    /// Wraps a quinn send half; `header` (the WebTransport stream header of a locally
    /// opened stream) goes out first. With `credit` (sessions whose peer declared flow
    /// control; `None` for draft-02), the body takes the peer's WT_MAX_DATA credit
    /// before it goes to QUIC. Spawns the pump: needs a tokio context.
    /// `finished` is the session's record of finished streams that a close waits for.
    pub(crate) fn new(
        inner: quinn::SendStream,
        header: Option<Vec<u8>>,
        credit: Option<Arc<crate::flow::Flow>>,
        finished: Arc<Finished>,
    ) -> Self {
        Self::launched(inner, header, None, credit, finished)
    }

    /// Like [`Self::new`], the pump started through `spawner` (when given).
    pub(crate) fn launched(
        inner: quinn::SendStream,
        header: Option<Vec<u8>>,
        spawner: Option<&mut dyn Spawner>,
        credit: Option<Arc<crate::flow::Flow>>,
        finished: Arc<Finished>,
    ) -> Self {
        let id = quinn::VarInt::from(inner.id()).into_inner();
        let state = Arc::new(Mutex::new(SendState::default()));
        let pump = send_pump(state.clone(), inner, header, credit, finished.clone());
        start(spawner, pump);
        Self {
            state,
            finished,
            id,
        }
    }

    /// Sets the FIN under the state lock, counting the stream in the session's
    /// [`Finished`] while its pump is there to send it.
    fn set_fin(&self, s: &mut SendState) {
        s.fin = true;
        if !s.pump_gone {
            self.finished.flushing_started();
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues as much of `buf` as the buffer has room for; `Pending` (waker kept) when
    /// it is full. Errors once the peer stopped the stream or the session ended.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize>> {
        self.poll_send_deferred(cx, buf, false).map_ok(|(n, pump)| {
            wake(pump);
            n
        })
    }

    /// Like [`poll_write`](Self::poll_write), with `finish` also ending the stream once
    /// all of `buf` is queued (data and FIN reach the pump together), and handing back
    /// the pump's waker instead of waking it, so a caller issuing many writes in a row
    /// (an event loop's turn) wakes the I/O thread once for all of them. The caller must
    /// wake it soon.
    pub fn poll_send_deferred(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        finish: bool,
    ) -> Poll<Result<(usize, Option<Waker>)>> {
        self.poll_send_with(cx, buf.len(), finish, |n| Bytes::copy_from_slice(&buf[..n]))
    }

    /// Like [`poll_send_deferred`](Self::poll_send_deferred) without a copy: what fits
    /// is queued as a slice of `buf` (which keeps its owner alive until QUIC is done).
    pub fn poll_send_bytes_deferred(
        &mut self,
        cx: &mut Context<'_>,
        buf: &Bytes,
        finish: bool,
    ) -> Poll<Result<(usize, Option<Waker>)>> {
        self.poll_send_with(cx, buf.len(), finish, |n| buf.slice(..n))
    }

    /// Queues the first `n` of `len` bytes, `n` as many as there is room for, taken
    /// with `take(n)`.
    fn poll_send_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        finish: bool,
        take: impl FnOnce(usize) -> Bytes,
    ) -> Poll<Result<(usize, Option<Waker>)>> {
        let mut s = lock(&self.state);
        if let Some(e) = &s.error {
            return Poll::Ready(Err(e.clone()));
        }
        if s.fin || s.reset.is_some() {
            return Poll::Ready(Err(Error::StreamClosed));
        }
        let room = SEND_BUFFER.saturating_sub(s.queued);
        if room == 0 && len > 0 {
            s.app = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(len);
        if n > 0 {
            s.queue.push_back(take(n));
            s.queued += n;
        }
        if finish && n == len {
            self.set_fin(&mut s);
        }
        let pump = if n > 0 || s.fin { s.pump.take() } else { None };
        Poll::Ready(Ok((n, pump)))
    }

    /// Writes all of `buf`, waiting for room.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write(cx, buf)).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Ends the stream gracefully once the queued data is out; does not wait for the
    /// peer's acknowledgement.
    pub fn finish(&mut self) -> Result<()> {
        let mut s = lock(&self.state);
        if s.fin || s.reset.is_some() {
            return Err(Error::StreamClosed);
        }
        self.set_fin(&mut s);
        let pump = s.pump.take();
        drop(s);
        wake(pump);
        Ok(())
    }

    /// Abandons the stream with a WebTransport error code (queued data is dropped).
    pub fn reset(&mut self, code: u32) -> Result<()> {
        let mut s = lock(&self.state);
        if s.reset.is_some() {
            return Err(Error::StreamClosed);
        }
        s.reset = Some(h3::wt_code_to_h3(code));
        s.queue.clear();
        s.queued = 0;
        let pump = s.pump.take();
        drop(s);
        wake(pump);
        Ok(())
    }

    /// Refuses the stream with an HTTP/3 error code as it is (WT_SESSION_GONE,
    /// WT_BUFFERED_STREAM_REJECTED), not mapped into the WebTransport range.
    pub(crate) fn refuse(&mut self, code: u32) {
        end_send(&self.state, u64::from(code), &Error::StreamClosed);
    }

    /// Bytes handed to QUIC so far.
    pub fn bytes_sent(&self) -> u64 {
        lock(&self.state).sent
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        // Like quinn: dropping a send half finishes it after what was queued.
        let mut s = lock(&self.state);
        if !s.fin && s.reset.is_none() {
            self.set_fin(&mut s);
            let pump = s.pump.take();
            drop(s);
            wake(pump);
        }
    }
}

enum SendWork {
    Data(Vec<Bytes>),
    Finish,
    Reset(u64),
}

/// Writes `chunks` as the session's WT_MAX_DATA credit allows, waiting for more when
/// there is none.
async fn write_credited(
    inner: &mut quinn::SendStream,
    chunks: &mut Vec<Bytes>,
    flow: &crate::flow::Flow,
) -> std::result::Result<(), quinn::WriteError> {
    let mut rest: VecDeque<Bytes> = chunks.drain(..).collect();
    while !rest.is_empty() {
        let want: usize = rest.iter().map(Bytes::len).sum();
        let mut n = std::future::poll_fn(|cx| flow.poll_send_credit(want, cx)).await;
        let mut part = Vec::new();
        while n > 0 {
            let Some(front) = rest.front_mut() else { break };
            if front.len() <= n {
                n -= front.len();
                part.extend(rest.pop_front());
            } else {
                part.push(front.split_to(n));
                n = 0;
            }
        }
        inner.write_all_chunks(&mut part).await?;
    }
    Ok(())
}

async fn send_pump(
    state: Arc<Mutex<SendState>>,
    inner: quinn::SendStream,
    header: Option<Vec<u8>>,
    credit: Option<Arc<crate::flow::Flow>>,
    finished: Arc<Finished>,
) {
    let done = pump_sends(&state, inner, header, credit).await;
    // From here on a FIN the application sets is never sent, so it is not counted.
    let fin = {
        let mut s = lock(&state);
        s.pump_gone = true;
        s.fin
    };
    if fin {
        finished.flushing_ended(done);
    }
}

/// Moves the application's writes to quinn until the stream ends; returns the quinn
/// half when it ended with a FIN (its data may still be unacknowledged).
async fn pump_sends(
    state: &Arc<Mutex<SendState>>,
    mut inner: quinn::SendStream,
    header: Option<Vec<u8>>,
    credit: Option<Arc<crate::flow::Flow>>,
) -> Option<quinn::SendStream> {
    let fail = |state: &Arc<Mutex<SendState>>, e: Error| {
        let mut s = lock(state);
        s.error = Some(e);
        s.queue.clear();
        let app = s.app.take();
        drop(s);
        wake(app);
    };
    if let Some(header) = header {
        if let Err(e) = inner.write_all(&header).await {
            fail(state, map_write_error(e));
            return None;
        }
    }
    loop {
        let work = std::future::poll_fn(|cx| {
            let mut s = lock(state);
            if let Some(code) = s.reset {
                return Poll::Ready(SendWork::Reset(code));
            }
            if !s.queue.is_empty() {
                return Poll::Ready(SendWork::Data(s.queue.drain(..).collect()));
            }
            if s.fin {
                return Poll::Ready(SendWork::Finish);
            }
            s.pump = Some(cx.waker().clone());
            Poll::Pending
        });
        // While idle, a STOP_SENDING from the peer must still reach the application.
        let work = tokio::select! {
            work = work => work,
            stopped = inner.stopped() => {
                // Whatever ended the stream must reach later writes, or they would fill
                // the buffer and then wait for a pump that is gone.
                let error = match stopped {
                    Ok(Some(code)) => Error::StreamStopped(h3::h3_code_to_wt(code.into_inner())),
                    Err(quinn::StoppedError::ConnectionLost(e)) => connection_lost(e),
                    Ok(None) | Err(_) => Error::StreamClosed,
                };
                fail(state, error);
                return None;
            }
        };
        match work {
            SendWork::Reset(code) => {
                if let Ok(v) = quinn::VarInt::from_u64(code) {
                    let _ = inner.reset(v);
                }
                return None;
            }
            SendWork::Finish => {
                return inner.finish().is_ok().then_some(inner);
            }
            SendWork::Data(mut chunks) => {
                let total: usize = chunks.iter().map(Bytes::len).sum();
                // A peer that grants no credit blocks this write for good: a reset from
                // the application must still get through (and free the buffer).
                let reset = std::future::poll_fn(|cx| {
                    let mut s = lock(state);
                    match s.reset {
                        Some(code) => Poll::Ready(code),
                        None => {
                            s.pump = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                });
                // `biased`: the write is polled first, so a write quinn takes at once (the
                // usual case) never polls (and registers a waker for) the reset check.
                let written = match &credit {
                    None => tokio::select! {
                        biased;
                        written = inner.write_all_chunks(&mut chunks) => written,
                        code = reset => {
                            if let Ok(v) = quinn::VarInt::from_u64(code) {
                                let _ = inner.reset(v);
                            }
                            return None;
                        }
                    },
                    // Drafts 13+ with the peer's flow control: a write may wait for its
                    // WT_MAX_DATA, and a reset must get through meanwhile too. Boxed, so
                    // that the pump of a draft-02 stream (the arm above) stays as small
                    // as it was.
                    Some(flow) => tokio::select! {
                        biased;
                        written = Box::pin(write_credited(&mut inner, &mut chunks, flow)) => written,
                        code = reset => {
                            if let Ok(v) = quinn::VarInt::from_u64(code) {
                                let _ = inner.reset(v);
                            }
                            return None;
                        }
                    },
                };
                if let Err(e) = written {
                    fail(state, map_write_error(e));
                    return None;
                }
                let mut s = lock(state);
                s.queued = s.queued.saturating_sub(total);
                s.sent += total as u64;
                let app = s.app.take();
                drop(s);
                wake(app);
            }
        }
    }
}

#[derive(Default)]
struct RecvState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// The current read-ahead (see [`RECV_AHEAD_INITIAL`]).
    ahead: usize,
    eof: bool,
    error: Option<Error>,
    /// The STOP_SENDING asked for, as the code that goes on the wire.
    stop: Option<u64>,
    received: u64,
    app: Option<Waker>,
    pump: Option<Waker>,
    /// Session flow control (drafts 13+; `None` for draft-02): told of every byte taken
    /// out of QUIC.
    flow: Option<Arc<crate::flow::Flow>>,
}

/// The receiving half of a WebTransport stream.
pub struct RecvStream {
    state: Arc<Mutex<RecvState>>,
    id: u64,
    finished: bool,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl RecvStream {
    /// Wraps a quinn receive half (its header already read), counting received bytes
    /// into the session's `flow` (drafts 13+). Spawns the pump: needs a tokio context.
    pub(crate) fn new(inner: quinn::RecvStream, flow: Option<Arc<crate::flow::Flow>>) -> Self {
        Self::launched(inner, None, flow)
    }

    /// Like [`Self::new`], the pump (if one is still needed) started through `spawner`
    /// (when given).
    pub(crate) fn launched(
        mut inner: quinn::RecvStream,
        spawner: Option<&mut dyn Spawner>,
        flow: Option<Arc<crate::flow::Flow>>,
    ) -> Self {
        let id = quinn::VarInt::from(inner.id()).into_inner();
        let mut first = RecvState {
            ahead: RECV_AHEAD_INITIAL,
            flow,
            ..RecvState::default()
        };
        // Take what already arrived (a small request often comes whole, FIN included)
        // so the application finds it at once instead of waiting for the pump's first
        // turn and a second wake-up.
        let done = take_ready(&mut first, &mut inner);
        let state = Arc::new(Mutex::new(first));
        if !done {
            start(spawner, recv_pump(state.clone(), inner));
        }
        Self {
            state,
            id,
            finished: false,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Takes up to `max` buffered bytes as chunks (no copy): `Ok(true)` at the end of
    /// the stream, `Ok(false)` with chunks, `Pending` (waker kept) when nothing is there.
    pub fn poll_read_chunks(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut Vec<Bytes>,
    ) -> Poll<Result<bool>> {
        if self.finished {
            return Poll::Ready(Ok(true));
        }
        let mut s = lock(&self.state);
        if s.chunks.is_empty() {
            if s.eof {
                self.finished = true;
                return Poll::Ready(Ok(true));
            }
            if let Some(e) = &s.error {
                return Poll::Ready(Err(e.clone()));
            }
            s.app = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut left = max.max(1);
        while left > 0 {
            let Some(front) = s.chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                if let Some(chunk) = s.chunks.pop_front() {
                    out.push(chunk);
                }
            } else {
                out.push(front.split_to(left));
                left = 0;
            }
        }
        let taken: usize = out.iter().map(Bytes::len).sum();
        if s.buffered >= s.ahead / 2 {
            s.ahead = (s.ahead * 2).min(RECV_BUFFER);
        }
        s.buffered -= taken.min(s.buffered);
        let pump = if s.buffered < s.ahead / 2 {
            s.pump.take()
        } else {
            None
        };
        drop(s);
        wake(pump);
        Poll::Ready(Ok(false))
    }

    /// Reads into `buf`: `Ok(0)` at the end of the stream, and at once for an empty
    /// `buf` (as `std::io::Read` does).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut chunks = Vec::new();
        match self.poll_read_chunks(cx, buf.len(), &mut chunks) {
            Poll::Ready(Ok(true)) => Poll::Ready(Ok(0)),
            Poll::Ready(Ok(false)) => {
                let mut n = 0;
                for mut c in chunks {
                    let k = c.len();
                    c.copy_to_slice(&mut buf[n..n + k]);
                    n += k;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads into `buf`; `Ok(0)` at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Asks the peer to stop sending, with a WebTransport error code.
    pub fn stop(&mut self, code: u32) -> Result<()> {
        let mut s = lock(&self.state);
        if s.stop.is_some() || (s.eof && s.chunks.is_empty()) {
            return Err(Error::StreamClosed);
        }
        s.stop = Some(h3::wt_code_to_h3(code));
        s.chunks.clear();
        s.buffered = 0;
        let pump = s.pump.take();
        drop(s);
        wake(pump);
        Ok(())
    }

    /// Refuses the stream with an HTTP/3 error code as it is (see
    /// [`SendStream::refuse`]).
    pub(crate) fn refuse(&mut self, code: u32) {
        end_recv(&self.state, u64::from(code), &Error::StreamClosed);
    }

    /// Whether the peer finished the stream and everything was read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes received so far (read or buffered).
    pub fn bytes_received(&self) -> u64 {
        lock(&self.state).received
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        // Like quinn: dropping an unfinished receive half stops it.
        let mut s = lock(&self.state);
        if s.stop.is_none() && !s.eof {
            s.stop = Some(h3::wt_code_to_h3(0));
            let pump = s.pump.take();
            drop(s);
            wake(pump);
        }
    }
}

async fn recv_pump(state: Arc<Mutex<RecvState>>, mut inner: quinn::RecvStream) {
    loop {
        // Wait for room (or a stop request) before reading more.
        let stop = std::future::poll_fn(|cx| {
            let mut s = lock(&state);
            if let Some(code) = s.stop {
                return Poll::Ready(Some(code));
            }
            if s.buffered < s.ahead {
                return Poll::Ready(None);
            }
            s.pump = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if let Some(code) = stop {
            if let Ok(v) = quinn::VarInt::from_u64(code) {
                let _ = inner.stop(v);
            }
            return;
        }
        let stop_requested = std::future::poll_fn(|cx| {
            let mut s = lock(&state);
            match s.stop {
                Some(code) => Poll::Ready(code),
                None => {
                    s.pump = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        // Take every chunk quinn has ready in one call (one lock of quinn's connection
        // state for up to 32 packets' worth, instead of one per packet).
        let mut bufs: [Bytes; 32] = Default::default();
        let read = tokio::select! {
            read = inner.read_chunks(&mut bufs) => read,
            code = stop_requested => {
                if let Ok(v) = quinn::VarInt::from_u64(code) {
                    let _ = inner.stop(v);
                }
                return;
            }
        };
        let mut s = lock(&state);
        let done = match read {
            Ok(Some(n)) => {
                push_chunks(&mut s, &mut bufs[..n]);
                // Keep taking what is already there (typically the FIN right behind the
                // data) before waking the application: one wake-up for both.
                take_ready(&mut s, &mut inner)
            }
            Ok(None) => {
                s.eof = true;
                true
            }
            Err(e) => {
                s.error = Some(map_read_error(e));
                true
            }
        };
        let app = s.app.take();
        drop(s);
        wake(app);
        if done {
            return;
        }
    }
}

fn push_chunks(s: &mut RecvState, chunks: &mut [Bytes]) {
    let before = s.received;
    for chunk in chunks {
        let chunk = std::mem::take(chunk);
        s.received += chunk.len() as u64;
        s.buffered += chunk.len();
        s.chunks.push_back(chunk);
    }
    if let Some(flow) = &s.flow {
        flow.received(usize::try_from(s.received - before).unwrap_or(usize::MAX));
    }
}

/// Moves every chunk quinn has ready into `s` without waiting (a no-op waker; the caller
/// waits properly if it must). Returns true when the stream is done: FIN or error.
fn take_ready(s: &mut RecvState, inner: &mut quinn::RecvStream) -> bool {
    let mut bufs: [Bytes; 32] = Default::default();
    while s.buffered < s.ahead {
        let polled = {
            let mut read = std::pin::pin!(inner.read_chunks(&mut bufs));
            read.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        match polled {
            Poll::Pending => return false,
            Poll::Ready(Ok(Some(n))) => push_chunks(s, &mut bufs[..n]),
            Poll::Ready(Ok(None)) => {
                s.eof = true;
                return true;
            }
            Poll::Ready(Err(e)) => {
                s.error = Some(map_read_error(e));
                return true;
            }
        }
    }
    false
}

/// The open streams of one session of drafts 07+, so that the end of the session can
/// reset and stop all of them with WT_SESSION_GONE while the connection stays up (other
/// sessions pooled on it, or the grace period before it closes). Draft-02 sessions
/// (Chrome, Firefox: one session per connection, which ends with it) keep none, so their
/// streams pay nothing for it.
#[derive(Default)]
pub(crate) struct StreamSet {
    inner: Mutex<SetState>,
}

#[derive(Default)]
struct SetState {
    sends: Vec<std::sync::Weak<Mutex<SendState>>>,
    recvs: Vec<std::sync::Weak<Mutex<RecvState>>>,
    /// Sweep the entries of dropped streams when the lists reach this length.
    sweep_at: usize,
    /// The session ended: (wire code, error the application sees).
    ended: Option<(u64, Error)>,
}

impl SetState {
    fn sweep_if_due(&mut self) {
        if self.sends.len() + self.recvs.len() >= self.sweep_at {
            self.sends.retain(|w| w.strong_count() > 0);
            self.recvs.retain(|w| w.strong_count() > 0);
            self.sweep_at = ((self.sends.len() + self.recvs.len()) * 2).max(64);
        }
    }
}

fn end_send(state: &Mutex<SendState>, code: u64, err: &Error) {
    let mut s = lock(state);
    if s.fin {
        // Finished by the application: what it wrote still goes out (a reply written
        // just before the close is not thrown away).
        return;
    }
    if s.reset.is_none() {
        s.reset = Some(code);
    }
    s.queue.clear();
    s.queued = 0;
    s.error.get_or_insert_with(|| err.clone());
    let (pump, app) = (s.pump.take(), s.app.take());
    drop(s);
    wake(pump);
    wake(app);
}

fn end_recv(state: &Mutex<RecvState>, code: u64, err: &Error) {
    let mut s = lock(state);
    if s.stop.is_none() && !s.eof {
        s.stop = Some(code);
        s.chunks.clear();
        s.buffered = 0;
        s.error.get_or_insert_with(|| err.clone());
    }
    let (pump, app) = (s.pump.take(), s.app.take());
    drop(s);
    wake(pump);
    wake(app);
}

impl StreamSet {
    /// Keeps `send` in the set (reset at once if the session already ended).
    pub(crate) fn add_send(&self, send: &SendStream) {
        let mut set = lock(&self.inner);
        if let Some((code, err)) = &set.ended {
            let (code, err) = (*code, err.clone());
            drop(set);
            return end_send(&send.state, code, &err);
        }
        set.sweep_if_due();
        set.sends.push(Arc::downgrade(&send.state));
    }

    /// Keeps `recv` in the set (stopped at once if the session already ended).
    pub(crate) fn add_recv(&self, recv: &RecvStream) {
        let mut set = lock(&self.inner);
        if let Some((code, err)) = &set.ended {
            let (code, err) = (*code, err.clone());
            drop(set);
            return end_recv(&recv.state, code, &err);
        }
        set.sweep_if_due();
        set.recvs.push(Arc::downgrade(&recv.state));
    }

    /// The session ended: every stream still open is reset (send halves the application
    /// has not finished) and stopped (receive halves) with the HTTP/3 error `code`; the
    /// application's next operation on them fails with `err`.
    pub(crate) fn end(&self, code: u64, err: Error) {
        let (sends, recvs) = {
            let mut set = lock(&self.inner);
            if set.ended.is_some() {
                return;
            }
            set.ended = Some((code, err.clone()));
            (
                std::mem::take(&mut set.sends),
                std::mem::take(&mut set.recvs),
            )
        };
        for send in sends.iter().filter_map(std::sync::Weak::upgrade) {
            end_send(&send, code, &err);
        }
        for recv in recvs.iter().filter_map(std::sync::Weak::upgrade) {
            end_recv(&recv, code, &err);
        }
    }
}

/// The send streams of one session that the application finished and whose data the
/// peer may not have yet, so that closing the session can wait for them: the close
/// (CLOSE_WEBTRANSPORT_SESSION on the CONNECT stream) travels on another QUIC stream
/// and would otherwise overtake a reply finished just before it, and the peer drops a
/// stream that arrives after its session ended.
#[derive(Default)]
pub(crate) struct Finished {
    inner: Mutex<FinishedState>,
}

#[derive(Default)]
struct FinishedState {
    /// Finished by the application, their pump not yet done handing them to QUIC.
    flushing: usize,
    /// Handed to QUIC with their FIN; acknowledged or not.
    sent: Vec<quinn::SendStream>,
    /// Drop the acknowledged entries of `sent` when it reaches this length.
    sweep_at: usize,
    /// The close waiting for `flushing` to reach 0.
    closer: Option<Waker>,
}

/// Whether the peer has acknowledged all of `send` (or stopped it, or the connection is
/// gone): nothing of it is left to wait for.
fn acknowledged(send: &quinn::SendStream) -> bool {
    let mut stopped = std::pin::pin!(send.stopped());
    stopped
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

impl Finished {
    /// The application set a stream's FIN (its pump will hand it to QUIC).
    fn flushing_started(&self) {
        lock(&self.inner).flushing += 1;
    }

    /// A counted stream's pump ended; `sent` is its quinn half when it ended with the
    /// FIN, to wait on until the peer acknowledges it.
    fn flushing_ended(&self, sent: Option<quinn::SendStream>) {
        let mut f = lock(&self.inner);
        f.flushing = f.flushing.saturating_sub(1);
        if let Some(send) = sent {
            if f.sent.len() >= f.sweep_at {
                // Amortized: each entry is checked about once before it is dropped.
                f.sent.retain(|s| !acknowledged(s));
                f.sweep_at = (f.sent.len() * 2).max(32);
            }
            f.sent.push(send);
        }
        let closer = if f.flushing == 0 {
            f.closer.take()
        } else {
            None
        };
        drop(f);
        wake(closer);
    }

    /// Whether nothing finished is still on its way (the close can go out at once).
    pub(crate) fn is_settled(&self) -> bool {
        let mut f = lock(&self.inner);
        if f.flushing > 0 {
            return false;
        }
        f.sent.retain(|s| !acknowledged(s));
        f.sent.is_empty()
    }

    /// Waits until every stream finished so far is handed to QUIC and acknowledged by
    /// the peer (or stopped, or the connection is gone). The caller bounds the wait.
    pub(crate) async fn settled(&self) {
        std::future::poll_fn(|cx| {
            let mut f = lock(&self.inner);
            if f.flushing == 0 {
                Poll::Ready(())
            } else {
                f.closer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let sent = std::mem::take(&mut lock(&self.inner).sent);
        for send in &sent {
            let _ = send.stopped().await;
        }
    }
}
