use crate::admission::{Admission, Limits, Refusal, Ticket};
use crate::config::ServerOptions;
use crate::error::{Error, Result};
use crate::h3;
use crate::handshake;
use crate::identity::Identity;
use crate::queue::{Overflow, ReadyQueue};
use crate::session::{Session, SessionPhase};
use crate::sync::lock;
use crate::{tls, transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn};

struct Shared {
    requests: ReadyQueue<Session>,
    sessions: Mutex<Registry>,
    admission: Arc<Admission>,
    options: ServerOptions,
    /// With `QLOGDIR` set: where each connection's trace goes.
    qlog: Option<crate::qlog::Qlog>,
    /// The QUIC configuration new connections get (replaced by [`Server::set_identity`]).
    config: Mutex<quinn::ServerConfig>,
    /// Requests waiting for the application's answer, refused at their deadline.
    deadlines: Arc<crate::deadline::Deadlines>,
}

/// The server's sessions, weakly held (a session lives as long as its connection's
/// tasks or the application hold it). Entries of ended sessions are swept when the map
/// has doubled since the last sweep, so no task has to wait for each connection's end
/// just to remove its entry.
#[derive(Default)]
struct Registry {
    /// Keyed by (connection, session id): a pooled connection has several.
    map: HashMap<(usize, u64), Weak<crate::session::Shared>>,
    sweep_at: usize,
}

impl Registry {
    fn insert(&mut self, id: (usize, u64), session: &Session) {
        if self.map.len() >= self.sweep_at {
            self.sweep();
        }
        self.map.insert(id, Arc::downgrade(&session.0));
    }

    fn sweep(&mut self) {
        self.map.retain(|_, w| w.strong_count() > 0);
        self.sweep_at = (self.map.len() * 2).max(64);
    }
}

/// A bound WebTransport server. Session requests come out of [`Server::accept`] in
/// arrival order; each must be accepted or rejected.
pub struct Server {
    endpoints: Vec<quinn::Endpoint>,
    shared: Arc<Shared>,
    certificate_hash: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.local_addrs())
            .finish()
    }
}

impl Server {
    /// Binds every address of `options.bind` and starts accepting. Must be called within
    /// a tokio runtime.
    pub fn bind(options: ServerOptions, identity: &Identity) -> Result<Self> {
        if options.bind.is_empty() {
            return Err(Error::Config("no address to bind".into()));
        }
        let mut sockets = Vec::new();
        let mut chosen_port = None;
        for addr in &options.bind {
            let mut addr = *addr;
            // Several addresses with port 0 share the port the OS picked for the first.
            if addr.port() == 0 {
                if let Some(port) = chosen_port {
                    addr.set_port(port);
                }
            }
            let socket = crate::socket::bind_udp(addr, options.transport.socket_buffer)?;
            chosen_port.get_or_insert(socket.local_addr()?.port());
            sockets.push(socket);
        }
        Self::serve(options, identity, sockets)
    }

    /// Serves on sockets bound elsewhere (`options.bind` is not used): a worker's
    /// inherited socket of a `SO_REUSEPORT` group, made and held by its supervisor.
    /// Must be called within a tokio runtime.
    pub fn from_sockets(
        options: ServerOptions,
        identity: &Identity,
        sockets: Vec<std::net::UdpSocket>,
    ) -> Result<Self> {
        if sockets.is_empty() {
            return Err(Error::Config("no socket to serve on".into()));
        }
        for socket in &sockets {
            crate::socket::enlarge_buffers(socket, options.transport.socket_buffer);
        }
        Self::serve(options, identity, sockets)
    }

    fn serve(
        options: ServerOptions,
        identity: &Identity,
        sockets: Vec<std::net::UdpSocket>,
    ) -> Result<Self> {
        options.validate()?;
        let server_config = quic_config(&options, identity)?;
        let shared = Arc::new(Shared {
            requests: ReadyQueue::new(options.pending_request_capacity, Overflow::Refuse),
            sessions: Mutex::new(Registry::default()),
            admission: Admission::new(Limits {
                max_sessions: options.max_sessions,
                max_sessions_per_ip: options.max_sessions_per_ip,
                max_handshakes: options.max_handshakes,
            }),
            options: options.clone(),
            qlog: crate::qlog::Qlog::from_env("server", &options.transport),
            config: Mutex::new(server_config.clone()),
            deadlines: Arc::default(),
        });
        tokio::spawn(crate::deadline::Deadlines::run(shared.deadlines.clone()));
        let mut endpoints = Vec::new();
        for socket in sockets {
            let endpoint_config = match &options.cid {
                Some(cid) => cid.endpoint_config(),
                None => quinn::EndpointConfig::default(),
            };
            let endpoint =
                crate::socket::endpoint(socket, Some(server_config.clone()), endpoint_config)?;
            let local = endpoint.local_addr()?;
            info!(target: "fastwt.core", addr = %local, "listening");
            tokio::spawn(accept_loop(endpoint.clone(), shared.clone()));
            endpoints.push(endpoint);
        }
        Ok(Self {
            endpoints,
            shared,
            certificate_hash: Mutex::new(identity.certificate_hash()),
        })
    }

    /// Serves `identity` to new connections from now on; sessions already open keep
    /// theirs (their TLS handshake is done). For certificate rotation: development
    /// certificates expire within 14 days, and `fastwt run` reloads on SIGHUP.
    pub fn set_identity(&self, identity: &Identity) -> Result<()> {
        if self.shared.requests.is_closed() {
            return Err(Error::EndpointClosed);
        }
        let config = quic_config(&self.shared.options, identity)?;
        for endpoint in &self.endpoints {
            endpoint.set_server_config(Some(config.clone()));
        }
        *lock(&self.shared.config) = config;
        *lock(&self.certificate_hash) = identity.certificate_hash();
        info!(target: "fastwt.core", "certificate replaced");
        Ok(())
    }

    /// The bound addresses (with the ports the OS chose for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.endpoints
            .iter()
            .filter_map(|e| e.local_addr().ok())
            .collect()
    }

    /// SHA-256 of the served leaf certificate.
    pub fn certificate_hash(&self) -> [u8; 32] {
        *lock(&self.certificate_hash)
    }

    /// The next session request, in arrival order: `Pending` (with `cx`'s waker kept)
    /// while none is waiting; [`Error::EndpointClosed`] once the server closed. Each
    /// request must be accepted or rejected ([`Session::accept`], [`Session::reject`])
    /// within `request_timeout`, or it is refused with 503.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<Session>> {
        self.shared.requests.poll_pop(cx)
    }

    /// Waits for the next session request (see [`Self::poll_accept`]).
    pub async fn accept(&self) -> Result<Session> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Session requests queued for the application (tests).
    #[cfg(test)]
    pub(crate) fn queued_requests(&self) -> usize {
        self.shared.requests.len()
    }

    /// Sessions currently open (requested or accepted), across every bound address.
    pub fn session_count(&self) -> usize {
        self.shared.admission.sessions()
    }

    /// Connections between their first packet and their CONNECT request.
    pub fn handshake_count(&self) -> usize {
        self.shared.admission.handshakes()
    }

    fn live_sessions(&self) -> Vec<Session> {
        let mut registry = lock(&self.shared.sessions);
        registry.sweep();
        registry
            .map
            .values()
            .filter_map(|w| w.upgrade())
            .map(Session)
            // Held by the application after its end, a session no longer counts.
            .filter(|s| !matches!(s.phase(), SessionPhase::Closed | SessionPhase::Rejected))
            .collect()
    }

    /// Sends HTTP/3 GOAWAY on every live session's connection: the peers learn the server
    /// is going away (a fastwt client's session turns `draining`) while their sessions
    /// keep working. What a graceful shutdown sends first.
    pub fn goaway(&self) {
        for session in self.live_sessions() {
            session.send_goaway();
        }
    }

    /// Stops accepting, closes every live session with `code` and `reason` (the peers see
    /// them), waits up to `grace` for the peers to go, then closes the sockets.
    ///
    /// Bounded whatever the peers do: pending requests are refused and sessions closed
    /// all at once, each write given at most `grace` (a peer that grants no credit cannot
    /// hold it up), and the connections still up after that are closed regardless.
    pub async fn close(&self, code: u32, reason: &str, grace: Duration) {
        self.shared.requests.close(Error::EndpointClosed);
        for endpoint in &self.endpoints {
            endpoint.set_server_config(None);
        }
        let deadline = Instant::now() + grace;
        let mut closing = tokio::task::JoinSet::new();
        for pending in self.shared.requests.drain() {
            closing.spawn(async move {
                let _ = timeout_at(deadline, pending.reject(503, vec![])).await;
            });
        }
        for session in self.live_sessions() {
            let reason = reason.to_string();
            closing.spawn(async move {
                // HTTP/3's graceful shutdown signal, then the session's close.
                session.send_goaway();
                let _ = timeout_at(deadline, session.close(code, &reason)).await;
            });
        }
        while closing.join_next().await.is_some() {}
        for endpoint in &self.endpoints {
            let _ = timeout_at(deadline, endpoint.wait_idle()).await;
        }
        for endpoint in &self.endpoints {
            endpoint.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), reason.as_bytes());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.requests.close(Error::EndpointClosed);
        for endpoint in &self.endpoints {
            endpoint.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"server dropped");
        }
    }
}

/// The QUIC server configuration for an identity: TLS (client auth as configured) and
/// the transport knobs.
fn quic_config(options: &ServerOptions, identity: &Identity) -> Result<quinn::ServerConfig> {
    let crypto = tls::server_crypto(identity, &options.client_auth)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport::transport_config(&options.transport)?));
    Ok(config)
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        if shared.requests.is_closed() {
            incoming.refuse();
            continue;
        }
        if shared.options.retry && !incoming.remote_address_validated() {
            // Stateless: nothing is kept until the client comes back with the token.
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
            continue;
        }
        match shared.admission.begin_handshake(peer.ip()) {
            Ok(ticket) => {
                tokio::spawn(handle_incoming(incoming, shared.clone(), ticket));
            }
            Err(refusal) => {
                debug!(target: "fastwt.core", %peer, "connection refused: {refusal}");
                incoming.refuse();
            }
        }
    }
}

async fn handle_incoming(incoming: quinn::Incoming, shared: Arc<Shared>, ticket: Ticket) {
    let peer = incoming.remote_address();
    // One deadline from the first packet to the application's answer.
    let deadline = Instant::now() + shared.options.request_timeout;
    let traced = shared
        .qlog
        .as_ref()
        .map(|q| (q, lock(&shared.config).clone()));
    let connecting = match crate::qlog::accept(incoming, traced) {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(target: "fastwt.core", %peer, "handshake failed: {e}");
            return;
        }
    };
    let conn = match timeout_at(deadline, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!(target: "fastwt.core", %peer, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            debug!(target: "fastwt.core", %peer, "handshake timed out");
            return;
        }
    };
    let stable_id = conn.stable_id();
    // Further CONNECTs on the connection: pooled sessions up to the limit, else 429.
    let weak = Arc::downgrade(&shared);
    let pool = Some(handshake::PoolOffer {
        limit: shared.options.max_sessions_per_connection,
        request_timeout: shared.options.request_timeout,
        offer: Box::new(move |session: Session, deadline: Instant| {
            if let Some(shared) = weak.upgrade() {
                tokio::spawn(offer_pooled(shared, session, stable_id, deadline));
            }
        }),
    });
    let session =
        match handshake::accept_request(conn.clone(), deadline, &shared.options.transport, pool)
            .await
        {
            Ok(Some(session)) => session,
            Ok(None) => return,
            Err(e) => {
                debug!(target: "fastwt.core", %peer, "no session request: {e}");
                let code = match e {
                    Error::Timeout(_) => h3::H3_REQUEST_INCOMPLETE,
                    _ => h3::H3_GENERAL_PROTOCOL_ERROR,
                };
                conn.close(quinn::VarInt::from_u32(code), e.to_string().as_bytes());
                return;
            }
        };
    drop(conn); // the session holds the connection from here on
    let ticket = match ticket.into_session() {
        Ok(ticket) => ticket,
        Err(refusal) => {
            warn!(target: "fastwt.core", %peer, "refused with 503: {refusal}");
            let retry = vec![("retry-after".into(), "1".into())];
            let _ = timeout_at(deadline, session.reject(503, retry)).await;
            return;
        }
    };
    queue_request(&shared, session, ticket, stable_id, deadline).await;
}

/// A further session request on a pooled connection: admitted like a connection's
/// first (`max_sessions`: 503; `max_sessions_per_ip`: 429), then queued.
async fn offer_pooled(shared: Arc<Shared>, session: Session, stable_id: usize, deadline: Instant) {
    if shared.requests.is_closed() {
        let _ = timeout_at(deadline, session.reject(503, vec![])).await;
        return;
    }
    match shared
        .admission
        .admit_session(session.remote_address().ip())
    {
        Ok(ticket) => queue_request(&shared, session, ticket, stable_id, deadline).await,
        Err(refusal) => {
            let status = if refusal == Refusal::PerIp { 429 } else { 503 };
            warn!(target: "fastwt.core", peer = %session.remote_address(), "pooled session refused with {status}: {refusal}");
            let retry = vec![("retry-after".into(), "1".into())];
            let _ = timeout_at(deadline, session.reject(status, retry)).await;
        }
    }
}

/// Hands an admitted session request to the application (or refuses it with 503 when
/// the queue of pending requests is full), refused at `deadline` if unanswered.
async fn queue_request(
    shared: &Arc<Shared>,
    session: Session,
    ticket: Ticket,
    stable_id: usize,
    deadline: Instant,
) {
    let peer = session.remote_address();
    session.hold_admission(ticket);
    debug!(target: "fastwt.core", %peer, path = session.path(), session = session.id(), "session requested");
    lock(&shared.sessions).insert((stable_id, session.id()), &session);
    let (_, refused) = shared.requests.push(session.clone());
    if let Some(session) = refused {
        warn!(target: "fastwt.core", %peer, "refused with 503: too many pending session requests");
        let retry = vec![("retry-after".into(), "1".into())];
        let _ = timeout_at(deadline, session.reject(503, retry)).await;
        return;
    }
    // A request the application does not answer in time is refused, not left pending.
    shared.deadlines.watch(&session, deadline);
}
