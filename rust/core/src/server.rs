use crate::config::ServerOptions;
use crate::driver;
use crate::error::{Error, Result};
use crate::h3;
use crate::identity::Identity;
use crate::queue::{Overflow, ReadyQueue};
use crate::session::{Session, SessionPhase};
use crate::tls;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tracing::{debug, info, warn};

struct Shared {
    requests: ReadyQueue<Session>,
    sessions: Mutex<Registry>,
    options: ServerOptions,
    /// With `QLOGDIR` set: the configuration each connection's own is made from.
    qlog: Option<(crate::qlog::Qlog, quinn::ServerConfig)>,
}

/// The server's sessions, weakly held (a session lives as long as its connection's
/// tasks or the application hold it). Entries of ended sessions are swept when the map
/// has doubled since the last sweep, so no task has to wait for each connection's end
/// just to remove its entry.
#[derive(Default)]
struct Registry {
    map: HashMap<usize, Weak<crate::session::Shared>>,
    sweep_at: usize,
}

impl Registry {
    fn insert(&mut self, id: usize, session: &Session) {
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

/// A bound WebTransport server. Session requests come out of [`Server::requests`] in
/// arrival order; each must be accepted or rejected.
pub struct Server {
    endpoints: Vec<quinn::Endpoint>,
    shared: Arc<Shared>,
    certificate_hash: [u8; 32],
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
        let crypto = tls::server_crypto(identity, &options.client_auth)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(tls::transport_config(&options.transport)?));
        let shared = Arc::new(Shared {
            requests: ReadyQueue::new(options.pending_request_capacity, Overflow::Refuse),
            sessions: Mutex::new(Registry::default()),
            options: options.clone(),
            qlog: crate::qlog::Qlog::from_env("server", &options.transport)
                .map(|q| (q, server_config.clone())),
        });
        let mut endpoints = Vec::new();
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
            let endpoint = crate::socket::endpoint(socket, Some(server_config.clone()))?;
            let local = endpoint.local_addr()?;
            chosen_port.get_or_insert(local.port());
            info!(target: "fastwt.core", addr = %local, "listening");
            tokio::spawn(accept_loop(endpoint.clone(), shared.clone()));
            endpoints.push(endpoint);
        }
        Ok(Self {
            endpoints,
            shared,
            certificate_hash: identity.certificate_hash(),
        })
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
        self.certificate_hash
    }

    /// Session requests waiting for the application.
    pub fn requests(&self) -> &ReadyQueue<Session> {
        &self.shared.requests
    }

    /// Sessions currently open (requested or accepted).
    pub fn session_count(&self) -> usize {
        self.live_sessions().len()
    }

    fn live_sessions(&self) -> Vec<Session> {
        let mut registry = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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

    /// Stops accepting, closes every live session with `code` and `reason` (the peers see
    /// them), waits up to `grace` for the peers to go, then closes the sockets.
    pub async fn close(&self, code: u32, reason: &str, grace: Duration) {
        self.shared.requests.close(Error::EndpointClosed);
        for endpoint in &self.endpoints {
            endpoint.set_server_config(None);
        }
        for pending in self.shared.requests.drain() {
            let _ = pending.reject(503, vec![]).await;
        }
        let sessions = self.live_sessions();
        for s in &sessions {
            let _ = s.close(code, reason).await;
        }
        for endpoint in &self.endpoints {
            let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
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

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if endpoint.open_connections() > shared.options.max_sessions {
            debug!(target: "fastwt.core", peer = %incoming.remote_address(), "refused: max_sessions reached");
            incoming.refuse();
            continue;
        }
        if shared.requests.is_closed() {
            incoming.refuse();
            continue;
        }
        tokio::spawn(handle_incoming(incoming, shared.clone()));
    }
}

async fn handle_incoming(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let peer = incoming.remote_address();
    let timeout = shared.options.request_timeout;
    let connecting = match crate::qlog::accept(incoming, shared.qlog.as_ref()) {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(target: "fastwt.core", %peer, "handshake failed: {e}");
            return;
        }
    };
    let conn = match tokio::time::timeout(timeout, connecting).await {
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
    let session =
        match driver::accept_request(conn.clone(), timeout, &shared.options.transport).await {
            Ok(Some(session)) => session,
            Ok(None) => return,
            Err(e) => {
                debug!(target: "fastwt.core", %peer, "no session request: {e}");
                conn.close(quinn::VarInt::from_u32(h3::H3_GENERAL_PROTOCOL_ERROR), b"");
                return;
            }
        };
    debug!(target: "fastwt.core", %peer, path = session.path(), session = session.id(), "session requested");
    shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(stable_id, &session);
    let (_, refused) = shared.requests.push(session);
    if let Some(session) = refused {
        warn!(target: "fastwt.core", %peer, "refused with 503: too many pending session requests");
        let _ = session
            .reject(503, vec![("retry-after".into(), "1".into())])
            .await;
    }
}
