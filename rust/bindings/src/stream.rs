use crate::errors::{stream_error, to_py};
use crate::notifier::{Notifier, WakerSlot};
use crate::session::with_buffer;
use crate::sync::lock;
use bytes::Bytes;
use fastwt_core::{RecvStream, SendStream};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Largest chunk one `poll_read` returns when the caller sets no limit (and the most
/// `poll_read_until` takes out of core per step).
const DEFAULT_READ_CHUNK: usize = 64 * 1024;
/// Largest chunk one read takes out of core at once, whatever the caller asks for.
const MAX_READ: usize = 16 * 1024 * 1024;

/// Writes of at least this many bytes from a `bytes` object are queued without a copy.
/// Below it a copy is cheaper than the shared owner (an allocation, and a reference
/// dropped later through pyo3's pool because the I/O thread holds no GIL).
const ZERO_COPY_WRITE: usize = 4096;

/// Calls `send(from)` for the bytes from `from` on until all `len` are queued or the
/// buffer is full; hands the pump wake-ups to `notifier`. The count queued, or the
/// error when nothing was.
fn write_loop(
    notifier: &Notifier,
    len: usize,
    mut send: impl FnMut(usize) -> Poll<fastwt_core::Result<(usize, Option<Waker>)>>,
) -> PyResult<usize> {
    let mut written = 0;
    loop {
        // Data and FIN go to the pump together when everything fits: one wake-up.
        match send(written) {
            Poll::Ready(Ok((n, pump))) => {
                written += n;
                if let Some(pump) = pump {
                    notifier.defer(pump);
                }
            }
            Poll::Ready(Err(e)) if written == 0 => return Err(to_py(e)),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
        if written == len {
            break;
        }
    }
    Ok(written)
}

/// The sending half of a stream, written by polling from the event loop's thread.
#[pyclass(module = "fastwt._core", frozen)]
pub struct SendStreamHandle {
    inner: Mutex<(SendStream, WakerSlot)>,
    id: u64,
}

impl SendStreamHandle {
    pub fn new(s: SendStream) -> Self {
        let id = s.id();
        Self {
            inner: Mutex::new((s, WakerSlot::default())),
            id,
        }
    }
}

#[pymethods]
impl SendStreamHandle {
    #[getter]
    fn stream_id(&self) -> u64 {
        self.id
    }

    /// Writes from `data[offset:]` as much as flow control allows; returns the count.
    /// When it is less than what was left, the token is registered for more room. With
    /// `finish`, the stream is ended in the same call once everything is written. The
    /// I/O side is woken by the notifier's next `flush()`, which the caller must
    /// arrange (the event loop does it once per turn). A large `bytes` object is queued
    /// without a copy (the stream holds a reference to it until QUIC has it).
    #[pyo3(signature = (data, offset, notifier, token, finish=false))]
    fn poll_write(
        &self,
        data: &Bound<'_, PyAny>,
        offset: usize,
        notifier: &Notifier,
        token: u64,
        finish: bool,
    ) -> PyResult<usize> {
        // Everything that touches Python (a reference to the bytes, the buffer protocol)
        // happens before the stream's lock is taken, never under it.
        if let Ok(b) = data.cast::<PyBytes>() {
            let len = b.as_bytes().len();
            if len.saturating_sub(offset) >= ZERO_COPY_WRITE {
                let shared = Bytes::from_owner(PyBackedBytes::from(b.clone()));
                let rest = shared.slice(offset.min(len)..);
                let mut guard = lock(&self.inner);
                let (s, slot) = &mut *guard;
                let mut cx = Context::from_waker(notifier.waker_in(slot, token));
                return write_loop(notifier, rest.len(), |from| {
                    s.poll_send_bytes_deferred(&mut cx, &rest.slice(from..), finish)
                });
            }
        }
        with_buffer(data, |buf| {
            let buf = buf.get(offset..).unwrap_or(&[]);
            let mut guard = lock(&self.inner);
            let (s, slot) = &mut *guard;
            let mut cx = Context::from_waker(notifier.waker_in(slot, token));
            write_loop(notifier, buf.len(), |from| {
                s.poll_send_deferred(&mut cx, &buf[from..], finish)
            })
        })?
    }

    /// Ends the stream gracefully (does not wait for the peer's acknowledgement).
    fn finish(&self) -> PyResult<()> {
        lock(&self.inner).0.finish().map_err(to_py)
    }

    /// Abandons the stream with a WebTransport error code.
    fn reset(&self, code: u32) -> PyResult<()> {
        lock(&self.inner).0.reset(code).map_err(to_py)
    }

    #[getter]
    fn bytes_sent(&self) -> u64 {
        lock(&self.inner).0.bytes_sent()
    }
}

/// The receiving half of a stream, read by polling from the event loop's thread.
///
/// The stream's receive state lives here and in core only: core's [`RecvStream`] keeps
/// the read-ahead (chunks QUIC delivered), and this handle keeps `held`, the chunks it
/// took out of core that no read has returned yet (the start of a message that
/// `poll_read_exactly`/`poll_read_until` is still waiting to complete, or what followed
/// the message they returned). Python keeps no buffer of its own.
#[pyclass(module = "fastwt._core", frozen)]
pub struct RecvStreamHandle {
    inner: Mutex<(RecvInner, WakerSlot)>,
    id: u64,
}

/// The receive state: core's stream and what was taken out of it.
struct RecvInner {
    stream: RecvStream,
    /// Chunks taken out of `stream` and not yet returned (`Bytes` handles: no copy).
    held: VecDeque<Bytes>,
    /// The bytes in `held`.
    held_len: usize,
    /// How far into `held` `poll_read_until` already looked for its separator without
    /// finding it (reset whenever bytes leave `held`), so a long line is scanned once.
    searched: usize,
    /// A chunk list reused across reads (no allocation per read).
    scratch: Vec<Bytes>,
}

/// What one poll under the lock found; turned into Python objects after the lock is
/// released (allocating may run the garbage collector and finalizers, which may call
/// back into this stream).
enum Got {
    /// These chunks, joined, are the result (none: `b""`).
    Data(Vec<Bytes>),
    /// Nothing yet: the token is registered.
    Pending,
    /// The stream ended after `have` of the `want` bytes `poll_read_exactly` needs.
    Ended {
        have: usize,
        want: usize,
    },
    /// No separator within `poll_read_until`'s `max_size` bytes.
    Overrun {
        max_size: isize,
    },
    Failed(fastwt_core::Error),
}

impl RecvInner {
    /// Takes the first `n` held bytes (`n <= held_len`) as chunks into `out`.
    fn take(&mut self, n: usize, out: &mut Vec<Bytes>) {
        let mut left = n;
        while left > 0 {
            let Some(front) = self.held.front_mut() else {
                break;
            };
            // A whole chunk splits off as itself (no copy either way).
            let k = front.len().min(left);
            out.push(front.split_to(k));
            if front.is_empty() {
                self.held.pop_front();
            }
            left -= k;
        }
        self.held_len -= n - left;
        self.searched = 0;
    }

    /// Moves up to `want` more bytes from core into `held`: `Ok(true)` at the end of the
    /// stream, `Pending` (waker kept in `cx`) when core has nothing.
    fn fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<fastwt_core::Result<bool>> {
        let mut chunks = std::mem::take(&mut self.scratch);
        chunks.clear();
        let polled = self.stream.poll_read_chunks(cx, want, &mut chunks);
        for chunk in chunks.drain(..) {
            self.held_len += chunk.len();
            self.held.push_back(chunk);
        }
        self.scratch = chunks;
        polled
    }

    fn read_exactly(&mut self, cx: &mut Context<'_>, want: usize) -> Got {
        loop {
            if self.held_len >= want {
                let mut out = Vec::new();
                self.take(want, &mut out);
                return Got::Data(out);
            }
            // Ask core for no more than is missing: the rest stays in its read-ahead.
            let missing = (want - self.held_len).min(MAX_READ);
            match self.fill(cx, missing) {
                Poll::Ready(Ok(false)) => {}
                Poll::Ready(Ok(true)) => {
                    return Got::Ended {
                        have: self.held_len,
                        want,
                    }
                }
                Poll::Ready(Err(e)) => return Got::Failed(e),
                Poll::Pending => return Got::Pending,
            }
        }
    }

    fn read_until(&mut self, cx: &mut Context<'_>, separator: &[u8], max_size: isize) -> Got {
        // A negative `max_size` is no limit.
        let limit = usize::try_from(max_size).ok();
        loop {
            if let Some(at) = find(&self.held, self.searched, separator) {
                let end = at + separator.len();
                if limit.is_some_and(|l| end > l) {
                    return Got::Overrun { max_size };
                }
                let mut out = Vec::new();
                self.take(end, &mut out);
                return Got::Data(out);
            }
            if limit.is_some_and(|l| self.held_len > l) {
                return Got::Overrun { max_size };
            }
            // A separator may straddle what is held and what comes next.
            self.searched = self.held_len.saturating_sub(separator.len() - 1);
            match self.fill(cx, DEFAULT_READ_CHUNK) {
                Poll::Ready(Ok(false)) => {}
                Poll::Ready(Ok(true)) => {
                    // The end of the stream: what is left, without a separator.
                    let mut out = Vec::new();
                    self.take(self.held_len, &mut out);
                    return Got::Data(out);
                }
                Poll::Ready(Err(e)) => return Got::Failed(e),
                Poll::Pending => return Got::Pending,
            }
        }
    }
}

/// Where `separator` (not empty) first starts in the bytes of `chunks` read as one,
/// looking at starts from `from` on.
fn find(chunks: &VecDeque<Bytes>, from: usize, separator: &[u8]) -> Option<usize> {
    let (&first, rest) = separator.split_first()?;
    let mut base = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let mut at = from.saturating_sub(base);
        while at < chunk.len() {
            let Some(k) = chunk[at..].iter().position(|&b| b == first) else {
                break;
            };
            at += k;
            if continues_with(chunks, i, at + 1, rest) {
                return Some(base + at);
            }
            at += 1;
        }
        base += chunk.len();
    }
    None
}

/// Whether the bytes of `chunks` from chunk `i`, offset `at` (which may be at or past
/// its end) on begin with `want`.
fn continues_with(chunks: &VecDeque<Bytes>, i: usize, at: usize, mut want: &[u8]) -> bool {
    let mut at = at;
    for chunk in chunks.iter().skip(i) {
        if want.is_empty() {
            return true;
        }
        let have = chunk.get(at..).unwrap_or(&[]);
        let n = have.len().min(want.len());
        if have[..n] != want[..n] {
            return false;
        }
        want = &want[n..];
        at = 0;
    }
    want.is_empty()
}

/// One bytes object from `chunks` (one copy).
fn join<'py>(py: Python<'py>, chunks: &[Bytes]) -> PyResult<Bound<'py, PyBytes>> {
    if let [one] = chunks {
        return Ok(PyBytes::new(py, one));
    }
    let total = chunks.iter().map(Bytes::len).sum();
    PyBytes::new_with(py, total, |out| {
        let mut at = 0;
        for c in chunks {
            out[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
        Ok(())
    })
}

impl RecvStreamHandle {
    pub fn new(r: RecvStream) -> Self {
        let id = r.id();
        Self {
            inner: Mutex::new((
                RecvInner {
                    stream: r,
                    held: VecDeque::new(),
                    held_len: 0,
                    searched: 0,
                    scratch: Vec::new(),
                },
                WakerSlot::default(),
            )),
            id,
        }
    }

    /// Runs `poll` under the lock with a context whose waker pushes `token` to
    /// `notifier`, then makes its result a Python value outside the lock.
    fn poll_with<'py>(
        &self,
        py: Python<'py>,
        notifier: &Notifier,
        token: u64,
        poll: impl FnOnce(&mut RecvInner, &mut Context<'_>) -> Got,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let got = {
            let mut guard = lock(&self.inner);
            let (inner, slot) = &mut *guard;
            let mut cx = Context::from_waker(notifier.waker_in(slot, token));
            poll(inner, &mut cx)
        };
        match got {
            Got::Data(chunks) => join(py, &chunks).map(Some),
            Got::Pending => Ok(None),
            Got::Ended { have, want } => Err(stream_error(
                py,
                format!("stream ended after {have} of {want} bytes"),
            )),
            Got::Overrun { max_size } => Err(stream_error(
                py,
                format!("separator not found within max_size={max_size}"),
            )),
            Got::Failed(e) => Err(to_py(e)),
        }
    }
}

#[pymethods]
impl RecvStreamHandle {
    #[getter]
    fn stream_id(&self) -> u64 {
        self.id
    }

    /// Up to `max_size` bytes (any amount when negative), `b""` at the end of the stream,
    /// or `None` with the token registered when nothing is ready. Bytes held back by an
    /// earlier `poll_read_exactly`/`poll_read_until` come first (all of them when
    /// `max_size` is negative). One copy: from the received chunks straight into the new
    /// bytes object.
    fn poll_read<'py>(
        &self,
        py: Python<'py>,
        max_size: isize,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let want = usize::try_from(max_size).map_or(DEFAULT_READ_CHUNK, |n| n.min(MAX_READ));
        if want == 0 {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        let (polled, mut chunks) = {
            let mut guard = lock(&self.inner);
            let (inner, slot) = &mut *guard;
            let mut taken = std::mem::take(&mut inner.scratch);
            taken.clear();
            if inner.held_len > 0 {
                let n = if max_size < 0 {
                    inner.held_len
                } else {
                    want.min(inner.held_len)
                };
                inner.take(n, &mut taken);
                (Poll::Ready(Ok(false)), taken)
            } else {
                let mut cx = Context::from_waker(notifier.waker_in(slot, token));
                (
                    inner.stream.poll_read_chunks(&mut cx, want, &mut taken),
                    taken,
                )
            }
        };
        let result = match polled {
            Poll::Ready(Ok(true)) => Ok(Some(PyBytes::new(py, b""))),
            Poll::Ready(Ok(false)) => join(py, &chunks).map(Some),
            Poll::Ready(Err(e)) => Err(to_py(e)),
            Poll::Pending => Ok(None),
        };
        // Hand the chunk list back for the next read.
        chunks.clear();
        let mut guard = lock(&self.inner);
        if guard.0.scratch.capacity() == 0 {
            guard.0.scratch = chunks;
        }
        result
    }

    /// Exactly `size` bytes, or `None` with the token registered until they are all
    /// there. Raises `StreamError` ("stream ended after N of SIZE bytes") when the stream
    /// ends first; the bytes received so far stay readable.
    fn poll_read_exactly<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if size == 0 {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        self.poll_with(py, notifier, token, |inner, cx| {
            inner.read_exactly(cx, size)
        })
    }

    /// The bytes up to and including the first `separator` (what is left at the end of
    /// the stream, `b""` when nothing is), or `None` with the token registered. Raises
    /// `StreamError` ("separator not found within max_size=N") when the separator does
    /// not end within `max_size` bytes (no limit when negative); nothing is consumed
    /// then. An empty separator is a `ValueError`.
    fn poll_read_until<'py>(
        &self,
        py: Python<'py>,
        separator: &[u8],
        max_size: isize,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if separator.is_empty() {
            return Err(PyValueError::new_err("separator must not be empty"));
        }
        self.poll_with(py, notifier, token, |inner, cx| {
            inner.read_until(cx, separator, max_size)
        })
    }

    /// Asks the peer to stop sending, with a WebTransport error code; what was held back
    /// for a read is dropped with the rest.
    fn stop(&self, code: u32) -> PyResult<()> {
        let result = {
            let mut guard = lock(&self.inner);
            let inner = &mut guard.0;
            let result = inner.stream.stop(code);
            if result.is_ok() {
                inner.held.clear();
                inner.held_len = 0;
                inner.searched = 0;
            }
            result
        };
        result.map_err(to_py)
    }

    /// Whether the peer ended the stream and the handle took everything out of core
    /// (held bytes may still be readable: see `at_eof`).
    #[getter]
    fn is_finished(&self) -> bool {
        lock(&self.inner).0.stream.is_finished()
    }

    /// Whether the stream ended and every byte was read (nothing is held back).
    #[getter]
    fn at_eof(&self) -> bool {
        let guard = lock(&self.inner);
        guard.0.held_len == 0 && guard.0.stream.is_finished()
    }

    #[getter]
    fn bytes_received(&self) -> u64 {
        lock(&self.inner).0.stream.bytes_received()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> VecDeque<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn find_sees_a_separator_across_chunk_edges() {
        let held = chunks(&[b"ab-", b"-", b"E", b"ND--x"]);
        assert_eq!(find(&held, 0, b"--END--"), Some(2));
        assert_eq!(find(&held, 0, b"x"), Some(9));
        assert_eq!(find(&held, 3, b"--END--"), None);
        assert_eq!(find(&held, 0, b"--ENDx"), None);
        // A separator that would run past the last chunk is not there yet.
        assert_eq!(find(&chunks(&[b"ab", b"--EN"]), 0, b"--END--"), None);
        assert_eq!(find(&chunks(&[]), 0, b"\n"), None);
    }

    #[test]
    fn find_starts_where_it_is_told() {
        let held = chunks(&[b"a\nb", b"\nc"]);
        assert_eq!(find(&held, 0, b"\n"), Some(1));
        assert_eq!(find(&held, 2, b"\n"), Some(3));
        assert_eq!(find(&held, 4, b"\n"), None);
    }
}
