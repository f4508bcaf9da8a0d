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
use crate::frame::{FrameError, FrameReader};
use crate::h3;
use crate::preamble::Preamble;
use crate::session::Session;
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::debug;

/// WebTransport streams kept while their session does not exist yet; more are refused
/// with WT_BUFFERED_STREAM_REJECTED.
const MAX_EARLY_STREAMS: usize = 16;

/// A peer's stream kept until its session exists.
enum Kept {
    Uni(quinn::RecvStream),
    Bi(quinn::SendStream, quinn::RecvStream),
}

impl Kept {
    fn refuse(self, code: u32) {
        let code = quinn::VarInt::from_u32(code);
        match self {
            Kept::Uni(mut recv) => {
                let _ = recv.stop(code);
            }
            Kept::Bi(mut send, mut recv) => {
                let _ = send.reset(code);
                let _ = recv.stop(code);
            }
        }
    }
}

/// What the server needs to take further CONNECT requests on a connection that already
/// has a session (pooling, `ServerOptions::max_sessions_per_connection` > 1).
pub(crate) struct PoolHook {
    /// Sessions the connection may hold at once (what our SETTINGS advertised).
    pub(crate) limit: usize,
    /// The peer's SETTINGS.
    pub(crate) peer: PeerSettings,
    /// The QUIC knobs and session credit new sessions get.
    pub(crate) transport: crate::config::TransportOptions,
    /// How long a request may take from its first byte to the application's answer.
    pub(crate) request_timeout: Duration,
    /// Hands a new session request to the server (admission, the request queue).
    pub(crate) offer: Box<dyn Fn(Session, tokio::time::Instant) + Send + Sync>,
}

/// The state of one connection that outlives any one of its sessions: the sessions
/// (one, or several when pooled), the streams that came before their session, our
/// control stream (GOAWAY goes on it) and, server side, how to take more sessions.
pub(crate) struct Early {
    state: Mutex<EarlyState>,
    control_seen: AtomicBool,
    control: Mutex<Option<quinn::SendStream>>,
    pool: std::sync::OnceLock<PoolHook>,
}

#[derive(Default)]
struct EarlyState {
    /// The connection's sessions, first one first (ended ones are swept as new ones come).
    sessions: Vec<Session>,
    /// Sessions admitted (under the limit) whose `Session` is being made.
    reserved: usize,
    /// The highest session id that exists or was refused: a stream for an id up to it
    /// whose session is not live belongs to an ended session.
    highest: Option<u64>,
    stash: Vec<(u64, Kept)>,
    gone: bool,
    /// More sessions may come on the connection: server side, pooling allowed (limit
    /// above 1) and the first session not of draft-02. Without it, a stream for any id
    /// but a live session's is refused at once.
    may_pool: bool,
    /// The id our GOAWAY carried, once sent.
    goaway: Option<u64>,
}

impl EarlyState {
    fn live(&self, id: u64) -> Option<Session> {
        self.sessions
            .iter()
            .find(|s| s.id() == id && s.close_info().is_none())
            .cloned()
    }

    fn is_gone(&self, id: u64) -> bool {
        // Session ids are client-initiated bidirectional stream ids (multiples of 4).
        self.gone || id % 4 != 0 || self.highest.is_some_and(|h| id <= h || !self.may_pool)
    }
}

impl Early {
    fn lock(&self) -> std::sync::MutexGuard<'_, EarlyState> {
        // Poison only means a panic elsewhere; the state is valid between statements.
        lock(&self.state)
    }

    /// A session exists: streams kept for it are handed over, later ones go straight
    /// to it.
    pub(crate) fn attach(&self, session: &Session) {
        let may_pool = self.pool.get().is_some_and(|p| p.limit > 1)
            && session.draft() != crate::draft::Draft::Draft02;
        let (kept, refused) = {
            let mut s = self.lock();
            if s.highest.is_none() {
                s.may_pool = may_pool;
            }
            s.sessions.retain(|s| s.close_info().is_none());
            s.sessions.push(session.clone());
            s.highest = Some(s.highest.map_or(session.id(), |h| h.max(session.id())));
            let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut s.stash)
                .into_iter()
                .partition(|(id, _)| *id == session.id());
            // Kept for a session that can no longer come.
            let (refused, others) = others.into_iter().partition(|(id, _)| s.is_gone(*id));
            s.stash = others;
            (mine, refused)
        };
        let refused: Vec<(u64, Kept)> = refused;
        for (_, stream) in refused {
            stream.refuse(h3::WT_SESSION_GONE);
        }
        for (_, stream) in kept {
            match stream {
                Kept::Uni(recv) => crate::driver::push_uni(session, recv),
                Kept::Bi(send, recv) => crate::driver::push_bi(session, send, recv),
            }
        }
    }

    /// No session will come (refused request): kept streams are dropped.
    pub(crate) fn abandon(&self) {
        let stash = {
            let mut s = self.lock();
            s.gone = true;
            std::mem::take(&mut s.stash)
        };
        for (_, stream) in stash {
            stream.refuse(h3::WT_SESSION_GONE);
        }
    }

    /// A CONNECT request with stream id `id` was refused: its kept streams go, later
    /// ones are refused as streams of an ended session.
    pub(crate) fn refused(&self, id: u64) {
        let mine: Vec<(u64, Kept)> = {
            let mut s = self.lock();
            s.highest = Some(s.highest.map_or(id, |h| h.max(id)));
            let (mine, others) = std::mem::take(&mut s.stash)
                .into_iter()
                .partition(|(i, _)| *i == id);
            s.stash = others;
            mine
        };
        for (_, stream) in mine {
            stream.refuse(h3::WT_SESSION_GONE);
        }
    }

    /// The live session with this id.
    pub(crate) fn session_by_id(&self, id: u64) -> Option<Session> {
        self.lock().live(id)
    }

    /// Every session of the connection still live.
    fn live_sessions(&self) -> Vec<Session> {
        let s = self.lock();
        s.sessions
            .iter()
            .filter(|s| s.close_info().is_none())
            .cloned()
            .collect()
    }

    /// Whether a session other than `id` is live on the connection (then the
    /// connection stays up when `id` ends).
    pub(crate) fn others_live(&self, id: u64) -> bool {
        let s = self.lock();
        s.reserved > 0
            || s.sessions
                .iter()
                .any(|s| s.id() != id && s.close_info().is_none())
    }

    /// Whether more sessions may come on this connection (see `EarlyState::may_pool`).
    pub(crate) fn may_pool(&self) -> bool {
        self.lock().may_pool
    }

    /// The hook for more sessions on this connection (server side, pooling).
    pub(crate) fn set_pool(&self, hook: PoolHook) {
        let _ = self.pool.set(hook);
    }

    pub(crate) fn pool(&self) -> Option<&PoolHook> {
        self.pool.get()
    }

    /// Takes a place for one more session if the connection has room under `limit`.
    pub(crate) fn reserve(&self, limit: usize) -> bool {
        let mut s = self.lock();
        let live = s
            .sessions
            .iter()
            .filter(|s| s.close_info().is_none())
            .count();
        if live + s.reserved >= limit {
            return false;
        }
        s.reserved += 1;
        true
    }

    /// A reserved place became `session` (see [`Self::reserve`]).
    pub(crate) fn attach_reserved(&self, session: &Session) {
        {
            let mut s = self.lock();
            s.reserved = s.reserved.saturating_sub(1);
        }
        self.attach(session);
    }

    /// Keeps our control stream for the connection's life (`None` takes it back).
    pub(crate) fn set_control(
        &self,
        control: Option<quinn::SendStream>,
    ) -> Option<quinn::SendStream> {
        let mut slot = lock(&self.control);
        std::mem::replace(&mut *slot, control)
    }

    /// Sends HTTP/3 GOAWAY once on our control stream, with the id after the highest
    /// session request we took. `false` if it could not go out now.
    pub(crate) fn send_goaway(&self) -> bool {
        let id = {
            let mut s = self.lock();
            if s.goaway.is_some() {
                return true;
            }
            let id = s.highest.map_or(0, |h| h + 4);
            s.goaway = Some(id);
            id
        };
        let mut payload = vec![];
        h3::put_varint(&mut payload, id);
        let frame = h3::encode_frame(h3::FRAME_GOAWAY, &payload);
        let mut slot = lock(&self.control);
        match slot.as_mut() {
            Some(send) => matches!(crate::session::write_now(send, &frame), Ok(None)),
            None => false,
        }
    }

    /// Whether a GOAWAY went out: no new request is taken after it.
    pub(crate) fn goaway_sent(&self) -> bool {
        self.lock().goaway.is_some()
    }

    /// A WebTransport unidirectional stream for session `id`.
    pub(crate) fn keep(&self, id: u64, recv: quinn::RecvStream) {
        self.keep_stream(id, Kept::Uni(recv));
    }

    /// A WebTransport bidirectional stream for session `id`.
    pub(crate) fn keep_bi(&self, id: u64, send: quinn::SendStream, recv: quinn::RecvStream) {
        self.keep_stream(id, Kept::Bi(send, recv));
    }

    fn keep_stream(&self, id: u64, stream: Kept) {
        let mut s = self.lock();
        if let Some(session) = s.live(id) {
            drop(s);
            match stream {
                Kept::Uni(recv) => crate::driver::push_uni(&session, recv),
                Kept::Bi(send, recv) => crate::driver::push_bi(&session, send, recv),
            }
            return;
        }
        if s.is_gone(id) {
            // Its session ended (or its request was refused).
            drop(s);
            return stream.refuse(h3::WT_SESSION_GONE);
        }
        if s.stash.len() >= MAX_EARLY_STREAMS {
            drop(s);
            return stream.refuse(h3::WT_BUFFERED_STREAM_REJECTED);
        }
        s.stash.push((id, stream));
    }

    /// The peer sent GOAWAY: every session of the connection is draining.
    fn peer_goaway(&self) {
        for session in self.live_sessions() {
            session.peer_goaway();
        }
    }

    /// The connection ended: sessions and kept streams are let go.
    pub(crate) fn connection_ended(&self) {
        drop(self.set_control(None));
        let mut s = self.lock();
        s.gone = true;
        s.sessions.clear();
        s.stash.clear();
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
        control: Mutex::new(None),
        pool: std::sync::OnceLock::new(),
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
                Ok(Some((kind, _))) => other_uni_stream(kind, recv).await,
                Ok(None) => {}
                Err(e) => debug!(target: "fastwt.core", "unidirectional stream header: {e}"),
            }
        });
    }
}

/// A peer's unidirectional stream that is neither a WebTransport stream of a session
/// nor the control stream, its type `kind` read: the QPACK encoder and decoder streams
/// are drained (we advertise a zero-size dynamic table, so nothing in them matters),
/// every other type (and a WebTransport stream without a session id) is refused with
/// H3_STREAM_CREATION_ERROR. Both readers of peer streams, before the session (here)
/// and during it (driver.rs), end here.
pub(crate) async fn other_uni_stream(kind: u64, mut recv: quinn::RecvStream) {
    if matches!(kind, h3::STREAM_QPACK_ENCODER | h3::STREAM_QPACK_DECODER) {
        while let Ok(Some(_)) = recv.read_chunk(usize::MAX, false).await {}
    } else {
        let _ = recv.stop(quinn::VarInt::from_u32(h3::H3_STREAM_CREATION_ERROR));
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
    let mut frames = FrameReader::default();
    let mut seen_settings = false;
    loop {
        let frame = match frames.next(&mut recv).await {
            Ok(frame) => frame,
            Err(FrameError::Malformed(e)) => {
                return connection_error(&conn, h3::H3_FRAME_ERROR, &e)
            }
            Err(FrameError::Ended | FrameError::Read(quinn::ReadError::Reset(_))) => {
                return connection_error(
                    &conn,
                    h3::H3_CLOSED_CRITICAL_STREAM,
                    "control stream closed",
                )
            }
            Err(FrameError::Read(_)) => return, // the connection ended
        };
        match frame.kind {
            h3::FRAME_SETTINGS if !seen_settings => {
                seen_settings = true;
                match PeerSettings::parse(&frame.payload) {
                    Ok(settings) => {
                        debug!(target: "fastwt.core", peer = %conn.remote_address(), "peer settings: {settings:?}");
                        if let Some(tx) = tx.take() {
                            let sender = lock(&tx).take();
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
            h3::FRAME_GOAWAY => early.peer_goaway(),
            _ => {} // MAX_PUSH_ID, PRIORITY_UPDATE, unknown: ignored
        }
    }
}
