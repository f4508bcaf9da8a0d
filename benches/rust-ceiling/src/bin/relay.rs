//! A user-space UDP relay that delays every packet by a fixed time each way: the suite's
//! stand-in for a network round trip (this kernel has no `netem`).
//!
//! ```text
//! relay --upstream 127.0.0.1:PORT [--delay-ms 5] [--listen 127.0.0.1:0] [--seconds N]
//! ```
//!
//! Prints `PORT <n>` once listening. Clients send to that port; each client address gets
//! its own upstream socket (so the server sees one address per client, as through a NAT),
//! and the server's answers go back to the client it belongs to. Every packet, either way,
//! leaves `--delay-ms` after it arrived: no loss and no reordering added (one FIFO of
//! timestamped packets and one sender thread that sleeps until each is due; a constant
//! delay keeps arrival order). Plain threads and blocking sockets, no async runtime: a
//! packet costs one `recv`, one channel hop and one `send`, and the sleep of the sender
//! is a kernel high-resolution timer (tens of microseconds late, not tokio's 1 ms ticks).
//!
//! The relay counts what it forwarded and prints `FORWARDED <up> <down> <late_us_max>`
//! on stderr when it stops (after `--seconds`, default 600).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kernel buffer asked for on every socket (capped by `net.core.rmem_max`/`wmem_max`):
/// a burst must wait in the relay, not be dropped by the kernel in front of it.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Packets in flight inside the relay before the receivers block (then the kernel's
/// buffers hold the rest). At 5 ms and 200k packets/s about 1,000 are in flight.
const QUEUE_PACKETS: usize = 1 << 16;
/// Largest UDP payload the relay takes.
const MAX_PACKET: usize = 65_535;

/// One packet on its way: where it goes, through which socket, and when.
struct Delayed {
    due: Instant,
    socket: Arc<UdpSocket>,
    /// `None`: the socket is connected (upstream); else the client's address.
    to: Option<SocketAddr>,
    data: Vec<u8>,
}

#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    send_errors: AtomicU64,
    late_us_max: AtomicU64,
}

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    delay: Duration,
    seconds: f64,
}

fn parse_options() -> Result<Options, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut upstream = None;
    let mut delay_ms = 5.0_f64;
    let mut seconds = 600.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--upstream" => upstream = Some(value.parse().map_err(|e| format!("--upstream: {e}"))?),
            "--delay-ms" => delay_ms = value.parse().map_err(|e| format!("--delay-ms: {e}"))?,
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !(0.0..=10_000.0).contains(&delay_ms) {
        return Err(format!("--delay-ms must be in 0..=10000, got {delay_ms}"));
    }
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("--seconds must be positive, got {seconds}"));
    }
    Ok(Options {
        listen,
        upstream: upstream.ok_or("--upstream HOST:PORT is required")?,
        delay: Duration::from_secs_f64(delay_ms / 1e3),
        seconds,
    })
}

fn udp_socket(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer than asked for still works, only burstiness suffers.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&bind.into())?;
    Ok(socket.into())
}

/// Sends every packet when it is due, in the order they arrived.
fn sender(queue: Receiver<Delayed>, counters: Arc<Counters>) {
    while let Ok(p) = queue.recv() {
        let now = Instant::now();
        if p.due > now {
            std::thread::sleep(p.due - now);
        } else {
            let late = (now - p.due).as_micros() as u64;
            counters.late_us_max.fetch_max(late, Ordering::Relaxed);
        }
        let sent = match p.to {
            Some(to) => p.socket.send_to(&p.data, to),
            None => p.socket.send(&p.data),
        };
        if sent.is_err() {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads what the server sends to one client's upstream socket and queues it for that
/// client.
fn downstream(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    delay: Duration,
    queue: SyncSender<Delayed>,
    counters: Arc<Counters>,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let n = match upstream.recv(&mut buf) {
            Ok(n) => n,
            // ICMP port unreachable after the server stopped: keep serving until killed.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        };
        let due = Instant::now() + delay;
        counters.down.fetch_add(1, Ordering::Relaxed);
        let p = Delayed {
            due,
            socket: listener.clone(),
            to: Some(client),
            data: buf[..n].to_vec(),
        };
        if queue.send(p).is_err() {
            return;
        }
    }
}

/// Reads what clients send, gives each new client its upstream socket (and a thread
/// reading the server's answers), and queues the packet for the server.
fn upstream_loop(
    listener: Arc<UdpSocket>,
    opts: &Options,
    queue: SyncSender<Delayed>,
    counters: Arc<Counters>,
) -> std::io::Result<()> {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let unspecified: SocketAddr = match opts.upstream {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let (n, from) = match listener.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(e),
        };
        let due = Instant::now() + opts.delay;
        let socket = match clients.get(&from) {
            Some(s) => s.clone(),
            None => {
                let s = udp_socket(unspecified)?;
                s.connect(opts.upstream)?;
                let s = Arc::new(s);
                clients.insert(from, s.clone());
                let (l, q, c, d) = (
                    listener.clone(),
                    queue.clone(),
                    counters.clone(),
                    opts.delay,
                );
                let reader = s.clone();
                std::thread::Builder::new()
                    .name(format!("down-{from}"))
                    .spawn(move || downstream(reader, l, from, d, q, c))?;
                s
            }
        };
        counters.up.fetch_add(1, Ordering::Relaxed);
        let p = Delayed {
            due,
            socket,
            to: None,
            data: buf[..n].to_vec(),
        };
        if queue.send(p).is_err() {
            return Ok(());
        }
    }
}

fn main() {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("relay: {e}");
            eprintln!(
                "usage: relay --upstream HOST:PORT [--delay-ms 5] [--listen 127.0.0.1:0] [--seconds N]"
            );
            std::process::exit(2);
        }
    };
    let listener = match udp_socket(opts.listen) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("relay: cannot bind {}: {e}", opts.listen);
            std::process::exit(1);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let counters = Arc::new(Counters::default());
    let (queue, packets) = sync_channel(QUEUE_PACKETS);
    let c = counters.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || sender(packets, c))
    {
        eprintln!("relay: cannot start the sender thread: {e}");
        std::process::exit(1);
    }
    let lifetime = Duration::from_secs_f64(opts.seconds);
    let c = counters.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("lifetime".into())
        .spawn(move || {
            std::thread::sleep(lifetime);
            eprintln!(
                "FORWARDED {} {} {} errors {}",
                c.up.load(Ordering::Relaxed),
                c.down.load(Ordering::Relaxed),
                c.late_us_max.load(Ordering::Relaxed),
                c.send_errors.load(Ordering::Relaxed),
            );
            std::process::exit(0);
        })
    {
        eprintln!("relay: cannot start the lifetime thread: {e}");
        std::process::exit(1);
    }
    println!("PORT {port}");
    if let Err(e) = upstream_loop(listener, &opts, queue, counters) {
        eprintln!("relay: {e}");
        std::process::exit(1);
    }
}
