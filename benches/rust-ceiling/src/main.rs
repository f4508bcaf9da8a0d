//! Raw-Rust ceiling for the fastwt benchmark suite: a wtransport echo server and a load
//! client, no Python anywhere.
//!
//! ```text
//! wt-ceiling server [--seconds N]
//! wt-ceiling client <bulk|datagrams|reqresp|sessions|fanout|memory> --url URL [options]
//! ```
//!
//! The server listens on 127.0.0.1:0 and prints `PORT <n>` and `HASH <hex>`. Paths:
//! `/echo` echoes every bidirectional stream and every datagram, `/fanout` receives a
//! 64-byte datagram per 20 Hz tick (tick number in the first 8 bytes, little endian),
//! `/idle` does nothing. The client prints one JSON line of results; it reads the server's
//! CPU time and RSS from `/proc/<--server-pid>`.
//!
//! `quinn-server` / `quinn-client` are the same over raw quinn streams, without HTTP/3
//! (see `raw_quinn.rs`). `fanout-client` (`fanout.rs`; also `client fanout`) is the
//! fan-out client for any server target, its sessions opened over raw quinn (`wt_raw.rs`).

/// The fan-out load client for any server target (`fanout-client`).
mod fanout;
/// Raw quinn (no HTTP/3): the transport's own floor.
mod raw_quinn;
/// A WebTransport session opened by hand over raw quinn (for `fanout-client`).
mod wt_raw;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use wtransport::endpoint::endpoint_side::Client;
use wtransport::{ClientConfig, Connection, Endpoint, Identity, ServerConfig};

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PAYLOAD: usize = 64;
const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// command line
// ---------------------------------------------------------------------------------------

struct Args {
    positional: Vec<String>,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Self {
        let mut positional = Vec::new();
        let mut opts = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                if let Some((k, v)) = key.split_once('=') {
                    opts.insert(k.to_string(), v.to_string());
                } else {
                    let v = it.next().unwrap_or_default();
                    opts.insert(key.to_string(), v);
                }
            } else {
                positional.push(a);
            }
        }
        Self { positional, opts }
    }

    fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.opts
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn string(&self, key: &str) -> String {
        self.opts.get(key).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// /proc probes
// ---------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// On-CPU seconds of `pid`'s threads to the nanosecond (sum of
/// `/proc/<pid>/task/*/schedstat`), as the Python clients measure it; utime + stime
/// (10 ms ticks) when that cannot be read; 0 when unknown.
fn cpu_seconds(pid: u32, tck: f64) -> f64 {
    if pid == 0 {
        return 0.0;
    }
    if let Some(s) = schedstat_seconds(pid) {
        return s;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / tck
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut total_ns: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        total_ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (total_ns > 0).then(|| total_ns as f64 / 1e9)
}

/// Resident set size of `pid` in bytes (0 when unknown).
fn rss_bytes(pid: u32) -> f64 {
    if pid == 0 {
        return 0.0;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0.0;
    };
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: f64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0.0);
            return kb * 1024.0;
        }
    }
    0.0
}

struct CpuProbe {
    pid: u32,
    tck: f64,
    cpu0: f64,
    t0: Instant,
}

impl CpuProbe {
    fn start(pid: u32) -> Self {
        let tck = clk_tck();
        Self {
            pid,
            tck,
            cpu0: cpu_seconds(pid, tck),
            t0: Instant::now(),
        }
    }

    /// (server CPU seconds, wall seconds) since start.
    fn stop(&self) -> (f64, f64) {
        (
            cpu_seconds(self.pid, self.tck) - self.cpu0,
            self.t0.elapsed().as_secs_f64(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// output
// ---------------------------------------------------------------------------------------

fn emit(fields: &[(&str, f64)]) {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let v = if v.is_finite() { *v } else { 0.0 };
        let _ = write!(out, "\"{k}\": {v}");
    }
    out.push('}');
    println!("{out}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------
// server
// ---------------------------------------------------------------------------------------

type FanoutSet = Arc<Mutex<HashMap<usize, Connection>>>;

async fn run_server(args: &Args) -> AnyResult<()> {
    let seconds: f64 = args.get("seconds", 600.0);
    let hz: f64 = args.get("hz", 20.0);
    let identity = Identity::self_signed(["localhost", "127.0.0.1", "::1"])?;
    let hash = identity.certificate_chain().as_slice()[0]
        .hash()
        .fmt(wtransport::tls::Sha256DigestFmt::DottedHex)
        .replace(':', "");
    let config = ServerConfig::builder()
        .with_bind_socket(udp_socket()?)
        .with_identity(identity)
        .keep_alive_interval(Some(Duration::from_secs(3)))
        .max_idle_timeout(Some(Duration::from_secs(30)))?
        .build();
    let endpoint = Endpoint::server(config)?;
    println!("PORT {}", endpoint.local_addr()?.port());
    println!("HASH {hash}");

    let fanout: FanoutSet = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(fanout_ticker(fanout.clone(), hz));

    let deadline = tokio::time::sleep(Duration::from_secs_f64(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            incoming = endpoint.accept() => {
                let fanout = fanout.clone();
                tokio::spawn(async move {
                    let _ = serve_session(incoming, fanout).await;
                });
            }
        }
    }
    endpoint.close(0u32.into(), b"bye");
    Ok(())
}

async fn serve_session(
    incoming: wtransport::endpoint::IncomingSession,
    fanout: FanoutSet,
) -> AnyResult<()> {
    let request = incoming.await?;
    let path = request.path().to_string();
    let conn = request.accept().await?;
    if path.starts_with("/fanout") {
        let id = conn.stable_id();
        lock(&fanout).insert(id, conn.clone());
        conn.closed().await;
        lock(&fanout).remove(&id);
    } else if path.starts_with("/idle") {
        conn.closed().await;
    } else {
        let dconn = conn.clone();
        tokio::spawn(async move {
            while let Ok(dgram) = dconn.receive_datagram().await {
                let _ = dconn.send_datagram(dgram.payload());
            }
        });
        loop {
            let (send, recv) = conn.accept_bi().await?;
            tokio::spawn(async move {
                let _ = echo_stream(send, recv).await;
            });
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn echo_stream(
    mut send: wtransport::SendStream,
    mut recv: wtransport::RecvStream,
) -> AnyResult<()> {
    let mut buf = vec![0u8; CHUNK];
    while let Some(n) = recv.read(&mut buf).await? {
        send.write_all(&buf[..n]).await?;
    }
    // quinn's own finish: ends the stream without waiting for the peer's ACK.
    let _ = send.quic_stream_mut().finish();
    Ok(())
}

async fn fanout_ticker(set: FanoutSet, hz: f64) {
    let period = Duration::from_secs_f64(1.0 / hz);
    let start = tokio::time::Instant::now();
    let mut tick: u64 = 0;
    let mut payload = [0u8; PAYLOAD];
    loop {
        // Tick k is due at start + k*period. A tick more than a period late is skipped:
        // its number never goes out, and the client counts the gap as undelivered.
        tick += 1;
        let due = start + period.mul_f64(tick as f64);
        let now = tokio::time::Instant::now();
        if due > now {
            tokio::time::sleep_until(due).await;
        } else if now - due > period {
            tick = ((now - start).as_secs_f64() * hz) as u64;
        }
        payload[..8].copy_from_slice(&tick.to_le_bytes());
        let conns: Vec<Connection> = lock(&set).values().cloned().collect();
        for c in &conns {
            let _ = c.send_datagram(payload);
        }
    }
}

// ---------------------------------------------------------------------------------------
// client
// ---------------------------------------------------------------------------------------

/// A UDP socket on 127.0.0.1:0 with `SOCKBUF` bytes of kernel send and receive buffer
/// (capped by net.core.[rw]mem_max). The OS default (~208 KiB) drops the 1,000-datagram
/// bursts of the fan-out tick.
fn udp_socket() -> AnyResult<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let size: usize = std::env::var("SOCKBUF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 20);
    if size > 0 {
        let _ = sock.set_recv_buffer_size(size);
        let _ = sock.set_send_buffer_size(size);
    }
    sock.bind(&bind.into())?;
    Ok(sock.into())
}

fn client_endpoint() -> AnyResult<Endpoint<Client>> {
    let config = ClientConfig::builder()
        .with_bind_socket(udp_socket()?)
        .with_no_cert_validation()
        .keep_alive_interval(Some(Duration::from_secs(3)))
        .max_idle_timeout(Some(Duration::from_secs(30)))?
        .build();
    Ok(Endpoint::client(config)?)
}

static ERRORS_SHOWN: AtomicU64 = AtomicU64::new(0);

/// Show the first few errors on stderr (the driver keeps stderr in its log).
fn note_error(e: &(dyn std::error::Error + Send + Sync)) {
    if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < 3 {
        eprintln!("error: {e}");
    }
}

/// Connect with a 5 s bound (a dead server would otherwise hold us until the idle timeout).
async fn connect(endpoint: &Endpoint<Client>, url: &str) -> AnyResult<Connection> {
    connect_within(endpoint, url, Duration::from_secs(5)).await
}

async fn connect_within(
    endpoint: &Endpoint<Client>,
    url: &str,
    limit: Duration,
) -> AnyResult<Connection> {
    match tokio::time::timeout(limit, endpoint.connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(format!("connect timed out after {limit:?}").into()),
    }
}

fn with_path(url: &str, path: &str) -> String {
    // url is https://host:port[/...]; replace the path.
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    format!("{}{}", &url[..path_start], path)
}

async fn client_bulk(args: &Args, url: &str, pid: u32) -> AnyResult<()> {
    let size: u64 = args.get("size", 64 * 1024 * 1024);
    let endpoint = client_endpoint()?;
    let conn = connect(&endpoint, &with_path(url, "/echo")).await?;
    let (mut send, mut recv) = conn.open_bi().await?.await?;
    let probe = CpuProbe::start(pid);
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; CHUNK];
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            send.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        let _ = send.quic_stream_mut().finish();
        // keep the stream alive until the reader is done
        Ok::<_, wtransport::error::StreamWriteError>(send)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got: u64 = 0;
    while let Some(n) = recv.read(&mut buf).await? {
        got += n as u64;
    }
    let (cpu, wall) = probe.stop();
    let _ = writer.await;
    conn.close(0u32.into(), b"");
    emit(&[
        ("bytes", got as f64),
        ("seconds", wall),
        ("mb_per_s", got as f64 / wall / 1e6),
        ("server_cpu_s", cpu),
        (
            "server_cpu_s_per_gib",
            cpu / (got as f64 / (1u64 << 30) as f64),
        ),
    ]);
    Ok(())
}

async fn client_datagrams(args: &Args, url: &str, pid: u32) -> AnyResult<()> {
    let duration: f64 = args.get("duration", 5.0);
    let window: u64 = args.get("window", 128);
    let endpoint = client_endpoint()?;
    let conn = connect(&endpoint, &with_path(url, "/echo")).await?;
    let received = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let rconn = conn.clone();
    let (r2, n2) = (received.clone(), notify.clone());
    let reader = tokio::spawn(async move {
        while rconn.receive_datagram().await.is_ok() {
            r2.fetch_add(1, Ordering::Relaxed);
            n2.notify_one();
        }
    });
    let payload = [0x42u8; PAYLOAD];
    let probe = CpuProbe::start(pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let mut sent: u64 = 0;
    let mut written_off: u64 = 0;
    while Instant::now() < end {
        let got = received.load(Ordering::Relaxed);
        let outstanding = sent.saturating_sub(got + written_off);
        if outstanding < window {
            for _ in 0..(window - outstanding) {
                let _ = conn.send_datagram(payload);
                sent += 1;
            }
        } else if tokio::time::timeout(Duration::from_millis(20), notify.notified())
            .await
            .is_err()
        {
            // nothing came back for 20 ms: count what is outstanding as lost
            written_off = sent.saturating_sub(got);
        }
    }
    let got_in_window = received.load(Ordering::Relaxed);
    let (cpu, wall) = probe.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_total = received.load(Ordering::Relaxed);
    reader.abort();
    conn.close(0u32.into(), b"");
    emit(&[
        ("sent", sent as f64),
        ("received", got_total as f64),
        ("seconds", wall),
        ("received_per_s", got_in_window as f64 / wall),
        ("loss", 1.0 - got_total as f64 / sent.max(1) as f64),
        ("server_cpu_s", cpu),
        (
            "server_cpu_us_per_datagram",
            cpu * 1e6 / got_in_window.max(1) as f64,
        ),
    ]);
    Ok(())
}

async fn one_request(conn: &Connection, payload: &[u8]) -> AnyResult<usize> {
    let (mut send, mut recv) = conn.open_bi().await?.await?;
    send.write_all(payload).await?;
    let _ = send.quic_stream_mut().finish();
    let mut buf = [0u8; 256];
    let mut got = 0;
    while let Some(n) = recv.read(&mut buf).await? {
        got += n;
    }
    Ok(got)
}

async fn client_reqresp(args: &Args, url: &str, pid: u32) -> AnyResult<()> {
    let duration: f64 = args.get("duration", 5.0);
    let concurrency: usize = args.get("concurrency", 1);
    let endpoint = client_endpoint()?;
    let conn = connect(&endpoint, &with_path(url, "/echo")).await?;
    // warm-up
    one_request(&conn, &[1u8; PAYLOAD]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let probe = CpuProbe::start(pid);
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let conn = conn.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let payload = [7u8; PAYLOAD];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match one_request(&conn, &payload).await {
                    Ok(n) if n == PAYLOAD => {
                        if Instant::now() <= deadline {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                    Ok(_) => errors += 1,
                    Err(e) => {
                        errors += 1;
                        note_error(&*e);
                    }
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    stop.store(true, Ordering::Relaxed);
    let (cpu, wall) = probe.stop();
    report_requests(tasks, cpu, wall, concurrency).await;
    conn.close(0u32.into(), b"");
    Ok(())
}

/// The result line of a closed-loop request/response run: gathers each request loop's
/// latencies (ms) and errors (a loop not done 3 s after the window closed is stuck; its
/// requests are not counted) and prints them with the server's CPU over the window.
pub(crate) async fn report_requests(
    tasks: Vec<tokio::task::JoinHandle<(Vec<f64>, u64)>>,
    cpu: f64,
    wall: f64,
    concurrency: usize,
) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut stuck = 0u64;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(3), t).await {
            Ok(Ok((l, e))) => {
                lat.extend(l);
                errors += e;
            }
            _ => stuck += 1,
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len() as f64;
    emit(&[
        ("requests", n),
        ("errors", errors as f64),
        ("stuck", stuck as f64),
        ("seconds", wall),
        ("concurrency", concurrency as f64),
        ("req_per_s", n / wall),
        ("p50_ms", percentile(&lat, 0.50)),
        ("p99_ms", percentile(&lat, 0.99)),
        ("server_cpu_s", cpu),
        ("server_cpu_us_per_request", cpu * 1e6 / n.max(1.0)),
    ]);
}

async fn client_sessions(args: &Args, url: &str, pid: u32) -> AnyResult<()> {
    let duration: f64 = args.get("duration", 5.0);
    let concurrency: usize = args.get("concurrency", 4);
    let endpoint = Arc::new(client_endpoint()?);
    let target = with_path(url, "/echo");
    let stop = Arc::new(AtomicBool::new(false));
    let probe = CpuProbe::start(pid);
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                // a loopback handshake takes milliseconds: one that has not completed
                // in 1 s is counted as an error rather than left to stall the task
                match connect_within(&endpoint, &target, Duration::from_secs(1)).await {
                    Ok(conn) => {
                        if Instant::now() <= deadline {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        conn.close(0u32.into(), b"");
                    }
                    Err(e) => {
                        errors += 1;
                        note_error(&*e);
                    }
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    stop.store(true, Ordering::Relaxed);
    let (cpu, wall) = probe.stop();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len() as f64;
    emit(&[
        ("sessions", n),
        ("errors", errors as f64),
        ("seconds", wall),
        ("sessions_per_s", n / wall),
        ("connect_p50_ms", percentile(&lat, 0.50)),
        ("connect_p99_ms", percentile(&lat, 0.99)),
        ("server_cpu_s", cpu),
        ("server_cpu_ms_per_session", cpu * 1e3 / n.max(1.0)),
    ]);
    Ok(())
}

async fn open_many(
    endpoint: &Arc<Endpoint<Client>>,
    target: &str,
    count: usize,
    parallel: usize,
) -> (Vec<Connection>, u64) {
    let sem = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for _ in 0..count {
        let endpoint = endpoint.clone();
        let target = target.to_string();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            match connect(&endpoint, &target).await {
                Ok(c) => Some(c),
                Err(e) => {
                    note_error(&*e);
                    None
                }
            }
        }));
    }
    let mut conns = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Some(c)) => conns.push(c),
            _ => errors += 1,
        }
    }
    (conns, errors)
}

async fn client_memory(args: &Args, url: &str, pid: u32) -> AnyResult<()> {
    let sessions: usize = args.get("sessions", 1000);
    let warm: usize = 10.min(sessions / 2);
    let endpoint = Arc::new(client_endpoint()?);
    let target = with_path(url, "/idle");
    let (mut conns, mut errors) = open_many(&endpoint, &target, warm, 32).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_bytes(pid);
    let (more, e2) = open_many(&endpoint, &target, sessions - warm, 32).await;
    conns.extend(more);
    errors += e2;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_bytes(pid);
    let added = (conns.len() - warm.min(conns.len())) as f64;
    for c in &conns {
        c.close(0u32.into(), b"");
    }
    emit(&[
        ("sessions", conns.len() as f64),
        ("connect_errors", errors as f64),
        ("rss_before_bytes", rss0),
        ("rss_after_bytes", rss1),
        ("rss_per_session_bytes", (rss1 - rss0) / added.max(1.0)),
    ]);
    Ok(())
}

async fn run_client(args: &Args) -> AnyResult<()> {
    let workload = args.positional.get(1).cloned().unwrap_or_default();
    let url = args.string("url");
    let pid: u32 = args.get("server-pid", 0);
    match workload.as_str() {
        "bulk" => client_bulk(args, &url, pid).await,
        "datagrams" => client_datagrams(args, &url, pid).await,
        "reqresp" => client_reqresp(args, &url, pid).await,
        "sessions" => client_sessions(args, &url, pid).await,
        "fanout" => fanout::run(args).await,
        "memory" => client_memory(args, &url, pid).await,
        other => Err(format!("unknown workload {other:?}").into()),
    }
}

fn main() {
    let args = Args::parse();
    // `--threads 1`: one current-thread runtime (the shape of fastwt's I/O thread and of
    // the native server); otherwise that many tokio workers (default 2, the machine's cores).
    let threads: usize = args.get("threads", 2);
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = match args.positional.first().map(String::as_str) {
        Some("server") => runtime.block_on(run_server(&args)),
        Some("client") => runtime.block_on(run_client(&args)),
        Some("quinn-server") => runtime.block_on(raw_quinn::run_server(args.get("seconds", 600.0))),
        Some("quinn-client") => runtime.block_on(raw_quinn::run_client(&args)),
        Some("fanout-client") => runtime.block_on(fanout::run(&args)),
        _ => Err(
            "usage: wt-ceiling server|client|quinn-server|quinn-client <workload> --url URL \
             | fanout-client --url URL"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    // Do not wait for lingering tasks.
    runtime.shutdown_timeout(Duration::from_millis(100));
}
