//! The peer's HTTP/3 control stream and SETTINGS, before and during the session.
//!
//! Neither side handles a CONNECT before it has the peer's SETTINGS: they tell the
//! server which draft the client speaks and the client which `:protocol` to send, and
//! whether HTTP datagrams may be sent at all. So each connection first accepts the
//! peer's unidirectional streams here until the control stream's SETTINGS arrived
//! (bounded by the request or connect timeout); WebTransport streams that come before
//! their session are kept (a few) and handed to the session once it exists. After the
//! SETTINGS, the session's own accept loop (driver.rs) takes over new streams, and the
//! control stream keeps being read here for the connection's life.

use crate::draft::PeerSettings;
use crate::error::{Error, Result};
use crate::h3;
use crate::preamble::Preamble;
use crate::session::Session;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::debug;

/// WebTransport unidirectional streams kept while their session does not exist yet;
/// more are refused with WT_BUFFERED_STREAM_REJECTED.
const MAX_EARLY_STREAMS: usize = 16;

/// What the connection learned before its session existed, and where streams that
/// arrive late go.
pub(crate) struct Early {
    state: Mutex<EarlyState>,
    control_seen: AtomicBool,
}

#[derive(Default)]
struct EarlyState {
    session: Option<Session>,
    stash: Vec<(u64, quinn::RecvStream)>,
    gone: bool,
}

impl Early {
    fn lock(&self) -> std::sync::MutexGuard<'_, EarlyState> {
        // Poison only means a panic elsewhere; the state is valid between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session exists: streams kept for it are handed over, later ones go straight
    /// to it.
    pub(crate) fn attach(&self, session: &Session) {
        let stash = {
            let mut s = self.lock();
            s.session = Some(session.clone());
            std::mem::take(&mut s.stash)
        };
        for (id, recv) in stash {
            route_wt_uni(session, id, recv);
        }
    }

    /// No session will come (refused request): kept streams are dropped.
    pub(crate) fn abandon(&self) {
        let mut s = self.lock();
        s.gone = true;
        for (_, mut recv) in s.stash.drain(..) {
            let _ = recv.stop(quinn::VarInt::from_u32(h3::WT_SESSION_GONE));
        }
    }

    fn session(&self) -> Option<Session> {
        self.lock().session.clone()
    }

    fn keep(&self, id: u64, mut recv: quinn::RecvStream) {
        let mut s = self.lock();
        if let Some(session) = s.session.clone() {
            drop(s);
            route_wt_uni(&session, id, recv);
            return;
        }
        if s.gone {
            // The request was refused: no session will come for this stream.
            let _ = recv.stop(quinn::VarInt::from_u32(h3::WT_SESSION_GONE));
            return;
        }
        if s.stash.len() >= MAX_EARLY_STREAMS {
            let _ = recv.stop(quinn::VarInt::from_u32(h3::WT_BUFFERED_STREAM_REJECTED));
            return;
        }
        s.stash.push((id, recv));
    }
}

fn route_wt_uni(session: &Session, id: u64, mut recv: quinn::RecvStream) {
    if id == session.id() {
        crate::driver::push_uni(session, recv);
    } else {
        let _ = recv.stop(quinn::VarInt::from_u32(h3::WT_SESSION_GONE));
    }
}

/// Closes the connection for an HTTP/3 connection error.
fn connection_error(conn: &quinn::Connection, code: u32, reason: &str) {
    debug!(target: "fastwt.core", peer = %conn.remote_address(), "HTTP/3 connection error {code:#x}: {reason}");
    conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
}

/// Accepts the peer's unidirectional streams until its SETTINGS arrived (at most
/// `timeout`), then returns them validated. A bad SETTINGS frame, a missing one or a
/// second control stream closes the connection with the HTTP/3 error code.
pub(crate) async fn peer_settings(
    conn: &quinn::Connection,
    timeout: Duration,
) -> Result<(PeerSettings, Arc<Early>)> {
    let early = Arc::new(Early {
        state: Mutex::new(EarlyState::default()),
        control_seen: AtomicBool::new(false),
    });
    let (tx, rx) = oneshot::channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(early_uni_loop(
        conn.clone(),
        early.clone(),
        Arc::new(Mutex::new(Some(tx))),
        stop_rx,
    ));
    let result = tokio::time::timeout(timeout, rx).await;
    let _ = stop_tx.send(true);
    match result {
        Ok(Ok(settings)) => Ok((settings, early)),
        Ok(Err(_)) => Err(Error::Connection(
            "connection ended before the peer's SETTINGS".into(),
        )),
        Err(_) => Err(Error::Timeout("no SETTINGS from the peer".into())),
    }
}

type SettingsSender = Arc<Mutex<Option<oneshot::Sender<PeerSettings>>>>;

async fn early_uni_loop(
    conn: quinn::Connection,
    early: Arc<Early>,
    tx: SettingsSender,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let recv = tokio::select! {
            r = conn.accept_uni() => match r {
                Ok(r) => r,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (conn, early, tx) = (conn.clone(), early.clone(), tx.clone());
        tokio::spawn(async move {
            let mut recv = recv;
            let mut preamble = Preamble::new();
            let is_wt = |kind: u64| kind == h3::STREAM_WT_UNI;
            let header = std::future::poll_fn(|cx| preamble.poll(&mut recv, cx, is_wt)).await;
            match header {
                Ok(Some((h3::STREAM_WT_UNI, Some(id)))) => early.keep(id, recv),
                Ok(Some((h3::STREAM_CONTROL, _))) => {
                    read_control_stream(conn, early, recv, Some(tx)).await;
                }
                Ok(Some((h3::STREAM_QPACK_ENCODER | h3::STREAM_QPACK_DECODER, _))) => {
                    // We advertise a zero-size dynamic table; drain whatever comes.
                    while let Ok(Some(_)) = recv.read_chunk(usize::MAX, false).await {}
                }
                Ok(Some(_)) => {
                    let _ = recv.stop(quinn::VarInt::from_u32(h3::H3_STREAM_CREATION_ERROR));
                }
                Ok(None) => {}
                Err(e) => debug!(target: "fastwt.core", "unidirectional stream header: {e}"),
            }
        });
    }
}

/// A control stream of the peer, accepted by the session's accept loop after SETTINGS:
/// HTTP/3 allows only one (H3_STREAM_CREATION_ERROR).
pub(crate) fn second_control_stream(conn: &quinn::Connection) {
    connection_error(conn, h3::H3_STREAM_CREATION_ERROR, "second control stream");
}

/// Reads the peer's control stream: SETTINGS first (handed to `tx`), then frames until
/// the connection ends. Closing the control stream is a connection error.
async fn read_control_stream(
    conn: quinn::Connection,
    early: Arc<Early>,
    mut recv: quinn::RecvStream,
    mut tx: Option<SettingsSender>,
) {
    if early.control_seen.swap(true, Ordering::Relaxed) {
        second_control_stream(&conn);
        return;
    }
    let mut buf = Vec::new();
    let mut seen_settings = false;
    loop {
        loop {
            let frame = match h3::parse_frame(&buf, h3::MAX_CONTROL_FRAME) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    frame
                }
                Ok(None) => break,
                Err(e) => return connection_error(&conn, h3::H3_FRAME_ERROR, &e),
            };
            match frame.kind {
                h3::FRAME_SETTINGS if !seen_settings => {
                    seen_settings = true;
                    match PeerSettings::parse(&frame.payload) {
                        Ok(settings) => {
                            debug!(target: "fastwt.core", peer = %conn.remote_address(), "peer settings: {settings:?}");
                            if let Some(tx) = tx.take() {
                                let sender = tx.lock().unwrap_or_else(|p| p.into_inner()).take();
                                if let Some(sender) = sender {
                                    let _ = sender.send(settings);
                                }
                            }
                        }
                        Err(e) => return connection_error(&conn, e.code, &e.reason),
                    }
                }
                _ if !seen_settings => {
                    return connection_error(
                        &conn,
                        h3::H3_MISSING_SETTINGS,
                        "control stream must start with SETTINGS",
                    )
                }
                h3::FRAME_SETTINGS | h3::FRAME_DATA | h3::FRAME_HEADERS => {
                    return connection_error(
                        &conn,
                        h3::H3_FRAME_UNEXPECTED,
                        "unexpected frame on the control stream",
                    )
                }
                h3::FRAME_GOAWAY => {
                    if let Some(session) = early.session() {
                        session.peer_goaway();
                    }
                }
                _ => {} // MAX_PUSH_ID, PRIORITY_UPDATE, unknown: ignored
            }
        }
        match recv.read_chunk(4096, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(quinn::ReadError::Reset(_)) => {
                return connection_error(
                    &conn,
                    h3::H3_CLOSED_CRITICAL_STREAM,
                    "control stream closed",
                )
            }
            Err(_) => return, // the connection ended
        }
    }
}
