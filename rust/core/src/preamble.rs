use crate::error::{Error, Result};
use crate::h3;
use crate::stream::map_read_error;
use std::task::{Context, Poll};

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
