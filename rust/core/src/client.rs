use crate::config::ClientOptions;
use crate::error::{Error, Result};
use crate::h3;
use crate::handshake;
use crate::identity::Identity;
use crate::session::Session;
use crate::{tls, transport};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A WebTransport client. One QUIC connection per session; the UDP sockets (one per
/// address family, made on first use) are shared by all its sessions.
pub struct Client {
    options: ClientOptions,
    config: quinn::ClientConfig,
    endpoints: Mutex<(Option<quinn::Endpoint>, Option<quinn::Endpoint>)>,
    /// With `QLOGDIR` set: a trace per connection.
    qlog: Option<crate::qlog::Qlog>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish()
    }
}

/// The parts of a `https://` URL a CONNECT request needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (443 when absent).
    pub port: u16,
    /// `:authority` as sent.
    pub authority: String,
    /// `:path` with query.
    pub path: String,
}

/// Parses `https://host[:port]/path?query`.
pub fn parse_url(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Error::Config(format!("URL must start with https://: {url:?}")))?;
    // The fragment is never sent; it may follow the authority directly.
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::Config(format!("bad authority in URL {url:?}")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| Error::Config(format!("bad IPv6 literal in {url:?}")))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| Error::Config(format!("bad port in {url:?}")))?,
            None if after.is_empty() => 443,
            None => return Err(Error::Config(format!("bad authority in {url:?}"))),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| Error::Config(format!("bad port in {url:?}")))?,
            ),
            None => (authority.to_string(), 443),
        }
    };
    Ok(Target {
        host,
        port,
        authority: authority.to_string(),
        path,
    })
}

impl Client {
    /// A client with these options. Must be called within a tokio runtime.
    pub fn new(options: ClientOptions) -> Result<Self> {
        let identity = match &options.client_identity {
            Some((c, k)) => Some(Identity::load_pem(c, k)?),
            None => None,
        };
        let crypto = tls::client_crypto(&options.trust, identity.as_ref())?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport::transport_config(&options.transport)?));
        Ok(Self {
            qlog: crate::qlog::Qlog::from_env("client", &options.transport),
            options,
            config,
            endpoints: Mutex::new((None, None)),
        })
    }

    fn endpoint_for(&self, addr: &SocketAddr) -> Result<quinn::Endpoint> {
        let mut eps = crate::sync::lock(&self.endpoints);
        let slot = if addr.is_ipv4() {
            &mut eps.0
        } else {
            &mut eps.1
        };
        if let Some(ep) = slot {
            return Ok(ep.clone());
        }
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = crate::socket::bind_udp(bind, self.options.transport.socket_buffer)?;
        let ep = crate::socket::endpoint(socket, None, quinn::EndpointConfig::default())?;
        *slot = Some(ep.clone());
        Ok(ep)
    }

    /// Connects to `url` and opens a session; extra header fields go on the CONNECT
    /// request. A non-2xx answer is [`Error::Rejected`] with its status and headers.
    pub async fn connect(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        timeout: Option<Duration>,
    ) -> Result<Session> {
        let timeout = timeout
            .or(self.options.connect_timeout)
            .unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
        match tokio::time::timeout(timeout, self.connect_inner(url, headers)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "connecting to {url} took over {timeout:?}"
            ))),
        }
    }

    async fn connect_inner(&self, url: &str, headers: Vec<(String, String)>) -> Result<Session> {
        let target = parse_url(url)?;
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| Error::Connection(format!("cannot resolve {}: {e}", target.host)))?
            .next()
            .ok_or_else(|| Error::Connection(format!("no address for {}", target.host)))?;
        let endpoint = self.endpoint_for(&addr)?;
        let conn = endpoint
            .connect_with(
                crate::qlog::client_config(&self.config, self.qlog.as_ref(), addr),
                addr,
                &target.host,
            )
            .map_err(|e| Error::Connection(format!("cannot connect to {addr}: {e}")))?
            .await
            .map_err(|e| Error::Connection(format!("handshake with {addr} failed: {e}")))?;
        // The connect timeout bounds the handshake (see `connect`).
        handshake::connect(conn, &self.options, target.path, target.authority, headers).await
    }

    /// Moves every socket of the client to a new local port (a fresh socket on the same
    /// wildcard address, port 0): what a NAT rebinding or a client migration looks
    /// like to the server. Open sessions carry on over the new path (quinn validates
    /// it). Returns the new local addresses.
    pub fn rebind(&self) -> Result<Vec<SocketAddr>> {
        let eps = crate::sync::lock(&self.endpoints);
        let mut addrs = Vec::new();
        for ep in [&eps.0, &eps.1].into_iter().flatten() {
            let old = ep.local_addr()?;
            let bind = SocketAddr::new(old.ip(), 0);
            let socket = crate::socket::bind_udp(bind, self.options.transport.socket_buffer)?;
            ep.rebind(socket)
                .map_err(|e| Error::Io(format!("cannot rebind to {bind}: {e}")))?;
            addrs.push(ep.local_addr()?);
        }
        Ok(addrs)
    }

    /// The QUIC client configuration this client uses (TLS trust, ALPN `h3`, transport
    /// knobs), for tools that speak raw QUIC to a server: tests and benchmarks.
    pub fn quic_config(&self) -> quinn::ClientConfig {
        self.config.clone()
    }

    /// Closes the client's sockets; sessions still open end abruptly.
    pub fn close(&self) {
        let eps = crate::sync::lock(&self.endpoints);
        for ep in [&eps.0, &eps.1].into_iter().flatten() {
            ep.close(quinn::VarInt::from_u32(h3::H3_NO_ERROR), b"client closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("https://127.0.0.1:4433/echo?room=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 4433, "/echo?room=1")
        );
        let t = parse_url("https://[::1]:9/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = parse_url("https://example.com").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        assert!(parse_url("http://x/").is_err());
        assert!(parse_url("https://x:notaport/").is_err());
    }
}
