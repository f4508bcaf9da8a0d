use crate::errors::to_py;
use crate::notifier::Notifier;
use crate::op::{Op, OpValue};
use crate::options::{positive_secs, Transport, MAX_SECS};
use crate::runtime;
use crate::session::SessionHandle;
use fastwt_core::{CidConfig, CidKey};
use fastwt_core::{ClientAuth, Identity, Server, ServerOptions};
use pyo3::prelude::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A bound server. Session requests are taken with `poll_request`.
#[pyclass(module = "fastwt._core", frozen)]
pub struct ServerHandle {
    server: Arc<Server>,
}

fn load_identity(certfile: Option<PathBuf>, keyfile: Option<PathBuf>) -> PyResult<Identity> {
    match Identity::pem_pair(certfile, keyfile).map_err(to_py)? {
        Some((c, k)) => Identity::load_pem(&c, &k).map_err(to_py),
        // Neither: a development certificate.
        None => Identity::development().map_err(to_py),
    }
}

/// Core's server defaults: the handle's keyword defaults are read from them, not written
/// out again.
fn d() -> ServerOptions {
    ServerOptions::default()
}

#[pymethods]
impl ServerHandle {
    /// Binds `bind` (a list of (host, port)) and starts accepting connections; with
    /// `sockets` (file descriptors of bound UDP sockets, whose ownership passes to the
    /// server) serves on those instead. `server_id` (0..=9 octets), `cid_config_id`
    /// and `worker` make QUIC-LB connection IDs (see `fastwt_core::CidConfig`); every
    /// worker of a group gets the same `worker_secret` (16+ octets). `cid_key` (16
    /// octets, needs `server_id`) encrypts them (QUIC-LB single pass).
    #[new]
    #[pyo3(signature = (*, bind, certfile=None, keyfile=None, max_sessions=d().max_sessions,
        pending_request_capacity=d().pending_request_capacity,
        request_timeout=d().request_timeout.as_secs_f64(), transport=None,
        max_sessions_per_ip=d().max_sessions_per_ip, max_handshakes=d().max_handshakes,
        retry=d().retry, client_auth="none", client_ca=None, sockets=Vec::new(), server_id=None,
        cid_config_id=0, worker=None, worker_secret=None,
        max_sessions_per_connection=d().max_sessions_per_connection, cid_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bind: Vec<(String, u16)>,
        certfile: Option<PathBuf>,
        keyfile: Option<PathBuf>,
        max_sessions: usize,
        pending_request_capacity: usize,
        request_timeout: f64,
        transport: Option<PyRef<'_, Transport>>,
        max_sessions_per_ip: Option<usize>,
        max_handshakes: usize,
        retry: bool,
        client_auth: &str,
        client_ca: Option<PathBuf>,
        sockets: Vec<i32>,
        server_id: Option<Vec<u8>>,
        cid_config_id: u8,
        worker: Option<u8>,
        worker_secret: Option<Vec<u8>>,
        max_sessions_per_connection: usize,
        cid_key: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        // First, so that the fds are closed whatever fails below.
        let sockets = adopt_fds(sockets)?;
        let identity = load_identity(certfile, keyfile)?;
        let client_auth = match (client_auth, client_ca) {
            ("none", _) => ClientAuth::None,
            ("optional", Some(ca)) => ClientAuth::Optional(ca),
            ("required", Some(ca)) => ClientAuth::Required(ca),
            (mode, _) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "client_auth must be 'none', or 'optional'/'required' with client_ca, got {mode:?}"
            )))
            }
        };
        let mut addrs = Vec::new();
        for (host, port) in bind {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip = host.parse().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "bind host must be an IP address, got {host:?}"
                ))
            })?;
            addrs.push(SocketAddr::new(ip, port));
        }
        let request_timeout = positive_secs(request_timeout, "request_timeout")?;
        let transport = transport.map(|t| t.options.clone()).unwrap_or_default();
        // Our own CIDs when a server id, a worker octet or a key is asked for; quinn's
        // otherwise (a key without a server id is refused by `with_key`).
        let cid = if server_id.is_some() || worker.is_some() || cid_key.is_some() {
            let cid = CidConfig::new(
                server_id.as_deref().unwrap_or_default(),
                cid_config_id,
                worker.unwrap_or(0),
                worker_secret.as_deref(),
            )
            .map_err(to_py)?;
            Some(match cid_key {
                Some(key) => cid.with_key(&key).map_err(to_py)?,
                None => cid,
            })
        } else {
            None
        };
        let sockets = sockets
            .into_iter()
            .map(udp_socket)
            .collect::<PyResult<Vec<_>>>()?;
        let opts = ServerOptions {
            bind: addrs,
            max_sessions,
            max_sessions_per_ip,
            max_sessions_per_connection,
            max_handshakes,
            retry,
            pending_request_capacity,
            request_timeout,
            transport,
            client_auth,
            cid,
        };
        let rt = runtime::get()?;
        let server = py.detach(|| {
            let _guard = rt.enter();
            if sockets.is_empty() {
                Server::bind(opts, &identity)
            } else {
                Server::from_sockets(opts, &identity, sockets)
            }
        });
        Ok(Self {
            server: Arc::new(server.map_err(to_py)?),
        })
    }

    /// Bound addresses as (host, port).
    fn local_addresses(&self) -> Vec<(String, u16)> {
        self.server
            .local_addrs()
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect()
    }

    /// Hex SHA-256 of the served certificate (for `serverCertificateHashes`).
    fn certificate_hash(&self) -> String {
        hex(&self.server.certificate_hash())
    }

    /// Sessions open now.
    fn session_count(&self) -> usize {
        self.server.session_count()
    }

    /// Serves a new certificate to new connections (PEM files, or a fresh development
    /// certificate when neither is given); open sessions keep theirs.
    #[pyo3(signature = (certfile=None, keyfile=None))]
    fn set_identity(
        &self,
        py: Python<'_>,
        certfile: Option<PathBuf>,
        keyfile: Option<PathBuf>,
    ) -> PyResult<()> {
        let identity = load_identity(certfile, keyfile)?;
        py.detach(|| self.server.set_identity(&identity))
            .map_err(to_py)
    }

    /// Sends HTTP/3 GOAWAY on every live session's connection.
    fn goaway(&self) -> PyResult<()> {
        let _rt = runtime::get()?.enter();
        self.server.goaway();
        Ok(())
    }

    /// Connections between their first packet and their CONNECT request.
    fn handshake_count(&self) -> usize {
        self.server.handshake_count()
    }

    /// The next session request, or `None` (token registered) when none is waiting.
    fn poll_request(&self, notifier: &Notifier, token: u64) -> PyResult<Option<SessionHandle>> {
        let waker = notifier.waker(token);
        match self.server.poll_accept(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok(s)) => Ok(Some(SessionHandle::new(s))),
            Poll::Pending => Ok(None),
            Poll::Ready(Err(e)) => Err(to_py(e)),
        }
    }

    /// Closes every session with `code`/`reason`, then the sockets (after `grace` s).
    fn close(&self, code: u32, reason: String, grace: f64) -> PyResult<Op> {
        let server = self.server.clone();
        // Negative or NaN is no grace, more than MAX_SECS is MAX_SECS (a huge value would
        // panic in from_secs_f64 or in the deadline's Instant arithmetic).
        let grace = if grace > 0.0 {
            Duration::from_secs_f64(grace.min(MAX_SECS))
        } else {
            Duration::ZERO
        };
        Op::spawn(async move {
            server.close(code, &reason, grace).await;
            Ok(OpValue::Unit)
        })
    }
}

/// Takes ownership of file descriptors handed over from Python (the caller gave them
/// up: `os.dup` of its own socket, or fds inherited from a supervisor), all of them
/// before any check, so that each is closed exactly once whatever fails.
#[allow(unsafe_code)]
fn adopt_fds(fds: Vec<i32>) -> PyResult<Vec<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    if let Some(fd) = fds.iter().find(|fd| **fd < 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "socket fd {fd}: not a file descriptor"
        )));
    }
    Ok(fds
        .into_iter()
        // SAFETY: the caller passed ownership of these open fds (documented on
        // `ServerHandle`'s `sockets`); each becomes one OwnedFd, closed once on drop.
        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        .collect())
}

/// An adopted fd as a UDP socket, once checked to be a bound datagram socket.
fn udp_socket(fd: std::os::fd::OwnedFd) -> PyResult<std::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let bad =
        |why: String| pyo3::exceptions::PyValueError::new_err(format!("socket fd {raw}: {why}"));
    let probe = socket2::SockRef::from(&fd);
    match probe.r#type() {
        Ok(t) if t == socket2::Type::DGRAM => {}
        Ok(_) => return Err(bad("not a datagram (UDP) socket".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    let bound = probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .is_some_and(|a| a.port() != 0);
    if !bound {
        return Err(bad("not bound to an IP address and port".into()));
    }
    let socket = std::net::UdpSocket::from(fd);
    socket
        .set_nonblocking(true)
        .map_err(|e| bad(e.to_string()))?;
    Ok(socket)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a QUIC-LB load balancer reads from one of our connection IDs whose configured
/// server id has `server_id_len` octets: (config rotation, server id, worker octet);
/// with `key` (16 octets) the CID is decrypted first (single pass). `None` when the
/// CID's length does not fit.
#[pyfunction]
#[pyo3(signature = (cid, server_id_len, key=None))]
pub fn decode_cid(
    cid: &[u8],
    server_id_len: usize,
    key: Option<&[u8]>,
) -> PyResult<Option<(u8, Vec<u8>, u8)>> {
    let decoded = match key {
        Some(key) => {
            let key = CidKey::new(key).map_err(to_py)?;
            CidConfig::decode_encrypted(cid, server_id_len, &key)
        }
        None => CidConfig::decode(cid, server_id_len),
    };
    Ok(decoded.map(|d| (d.config_id, d.server_id, d.worker)))
}

/// A development certificate: (cert PEM, key PEM, hex SHA-256). ECDSA P-256, valid for
/// 13 days, for `localhost`, `127.0.0.1`, `::1` and any extra `names`.
#[pyfunction]
#[pyo3(signature = (names=None))]
pub fn generate_dev_certificate(names: Option<Vec<String>>) -> PyResult<(String, String, String)> {
    let mut all = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    all.extend(names.unwrap_or_default());
    all.dedup();
    let id = Identity::self_signed(all).map_err(to_py)?;
    let hash = hex(&id.certificate_hash());
    let (cert, key) = id.pem().cloned().ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("generated identity has no PEM")
    })?;
    Ok((cert, key, hash))
}
