use crate::runtime;
use fastwt_core::Pump;
use pyo3::prelude::*;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

pub(crate) struct Inner {
    ready: Mutex<Vec<u64>>,
    reader: UnixStream,
    writer: UnixStream,
}

impl Inner {
    /// Called on any thread: queue the token and, if the batch was empty, wake the loop
    /// with one byte. Later tokens of the same batch cost only a lock and a push.
    fn notify(&self, token: u64) {
        runtime::spin_hint();
        let first = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            let first = ready.is_empty();
            ready.push(token);
            first
        };
        if first {
            // A full pipe already guarantees a pending wake-up, so WouldBlock is fine.
            let _ = (&self.writer).write(&[1u8]);
        }
    }
}

struct TokenWaker {
    inner: Arc<Inner>,
    token: u64,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.inner.notify(self.token);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.inner.notify(self.token);
    }
}

/// One per Python event loop: tokio threads push ready tokens here; the loop watches
/// `fileno()` and calls `drain()` to collect every token of the batch at once.
///
/// It also holds the I/O-side work the loop's own calls deferred (pump wake-ups after
/// stream writes, pumps of newly opened streams): `flush()` hands it all to the I/O
/// thread at once per loop turn, so the thread wakes once for a turn's writes and
/// opens, and a write followed by its FIN leaves as one packet.
#[pyclass(module = "fastwt._core", frozen)]
pub struct Notifier {
    inner: Arc<Inner>,
    deferred: Mutex<Deferred>,
}

#[derive(Default)]
struct Deferred {
    wakers: Vec<Waker>,
    pumps: Vec<Pump>,
}

impl Notifier {
    fn deferred(&self) -> std::sync::MutexGuard<'_, Deferred> {
        self.deferred.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `waker` until the next `flush()` (or `drain()`, or the notifier's end).
    pub(crate) fn defer(&self, waker: Waker) {
        let mut deferred = self.deferred();
        if !deferred.wakers.iter().any(|w| w.will_wake(&waker)) {
            deferred.wakers.push(waker);
        }
    }

    /// Keeps new streams' pumps until the next `flush()`.
    pub(crate) fn defer_pumps(&self, pumps: &mut Vec<Pump>) {
        self.deferred().pumps.append(pumps);
    }

    fn wake_deferred(&self) {
        let Deferred { wakers, pumps } = std::mem::take(&mut *self.deferred());
        if pumps.is_empty() && wakers.len() <= 1 {
            for w in wakers {
                w.wake();
            }
            return;
        }
        // One hand-off for the batch: on the I/O thread, spawning the pumps and waking
        // tasks are local queue pushes instead of one thread wake-up each.
        match runtime::get() {
            Ok(rt) => {
                rt.spawn(async move {
                    for pump in pumps {
                        tokio::spawn(pump);
                    }
                    for w in wakers {
                        w.wake();
                    }
                    runtime::spin_hint();
                });
            }
            // No runtime, no streams: nothing could have been deferred.
            Err(_) => wakers.into_iter().for_each(Waker::wake),
        }
    }

    /// A `Waker` that reports `token` to this notifier.
    pub(crate) fn waker(&self, token: u64) -> Waker {
        Waker::from(Arc::new(TokenWaker {
            inner: self.inner.clone(),
            token,
        }))
    }
}

#[pymethods]
impl Notifier {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ready: Mutex::new(Vec::new()),
                reader,
                writer,
            }),
            deferred: Mutex::new(Deferred::default()),
        })
    }

    /// The file descriptor that becomes readable when tokens are ready.
    fn fileno(&self) -> i32 {
        self.inner.reader.as_raw_fd()
    }

    /// Takes every ready token. Clears the wake-up byte first, so a token pushed after
    /// the swap writes a new byte and is not lost.
    fn drain(&self) -> Vec<u64> {
        self.wake_deferred();
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.inner.reader).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        std::mem::take(&mut *self.inner.ready.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Fires the wake-ups deferred since the last flush (the loop calls it once per turn
    /// in which it wrote).
    fn flush(&self) {
        self.wake_deferred();
    }

    /// Waits up to `micros` for a token without sleeping (the GIL released, the core
    /// yielded between checks); true when one is ready. The loop calls it when it has
    /// nothing else to do and a reply is expected, instead of sleeping in its selector.
    fn spin_wait(&self, py: Python<'_>, micros: u64) -> bool {
        let ready = || {
            !self
                .inner
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        };
        if ready() {
            return true;
        }
        py.detach(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_micros(micros);
            while std::time::Instant::now() < until {
                std::thread::yield_now();
                if ready() {
                    return true;
                }
            }
            false
        })
    }

    /// Reports `token` as ready from Python (used to wake a waiter without Rust work).
    fn notify(&self, token: u64) {
        self.inner.notify(token);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // Data written in the loop's last turn still goes out.
        self.wake_deferred();
    }
}
