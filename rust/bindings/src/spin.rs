//! When a busy-poll pays: each spin site (the I/O thread after a hand-off, an event
//! loop before it sleeps) measures how long its waits really last and spins only while
//! recent ones were short.
//!
//! A spin saves one thread wake-up (a futex or pipe write on one side, a context switch
//! on the other) when the awaited event comes within it, and burns the whole window when
//! it does not. So a site keeps an exponentially weighted mean of its waits (from the
//! moment it would start spinning to the moment the awaited event came, whether it spun
//! or slept meanwhile; a wait longer than [`CAP_WINDOWS`] windows counts as that long)
//! and spins only while that mean is below a multiple of the window ([`Site`]). Under
//! saturated load the waits are a few microseconds and every site spins; at moderate
//! load (a request every millisecond or so, or replies a network round trip away) they
//! are long and no site spins. Sleeping sites keep measuring, so a site spins again as soon as
//! the waits get short.
//!
//! `FASTWT_IO_SPIN_ADAPT=0` turns the measuring off: every site spins its full window
//! each time, as before this module existed (for comparisons).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Weight of the newest wait in the mean: 1/8.
const EWMA_SHIFT: u32 = 3;
/// A wait counts as at most this many windows.
const CAP_WINDOWS: u64 = 4;

/// Where a site spins, which sets the mean wait below which it does. Tuned on 2 shared
/// cores (benches/README.md, "Busy-poll"): saturated request/response gives mean waits
/// of 0-35 µs on the I/O thread and 20-55 µs on the event loop while both sides spin,
/// but 70 µs and 200-400 µs once both sides sleep (each side's wake-ups lengthen the
/// other's waits), and the thresholds must keep that state spinning too, or it never
/// recovers; 8 sessions at 100 requests/s each give waits of about a millisecond, far
/// above both.
#[derive(Clone, Copy)]
pub(crate) enum Site {
    /// The I/O thread after a hand-off: spins while the mean is below half a window.
    IoThread,
    /// An event loop before it sleeps: spins while the mean is below 1.5 windows.
    EventLoop,
}

/// Whether sites measure their waits (`FASTWT_IO_SPIN_ADAPT`, default on).
pub(crate) fn adaptive() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("FASTWT_IO_SPIN_ADAPT")
            .map(|v| !matches!(v.trim(), "0" | "false" | "off" | "no"))
            .unwrap_or(true)
    })
}

/// Nanoseconds since the first call in this process, never 0 (0 means "no wait open").
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One spin site's measurements; every method may be called from any thread.
pub(crate) struct Governor {
    /// Mean wait, nanoseconds.
    mean_ns: AtomicU64,
    /// When the open wait began ([`now_ns`]), 0 when none is open.
    open_since: AtomicU64,
    cap_ns: u64,
    threshold_ns: u64,
    adaptive: bool,
    /// Spins started.
    spins: AtomicU64,
    /// Spins that saw the awaited event before their window ended.
    hits: AtomicU64,
    /// Chances to spin that were passed up (the mean wait was too long).
    skips: AtomicU64,
    /// Waits measured.
    waits: AtomicU64,
}

/// A snapshot of a site's counters (for `diagnose()` and `spin_stats()`).
pub(crate) struct Snapshot {
    pub spins: u64,
    pub hits: u64,
    pub skips: u64,
    pub waits: u64,
    pub mean_wait_us: f64,
    pub spinning: bool,
}

impl Governor {
    /// A site whose spins last `window`; it starts out spinning.
    pub(crate) fn new(site: Site, window: Duration) -> Self {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        // In half windows.
        let halves = match site {
            Site::IoThread => 1,
            Site::EventLoop => 3,
        };
        Self {
            mean_ns: AtomicU64::new(0),
            open_since: AtomicU64::new(0),
            cap_ns: window_ns.saturating_mul(CAP_WINDOWS),
            threshold_ns: window_ns.saturating_mul(halves) / 2,
            adaptive: adaptive(),
            spins: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            skips: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// Whether the site should spin now (its recent waits were short).
    pub(crate) fn should_spin(&self) -> bool {
        !self.adaptive || self.mean_ns.load(Ordering::Relaxed) < self.threshold_ns
    }

    /// A wait begins (the site is about to spin or sleep for its event), unless one is
    /// open already (its event has not come yet: the wait goes on).
    pub(crate) fn begin(&self) {
        let _ = self
            .open_since
            .compare_exchange(0, now_ns(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Counts one wait measured elsewhere (the I/O thread's spun idle stretches).
    pub(crate) fn observe(&self, waited: Duration) {
        self.sample(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The awaited event came: the open wait (if any) is measured and closed.
    pub(crate) fn end(&self) {
        if self.open_since.load(Ordering::Relaxed) == 0 {
            return;
        }
        let start = self.open_since.swap(0, Ordering::AcqRel);
        self.close_from(start);
    }

    fn close_from(&self, start: u64) {
        if start != 0 {
            self.sample(now_ns().saturating_sub(start));
        }
    }

    fn sample(&self, waited_ns: u64) {
        if !self.adaptive {
            return;
        }
        let waited = waited_ns.min(self.cap_ns);
        self.waits.fetch_add(1, Ordering::Relaxed);
        // Lost updates between racing threads only lose a sample: a plain load/store.
        let mean = self.mean_ns.load(Ordering::Relaxed);
        let next = if waited >= mean {
            mean + ((waited - mean) >> EWMA_SHIFT)
        } else {
            mean - ((mean - waited) >> EWMA_SHIFT)
        };
        self.mean_ns.store(next, Ordering::Relaxed);
    }

    /// Counts a spin started.
    pub(crate) fn spun(&self, hit: bool) {
        self.spins.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a chance to spin passed up.
    pub(crate) fn skipped(&self) {
        self.skips.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the mean wait is below `limit` (a stricter bar than the site's own).
    pub(crate) fn mean_below(&self, limit: Duration) -> bool {
        !self.adaptive || u128::from(self.mean_ns.load(Ordering::Relaxed)) < limit.as_nanos()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            spins: self.spins.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            skips: self.skips.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            mean_wait_us: self.mean_ns.load(Ordering::Relaxed) as f64 / 1e3,
            spinning: self.should_spin(),
        }
    }
}

impl Snapshot {
    /// The counters as a Python dict.
    pub(crate) fn to_dict<'py>(
        &self,
        py: pyo3::Python<'py>,
    ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyDict>> {
        use pyo3::types::PyDictMethods;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("spins", self.spins)?;
        d.set_item("hits", self.hits)?;
        d.set_item("skips", self.skips)?;
        d.set_item("waits", self.waits)?;
        d.set_item("mean_wait_us", self.mean_wait_us)?;
        d.set_item("spinning", self.spinning)?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governor(window_us: u64) -> Governor {
        let mut g = Governor::new(Site::EventLoop, Duration::from_micros(window_us));
        g.adaptive = true;
        g
    }

    #[test]
    fn long_waits_stop_the_spin_and_short_ones_bring_it_back() {
        let g = governor(200);
        assert!(g.should_spin());
        for _ in 0..40 {
            g.begin();
            std::thread::sleep(Duration::from_micros(1_000));
            g.end();
        }
        assert!(
            !g.should_spin(),
            "mean {} ns",
            g.mean_ns.load(Ordering::Relaxed)
        );
        for _ in 0..200 {
            g.observe(Duration::from_micros(5));
        }
        assert!(
            g.should_spin(),
            "mean {} ns",
            g.mean_ns.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn a_wait_counts_at_most_the_cap() {
        let g = governor(100);
        g.begin();
        std::thread::sleep(Duration::from_millis(5));
        g.end();
        // One sample of at most 4 windows (400 us), weighted 1/8.
        assert!(g.mean_ns.load(Ordering::Relaxed) <= 400_000 / 8);
        assert_eq!(g.snapshot().waits, 1);
    }

    #[test]
    fn begin_keeps_an_open_wait() {
        let g = governor(100);
        g.begin();
        std::thread::sleep(Duration::from_millis(2));
        g.begin(); // still waiting for the same event
        g.end();
        assert_eq!(g.snapshot().waits, 1);
        // The whole 2 ms counted (capped at 4 windows), not the instant since the 2nd
        // begin.
        assert_eq!(g.mean_ns.load(Ordering::Relaxed), 400_000 / 8);
    }

    #[test]
    fn end_without_begin_measures_nothing() {
        let g = governor(100);
        g.end();
        assert_eq!(g.snapshot().waits, 0);
    }
}
