use pyo3::prelude::*;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Handle>> = OnceLock::new();

/// The process that started the runtime: its I/O thread does not exist in a child made
/// with `fork()`, where every call would wait for it forever.
static RUNTIME_PID: OnceLock<u32> = OnceLock::new();

/// Wakes the I/O thread's spinner (see [`spin_hint`]); `None` when spinning is off.
static SPINNER: OnceLock<Option<tokio::sync::Notify>> = OnceLock::new();

/// Default of `FASTWT_IO_SPIN_US`: long enough to cover a Python handler's turn, so a
/// reply written right after a request was handed over finds the thread awake.
const DEFAULT_SPIN_US: u64 = 200;

/// Microseconds the I/O thread keeps polling after activity before it sleeps
/// (`FASTWT_IO_SPIN_US`; 0 turns it off; at most 10,000).
fn spin_window() -> Duration {
    let us = std::env::var("FASTWT_IO_SPIN_US")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_SPIN_US)
        .min(10_000);
    Duration::from_micros(us)
}

/// Tells the I/O thread a reply is likely soon (a token was handed to Python, or a
/// batch from Python was handed over): it polls for a short while instead of going to
/// sleep, so the reply is picked up without a thread wake-up.
pub(crate) fn spin_hint() {
    if let Some(Some(n)) = SPINNER.get() {
        n.notify_one();
    }
}

/// Keeps the current-thread runtime polling (non-blocking driver turns between task
/// runs) for `window` after each hint.
async fn spinner(notify: &'static tokio::sync::Notify, window: Duration) {
    loop {
        notify.notified().await;
        let until = Instant::now() + window;
        while Instant::now() < until {
            // Let another thread on this core (the Python loop, most likely) run first:
            // spinning must only use time nobody else wants.
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
}

fn threads() -> usize {
    std::env::var("FASTWT_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn build() -> std::io::Result<tokio::runtime::Handle> {
    let n = threads();
    if n > 1 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("fastwt-io")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        // The runtime lives for the whole process.
        std::mem::forget(rt);
        return Ok(handle);
    }
    // One I/O thread running a current-thread runtime: quinn's endpoint and connection
    // drivers and fastwt's tasks hand work to each other without crossing threads,
    // which is what small-message latency is made of.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    let window = spin_window();
    let spinning = SPINNER.get_or_init(|| (!window.is_zero()).then(tokio::sync::Notify::new));
    if let Some(notify) = spinning {
        handle.spawn(spinner(notify, window));
    }
    std::thread::Builder::new()
        .name("fastwt-io".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// The extension's tokio runtime, created on first use. I/O threads never take the GIL.
/// `FASTWT_IO_THREADS` (default 1) chooses how many threads run it.
///
/// In a child forked after the runtime started it raises a clear error instead of
/// hanging (fork copies the runtime's state but not its thread).
pub fn get() -> PyResult<&'static tokio::runtime::Handle> {
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
    RUNTIME.get_or_init(build).as_ref().map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}"))
    })
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
