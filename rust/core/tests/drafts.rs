//! Draft negotiation and SETTINGS validation against raw HTTP/3 clients on quinn: what
//! the server makes of each client's SETTINGS and CONNECT, and the connection errors
//! HTTP/3 prescribes for broken ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fastwt_core::h3;
use fastwt_core::{Client, Draft, Error, Server, ServerOptions, Session, TransportOptions};
use std::time::Duration;

mod common;
use common::raw_connection;

fn setup(transport: TransportOptions) -> (Server, Client, std::net::SocketAddr) {
    common::setup(ServerOptions {
        request_timeout: Duration::from_millis(800),
        transport,
        ..Default::default()
    })
}

/// A control stream preamble with exactly these settings.
fn control_with(settings: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = vec![];
    for (id, v) in settings {
        h3::put_varint(&mut payload, *id);
        h3::put_varint(&mut payload, *v);
    }
    let mut out = vec![];
    h3::put_varint(&mut out, h3::STREAM_CONTROL);
    out.extend(h3::encode_frame(h3::FRAME_SETTINGS, &payload));
    out
}

const DRAFT15: &[(u64, u64)] = &[
    (h3::SETTING_H3_DATAGRAM, 1),
    (h3::SETTING_WT_ENABLED, 1),
    (h3::SETTING_WT_INITIAL_MAX_DATA, 1 << 20),
    (h3::SETTING_WT_INITIAL_MAX_STREAMS_BIDI, 10),
    (h3::SETTING_WT_INITIAL_MAX_STREAMS_UNI, 10),
];

fn connect_request(addr: std::net::SocketAddr, protocol: &str) -> Vec<u8> {
    h3::encode_headers(&[
        (":method".into(), "CONNECT".into()),
        (":protocol".into(), protocol.into()),
        (":scheme".into(), "https".into()),
        (":authority".into(), addr.to_string()),
        (":path".into(), "/raw".into()),
    ])
}

async fn next_request(server: &Server) -> Session {
    tokio::time::timeout(
        Duration::from_secs(5),
        std::future::poll_fn(|cx| server.requests().poll_pop(cx)),
    )
    .await
    .expect("a session request")
    .unwrap()
}

async fn close_code(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the server closes the connection")
    {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("closed otherwise: {other}"),
    }
}

/// Opens the control stream with `settings` and sends a CONNECT; returns the CONNECT
/// stream.
async fn open_session(
    conn: &quinn::Connection,
    addr: std::net::SocketAddr,
    settings: &[(u64, u64)],
    protocol: &str,
) -> (quinn::SendStream, quinn::RecvStream, quinn::SendStream) {
    let mut control = conn.open_uni().await.unwrap();
    control.write_all(&control_with(settings)).await.unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&connect_request(addr, protocol))
        .await
        .unwrap();
    (send, recv, control)
}

/// The response HEADERS on the CONNECT stream, decoded.
async fn response(recv: &mut quinn::RecvStream) -> Vec<(String, String)> {
    let mut buf = vec![];
    loop {
        if let Some((frame, _)) = h3::parse_frame(&buf, h3::MAX_CONTROL_FRAME).unwrap() {
            assert_eq!(frame.kind, h3::FRAME_HEADERS);
            return h3::decode_headers(&frame.payload).unwrap();
        }
        let chunk = recv.read_chunk(4096, true).await.unwrap().unwrap();
        buf.extend_from_slice(&chunk.bytes);
    }
}

#[tokio::test]
async fn draft15_client_gets_draft15_without_the_draft02_header() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let (_send, mut recv, _control) = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    assert_eq!(session.draft(), Draft::Draft15);
    session.accept(vec![]).await.unwrap();
    let fields = response(&mut recv).await;
    assert!(fields.contains(&(":status".into(), "200".into())));
    assert!(fields
        .iter()
        .all(|(k, _)| k != "sec-webtransport-http3-draft"));
    let flow = session
        .flow_control()
        .expect("draft-15 sessions are flow-controlled");
    assert_eq!(flow.peer_max_streams_uni, Some(10));
}

#[tokio::test]
async fn duplicate_settings_are_a_settings_error() {
    let (_server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let settings = [(h3::SETTING_H3_DATAGRAM, 1), (h3::SETTING_H3_DATAGRAM, 1)];
    let _streams = open_session(&conn, addr, &settings, "webtransport").await;
    assert_eq!(close_code(&conn).await, u64::from(h3::H3_SETTINGS_ERROR));
}

#[tokio::test]
async fn a_second_control_stream_is_a_stream_creation_error() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let _streams = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![]).await.unwrap();
    let mut second = conn.open_uni().await.unwrap();
    second.write_all(&control_with(DRAFT15)).await.unwrap();
    assert_eq!(
        close_code(&conn).await,
        u64::from(h3::H3_STREAM_CREATION_ERROR)
    );
}

#[tokio::test]
async fn no_connect_is_handled_before_the_clients_settings() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&connect_request(addr, "webtransport"))
        .await
        .unwrap();
    // No SETTINGS ever: the request timeout ends the connection, no request surfaces.
    assert_eq!(close_code(&conn).await, u64::from(h3::H3_MISSING_SETTINGS));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn datagrams_need_the_peers_h3_datagram_setting() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let settings = [(h3::SETTING_ENABLE_WEBTRANSPORT_DRAFT02, 1)];
    let _streams = open_session(&conn, addr, &settings, "webtransport").await;
    let session = next_request(&server).await;
    assert_eq!(session.draft(), Draft::Draft02);
    session.accept(vec![]).await.unwrap();
    assert!(session.max_datagram_size().is_none());
    assert!(matches!(
        session.send_datagram(b"x"),
        Err(Error::DatagramUnsupported(_))
    ));
}

#[tokio::test]
async fn unknown_capsules_are_ignored() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let (mut send, _recv, _control) = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![]).await.unwrap();
    // An unknown capsule type, then a well-formed close.
    send.write_all(&h3::encode_varint_capsule(0x3f_0000, 7))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        session.close_info().is_none(),
        "an unknown capsule ended the session"
    );
    send.write_all(&h3::encode_close_capsule(9, "done"))
        .await
        .unwrap();
    let info = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .unwrap();
    assert_eq!((info.code, info.reason.as_str()), (9, "done"));
}

#[tokio::test]
async fn more_streams_than_granted_is_a_flow_control_error() {
    let transport = TransportOptions {
        wt_max_streams_uni: 2,
        ..TransportOptions::default()
    };
    let (server, client, addr) = setup(transport);
    let conn = raw_connection(&client, addr).await;
    let _streams = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    // Streams opened before the response (allowed): our SETTINGS granted 2, and no
    // capsule can raise that before the session is accepted; the third is too many.
    let mut header = vec![];
    h3::put_varint(&mut header, h3::STREAM_WT_UNI);
    h3::put_varint(&mut header, session.id());
    let mut opened = vec![];
    for _ in 0..3 {
        let mut uni = conn.open_uni().await.unwrap();
        uni.write_all(&header).await.unwrap();
        opened.push(uni);
    }
    assert_eq!(
        close_code(&conn).await,
        u64::from(h3::WT_FLOW_CONTROL_ERROR)
    );
    assert!(session.close_info().is_some());
}
