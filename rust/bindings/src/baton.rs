//! Who drives the single-thread runtime: an event loop's own thread while it waits, or
//! the I/O thread.
//!
//! At moderate load a request that crosses threads costs two wake-ups (the I/O thread
//! for the packet, the loop's thread for the handler) and two more for the reply. Here
//! the loop's thread, where it would sleep in its selector, runs the runtime itself
//! ([`LoopDriver::drive`]: tokio's `block_on` until the selector has events, its timeout
//! comes, or the I/O thread wants the runtime back). A packet then wakes one thread,
//! which runs quinn, the session driver and the handler, and the reply leaves from the
//! same thread at its next wait: one wake-up per request, as a native server has.
//!
//! Only one thread can drive a current-thread runtime at a time: the *baton*. The I/O
//! thread holds it whenever the loops cannot drive well (see [`io_thread`]):
//! - a loop has not taken it for a [`TICK`] (a handler busy for a while, or no loop
//!   waiting at all): packets must not wait for Python;
//! - the loop's thread is busy most of the time (saturated load: the two threads then
//!   share the work on two cores, as before this module existed).
//!
//! It gives the baton back once the loops are mostly idle while it holds it, and wakes
//! them so that one takes it at its next wait. `FASTWT_INLINE_IO=0` turns this off (the
//! I/O thread always drives), as do `FASTWT_IO_THREADS` > 1 and platforms without
//! pollable selectors.

use crate::notifier;
use crate::sync::lock;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the I/O thread looks at who should drive.
pub(crate) const TICK: Duration = Duration::from_millis(1);
/// The longest tick while the loops keep up with their work.
const MAX_TICK: Duration = Duration::from_millis(8);
/// The longest tick while the loops are idle at nearly every sample (a server with no
/// traffic to speak of): an idle server's I/O thread then wakes ~16 times a second.
const IDLE_TICK: Duration = Duration::from_millis(64);
/// The longest a loop drives before it returns to Python, which runs signal handlers
/// (Ctrl-C) only then: tokio retries an interrupted wait.
const DRIVE_CAP: Duration = Duration::from_millis(50);
/// The I/O thread takes the baton when the loops were idle less than this share of the
/// time while one drove (busy with handlers and with quinn's work: two threads then do
/// more, and spin for each other's replies).
const TAKE_BELOW: f64 = 0.35;
/// ... and only while more than this share of their recent drives found work already
/// waiting (packets came in while the loop ran handlers: a second thread can take them
/// meanwhile; about 0.2-0.45 at 4 to 32 requests in flight, 0.004 at one). A loop whose
/// every drive waits for the next packet (one request in flight: the peer answers only
/// once the reply left) would gain nothing from the I/O thread but a hand-off each way.
const TAKE_WAITING_ABOVE: f64 = 0.2;
/// The I/O thread gives the baton back early when the loops' idle share exceeds its own
/// busy share by this much (the loop's thread can take the I/O work and still be idle
/// half the time).
const GIVE_MARGIN: f64 = 0.5;
/// How long the I/O thread keeps the baton after taking it, at least; quadrupled (up to
/// [`MAX_HOLD`]) each time it had to take it back within four holds of giving it, so
/// that a load the loop cannot carry alone does not flip the driver every few
/// milliseconds, while a load that changed gets its trial within one hold.
const MIN_HOLD: Duration = Duration::from_millis(100);
const MAX_HOLD: Duration = Duration::from_secs(30);
/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.125;

const FREE: u8 = 0;
const LOOP: u8 = 1;
const IO: u8 = 2;

struct Baton {
    state: AtomicU8,
    /// `now_us()` when a loop last gave the baton up.
    freed_at: AtomicU64,
    /// Microseconds the runtime spent parked on loops' threads, and when it parked (0
    /// while it is not: a loop whose runtime is parked waits with nothing to do).
    loop_parked_us: AtomicU64,
    loop_parked_at: AtomicU64,
    /// The share of recent drives that found work waiting, in thousandths.
    work_waiting_permille: AtomicU64,
    /// Loops asleep in their own selector while the I/O thread drives.
    waiting_loops: AtomicU32,
    /// Microseconds the I/O thread spent parked while it drove, and when it parked.
    io_parked_us: AtomicU64,
    io_parked_at: AtomicU64,
    /// The I/O thread wants the baton: a driving loop returns, and no loop takes it.
    yield_request: AtomicBool,
    /// Wakes a driving loop for `yield_request` (a permit is kept if none waits).
    yield_notify: Notify,
    /// The loops that can drive, to wake when the baton is free for them again.
    loops: Mutex<Vec<Weak<notifier::Inner>>>,
    /// A loop registered: the I/O thread, driving because there was none, looks again.
    loops_changed: Notify,
    loop_drives: AtomicU64,
    takeovers: AtomicU64,
    /// The takeovers for a busy loop with work waiting (the others: for a loop that left
    /// the runtime unattended).
    load_takeovers: AtomicU64,
    handbacks: AtomicU64,
    /// The last moving averages of [`Load`], in thousandths (for `io_driver_stats`).
    loop_idle_permille: AtomicU64,
    io_busy_permille: AtomicU64,
}

fn permille(share: f64) -> u64 {
    // A share is in [0, 1]: the product fits easily.
    (share.clamp(0.0, 1.0) * 1000.0).round() as u64
}

/// A drive found work waiting when its busy-poll hit at the first turn, or, without
/// one, when the runtime slept less than this on its thread (an epoll wait that returned
/// at once: a sleep and wake-up through the kernel takes longer on any host).
const WAITING_PARK: Duration = Duration::from_micros(10);

/// Counts one loop drive: whether it found work waiting (see [`WAITING_PARK`]).
fn record_drive(found_waiting: bool) {
    let old = BATON.work_waiting_permille.load(Ordering::Relaxed) as f64 / 1000.0;
    let new = old + ALPHA * (f64::from(u8::from(found_waiting)) - old);
    BATON
        .work_waiting_permille
        .store(permille(new), Ordering::Relaxed);
}

fn work_waiting() -> f64 {
    BATON.work_waiting_permille.load(Ordering::Relaxed) as f64 / 1000.0
}

static BATON: Baton = Baton {
    state: AtomicU8::new(FREE),
    freed_at: AtomicU64::new(0),
    loop_parked_us: AtomicU64::new(0),
    loop_parked_at: AtomicU64::new(0),
    work_waiting_permille: AtomicU64::new(0),
    waiting_loops: AtomicU32::new(0),
    io_parked_us: AtomicU64::new(0),
    io_parked_at: AtomicU64::new(0),
    yield_request: AtomicBool::new(false),
    yield_notify: Notify::const_new(),
    loops: Mutex::new(Vec::new()),
    loops_changed: Notify::const_new(),
    loop_drives: AtomicU64::new(0),
    takeovers: AtomicU64::new(0),
    load_takeovers: AtomicU64::new(0),
    handbacks: AtomicU64::new(0),
    loop_idle_permille: AtomicU64::new(1000),
    io_busy_permille: AtomicU64::new(0),
};

fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Whether loops may drive (`FASTWT_INLINE_IO`, default on; only with the one I/O
/// thread's current-thread runtime, on Unix, where selectors have a pollable fd).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let asked = std::env::var("FASTWT_INLINE_IO")
            .map(|v| !matches!(v.trim(), "0" | "false" | "off" | "no"))
            .unwrap_or(true);
        asked && cfg!(unix) && crate::runtime::threads() == 1
    })
}

/// Whether the I/O thread drives now (its spinner only spins then: on a loop's thread
/// a spin would only delay the loop).
pub(crate) fn io_drives() -> bool {
    !enabled() || BATON.state.load(Ordering::Acquire) == IO
}

/// The runtime's park hook (`parked`) and unpark hook (`!parked`), on whichever thread
/// drives it.
pub(crate) fn on_park(parked: bool) {
    match BATON.state.load(Ordering::Acquire) {
        LOOP => time_park(parked, &BATON.loop_parked_at, &BATON.loop_parked_us),
        IO => time_park(parked, &BATON.io_parked_at, &BATON.io_parked_us),
        _ => {}
    }
}

/// Adds a park's length to `total_us` when it ends (`at`: when it began, 0 when none).
fn time_park(parked: bool, at: &AtomicU64, total_us: &AtomicU64) {
    if parked {
        // Never 0, which means "not parked".
        at.store(now_us().max(1), Ordering::Release);
    } else {
        let began = at.swap(0, Ordering::AcqRel);
        if began != 0 {
            total_us.fetch_add(now_us().saturating_sub(began), Ordering::AcqRel);
        }
    }
}

fn live_loops() -> usize {
    let mut loops = lock(&BATON.loops);
    loops.retain(|l| l.strong_count() > 0);
    loops.len()
}

/// Wakes every loop that can drive (one byte in its notifier's pipe), so that one takes
/// the baton at its next wait.
fn poke_loops() {
    let loops: Vec<_> = lock(&BATON.loops)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for l in loops {
        l.poke();
    }
}

/// The loops' idle share and the I/O thread's busy share, as moving averages.
struct Load {
    loop_idle: f64,
    io_busy: f64,
    io_parked_us: u64,
    at: u64,
}

impl Load {
    fn new() -> Self {
        Self {
            loop_idle: 1.0,
            io_busy: 0.0,
            io_parked_us: BATON.io_parked_us.load(Ordering::Acquire),
            at: now_us(),
        }
    }

    /// One sample of the loops (are they idle right now, asleep in a selector or with the
    /// runtime parked on their thread: the sampler is another thread, so this is fair).
    fn sample_loops(&mut self) {
        let idle = BATON.waiting_loops.load(Ordering::Acquire) > 0
            || (BATON.state.load(Ordering::Acquire) == LOOP
                && BATON.loop_parked_at.load(Ordering::Acquire) != 0);
        self.loop_idle += ALPHA * (f64::from(u8::from(idle)) - self.loop_idle);
        BATON
            .loop_idle_permille
            .store(permille(self.loop_idle), Ordering::Relaxed);
    }

    /// The I/O thread's busy share since the last call (it samples itself, so by time:
    /// the park hook's sums, an ongoing park included).
    fn sample_io(&mut self) {
        let now = now_us();
        let mut parked = BATON.io_parked_us.load(Ordering::Acquire);
        let at = BATON.io_parked_at.load(Ordering::Acquire);
        if at != 0 {
            parked += now.saturating_sub(at);
        }
        let elapsed = now.saturating_sub(self.at).max(1);
        let share = parked.saturating_sub(self.io_parked_us) as f64 / elapsed as f64;
        self.io_busy += ALPHA * ((1.0 - share).clamp(0.0, 1.0) - self.io_busy);
        BATON
            .io_busy_permille
            .store(permille(self.io_busy), Ordering::Relaxed);
        self.io_parked_us = parked;
        self.at = now;
    }
}

/// The I/O thread's life: watch while a loop drives, drive when none can or should.
pub(crate) fn io_thread(rt: &'static tokio::runtime::Runtime) {
    if !enabled() {
        rt.block_on(std::future::pending::<()>());
        return;
    }
    let mut load = Load::new();
    let mut tick = TICK;
    let mut hold = MIN_HOLD;
    let mut given_at: Option<Instant> = None;
    loop {
        let state = BATON.state.load(Ordering::Acquire);
        let stale = state == FREE
            && now_us().saturating_sub(BATON.freed_at.load(Ordering::Acquire))
                >= TICK.as_micros() as u64;
        let unattended = state == FREE && (stale || live_loops() == 0);
        let busy = load.loop_idle < TAKE_BELOW && work_waiting() > TAKE_WAITING_ABOVE;
        if (busy || unattended) && take() {
            BATON.takeovers.fetch_add(1, Ordering::Relaxed);
            if busy {
                BATON.load_takeovers.fetch_add(1, Ordering::Relaxed);
            }
            hold = match given_at {
                Some(at) if at.elapsed() < hold * 4 => (hold * 4).min(MAX_HOLD),
                _ => MIN_HOLD,
            };
            rt.block_on(drive_for(hold));
            given_at = Some(Instant::now());
            load = Load::new();
            tick = TICK;
            continue;
        }
        std::thread::sleep(tick);
        load.sample_loops();
        // Ticks lengthen while the loops keep up, and shorten as soon as they get busy.
        tick = if load.loop_idle < 0.5 {
            TICK
        } else if load.loop_idle > 0.99 {
            (tick * 2).min(IDLE_TICK)
        } else {
            (tick * 2).min(MAX_TICK)
        };
    }
}

/// Takes the baton from the loops: asks a driving loop to return, and waits (a tick at
/// most) for it to. False when a loop kept it (it is then not stuck: it drives).
fn take() -> bool {
    BATON.yield_request.store(true, Ordering::SeqCst);
    BATON.yield_notify.notify_one();
    let until = Instant::now() + TICK;
    let taken = loop {
        if BATON
            .state
            .compare_exchange(FREE, IO, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        std::thread::sleep(Duration::from_micros(50));
    };
    BATON.yield_request.store(false, Ordering::SeqCst);
    taken
}

/// What the I/O thread's `block_on` waits for while it drives: `hold`, then the baton is
/// given back and the loops are woken (and one drives again, until the I/O thread finds
/// reason to take it anew: with the hold quadrupled when that comes soon, see
/// `io_thread`). No measure taken while it drives tells whether the loops would do
/// better driving themselves (a loop's thread waiting for tokens looks as busy either
/// way), except a load that fell: after [`MIN_HOLD`] the baton goes back as soon as the
/// loops are idle enough to take the I/O work.
async fn drive_for(hold: Duration) {
    let since = Instant::now();
    let mut load = Load::new();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if live_loops() == 0 {
            // No loop can drive (trio only, or none yet): no ticks until one registers.
            BATON.loops_changed.notified().await;
            continue;
        }
        ticks.tick().await;
        // For `io_driver_stats`: how busy each thread was while the I/O thread drove.
        load.sample_loops();
        load.sample_io();
        let held = since.elapsed();
        let idle_enough = load.loop_idle > load.io_busy + GIVE_MARGIN && held >= MIN_HOLD;
        if held >= hold || idle_enough {
            BATON.io_parked_at.store(0, Ordering::Release);
            BATON.freed_at.store(now_us(), Ordering::Release);
            BATON.state.store(FREE, Ordering::Release);
            BATON.handbacks.fetch_add(1, Ordering::Relaxed);
            poke_loops();
            return;
        }
    }
}

/// A loop's selector, watched by the runtime: an `AsyncFd` of our own duplicate of its
/// descriptor (so the selector may close its own at any time).
#[cfg(unix)]
type Watched = tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>;

/// Duplicates the selector's descriptor `fd` and registers the copy with the runtime
/// (for readability), which must be entered.
#[cfg(unix)]
#[allow(unsafe_code)]
fn watch(fd: i32) -> std::io::Result<Watched> {
    // SAFETY: `fd` is the descriptor of the loop's selector, open while the loop runs;
    // `drive()` is called from that loop's `select()`, so it is open for this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned()?;
    // SAFETY: `owned` is an open descriptor owned by the `AsyncFd` for its whole life
    // (it is the `AsyncFd`'s inner value, closed only when the `AsyncFd` drops).
    unsafe { Watched::register_with_interest(owned, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// One event loop's side of the baton: `drive()` where the loop would sleep.
#[pyclass(module = "fastwt._core", frozen)]
pub struct LoopDriver {
    fd: i32,
    notifier: Py<notifier::Notifier>,
    #[cfg(unix)]
    watched: Mutex<Option<std::sync::Arc<Watched>>>,
    closed: AtomicBool,
}

#[pymethods]
impl LoopDriver {
    /// `selector_fd`: the loop's selector's own descriptor (epoll's, kqueue's), readable
    /// when it has events; `notifier`: the loop's, poked when the baton is free again.
    #[new]
    fn new(selector_fd: i32, notifier: Bound<'_, notifier::Notifier>) -> Self {
        if enabled() {
            lock(&BATON.loops).push(std::sync::Arc::downgrade(notifier.get().inner()));
            BATON.loops_changed.notify_one();
        }
        Self {
            fd: selector_fd,
            notifier: notifier.unbind(),
            #[cfg(unix)]
            watched: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether a `drive()` now would drive (the baton is free and not asked for): the
    /// loop then checks its selector without waiting first.
    #[getter]
    fn available(&self) -> bool {
        enabled()
            && !self.closed.load(Ordering::Acquire)
            && BATON.state.load(Ordering::Acquire) == FREE
            && !BATON.yield_request.load(Ordering::Acquire)
    }

    /// Runs the runtime on this thread (GIL released) until the selector has events, a
    /// token of this loop is ready, `timeout` seconds pass (`None`: no limit; at most
    /// 50 ms per call in any case), or the I/O thread asks for the runtime. `None`, at
    /// once, when the baton is not free: the loop then waits in its selector as usual
    /// (see `wait_begin`). Otherwise whether tokens are ready: those woken during the
    /// drive wrote no byte to the notifier's pipe, so the loop drains them itself.
    ///
    /// With `spin_us` (a reply is expected: the loop flushed writes and tasks wait), the
    /// drive first busy-polls the runtime for up to that long, while this loop's recent
    /// waits for a token were short (the notifier's spin site, see `crate::spin`):
    /// a reply inside the window then costs no sleep and wake-up.
    #[pyo3(signature = (timeout=None, spin_us=0))]
    fn drive(&self, py: Python<'_>, timeout: Option<f64>, spin_us: u64) -> PyResult<Option<bool>> {
        let cap = match timeout {
            Some(t) if t.is_finite() => Duration::from_secs_f64(t.max(0.0)).min(DRIVE_CAP),
            _ => DRIVE_CAP,
        };
        self.holding_baton(py, || self.wait_on_runtime(cap, spin_us))
    }

    /// Hands this turn's writes to the runtime on this thread: one runtime turn that
    /// does not wait (the writes' tasks run, their packets leave, arrived ones are read),
    /// GIL released. The end of a loop turn that does not wait: the tasks are woken as
    /// local queue pushes, where `Notifier.flush` from outside the runtime costs a system
    /// call to wake its driver. `None` when the baton is not free (the caller flushes
    /// the notifier instead); otherwise whether tokens are ready (as for `drive`).
    fn flush(&self, py: Python<'_>) -> PyResult<Option<bool>> {
        self.holding_baton(py, || async {
            self.notifier.get().wake_deferred();
            // Returns after a scheduler pass and a driver turn that does not sleep.
            tokio::task::yield_now().await;
            Ok(())
        })
    }

    /// The loop goes to sleep in its own selector (the I/O thread drives): counted as
    /// idle time, which lets the I/O thread hand the runtime back.
    fn wait_begin(&self) {
        BATON.waiting_loops.fetch_add(1, Ordering::AcqRel);
    }

    /// The loop woke from its selector.
    fn wait_end(&self) {
        let _ = BATON
            .waiting_loops
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Stops watching the selector (its duplicate descriptor is closed) and leaves the
    /// baton's loops.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        #[cfg(unix)]
        drop(lock(&self.watched).take());
        let me = std::sync::Arc::downgrade(self.notifier.get().inner());
        lock(&BATON.loops).retain(|l| l.strong_count() > 0 && !l.ptr_eq(&me));
    }
}

impl LoopDriver {
    /// Runs `work` on the runtime from this loop's thread while it holds the baton (GIL
    /// released): `None` at once when the baton is not free, else whether this loop's
    /// tokens are ready. The tokens woken meanwhile wrote no byte to the notifier's pipe.
    fn holding_baton<F>(
        &self,
        py: Python<'_>,
        work: impl FnOnce() -> F + Send,
    ) -> PyResult<Option<bool>>
    where
        F: std::future::Future<Output = PyResult<()>>,
    {
        if !self.available() {
            return Ok(None);
        }
        let rt = crate::runtime::runtime()?;
        if BATON
            .state
            .compare_exchange(FREE, LOOP, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(None);
        }
        BATON.loop_drives.fetch_add(1, Ordering::Relaxed);
        let notifier = self.notifier.get().inner();
        notifier.driving.store(true, Ordering::SeqCst);
        let outcome = py.detach(|| rt.block_on(work()));
        // SeqCst pairs with `Inner::notify`: a token pushed while this flag was up is
        // in the queue when it is checked below.
        notifier.driving.store(false, Ordering::SeqCst);
        BATON.loop_parked_at.store(0, Ordering::Release);
        BATON.freed_at.store(now_us(), Ordering::Release);
        BATON.state.store(FREE, Ordering::Release);
        outcome?;
        Ok(Some(!notifier.ready().is_empty()))
    }

    /// The busy-poll window of a drive asked to spin up to `spin_us`: none while this
    /// loop's recent waits for a token were long. Half the window, as the I/O thread's
    /// site: a drive that spins for nothing burns what the one wake-up it would save
    /// costs (and more, on one thread).
    #[cfg(unix)]
    fn spin_window(&self, spin_us: u64, cap: Duration) -> Duration {
        if spin_us == 0 {
            return Duration::ZERO;
        }
        let governor = &self.notifier.get().inner().governor;
        governor.begin();
        let window = Duration::from_micros(spin_us);
        if governor.mean_below(window / 2) {
            window.min(cap)
        } else {
            governor.skipped();
            Duration::ZERO
        }
    }

    #[cfg(unix)]
    async fn wait_on_runtime(&self, cap: Duration, spin_us: u64) -> PyResult<()> {
        // The loop's writes of its last turn, deferred to here (`Notifier.flush` would
        // wake the tasks from outside the runtime: a system call each).
        self.notifier.get().wake_deferred();
        let spin = self.spin_window(spin_us, cap);
        let fd = {
            let mut watched = lock(&self.watched);
            match &*watched {
                Some(fd) => fd.clone(),
                None => {
                    let fd = std::sync::Arc::new(watch(self.fd).map_err(|e| {
                        pyo3::exceptions::PyOSError::new_err(format!(
                            "cannot watch the event loop's selector: {e}"
                        ))
                    })?);
                    *watched = Some(fd.clone());
                    fd
                }
            }
        };
        if !spin.is_zero() {
            if let Some(turns) = self.spin_for_reply(&fd, spin).await {
                record_drive(turns <= 1);
                return Ok(());
            }
        }
        let parked_before = BATON.loop_parked_us.load(Ordering::Acquire);
        tokio::select! {
            ready = fd.readable() => {
                if let Ok(mut guard) = ready {
                    // The selector is read by the loop next; a later event sets it again.
                    guard.clear_ready();
                }
            }
            () = tokio::time::sleep(cap) => {}
            () = BATON.yield_notify.notified() => {}
            () = self.notifier.get().inner().woken.notified() => {}
        }
        let parked = BATON
            .loop_parked_us
            .load(Ordering::Acquire)
            .saturating_sub(parked_before);
        record_drive(spin.is_zero() && parked < WAITING_PARK.as_micros() as u64);
        Ok(())
    }

    /// Busy-polls the runtime (non-blocking driver turns, the core yielded between them)
    /// for up to `window`: the turns it took when a token or selector event came
    /// meanwhile, `None` when none came.
    #[cfg(unix)]
    async fn spin_for_reply(&self, fd: &Watched, window: Duration) -> Option<u32> {
        use std::task::Poll;
        let notifier = self.notifier.get().inner();
        let until = Instant::now() + window;
        let mut turns = 0u32;
        let hit = loop {
            turns = turns.saturating_add(1);
            // Let another thread on this core (the peer, most likely) run first.
            std::thread::yield_now();
            // Returns after a driver turn that does not sleep (tokio defers the wake).
            tokio::task::yield_now().await;
            if !notifier.ready().is_empty() {
                break true;
            }
            let selector_ready = std::future::poll_fn(|cx| {
                Poll::Ready(match fd.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        // As in `wait_on_runtime`: the loop reads the selector next.
                        guard.clear_ready();
                        true
                    }
                    _ => false,
                })
            })
            .await;
            if selector_ready {
                break true;
            }
            if Instant::now() >= until {
                break false;
            }
        };
        notifier.governor.spun(hit);
        hit.then_some(turns)
    }

    #[cfg(not(unix))]
    async fn wait_on_runtime(&self, _cap: Duration, _spin_us: u64) -> PyResult<()> {
        Ok(())
    }
}

impl Drop for LoopDriver {
    fn drop(&mut self) {
        self.close();
    }
}

/// Who drives now and how often it changed: `{"enabled", "driver" ("loop", "io" or
/// "free"), "loop_drives", "takeovers", "load_takeovers" (those for a busy loop with
/// work waiting; the others were for a loop that left the runtime unattended),
/// "handbacks", "loop_idle", "io_busy",
/// "work_waiting"}` (the last three: the moving averages the I/O thread decides by,
/// shares of the time, and of the loops' drives that found work waiting).
#[pyfunction]
pub fn io_driver_stats(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    use pyo3::types::PyDictMethods;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("enabled", enabled())?;
    let driver = match BATON.state.load(Ordering::Acquire) {
        LOOP => "loop",
        IO => "io",
        _ => "free",
    };
    d.set_item("driver", if enabled() { driver } else { "io" })?;
    d.set_item("loop_drives", BATON.loop_drives.load(Ordering::Relaxed))?;
    d.set_item("takeovers", BATON.takeovers.load(Ordering::Relaxed))?;
    d.set_item(
        "load_takeovers",
        BATON.load_takeovers.load(Ordering::Relaxed),
    )?;
    d.set_item("handbacks", BATON.handbacks.load(Ordering::Relaxed))?;
    let share = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
    d.set_item("loop_idle", share(&BATON.loop_idle_permille))?;
    d.set_item("io_busy", share(&BATON.io_busy_permille))?;
    d.set_item("work_waiting", share(&BATON.work_waiting_permille))?;
    Ok(d)
}
