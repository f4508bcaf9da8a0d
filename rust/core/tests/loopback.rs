//! Server and client of this crate talking over 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fastwt_core::{
    Client, ClientOptions, Error, Identity, Server, ServerOptions, Session, Spawner, StreamTask,
    TrustMode,
};
use std::task::Poll;
use std::time::Duration;

fn server() -> (Server, String, [u8; 32]) {
    let identity = Identity::development().unwrap();
    let options = ServerOptions {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..Default::default()
    };
    let server = Server::bind(options, &identity).unwrap();
    let port = server.local_addrs()[0].port();
    (
        server,
        format!("https://127.0.0.1:{port}"),
        identity.certificate_hash(),
    )
}

fn client(hash: [u8; 32]) -> Client {
    Client::new(ClientOptions {
        trust: TrustMode::CertificateHashes(vec![hash]),
        ..Default::default()
    })
    .unwrap()
}

async fn next_request(server: &Server) -> Session {
    server.accept().await.unwrap()
}

#[tokio::test]
async fn echo_stream_datagram_and_close_codes() {
    let (server, base, hash) = server();
    let client = client(hash);
    let server_task = tokio::spawn(async move {
        let session = next_request(&server).await;
        assert_eq!(session.path(), "/echo?x=1");
        assert!(session
            .headers()
            .iter()
            .any(|(k, v)| k == "x-token" && v == "abc"));
        session.accept(vec![], None).await.unwrap();
        let (mut send, mut recv) = session.accept_bi().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        loop {
            let n = recv.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        send.write_all(&got).await.unwrap();
        send.finish().unwrap();
        let d = session.read_datagram().await.unwrap();
        session.send_datagram(&d).unwrap();
        let info = session.closed().await;
        (info, server)
    });
    let session = client
        .connect(
            &format!("{base}/echo?x=1"),
            vec![("X-Token".into(), "abc".into())],
            None,
        )
        .await
        .unwrap();
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    let mut buf = vec![0u8; 64];
    let n = recv.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    let max = session.max_datagram_size().unwrap();
    assert!(matches!(
        session.send_datagram(&vec![0u8; max + 1]),
        Err(Error::DatagramTooLarge { .. })
    ));
    session.send_datagram(b"ping").unwrap();
    let d = session.read_datagram().await.unwrap();
    assert_eq!(&d[..], b"ping");
    session.close(42, "bye").await.unwrap();
    let (info, _server) = tokio::time::timeout(Duration::from_secs(5), server_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.code, info.reason.as_str(), info.local),
        (42, "bye", false)
    );
}

#[tokio::test]
async fn rejection_status_and_headers_reach_client() {
    let (server, base, hash) = server();
    let client = client(hash);
    let server_task = tokio::spawn(async move {
        for status in [401u16, 403, 404, 429, 500] {
            let session = next_request(&server).await;
            session
                .reject(status, vec![("retry-after".into(), "7".into())])
                .await
                .unwrap();
        }
        server
    });
    for status in [401u16, 403, 404, 429, 500] {
        match client.connect(&format!("{base}/x"), vec![], None).await {
            Err(Error::Rejected {
                status: got,
                headers,
            }) => {
                assert_eq!(got, status);
                assert!(headers.iter().any(|(k, v)| k == "retry-after" && v == "7"));
            }
            other => panic!("expected rejection, got {other:?}"),
        }
    }
    server_task.await.unwrap();
}

#[tokio::test]
async fn server_close_reaches_client_with_code() {
    let (server, base, hash) = server();
    let client = client(hash);
    let connect =
        tokio::spawn(async move { client.connect(&format!("{base}/"), vec![], None).await });
    let s = next_request(&server).await;
    s.accept(vec![], None).await.unwrap();
    let session = connect.await.unwrap().unwrap();
    server.close(7, "shutdown", Duration::from_secs(1)).await;
    let info = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .unwrap();
    assert_eq!((info.code, info.reason.as_str()), (7, "shutdown"));
}

#[tokio::test]
async fn wrong_certificate_hash_fails_handshake() {
    let (server, base, _hash) = server();
    let client = client([1u8; 32]);
    let r = client
        .connect(&format!("{base}/"), vec![], Some(Duration::from_secs(3)))
        .await;
    assert!(matches!(r, Err(Error::Connection(_))), "{r:?}");
    drop(server);
}

/// Sessions start with a small stream credit; the first stream of a direction must open
/// the configured limit, or holding more than the credit open at once would stall.
#[tokio::test]
async fn stream_credit_opens_to_the_configured_limit() {
    const OPEN_AT_ONCE: usize = 60;
    let (server, base, hash) = server();
    let client = client(hash);
    let server_task = tokio::spawn(async move {
        let session = next_request(&server).await;
        session.accept(vec![], None).await.unwrap();
        let mut held_bi = Vec::new();
        let mut held_uni = Vec::new();
        for _ in 0..OPEN_AT_ONCE {
            held_bi.push(session.accept_bi().await.unwrap());
            held_uni.push(session.accept_uni().await.unwrap());
        }
        (held_bi.len(), held_uni.len(), session, server)
    });
    let session = client
        .connect(&format!("{base}/streams"), vec![], None)
        .await
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..OPEN_AT_ONCE {
        // Each stream stays open (not finished) until the end of the test.
        let (mut send, recv) = session.open_bi().await.unwrap();
        send.write_all(b"x").await.unwrap();
        let mut uni = session.open_uni().await.unwrap();
        uni.write_all(b"y").await.unwrap();
        open.push((send, recv, uni));
    }
    let (bi, uni, _server_session, _server) =
        tokio::time::timeout(Duration::from_secs(10), server_task)
            .await
            .expect("server did not see every stream: credit not raised")
            .unwrap();
    assert_eq!((bi, uni), (OPEN_AT_ONCE, OPEN_AT_ONCE));
}

#[tokio::test]
async fn reading_into_an_empty_buffer_returns_zero_at_once() {
    let (server, base, hash) = server();
    let client = client(hash);
    let server_task = tokio::spawn(async move {
        let session = next_request(&server).await;
        session.accept(vec![], None).await.unwrap();
        let (_send, mut recv) = session.accept_bi().await.unwrap();
        // An empty buffer (it used to panic on `buf[0..1]`) reads nothing, data waiting or not.
        assert_eq!(recv.read(&mut []).await.unwrap(), 0);
        let mut buf = [0u8; 16];
        let n = recv.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"x");
        assert_eq!(recv.read(&mut []).await.unwrap(), 0);
        (session, server)
    });
    let session = client
        .connect(&format!("{base}/"), vec![], None)
        .await
        .unwrap();
    let (mut send, _recv) = session.open_bi().await.unwrap();
    send.write_all(b"x").await.unwrap();
    send.finish().unwrap();
    let (_session, _server) = tokio::time::timeout(Duration::from_secs(5), server_task)
        .await
        .unwrap()
        .unwrap();
}

/// A [`Spawner`] that keeps the tasks it is given, as the Python bindings' does until
/// their event loop's turn ends.
struct Collect(Vec<StreamTask>);

impl Spawner for Collect {
    fn spawn(&mut self, task: StreamTask) {
        self.0.push(task);
    }
}

/// The poll forms, used the way a caller on a thread of its own uses them: an answer
/// that fits the send window is done when `accept` returns; a bad rejection status is
/// refused at once; an opening polled once with a spawner hands it the new stream's
/// pumps (its data moves only once they run) instead of spawning them; datagrams are
/// taken several at a time.
#[tokio::test]
async fn poll_forms_answer_open_with_a_spawner_and_batch_datagrams() {
    let (server, base, hash) = server();
    let client = client(hash);
    let server_task = tokio::spawn(async move {
        let session = next_request(&server).await;
        assert!(matches!(
            session.reject(200, vec![]).ready(),
            Ok(Err(Error::InvalidArgument(_)))
        ));
        assert!(matches!(session.accept(vec![], None).ready(), Ok(Ok(()))));
        assert!(matches!(
            session.accept(vec![], None).ready(),
            Ok(Err(Error::InvalidState(_)))
        ));
        let (mut send, mut recv) = session.accept_bi().await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = recv.read(&mut buf).await.unwrap();
        send.write_all(&buf[..n]).await.unwrap();
        send.finish().unwrap();
        for i in 0..3u8 {
            session.send_datagram(&[i]).unwrap();
        }
        session.closed().await;
        server
    });
    let session = client
        .connect(&format!("{base}/"), vec![], None)
        .await
        .unwrap();
    let mut spawner = Collect(Vec::new());
    let mut open = session.open_bi();
    let noop = &mut std::task::Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(Ok((mut send, mut recv))) = open.poll_spawning(noop, &mut spawner) else {
        panic!("a stream with credit opens at the first poll");
    };
    assert_eq!(spawner.0.len(), 2, "one pump per half, none spawned");
    send.write_all(b"spawned").await.unwrap();
    send.finish().unwrap();
    let mut buf = vec![0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), recv.read(&mut buf)).await;
    assert!(early.is_err(), "no data moves before the pumps run");
    for task in spawner.0.drain(..) {
        tokio::spawn(task);
    }
    let n = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"spawned");
    let mut datagrams = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while datagrams.len() < 3 {
            let batch =
                std::future::poll_fn(|cx| session.poll_read_datagrams(cx, 8, &mut datagrams))
                    .await
                    .unwrap();
            assert!(batch >= 1);
        }
    })
    .await
    .unwrap();
    assert_eq!(datagrams, [&[0u8][..], &[1], &[2]]);
    session.close(0, "").await.unwrap();
    let _server = tokio::time::timeout(Duration::from_secs(5), server_task)
        .await
        .unwrap()
        .unwrap();
}

/// A reply stream finished just before the session's close reaches the client: the
/// close waits until the peer has acknowledged it (CLOSE_WEBTRANSPORT_SESSION travels on
/// the CONNECT stream and would overtake it; a client drops a stream that arrives after
/// its session ended). Without the wait, most rounds lose the reply.
#[tokio::test]
async fn reply_finished_just_before_the_close_arrives_first() {
    const ROUNDS: usize = 20;
    let reply = vec![b'r'; 3000];
    let (server, base, hash) = server();
    let client = client(hash);
    let sent = reply.clone();
    // The server stays up until the client is done (dropping it closes its endpoint).
    let (done, client_done) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(async move {
        for _ in 0..ROUNDS {
            let session = next_request(&server).await;
            session.accept(vec![], None).await.unwrap();
            let mut send = session.open_uni().await.unwrap();
            send.write_all(&sent).await.unwrap();
            send.finish().unwrap();
            session.close(7, "done").await.unwrap();
        }
        let _ = client_done.await;
    });
    for _ in 0..ROUNDS {
        let session = client
            .connect(&format!("{base}/"), vec![], None)
            .await
            .unwrap();
        let mut recv = tokio::time::timeout(Duration::from_secs(5), session.accept_uni())
            .await
            .expect("no reply stream within 5 s")
            .expect("the session closed before its reply stream arrived");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = recv.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, reply);
        let info = session.closed().await;
        assert_eq!((info.code, info.reason.as_str()), (7, "done"), "{info:?}");
    }
    let _ = done.send(());
    server_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_datagram_wait_drops_nothing_when_the_sender_outruns_the_path() {
    // 40,000 datagrams of 64 bytes are about 2.8 MB for a client send buffer of 16 KiB
    // (quinn's default is 1 MiB: a debug build on a loaded machine did not always outrun
    // the loopback path with that, and then the test proved nothing): sent in a tight
    // loop, the non-waiting send would drop the oldest queued ones; the waiting one
    // queues each only when there is room, so every one leaves and arrives.
    const TOTAL: u64 = 40_000;
    let (server, base, hash) = server();
    let client = Client::new(ClientOptions {
        trust: TrustMode::CertificateHashes(vec![hash]),
        transport: fastwt_core::TransportOptions {
            datagram_send_buffer: 16 * 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let server_task = tokio::spawn(async move {
        let session = next_request(&server).await;
        session.accept(vec![], None).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        while (seen.len() as u64) < TOTAL {
            let d = session.read_datagram().await.unwrap();
            seen.insert(u64::from_le_bytes(d[..8].try_into().unwrap()));
        }
        (seen.len() as u64, session.stats(), server)
    });
    let session = client
        .connect(&format!("{base}/count"), vec![], None)
        .await
        .unwrap();
    let max = session.max_datagram_size().unwrap();
    assert!(matches!(
        session.send_datagram_wait(&vec![0u8; max + 1]).ready(),
        Ok(Err(Error::DatagramTooLarge { .. }))
    ));
    let mut waited = 0u64;
    for i in 0..TOTAL {
        let mut payload = [0u8; 64];
        payload[..8].copy_from_slice(&i.to_le_bytes());
        match session.send_datagram_wait(&payload).ready() {
            Ok(queued) => queued.unwrap(),
            Err(wait) => {
                waited += 1;
                wait.await.unwrap();
            }
        }
    }
    assert!(
        waited > 0,
        "the buffer never filled: the test proves nothing"
    );
    let (received, server_stats, _server) =
        tokio::time::timeout(Duration::from_secs(60), server_task)
            .await
            .expect("the server did not get every datagram")
            .unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(server_stats.datagrams_received, TOTAL);
    let stats = session.stats();
    assert_eq!(stats.datagrams_sent, TOTAL);
    assert_eq!(stats.datagram_frames_sent, TOTAL);
}
