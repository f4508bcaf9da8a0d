//! Rust log records (fastwt-core's and quinn's) handed to Python `logging` without a
//! tokio thread ever taking the GIL: records go into a bounded queue that a Python
//! daemon thread drains (it waits here with the GIL released). Taking the GIL from
//! inside quinn (which logs while holding its connection lock) could deadlock against
//! the loop thread, which holds the GIL while polling quinn.

use crate::sync::lock;
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

const CAPACITY: usize = 10_000;

struct Queue {
    records: Mutex<VecDeque<(u8, String, String)>>,
    ready: Condvar,
}

static QUEUE: Queue = Queue {
    records: Mutex::new(VecDeque::new()),
    ready: Condvar::new(),
};
static MAX_LEVEL: AtomicUsize = AtomicUsize::new(log::LevelFilter::Warn as usize);
static DROPPED: AtomicU64 = AtomicU64::new(0);

struct QueueLogger;

fn python_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

impl log::Log for QueueLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() as usize <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let entry = (
            python_level(record.level()),
            record.target().to_string(),
            record.args().to_string(),
        );
        let mut q = lock(&QUEUE.records);
        if q.len() >= CAPACITY {
            q.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(entry);
        drop(q);
        QUEUE.ready.notify_one();
    }

    fn flush(&self) {}
}

static LOGGER: QueueLogger = QueueLogger;

/// Installs the queue logger (once per process).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Sets the most verbose level forwarded, as a Python logging level (10 = DEBUG).
#[pyfunction]
pub fn set_log_level(level: i32) {
    let filter = match level {
        l if l <= 5 => log::LevelFilter::Trace,
        l if l <= 10 => log::LevelFilter::Debug,
        l if l <= 20 => log::LevelFilter::Info,
        l if l <= 30 => log::LevelFilter::Warn,
        l if l <= 40 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    };
    MAX_LEVEL.store(filter as usize, Ordering::Relaxed);
    log::set_max_level(filter);
}

/// Waits up to `timeout` seconds (GIL released) for records, then returns them all as
/// (python level, target, message).
#[pyfunction]
pub fn next_log_records(py: Python<'_>, timeout: f64) -> Vec<(u8, String, String)> {
    // NaN waits not at all (clamp keeps NaN, which from_secs_f64 panics on).
    let wait = Duration::try_from_secs_f64(timeout.clamp(0.0, 60.0)).unwrap_or(Duration::ZERO);
    py.detach(|| {
        let q = lock(&QUEUE.records);
        let (mut q, _) = QUEUE
            .ready
            .wait_timeout_while(q, wait, |q| q.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    })
}

/// Records dropped because the queue was full.
#[pyfunction]
pub fn dropped_log_records() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}
