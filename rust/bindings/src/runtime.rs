use crate::spin::{Governor, Site};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();

/// The I/O thread, started once the runtime is in [`RUNTIME`] (it drives it from there).
static IO_THREAD: OnceLock<std::io::Result<()>> = OnceLock::new();

/// The process that started the runtime: its I/O thread does not exist in a child made
/// with `fork()`, where every call would wait for it forever.
static RUNTIME_PID: OnceLock<u32> = OnceLock::new();

/// Set in a child made with `os.fork()` (Python's at-fork hook, see [`forked`]): the
/// check costs a load instead of a `getpid` system call per runtime use.
static FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The at-fork hook (`os.register_at_fork(after_in_child=...)`, registered when the
/// module loads): from here on the runtime is refused with a clear error.
#[pyfunction]
pub fn forked() {
    FORKED.store(true, Ordering::SeqCst);
}

/// Wakes the I/O thread's spinner (see [`spin_hint`]); `None` when spinning is off.
static SPINNER: OnceLock<Option<Spinner>> = OnceLock::new();

/// Default of `FASTWT_IO_SPIN_US`: long enough to cover a Python handler's turn, so a
/// reply written right after a request was handed over finds the thread awake.
const DEFAULT_SPIN_US: u64 = 200;

/// Microseconds the I/O thread keeps polling after activity before it sleeps
/// (`FASTWT_IO_SPIN_US`; 0 turns it off; at most 10,000).
pub(crate) fn spin_window() -> Duration {
    let us = std::env::var("FASTWT_IO_SPIN_US")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_SPIN_US)
        .min(10_000);
    Duration::from_micros(us)
}

/// The I/O thread's spin site: the spinner's wake-up and its idle stretches, measured
/// whether it sleeps (thread park to unpark) or spins (see [`spinner`] and
/// [`crate::spin`]).
struct Spinner {
    notify: tokio::sync::Notify,
    governor: Governor,
    /// Hints so far: a spin that sees this change has caught its event.
    hints: AtomicU64,
}

/// Two spinner turns further apart than this had other work between them: the idle
/// stretch ended there.
const BUSY_GAP: Duration = Duration::from_micros(20);

/// Tells the I/O thread a reply is likely soon (a token was handed to Python, or a
/// batch from Python was handed over): it polls for a short while instead of going to
/// sleep, so the reply is picked up without a thread wake-up. Only while its recent
/// idle stretches were short (see [`crate::spin`]); otherwise it sleeps as usual.
pub(crate) fn spin_hint() {
    if !crate::baton::io_drives() {
        // An event loop's thread drives the runtime: a spin there would only delay it.
        return;
    }
    if let Some(Some(s)) = SPINNER.get() {
        s.hints.fetch_add(1, Ordering::AcqRel);
        if s.governor.should_spin() {
            s.notify.notify_one();
        } else {
            s.governor.skipped();
        }
    }
}

/// The I/O thread's spin counters (`fastwt._core.spin_stats()["io"]`); `None` when it
/// does not spin.
pub(crate) fn io_spin_snapshot() -> Option<crate::spin::Snapshot> {
    match SPINNER.get() {
        Some(Some(s)) => Some(s.governor.snapshot()),
        _ => None,
    }
}

/// Keeps the current-thread runtime polling (non-blocking driver turns between task
/// runs) after each hint until the next hint, or until it has been idle for `window`.
/// Each idle stretch (back-to-back turns with nothing else run between them) is one
/// measured wait, as a park would have been.
async fn spinner(s: &'static Spinner, window: Duration) {
    loop {
        s.notify.notified().await;
        if !s.governor.should_spin() {
            continue;
        }
        let seen = s.hints.load(Ordering::Acquire);
        let mut idle = Duration::ZERO;
        let mut last = Instant::now();
        let hit = loop {
            // Let another thread on this core (the Python loop, most likely) run first:
            // spinning must only use time nobody else wants.
            std::thread::yield_now();
            tokio::task::yield_now().await;
            let now = Instant::now();
            let turn = now - last;
            last = now;
            let quiet = turn < BUSY_GAP;
            if quiet {
                idle += turn;
            }
            if s.hints.load(Ordering::Acquire) != seen {
                // The awaited event came; its own hint has stored a permit, so the next
                // round decides afresh whether to spin for the one after.
                s.governor.observe(idle);
                break true;
            }
            if !quiet {
                if !idle.is_zero() {
                    s.governor.observe(idle);
                }
                idle = Duration::ZERO;
            } else if idle >= window {
                s.governor.observe(idle);
                break false;
            }
        };
        s.governor.spun(hit);
    }
}

pub(crate) fn threads() -> usize {
    std::env::var("FASTWT_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let n = threads();
    if n > 1 {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("fastwt-io")
            .enable_all()
            .build();
    }
    // One I/O thread running a current-thread runtime: quinn's endpoint and connection
    // drivers and fastwt's tasks hand work to each other without crossing threads,
    // which is what small-message latency is made of. An event loop's thread drives the
    // same runtime while it waits, when that is cheaper (see [`crate::baton`]).
    let window = spin_window();
    let spinning = SPINNER.get_or_init(|| {
        (!window.is_zero()).then(|| Spinner {
            notify: tokio::sync::Notify::new(),
            governor: Governor::new(Site::IoThread, window),
            hints: AtomicU64::new(0),
        })
    });
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    // A park is an idle stretch slept through: measured like a spun one, and it tells
    // the baton how idle the driving thread is.
    builder
        .on_thread_park(move || {
            if let Some(s) = spinning {
                s.governor.begin();
            }
            crate::baton::on_park(true);
        })
        .on_thread_unpark(move || {
            if let Some(s) = spinning {
                s.governor.end();
            }
            crate::baton::on_park(false);
        });
    let rt = builder.build()?;
    if let Some(s) = spinning {
        rt.spawn(spinner(s, window));
    }
    Ok(rt)
}

/// Starts the thread that drives a current-thread runtime (a multi-thread one has its
/// own workers).
fn start_io_thread(rt: &'static tokio::runtime::Runtime) -> std::io::Result<()> {
    if threads() > 1 {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("fastwt-io".into())
        .spawn(move || crate::baton::io_thread(rt))?;
    Ok(())
}

/// The extension's tokio runtime, created on first use. I/O threads never take the GIL.
/// `FASTWT_IO_THREADS` (default 1) chooses how many threads run it.
///
/// In a child forked after the runtime started it raises a clear error instead of
/// hanging (fork copies the runtime's state but not its thread).
pub fn get() -> PyResult<&'static tokio::runtime::Handle> {
    runtime().map(tokio::runtime::Runtime::handle)
}

/// The runtime itself (see [`get`]): an event loop's thread drives it with `block_on`.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if !FORKED.load(Ordering::Acquire) {
        if let (Some(Ok(rt)), Some(Ok(()))) = (RUNTIME.get(), IO_THREAD.get()) {
            return Ok(rt);
        }
    }
    let pid = std::process::id();
    let started_in = *RUNTIME_PID.get_or_init(|| pid);
    if started_in != pid {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "fastwt cannot run in a process forked from one that used it (its I/O thread \
             was started in process {started_in}, this is process {pid}): start worker \
             processes with multiprocessing's 'spawn' or 'forkserver' method, or fork \
             before fastwt starts"
        )));
    }
    let failed = |e: &std::io::Error| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}"))
    };
    let rt = RUNTIME.get_or_init(build).as_ref().map_err(failed)?;
    IO_THREAD
        .get_or_init(|| start_io_thread(rt))
        .as_ref()
        .map_err(failed)?;
    Ok(rt)
}

/// How many tokio I/O threads the extension runs (env `FASTWT_IO_THREADS`).
#[pyfunction]
pub fn io_threads() -> usize {
    threads()
}

/// Microseconds the single I/O thread polls after activity before sleeping (env
/// `FASTWT_IO_SPIN_US`); 0 when it does not spin (turned off, or a multi-thread runtime).
#[pyfunction]
pub fn io_spin_us() -> u64 {
    if threads() > 1 {
        return 0;
    }
    u64::try_from(spin_window().as_micros()).unwrap_or(u64::MAX)
}

/// The spin sites' counters: `{"io": {...} or None, "adaptive": bool}` (the I/O thread's:
/// spins started, hits, skips, waits measured, mean wait in microseconds, whether it
/// spins now). Each event loop's own site is `Notifier.spin_stats()`.
#[pyfunction]
pub fn spin_stats(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    use pyo3::types::PyDictMethods;
    let d = pyo3::types::PyDict::new(py);
    match io_spin_snapshot() {
        Some(s) => d.set_item("io", s.to_dict(py)?)?,
        None => d.set_item("io", py.None())?,
    }
    d.set_item("adaptive", crate::spin::adaptive())?;
    Ok(d)
}
