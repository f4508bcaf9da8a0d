use std::fmt;

/// How a session ended: the WebTransport application code and reason, and who ended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The application error code of CLOSE_WEBTRANSPORT_SESSION (0 for a plain end).
    pub code: u32,
    /// The reason string sent with the close (may be empty).
    pub reason: String,
    /// True when this side closed the session.
    pub local: bool,
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.local { "locally" } else { "by peer" };
        write!(f, "session closed {who} (code {}", self.code)?;
        if !self.reason.is_empty() {
            write!(f, ", reason {:?}", self.reason)?;
        }
        write!(f, ")")
    }
}

/// Every failure the core reports. Cloneable so that one close can be handed to every
/// waiter of a session.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration or arguments (a bad PEM file, an invalid URL, ...).
    #[error("configuration error: {0}")]
    Config(String),
    /// An operating-system I/O error (binding a socket, reading a file).
    #[error("I/O error: {0}")]
    Io(String),
    /// The QUIC connection failed or was lost.
    #[error("connection error: {0}")]
    Connection(String),
    /// The session is closed; carries how it ended.
    #[error("{0}")]
    SessionClosed(CloseInfo),
    /// The server answered the CONNECT request with a non-2xx status.
    #[error("session rejected by server with HTTP status {status}")]
    Rejected {
        /// The HTTP status code of the response.
        status: u16,
        /// The response headers (lower-case names, pseudo-headers excluded).
        headers: Vec<(String, String)>,
    },
    /// The peer broke the HTTP/3 or WebTransport protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer reset the stream we read from, with a WebTransport error code.
    #[error("stream reset by peer with code {0}")]
    StreamReset(u32),
    /// The peer asked us to stop sending on this stream, with a WebTransport error code.
    #[error("stream stopped by peer with code {0}")]
    StreamStopped(u32),
    /// The stream was already finished, reset or stopped locally.
    #[error("stream is closed")]
    StreamClosed,
    /// A datagram larger than the path currently allows.
    #[error("datagram of {size} bytes exceeds the maximum of {max} bytes")]
    DatagramTooLarge {
        /// The payload size that was refused.
        size: usize,
        /// The largest payload the session can send now.
        max: usize,
    },
    /// Datagrams are disabled locally or not supported by the peer.
    #[error("datagrams are not supported on this session: {0}")]
    DatagramUnsupported(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server or client endpoint was closed.
    #[error("endpoint closed")]
    EndpointClosed,
    /// The call is not valid in the session's current phase (e.g. accepting twice).
    #[error("invalid state: {0}")]
    InvalidState(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<quinn::ConnectionError> for Error {
    fn from(e: quinn::ConnectionError) -> Self {
        Error::Connection(e.to_string())
    }
}
