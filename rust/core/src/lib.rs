//! fastwt-core: WebTransport over HTTP/3 on top of quinn, with no Python in it.
//!
//! The crate runs its own small HTTP/3 session driver (with `wtransport-proto`'s QPACK;
//! frames, settings and capsules are `h3.rs`'s, which says why) so that any rejection
//! status, the CLOSE_WEBTRANSPORT_SESSION capsule and WebTransport error-code mapping are
//! under our control. Hot-path I/O is exposed as `poll_*` functions so that a caller (the Python
//! bridge) can drive them from its own thread with its own `Waker`.

/// Admission control: sessions and handshakes, in all and per client address.
mod admission;
/// Connection IDs in QUIC-LB form with a worker octet; the group's shared keys.
pub mod cid;
/// The client endpoint: connecting to a URL, trusting by hash, CA file or system roots.
pub mod client;
/// Server and client configuration, with documented defaults.
pub mod config;
/// The peer's control stream and SETTINGS, and streams that come before their session.
mod control;
/// Stream credit: small limits for idle sessions, the configured ones on first use.
mod credit;
/// The answer deadline of session requests (one watcher task per server).
mod deadline;
/// Draft negotiation (02, 07..14, 15), peer SETTINGS validation, RFC 8941 strings.
pub mod draft;
/// The per-connection HTTP/3 driver tasks.
mod driver;
/// The one error type of the crate.
pub mod error;
/// Session flow control of drafts 13+: WT_MAX_DATA / WT_MAX_STREAMS capsules.
mod flow;
/// The one reader of HTTP/3 frames off a stream (control, HEADERS, capsules).
mod frame;
/// HTTP/3 and WebTransport wire details: varints, frames, settings, capsules, codes.
pub mod h3;
/// The CONNECT handshake, server side and client side.
mod handshake;
/// TLS identities: PEM loading, the development certificate, certificate hashes.
pub mod identity;
/// Parsing of a peer stream's type and session id.
mod preamble;
/// qlog traces per connection when `QLOGDIR` is set.
pub mod qlog;
/// Bounded, waker-aware hand-over queues between tokio tasks and a poller.
pub mod queue;
/// The server endpoint: binding, accepting connections, handing out session requests.
pub mod server;
/// A WebTransport session: request, accept/reject, streams, datagrams, close.
pub mod session;
/// UDP sockets with large kernel buffers for endpoints.
mod socket;
/// WebTransport send and receive streams.
pub mod stream;
/// The poison-tolerant lock helper every module (and the bindings) uses.
pub mod sync;
/// rustls configuration (ALPN, certificate verifiers) shared by server and client.
mod tls;
/// quinn's transport settings from [`config::TransportOptions`].
mod transport;

pub use client::Client;
pub use config::{
    ClientAuth, ClientOptions, CongestionControl, ServerOptions, TransportOptions, TrustMode,
    MAX_SESSIONS_PER_CONNECTION,
};
pub use draft::Draft;
pub use error::{CloseInfo, Error, Result};
pub use flow::FlowSnapshot;
pub use identity::Identity;
pub use server::Server;
pub use session::{Opened, Session, SessionPhase, SessionStats};
pub use stream::{Launch, Pump, RecvStream, SendStream};
