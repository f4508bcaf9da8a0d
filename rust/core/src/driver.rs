//! Per-connection HTTP/3 tasks: the control stream, demultiplexing of peer streams and
//! datagrams into the session, the CONNECT stream's capsules, and the end of the session.

use crate::control::Early;
use crate::error::{CloseInfo, Result};
use crate::frame::{FrameError, FrameReader};
use crate::h3;
use crate::preamble::{Preamble, StreamHeader};
use crate::session::Session;
use crate::stream::{RecvStream, SendStream};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tracing::{debug, warn};

/// Starts the tasks of a connection's first session: those that feed it (and, pooled,
/// the connection's later sessions) from the connection — peer streams and datagrams,
/// routed by session id — and the session's own (see [`spawn_own_tasks`]). `control` is
/// kept open in `early` for the connection's life; streams that came before the session
/// are handed to it.
pub(crate) fn spawn_session_tasks(
    session: &Session,
    connect_recv: quinn::RecvStream,
    connect_frames: FrameReader,
    control: quinn::SendStream,
    early: &Arc<Early>,
) {
    early.set_control(Some(control));
    spawn_own_tasks(session, connect_recv, connect_frames, early, false);
    tokio::spawn(accept_bi_loop(session.clone(), early.clone()));
    tokio::spawn(accept_uni_loop(session.clone(), early.clone()));
    tokio::spawn(datagram_loop(session.clone(), early.clone()));
    let (conn, early) = (session.0.conn.clone(), early.clone());
    tokio::spawn(async move {
        conn.closed().await;
        early.connection_ended();
    });
}

/// The tasks of one session: its CONNECT stream's capsules, its flow control, and the
/// watcher of the connection's end. `connect_frames` holds what was read of the
/// CONNECT stream past the request's or response's HEADERS.
pub(crate) fn spawn_own_tasks(
    session: &Session,
    connect_recv: quinn::RecvStream,
    connect_frames: FrameReader,
    early: &Arc<Early>,
    reserved: bool,
) {
    let _ = session.0.pool.set(early.clone());
    if reserved {
        early.attach_reserved(session);
    } else {
        early.attach(session);
    }
    if let Some(flow) = &session.0.flow {
        tokio::spawn(crate::flow::run(session.clone(), flow.clone()));
    }
    tokio::spawn(connect_stream_loop(
        session.clone(),
        connect_recv,
        connect_frames,
    ));
    if let Some(stopped) = session.connect_stream_stopped() {
        let session = session.clone();
        tokio::spawn(async move {
            // STOP_SENDING on our half of the CONNECT stream ends the session, as its
            // reset does (the drafts end a session with its CONNECT stream, either way).
            if let Ok(Some(code)) = stopped.await {
                let reason = format!(
                    "CONNECT stream stopped by peer (code {:#x})",
                    code.into_inner()
                );
                peer_closed(&session, 0, reason).await;
            }
        });
    }
    tokio::spawn(watch_connection(session.clone()));
}

async fn watch_connection(session: Session) {
    let err = session.0.conn.closed().await;
    let info = crate::error::close_info_of(&err);
    if session.mark_closed(info.clone()) {
        debug!(target: "fastwt.core", session = session.id(), peer = %session.remote_address(), "session ended: {info}");
    }
}

async fn accept_bi_loop(session: Session, early: Arc<Early>) {
    let is_wt = |kind: u64| kind == h3::FRAME_WT_BIDI;
    loop {
        let (send, mut recv) = match session.0.conn.accept_bi().await {
            Ok(pair) => pair,
            Err(_) => return,
        };
        // The header usually arrives with the stream's first data: route it right here
        // and only hand incomplete ones to a task.
        let mut preamble = Preamble::new();
        let noop = &mut Context::from_waker(Waker::noop());
        match preamble.poll(&mut recv, noop, is_wt) {
            Poll::Ready(header) => route_bi_stream(&session, &early, send, recv, header),
            Poll::Pending => {
                let (session, early) = (session.clone(), early.clone());
                tokio::spawn(async move {
                    let header =
                        std::future::poll_fn(|cx| preamble.poll(&mut recv, cx, is_wt)).await;
                    route_bi_stream(&session, &early, send, recv, header);
                });
            }
        }
    }
}

fn route_bi_stream(
    session: &Session,
    early: &Arc<Early>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    header: Result<Option<StreamHeader>>,
) {
    let mut reject = |code: u32| {
        let _ = send.reset(quinn::VarInt::from_u32(code));
        let _ = recv.stop(quinn::VarInt::from_u32(code));
    };
    match header {
        Ok(Some((h3::FRAME_WT_BIDI, Some(id)))) if id == session.id() => {
            push_bi(session, send, recv);
        }
        // Another session of the connection (pooled), one still to come, or one that
        // ended (WT_SESSION_GONE).
        Ok(Some((h3::FRAME_WT_BIDI, Some(id)))) => early.keep_bi(id, send, recv),
        Ok(Some((h3::FRAME_WT_BIDI, None))) => reject(h3::H3_STREAM_CREATION_ERROR),
        // Another CONNECT on a connection that may pool: a session of its own, or 429.
        Ok(Some((h3::FRAME_HEADERS, _))) if early.may_pool() => {
            let conn = session.0.conn.clone();
            tokio::spawn(crate::handshake::accept_pooled(
                conn,
                early.clone(),
                send,
                recv,
            ));
        }
        // No pooling (limit 1, a draft-02 client, or our client side): HTTP/3's "not
        // processed", at once.
        Ok(Some((h3::FRAME_HEADERS, _))) => reject(h3::H3_REQUEST_REJECTED),
        Ok(_) => reject(h3::H3_STREAM_CREATION_ERROR),
        Err(e) => debug!(target: "fastwt.core", "bidirectional stream header: {e}"),
    }
}

/// A peer's bidirectional stream of `session` (its header read): queued for the
/// application, or refused.
pub(crate) fn push_bi(session: &Session, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    session.0.credit.peer_opened_bidi(&session.0.conn);
    if let Some(flow) = &session.0.flow {
        if !flow.peer_opened(true) {
            let code = quinn::VarInt::from_u32(h3::WT_FLOW_CONTROL_ERROR);
            let _ = send.reset(code);
            let _ = recv.stop(code);
            return;
        }
    }
    let recv = RecvStream::new(recv, session.0.flow.clone());
    let send = SendStream::new(send, None, session.send_credit(), session.finished());
    let pair = session.track_bi((send, recv));
    let (_, refused) = session.0.incoming_bi.push(pair);
    if let Some((mut s, mut r)) = refused {
        let code = refusal_code(session.0.incoming_bi.is_closed());
        s.refuse(code);
        r.refuse(code);
    }
}

/// The code a peer's stream is refused with when the session's queue of streams the
/// application has not taken yet does not take it: WT_SESSION_GONE once the session
/// ended (the queue is closed), else WT_BUFFERED_STREAM_REJECTED (the queue is full).
fn refusal_code(queue_closed: bool) -> u32 {
    if queue_closed {
        h3::WT_SESSION_GONE
    } else {
        h3::WT_BUFFERED_STREAM_REJECTED
    }
}

async fn accept_uni_loop(session: Session, early: Arc<Early>) {
    let is_wt = |kind: u64| kind == h3::STREAM_WT_UNI;
    loop {
        let mut recv = match session.0.conn.accept_uni().await {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut preamble = Preamble::new();
        let noop = &mut Context::from_waker(Waker::noop());
        match preamble.poll(&mut recv, noop, is_wt) {
            Poll::Ready(Ok(Some((h3::STREAM_WT_UNI, Some(id))))) if id == session.id() => {
                push_uni(&session, recv);
            }
            _ => {
                let (session, early) = (session.clone(), early.clone());
                tokio::spawn(async move {
                    let header =
                        std::future::poll_fn(|cx| preamble.poll(&mut recv, cx, is_wt)).await;
                    route_uni_stream(session, &early, recv, header).await;
                });
            }
        }
    }
}

pub(crate) fn push_uni(session: &Session, mut recv: quinn::RecvStream) {
    session.0.credit.peer_opened_uni(&session.0.conn);
    if let Some(flow) = &session.0.flow {
        if !flow.peer_opened(false) {
            let _ = recv.stop(quinn::VarInt::from_u32(h3::WT_FLOW_CONTROL_ERROR));
            return;
        }
    }
    let recv = session.track_recv(RecvStream::new(recv, session.0.flow.clone()));
    let (_, refused) = session.0.incoming_uni.push(recv);
    if let Some(mut r) = refused {
        r.refuse(refusal_code(session.0.incoming_uni.is_closed()));
    }
}

async fn route_uni_stream(
    session: Session,
    early: &Early,
    recv: quinn::RecvStream,
    header: Result<Option<StreamHeader>>,
) {
    match header {
        Ok(Some((h3::STREAM_WT_UNI, Some(id)))) if id == session.id() => push_uni(&session, recv),
        // Another session (pooled), one still to come, or one that ended.
        Ok(Some((h3::STREAM_WT_UNI, Some(id)))) => early.keep(id, recv),
        // The peer's control stream was read before the session (control.rs).
        Ok(Some((h3::STREAM_CONTROL, _))) => crate::control::second_control_stream(&session.0.conn),
        Ok(Some((kind, _))) => crate::control::other_uni_stream(kind, recv).await,
        Ok(None) => {}
        Err(e) => debug!(target: "fastwt.core", "unidirectional stream header: {e}"),
    }
}

async fn datagram_loop(session: Session, early: Arc<Early>) {
    let wanted = session.id() / 4;
    loop {
        let datagram = match session.0.conn.read_datagram().await {
            Ok(d) => d,
            Err(_) => return,
        };
        match h3::get_varint(&datagram) {
            Some((qsid, len)) if qsid == wanted => {
                session.0.datagrams_received.fetch_add(1, Ordering::Relaxed);
                // A copy: quinn's datagram is a slice of the whole received buffer (up
                // to 64 KiB with GRO), which a queued slice would keep alive.
                session
                    .0
                    .datagrams
                    .push(Bytes::copy_from_slice(&datagram[len..]));
            }
            Some((qsid, len)) => match early.session_by_id(qsid.saturating_mul(4)) {
                // A pooled session's.
                Some(other) => {
                    other.0.datagrams_received.fetch_add(1, Ordering::Relaxed);
                    other
                        .0
                        .datagrams
                        .push(Bytes::copy_from_slice(&datagram[len..]));
                }
                None => debug!(target: "fastwt.core",
                    session = session.id(),
                    "datagram for an unknown session dropped"
                ),
            },
            None => debug!(target: "fastwt.core", "datagram without a session id dropped"),
        }
    }
}

/// Reads the CONNECT stream's capsules for the session's life: CLOSE and DRAIN, and the
/// flow-control ones; its end (FIN or reset) ends the session.
async fn connect_stream_loop(
    session: Session,
    mut recv: quinn::RecvStream,
    mut frames: FrameReader,
) {
    let mut data = Vec::new();
    loop {
        let frame = match frames.next(&mut recv).await {
            Ok(frame) => frame,
            Err(FrameError::Malformed(e)) => {
                protocol_violation(&session, format!("CONNECT stream: {e}"));
                return;
            }
            Err(FrameError::Ended) => {
                // A FIN without a capsule ends the session with code 0.
                peer_closed(&session, 0, String::new()).await;
                return;
            }
            Err(FrameError::Read(quinn::ReadError::Reset(code))) => {
                let reason = format!(
                    "CONNECT stream reset by peer (code {:#x})",
                    code.into_inner()
                );
                peer_closed(&session, 0, reason).await;
                return;
            }
            Err(FrameError::Read(_)) => return, // the connection watcher reports how it ended
        };
        if frame.kind != h3::FRAME_DATA {
            continue;
        }
        data.extend_from_slice(&frame.payload);
        let capsules = match h3::parse_capsules(&data) {
            Ok((capsules, used)) => {
                data.drain(..used);
                capsules
            }
            Err(e) => {
                protocol_violation(&session, format!("bad capsule: {e}"));
                return;
            }
        };
        for capsule in capsules {
            match capsule {
                h3::Capsule::Close(code, reason) => {
                    peer_closed(&session, code, reason).await;
                    return;
                }
                h3::Capsule::Drain => session.peer_goaway(),
                h3::Capsule::Other(_) => {} // unknown: ignored
                other => {
                    if let Some(flow) = &session.0.flow {
                        flow.on_capsule(&other);
                    }
                }
            }
        }
    }
}

/// The peer broke the protocol on the session's CONNECT stream: the session ends with a
/// reason that says so (never as a clean close with code 0 and no reason), counted as
/// ended by the peer (its fault), and the connection is closed with H3_MESSAGE_ERROR.
fn protocol_violation(session: &Session, what: String) {
    warn!(target: "fastwt.core", session = session.id(), peer = %session.remote_address(), "protocol error: {what}");
    let reason = format!("protocol error: {what}");
    session.mark_closed(CloseInfo {
        code: 0,
        reason: reason.clone(),
        local: false,
    });
    let mut wire = reason.into_bytes();
    wire.truncate(256);
    session
        .0
        .conn
        .close(quinn::VarInt::from_u32(h3::H3_MESSAGE_ERROR), &wire);
}

async fn peer_closed(session: &Session, code: u32, reason: String) {
    if session.mark_closed(CloseInfo {
        code,
        reason,
        local: false,
    }) {
        // Our side of the session ends too, and the connection with it when no other
        // session lives on it (pooling), after a short grace period for the peer to close
        // first.
        if session.shares_connection() {
            if let Some(mut send) = session.state_connect_send() {
                let _ = send.finish();
            }
            return;
        }
        let conn = session.0.conn.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
            if !session.shares_connection() {
                conn.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"");
            }
        });
    }
}
