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
//! settling second (1 s) begins; then it counts the session's datagrams by tick number
//! (first 8 bytes of the payload, little endian) for `--duration` seconds. The result line has the Python workload's keys (`wl_fanout` in
//! python/fastwt/bench/workloads.py: the edge ticks of the window are left out, a tick
//! nobody got counts as undelivered) and, to find where datagrams are lost:
//!
//! - `client_cpu_fraction`: this process's cores over the window (is the client the limit?);
//! - `ticks_empty`: ticks inside the window that no session got (the server skipped them,
//!   being more than a period late, or lost all of them);
//! - `sessions_complete`, `session_delivered_min`, `session_delivered_p01`: how the loss
//!   spreads over sessions;
//! - `quic_datagram_frames`: DATAGRAM frames the client's QUIC layer took in over the
//!   window (all sessions) against `received`, what reached this code (the difference was
//!   dropped in quinn's datagram receive buffer);
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
/// the datagrams that arrived while counting, and the datagrams it could not place.
struct SessionTicks {
    bits: Vec<AtomicU64>,
    outside: AtomicU64,
}

impl SessionTicks {
    fn new(ticks: usize) -> Self {
        Self {
            bits: (0..ticks.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            outside: AtomicU64::new(0),
        }
    }

    /// Marks tick `rel` (ticks since the run's base); false when it is out of range.
    fn mark(&self, rel: u64) -> bool {
        let word = (rel / 64) as usize;
        match self.bits.get(word) {
            Some(w) => {
                w.fetch_or(1u64 << (rel % 64), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn has(&self, rel: u64) -> bool {
        self.bits
            .get((rel / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (rel % 64)) != 0)
    }
}

/// Ticks below the first one seen that still count (reordered arrivals).
const BASE_MARGIN: u64 = 8;

/// The run's reference point: the tick number of the first datagram any session got
/// (before counting starts), less [`BASE_MARGIN`]; ticks are kept relative to it.
fn relative(base: &OnceLock<u64>, tick: u64) -> Option<u64> {
    tick.checked_sub(*base.get_or_init(|| tick.saturating_sub(BASE_MARGIN)))
}

/// What the readers share: the run's base tick, whether counting is on (datagrams are
/// read and dropped before), and the datagrams counted in all.
#[derive(Default)]
struct Shared {
    base: OnceLock<u64>,
    armed: AtomicBool,
    counting: AtomicBool,
    received: AtomicU64,
}

/// Reads one session's datagrams until its connection ends: from the settling second
/// on (`armed`) they fix the base tick, while `counting` they are marked in `seen`.
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
        if shared.counting.load(Ordering::Relaxed) {
            shared.received.fetch_add(1, Ordering::Relaxed);
            if !rel.is_some_and(|r| seen.mark(r)) {
                seen.outside.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One open session and its reader.
struct Opened {
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
        let endpoint = endpoints[i % endpoints.len()].clone();
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
    let shared = Arc::new(Shared::default());
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
    tokio::time::sleep(Duration::from_secs(1)).await; // settle
    let before = read_counters(&conns, &mine, &server_socks);
    let probe = CpuProbe::start(pid);
    shared.counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    shared.counting.store(false, Ordering::Relaxed);
    let (cpu, wall) = probe.stop();
    let after = read_counters(&conns, &mine, &server_socks);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for o in &opened {
        o.reader.abort();
        o.session.conn.close(0u32.into(), b"");
    }

    // Per tick: how many sessions got it; the window's edge ticks are left out.
    let mut per_tick = vec![0u64; tick_room];
    for s in &ticks_of {
        for (rel, n) in per_tick.iter_mut().enumerate() {
            if s.has(rel as u64) {
                *n += 1;
            }
        }
    }
    let seen: Vec<usize> = (0..tick_room).filter(|&k| per_tick[k] > 0).collect();
    let (lo, hi) = match (seen.first(), seen.last()) {
        (Some(&a), Some(&b)) if b >= a + 2 => (a + 1, b - 1),
        _ => (1, 0),
    };
    let ticks = if hi >= lo { hi - lo + 1 } else { 0 };
    let in_window: u64 = if ticks > 0 {
        per_tick[lo..=hi].iter().sum()
    } else {
        0
    };
    let ticks_empty = if ticks > 0 {
        per_tick[lo..=hi].iter().filter(|&&n| n == 0).count()
    } else {
        0
    };
    let mut per_session: Vec<usize> = ticks_of
        .iter()
        .map(|s| (lo..=hi).filter(|&k| s.has(k as u64)).count())
        .collect();
    per_session.sort_unstable();
    let outside: u64 = ticks_of
        .iter()
        .map(|s| s.outside.load(Ordering::Relaxed))
        .sum();
    let n = conns.len() as f64;
    let expected = n * ticks as f64;
    let frac = |k: usize| {
        if ticks > 0 {
            k as f64 / ticks as f64
        } else {
            0.0
        }
    };
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
        ("open_seconds", open_seconds),
        ("endpoints", n_endpoints as f64),
        ("hz", hz),
        ("seconds", wall),
        ("ticks", ticks as f64),
        ("received", in_window as f64),
        (
            "delivered_fraction",
            if expected > 0.0 {
                in_window as f64 / expected
            } else {
                0.0
            },
        ),
        ("server_cpu_s", cpu),
        ("server_cpu_fraction", cpu / wall),
        (
            "server_cpu_us_per_datagram",
            cpu * 1e6 / (in_window.max(1)) as f64,
        ),
        ("client_cpu_fraction", (after.cpu - before.cpu) / wall),
        ("ticks_empty", ticks_empty as f64),
        ("sessions_complete", complete as f64),
        ("session_delivered_min", session_min),
        ("session_delivered_p01", session_p01),
        (
            "received_all",
            shared.received.load(Ordering::Relaxed) as f64,
        ),
        ("outside_ticks", outside as f64),
        (
            "quic_datagram_frames",
            after.frames.saturating_sub(before.frames) as f64,
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
