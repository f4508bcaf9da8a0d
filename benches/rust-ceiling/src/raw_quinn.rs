//! The floor of any QUIC stack here: quinn itself, no HTTP/3 and no WebTransport. An
//! echo server (every bidirectional stream read to its end and written back, every
//! datagram sent back) and a load client for the workloads that need nothing else:
//!
//! ```text
//! wt-ceiling quinn-server [--seconds N]
//! wt-ceiling quinn-client <bulk|reqresp|reqresp_paced> --url https://127.0.0.1:PORT [options]
//! ```
//!
//! Same printed lines and JSON keys as the WebTransport modes (`HASH` is printed for
//! the driver but unused: the client trusts any certificate on loopback). Transport
//! settings are quinn's defaults except the stream limits, raised to what the
//! WebTransport targets allow, so a workload's stream count never waits on credit, and
//! the flow-control windows, set to fastwt-core's defaults.

use super::{emit, note_error, percentile, udp_socket, AnyResult, CpuProbe, PAYLOAD};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

const ALPN: &[u8] = b"fastwt-bench-quinn";

/// Chunks one `read_chunks` call may take (quinn's `perf` takes 32).
const READ_CHUNKS: usize = 32;
/// The bulk client's writes: `WRITE_BATCH` slices of `WRITE_CHUNK` bytes (8 MiB) handed
/// to quinn in one `write_all_chunks` call, as quinn's `perf` queues megabytes at once.
const WRITE_CHUNK: usize = 1 << 20;
const WRITE_BATCH: usize = 8;

/// A quinn endpoint on `socket` (from [`udp_socket`]: 4 MiB kernel buffers, as
/// fastwt-core's `socket_buffer` default gives its endpoints).
pub(crate) fn endpoint_on(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> AnyResult<quinn::Endpoint> {
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(10_000u32.into())
        .max_concurrent_uni_streams(1_000u32.into())
        .max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap_or_default()))
        .keep_alive_interval(Some(Duration::from_secs(3)))
        // fastwt-core's defaults (rust/core/src/config.rs), so bulk compares like for like.
        .stream_receive_window((4u32 << 20).into())
        .receive_window((16u32 << 20).into())
        .send_window(16 << 20);
    t
}

pub async fn run_server(seconds: f64) -> AnyResult<()> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_der = CertificateDer::from(cert.cert);
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key.into())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport()));
    let endpoint = endpoint_on(udp_socket()?, Some(config))?;
    println!("PORT {}", endpoint.local_addr()?.port());
    println!("HASH 00");
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    serve(conn).await;
                }
            });
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs_f64(seconds), accept).await;
    Ok(())
}

async fn serve(conn: quinn::Connection) {
    let dg = conn.clone();
    tokio::spawn(async move {
        while let Ok(d) = dg.read_datagram().await {
            if dg.send_datagram(d).is_err() {
                break;
            }
        }
    });
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(echo(send, recv));
    }
}

/// Echoes a stream as quinn's own `perf` tool moves data: up to [`READ_CHUNKS`] chunks
/// taken at once (no copy) and written back in one call, so a bulk transfer is not paced
/// by one 64 KiB chunk per wake-up.
async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut bufs: [bytes::Bytes; READ_CHUNKS] = std::array::from_fn(|_| bytes::Bytes::new());
    while let Ok(Some(n)) = recv.read_chunks(&mut bufs).await {
        if send.write_all_chunks(&mut bufs[..n]).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Trusts any certificate: the server is on loopback and made its own.
#[derive(Debug)]
struct TrustAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn server_addr(url: &str) -> AnyResult<SocketAddr> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    Ok(host_port.parse()?)
}

/// A client configuration offering `alpn`, trusting any certificate (loopback), with
/// `transport`'s settings.
pub(crate) fn client_config(
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> AnyResult<quinn::ClientConfig> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAny(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

async fn connect(url: &str) -> AnyResult<(quinn::Endpoint, quinn::Connection)> {
    let mut endpoint = endpoint_on(udp_socket()?, None)?;
    endpoint.set_default_client_config(client_config(ALPN, transport())?);
    let conn = endpoint.connect(server_addr(url)?, "localhost")?.await?;
    Ok((endpoint, conn))
}

async fn one_request(conn: &quinn::Connection, payload: &[u8]) -> AnyResult<usize> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(payload).await?;
    send.finish()?;
    let reply = recv.read_to_end(1 << 20).await?;
    Ok(reply.len())
}

async fn client_reqresp(duration: f64, concurrency: usize, url: &str, pid: u32) -> AnyResult<()> {
    let (_endpoint, conn) = connect(url).await?;
    one_request(&conn, &[1u8; PAYLOAD]).await?;
    let probe = CpuProbe::start(pid);
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let payload = [7u8; PAYLOAD];
            while Instant::now() < deadline {
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
    tokio::time::sleep_until(deadline.into()).await;
    let (cpu, wall) = probe.stop();
    super::report_requests(tasks, cpu, wall, concurrency).await;
    conn.close(0u32.into(), b"");
    Ok(())
}

/// Requests started at `rate` per second in all, spread round-robin over `sessions`
/// connections, whatever the replies do; latency from when each was due.
async fn client_reqresp_paced(
    duration: f64,
    rate: f64,
    sessions: usize,
    url: &str,
    pid: u32,
) -> AnyResult<()> {
    let mut conns = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..sessions.max(1) {
        let (e, c) = connect(url).await?;
        one_request(&c, &[1u8; PAYLOAD]).await?;
        endpoints.push(e);
        conns.push(c);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<f64>>();
    let probe = CpuProbe::start(pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let mut started = 0u64;
    while Instant::now() < end {
        let due = start + Duration::from_secs_f64(started as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let conn = conns[started as usize % conns.len()].clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = one_request(&conn, &[7u8; PAYLOAD]).await;
            let ms = match r {
                Ok(n) if n == PAYLOAD => Some(due.elapsed().as_secs_f64() * 1e3),
                _ => None,
            };
            let _ = tx.send(ms);
        });
        started += 1;
    }
    let (cpu, wall) = probe.stop();
    drop(tx);
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(r) = rx.recv().await {
            match r {
                Some(ms) => lat.push(ms),
                None => errors += 1,
            }
        }
    })
    .await;
    for c in &conns {
        c.close(0u32.into(), b"");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len() as f64;
    emit(&[
        ("requests", n),
        ("errors", errors as f64),
        ("skipped", 0.0),
        ("stuck", started as f64 - n - errors as f64),
        ("rate", rate),
        ("seconds", wall),
        ("req_per_s", n / wall),
        ("p50_ms", percentile(&lat, 0.50)),
        ("p99_ms", percentile(&lat, 0.99)),
        ("server_cpu_s", cpu),
        ("server_cpu_us_per_request", cpu * 1e6 / n.max(1.0)),
    ]);
    Ok(())
}

/// 64 MiB (`size`) up one bidirectional stream and echoed back: the writer queues 8 MiB
/// per `write_all_chunks` call (slices of one buffer, no copy), the reader takes up to
/// [`READ_CHUNKS`] chunks per `read_chunks` call, as quinn's `perf` moves data.
async fn client_bulk(size: u64, url: &str, pid: u32) -> AnyResult<()> {
    let (_endpoint, conn) = connect(url).await?;
    let probe = CpuProbe::start(pid);
    let (mut send, mut recv) = conn.open_bi().await?;
    let writer = tokio::spawn(async move {
        let block = bytes::Bytes::from(vec![0x5Au8; WRITE_CHUNK]);
        let mut left = size;
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while left > 0 {
            batch.clear();
            while left > 0 && batch.len() < WRITE_BATCH {
                let n = left.min(WRITE_CHUNK as u64) as usize;
                batch.push(block.slice(..n));
                left -= n as u64;
            }
            send.write_all_chunks(&mut batch).await?;
        }
        send.finish()?;
        AnyResult::Ok(())
    });
    let mut bufs: [bytes::Bytes; READ_CHUNKS] = std::array::from_fn(|_| bytes::Bytes::new());
    let mut got = 0u64;
    while let Some(n) = recv.read_chunks(&mut bufs).await? {
        got += bufs[..n].iter().map(|b| b.len() as u64).sum::<u64>();
    }
    writer.await??;
    let (cpu, wall) = probe.stop();
    conn.close(0u32.into(), b"");
    emit(&[
        ("bytes", got as f64),
        ("seconds", wall),
        ("mb_per_s", got as f64 / wall / 1e6),
        ("server_cpu_s", cpu),
        (
            "server_cpu_s_per_gib",
            cpu / (got as f64 / (1u64 << 30) as f64).max(1e-9),
        ),
    ]);
    Ok(())
}

pub async fn run_client(args: &super::Args) -> AnyResult<()> {
    let workload = args.positional.get(1).cloned().unwrap_or_default();
    let url = args.string("url");
    let pid: u32 = args.get("server-pid", 0);
    let duration: f64 = args.get("duration", 5.0);
    match workload.as_str() {
        "reqresp" => client_reqresp(duration, args.get("concurrency", 1), &url, pid).await,
        "reqresp_paced" => {
            let rate = args.get("rate", 200.0);
            client_reqresp_paced(duration, rate, args.get("paced-sessions", 1), &url, pid).await
        }
        "bulk" => client_bulk(args.get("size", 64 * 1024 * 1024), &url, pid).await,
        other => Err(format!("quinn-client has no workload {other:?}").into()),
    }
}
