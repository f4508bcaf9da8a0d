//! Draft negotiation and SETTINGS validation against raw HTTP/3 clients on quinn: what
//! the server makes of each client's SETTINGS and CONNECT, and the connection errors
//! HTTP/3 prescribes for broken ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::h3;
use crate::{Client, Draft, Error, Server, ServerOptions, TransportOptions};
use std::time::Duration;

use super::common;
use common::{connect_request, control_with, next_request, raw_connection, DRAFT15};

fn setup(transport: TransportOptions) -> (Server, Client, std::net::SocketAddr) {
    common::setup(ServerOptions {
        request_timeout: Duration::from_millis(800),
        transport,
        ..Default::default()
    })
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
    send.write_all(&connect_request(addr, protocol, "/raw"))
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
    session.accept(vec![], None).await.unwrap();
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
    session.accept(vec![], None).await.unwrap();
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
    send.write_all(&connect_request(addr, "webtransport", "/raw"))
        .await
        .unwrap();
    // No SETTINGS ever: the request timeout ends the connection, no request surfaces.
    assert_eq!(close_code(&conn).await, u64::from(h3::H3_MISSING_SETTINGS));
    assert_eq!(server.queued_requests(), 0);
}

#[tokio::test]
async fn datagrams_need_the_peers_h3_datagram_setting() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let settings = [(h3::SETTING_ENABLE_WEBTRANSPORT_DRAFT02, 1)];
    let _streams = open_session(&conn, addr, &settings, "webtransport").await;
    let session = next_request(&server).await;
    assert_eq!(session.draft(), Draft::Draft02);
    session.accept(vec![], None).await.unwrap();
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
    session.accept(vec![], None).await.unwrap();
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

/// The header of a WebTransport stream of `kind` (bidi 0x41, uni 0x54) for `session`.
fn wt_header(kind: u64, session: u64) -> Vec<u8> {
    let mut header = vec![];
    h3::put_varint(&mut header, kind);
    h3::put_varint(&mut header, session);
    header
}

/// Reads the CONNECT stream after the response: the capsules the server sends.
struct Capsules {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    data: Vec<u8>,
}

impl Capsules {
    async fn after_response(mut recv: quinn::RecvStream) -> Self {
        let mut buf = vec![];
        loop {
            if let Some((frame, used)) = h3::parse_frame(&buf, h3::MAX_CONTROL_FRAME).unwrap() {
                assert_eq!(frame.kind, h3::FRAME_HEADERS);
                let fields = h3::decode_headers(&frame.payload).unwrap();
                assert!(fields.contains(&(":status".into(), "200".into())));
                buf.drain(..used);
                return Self {
                    recv,
                    buf,
                    data: vec![],
                };
            }
            let chunk = recv.read_chunk(4096, true).await.unwrap().unwrap();
            buf.extend_from_slice(&chunk.bytes);
        }
    }

    /// The next capsule that `want` accepts (others are skipped), within 5 s.
    async fn until(&mut self, want: impl Fn(&h3::Capsule) -> bool) -> h3::Capsule {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                while let Some((frame, used)) =
                    h3::parse_frame(&self.buf, h3::MAX_CONTROL_FRAME).unwrap()
                {
                    self.buf.drain(..used);
                    if frame.kind == h3::FRAME_DATA {
                        self.data.extend_from_slice(&frame.payload);
                    }
                }
                let (capsules, used) = h3::parse_capsules(&self.data).unwrap();
                self.data.drain(..used);
                if let Some(c) = capsules.into_iter().find(|c| want(c)) {
                    return c;
                }
                let chunk = self.recv.read_chunk(4096, true).await.unwrap().unwrap();
                self.buf.extend_from_slice(&chunk.bytes);
            }
        })
        .await
        .expect("the capsule")
    }
}

/// The server's next WebTransport unidirectional stream (its control stream skipped),
/// with the header read.
async fn accept_wt_uni(conn: &quinn::Connection) -> quinn::RecvStream {
    loop {
        let mut uni = tokio::time::timeout(Duration::from_secs(5), conn.accept_uni())
            .await
            .expect("a stream from the server")
            .unwrap();
        let mut kind = [0u8; 2];
        uni.read_exact(&mut kind[..1]).await.unwrap();
        if kind[0] >> 6 == 1 {
            uni.read_exact(&mut kind[1..]).await.unwrap();
        }
        let (kind, _) = h3::get_varint(&kind).unwrap();
        if kind == h3::STREAM_WT_UNI {
            let mut id = [0u8; 1];
            uni.read_exact(&mut id).await.unwrap();
            return uni;
        }
    }
}

/// The code a read ends with, which must be a reset.
async fn reset_code(recv: &mut quinn::RecvStream) -> u64 {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf))
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            Err(quinn::ReadError::Reset(code)) => return code.into_inner(),
            other => panic!("not reset: {other:?}"),
        }
    }
}

#[tokio::test]
async fn streams_of_an_ended_session_are_reset_with_session_gone() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let (mut send, recv, _control) = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![], None).await.unwrap();
    let _capsules = Capsules::after_response(recv).await;
    let gone = u64::from(h3::WT_SESSION_GONE);
    // A bidirectional stream of the client, taken by the application and half-used.
    let (mut bi_send, mut bi_recv) = conn.open_bi().await.unwrap();
    bi_send
        .write_all(&wt_header(h3::FRAME_WT_BIDI, session.id()))
        .await
        .unwrap();
    bi_send.write_all(b"hello").await.unwrap();
    let (_app_send, mut app_recv) =
        tokio::time::timeout(Duration::from_secs(5), session.accept_bi())
            .await
            .unwrap()
            .unwrap();
    let mut got = [0u8; 5];
    let mut n = 0;
    while n < 5 {
        n += app_recv.read(&mut got[n..]).await.unwrap();
    }
    // A unidirectional stream of the server, not finished.
    let mut out = session.open_uni().await.unwrap();
    out.write_all(b"partial").await.unwrap();
    let mut from_server = accept_wt_uni(&conn).await;
    // The client ends the session; the connection stays up for the grace period.
    send.write_all(&h3::encode_close_capsule(7, "bye"))
        .await
        .unwrap();
    assert_eq!(
        reset_code(&mut bi_recv).await,
        gone,
        "server half of the bidi"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), bi_send.stopped())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stopped.map(|c| c.into_inner()),
        Some(gone),
        "client half of the bidi"
    );
    assert_eq!(
        reset_code(&mut from_server).await,
        gone,
        "the server's uni stream"
    );
    // A stream that arrives for the ended session is refused with it too.
    let (mut late_send, mut late_recv) = conn.open_bi().await.unwrap();
    late_send
        .write_all(&wt_header(h3::FRAME_WT_BIDI, session.id()))
        .await
        .unwrap();
    assert_eq!(reset_code(&mut late_recv).await, gone, "a late stream");
    // The application's halves report the end of the session.
    assert!(matches!(
        app_recv.read(&mut got).await,
        Err(Error::SessionClosed(_))
    ));
    assert!(out.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn streams_beyond_the_unaccepted_queue_get_buffered_stream_rejected() {
    let transport = TransportOptions {
        max_concurrent_uni_streams: 4,
        ..TransportOptions::default()
    };
    let (server, client, addr) = setup(transport);
    let conn = raw_connection(&client, addr).await;
    let (_send, recv, _control) = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![], None).await.unwrap();
    let _capsules = Capsules::after_response(recv).await;
    let header = wt_header(h3::STREAM_WT_UNI, session.id());
    // Four finished streams fill the queue of streams the application has not taken.
    for _ in 0..4 {
        let mut uni = conn.open_uni().await.unwrap();
        uni.write_all(&header).await.unwrap();
        uni.write_all(b"queued").await.unwrap();
        uni.finish().unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while session.0.incoming_uni.len() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("four streams queued");
    // The fifth is refused with WT_BUFFERED_STREAM_REJECTED (it was 0 before).
    let mut fifth = conn.open_uni().await.unwrap();
    fifth.write_all(&header).await.unwrap();
    fifth.write_all(b"refused").await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), fifth.stopped())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stopped.map(|c| c.into_inner()),
        Some(u64::from(h3::WT_BUFFERED_STREAM_REJECTED))
    );
    assert_eq!(session.0.incoming_uni.len(), 4, "the queued ones stay");
}

#[tokio::test]
async fn sends_stay_within_the_peers_wt_max_data_and_max_streams() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let stingy: &[(u64, u64)] = &[
        (h3::SETTING_H3_DATAGRAM, 1),
        (h3::SETTING_WT_ENABLED, 1),
        (h3::SETTING_WT_INITIAL_MAX_DATA, 10),
        (h3::SETTING_WT_INITIAL_MAX_STREAMS_BIDI, 10),
        (h3::SETTING_WT_INITIAL_MAX_STREAMS_UNI, 1),
    ];
    let (mut send, recv, _control) = open_session(&conn, addr, stingy, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![], None).await.unwrap();
    let mut capsules = Capsules::after_response(recv).await;
    let mut out = session.open_uni().await.unwrap();
    out.write_all(&[7u8; 100]).await.unwrap();
    out.finish().unwrap();
    let mut from_server = accept_wt_uni(&conn).await;
    let mut body = vec![0u8; 10];
    from_server.read_exact(&mut body).await.unwrap();
    // Not a byte more than the 10 granted...
    let mut more = [0u8; 100];
    let early = tokio::time::timeout(Duration::from_millis(300), from_server.read(&mut more)).await;
    assert!(early.is_err(), "data beyond WT_MAX_DATA arrived: {early:?}");
    // ...and the server says it is blocked at 10.
    let blocked = capsules
        .until(|c| matches!(c, h3::Capsule::DataBlocked(_)))
        .await;
    assert_eq!(blocked, h3::Capsule::DataBlocked(10));
    send.write_all(&h3::encode_varint_capsule(h3::CAPSULE_WT_MAX_DATA, 110))
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), from_server.read_to_end(1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.len(), 90, "the rest once the credit came");
    // One unidirectional stream granted: the second opening waits for WT_MAX_STREAMS.
    let opener = session.clone();
    let second = tokio::spawn(async move { opener.open_uni().await.map(|_| ()) });
    let blocked = capsules
        .until(|c| matches!(c, h3::Capsule::StreamsBlocked(false, _)))
        .await;
    assert_eq!(blocked, h3::Capsule::StreamsBlocked(false, 1));
    assert!(!second.is_finished(), "opened beyond WT_MAX_STREAMS");
    send.write_all(&h3::encode_varint_capsule(
        h3::CAPSULE_WT_MAX_STREAMS_UNI,
        2,
    ))
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("opened once the credit came")
        .unwrap()
        .unwrap();
    assert_eq!(session.flow_control().unwrap().peer_max_data, Some(110));
}

/// Opens a unidirectional stream of type `kind` and writes a few bytes after the type.
async fn uni_of_type(conn: &quinn::Connection, kind: u64) -> quinn::SendStream {
    let mut stream = conn.open_uni().await.unwrap();
    let mut bytes = vec![];
    h3::put_varint(&mut bytes, kind);
    bytes.extend([0u8; 8]);
    stream.write_all(&bytes).await.unwrap();
    stream
}

/// HTTP/3's rules for the peer's other unidirectional streams, the same before the
/// session exists (control.rs accepts them until SETTINGS) and during it (driver.rs):
/// QPACK encoder and decoder streams are drained, never stopped; a stream of an unknown
/// type is stopped with H3_STREAM_CREATION_ERROR; the connection and session go on.
#[tokio::test]
async fn qpack_streams_are_drained_and_unknown_ones_refused_before_and_during_the_session() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    // Opened before the control stream: accepted (in stream order) while the server
    // still waits for SETTINGS.
    let early_unknown = uni_of_type(&conn, 0x21 + 0x1f).await;
    let early_qpack = uni_of_type(&conn, h3::STREAM_QPACK_ENCODER).await;
    let (_send, _recv, _control) = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![], None).await.unwrap();
    let late_unknown = uni_of_type(&conn, 0x21 + 2 * 0x1f).await;
    let late_qpack = uni_of_type(&conn, h3::STREAM_QPACK_DECODER).await;
    for stream in [early_unknown, late_unknown] {
        let stopped = tokio::time::timeout(Duration::from_secs(5), stream.stopped())
            .await
            .expect("an unknown stream type is stopped")
            .unwrap();
        assert_eq!(
            stopped,
            Some(quinn::VarInt::from_u32(h3::H3_STREAM_CREATION_ERROR))
        );
    }
    for stream in [early_qpack, late_qpack] {
        let stopped = tokio::time::timeout(Duration::from_millis(300), stream.stopped()).await;
        assert!(stopped.is_err(), "a QPACK stream is drained, not stopped");
    }
    assert!(conn.close_reason().is_none());
    assert_eq!(session.phase(), crate::SessionPhase::Accepted);
}

#[tokio::test]
async fn a_datagram_over_the_limit_is_too_large_with_the_payloads_limit() {
    let (server, client, addr) = setup(TransportOptions::default());
    let conn = raw_connection(&client, addr).await;
    let _streams = open_session(&conn, addr, DRAFT15, "webtransport-h3").await;
    let session = next_request(&server).await;
    session.accept(vec![], None).await.unwrap();
    let limit = session.max_datagram_size().unwrap();
    // the limit counts the payload only: the session's datagram header fits beside it
    session.send_datagram(&vec![7; limit]).unwrap();
    match session.send_datagram(&vec![7; 65536]) {
        // the path's limit only grows (MTU discovery), never past a UDP datagram
        Err(Error::DatagramTooLarge { size, max }) => {
            assert_eq!(size, 65536);
            assert!(max >= limit && max < 65536, "max {max}, limit {limit}");
        }
        other => panic!("expected DatagramTooLarge, got {other:?}"),
    }
    assert_eq!(session.stats().datagrams_sent, 1);
}
