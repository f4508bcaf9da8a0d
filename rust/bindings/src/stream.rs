use crate::errors::to_py;
use crate::notifier::{Notifier, WakerSlot};
use crate::session::with_buffer;
use crate::sync::lock;
use bytes::Bytes;
use fastwt_core::{RecvStream, SendStream};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Largest chunk one `poll_read` returns when the caller sets no limit.
const DEFAULT_READ_CHUNK: usize = 64 * 1024;

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

/// The receiving half of a stream.
#[pyclass(module = "fastwt._core", frozen)]
pub struct RecvStreamHandle {
    inner: Mutex<(RecvStream, Vec<bytes::Bytes>, WakerSlot)>,
    id: u64,
}

impl RecvStreamHandle {
    pub fn new(r: RecvStream) -> Self {
        let id = r.id();
        Self {
            inner: Mutex::new((r, Vec::new(), WakerSlot::default())),
            id,
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
    /// or `None` with the token registered when nothing is ready. One copy: from the
    /// received chunks straight into the new bytes object.
    fn poll_read<'py>(
        &self,
        py: Python<'py>,
        max_size: isize,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let want = if max_size < 0 {
            DEFAULT_READ_CHUNK
        } else {
            (max_size as usize).min(16 * 1024 * 1024)
        };
        if want == 0 {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        let (polled, mut chunks) = {
            let mut guard = lock(&self.inner);
            let (stream, chunks, slot) = &mut *guard;
            let mut cx = Context::from_waker(notifier.waker_in(slot, token));
            let mut taken = std::mem::take(chunks);
            taken.clear();
            (stream.poll_read_chunks(&mut cx, want, &mut taken), taken)
        };
        // The bytes object is made after the lock is released: allocating may run the
        // garbage collector and finalizers, which may call back into this stream.
        let result = match polled {
            Poll::Ready(Ok(true)) => Ok(Some(PyBytes::new(py, b""))),
            Poll::Ready(Ok(false)) => {
                if let [one] = chunks.as_slice() {
                    Ok(Some(PyBytes::new(py, one)))
                } else {
                    let total = chunks.iter().map(|c| c.len()).sum();
                    PyBytes::new_with(py, total, |out| {
                        let mut at = 0;
                        for c in chunks.iter() {
                            out[at..at + c.len()].copy_from_slice(c);
                            at += c.len();
                        }
                        Ok(())
                    })
                    .map(Some)
                }
            }
            Poll::Ready(Err(e)) => Err(to_py(e)),
            Poll::Pending => Ok(None),
        };
        // Hand the chunk list back for the next read (no allocation per read).
        chunks.clear();
        let mut guard = lock(&self.inner);
        if guard.1.capacity() == 0 {
            guard.1 = chunks;
        }
        result
    }

    /// Asks the peer to stop sending, with a WebTransport error code.
    fn stop(&self, code: u32) -> PyResult<()> {
        lock(&self.inner).0.stop(code).map_err(to_py)
    }

    #[getter]
    fn is_finished(&self) -> bool {
        lock(&self.inner).0.is_finished()
    }

    #[getter]
    fn bytes_received(&self) -> u64 {
        lock(&self.inner).0.bytes_received()
    }
}
