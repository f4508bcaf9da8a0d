//! Clients that break the protocol must cost the server only their own connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::h3;
use crate::{Client, Server, ServerOptions, Session};
use std::time::Duration;

use super::common;
use common::{connect_request, next_request, raw_connection};

fn setup() -> (Server, Client, std::net::SocketAddr) {
    common::setup(ServerOptions {
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    })
}

/// A raw HTTP/3 client's WebTransport session on `conn`, accepted by `server`: our
/// control stream (kept open by the caller), the CONNECT stream's halves, the session.
async fn raw_session(
    server: &Server,
    conn: &quinn::Connection,
    addr: std::net::SocketAddr,
) -> (
    quinn::SendStream,
    quinn::SendStream,
    quinn::RecvStream,
    Session,
) {
    let mut control = conn.open_uni().await.unwrap();
    control
        .write_all(&h3::control_stream_preamble())
        .await
        .unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&connect_request(addr, "webtransport", "/bad"))
        .await
        .unwrap();
    let session = next_request(server).await;
    session.accept(vec![], None).await.unwrap();
    (control, send, recv, session)
}

/// The server still serves a well-behaved client.
async fn still_serving(server: &Server, client: &Client, addr: std::net::SocketAddr) {
    let url = format!("https://{addr}/good");
    let connect = client.connect(&url, vec![], Some(Duration::from_secs(5)));
    let accept = async {
        let s = next_request(server).await;
        assert_eq!(s.path(), "/good");
        s.accept(vec![], None).await.unwrap();
        s
    };
    let (session, _server_side) = tokio::join!(connect, accept);
    let session = session.unwrap();
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    send.write_all(b"x").await.unwrap();
    drop(recv.stop(0));
    session.close(0, "").await.unwrap();
}

#[tokio::test]
async fn malformed_capsule_and_frames_on_the_connect_stream() {
    let (server, client, addr) = setup();
    let conn = raw_connection(&client, addr).await;
    let (_control, mut send, _recv, session) = raw_session(&server, &conn, addr).await;
    // 01 00: an empty HEADERS frame; then a CLOSE_WEBTRANSPORT_SESSION capsule that is
    // too short to hold its error code.
    send.write_all(&[0x01, 0x00]).await.unwrap();
    send.write_all(&h3::encode_frame(h3::FRAME_DATA, &[0x68, 0x43, 0x01, 0x00]))
        .await
        .unwrap();
    let info = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .unwrap();
    assert!(!info.local);
    // Reported as the peer's protocol error, not as a clean close.
    assert!(info.reason.starts_with("protocol error:"), "{info}");
    still_serving(&server, &client, addr).await;
}

#[tokio::test]
async fn oversize_and_malformed_close_capsules_are_protocol_errors() {
    for capsule in [
        // CLOSE_WEBTRANSPORT_SESSION announcing 100 KiB (over the 64 KiB limit).
        vec![0x68, 0x43, 0x80, 0x01, 0x90, 0x00],
        // A reason of 1025 bytes (the drafts allow 1024).
        {
            let mut c = vec![0x68, 0x43];
            h3::put_varint(&mut c, 4 + 1025);
            c.extend_from_slice(&7u32.to_be_bytes());
            c.extend_from_slice(&[b'x'; 1025]);
            c
        },
        // A reason that is not UTF-8.
        vec![0x68, 0x43, 0x06, 0, 0, 0, 7, 0xff, 0xfe],
    ] {
        let (server, client, addr) = setup();
        let conn = raw_connection(&client, addr).await;
        let (_control, mut send, _recv, session) = raw_session(&server, &conn, addr).await;
        send.write_all(&h3::encode_frame(h3::FRAME_DATA, &capsule))
            .await
            .unwrap();
        let info = tokio::time::timeout(Duration::from_secs(5), session.closed())
            .await
            .unwrap();
        assert_eq!(info.code, 0);
        assert!(info.reason.starts_with("protocol error:"), "{info}");
        still_serving(&server, &client, addr).await;
    }
}

#[tokio::test]
async fn garbage_instead_of_a_connect_request() {
    let (server, client, addr) = setup();
    let conn = raw_connection(&client, addr).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0xff; 64]).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection that sends garbage"
    );
    still_serving(&server, &client, addr).await;
}

#[tokio::test]
async fn silent_client_times_out_and_oversized_headers_are_refused() {
    let (server, client, addr) = setup();
    let silent = raw_connection(&client, addr).await;
    let big = raw_connection(&client, addr).await;
    let (mut send, _recv) = big.open_bi().await.unwrap();
    // A HEADERS frame announcing 1 MiB: over the limit, refused without buffering it.
    let mut header = vec![];
    h3::put_varint(&mut header, h3::FRAME_HEADERS);
    h3::put_varint(&mut header, 1 << 20);
    send.write_all(&header).await.unwrap();
    let silent_closed = tokio::time::timeout(Duration::from_secs(5), silent.closed()).await;
    assert!(
        silent_closed.is_ok(),
        "request_timeout closes a silent connection"
    );
    let big_closed = tokio::time::timeout(Duration::from_secs(5), big.closed()).await;
    assert!(big_closed.is_ok());
    still_serving(&server, &client, addr).await;
}

#[tokio::test]
async fn reset_gets_through_a_write_blocked_by_a_peer_that_never_reads() {
    let (server, client, addr) = setup();
    let conn = raw_connection(&client, addr).await;
    let (_control, _connect, _connect_recv, session) = raw_session(&server, &conn, addr).await;
    let mut send = session.open_uni().await.unwrap();
    // More than the peer's stream window (4 MiB) plus our buffer: the pump blocks.
    let data = vec![7u8; 6 << 20];
    let _ = tokio::time::timeout(Duration::from_millis(500), send.write_all(&data)).await;
    send.reset(5).unwrap();
    // The raw peer never reads the stream; it sees the reset all the same.
    let mut recv = loop {
        let mut recv = conn.accept_uni().await.unwrap();
        let mut kind = [0u8; 1];
        recv.read_exact(&mut kind).await.unwrap();
        if kind[0] == 0x40 {
            break recv; // 0x54 (WebTransport uni) is a two-byte varint: 0x40 0x54
        }
    };
    let reset = tokio::time::timeout(Duration::from_secs(3), recv.received_reset())
        .await
        .expect("the reset arrives although the peer never read");
    assert_eq!(
        reset.unwrap().map(|c| h3::h3_code_to_wt(c.into_inner())),
        Some(5)
    );
}

async fn raw_connection_with(
    client: &Client,
    addr: std::net::SocketAddr,
    transport: quinn::TransportConfig,
) -> quinn::Connection {
    common::raw_connection_with(client, addr, Some(transport)).await
}

#[tokio::test]
async fn a_client_granting_no_stream_credit_is_cut_off_at_the_request_deadline() {
    let (server, client, addr) = setup();
    let mut transport = quinn::TransportConfig::default();
    // Our control stream can never be opened; keep-alives keep the connection up.
    transport
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(Duration::from_millis(100)));
    let conn = raw_connection_with(&client, addr, transport).await;
    let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    assert!(
        closed.is_ok(),
        "request_timeout (500 ms) closes the connection"
    );
    assert_eq!(server.handshake_count(), 0);
    still_serving(&server, &client, addr).await;
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_peer_grants_no_credit() {
    let (server, client, addr) = setup();
    let mut transport = quinn::TransportConfig::default();
    // Room for the 200 on the CONNECT stream, not for a long close capsule; the client
    // never reads, so no more credit comes.
    transport.stream_receive_window(200u32.into());
    let conn = raw_connection_with(&client, addr, transport).await;
    let (_control, _send, _recv, session) = raw_session(&server, &conn, addr).await;
    let started = std::time::Instant::now();
    let reason = "x".repeat(1000);
    tokio::time::timeout(
        Duration::from_secs(5),
        server.close(9, &reason, Duration::from_millis(500)),
    )
    .await
    .expect("Server::close returns although the peer grants no credit");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(session.close_info().is_some());
}
