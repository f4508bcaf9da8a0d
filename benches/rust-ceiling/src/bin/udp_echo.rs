//! The cheapest server wake-up in Rust: a UDP echo on a current-thread tokio runtime, one
//! `recv_from` and one `send_to` per packet, no QUIC. `benches/wake_floor.py` runs it
//! beside the same echo in Python (asyncio, and a blocking loop) under one paced client:
//! the difference per packet is what one wake-up of Python costs at least, whatever the
//! server does with the packet.
//!
//! ```text
//! udp_echo [--seconds N]
//! ```
//!
//! Listens on 127.0.0.1:0, prints `PORT <n>`, and stops after `--seconds` (default 60).

use std::time::Duration;

use tokio::net::UdpSocket;

fn seconds_from_args() -> Result<f64, String> {
    let mut seconds = 60.0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v.parse().map_err(|_| format!("bad --seconds {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(seconds)
}

async fn echo(socket: UdpSocket) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], from).await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = seconds_from_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        println!("PORT {}", socket.local_addr()?.port());
        match tokio::time::timeout(Duration::from_secs_f64(seconds), echo(socket)).await {
            Ok(result) => result.map_err(Into::into),
            Err(_elapsed) => Ok(()),
        }
    })
}
