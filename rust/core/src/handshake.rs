//! The CONNECT handshake of a session, server side and client side: our control stream
//! and SETTINGS, the peer's SETTINGS, the CONNECT request (its validation, the draft)
//! and its response. What runs after it, for the session's life, is `driver.rs`'s.

use crate::config::{ClientOptions, TransportOptions};
use crate::control::Early;
use crate::draft::Draft;
use crate::driver;
use crate::error::{Error, Result};
use crate::frame::FrameReader;
use crate::h3;
use crate::session::{RequestInfo, Session, Wire};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// Opens our control stream and sends SETTINGS (with `credit` as the initial session
/// credit of flow-controlled drafts). The returned stream must stay open for the
/// connection's life (closing it is a connection error in HTTP/3).
async fn open_control_stream(
    conn: &quinn::Connection,
    credit: &h3::LocalCredit,
    max_sessions: usize,
) -> Result<quinn::SendStream> {
    let mut send = conn.open_uni().await?;
    send.write_all(&h3::control_stream_preamble_with(credit, max_sessions))
        .await
        .map_err(|e| Error::Connection(format!("control stream: {e}")))?;
    Ok(send)
}

/// Splits pseudo-headers from regular fields.
fn split_fields(fields: h3::Fields) -> (h3::Fields, h3::Fields) {
    fields.into_iter().partition(|(k, _)| k.starts_with(':'))
}

/// The value of pseudo-header `name`, if present.
fn pseudo<'a>(pseudo: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pseudo
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Validates a CONNECT request's pseudo-headers (`:protocol` `webtransport` or
/// `webtransport-h3`). Returns (path, authority, protocol token) or the HTTP status to
/// answer with.
fn validate_connect(
    pseudo_fields: &[(String, String)],
) -> std::result::Result<(String, String, String), u16> {
    if pseudo(pseudo_fields, ":method") != Some("CONNECT") {
        return Err(405);
    }
    let token = match pseudo(pseudo_fields, ":protocol") {
        Some(t) if crate::draft::is_webtransport_token(t) => t.to_string(),
        _ => return Err(400),
    };
    let (Some(path), Some(authority)) = (
        pseudo(pseudo_fields, ":path"),
        pseudo(pseudo_fields, ":authority"),
    ) else {
        return Err(400);
    };
    Ok((path.to_string(), authority.to_string(), token))
}

/// Server side: after the QUIC handshake, open our control stream and wait for the
/// CONNECT request, all before `deadline`, and build the session request. On a bad
/// request the client gets an error status and `None` returns.
pub(crate) async fn accept_request(
    conn: quinn::Connection,
    deadline: tokio::time::Instant,
    transport: &TransportOptions,
    pool: Option<PoolOffer>,
) -> Result<Option<Session>> {
    use tokio::time::timeout_at;
    let credit = transport.session_credit();
    let max_sessions = pool.as_ref().map_or(1, |p| p.limit);
    // A client that grants no unidirectional stream credit would hold this forever.
    let control = timeout_at(deadline, open_control_stream(&conn, &credit, max_sessions))
        .await
        .map_err(|_| Error::Timeout("no stream credit for our control stream".into()))??;
    // No CONNECT is handled before the client's SETTINGS: they decide the draft.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let (peer, early) = match crate::control::peer_settings(&conn, left).await {
        Ok(v) => v,
        Err(e) => {
            conn.close(
                quinn::VarInt::from_u32(h3::H3_MISSING_SETTINGS),
                b"no SETTINGS",
            );
            return Err(e);
        }
    };
    let (mut send, mut recv) = timeout_at(deadline, conn.accept_bi())
        .await
        .map_err(|_| Error::Timeout("no CONNECT request".into()))??;
    let mut reader = FrameReader::default();
    let fields = timeout_at(deadline, reader.read_headers(&mut recv))
        .await
        .map_err(|_| Error::Timeout("incomplete CONNECT request".into()))??;
    let (pseudo_fields, headers) = split_fields(fields);
    let (path, authority, token) = match validate_connect(&pseudo_fields) {
        Ok(v) => v,
        Err(status) => {
            early.abandon();
            let frame = h3::encode_headers(&[(":status".into(), status.to_string())]);
            let _ = timeout_at(deadline, send.write_all(&frame)).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            conn.close(
                quinn::VarInt::from_u32(h3::H3_MESSAGE_ERROR),
                b"bad CONNECT request",
            );
            return Ok(None);
        }
    };
    let session_id = quinn::VarInt::from(send.id()).into_inner();
    let draft02_header = headers
        .iter()
        .any(|(k, _)| k == "sec-webtransport-http3-draft02");
    if let Some(offer) = pool {
        early.set_pool(crate::control::PoolHook {
            limit: offer.limit,
            peer: peer.clone(),
            transport: transport.clone(),
            request_timeout: offer.request_timeout,
            offer: offer.offer,
        });
    }
    let wire = Wire {
        draft: crate::draft::choose(&token, &peer, draft02_header),
        peer,
        credit,
        protocol: None,
    };
    let request = RequestInfo {
        path,
        authority,
        headers,
    };
    let session = Session::new(conn, send, session_id, true, request, transport, wire);
    driver::spawn_session_tasks(&session, recv, reader, control, &early);
    Ok(Some(session))
}

/// What a server gives [`accept_request`] to take more sessions on the connection.
pub(crate) struct PoolOffer {
    /// Sessions the connection may hold at once (`max_sessions_per_connection`).
    pub(crate) limit: usize,
    /// From a request's first byte to the application's answer.
    pub(crate) request_timeout: Duration,
    /// Hands a new session request to the server, with its deadline.
    pub(crate) offer: Box<dyn Fn(Session, tokio::time::Instant) + Send + Sync>,
}

/// Answers a CONNECT with `status` on its own stream, leaving the connection and its
/// other sessions alone.
async fn refuse_request(mut send: quinn::SendStream, status: u16) {
    let frame = h3::encode_headers(&[(":status".into(), status.to_string())]);
    let _ = tokio::time::timeout(Duration::from_secs(1), send.write_all(&frame)).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
}

/// A CONNECT request on a connection that already has a session (its HEADERS frame
/// type read). Server side with pooling negotiated (our limit above 1, the request of a
/// draft that pools: not draft-02) and room under the limit, it becomes a session of
/// its own, handed to the server like the first; otherwise it gets 429 and the
/// connection's sessions go on.
pub(crate) async fn accept_pooled(
    conn: quinn::Connection,
    early: Arc<Early>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let id = quinn::VarInt::from(send.id()).into_inner();
    let Some(hook) = early.pool() else {
        // Only connections with a pool hook may pool (see `route_bi_stream`).
        early.refused(id);
        let mut send = send;
        let _ = send.reset(quinn::VarInt::from_u32(h3::H3_REQUEST_REJECTED));
        let _ = recv.stop(quinn::VarInt::from_u32(h3::H3_REQUEST_REJECTED));
        return;
    };
    let deadline = tokio::time::Instant::now() + hook.request_timeout;
    // The HEADERS frame's type was read as the stream's header.
    let mut frame_type = Vec::new();
    h3::put_varint(&mut frame_type, h3::FRAME_HEADERS);
    let mut reader = FrameReader::with_bytes(frame_type);
    let fields = match tokio::time::timeout_at(deadline, reader.read_headers(&mut recv)).await {
        Ok(Ok(fields)) => fields,
        Ok(Err(e)) => {
            debug!(target: "fastwt.core", "pooled CONNECT: {e}");
            early.refused(id);
            return refuse_request(send, 400).await;
        }
        Err(_) => {
            early.refused(id);
            let mut send = send;
            let _ = send.reset(quinn::VarInt::from_u32(h3::H3_REQUEST_INCOMPLETE));
            return;
        }
    };
    let (pseudo_fields, headers) = split_fields(fields);
    let (path, authority, token) = match validate_connect(&pseudo_fields) {
        Ok(v) => v,
        Err(status) => {
            early.refused(id);
            return refuse_request(send, status).await;
        }
    };
    let draft02_header = headers
        .iter()
        .any(|(k, _)| k == "sec-webtransport-http3-draft02");
    let draft = crate::draft::choose(&token, &hook.peer, draft02_header);
    // Pooling needs our limit above 1 and a draft that has it (draft-02 browsers never
    // pool); a GOAWAY already sent takes no new request.
    if draft == Draft::Draft02
        || hook.limit <= 1
        || early.goaway_sent()
        || !early.reserve(hook.limit)
    {
        debug!(target: "fastwt.core", peer = %conn.remote_address(), "pooled CONNECT refused with 429 (limit {})", hook.limit);
        early.refused(id);
        return refuse_request(send, 429).await;
    }
    let wire = Wire {
        draft,
        peer: hook.peer.clone(),
        credit: hook.transport.session_credit(),
        protocol: None,
    };
    let request = RequestInfo {
        path,
        authority,
        headers,
    };
    let session = Session::new(conn, send, id, true, request, &hook.transport, wire);
    driver::spawn_own_tasks(&session, recv, reader, &early, true);
    (hook.offer)(session, deadline);
}

/// Client side: on a QUIC connection to the server, open our control stream, wait for
/// the server's SETTINGS (they decide the draft), send the CONNECT request for `path` on
/// `authority` with `headers` (the options' then the call's; a later one replaces an
/// earlier one of the same name) and read the response. A non-2xx answer is
/// [`Error::Rejected`] and closes the connection. Unbounded in time: the caller's
/// connect timeout bounds it.
pub(crate) async fn connect(
    conn: quinn::Connection,
    options: &ClientOptions,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
) -> Result<Session> {
    let credit = options.transport.session_credit();
    let control = open_control_stream(&conn, &credit, 1).await?;
    let (peer, early) = crate::control::peer_settings(&conn, Duration::from_secs(3600)).await?;
    if !peer.offers_webtransport() {
        conn.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"");
        return Err(Error::Connection(format!(
            "{} does not offer WebTransport in its HTTP/3 SETTINGS",
            conn.remote_address()
        )));
    }
    let draft = crate::draft::choose_for_server(&peer);
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut fields: Vec<(String, String)> = vec![
        (":method".into(), "CONNECT".into()),
        (":scheme".into(), "https".into()),
        (":authority".into(), authority.clone()),
        (":path".into(), path.clone()),
    ];
    if draft == Draft::Draft02 {
        fields.push((":protocol".into(), "webtransport".into()));
        fields.push(("sec-webtransport-http3-draft02".into(), "1".into()));
    } else {
        fields.push((":protocol".into(), "webtransport-h3".into()));
    }
    if let Some(ua) = &options.user_agent {
        fields.push(("user-agent".into(), ua.clone()));
    }
    for (k, v) in options.headers.iter().cloned().chain(headers) {
        let k = k.to_ascii_lowercase();
        if k.starts_with(':') {
            return Err(Error::Config(format!("header {k:?} is reserved")));
        }
        fields.retain(|(existing, _)| existing != &k);
        fields.push((k, v));
    }
    send.write_all(&h3::encode_headers(&fields))
        .await
        .map_err(|e| Error::Connection(format!("sending CONNECT: {e}")))?;
    let mut reader = FrameReader::default();
    let response = reader.read_headers(&mut recv).await?;
    let (pseudo_fields, resp_headers) = split_fields(response);
    let status: u16 = pseudo(&pseudo_fields, ":status")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol("response without a valid :status".into()))?;
    if !(200..300).contains(&status) {
        early.abandon();
        let _ = send.finish();
        conn.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"");
        return Err(Error::Rejected {
            status,
            headers: resp_headers,
        });
    }
    let session_id = quinn::VarInt::from(send.id()).into_inner();
    let protocol = resp_headers
        .iter()
        .find(|(k, _)| k == "wt-protocol")
        .and_then(|(_, v)| crate::draft::parse_sf_string_item(v));
    let wire = Wire {
        draft,
        peer,
        credit,
        protocol,
    };
    let info = RequestInfo {
        path,
        authority,
        headers: resp_headers,
    };
    let session = Session::new(
        conn,
        send,
        session_id,
        false,
        info,
        &options.transport,
        wire,
    );
    driver::spawn_session_tasks(&session, recv, reader, control, &early);
    Ok(session)
}
