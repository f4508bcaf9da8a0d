//! Several sessions on one connection (pooling, `max_sessions_per_connection`), driven by
//! a raw HTTP/3 client on quinn: what the server advertises, how the sessions are kept
//! apart (streams, datagrams, close), and how CONNECTs beyond the limit, or without
//! pooling, are refused while the connection's sessions go on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::h3;
use crate::{Client, Server, ServerOptions, Session};
use std::net::SocketAddr;
use std::time::Duration;

use super::common;
use common::{control_with, next_request, raw_connection, DRAFT15};

fn setup(max_sessions_per_connection: usize) -> (Server, Client, SocketAddr) {
    common::setup(ServerOptions {
        request_timeout: Duration::from_secs(5),
        max_sessions_per_connection,
        ..Default::default()
    })
}

const DRAFT02: &[(u64, u64)] = &[
    (h3::SETTING_H3_DATAGRAM, 1),
    (h3::SETTING_ENABLE_WEBTRANSPORT_DRAFT02, 1),
];

/// Opens the control stream with `settings`; returns it (it must stay open).
async fn control(conn: &quinn::Connection, settings: &[(u64, u64)]) -> quinn::SendStream {
    let mut send = conn.open_uni().await.unwrap();
    send.write_all(&control_with(settings)).await.unwrap();
    send
}

/// Sends a CONNECT (draft-15's `webtransport-h3`, or draft-02's headers) on a new stream.
async fn connect(
    conn: &quinn::Connection,
    addr: SocketAddr,
    path: &str,
    draft02: bool,
) -> (quinn::SendStream, quinn::RecvStream) {
    let mut fields: Vec<(String, String)> = vec![
        (":method".into(), "CONNECT".into()),
        (
            ":protocol".into(),
            if draft02 {
                "webtransport"
            } else {
                "webtransport-h3"
            }
            .into(),
        ),
        (":scheme".into(), "https".into()),
        (":authority".into(), addr.to_string()),
        (":path".into(), path.into()),
    ];
    if draft02 {
        fields.push(("sec-webtransport-http3-draft02".into(), "1".into()));
    }
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&h3::encode_headers(&fields)).await.unwrap();
    (send, recv)
}

/// The `:status` of the response on a CONNECT stream.
async fn status(recv: &mut quinn::RecvStream) -> u16 {
    let mut buf = vec![];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some((frame, _)) = h3::parse_frame(&buf, h3::MAX_CONTROL_FRAME).unwrap() {
                assert_eq!(frame.kind, h3::FRAME_HEADERS);
                let fields = h3::decode_headers(&frame.payload).unwrap();
                let status = fields.iter().find(|(k, _)| k == ":status").unwrap();
                return status.1.parse().unwrap();
            }
            let chunk = recv.read_chunk(4096, true).await.unwrap().unwrap();
            buf.extend_from_slice(&chunk.bytes);
        }
    })
    .await
    .expect("a response")
}

/// The code the server resets a CONNECT stream with (no response).
async fn rejected(recv: &mut quinn::RecvStream) -> u64 {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf))
        .await
        .expect("the stream ends")
    {
        Err(quinn::ReadError::Reset(code)) => code.into_inner(),
        other => panic!("not reset: {other:?}"),
    }
}

/// The server's SETTINGS, from its control stream.
async fn server_settings(conn: &quinn::Connection) -> Vec<(u64, u64)> {
    let mut uni = conn.accept_uni().await.unwrap();
    let mut buf = vec![];
    loop {
        let chunk = uni.read_chunk(4096, true).await.unwrap().unwrap();
        buf.extend_from_slice(&chunk.bytes);
        let (kind, n) = h3::get_varint(&buf).unwrap();
        assert_eq!(kind, h3::STREAM_CONTROL);
        if let Some((frame, _)) = h3::parse_frame(&buf[n..], h3::MAX_CONTROL_FRAME).unwrap() {
            assert_eq!(frame.kind, h3::FRAME_SETTINGS);
            return h3::parse_settings(&frame.payload).unwrap();
        }
    }
}

/// Opens a bidirectional stream of `session`, sends `body` and finishes.
async fn send_on_stream(conn: &quinn::Connection, session: u64, body: &[u8]) -> quinn::RecvStream {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let mut header = vec![];
    h3::put_varint(&mut header, h3::FRAME_WT_BIDI);
    h3::put_varint(&mut header, session);
    send.write_all(&header).await.unwrap();
    send.write_all(body).await.unwrap();
    send.finish().unwrap();
    recv
}

/// The next peer stream of `session`, read to its end.
async fn receive_stream(session: &Session) -> Vec<u8> {
    let (_send, mut recv) = tokio::time::timeout(Duration::from_secs(5), session.accept_bi())
        .await
        .expect("a stream")
        .unwrap();
    let mut out = vec![];
    let mut buf = [0u8; 256];
    loop {
        let n = recv.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn datagram(session: u64, payload: &[u8]) -> bytes::Bytes {
    let mut d = vec![];
    h3::put_varint(&mut d, session / 4);
    d.extend_from_slice(payload);
    d.into()
}

async fn next_datagram(session: &Session) -> bytes::Bytes {
    tokio::time::timeout(Duration::from_secs(5), session.read_datagram())
        .await
        .expect("a datagram")
        .unwrap()
}

#[tokio::test]
async fn pooled_sessions_are_isolated_and_the_limit_holds() {
    let (server, client, addr) = setup(2);
    let conn = raw_connection(&client, addr).await;
    let settings = server_settings(&conn).await;
    assert!(settings.contains(&(h3::SETTING_WT_MAX_SESSIONS, 2)));
    for id in [
        h3::SETTING_WT_INITIAL_MAX_DATA,
        h3::SETTING_WT_INITIAL_MAX_STREAMS_BIDI,
        h3::SETTING_WT_INITIAL_MAX_STREAMS_UNI,
    ] {
        assert!(
            settings.iter().any(|&(k, v)| k == id && v > 0),
            "{id:#x} is not advertised non-zero: {settings:?}"
        );
    }
    let _control = control(&conn, DRAFT15).await;
    let (mut first_send, mut first_recv) = connect(&conn, addr, "/one", false).await;
    let one = next_request(&server).await;
    one.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut first_recv).await, 200);
    let (_second_send, mut second_recv) = connect(&conn, addr, "/two", false).await;
    let two = next_request(&server).await;
    assert_eq!(two.path(), "/two");
    assert_ne!(one.id(), two.id());
    two.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut second_recv).await, 200);
    assert_eq!(server.session_count(), 2, "both count in admission");

    // Streams and datagrams reach their own session only.
    let _a = send_on_stream(&conn, two.id(), b"for two").await;
    let _b = send_on_stream(&conn, one.id(), b"for one").await;
    assert_eq!(receive_stream(&two).await, b"for two");
    assert_eq!(receive_stream(&one).await, b"for one");
    conn.send_datagram(datagram(two.id(), b"dgram two"))
        .unwrap();
    conn.send_datagram(datagram(one.id(), b"dgram one"))
        .unwrap();
    assert_eq!(&next_datagram(&two).await[..], b"dgram two");
    assert_eq!(&next_datagram(&one).await[..], b"dgram one");
    assert!(one.0.incoming_bi.is_empty() && two.0.incoming_bi.is_empty());

    // A third CONNECT beyond the limit of 2 is refused with 429; both go on.
    let (_third_send, mut third_recv) = connect(&conn, addr, "/three", false).await;
    assert_eq!(status(&mut third_recv).await, 429);

    // Closing one leaves the other (and the connection) alive.
    first_send
        .write_all(&h3::encode_close_capsule(5, "one done"))
        .await
        .unwrap();
    let info = tokio::time::timeout(Duration::from_secs(5), one.closed())
        .await
        .unwrap();
    assert_eq!((info.code, info.reason.as_str()), (5, "one done"));
    tokio::time::sleep(Duration::from_millis(700)).await; // past the close grace period
    assert!(
        conn.close_reason().is_none(),
        "the connection went with one session"
    );
    assert!(two.close_info().is_none());
    let _c = send_on_stream(&conn, two.id(), b"still here").await;
    assert_eq!(receive_stream(&two).await, b"still here");
    // The server's own stream and datagram on the remaining session.
    two.send_datagram(b"from two").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, datagram(two.id(), b"from two"));
    // With one session gone there is room again.
    let (_fourth_send, mut fourth_recv) = connect(&conn, addr, "/four", false).await;
    let four = next_request(&server).await;
    four.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut fourth_recv).await, 200);
    assert_eq!(server.session_count(), 2);
}

#[tokio::test]
async fn a_second_connect_is_refused_without_pooling() {
    // The default: one session per connection.
    let (server, client, addr) = setup(1);
    let conn = raw_connection(&client, addr).await;
    let settings = server_settings(&conn).await;
    assert!(settings.contains(&(h3::SETTING_WT_MAX_SESSIONS, 1)));
    let _control = control(&conn, DRAFT15).await;
    let (_s, mut r) = connect(&conn, addr, "/one", false).await;
    let one = next_request(&server).await;
    one.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut r).await, 200);
    let (_s2, mut r2) = connect(&conn, addr, "/two", false).await;
    assert_eq!(rejected(&mut r2).await, u64::from(h3::H3_REQUEST_REJECTED));
    let _b = send_on_stream(&conn, one.id(), b"alive").await;
    assert_eq!(receive_stream(&one).await, b"alive");
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn draft02_clients_never_pool() {
    // Pooling allowed, but Chrome and Firefox speak draft-02, which has no pooling.
    let (server, client, addr) = setup(4);
    let conn = raw_connection(&client, addr).await;
    let _control = control(&conn, DRAFT02).await;
    let (_s, mut r) = connect(&conn, addr, "/one", true).await;
    let one = next_request(&server).await;
    one.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut r).await, 200);
    let (_s2, mut r2) = connect(&conn, addr, "/two", true).await;
    assert_eq!(rejected(&mut r2).await, u64::from(h3::H3_REQUEST_REJECTED));
    let _b = send_on_stream(&conn, one.id(), b"alive").await;
    assert_eq!(receive_stream(&one).await, b"alive");
    // A draft-02 request on a connection that pools (its first session draft-15) gets
    // 429: draft-02 has no pooling.
    let conn = raw_connection(&client, addr).await;
    let _control = control(&conn, DRAFT15).await;
    let (_s, mut r) = connect(&conn, addr, "/fifteen", false).await;
    next_request(&server)
        .await
        .accept(vec![], None)
        .await
        .unwrap();
    assert_eq!(status(&mut r).await, 200);
    let (_s3, mut r3) = connect(&conn, addr, "/two", true).await;
    assert_eq!(status(&mut r3).await, 429);
}

#[tokio::test]
async fn the_limit_is_validated() {
    let identity = crate::Identity::development().unwrap();
    for bad in [0, crate::MAX_SESSIONS_PER_CONNECTION + 1] {
        let options = ServerOptions {
            bind: vec!["127.0.0.1:0".parse().unwrap()],
            max_sessions_per_connection: bad,
            ..Default::default()
        };
        let err = Server::bind(options, &identity).unwrap_err();
        assert!(
            err.to_string().contains("max_sessions_per_connection"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn pooled_sessions_count_in_admission() {
    // One session per client address: the pooled second gets 429; a server full of
    // sessions answers it 503. The first session goes on either way.
    for (options, want) in [
        (
            ServerOptions {
                max_sessions_per_ip: Some(1),
                ..Default::default()
            },
            429,
        ),
        (
            ServerOptions {
                max_sessions: 1,
                ..Default::default()
            },
            503,
        ),
    ] {
        let (server, client, addr) = common::setup(ServerOptions {
            request_timeout: Duration::from_secs(5),
            max_sessions_per_connection: 2,
            ..options
        });
        let conn = raw_connection(&client, addr).await;
        let _control = control(&conn, DRAFT15).await;
        let (_s, mut r) = connect(&conn, addr, "/one", false).await;
        let one = next_request(&server).await;
        one.accept(vec![], None).await.unwrap();
        assert_eq!(status(&mut r).await, 200);
        let (_s2, mut r2) = connect(&conn, addr, "/two", false).await;
        assert_eq!(status(&mut r2).await, want);
        assert_eq!(server.session_count(), 1);
        let _b = send_on_stream(&conn, one.id(), b"alive").await;
        assert_eq!(receive_stream(&one).await, b"alive");
        assert!(conn.close_reason().is_none());
    }
}

#[tokio::test]
async fn a_flow_control_violation_ends_only_that_pooled_session() {
    let (server, client, addr) = common::setup(ServerOptions {
        request_timeout: Duration::from_secs(5),
        max_sessions_per_connection: 2,
        transport: crate::TransportOptions {
            wt_max_streams_uni: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    let conn = raw_connection(&client, addr).await;
    let _control = control(&conn, DRAFT15).await;
    let (_s1, mut r1) = connect(&conn, addr, "/one", false).await;
    let one = next_request(&server).await;
    one.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut r1).await, 200);
    let (_s2, mut r2) = connect(&conn, addr, "/two", false).await;
    let two = next_request(&server).await;
    two.accept(vec![], None).await.unwrap();
    assert_eq!(status(&mut r2).await, 200);
    // Three unidirectional streams for the second session: one over its WT_MAX_STREAMS.
    let mut header = vec![];
    h3::put_varint(&mut header, h3::STREAM_WT_UNI);
    h3::put_varint(&mut header, two.id());
    let mut opened = vec![];
    for _ in 0..3 {
        let mut uni = conn.open_uni().await.unwrap();
        uni.write_all(&header).await.unwrap();
        opened.push(uni);
    }
    let info = tokio::time::timeout(Duration::from_secs(5), two.closed())
        .await
        .unwrap();
    assert!(info.reason.contains("over the 2 granted"), "{info}");
    // Its CONNECT stream is reset with WT_FLOW_CONTROL_ERROR...
    let mut buf = [0u8; 256];
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), r2.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(Some(_)) => continue,
            Err(quinn::ReadError::Reset(code)) => break code.into_inner(),
            other => panic!("not reset: {other:?}"),
        }
    };
    assert_eq!(code, u64::from(h3::WT_FLOW_CONTROL_ERROR));
    // ...and the first session and the connection go on.
    assert!(conn.close_reason().is_none());
    assert!(one.close_info().is_none());
    let _b = send_on_stream(&conn, one.id(), b"unaffected").await;
    assert_eq!(receive_stream(&one).await, b"unaffected");
}
