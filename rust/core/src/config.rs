use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Congestion controller for QUIC connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionControl {
    /// quinn's default.
    #[default]
    Cubic,
    /// Experimental BBR in quinn.
    Bbr,
    /// Classic NewReno.
    NewReno,
}

/// QUIC knobs shared by server and client. Defaults are documented on each field.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Close a connection after this long without any packet (default 30 s; `None` never).
    pub max_idle_timeout: Option<Duration>,
    /// Send keep-alive pings this often (default `None`: off).
    pub keep_alive_interval: Option<Duration>,
    /// Peer-initiated bidirectional streams open at once per session (default 100, as
    /// quinn and browsers). quinn keeps state for each allowed stream (1024 cost about
    /// 130 KiB per connection, 100 about 8 KiB), so a session starts with a credit of 8
    /// and gets this limit when the peer opens its first stream of the direction.
    pub max_concurrent_bidi_streams: u32,
    /// Peer-initiated unidirectional streams open at once (default 100; +3 for HTTP/3's
    /// own), granted the same way as the bidirectional limit.
    pub max_concurrent_uni_streams: u32,
    /// Per-stream receive window in bytes (default 4 MiB).
    pub stream_receive_window: u64,
    /// Connection receive window in bytes (default 16 MiB).
    pub receive_window: u64,
    /// Connection send window in bytes (default 16 MiB).
    pub send_window: u64,
    /// Bytes of datagrams quinn buffers for sending before it drops the oldest (default 1 MiB).
    pub datagram_send_buffer: usize,
    /// Bytes of datagrams quinn buffers on receipt (default 1 MiB).
    pub datagram_receive_buffer: usize,
    /// An optional cap on the datagrams the session queues for the application, on top
    /// of `datagram_queue_bytes` (default `usize::MAX`: no cap, the byte bound rules).
    pub datagram_queue_capacity: usize,
    /// Bytes of received datagrams the session queues for the application before
    /// dropping the oldest (default 8 MiB), each counted as its payload plus
    /// [`crate::queue::DATAGRAM_ENTRY_OVERHEAD`] (its handle and allocation), so that
    /// even empty datagrams are bounded: about 75,000 datagrams of 64 bytes, 7,000 of
    /// 1,200. Each queued datagram is its own allocation (never a slice pinning a whole
    /// receive buffer), so the bound is real memory. Drops are counted in the session's
    /// stats.
    pub datagram_queue_bytes: usize,
    /// Congestion controller (default Cubic).
    pub congestion_control: CongestionControl,
    /// Kernel send and receive buffer of each endpoint's UDP socket (default 4 MiB,
    /// capped by `net.core.rmem_max`/`wmem_max`; 0 keeps the OS default).
    pub socket_buffer: usize,
    /// Session flow control of drafts 13+ (Safari, draft-15 peers; draft-02 has none):
    /// stream-body bytes the peer may send ahead of what the session took in, advertised
    /// as SETTINGS_WT_INITIAL_MAX_DATA and kept up with WT_MAX_DATA capsules
    /// (default 16 MiB, the connection receive window).
    pub wt_max_data: u64,
    /// Bidirectional streams the peer may open ahead of those it opened
    /// (SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI, WT_MAX_STREAMS; default 100). QUIC's
    /// `max_concurrent_bidi_streams` still bounds how many are open at once.
    pub wt_max_streams_bidi: u64,
    /// Unidirectional streams the peer may open ahead of those it opened
    /// (SETTINGS_WT_INITIAL_MAX_STREAMS_UNI, WT_MAX_STREAMS; default 100).
    pub wt_max_streams_uni: u64,
}

impl TransportOptions {
    /// The session credit these options grant a peer of a flow-controlled draft.
    pub fn session_credit(&self) -> crate::h3::LocalCredit {
        crate::h3::LocalCredit {
            max_data: self.wt_max_data.max(1),
            max_streams_bidi: self.wt_max_streams_bidi.max(1),
            max_streams_uni: self.wt_max_streams_uni.max(1),
        }
    }
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            max_idle_timeout: Some(Duration::from_secs(30)),
            keep_alive_interval: None,
            max_concurrent_bidi_streams: 100,
            max_concurrent_uni_streams: 100,
            stream_receive_window: 4 * 1024 * 1024,
            receive_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            datagram_send_buffer: 1024 * 1024,
            datagram_receive_buffer: 1024 * 1024,
            datagram_queue_capacity: usize::MAX,
            datagram_queue_bytes: 8 * 1024 * 1024,
            congestion_control: CongestionControl::Cubic,
            socket_buffer: 4 * 1024 * 1024,
            wt_max_data: 16 * 1024 * 1024,
            wt_max_streams_bidi: 100,
            wt_max_streams_uni: 100,
        }
    }
}

/// The HTTP statuses a session request may be rejected with: a final status that is not
/// 2xx (1xx are interim responses, after which the request would still wait for a final
/// one; 2xx accepts). Checked by [`crate::Session::reject_now`]; the Python framework
/// reads the same bounds.
pub const REJECTION_STATUS: std::ops::RangeInclusive<u16> = 300..=599;

/// How long a client waits for the QUIC handshake and the CONNECT response when
/// [`ClientOptions::connect_timeout`] is `None`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most sessions [`ServerOptions::max_sessions_per_connection`] allows: every session
/// of a connection shares its QUIC stream limits and windows.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 256;

impl ServerOptions {
    /// Checks the values no type rules out (the one place they are checked; the Python
    /// layer reads the same bounds).
    pub fn validate(&self) -> crate::error::Result<()> {
        if !(1..=MAX_SESSIONS_PER_CONNECTION).contains(&self.max_sessions_per_connection) {
            return Err(crate::error::Error::Config(format!(
                "max_sessions_per_connection must be in 1..={MAX_SESSIONS_PER_CONNECTION}, got {}",
                self.max_sessions_per_connection
            )));
        }
        Ok(())
    }
}

/// Whether the server asks clients for a certificate (mutual TLS), and whom it trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested (default).
    #[default]
    None,
    /// Clients may present a certificate, which must then chain to a CA of the PEM file;
    /// clients without one are accepted too.
    Optional(PathBuf),
    /// Clients must present a certificate chaining to a CA of the PEM file.
    Required(PathBuf),
}

/// Server settings. Without `certificate_chain`/`private_key` the caller passes a
/// development identity (see [`crate::Identity::self_signed`]).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Addresses to bind; one UDP socket each (an IPv6 `::` socket is made dual-stack).
    pub bind: Vec<SocketAddr>,
    /// Sessions (requested or accepted) open at once across every bound address
    /// (default 10,000). A connection attempt while the sessions reach it is refused
    /// (CONNECTION_REFUSED); a CONNECT request beyond it gets 503 with `retry-after`.
    pub max_sessions: usize,
    /// Sessions one client IP address may hold at once (default `None`: no limit). A
    /// connection attempt beyond it is refused; a CONNECT beyond it gets 429.
    pub max_sessions_per_ip: Option<usize>,
    /// Sessions one connection may carry at once (default 1; at most
    /// [`MAX_SESSIONS_PER_CONNECTION`]), advertised as SETTINGS_WT_MAX_SESSIONS. Above 1,
    /// clients of drafts 07+ (Safari, draft-15 peers) may pool: further CONNECTs on the
    /// connection become sessions of their own, each counted in `max_sessions` and
    /// `max_sessions_per_ip`. A CONNECT beyond it, or any second one from a draft-02
    /// client (Chrome, Firefox), gets 429 and the connection's sessions go on.
    pub max_sessions_per_connection: usize,
    /// Connections between their first packet and their CONNECT request at once
    /// (default 1,000): a flood of handshakes, or of connections that never send
    /// CONNECT, is refused beyond it while live sessions keep working.
    pub max_handshakes: usize,
    /// Stateless address validation (QUIC Retry) before any connection state is kept:
    /// one round trip more per connection, no state for spoofed source addresses
    /// (default off).
    pub retry: bool,
    /// Session requests waiting for the application; beyond it new requests get 503
    /// (default 1024).
    pub pending_request_capacity: usize,
    /// One deadline from a connection's first packet to the application's answer to its
    /// CONNECT request (default 10 s): the handshake, the HTTP/3 set-up and the request
    /// must arrive within it (else the connection is closed), and a request the
    /// application has not answered by then gets 503.
    pub request_timeout: Duration,
    /// QUIC knobs.
    pub transport: TransportOptions,
    /// Client certificates (mutual TLS).
    pub client_auth: ClientAuth,
    /// Connection IDs naming this server (QUIC-LB server id) and worker, with the keys
    /// shared by a group of workers (default `None`: quinn's random 8-octet CIDs and a
    /// random stateless-reset key).
    pub cid: Option<crate::cid::CidConfig>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            bind: vec![SocketAddr::from(([0u16; 8], 4433))],
            max_sessions: 10_000,
            max_sessions_per_ip: None,
            max_sessions_per_connection: 1,
            max_handshakes: 1000,
            retry: false,
            pending_request_capacity: 1024,
            request_timeout: Duration::from_secs(10),
            transport: TransportOptions::default(),
            client_auth: ClientAuth::None,
            cid: None,
        }
    }
}

/// How the client decides to trust the server's certificate.
#[derive(Clone, Debug, Default)]
pub enum TrustMode {
    /// The operating system's root certificates (default).
    #[default]
    SystemRoots,
    /// CA certificates from a PEM file.
    CaFile(PathBuf),
    /// SHA-256 hashes of accepted leaf certificates, like browsers'
    /// `serverCertificateHashes`.
    CertificateHashes(Vec<[u8; 32]>),
    /// Accept any certificate (development only). Handshake signatures are still checked.
    Insecure,
}

/// Client settings.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// How the server is trusted.
    pub trust: TrustMode,
    /// Optional client certificate chain and key (PEM files).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Time allowed for QUIC handshake plus CONNECT response ([`DEFAULT_CONNECT_TIMEOUT`],
    /// 10 s, when `None`).
    pub connect_timeout: Option<Duration>,
    /// Headers added to every CONNECT request.
    pub headers: Vec<(String, String)>,
    /// The `user-agent` header, if any.
    pub user_agent: Option<String>,
    /// QUIC knobs.
    pub transport: TransportOptions,
}
