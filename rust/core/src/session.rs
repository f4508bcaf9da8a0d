use crate::config::TransportOptions;
use crate::credit::StreamCredit;
use crate::draft::{Draft, PeerSettings};
use crate::error::{CloseInfo, Error, Result};
use crate::flow::{Flow, FlowSnapshot};
use crate::h3;
use crate::queue::{Overflow, ReadyQueue};
use crate::stream::{Launch, RecvStream, SendStream};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A stream opened at once, or the future that completes the opening.
pub enum Opened<T> {
    /// Ready to use.
    Ready(T),
    /// Finishes on the runtime (stream credit or send window was exhausted).
    Pending(Pin<Box<dyn Future<Output = Result<T>> + Send>>),
}

/// Writes as much of `data` as quinn takes right now; the rest, if any, is returned.
pub(crate) fn write_now(send: &mut quinn::SendStream, data: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut written = 0;
    while written < data.len() {
        match Pin::new(&mut *send).poll_write(&mut cx, &data[written..]) {
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(e)) => return Err(Error::Connection(e.to_string())),
            Poll::Pending => return Ok(Some(data[written..].to_vec())),
        }
    }
    Ok(None)
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// A server-side request waiting for accept or reject.
    Requested,
    /// Established: streams and datagrams flow.
    Accepted,
    /// Rejected with an HTTP status (server side).
    Rejected,
    /// Closed by either side.
    Closed,
}

/// Counters of one session.
#[derive(Clone, Debug, Default)]
pub struct SessionStats {
    /// Datagrams handed to quinn for sending.
    pub datagrams_sent: u64,
    /// Datagrams received for this session.
    pub datagrams_received: u64,
    /// Datagrams dropped because the application did not read them in time.
    pub datagrams_dropped: u64,
    /// UDP payload bytes sent on the connection (quinn's count).
    pub bytes_sent: u64,
    /// UDP payload bytes received on the connection.
    pub bytes_received: u64,
    /// Current smoothed round-trip time.
    pub rtt: Duration,
    /// Packets quinn considers lost.
    pub lost_packets: u64,
    /// DATAGRAM frames quinn put into packets on the connection (all its sessions):
    /// `datagrams_sent` minus this, minus those still queued, is what quinn's full send
    /// buffer dropped.
    pub datagram_frames_sent: u64,
    /// DATAGRAM frames that arrived on the connection (all its sessions): above
    /// `datagrams_received` when quinn's own receive buffer dropped some.
    pub datagram_frames_received: u64,
}

/// The HTTP request that opened the session (server side) or the response that
/// accepted it (client side).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// `:path`, with any query string.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Regular header fields, lower-case names, pseudo-headers excluded.
    pub headers: Vec<(String, String)>,
}

struct PhaseState {
    phase: SessionPhase,
    /// Our half of the CONNECT stream; `None` while a write is in flight (then
    /// `connect_queue` is `Some`) and after it was finished.
    connect_send: Option<quinn::SendStream>,
    /// Writes made while another is in flight, in order, each with its `finish` flag:
    /// a close during a pending accept goes out after the 200, never instead of it.
    connect_queue: Option<Vec<(Vec<u8>, bool)>>,
    close: Option<CloseInfo>,
    close_wakers: Vec<Waker>,
    /// The application protocol chosen through `wt-protocol`.
    protocol: Option<String>,
}

/// What the connection negotiated for a session: its draft and the peer's SETTINGS
/// (see `draft.rs`), the session credit we granted, and (client side) the protocol of
/// the response's `wt-protocol`.
pub(crate) struct Wire {
    pub(crate) draft: Draft,
    pub(crate) peer: PeerSettings,
    pub(crate) credit: h3::LocalCredit,
    pub(crate) protocol: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) conn: quinn::Connection,
    pub(crate) session_id: u64,
    pub(crate) is_server: bool,
    request: RequestInfo,
    state: Mutex<PhaseState>,
    pub(crate) incoming_bi: ReadyQueue<(SendStream, RecvStream)>,
    pub(crate) incoming_uni: ReadyQueue<RecvStream>,
    pub(crate) datagrams: ReadyQueue<Bytes>,
    pub(crate) credit: StreamCredit,
    /// The server's count of this session, given back when it ends.
    admission: Mutex<Option<crate::admission::Ticket>>,
    datagram_header: Vec<u8>,
    datagrams_sent: AtomicU64,
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) draft: Draft,
    /// The peer sent H3_DATAGRAM=1: datagrams may be sent.
    peer_datagrams: bool,
    /// Session flow control (drafts 13+ only; `None` for draft-02).
    pub(crate) flow: Option<Arc<Flow>>,
    /// The session's open streams, reset with WT_SESSION_GONE when it ends (drafts 07+
    /// only; `None` for draft-02, whose connection ends with its one session).
    pub(crate) streams: Option<crate::stream::StreamSet>,
    draining: AtomicBool,
    /// The connection's state shared by its sessions (its control stream, the other
    /// sessions when pooled), set when the session's tasks start.
    pub(crate) pool: std::sync::OnceLock<Arc<crate::control::Early>>,
}

/// A WebTransport session: on the server it starts as a request to accept or reject.
/// Cheap to clone; all clones are the same session.
#[derive(Clone)]
pub struct Session(pub(crate) Arc<Shared>);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.0.session_id)
            .field("path", &self.0.request.path)
            .field("peer", &self.0.conn.remote_address())
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        conn: quinn::Connection,
        connect_send: quinn::SendStream,
        session_id: u64,
        is_server: bool,
        request: RequestInfo,
        transport: &TransportOptions,
        wire: Wire,
    ) -> Self {
        let flow = wire
            .draft
            .has_flow_control()
            .then(|| Arc::new(Flow::new(wire.credit, &wire.peer)));
        let mut datagram_header = vec![];
        h3::put_varint(&mut datagram_header, session_id / 4);
        let phase = if is_server {
            SessionPhase::Requested
        } else {
            SessionPhase::Accepted
        };
        Self(Arc::new(Shared {
            conn,
            session_id,
            is_server,
            request,
            state: Mutex::new(PhaseState {
                phase,
                connect_send: Some(connect_send),
                connect_queue: None,
                close: None,
                close_wakers: vec![],
                protocol: wire.protocol,
            }),
            // Streams the application has not taken yet. quinn's concurrency limit does
            // not bound them: a stream read to its FIN no longer counts against it, so a
            // peer could queue small finished streams without end. Beyond the configured
            // concurrency the peer's new streams are refused (stopped and reset).
            incoming_bi: ReadyQueue::new(
                transport.max_concurrent_bidi_streams as usize,
                Overflow::Refuse,
            ),
            incoming_uni: ReadyQueue::new(
                transport.max_concurrent_uni_streams as usize,
                Overflow::Refuse,
            ),
            datagrams: ReadyQueue::with_byte_limit(
                transport.datagram_queue_capacity,
                transport.datagram_queue_bytes,
                crate::queue::datagram_weight,
                Overflow::DropOldest,
            ),
            credit: StreamCredit::new(
                transport.max_concurrent_bidi_streams,
                transport.max_concurrent_uni_streams,
            ),
            admission: Mutex::new(None),
            datagram_header,
            datagrams_sent: AtomicU64::new(0),
            datagrams_received: AtomicU64::new(0),
            draft: wire.draft,
            peer_datagrams: wire.peer.h3_datagram == 1,
            flow,
            streams: (wire.draft != Draft::Draft02).then(crate::stream::StreamSet::default),
            draining: AtomicBool::new(false),
            pool: std::sync::OnceLock::new(),
        }))
    }

    /// Sends HTTP/3 GOAWAY on the connection's control stream, once per connection
    /// (server side: no request after the last session request taken will be handled).
    /// `false` if it could not go out now.
    pub fn send_goaway(&self) -> bool {
        self.0.pool.get().is_some_and(|pool| pool.send_goaway())
    }

    /// Whether another session than this one is live on the same connection (pooling):
    /// then the end of this one leaves the connection up.
    pub(crate) fn shares_connection(&self) -> bool {
        self.0
            .pool
            .get()
            .is_some_and(|pool| pool.others_live(self.0.session_id))
    }

    /// Asks the peer to wind the session down (DRAIN_WEBTRANSPORT_SESSION); the session
    /// stays usable.
    pub fn drain(&self) -> Result<()> {
        self.ensure_open()?;
        if self.send_capsules(&h3::encode_drain_capsule()) {
            Ok(())
        } else {
            Err(Error::InvalidState(
                "cannot write on the CONNECT stream (no runtime context)".into(),
            ))
        }
    }

    /// The WebTransport draft this session speaks.
    pub fn draft(&self) -> Draft {
        self.0.draft
    }

    /// The application protocol agreed through `wt-available-protocols` /
    /// `wt-protocol`, if any.
    pub fn protocol(&self) -> Option<String> {
        self.state().protocol.clone()
    }

    /// Session flow-control limits (drafts 13+), `None` for draft-02 sessions.
    pub fn flow_control(&self) -> Option<FlowSnapshot> {
        self.0.flow.as_ref().map(|f| f.snapshot())
    }

    /// Whether the peer asked to wind the session down (GOAWAY or
    /// DRAIN_WEBTRANSPORT_SESSION).
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// The peer sent GOAWAY or DRAIN_WEBTRANSPORT_SESSION.
    pub(crate) fn peer_goaway(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Writes capsules on the CONNECT stream of an established session, through its one
    /// writer: at once, queued behind a write in flight, or finished on the runtime when
    /// quinn does not take it all. `false` when the session is not established (or
    /// there is no runtime to finish the write on).
    pub(crate) fn send_capsules(&self, capsules: &[u8]) -> bool {
        {
            let s = self.state();
            if s.phase != SessionPhase::Accepted || s.close.is_some() {
                return false;
            }
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        match self.write_on_connect_stream_now(capsules.to_vec(), false) {
            Ok(Opened::Ready(())) => true,
            Ok(Opened::Pending(fut)) => {
                rt.spawn(fut);
                true
            }
            Err(_) => false,
        }
    }

    /// Ends the session for a protocol violation: the connection is closed with the
    /// HTTP/3 error `code` (one session per connection).
    pub(crate) fn abort(&self, code: u32, why: &str) {
        self.mark_closed(CloseInfo {
            code: 0,
            reason: why.to_string(),
            local: true,
        });
        if self.shares_connection() {
            // Other sessions live on the connection: only this one ends, its CONNECT
            // stream reset with the code.
            if let Some(mut send) = self.state().connect_send.take() {
                let _ = send.reset(quinn::VarInt::from_u32(code));
            }
            return;
        }
        self.0
            .conn
            .close(quinn::VarInt::from_u32(code), why.as_bytes());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        crate::sync::lock(&self.0.state)
    }

    /// The session id (the CONNECT stream's id).
    pub fn id(&self) -> u64 {
        self.0.session_id
    }

    /// The request's `:path` (with query) on the server; the requested path on the client.
    pub fn path(&self) -> &str {
        &self.0.request.path
    }

    /// The request's `:authority`.
    pub fn authority(&self) -> &str {
        &self.0.request.authority
    }

    /// Header fields of the request (server) or of the accepting response (client).
    pub fn headers(&self) -> &[(String, String)] {
        &self.0.request.headers
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.0.conn.remote_address()
    }

    /// The peer's certificate chain as DER, leaf first (empty when it presented none:
    /// a client without a certificate, or a server's session whose client was not asked).
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.0
            .conn
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }

    /// Whether this is the server's side of the session.
    pub fn is_server(&self) -> bool {
        self.0.is_server
    }

    /// The current phase.
    pub fn phase(&self) -> SessionPhase {
        self.state().phase
    }

    /// How the session ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.state().close.clone()
    }

    /// Resolves when the session is closed, with how it ended.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseInfo> {
        let mut s = self.state();
        if let Some(info) = &s.close {
            return Poll::Ready(info.clone());
        }
        if !s.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.close_wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until the session is closed.
    pub async fn closed(&self) -> CloseInfo {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Counts this session in the server's admission until it ends.
    pub(crate) fn hold_admission(&self, ticket: crate::admission::Ticket) {
        let mut slot = crate::sync::lock(&self.0.admission);
        if self.state().close.is_none() {
            *slot = Some(ticket);
        }
    }

    /// Records the end of the session once and wakes everyone waiting on it.
    pub(crate) fn mark_closed(&self, info: CloseInfo) -> bool {
        let wakers = {
            let mut s = self.state();
            if s.close.is_some() {
                return false;
            }
            if s.phase != SessionPhase::Rejected {
                s.phase = SessionPhase::Closed;
            }
            s.close = Some(info.clone());
            std::mem::take(&mut s.close_wakers)
        };
        drop(crate::sync::lock(&self.0.admission).take());
        let err = Error::SessionClosed(info);
        self.0.incoming_bi.close(err.clone());
        self.0.incoming_uni.close(err.clone());
        self.0.datagrams.close(err.clone());
        if let Some(streams) = &self.0.streams {
            streams.end(u64::from(h3::WT_SESSION_GONE), err);
        }
        for w in wakers {
            w.wake();
        }
        true
    }

    /// Writes on the CONNECT stream at once when quinn takes all of it (the usual case),
    /// else returns a future that finishes the write. With `finish`, the stream is ended
    /// and the connection closed once the peer has the data. A write made while another
    /// is in flight is queued behind it (and returns at once). Needs a tokio context.
    fn write_on_connect_stream_now(&self, data: Vec<u8>, finish: bool) -> Result<Opened<()>> {
        let mut send = {
            let mut s = self.state();
            match s.connect_send.take() {
                Some(send) => send,
                None => {
                    if let Some(queue) = &mut s.connect_queue {
                        queue.push((data, finish));
                        return Ok(Opened::Ready(()));
                    }
                    let err = match &s.close {
                        Some(info) => Error::SessionClosed(info.clone()),
                        None => Error::InvalidState("the CONNECT stream is finished".into()),
                    };
                    return Err(err);
                }
            }
        };
        match write_now(&mut send, &data) {
            Ok(None) => {
                self.after_connect_write(send, finish);
                Ok(Opened::Ready(()))
            }
            Ok(Some(rest)) => {
                self.state().connect_queue = Some(Vec::new());
                let this = self.clone();
                Ok(Opened::Pending(Box::pin(async move {
                    let mut result = send
                        .write_all(&rest)
                        .await
                        .map_err(|e| Error::Connection(format!("CONNECT stream: {e}")));
                    let mut finish = finish;
                    // Then whatever was queued meanwhile, in order.
                    while !finish {
                        let next = {
                            let mut s = this.state();
                            let queue = s.connect_queue.get_or_insert_with(Vec::new);
                            if queue.is_empty() {
                                s.connect_queue = None;
                                None
                            } else {
                                Some(queue.remove(0))
                            }
                        };
                        let Some((data, last)) = next else { break };
                        finish = last;
                        if let Err(e) = send.write_all(&data).await {
                            result =
                                result.and(Err(Error::Connection(format!("CONNECT stream: {e}"))));
                        }
                    }
                    this.state().connect_queue = None;
                    this.after_connect_write(send, finish);
                    result
                })))
            }
            Err(e) => {
                self.after_connect_write(send, finish);
                Err(e)
            }
        }
    }

    fn after_connect_write(&self, mut send: quinn::SendStream, finish: bool) {
        if !finish {
            self.state().connect_send = Some(send);
            return;
        }
        let _ = send.finish();
        // Close the connection once the peer has the data (or after a grace period), so
        // the capsule or response is not lost to an abrupt CONNECTION_CLOSE; unless other
        // sessions live on it (pooling).
        let conn = self.0.conn.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            if this.shares_connection() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.closed()).await;
            if !this.shares_connection() {
                conn.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"");
            }
        });
    }

    /// Takes our half of the CONNECT stream (to end it without the session's writer).
    pub(crate) fn state_connect_send(&self) -> Option<quinn::SendStream> {
        self.state().connect_send.take()
    }

    /// Resolves when the peer sends STOP_SENDING on our half of the CONNECT stream (or the
    /// half ends otherwise); `None` once the half was given up.
    pub(crate) fn connect_stream_stopped(
        &self,
    ) -> Option<impl Future<Output = std::result::Result<Option<quinn::VarInt>, quinn::StoppedError>>>
    {
        self.state()
            .connect_send
            .as_ref()
            .map(|send| send.stopped())
    }

    /// Accepts a requested session with a 200 response and extra header fields, without
    /// waiting when the response fits in the send window. Needs a tokio context.
    pub fn accept_now(&self, headers: Vec<(String, String)>) -> Result<Opened<()>> {
        self.accept_protocol_now(headers, None)
    }

    /// [`Self::accept_now`] answering the request's `wt-available-protocols` with
    /// `protocol` in `wt-protocol` (an RFC 8941 string). The protocol must be one the
    /// client offered. Sessions of flow-controlled drafts get their initial credit
    /// capsules right behind the response.
    pub fn accept_protocol_now(
        &self,
        headers: Vec<(String, String)>,
        protocol: Option<String>,
    ) -> Result<Opened<()>> {
        let mut fields = vec![(":status".to_string(), "200".to_string())];
        if self.0.draft == Draft::Draft02 {
            fields.push((
                "sec-webtransport-http3-draft".to_string(),
                "draft02".to_string(),
            ));
        }
        if let Some(p) = &protocol {
            let offered = self
                .headers()
                .iter()
                .find(|(k, _)| k == "wt-available-protocols")
                .and_then(|(_, v)| crate::draft::parse_sf_string_list(v))
                .unwrap_or_default();
            if !offered.contains(p) {
                return Err(Error::InvalidArgument(format!(
                    "wt_protocol {p:?} is not among the protocols the client offered: {offered:?}"
                )));
            }
            fields.push(("wt-protocol".to_string(), crate::draft::sf_string(p)?));
        }
        fields.extend(
            headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .filter(|(k, _)| protocol.is_none() || k != "wt-protocol"),
        );
        let mut response = h3::encode_headers(&fields);
        let initial = match (&self.0.flow, self.0.draft) {
            (Some(flow), Draft::Draft07To14) => Some(flow.initial()),
            _ => None,
        };
        if let Some(out) = &initial {
            response.extend_from_slice(&out.bytes);
        }
        // The phase moves to Accepted as the 200 starts going out: a close from now on
        // must end an accepted session (a capsule after the 200), not reject it.
        {
            let mut st = self.state();
            if st.phase != SessionPhase::Requested {
                return Err(Error::InvalidState(format!(
                    "cannot accept a session in phase {:?}",
                    st.phase
                )));
            }
            st.phase = SessionPhase::Accepted;
            st.protocol = protocol;
        }
        if let (Some(flow), Some(out)) = (&self.0.flow, &initial) {
            flow.commit(out);
        }
        self.write_on_connect_stream_now(response, false)
    }

    /// Accepts a requested session (see [`Self::accept_now`]).
    pub async fn accept(&self, headers: Vec<(String, String)>) -> Result<()> {
        match self.accept_now(headers)? {
            Opened::Ready(()) => Ok(()),
            Opened::Pending(fut) => fut.await,
        }
    }

    /// Rejects a requested session with a final non-2xx HTTP status (300..=599) and
    /// headers, without waiting when possible. Needs a tokio context.
    pub fn reject_now(&self, status: u16, headers: Vec<(String, String)>) -> Result<Opened<()>> {
        // 1xx are interim responses (the request would still wait for a final one) and
        // 2xx accepts: neither ends a request.
        if !(300..=599).contains(&status) {
            return Err(Error::InvalidArgument(format!(
                "{status} is not a rejection status (use 300-599)"
            )));
        }
        {
            let mut s = self.state();
            if s.phase != SessionPhase::Requested {
                return Err(Error::InvalidState(format!(
                    "cannot reject a session in phase {:?}",
                    s.phase
                )));
            }
            s.phase = SessionPhase::Rejected;
        }
        let mut fields = vec![(":status".to_string(), status.to_string())];
        fields.extend(
            headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v)),
        );
        let result = self.write_on_connect_stream_now(h3::encode_headers(&fields), true);
        self.mark_closed(CloseInfo {
            code: 0,
            reason: format!("rejected with status {status}"),
            local: true,
        });
        result
    }

    /// Rejects a requested session (see [`Self::reject_now`]).
    pub async fn reject(&self, status: u16, headers: Vec<(String, String)>) -> Result<()> {
        match self.reject_now(status, headers)? {
            Opened::Ready(()) => Ok(()),
            Opened::Pending(fut) => fut.await,
        }
    }

    /// Closes the session with an application code and reason, which the peer sees
    /// (CLOSE_WEBTRANSPORT_SESSION), without waiting when possible. Closing twice is
    /// harmless; an unanswered request is refused with 404. Needs a tokio context.
    pub fn close_now(&self, code: u32, reason: &str) -> Result<Opened<()>> {
        if reason.len() > h3::MAX_CLOSE_REASON {
            return Err(Error::InvalidArgument(format!(
                "close reason of {} bytes is over the {} bytes the protocol allows",
                reason.len(),
                h3::MAX_CLOSE_REASON
            )));
        }
        match self.phase() {
            SessionPhase::Accepted => {
                if self.mark_closed(CloseInfo {
                    code,
                    reason: reason.to_string(),
                    local: true,
                }) {
                    // The peer may already be gone; the session is closed either way.
                    if let Ok(Opened::Pending(fut)) = self
                        .write_on_connect_stream_now(h3::encode_close_capsule(code, reason), true)
                    {
                        return Ok(Opened::Pending(Box::pin(async move {
                            let _ = fut.await;
                            Ok(())
                        })));
                    }
                }
                Ok(Opened::Ready(()))
            }
            SessionPhase::Requested => self.reject_now(404, vec![]),
            SessionPhase::Rejected | SessionPhase::Closed => Ok(Opened::Ready(())),
        }
    }

    /// Closes the session (see [`Self::close_now`]).
    pub async fn close(&self, code: u32, reason: &str) -> Result<()> {
        match self.close_now(code, reason)? {
            Opened::Ready(()) => Ok(()),
            Opened::Pending(fut) => fut.await,
        }
    }

    /// Opens a bidirectional stream without waiting when the peer's stream credit allows
    /// it (the common case); its pumps write the stream header first. Otherwise returns a
    /// future that finishes the job. Needs a tokio context (the pumps are spawned).
    pub fn open_bi_now(&self) -> Result<Opened<(SendStream, RecvStream)>> {
        self.open_bi_launch(&mut Launch::Spawn)
    }

    /// [`Self::open_bi_now`] with the new stream's pumps started through `launch`.
    pub fn open_bi_launch(
        &self,
        launch: &mut Launch<'_>,
    ) -> Result<Opened<(SendStream, RecvStream)>> {
        self.ensure_open()?;
        if let Some(flow) = self.flow_to_wait(true) {
            let this = self.clone();
            return Ok(Opened::Pending(Box::pin(async move {
                flow.open(true).await;
                this.open_bi_credited().await
            })));
        }
        let header = self.stream_header(h3::FRAME_WT_BIDI);
        let opened = {
            let mut fut = std::pin::pin!(self.0.conn.open_bi());
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        match opened {
            Poll::Ready(Ok((send, recv))) => Ok(Opened::Ready(self.track_bi((
                SendStream::launched(send, Some(header), launch, self.send_credit()),
                RecvStream::launched(recv, launch, self.0.flow.clone()),
            )))),
            Poll::Ready(Err(e)) => Err(self.lost(e)),
            Poll::Pending => {
                let this = self.clone();
                Ok(Opened::Pending(Box::pin(async move {
                    this.open_bi_credited().await
                })))
            }
        }
    }

    /// Opens a unidirectional stream without waiting when possible (see
    /// [`Self::open_bi_now`]).
    pub fn open_uni_now(&self) -> Result<Opened<SendStream>> {
        self.open_uni_launch(&mut Launch::Spawn)
    }

    /// [`Self::open_uni_now`] with the new stream's pump started through `launch`.
    pub fn open_uni_launch(&self, launch: &mut Launch<'_>) -> Result<Opened<SendStream>> {
        self.ensure_open()?;
        if let Some(flow) = self.flow_to_wait(false) {
            let this = self.clone();
            return Ok(Opened::Pending(Box::pin(async move {
                flow.open(false).await;
                this.open_uni_credited().await
            })));
        }
        let header = self.stream_header(h3::STREAM_WT_UNI);
        let opened = {
            let mut fut = std::pin::pin!(self.0.conn.open_uni());
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        match opened {
            Poll::Ready(Ok(send)) => Ok(Opened::Ready(self.track_send(SendStream::launched(
                send,
                Some(header),
                launch,
                self.send_credit(),
            )))),
            Poll::Ready(Err(e)) => Err(self.lost(e)),
            Poll::Pending => {
                let this = self.clone();
                Ok(Opened::Pending(Box::pin(async move {
                    this.open_uni_credited().await
                })))
            }
        }
    }

    /// The flow control our sends take credit from: only when the peer declared it
    /// (drafts 13+); `None` for draft-02, whose writes do no accounting at all.
    pub(crate) fn send_credit(&self) -> Option<Arc<Flow>> {
        self.0.flow.as_ref().filter(|f| f.binds_sends()).cloned()
    }

    /// Keeps a new stream pair in the session's set (drafts 07+; a no-op for draft-02).
    pub(crate) fn track_bi(&self, pair: (SendStream, RecvStream)) -> (SendStream, RecvStream) {
        if let Some(set) = &self.0.streams {
            set.add_send(&pair.0);
            set.add_recv(&pair.1);
        }
        pair
    }

    /// Keeps a new send half in the session's set (see [`Self::track_bi`]).
    pub(crate) fn track_send(&self, send: SendStream) -> SendStream {
        if let Some(set) = &self.0.streams {
            set.add_send(&send);
        }
        send
    }

    /// Keeps a new receive half in the session's set (see [`Self::track_bi`]).
    pub(crate) fn track_recv(&self, recv: RecvStream) -> RecvStream {
        if let Some(set) = &self.0.streams {
            set.add_recv(&recv);
        }
        recv
    }

    fn stream_header(&self, kind: u64) -> Vec<u8> {
        let mut header = Vec::with_capacity(16);
        h3::put_varint(&mut header, kind);
        h3::put_varint(&mut header, self.0.session_id);
        header
    }

    /// Takes stream credit of a flow-controlled session at once if there is some;
    /// returns the flow to wait on when there is none (draft-02: always `None`).
    fn flow_to_wait(&self, bidi: bool) -> Option<Arc<Flow>> {
        let flow = self.0.flow.as_ref()?;
        let mut cx = Context::from_waker(Waker::noop());
        match flow.poll_open(bidi, &mut cx) {
            Poll::Ready(()) => None,
            Poll::Pending => Some(flow.clone()),
        }
    }

    /// Opens a bidirectional stream (waits while the peer's stream limit is reached).
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream)> {
        self.ensure_open()?;
        if let Some(flow) = &self.0.flow {
            flow.open(true).await;
        }
        self.open_bi_credited().await
    }

    async fn open_bi_credited(&self) -> Result<(SendStream, RecvStream)> {
        self.ensure_open()?;
        let (send, recv) = self.0.conn.open_bi().await.map_err(|e| self.lost(e))?;
        let header = self.stream_header(h3::FRAME_WT_BIDI);
        Ok(self.track_bi((
            SendStream::new(send, Some(header), self.send_credit()),
            RecvStream::new(recv, self.0.flow.clone()),
        )))
    }

    /// Opens a unidirectional stream.
    pub async fn open_uni(&self) -> Result<SendStream> {
        self.ensure_open()?;
        if let Some(flow) = &self.0.flow {
            flow.open(false).await;
        }
        self.open_uni_credited().await
    }

    async fn open_uni_credited(&self) -> Result<SendStream> {
        self.ensure_open()?;
        let send = self.0.conn.open_uni().await.map_err(|e| self.lost(e))?;
        Ok(self.track_send(SendStream::new(
            send,
            Some(self.stream_header(h3::STREAM_WT_UNI)),
            self.send_credit(),
        )))
    }

    fn ensure_open(&self) -> Result<()> {
        let s = self.state();
        match (&s.close, s.phase) {
            (Some(info), _) => Err(Error::SessionClosed(info.clone())),
            (None, SessionPhase::Accepted) => Ok(()),
            (None, phase) => Err(Error::InvalidState(format!(
                "session is {phase:?}, not accepted"
            ))),
        }
    }

    fn lost(&self, e: quinn::ConnectionError) -> Error {
        match self.close_info() {
            Some(info) => Error::SessionClosed(info),
            None => crate::error::connection_lost(e),
        }
    }

    /// Peer-opened bidirectional streams.
    pub fn incoming_bi(&self) -> &ReadyQueue<(SendStream, RecvStream)> {
        &self.0.incoming_bi
    }

    /// Peer-opened unidirectional streams.
    pub fn incoming_uni(&self) -> &ReadyQueue<RecvStream> {
        &self.0.incoming_uni
    }

    /// Received datagrams (oldest dropped first when the application falls behind).
    pub fn datagrams(&self) -> &ReadyQueue<Bytes> {
        &self.0.datagrams
    }

    /// The largest datagram payload that can be sent now, or `None` if the peer does
    /// not accept datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        if !self.0.peer_datagrams {
            return None; // no H3_DATAGRAM=1 in the peer's SETTINGS
        }
        self.0
            .conn
            .max_datagram_size()
            .map(|m| m.saturating_sub(self.0.datagram_header.len()))
    }

    /// Sends a datagram without waiting. When quinn's send buffer is full the oldest
    /// queued datagram is dropped (datagrams are unreliable by design): for senders that
    /// must never wait, such as a fan-out tick over many sessions.
    pub fn send_datagram(&self, payload: &[u8]) -> Result<()> {
        let frame = self.datagram_frame(payload)?;
        match self.0.conn.send_datagram(frame) {
            Ok(()) => {
                self.0.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.datagram_error(e, payload.len())),
        }
    }

    /// Sends a datagram, waiting for room in quinn's send buffer instead of dropping
    /// older queued datagrams: `Ready` when it was queued at once (no future is made),
    /// else a future that queues it once quinn has sent enough (a sender faster than
    /// the path is slowed to the path's pace, and nothing it sent is dropped on this
    /// side). Dropping the future before it is done leaves the datagram unsent.
    pub fn send_datagram_wait(&self, payload: &[u8]) -> Result<Opened<()>> {
        let frame = self.datagram_frame(payload)?;
        // One poll with a no-op waker: quinn queues the datagram if it fits (atomically
        // with the room check, under its lock) or hands it back as blocked.
        let try_now = std::pin::pin!(self.0.conn.send_datagram_wait(frame.clone()));
        let polled = try_now.poll(&mut Context::from_waker(Waker::noop()));
        match polled {
            Poll::Ready(Ok(())) => {
                self.0.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                Ok(Opened::Ready(()))
            }
            Poll::Ready(Err(e)) => Err(self.datagram_error(e, payload.len())),
            Poll::Pending => {
                let session = self.clone();
                let len = payload.len();
                Ok(Opened::Pending(Box::pin(async move {
                    match session.0.conn.send_datagram_wait(frame).await {
                        Ok(()) => {
                            session.0.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(e) => Err(session.datagram_error(e, len)),
                    }
                })))
            }
        }
    }

    /// `payload` behind the session's datagram header, checked against what can be sent.
    fn datagram_frame(&self, payload: &[u8]) -> Result<Bytes> {
        self.ensure_open()?;
        let max = self.max_datagram_size().ok_or_else(|| {
            Error::DatagramUnsupported("the peer does not accept datagrams".into())
        })?;
        if payload.len() > max {
            return Err(Error::DatagramTooLarge {
                size: payload.len(),
                max,
            });
        }
        let mut buf = BytesMut::with_capacity(self.0.datagram_header.len() + payload.len());
        buf.extend_from_slice(&self.0.datagram_header);
        buf.extend_from_slice(payload);
        Ok(buf.freeze())
    }

    fn datagram_error(&self, e: quinn::SendDatagramError, size: usize) -> Error {
        match e {
            quinn::SendDatagramError::TooLarge => Error::DatagramTooLarge {
                size,
                max: self.max_datagram_size().unwrap_or(0),
            },
            quinn::SendDatagramError::ConnectionLost(e) => self.lost(e),
            e => Error::DatagramUnsupported(e.to_string()),
        }
    }

    /// Keying material exported from the TLS session (RFC 5705).
    /// Draft-15 sessions use the per-session exporter: label "EXPORTER-WebTransport",
    /// the context made of the session id, `label` and `context`.
    pub fn export_keying_material(
        &self,
        label: &[u8],
        context: &[u8],
        len: usize,
    ) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let session_context;
        let (label, context) = if self.0.draft == Draft::Draft15 {
            session_context = crate::draft::exporter_context(self.0.session_id, label, context)?;
            (crate::draft::EXPORTER_LABEL, session_context.as_slice())
        } else {
            (label, context)
        };
        self.0
            .conn
            .export_keying_material(&mut out, label, context)
            .map_err(|_| Error::Config(format!("cannot export {len} bytes of keying material")))?;
        Ok(out)
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> SessionStats {
        let q = self.0.conn.stats();
        SessionStats {
            datagrams_sent: self.0.datagrams_sent.load(Ordering::Relaxed),
            datagrams_received: self.0.datagrams_received.load(Ordering::Relaxed),
            datagrams_dropped: self.0.datagrams.dropped(),
            bytes_sent: q.udp_tx.bytes,
            bytes_received: q.udp_rx.bytes,
            rtt: self.0.conn.rtt(),
            lost_packets: q.path.lost_packets,
            datagram_frames_sent: q.frame_tx.datagram,
            datagram_frames_received: q.frame_rx.datagram,
        }
    }
}
