use crate::runtime;
use crate::spin::{Governor, Site};
use crate::sync::lock;
use fastwt_core::StreamTask;
use pyo3::prelude::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// The wake-up pipe: a connected pair of non-blocking stream sockets, the read end
/// watched by the event loop. The only platform-specific part of the notifier.
#[cfg(unix)]
mod pipe {
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;

    pub(crate) type End = UnixStream;

    /// `(reader, writer)`, both non-blocking.
    pub(crate) fn pair() -> std::io::Result<(End, End)> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok((reader, writer))
    }

    /// A file descriptor.
    pub(crate) type Raw = i32;

    /// The descriptor Python watches.
    pub(crate) fn raw(end: &End) -> Raw {
        end.as_raw_fd()
    }
}

/// Windows has no socketpair: a loopback TCP connection stands in (what Python's own
/// `socket.socketpair` does there). The loop watches it as a socket (`select`, trio).
#[cfg(windows)]
mod pipe {
    use std::io::{Error, ErrorKind};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::os::windows::io::AsRawSocket;

    pub(crate) type End = TcpStream;

    /// `(reader, writer)`, both non-blocking, Nagle off (each wake-up is one byte).
    pub(crate) fn pair() -> std::io::Result<(End, End)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let writer = TcpStream::connect(listener.local_addr()?)?;
        let (reader, peer) = listener.accept()?;
        // Another local process could have connected first: accept only our own socket.
        if peer != writer.local_addr()? {
            return Err(Error::new(
                ErrorKind::ConnectionRefused,
                "notifier pipe: an unexpected peer connected to the loopback listener",
            ));
        }
        for end in [&reader, &writer] {
            end.set_nonblocking(true)?;
            end.set_nodelay(true)?;
        }
        Ok((reader, writer))
    }

    /// A `SOCKET` handle (`RawSocket`; what Python's `socket.fileno()` returns there).
    pub(crate) type Raw = u64;

    /// The descriptor Python watches.
    pub(crate) fn raw(end: &End) -> Raw {
        end.as_raw_socket()
    }
}

pub(crate) struct Inner {
    ready: Mutex<Vec<u64>>,
    reader: pipe::End,
    writer: pipe::End,
    /// The loop's thread is in `spin_wait`: it sees new tokens without the pipe byte.
    spinning: AtomicBool,
    /// A byte may be in the pipe (written since the last `drain` read it).
    signaled: AtomicBool,
    /// The loop's spin site: how long its waits for a token last (see `idle_spin`).
    pub(crate) governor: Governor,
    /// The loop's thread drives the runtime now (`baton::LoopDriver::drive`): a token
    /// wakes that drive through `woken` instead of the pipe.
    pub(crate) driving: AtomicBool,
    pub(crate) woken: tokio::sync::Notify,
}

impl Inner {
    /// Called on any thread: queue the token and, if the batch was empty, wake the loop
    /// with one byte. Later tokens of the same batch cost only a lock and a push, and so
    /// does the first one while the loop's thread spins (it checks the queue itself).
    fn notify(&self, token: u64) {
        runtime::spin_hint();
        let first = {
            let mut ready = self.ready();
            let first = ready.is_empty();
            ready.push(token);
            first
        };
        if first {
            self.governor.end();
        }
        // SeqCst pairs with the end of a drive: either it still drives and is woken here,
        // or it has stopped and finds the token in the queue when it checks after.
        if self.driving.load(Ordering::SeqCst) {
            self.woken.notify_one();
            return;
        }
        // SeqCst pairs with `spin_wait`: either it still spins and will find the token
        // (it re-checks the queue after clearing the flag), or this sees it stopped.
        if first && !self.spinning.load(Ordering::SeqCst) {
            self.signaled.store(true, Ordering::SeqCst);
            // A full pipe already guarantees a pending wake-up, so WouldBlock is fine.
            let _ = (&self.writer).write(&[1u8]);
        }
    }

    pub(crate) fn ready(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        lock(&self.ready)
    }

    /// Makes the reader end readable (one byte in the pipe).
    pub(crate) fn poke(&self) {
        self.signaled.store(true, Ordering::SeqCst);
        // A full pipe is readable already, so WouldBlock is fine.
        let _ = (&self.writer).write(&[1u8]);
    }

    /// Empties the pipe (a non-blocking read until it would block).
    fn clear_pipe(&self) {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.reader).read(&mut buf) {
            if n < buf.len() {
                break;
            }
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
    pumps: Vec<StreamTask>,
}

impl Notifier {
    fn deferred(&self) -> std::sync::MutexGuard<'_, Deferred> {
        lock(&self.deferred)
    }

    /// Keeps `waker` until the next `flush()` (or `drain()`, or the notifier's end).
    pub(crate) fn defer(&self, waker: Waker) {
        let mut deferred = self.deferred();
        if !deferred.wakers.iter().any(|w| w.will_wake(&waker)) {
            deferred.wakers.push(waker);
        }
    }

    /// Keeps new streams' pumps until the next `flush()`.
    pub(crate) fn defer_pumps(&self, pumps: &mut Vec<StreamTask>) {
        self.deferred().pumps.append(pumps);
    }

    /// Wakes the tasks of the writes deferred since the last flush (on a thread that
    /// drives the runtime, as local queue pushes).
    pub(crate) fn wake_deferred(&self) {
        let Deferred { wakers, pumps } = std::mem::take(&mut *self.deferred());
        if pumps.is_empty() && wakers.len() <= 1 {
            for w in wakers {
                w.wake();
                runtime::spin_hint();
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

    /// The shared state: the baton pokes this loop and wakes its drives through it (see
    /// [`crate::baton`]).
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// A `Waker` that reports `token` to this notifier.
    pub(crate) fn waker(&self, token: u64) -> Waker {
        Waker::from(Arc::new(TokenWaker {
            inner: self.inner.clone(),
            token,
        }))
    }

    /// The waker for `token` kept in `slot`, made anew only when the loop or the token
    /// changed since the slot's last poll.
    pub(crate) fn waker_in<'s>(&self, slot: &'s mut WakerSlot, token: u64) -> &'s Waker {
        // The slot's waker holds an `Arc` of its `Inner`, so that address cannot be
        // reused by another notifier while the slot remembers it.
        let key = (Arc::as_ptr(&self.inner) as usize, token);
        if slot.0.as_ref().is_some_and(|(k, _)| *k != key) {
            slot.0 = None;
        }
        &slot.0.get_or_insert_with(|| (key, self.waker(token))).1
    }
}

/// One polling site's waker (a stream half's reads, a session's datagrams...), kept
/// between polls: they come from one loop with one token, and then cost no allocation.
#[derive(Default)]
pub(crate) struct WakerSlot(Option<((usize, u64), Waker)>);

#[pymethods]
impl Notifier {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = pipe::pair()?;
        Ok(Self {
            inner: Arc::new(Inner {
                ready: Mutex::new(Vec::new()),
                reader,
                writer,
                spinning: AtomicBool::new(false),
                signaled: AtomicBool::new(false),
                governor: Governor::new(Site::EventLoop, runtime::spin_window()),
                driving: AtomicBool::new(false),
                woken: tokio::sync::Notify::new(),
            }),
            deferred: Mutex::new(Deferred::default()),
        })
    }

    /// The descriptor (a socket handle on Windows) that becomes readable when tokens
    /// are ready.
    fn fileno(&self) -> pipe::Raw {
        pipe::raw(&self.inner.reader)
    }

    /// Takes every ready token. Clears the wake-up byte first, so a token pushed after
    /// the swap writes a new byte and is not lost. With `read_pipe=False` (after a
    /// successful `spin_wait`) the pipe is read only when a byte may be in it; a byte
    /// written late stays for the selector's next (unconditional) drain.
    #[pyo3(signature = (read_pipe=true))]
    fn drain(&self, read_pipe: bool) -> Vec<u64> {
        self.wake_deferred();
        let inner = &*self.inner;
        if inner.signaled.swap(false, Ordering::SeqCst) || read_pipe {
            inner.clear_pipe();
        }
        std::mem::take(&mut *inner.ready())
    }

    /// Fires the wake-ups deferred since the last flush (the loop calls it once per turn
    /// in which it wrote).
    fn flush(&self) {
        self.wake_deferred();
    }

    /// Whether this loop's thread is in `spin_wait` now: a token notified meanwhile costs
    /// no pipe write (diagnostics, and the tests that check it).
    #[getter]
    fn spinning(&self) -> bool {
        self.inner.spinning.load(Ordering::SeqCst)
    }

    /// Waits up to `micros` for a token without sleeping (the GIL released, the core
    /// yielded between checks); true when one is ready. The loop calls it when it has
    /// nothing else to do and a reply is expected, instead of sleeping in its selector.
    fn spin_wait(&self, py: Python<'_>, micros: u64) -> bool {
        let inner = &*self.inner;
        if !inner.ready().is_empty() {
            return true;
        }
        Self::spin(inner, py, micros)
    }

    /// The loop's wait for a reply where it would sleep: `spin_wait` if this loop's recent
    /// waits for a token were short (see `fastwt`'s docs/bridge.md), else nothing. Either
    /// way the wait is measured, from now to the next token. `None` when tokens are
    /// ready, else the seconds it spun (0.0 when it did not).
    fn idle_spin(&self, py: Python<'_>, micros: u64) -> Option<f64> {
        let inner = &*self.inner;
        if !inner.ready().is_empty() {
            return None;
        }
        inner.governor.begin();
        if !inner.governor.should_spin() {
            inner.governor.skipped();
            return Some(0.0);
        }
        let start = std::time::Instant::now();
        let found = Self::spin(inner, py, micros);
        inner.governor.spun(found);
        (!found).then(|| start.elapsed().as_secs_f64())
    }

    /// This loop's spin counters: spins started, hits (a token came within the window),
    /// skips (chances passed up), waits measured, mean wait (µs), whether it spins now.
    fn spin_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        self.inner.governor.snapshot().to_dict(py)
    }

    /// Reports `token` as ready from Python (used to wake a waiter without Rust work).
    fn notify(&self, token: u64) {
        self.inner.notify(token);
    }

    /// Makes `fileno()` readable (one byte in the pipe): after a successful `spin_wait`
    /// on a loop that can only be woken through the descriptor (trio), its tokens came
    /// without one.
    fn poke(&self) {
        self.inner.poke();
    }
}

impl Notifier {
    /// Spins up to `micros` (GIL released) until a token is ready; true when one is.
    fn spin(inner: &Inner, py: Python<'_>, micros: u64) -> bool {
        let ready = || !inner.ready().is_empty();
        py.detach(|| {
            inner.spinning.store(true, Ordering::SeqCst);
            let until = std::time::Instant::now() + std::time::Duration::from_micros(micros);
            while std::time::Instant::now() < until {
                std::thread::yield_now();
                if ready() {
                    break;
                }
            }
            inner.spinning.store(false, Ordering::SeqCst);
            // A token queued while the flag was up wrote no byte: it must be seen here.
            ready()
        })
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // Data written in the loop's last turn still goes out.
        self.wake_deferred();
    }
}
