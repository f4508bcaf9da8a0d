//! The benchmark suite's `native` target: fastwt-core serving the bench routes with no
//! Python, on one current-thread tokio runtime (the I/O thread the Python bindings run),
//! so `fastwt / native` is what Python costs and `native / quinn` what the HTTP/3 layer
//! costs (benches/README.md).
//!
//! ```text
//! cargo run --release -p fastwt-core --example bench_server -- [--seconds N] [--hz HZ]
//! ```
//!
//! Prints `PORT <n>` and `HASH <hex>` once listening on 127.0.0.1. Routes as for every
//! target of the suite: `/echo` echoes every bidirectional stream and every datagram,
//! `/fanout` gets a 64-byte datagram per tick (tick number in the first 8 bytes, little
//! endian), `/idle` does nothing.

use fastwt_core::{Identity, Server, ServerOptions, Session};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn echo_streams(session: Session) {
    while let Ok((mut send, mut recv)) = session.accept_bi().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match recv.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if send.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            let _ = send.finish();
        });
    }
}

/// Echoes every datagram, waiting for room in the send buffer when it is full (as the
/// Python servers' `await send_datagram()` does), so the echo drops nothing itself.
async fn echo_datagrams(session: Session) {
    while let Ok(d) = session.read_datagram().await {
        if session.send_datagram_wait(&d).await.is_err() {
            break;
        }
    }
}

type Fanout = Arc<Mutex<Vec<Session>>>;

fn fanout_sessions(f: &Fanout) -> std::sync::MutexGuard<'_, Vec<Session>> {
    f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn ticker(fanout: Fanout, hz: f64) {
    let period = Duration::from_secs_f64(1.0 / hz.max(0.1));
    let start = Instant::now();
    let mut tick: u64 = 0;
    loop {
        tick += 1;
        let due = start + period.mul_f64(tick as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else if now - due > period {
            // More than a period late: skip to the current tick (the gap counts as lost).
            tick = (now - start).as_secs_f64().div_euclid(period.as_secs_f64()) as u64;
        }
        let mut payload = [0u8; 64];
        payload[..8].copy_from_slice(&tick.to_le_bytes());
        fanout_sessions(&fanout).retain(|s| s.send_datagram(&payload).is_ok());
    }
}

async fn handle(session: Session, fanout: Fanout) {
    if session.accept(vec![], None).await.is_err() {
        return;
    }
    let path = session.path().split('?').next().unwrap_or("").to_string();
    match path.as_str() {
        "/fanout" => {
            fanout_sessions(&fanout).push(session.clone());
            session.closed().await;
        }
        "/idle" => {
            session.closed().await;
        }
        _ => {
            tokio::spawn(echo_datagrams(session.clone()));
            echo_streams(session).await;
        }
    }
}

async fn run(seconds: f64, hz: f64) -> AnyResult<()> {
    let identity = Identity::development()?;
    let options = ServerOptions {
        bind: vec!["127.0.0.1:0".parse()?],
        max_sessions: 20_000,
        ..Default::default()
    };
    let server = Server::bind(options, &identity)?;
    println!("PORT {}", server.local_addrs()[0].port());
    let hash: String = identity
        .certificate_hash()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("HASH {hash}");
    let fanout: Fanout = Arc::default();
    tokio::spawn(ticker(fanout.clone(), hz));
    let accept = async {
        while let Ok(session) = server.accept().await {
            tokio::spawn(handle(session, fanout.clone()));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs_f64(seconds), accept).await;
    Ok(())
}

fn main() {
    let seconds = arg("--seconds", 600.0);
    let hz = arg("--hz", 20.0);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = runtime.block_on(run(seconds, hz)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
