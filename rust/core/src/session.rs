use crate::config::TransportOptions;
use crate::credit::StreamCredit;
use crate::draft::{Draft, PeerSettings};
use crate::error::{CloseInfo, Error, Result};
use crate::flow::{Flow, FlowSnapshot};
use crate::h3;
use crate::queue::{Overflow, ReadyQueue};
use crate::stream::{RecvStream, SendStream, Spawner};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Longest a close waits for the peer to acknowledge the send streams the application
/// finished before it (a peer that stops reading holds them back: flow control). Like
/// a socket's linger: long enough for a lost packet's retransmission on a slow path,
/// short enough that a broken peer does not hold the closer.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The rest of a write on the CONNECT stream, for the runtime to finish.
type Finishing = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// The write of a session's answer ([`Session::accept`], [`Session::reject`]) or close
/// ([`Session::close`]) on its CONNECT stream.
///
/// The write starts when the method returns: the session's phase has moved on and quinn
/// took as much as its send window allowed, usually all of it (then [`Self::ready`]
/// gives the result without polling). Awaiting the future finishes the rest; dropped
/// unfinished, the rest is not written.
#[must_use = "the rest of the write is lost unless the future is polled"]
pub struct ConnectWrite(WriteState);

enum WriteState {
    /// Finished when the call returned (`None` once its result was taken).
    Done(Option<Result<()>>),
    /// quinn's send window was full: the rest goes out when polled.
    Writing(Finishing),
}

impl ConnectWrite {
    fn done(result: Result<()>) -> Self {
        Self(WriteState::Done(Some(result)))
    }

    fn from_write(write: Result<Option<Finishing>>) -> Self {
        match write {
            Ok(Some(rest)) => Self(WriteState::Writing(rest)),
            Ok(None) => Self::done(Ok(())),
            Err(e) => Self::done(Err(e)),
        }
    }

    /// The result if the write finished (or failed) when the call returned, else the
    /// write itself, to be awaited (on the session's runtime).
    pub fn ready(self) -> std::result::Result<Result<()>, Self> {
        self.0.ready().map_err(Self)
    }
}

impl WriteState {
    fn ready(self) -> std::result::Result<Result<()>, Self> {
        match self {
            WriteState::Done(result) => Ok(result.unwrap_or(Ok(()))),
            writing @ WriteState::Writing(_) => Err(writing),
        }
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self {
            WriteState::Done(result) => Poll::Ready(result.take().unwrap_or(Ok(()))),
            WriteState::Writing(rest) => rest.as_mut().poll(cx),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WriteState::Done(_) => "done",
            WriteState::Writing(_) => "waiting",
        }
    }
}

impl Future for ConnectWrite {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.poll_done(cx)
    }
}

impl std::fmt::Debug for ConnectWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConnectWrite").field(&self.0.name()).finish()
    }
}

/// A datagram send that waits for room in quinn's send buffer
/// ([`Session::send_datagram_wait`]): queued when the call returned if there was room
/// ([`Self::ready`] gives the result without polling), else queued by awaiting it once
/// room frees up. Dropped unfinished, the datagram is not sent.
#[must_use = "the datagram is not sent unless the future is polled"]
pub struct SendDatagram(WriteState);

impl SendDatagram {
    /// The result if the datagram was queued (or refused) when the call returned, else
    /// the send itself, to be awaited (on the session's runtime).
    pub fn ready(self) -> std::result::Result<Result<()>, Self> {
        self.0.ready().map_err(Self)
    }
}

impl Future for SendDatagram {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.poll_done(cx)
    }
}

impl std::fmt::Debug for SendDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SendDatagram").field(&self.0.name()).finish()
    }
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
    /// Send streams the application finished, which a close waits for (up to
    /// [`CLOSE_LINGER`]) so that it does not overtake them.
    pub(crate) finished: Arc<crate::stream::Finished>,
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
            finished: Arc::default(),
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
            Ok(None) => true,
            Ok(Some(rest)) => {
                rt.spawn(rest);
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

    /// Writes on the CONNECT stream at once when quinn takes all of it (the usual case,
    /// `None`), else returns a future that finishes the write. With `finish`, the stream is ended
    /// and the connection closed once the peer has the data. A write made while another
    /// is in flight is queued behind it (and returns at once). Needs a tokio context.
    fn write_on_connect_stream_now(
        &self,
        data: Vec<u8>,
        finish: bool,
    ) -> Result<Option<Finishing>> {
        let mut send = {
            let mut s = self.state();
            match s.connect_send.take() {
                Some(send) => send,
                None => {
                    if let Some(queue) = &mut s.connect_queue {
                        queue.push((data, finish));
                        return Ok(None);
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
                Ok(None)
            }
            Ok(Some(rest)) => {
                self.state().connect_queue = Some(Vec::new());
                let this = self.clone();
                Ok(Some(Box::pin(async move {
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

    /// Accepts a requested session with a 200 response and extra header fields;
    /// `protocol` answers the request's `wt-available-protocols` in `wt-protocol` (an
    /// RFC 8941 string; it must be one the client offered). Sessions of flow-controlled
    /// drafts get their initial credit capsules right behind the response. The response
    /// is written before this returns when it fits in the send window (see
    /// [`ConnectWrite`]). Needs a tokio context.
    pub fn accept(&self, headers: Vec<(String, String)>, protocol: Option<String>) -> ConnectWrite {
        ConnectWrite::from_write(self.write_accept(headers, protocol))
    }

    fn write_accept(
        &self,
        headers: Vec<(String, String)>,
        protocol: Option<String>,
    ) -> Result<Option<Finishing>> {
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

    /// Rejects a requested session with a final non-2xx HTTP status (300..=599) and
    /// headers, written before this returns when possible (see [`ConnectWrite`]). Needs
    /// a tokio context.
    pub fn reject(&self, status: u16, headers: Vec<(String, String)>) -> ConnectWrite {
        ConnectWrite::from_write(self.write_reject(status, headers))
    }

    fn write_reject(
        &self,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> Result<Option<Finishing>> {
        // 1xx are interim responses (the request would still wait for a final one) and
        // 2xx accepts: neither ends a request.
        if !crate::config::REJECTION_STATUS.contains(&status) {
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

    /// Closes the session with an application code and reason, which the peer sees
    /// (CLOSE_WEBTRANSPORT_SESSION), written before this returns when possible (see
    /// [`ConnectWrite`]). The session is closed for the application at once; the
    /// capsule waits (up to [`CLOSE_LINGER`]) until the peer has acknowledged every
    /// send stream the application finished, so a reply written just before the close
    /// is not overtaken by it. Closing twice is harmless; an unanswered request is
    /// refused with 404. Needs a tokio context.
    pub fn close(&self, code: u32, reason: &str) -> ConnectWrite {
        if reason.len() > h3::MAX_CLOSE_REASON {
            return ConnectWrite::done(Err(Error::InvalidArgument(format!(
                "close reason of {} bytes is over the {} bytes the protocol allows",
                reason.len(),
                h3::MAX_CLOSE_REASON
            ))));
        }
        match self.phase() {
            SessionPhase::Accepted => {
                if self.mark_closed(CloseInfo {
                    code,
                    reason: reason.to_string(),
                    local: true,
                }) {
                    let capsule = h3::encode_close_capsule(code, reason);
                    if !self.0.finished.is_settled() {
                        // Streams the application finished are still on their way: the
                        // capsule goes once the peer has them (or the linger is over).
                        let this = self.clone();
                        return ConnectWrite(WriteState::Writing(Box::pin(async move {
                            let finished = this.finished();
                            let _ = tokio::time::timeout(CLOSE_LINGER, finished.settled()).await;
                            if let Ok(Some(rest)) = this.write_on_connect_stream_now(capsule, true)
                            {
                                let _ = rest.await;
                            }
                            Ok(())
                        })));
                    }
                    // The peer may already be gone; the session is closed either way.
                    if let Ok(Some(rest)) = self.write_on_connect_stream_now(capsule, true) {
                        return ConnectWrite(WriteState::Writing(Box::pin(async move {
                            let _ = rest.await;
                            Ok(())
                        })));
                    }
                }
                ConnectWrite::done(Ok(()))
            }
            SessionPhase::Requested => self.reject(404, vec![]),
            SessionPhase::Rejected | SessionPhase::Closed => ConnectWrite::done(Ok(())),
        }
    }

    /// Opens a bidirectional stream: ready at the first poll when the peer's stream
    /// credit allows it (the usual case), else once credit comes. Its pumps write the
    /// stream header first.
    pub fn open_bi(&self) -> OpenBi {
        OpenBi(Opening::new(self))
    }

    /// Opens a unidirectional stream (see [`Self::open_bi`]).
    pub fn open_uni(&self) -> OpenUni {
        OpenUni(Opening::new(self))
    }

    /// The flow control our sends take credit from: only when the peer declared it
    /// (drafts 13+); `None` for draft-02, whose writes do no accounting at all.
    pub(crate) fn send_credit(&self) -> Option<Arc<Flow>> {
        self.0.flow.as_ref().filter(|f| f.binds_sends()).cloned()
    }

    /// The session's record of finished send streams, for the send halves it makes.
    pub(crate) fn finished(&self) -> Arc<crate::stream::Finished> {
        self.0.finished.clone()
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

    /// The next stream the peer opened, bidirectional: `Pending` (with `cx`'s waker
    /// kept) while none is waiting; the session's end once it ended and none is left.
    pub fn poll_accept_bi(&self, cx: &mut Context<'_>) -> Poll<Result<(SendStream, RecvStream)>> {
        self.0.incoming_bi.poll_pop(cx)
    }

    /// Waits for the next bidirectional stream the peer opens (see
    /// [`Self::poll_accept_bi`]).
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream)> {
        std::future::poll_fn(|cx| self.poll_accept_bi(cx)).await
    }

    /// The next unidirectional stream the peer opened (see [`Self::poll_accept_bi`]).
    pub fn poll_accept_uni(&self, cx: &mut Context<'_>) -> Poll<Result<RecvStream>> {
        self.0.incoming_uni.poll_pop(cx)
    }

    /// Waits for the next unidirectional stream the peer opens.
    pub async fn accept_uni(&self) -> Result<RecvStream> {
        std::future::poll_fn(|cx| self.poll_accept_uni(cx)).await
    }

    /// The oldest datagram received and not read yet: `Pending` (with `cx`'s waker
    /// kept) while none is queued. Datagrams the application does not read in time
    /// are dropped, oldest first (counted in [`SessionStats::datagrams_dropped`]).
    pub fn poll_read_datagram(&self, cx: &mut Context<'_>) -> Poll<Result<Bytes>> {
        self.0.datagrams.poll_pop(cx)
    }

    /// Up to `max` queued datagrams appended to `out` in one call, oldest first:
    /// `Ready(Ok(n))` with `n` ≥ 1, `Pending` while none is queued, the session's end
    /// once it ended and none is left.
    pub fn poll_read_datagrams(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut Vec<Bytes>,
    ) -> Poll<Result<usize>> {
        let before = out.len();
        match self.0.datagrams.pop_many(max.max(1), out, Some(cx.waker())) {
            Ok(()) if out.len() > before => Poll::Ready(Ok(out.len() - before)),
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Waits for the next datagram (see [`Self::poll_read_datagram`]).
    pub async fn read_datagram(&self) -> Result<Bytes> {
        std::future::poll_fn(|cx| self.poll_read_datagram(cx)).await
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
    /// older queued datagrams: done when it was queued at once (no future is made; see
    /// [`SendDatagram::ready`]), else it queues it once quinn has sent enough (a sender
    /// faster than the path is slowed to the path's pace, and nothing it sent is dropped
    /// on this side). Dropping it before it is done leaves the datagram unsent.
    pub fn send_datagram_wait(&self, payload: &[u8]) -> SendDatagram {
        let frame = match self.datagram_frame(payload) {
            Ok(frame) => frame,
            Err(e) => return SendDatagram(WriteState::Done(Some(Err(e)))),
        };
        // One poll with a no-op waker: quinn queues the datagram if it fits (atomically
        // with the room check, under its lock) or hands it back as blocked.
        let try_now = std::pin::pin!(self.0.conn.send_datagram_wait(frame.clone()));
        let polled = try_now.poll(&mut Context::from_waker(Waker::noop()));
        match polled {
            Poll::Ready(Ok(())) => {
                self.0.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                SendDatagram(WriteState::Done(Some(Ok(()))))
            }
            Poll::Ready(Err(e)) => SendDatagram(WriteState::Done(Some(Err(
                self.datagram_error(e, payload.len())
            )))),
            Poll::Pending => {
                let session = self.clone();
                let len = payload.len();
                SendDatagram(WriteState::Writing(Box::pin(async move {
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

    /// `payload` behind the session's datagram header. Its size is left to quinn's
    /// send, which checks the frame against the path's limit under the connection's lock
    /// it takes anyway (`TooLarge` becomes [`Error::DatagramTooLarge`] with the payload's
    /// limit, in [`Self::datagram_error`]). Checking it here as well took that lock a
    /// second time per datagram: in a fan-out to 10,000 sessions, where every
    /// connection's state is a cache miss, `perf` put 11% of the server's samples in
    /// that check (`max_datagram_size`, the packet key's `tag_len`, `Datagrams::max_size`).
    fn datagram_frame(&self, payload: &[u8]) -> Result<Bytes> {
        self.ensure_open()?;
        if !self.0.peer_datagrams {
            return Err(no_datagrams());
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
            quinn::SendDatagramError::UnsupportedByPeer => no_datagrams(),
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

/// A QUIC stream (or pair of halves) as quinn opens it, before it becomes a
/// WebTransport stream of the session (header, pumps, tracking).
trait RawStream: Sized + Send + 'static {
    /// Whether it is bidirectional (the session's credit to take).
    const BIDI: bool;
    /// quinn's opening future.
    fn open(conn: &quinn::Connection) -> impl Future<Output = RawResult<Self>> + Send + '_;
}

type RawResult<T> = std::result::Result<T, quinn::ConnectionError>;

impl RawStream for (quinn::SendStream, quinn::RecvStream) {
    const BIDI: bool = true;
    fn open(conn: &quinn::Connection) -> impl Future<Output = RawResult<Self>> + Send + '_ {
        conn.open_bi()
    }
}

impl RawStream for quinn::SendStream {
    const BIDI: bool = false;
    fn open(conn: &quinn::Connection) -> impl Future<Output = RawResult<Self>> + Send + '_ {
        conn.open_uni()
    }
}

/// What both openings share: the session and (once the path without waiting failed)
/// the future waiting for stream credit.
struct Opening<T> {
    session: Session,
    waiting: Option<Pin<Box<dyn Future<Output = Result<T>> + Send>>>,
}

impl<T: RawStream> Opening<T> {
    fn new(session: &Session) -> Self {
        Self {
            session: session.clone(),
            waiting: None,
        }
    }

    /// Opens the QUIC stream: at the first poll, without allocating, when the session's
    /// and QUIC's stream credit allow it; else through a future that waits for both.
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.waiting.is_none() {
            let session = &self.session;
            if let Err(e) = session.ensure_open() {
                return Poll::Ready(Err(e));
            }
            let flow = session.flow_to_wait(T::BIDI);
            if flow.is_none() {
                let mut fut = std::pin::pin!(T::open(&session.0.conn));
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    return Poll::Ready(result.map_err(|e| session.lost(e)));
                }
                // Pending: quinn's own stream limit; wait below.
            }
            let this = session.clone();
            self.waiting = Some(Box::pin(async move {
                if let Some(flow) = flow {
                    flow.open(T::BIDI).await;
                }
                this.ensure_open()?;
                T::open(&this.0.conn).await.map_err(|e| this.lost(e))
            }));
        }
        let Some(waiting) = self.waiting.as_mut() else {
            return Poll::Pending; // set just above
        };
        let result = std::task::ready!(waiting.as_mut().poll(cx));
        self.waiting = None;
        Poll::Ready(result)
    }
}

/// The opening of a bidirectional stream ([`Session::open_bi`]).
#[must_use = "futures do nothing unless polled"]
pub struct OpenBi(Opening<(quinn::SendStream, quinn::RecvStream)>);

impl OpenBi {
    /// Polls the opening with the new stream's pumps handed to `spawner` instead of
    /// spawned on the current runtime (see [`Spawner`]).
    pub fn poll_spawning(
        &mut self,
        cx: &mut Context<'_>,
        spawner: &mut dyn Spawner,
    ) -> Poll<Result<(SendStream, RecvStream)>> {
        self.poll_with(cx, Some(spawner))
    }

    fn poll_with(
        &mut self,
        cx: &mut Context<'_>,
        spawner: Option<&mut dyn Spawner>,
    ) -> Poll<Result<(SendStream, RecvStream)>> {
        let (send, recv) = match std::task::ready!(self.0.poll_raw(cx)) {
            Ok(pair) => pair,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let session = &self.0.session;
        let header = Some(session.stream_header(h3::FRAME_WT_BIDI));
        let (credit, flow) = (session.send_credit(), session.0.flow.clone());
        let finished = session.finished();
        let pair = match spawner {
            Some(spawner) => (
                SendStream::launched(send, header, Some(&mut *spawner), credit, finished),
                RecvStream::launched(recv, Some(spawner), flow),
            ),
            None => (
                SendStream::launched(send, header, None, credit, finished),
                RecvStream::launched(recv, None, flow),
            ),
        };
        Poll::Ready(Ok(session.track_bi(pair)))
    }
}

impl Future for OpenBi {
    type Output = Result<(SendStream, RecvStream)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(cx, None)
    }
}

impl std::fmt::Debug for OpenBi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBi")
            .field("session", &self.0.session.id())
            .finish()
    }
}

/// The opening of a unidirectional stream ([`Session::open_uni`]).
#[must_use = "futures do nothing unless polled"]
pub struct OpenUni(Opening<quinn::SendStream>);

impl OpenUni {
    /// Polls the opening with the new stream's pump handed to `spawner` (see
    /// [`OpenBi::poll_spawning`]).
    pub fn poll_spawning(
        &mut self,
        cx: &mut Context<'_>,
        spawner: &mut dyn Spawner,
    ) -> Poll<Result<SendStream>> {
        self.poll_with(cx, Some(spawner))
    }

    fn poll_with(
        &mut self,
        cx: &mut Context<'_>,
        spawner: Option<&mut dyn Spawner>,
    ) -> Poll<Result<SendStream>> {
        let send = match std::task::ready!(self.0.poll_raw(cx)) {
            Ok(send) => send,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let session = &self.0.session;
        let header = session.stream_header(h3::STREAM_WT_UNI);
        let (credit, finished) = (session.send_credit(), session.finished());
        let send = SendStream::launched(send, Some(header), spawner, credit, finished);
        Poll::Ready(Ok(session.track_send(send)))
    }
}

impl Future for OpenUni {
    type Output = Result<SendStream>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(cx, None)
    }
}

impl std::fmt::Debug for OpenUni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenUni")
            .field("session", &self.0.session.id())
            .finish()
    }
}

/// The error for a datagram to a peer that accepts none: no H3_DATAGRAM=1 in its
/// SETTINGS, or no QUIC datagram support.
fn no_datagrams() -> Error {
    Error::DatagramUnsupported("the peer does not accept datagrams".into())
}
