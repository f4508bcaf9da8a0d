//! fastwt-core: WebTransport over HTTP/3 on top of quinn, with no Python in it.
//!
//! The crate runs its own small HTTP/3 session driver (with `wtransport-proto`'s QPACK;
//! frames, settings and capsules are `h3.rs`'s, which says why) so that any rejection
//! status, the CLOSE_WEBTRANSPORT_SESSION capsule and WebTransport error-code mapping are
//! under our control.
//!
//! # Using it
//!
//! A [`Server`] hands out session requests ([`Server::accept`]); each is a [`Session`]
//! to [`accept`](Session::accept) or [`reject`](Session::reject). A [`Client`]
//! [`connect`](Client::connect)s to a URL. A session opens streams
//! ([`Session::open_bi`], [`Session::open_uni`]), takes the peer's
//! ([`Session::accept_bi`], [`Session::accept_uni`]), sends and reads datagrams, and
//! ends with [`Session::close`] or [`Session::closed`].
//!
//! Every operation is one method with an async form and a poll form: `poll_*` methods
//! take a [`Context`](std::task::Context) and keep its waker when they return
//! `Pending`, so a caller on a thread of its own (the Python bindings) can drive them
//! with its own wakers; the opening and answering futures ([`OpenBi`], [`OpenUni`],
//! [`ConnectWrite`]) are ready at their first poll in the usual case. Nothing here
//! blocks; everything needs a tokio runtime (the calls that start tasks, within its
//! context).
//!
//! # Layers (the modules, all private)
//!
//! - endpoint: `server` (binding, accepting, admission through `admission`), `client`
//!   (URLs, trust), `socket`, `tls` (rustls: ALPN, verifiers), `transport` (quinn's
//!   transport settings), `identity` (certificates), `cid` (QUIC-LB connection ids),
//!   `qlog`.
//! - connection: `handshake` (the CONNECT exchange, server and client side), `driver`
//!   (per-connection tasks: peer streams, datagrams, the CONNECT stream's capsules),
//!   `control` (the peer's control stream and SETTINGS, streams before their session),
//!   `deadline` (the answer deadline of requests).
//! - session: `session`, `stream` (the stream halves and their pumps), `queue` (the
//!   bounded hand-over queues behind the `poll_*` methods), `credit` and `flow`
//!   (stream credit, drafts 13+ flow control).
//! - wire: `h3` (varints, frames, settings, capsules, codes), `frame` (the one frame
//!   reader), `draft` (draft negotiation), `preamble` (stream headers).
//! - `error` (the one error type and close mapping), `config` (options and defaults).

mod admission;
mod cid;
mod client;
mod config;
mod control;
mod credit;
mod deadline;
mod draft;
mod driver;
mod error;
mod flow;
mod frame;
mod h3;
mod handshake;
mod identity;
mod preamble;
mod qlog;
mod queue;
mod server;
mod session;
mod socket;
mod stream;
/// The poison-tolerant lock helper every module of the crate, and the bindings, use.
pub mod sync;
mod tls;
mod transport;

#[cfg(test)]
mod tests;

/// HTTP/3 and WebTransport error codes, as they appear in [`Error`] and
/// [`CloseInfo`], and the mapping of application codes into HTTP/3's code space.
pub mod codes {
    pub use crate::h3::{
        h3_code_to_wt, wt_code_to_h3, H3_CLOSED_CRITICAL_STREAM, H3_DATAGRAM_ERROR, H3_FRAME_ERROR,
        H3_FRAME_UNEXPECTED, H3_GENERAL_PROTOCOL_ERROR, H3_MESSAGE_ERROR, H3_MISSING_SETTINGS,
        H3_NO_ERROR, H3_REQUEST_INCOMPLETE, H3_REQUEST_REJECTED, H3_SETTINGS_ERROR,
        H3_STREAM_CREATION_ERROR, WT_BUFFERED_STREAM_REJECTED, WT_FLOW_CONTROL_ERROR,
        WT_SESSION_GONE,
    };
}

pub use cid::{CidConfig, CidKey, DecodedCid};
pub use client::Client;
pub use config::{
    ClientAuth, ClientOptions, CongestionControl, ServerOptions, TransportOptions, TrustMode,
    DEFAULT_CONNECT_TIMEOUT, MAX_SESSIONS_PER_CONNECTION, REJECTION_STATUS,
};
pub use draft::Draft;
pub use error::{CloseInfo, Error, Result};
pub use flow::FlowSnapshot;
pub use identity::Identity;
pub use server::Server;
pub use session::{
    ConnectWrite, OpenBi, OpenUni, SendDatagram, Session, SessionPhase, SessionStats,
};
pub use stream::{RecvStream, SendStream, Spawner, StreamTask};
