use crate::error::{CloseInfo, Error, Result};
use crate::h3;
use std::pin::Pin;
use std::task::{Context, Poll};

fn connection_lost(e: quinn::ConnectionError) -> Error {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => Error::SessionClosed(CloseInfo {
            code: 0,
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
            local: false,
        }),
        quinn::ConnectionError::LocallyClosed => Error::SessionClosed(CloseInfo {
            code: 0,
            reason: String::new(),
            local: true,
        }),
        other => Error::Connection(other.to_string()),
    }
}

fn map_write_error(e: quinn::WriteError) -> Error {
    match e {
        quinn::WriteError::Stopped(code) => {
            Error::StreamStopped(h3::h3_code_to_wt(code.into_inner()))
        }
        quinn::WriteError::ConnectionLost(e) => connection_lost(e),
        quinn::WriteError::ClosedStream => Error::StreamClosed,
        quinn::WriteError::ZeroRttRejected => Error::Connection("0-RTT rejected".into()),
    }
}

fn map_read_error(e: quinn::ReadError) -> Error {
    match e {
        quinn::ReadError::Reset(code) => Error::StreamReset(h3::h3_code_to_wt(code.into_inner())),
        quinn::ReadError::ConnectionLost(e) => connection_lost(e),
        quinn::ReadError::ClosedStream => Error::StreamClosed,
        quinn::ReadError::IllegalOrderedRead => Error::Protocol("unordered read".into()),
        quinn::ReadError::ZeroRttRejected => Error::Connection("0-RTT rejected".into()),
    }
}

/// The sending half of a WebTransport stream. Its WebTransport stream header has already
/// been written (for locally opened streams) or read (for peer-opened ones).
#[derive(Debug)]
pub struct SendStream {
    inner: quinn::SendStream,
    bytes_sent: u64,
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream) -> Self {
        Self {
            inner,
            bytes_sent: 0,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        quinn::VarInt::from(self.inner.id()).into_inner()
    }

    /// Writes as much of `buf` as flow control allows now; `Pending` registers the waker.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.bytes_sent += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(map_write_error(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        self.inner.write_all(buf).await.map_err(map_write_error)?;
        self.bytes_sent += buf.len() as u64;
        Ok(())
    }

    /// Ends the stream gracefully without waiting for the peer's acknowledgement (so a
    /// request/response exchange does not stall on delayed ACKs).
    pub fn finish(&mut self) -> Result<()> {
        self.inner.finish().map_err(|_| Error::StreamClosed)
    }

    /// Abandons the stream with a WebTransport error code.
    pub fn reset(&mut self, code: u32) -> Result<()> {
        let h3 =
            quinn::VarInt::from_u64(h3::wt_code_to_h3(code)).map_err(|_| Error::StreamClosed)?;
        self.inner.reset(h3).map_err(|_| Error::StreamClosed)
    }

    /// Bytes written so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

/// The receiving half of a WebTransport stream.
#[derive(Debug)]
pub struct RecvStream {
    inner: quinn::RecvStream,
    bytes_received: u64,
    finished: bool,
}

impl RecvStream {
    pub(crate) fn new(inner: quinn::RecvStream) -> Self {
        Self {
            inner,
            bytes_received: 0,
            finished: false,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        quinn::VarInt::from(self.inner.id()).into_inner()
    }

    /// Reads what is available into `buf`: `Ok(0)` means the peer finished the stream.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize>> {
        if self.finished {
            return Poll::Ready(Ok(0));
        }
        match self.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(0)) if !buf.is_empty() => {
                self.finished = true;
                Poll::Ready(Ok(0))
            }
            Poll::Ready(Ok(n)) => {
                self.bytes_received += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(map_read_error(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads into `buf`; `Ok(0)` at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Asks the peer to stop sending, with a WebTransport error code.
    pub fn stop(&mut self, code: u32) -> Result<()> {
        let h3 =
            quinn::VarInt::from_u64(h3::wt_code_to_h3(code)).map_err(|_| Error::StreamClosed)?;
        self.inner.stop(h3).map_err(|_| Error::StreamClosed)
    }

    /// Whether the peer finished the stream and everything was read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes read so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }
}

/// A stream's type and, for WebTransport streams, its session id.
pub(crate) type StreamHeader = (u64, Option<u64>);

/// Incremental reader of a stream's preamble: a type varint and, for WebTransport
/// streams, the session id varint. It reads exactly those bytes (never payload), and can
/// be polled first with a no-op waker (the header usually arrives with the first data)
/// and then, if incomplete, from a task.
#[derive(Debug, Default)]
pub(crate) struct Preamble {
    buf: [u8; 16],
    filled: usize,
    start: usize,
    want: usize,
    kind: Option<u64>,
}

impl Preamble {
    pub(crate) fn new() -> Self {
        Self {
            want: 1,
            ..Self::default()
        }
    }

    /// `Ready(Ok(Some((kind, id))))` once complete (`id` only when `needs_id(kind)`),
    /// `Ready(Ok(None))` if the stream ended first.
    pub(crate) fn poll(
        &mut self,
        recv: &mut quinn::RecvStream,
        cx: &mut Context<'_>,
        needs_id: impl Fn(u64) -> bool,
    ) -> Poll<Result<Option<StreamHeader>>> {
        loop {
            while self.filled < self.want {
                match recv.poll_read(cx, &mut self.buf[self.filled..self.want]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                    Poll::Ready(Ok(n)) => self.filled += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(map_read_error(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let len = 1usize << (self.buf[self.start] >> 6);
            if self.filled < self.start + len {
                self.want = self.start + len;
                continue;
            }
            let Some((value, _)) = h3::get_varint(&self.buf[self.start..self.filled]) else {
                return Poll::Ready(Err(Error::Protocol("bad stream header".into())));
            };
            match self.kind {
                None if needs_id(value) => {
                    self.kind = Some(value);
                    self.start = self.filled;
                    self.want = self.filled + 1;
                }
                None => return Poll::Ready(Ok(Some((value, None)))),
                Some(kind) => return Poll::Ready(Ok(Some((kind, Some(value))))),
            }
        }
    }
}
