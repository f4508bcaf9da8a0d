//! The fan-out load client in Rust, for any server target of the suite:
//!
//! ```text
//! wt-ceiling fanout-client --url https://127.0.0.1:PORT/ [--sessions N] [--hz 20]
//!     [--duration 10] [--endpoints E] [--parallel 32] [--server-pid PID]
//! ```
//!
//! Opens `--sessions` WebTransport sessions on `/fanout` (draft-02 over raw quinn,
//! `wt_raw.rs`: no HTTP/3 driver between quinn and the reader, no certificate check on
//! loopback), `--parallel` at a time (default 64), spread round-robin over `--endpoints`
//! client endpoints (UDP sockets, 4 MiB kernel buffers each; default one per 500
//! sessions, so a tick's burst of 10,000 datagrams does not land in one socket's buffer).
//! Each session's reader starts as soon as it is open and drops what arrives until the
//! settling second (1 s) begins; from then on it marks the session's datagrams by tick
//! number (first 8 bytes of the payload, little endian). The ticks that count are chosen
//! by number, not by arrival time: those whose first datagram (to any session) came
//! after the `--duration` window opened, up to the newest one seen when it closed; each
//! counts what reached a session within [`LATE_LIMIT`] (1 s) of the tick's first datagram
//! (a tick fanned out over 10,000 sessions takes hundreds of milliseconds on a busy
//! machine, so its last datagrams arrive well after its first; one later than that is
//! stale and counts as lost). The result line has the Python workload's keys (`wl_fanout` in
//! python/fastwt/bench/workloads.py, which counts the same way; a tick nobody got counts
//! as undelivered) and, to find where datagrams are lost:
//!
//! - `spread_ms_p50`, `spread_ms_p99`, `spread_ms_max`: how long after its tick's first
//!   datagram (to any session) each datagram that arrived in the window came, in ms (the
//!   fan-out's spread: the ticker's loop over the sessions, the send queues, the client);
//! - `endpoint_delivered_min`, `endpoint_delivered_max`: the lowest and highest of the
//!   client endpoints' (sockets') mean delivered fractions (a loss on a few sockets is the
//!   client's own; one spread evenly is the server's or the path's);
//! - `late_datagrams`: those that came more than [`LATE_LIMIT`] after their tick's first
//!   (from the settling second on; not counted as delivered);
//! - `delivered_fraction_by_arrival`: the measure before the tenth session, which
//!   counted only what arrived inside the window and left out one tick at each edge; it
//!   undercounts whenever a tick's datagrams reach the sessions over more than a period
//!   (at 10,000 sessions its own tick counts, 202-208 in a 200-period window, show
//!   spreads of 2-8 periods), as every tick cut by the window edge counts as partly lost;
//! - `sessions_closed`: sessions whose connection had ended when the window closed;
//! - `client_cpu_fraction`: this process's cores over the window (is the client the limit?);
//! - `ticks_empty`: ticks inside the window that no session got (the server skipped them,
//!   being more than a period late, or lost all of them);
//! - `sessions_complete`, `session_delivered_min`, `session_delivered_p01`: how the loss
//!   spreads over sessions;
//! - `quic_datagram_frames`: DATAGRAM frames the client's QUIC layer took in over the
//!   window (all sessions) against `received_all`, what reached this code over the same
//!   time (the difference was dropped in quinn's datagram receive buffer); `received`
//!   counts the window's ticks instead, whose last datagrams may come after it closed;
//! - `client_udp_tx_datagrams`: UDP datagrams the client's connections sent over the
//!   window (their ACKs, nearly all: what the server has to read and process);
//! - `client_socket_drops`, `server_socket_drops`: datagrams the kernel dropped at the
//!   client's and at the server's UDP sockets over the window (the `drops` column of
//!   `/proc/net/udp` for the sockets of this process and of `--server-pid`);
//! - `udp_rcvbuf_errors`, `udp_sndbuf_errors`: the same network namespace's counters of
//!   `/proc/net/snmp` over the window (every process in it, so other traffic counts too).

use super::wt_raw;
use super::{emit, note_error, AnyResult, Args, CpuProbe};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Sessions per client endpoint when `--endpoints` is not given.
const SESSIONS_PER_ENDPOINT: usize = 500;
/// How long opening every session may take in all before the run goes on without the
/// rest (each connect has its own 10 s bound, as the Python client's).
const OPEN_BUDGET: Duration = Duration::from_secs(150);

/// What one session's reader saw: a bit per tick (relative to the run's first tick) of
/// the datagrams that arrived from the settling second on (`bits`), the same for those
/// that arrived inside the window (`arrived_in_window`, the former measure), and the
/// datagrams it could not place.
struct SessionTicks {
    bits: TickBits,
    arrived_in_window: TickBits,
    outside: AtomicU64,
}

/// A bit per tick, set from the reader's task and read once the readers are done.
struct TickBits(Vec<AtomicU64>);

impl TickBits {
    fn new(ticks: usize) -> Self {
        Self((0..ticks.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    /// Marks tick `rel` (ticks since the run's base); false when it is out of range.
    fn mark(&self, rel: u64) -> bool {
        match self.0.get((rel / 64) as usize) {
            Some(w) => {
                w.fetch_or(1u64 << (rel % 64), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn has(&self, rel: u64) -> bool {
        self.0
            .get((rel / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (rel % 64)) != 0)
    }
}

impl SessionTicks {
    fn new(ticks: usize) -> Self {
        Self {
            bits: TickBits::new(ticks),
            arrived_in_window: TickBits::new(ticks),
            outside: AtomicU64::new(0),
        }
    }
}

/// Ticks below the first one seen that still count (reordered arrivals).
const BASE_MARGIN: u64 = 8;

/// The run's reference point: the tick number of the first datagram any session got
/// (before counting starts), less [`BASE_MARGIN`]; ticks are kept relative to it.
fn relative(base: &OnceLock<u64>, tick: u64) -> Option<u64> {
    tick.checked_sub(*base.get_or_init(|| tick.saturating_sub(BASE_MARGIN)))
}

/// How far behind its tick's first datagram (to any session) a datagram may arrive and
/// still count as delivered: a game's or a dashboard's tick that late is stale.
const LATE_LIMIT: Duration = Duration::from_secs(1);

/// How long after the window the readers go on marking the window's ticks: the last
/// tick seen as the window closed is still being fanned out then.
const GRACE: Duration = LATE_LIMIT;

/// Buckets (1 ms each) of the fan-out spread's histogram; the last takes the rest.
const SPREAD_BUCKETS: usize = 4096;

/// What the readers share: the run's base tick, whether they mark (datagrams are read
/// and dropped before the settling second) and whether the window is open, the newest
/// tick seen (relative, plus one; 0 before any), the datagrams that arrived in the
/// window in all, those not counted as later than [`LATE_LIMIT`], and for the spread:
/// when each tick's first datagram arrived (µs since `epoch`, plus one; 0 before any)
/// and a histogram of how long after it the window's datagrams arrived.
struct Shared {
    base: OnceLock<u64>,
    armed: AtomicBool,
    counting: AtomicBool,
    newest: AtomicU64,
    received_all: AtomicU64,
    late: AtomicU64,
    epoch: Instant,
    first_arrival: Vec<AtomicU64>,
    spread_ms: Vec<AtomicU64>,
}

impl Shared {
    fn new(tick_room: usize) -> Self {
        Self {
            base: OnceLock::new(),
            armed: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            newest: AtomicU64::new(0),
            received_all: AtomicU64::new(0),
            late: AtomicU64::new(0),
            epoch: Instant::now(),
            first_arrival: (0..tick_room).map(|_| AtomicU64::new(0)).collect(),
            spread_ms: (0..SPREAD_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Notes a datagram of tick `rel` arriving `at` (since `epoch`); how long after the
    /// tick's first datagram (to any session) it came, in ms (None for a tick out of
    /// range).
    fn arrival(&self, rel: u64, at: Duration) -> Option<u64> {
        let first = self.first_arrival.get(rel as usize)?;
        let now = at.as_micros() as u64 + 1;
        let earliest = match first.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => now,
            Err(seen) => seen.min(now),
        };
        Some((now - earliest) / 1000)
    }

    /// The spread (ms) below which a fraction `q` of the window's datagrams arrived.
    fn spread_quantile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .spread_ms
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (ms, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return ms as f64;
            }
        }
        0.0
    }

    /// The newest tick any session has seen, relative to the base; None before any.
    fn newest(&self) -> Option<u64> {
        self.newest.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// Reads one session's datagrams until its connection ends: from the settling second
/// on (`armed`) they fix the base tick and are marked in `seen`.
async fn read_datagrams(conn: quinn::Connection, seen: Arc<SessionTicks>, shared: Arc<Shared>) {
    while let Ok(d) = conn.read_datagram().await {
        if !shared.armed.load(Ordering::Relaxed) {
            continue;
        }
        let Some(head) = wt_raw::payload(&d)
            .and_then(|p| p.get(..8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        else {
            continue;
        };
        let rel = relative(&shared.base, u64::from_le_bytes(head));
        note_datagram(&shared, &seen, rel, shared.epoch.elapsed());
    }
}

/// Books one datagram of tick `rel` (None: before the base) arriving `at`: while the
/// window is open it counts as arrived (`received_all`, the former measure's bits, the
/// spread), late or not; then it is marked in the session's ticks unless it came more
/// than [`LATE_LIMIT`] after its tick's first datagram (then it counts in `late`).
fn note_datagram(shared: &Shared, seen: &SessionTicks, rel: Option<u64>, at: Duration) {
    let spread = rel.and_then(|r| shared.arrival(r, at));
    if shared.counting.load(Ordering::Relaxed) {
        shared.received_all.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = rel {
            seen.arrived_in_window.mark(r);
        }
        if let Some(ms) = spread {
            let bucket = (ms as usize).min(SPREAD_BUCKETS - 1);
            shared.spread_ms[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }
    if spread.is_some_and(|ms| ms >= LATE_LIMIT.as_millis() as u64) {
        shared.late.fetch_add(1, Ordering::Relaxed);
    } else if let Some(r) = rel.filter(|&r| seen.bits.mark(r)) {
        shared.newest.fetch_max(r + 1, Ordering::Relaxed);
    } else {
        seen.outside.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the sessions got of a range of ticks.
struct Tally {
    ticks: usize,
    /// Datagrams of those ticks that reached a session.
    received: u64,
    /// Ticks of the range nobody got.
    empty: usize,
    /// Per session, in the order given, how many of the ticks it got.
    per_session: Vec<usize>,
}

impl Tally {
    /// Counts the ticks of `range` in each session's `bits`.
    fn of(sessions: &[&TickBits], range: std::ops::Range<usize>) -> Self {
        let ticks = range.len();
        let mut per_tick = vec![0u64; ticks];
        let mut per_session = Vec::with_capacity(sessions.len());
        for bits in sessions {
            let mut got = 0;
            for (i, k) in range.clone().enumerate() {
                if bits.has(k as u64) {
                    per_tick[i] += 1;
                    got += 1;
                }
            }
            per_session.push(got);
        }
        Self {
            ticks,
            received: per_tick.iter().sum(),
            empty: per_tick.iter().filter(|&&n| n == 0).count(),
            per_session,
        }
    }

    /// The fraction of (sessions x ticks) delivered.
    fn delivered(&self) -> f64 {
        let expected = self.per_session.len() as f64 * self.ticks as f64;
        if expected > 0.0 {
            self.received as f64 / expected
        } else {
            0.0
        }
    }
}

/// The former measure's range: the ticks anything arrived for inside the window, less
/// one at each edge.
fn arrival_range(sessions: &[&TickBits], room: usize) -> std::ops::Range<usize> {
    let seen = |k: usize| sessions.iter().any(|b| b.has(k as u64));
    match (
        (0..room).find(|&k| seen(k)),
        (0..room).rev().find(|&k| seen(k)),
    ) {
        (Some(a), Some(b)) if b >= a + 2 => a + 1..b,
        _ => 0..0,
    }
}

/// One open session and its reader.
struct Opened {
    /// Which of the client's endpoints (UDP sockets) it is on.
    endpoint: usize,
    session: wt_raw::Session,
    seen: Arc<SessionTicks>,
    reader: tokio::task::JoinHandle<()>,
}

/// Opens `count` sessions on `url`'s `/fanout`, `parallel` at a time, round-robin over
/// `endpoints`, each with its reader started at once (so nothing piles up in quinn's
/// datagram buffers while the rest open); (sessions, failures). Attempts not done
/// within [`OPEN_BUDGET`] fail.
async fn open_sessions(
    endpoints: &[quinn::Endpoint],
    url: &str,
    count: usize,
    parallel: usize,
    tick_room: usize,
    shared: &Arc<Shared>,
) -> (Vec<Opened>, u64) {
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let deadline = tokio::time::Instant::now() + OPEN_BUDGET;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let endpoint_index = i % endpoints.len();
        let endpoint = endpoints[endpoint_index].clone();
        let url = url.to_string();
        let (sem, shared) = (sem.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            let open = wt_raw::open(&endpoint, &url, "/fanout");
            match tokio::time::timeout(Duration::from_secs(10), open).await {
                Ok(Ok(session)) => {
                    let seen = Arc::new(SessionTicks::new(tick_room));
                    let reader =
                        tokio::spawn(read_datagrams(session.conn.clone(), seen.clone(), shared));
                    Some(Opened {
                        endpoint: endpoint_index,
                        session,
                        seen,
                        reader,
                    })
                }
                Ok(Err(e)) => {
                    note_error(&*e);
                    None
                }
                Err(_) => {
                    note_error(&*Box::<dyn std::error::Error + Send + Sync>::from(
                        "session not open after 10 s",
                    ));
                    None
                }
            }
        }));
    }
    let mut opened = Vec::with_capacity(count);
    let mut errors = 0u64;
    for mut t in tasks {
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(Ok(Some(o))) => opened.push(o),
            Ok(_) => errors += 1,
            Err(_) => {
                // past the budget: stop the attempt, so it loads nobody during the window
                t.abort();
                errors += 1;
            }
        }
    }
    (opened, errors)
}

/// On-CPU seconds of this process (every thread), from `/proc/self/task/*/schedstat`.
fn own_cpu_seconds() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

/// Socket inodes among the open files of `/proc/<pid>` (`self` for this process).
fn socket_inodes(pid: &str) -> HashSet<u64> {
    let mut out = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            if let Ok(link) = std::fs::read_link(entry.path()) {
                let link = link.to_string_lossy();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|v| v.parse().ok())
                {
                    out.insert(inode);
                }
            }
        }
    }
    out
}

/// The kernel's drop count summed over the UDP sockets (IPv4 and IPv6) whose inode is in
/// `inodes` (the last column of `/proc/net/udp`, the inode the tenth).
fn socket_drops(inodes: &HashSet<u64>) -> u64 {
    let mut drops = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode = cols.get(9).and_then(|v| v.parse::<u64>().ok());
            if inode.is_some_and(|i| inodes.contains(&i)) {
                drops += cols.last().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    drops
}

/// (RcvbufErrors, SndbufErrors) of the `Udp:` line of `/proc/net/snmp`.
fn snmp_udp_errors() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else {
        return (0, 0);
    };
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return (0, 0);
    };
    let pick = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (pick("RcvbufErrors"), pick("SndbufErrors"))
}

/// The counters read around the measured window.
struct Counters {
    client_drops: u64,
    server_drops: u64,
    snmp: (u64, u64),
    frames: u64,
    /// UDP datagrams the client's connections sent (ACKs, almost all of them).
    tx: u64,
    cpu: f64,
}

fn read_counters(
    conns: &[quinn::Connection],
    mine: &HashSet<u64>,
    server: &HashSet<u64>,
) -> Counters {
    Counters {
        client_drops: socket_drops(mine),
        server_drops: socket_drops(server),
        snmp: snmp_udp_errors(),
        frames: conns.iter().map(|c| c.stats().frame_rx.datagram).sum(),
        tx: conns.iter().map(|c| c.stats().udp_tx.datagrams).sum(),
        cpu: own_cpu_seconds(),
    }
}

/// `wt-ceiling fanout-client`: see the module's documentation.
pub async fn run(args: &Args) -> AnyResult<()> {
    let url = args.string("url");
    let pid: u32 = args.get("server-pid", 0);
    let sessions: usize = args.get("sessions", 1000);
    let duration: f64 = args.get("duration", 10.0);
    let hz: f64 = args.get("hz", 20.0);
    let parallel: usize = args.get("parallel", 64);
    let n_endpoints: usize = args
        .get("endpoints", sessions.div_ceil(SESSIONS_PER_ENDPOINT))
        .clamp(1, sessions.max(1));
    if !(hz > 0.0 && duration > 0.0) {
        return Err(format!("--hz and --duration must be positive (got {hz}, {duration})").into());
    }
    let endpoints = (0..n_endpoints)
        .map(|_| wt_raw::endpoint())
        .collect::<AnyResult<Vec<_>>>()?;
    // Room for every tick from the base (taken as the settling second starts) to the end.
    let tick_room = ((duration + 4.0) * hz).ceil() as usize + 2 * BASE_MARGIN as usize;
    let shared = Arc::new(Shared::new(tick_room));
    let opened_at = Instant::now();
    let (opened, errors) =
        open_sessions(&endpoints, &url, sessions, parallel, tick_room, &shared).await;
    let open_seconds = opened_at.elapsed().as_secs_f64();
    let conns: Vec<quinn::Connection> = opened.iter().map(|o| o.session.conn.clone()).collect();
    let ticks_of: Vec<Arc<SessionTicks>> = opened.iter().map(|o| o.seen.clone()).collect();
    let mine = socket_inodes("self");
    let server_socks = if pid > 0 {
        socket_inodes(&pid.to_string())
    } else {
        HashSet::new()
    };

    shared.armed.store(true, Ordering::Relaxed);
    eprintln!(
        "fanout-client: {} sessions open in {open_seconds:.1} s ({errors} failed); settling 1 s, then counting {duration} s",
        opened.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // settle
    let before = read_counters(&conns, &mine, &server_socks);
    let probe = CpuProbe::start(pid);
    // The window's ticks: from the first one begun after it opens to the newest seen
    // as it closes (see the module's documentation).
    let lo = shared.newest().map_or(0, |t| t + 1) as usize;
    shared.counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    shared.counting.store(false, Ordering::Relaxed);
    let window = lo..shared.newest().map_or(lo, |t| t as usize + 1);
    let (cpu, wall) = probe.stop();
    let after = read_counters(&conns, &mine, &server_socks);
    // sessions whose connection ended before the window did (their ticks count as lost)
    let closed = conns.iter().filter(|c| c.close_reason().is_some()).count();
    tokio::time::sleep(GRACE).await;
    for o in &opened {
        o.reader.abort();
        o.session.conn.close(0u32.into(), b"");
    }

    let bits: Vec<&TickBits> = ticks_of.iter().map(|s| &s.bits).collect();
    let tally = Tally::of(&bits, window);
    let arrived: Vec<&TickBits> = ticks_of.iter().map(|s| &s.arrived_in_window).collect();
    let by_arrival = Tally::of(&arrived, arrival_range(&arrived, tick_room));
    let ticks = tally.ticks;
    let received = tally.received;
    let ticks_empty = tally.empty;
    let outside: u64 = ticks_of
        .iter()
        .map(|s| s.outside.load(Ordering::Relaxed))
        .sum();
    let n = conns.len() as f64;
    let frac = |k: usize| {
        if ticks > 0 {
            k as f64 / ticks as f64
        } else {
            0.0
        }
    };
    // Per client endpoint (socket), the mean delivered fraction of its sessions: a loss
    // on a few sockets is the client's (a socket whose reader fell behind); one spread
    // over all of them is the server's or the path's.
    let mut per_endpoint = vec![(0usize, 0usize); n_endpoints];
    for (o, &got) in opened.iter().zip(&tally.per_session) {
        if let Some(e) = per_endpoint.get_mut(o.endpoint) {
            e.0 += got;
            e.1 += 1;
        }
    }
    let endpoint_means: Vec<f64> = per_endpoint
        .iter()
        .filter(|e| e.1 > 0 && ticks > 0)
        .map(|&(got, n)| got as f64 / (n * ticks) as f64)
        .collect();
    let endpoint_min = endpoint_means.iter().copied().fold(f64::NAN, f64::min);
    let endpoint_max = endpoint_means.iter().copied().fold(f64::NAN, f64::max);
    let mut per_session = tally.per_session.clone();
    per_session.sort_unstable();
    let session_min = per_session.first().copied().map_or(0.0, frac);
    let session_p01 = per_session
        .get(per_session.len() / 100)
        .copied()
        .map_or(0.0, frac);
    let complete = per_session
        .iter()
        .filter(|&&k| ticks > 0 && k == ticks)
        .count();
    emit(&[
        ("sessions", n),
        ("connect_errors", errors as f64),
        ("sessions_closed", closed as f64),
        ("open_seconds", open_seconds),
        ("endpoints", n_endpoints as f64),
        ("hz", hz),
        ("seconds", wall),
        ("ticks", ticks as f64),
        ("received", received as f64),
        ("delivered_fraction", tally.delivered()),
        ("delivered_fraction_by_arrival", by_arrival.delivered()),
        ("spread_ms_p50", shared.spread_quantile(0.5)),
        ("spread_ms_p99", shared.spread_quantile(0.99)),
        ("spread_ms_max", shared.spread_quantile(1.0)),
        ("server_cpu_s", cpu),
        ("server_cpu_fraction", cpu / wall),
        (
            "server_cpu_us_per_datagram",
            cpu * 1e6 / (received.max(1)) as f64,
        ),
        ("client_cpu_fraction", (after.cpu - before.cpu) / wall),
        ("ticks_empty", ticks_empty as f64),
        ("sessions_complete", complete as f64),
        ("session_delivered_min", session_min),
        ("session_delivered_p01", session_p01),
        ("endpoint_delivered_min", endpoint_min),
        ("endpoint_delivered_max", endpoint_max),
        (
            "received_all",
            shared.received_all.load(Ordering::Relaxed) as f64,
        ),
        ("outside_ticks", outside as f64),
        ("late_datagrams", shared.late.load(Ordering::Relaxed) as f64),
        (
            "quic_datagram_frames",
            after.frames.saturating_sub(before.frames) as f64,
        ),
        (
            "client_udp_tx_datagrams",
            after.tx.saturating_sub(before.tx) as f64,
        ),
        (
            "client_socket_drops",
            after.client_drops.saturating_sub(before.client_drops) as f64,
        ),
        (
            "server_socket_drops",
            after.server_drops.saturating_sub(before.server_drops) as f64,
        ),
        (
            "udp_rcvbuf_errors",
            after.snmp.0.saturating_sub(before.snmp.0) as f64,
        ),
        (
            "udp_sndbuf_errors",
            after.snmp.1.saturating_sub(before.snmp.1) as f64,
        ),
    ]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session gets every tick, but a tick reaches the sessions over three
    /// periods (the spread the former measure's tick counts show at 10,000 sessions:
    /// 202-208 ticks with anything arriving in a 200-period window), and the window
    /// opens and closes in the middle of a tick's fan-out.
    #[test]
    fn a_tick_cut_by_the_window_counts_whole() {
        let (n, ticks) = (100usize, 40usize);
        let sessions: Vec<TickBits> = (0..n).map(|_| TickBits::new(64)).collect();
        let arrived: Vec<TickBits> = (0..n).map(|_| TickBits::new(64)).collect();
        let (open, close) = (10.5, 30.5); // in periods
        let mut newest = None;
        let (mut lo, mut hi) = (None, None);
        // events in time order: tick k reaches session i at k + 0.8 * i / n
        let mut events: Vec<(f64, usize, usize)> = (0..ticks)
            .flat_map(|k| (0..n).map(move |i| (k as f64 + 3.0 * i as f64 / n as f64, k, i)))
            .collect();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, k, i) in events {
            if lo.is_none() && t >= open {
                lo = Some(newest.map_or(0, |x: usize| x + 1));
            }
            if hi.is_none() && t >= close {
                hi = newest;
            }
            sessions[i].mark(k as u64);
            if (open..close).contains(&t) {
                arrived[i].mark(k as u64);
            }
            newest = Some(newest.map_or(k, |x: usize| x.max(k)));
        }
        let (Some(lo), Some(hi)) = (lo, hi) else {
            panic!("the window never opened or closed");
        };
        let all: Vec<&TickBits> = sessions.iter().collect();
        let tally = Tally::of(&all, lo..hi + 1);
        assert_eq!((lo, hi), (11, 30));
        assert_eq!(tally.delivered(), 1.0);
        assert_eq!(tally.empty, 0);
        // the former measure, on the same arrivals: the cut ticks count as partly lost
        let by_arrival: Vec<&TickBits> = arrived.iter().collect();
        let old = Tally::of(&by_arrival, arrival_range(&by_arrival, 64));
        assert!(old.delivered() < 0.99, "{}", old.delivered());
    }

    #[test]
    fn a_tick_nobody_got_counts_as_undelivered() {
        let sessions: Vec<TickBits> = (0..4).map(|_| TickBits::new(64)).collect();
        for s in &sessions {
            for k in (0..10).filter(|&k| k != 5) {
                s.mark(k);
            }
        }
        let all: Vec<&TickBits> = sessions.iter().collect();
        let tally = Tally::of(&all, 0..10);
        assert_eq!(tally.empty, 1);
        assert_eq!(tally.delivered(), 0.9);
        assert_eq!(tally.per_session, vec![9, 9, 9, 9]);
    }

    /// A datagram later than LATE_LIMIT behind its tick's first is not delivered, but it
    /// did arrive: it counts in `received_all` (set against quinn's DATAGRAM frames, so it
    /// must not look dropped there) and in the spread.
    #[test]
    fn a_late_datagram_arrived_but_is_not_delivered() {
        let shared = Shared::new(64);
        shared.counting.store(true, Ordering::Relaxed);
        let (early, late) = (SessionTicks::new(64), SessionTicks::new(64));
        note_datagram(&shared, &early, Some(5), Duration::from_millis(100));
        note_datagram(&shared, &late, Some(5), Duration::from_millis(1600));
        assert!(early.bits.has(5));
        assert!(!late.bits.has(5));
        assert!(late.arrived_in_window.has(5));
        assert_eq!(shared.late.load(Ordering::Relaxed), 1);
        assert_eq!(shared.received_all.load(Ordering::Relaxed), 2);
        assert_eq!(shared.spread_quantile(1.0), 1500.0);
        assert_eq!(late.outside.load(Ordering::Relaxed), 0);
    }
}
