//! Property test of the stream preamble reader (preamble.rs: a peer stream's type and
//! session id, read incrementally) through a real server: a raw client opens streams
//! whose preamble is generated (any type, our session's id or another, varints of any
//! allowed length) and written in pieces cut at arbitrary points, with a pause between
//! pieces so they arrive apart. Each stream must be routed as its preamble says: ours
//! reach the session with the payload intact (the reader takes exactly the header), the
//! rest are refused with the right code; nothing panics.
//!
//! Cases: `PROPTEST_CASES` (default 24: each case is a few round trips over loopback);
//! with `CI` set the seed is fixed (`PROPTEST_RNG_SEED` overrides it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::h3;
use crate::{Client, ClientOptions, Identity, Server, ServerOptions, Session, TrustMode};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(3);

/// How the server must treat a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Handed to the session.
    Accepted,
    /// Refused with this HTTP/3 code (reset and/or STOP_SENDING).
    Refused(u32),
}

#[derive(Debug, Clone)]
struct Case {
    bidi: bool,
    kind: (u64, usize),
    id: Option<(u64, usize)>,
    /// The stream ends after this many preamble bytes (before it is complete).
    truncate: Option<usize>,
    payload: Vec<u8>,
    cuts: Vec<usize>,
}

fn varint_at(v: u64, len: usize) -> Vec<u8> {
    let mut bytes = v.to_be_bytes()[8 - len..].to_vec();
    bytes[0] |= (len.trailing_zeros() as u8) << 6;
    bytes
}

/// `v` on any allowed encoded length.
fn with_len(v: u64) -> impl Strategy<Value = (u64, usize)> {
    let lens: Vec<usize> = [1usize, 2, 4, 8]
        .into_iter()
        .filter(|l| *l >= h3::varint_len(v))
        .collect();
    (Just(v), prop::sample::select(lens))
}

fn other_varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        64u64..16384,
        16384u64..(1 << 30),
        (1u64 << 30)..(1 << 62)
    ]
}

fn case(session_id: u64) -> impl Strategy<Value = Case> {
    let id = prop_oneof![
        3 => Just(session_id),
        1 => other_varint(),
    ]
    .prop_flat_map(with_len);
    let bidi_kind = prop_oneof![
        3 => Just(h3::FRAME_WT_BIDI),
        1 => Just(h3::FRAME_HEADERS),
        1 => other_varint().prop_filter("unknown", |k| ![h3::FRAME_WT_BIDI, h3::FRAME_HEADERS].contains(k)),
    ];
    // Control and QPACK streams are not refused (they are read or drained): left out.
    let uni_kind = prop_oneof![
        3 => Just(h3::STREAM_WT_UNI),
        1 => other_varint().prop_filter("unknown", |k| ![0x00, 0x02, 0x03, h3::STREAM_WT_UNI].contains(k)),
    ];
    let kind = prop_oneof![
        bidi_kind.prop_map(|k| (true, k)),
        uni_kind.prop_map(|k| (false, k)),
    ];
    (
        kind,
        id,
        proptest::option::weighted(0.15, 0usize..16),
        vec(any::<u8>(), 0..40),
        vec(0usize..64, 0..4),
    )
        .prop_flat_map(|((bidi, kind), id, truncate, payload, cuts)| {
            (
                with_len(kind),
                Just((bidi, kind, id, truncate, payload, cuts)),
            )
        })
        .prop_map(|(kind_enc, (bidi, kind, id, truncate, payload, cuts))| {
            let wt = kind == h3::FRAME_WT_BIDI || kind == h3::STREAM_WT_UNI;
            Case {
                bidi,
                kind: kind_enc,
                id: wt.then_some(id),
                truncate,
                payload,
                cuts,
            }
        })
}

impl Case {
    fn preamble(&self) -> Vec<u8> {
        let mut out = varint_at(self.kind.0, self.kind.1);
        if let Some((id, len)) = self.id {
            out.extend_from_slice(&varint_at(id, len));
        }
        out
    }

    /// The bytes sent, and whether the preamble is cut short by the stream's end.
    fn bytes(&self) -> (Vec<u8>, bool) {
        let preamble = self.preamble();
        match self.truncate {
            Some(n) if n < preamble.len() => (preamble[..n].to_vec(), true),
            _ => ([preamble, self.payload.clone()].concat(), false),
        }
    }

    fn route(&self, session_id: u64) -> Route {
        let (_, truncated) = self.bytes();
        let wt = if self.bidi {
            h3::FRAME_WT_BIDI
        } else {
            h3::STREAM_WT_UNI
        };
        match (self.kind.0, self.id) {
            _ if truncated => Route::Refused(h3::H3_STREAM_CREATION_ERROR),
            (k, Some((id, _))) if k == wt && id == session_id => Route::Accepted,
            (k, Some(_)) if k == wt => Route::Refused(h3::WT_SESSION_GONE),
            (h3::FRAME_HEADERS, _) if self.bidi => Route::Refused(h3::H3_REQUEST_REJECTED),
            _ => Route::Refused(h3::H3_STREAM_CREATION_ERROR),
        }
    }
}

/// Writes `bytes` in pieces; `Some(code)` if the server stopped the stream meanwhile
/// (it does once it has read a header it refuses).
async fn write_in_pieces(
    send: &mut quinn::SendStream,
    bytes: &[u8],
    cuts: &[usize],
) -> Option<u32> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        match send.write_all(&bytes[from..cut]).await {
            Ok(()) => {}
            Err(quinn::WriteError::Stopped(c)) => return Some(code(c)),
            Err(e) => panic!("writing: {e}"),
        }
        from = cut;
        // Long enough for the piece to leave in a packet of its own.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    None
}

async fn read_all(recv: &mut crate::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = recv.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn code(v: quinn::VarInt) -> u32 {
    u32::try_from(v.into_inner()).unwrap()
}

async fn run_case(conn: &quinn::Connection, session: &Session, case: &Case) -> Result<(), String> {
    let (bytes, truncated) = case.bytes();
    let want = case.route(session.id());
    let got = if case.bidi {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let _ = write_in_pieces(&mut send, &bytes, &case.cuts).await;
        if truncated || want == Route::Accepted {
            send.finish().unwrap();
        }
        if want == Route::Accepted {
            let (_, mut server_recv) = tokio::time::timeout(WAIT, session.accept_bi())
                .await
                .map_err(|_| "bidirectional stream not handed to the session")?
                .unwrap();
            let got = tokio::time::timeout(WAIT, read_all(&mut server_recv))
                .await
                .map_err(|_| "payload not delivered")?;
            if got != case.payload {
                return Err(format!("payload {got:?}, sent {:?}", case.payload));
            }
            Route::Accepted
        } else {
            let mut buf = [0u8; 16];
            match tokio::time::timeout(WAIT, recv.read(&mut buf)).await {
                Ok(Err(quinn::ReadError::Reset(c))) => Route::Refused(code(c)),
                other => return Err(format!("bidirectional stream read: {other:?}")),
            }
        }
    } else {
        let mut send = conn.open_uni().await.unwrap();
        let stopped = write_in_pieces(&mut send, &bytes, &case.cuts).await;
        if let Some(c) = stopped {
            Route::Refused(c)
        } else if want == Route::Accepted {
            send.finish().unwrap();
            let mut server_recv = tokio::time::timeout(WAIT, session.accept_uni())
                .await
                .map_err(|_| "unidirectional stream not handed to the session")?
                .unwrap();
            let got = tokio::time::timeout(WAIT, read_all(&mut server_recv))
                .await
                .map_err(|_| "payload not delivered")?;
            if got != case.payload {
                return Err(format!("payload {got:?}, sent {:?}", case.payload));
            }
            Route::Accepted
        } else if truncated {
            // Ended before its header: the server just drops it, nothing to observe.
            send.finish().unwrap();
            return Ok(());
        } else {
            // Not finished, so only a STOP_SENDING can end `stopped()`.
            match tokio::time::timeout(WAIT, send.stopped()).await {
                Ok(Ok(Some(c))) => Route::Refused(code(c)),
                other => return Err(format!("unidirectional stream: {other:?}")),
            }
        }
    };
    if got == want {
        Ok(())
    } else {
        Err(format!("routed as {got:?}, expected {want:?}"))
    }
}

#[test]
fn stream_preambles_in_pieces_are_routed_by_what_they_say() {
    let panics = Arc::new(AtomicUsize::new(0));
    let default_hook = std::panic::take_hook();
    let counter = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_server, _client, conn, session, _kept_open) = rt.block_on(async {
        let identity = Identity::development().unwrap();
        let server = Server::bind(
            ServerOptions {
                bind: vec!["127.0.0.1:0".parse().unwrap()],
                ..Default::default()
            },
            &identity,
        )
        .unwrap();
        let addr = server.local_addrs()[0];
        let client = Client::new(ClientOptions {
            trust: TrustMode::CertificateHashes(vec![identity.certificate_hash()]),
            ..Default::default()
        })
        .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(client.quic_config(), addr, "localhost")
            .unwrap()
            .await
            .unwrap();
        let mut control = conn.open_uni().await.unwrap();
        control
            .write_all(&h3::control_stream_preamble())
            .await
            .unwrap();
        let (mut connect, connect_recv) = conn.open_bi().await.unwrap();
        connect
            .write_all(&h3::encode_headers(&[
                (":method".into(), "CONNECT".into()),
                (":protocol".into(), "webtransport".into()),
                (":scheme".into(), "https".into()),
                (":authority".into(), addr.to_string()),
                (":path".into(), "/fuzz".into()),
            ]))
            .await
            .unwrap();
        let session = tokio::time::timeout(WAIT, server.accept())
            .await
            .unwrap()
            .unwrap();
        session.accept(vec![], None).await.unwrap();
        // The CONNECT stream and our control stream stay open for the session's life.
        (
            server,
            client,
            conn,
            session,
            (connect, connect_recv, control),
        )
    });

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    // The same cases on every CI run unless PROPTEST_RNG_SEED says otherwise.
    let rng_seed = match (std::env::var_os("CI"), std::env::var("PROPTEST_RNG_SEED")) {
        (Some(_), Err(_)) => RngSeed::Fixed(0x6661_7374_7774),
        _ => Config::default().rng_seed,
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        rng_seed,
        ..Config::default()
    });
    let session_id = session.id();
    let result = runner.run(&case(session_id), |case| {
        rt.block_on(run_case(&conn, &session, &case))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        session.close_info().is_none(),
        "the session outlived every stream"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a task panicked");
}
