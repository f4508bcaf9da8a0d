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
    /// Bad configuration (a bad PEM file, an invalid URL, a limit out of range, ...).
    #[error("configuration error: {0}")]
    Config(String),
    /// An argument of a call the protocol does not allow (a 2xx rejection status, a
    /// close reason over 1024 bytes, ...); nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
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

/// Names of the HTTP/3 (RFC 9114) and QPACK (RFC 9204) connection error codes, which
/// end an HTTP/3 connection; they are not WebTransport application codes.
fn h3_code_name(code: u64) -> Option<&'static str> {
    Some(match code {
        0x100 => "H3_NO_ERROR",
        0x101 => "H3_GENERAL_PROTOCOL_ERROR",
        0x102 => "H3_INTERNAL_ERROR",
        0x103 => "H3_STREAM_CREATION_ERROR",
        0x104 => "H3_CLOSED_CRITICAL_STREAM",
        0x105 => "H3_FRAME_UNEXPECTED",
        0x106 => "H3_FRAME_ERROR",
        0x107 => "H3_EXCESSIVE_LOAD",
        0x108 => "H3_ID_ERROR",
        0x109 => "H3_SETTINGS_ERROR",
        0x10a => "H3_MISSING_SETTINGS",
        0x10b => "H3_REQUEST_REJECTED",
        0x10c => "H3_REQUEST_CANCELLED",
        0x10d => "H3_REQUEST_INCOMPLETE",
        0x10e => "H3_MESSAGE_ERROR",
        0x10f => "H3_CONNECT_ERROR",
        0x110 => "H3_VERSION_FALLBACK",
        0x200 => "QPACK_DECOMPRESSION_FAILED",
        0x201 => "QPACK_ENCODER_STREAM_ERROR",
        0x202 => "QPACK_DECODER_STREAM_ERROR",
        0x33 => "H3_DATAGRAM_ERROR",
        _ => return None,
    })
}

/// How a session ends when its QUIC connection does: the one mapping from quinn's
/// `ConnectionError` to a [`CloseInfo`], for the session's `closed()` and for every
/// stream or datagram call that fails on the lost connection, so they report one close
/// the same way.
///
/// An HTTP/3 or QPACK error code (and an HTTP/3 reserved code) is not a WebTransport
/// code: it is reported as code 0 with the code's name in the reason. Any other code
/// that fits in 32 bits is passed through as the session's code (raw-QUIC WebTransport
/// peers, such as wtransport's, close the connection with the application's code).
pub(crate) fn close_info_of(e: &quinn::ConnectionError) -> CloseInfo {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let raw = close.error_code.into_inner();
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            let reserved = raw >= 0x21 && (raw - 0x21) % 0x1f == 0;
            match (h3_code_name(raw), u32::try_from(raw)) {
                (Some(name), _) => CloseInfo {
                    code: 0,
                    // H3_NO_ERROR is a plain close: its reason alone, as the peer gave it.
                    reason: match (raw, reason.is_empty()) {
                        (0x100, _) => reason,
                        (_, true) => name.to_string(),
                        (_, false) => format!("{name}: {reason}"),
                    },
                    local: false,
                },
                (None, Ok(code)) if !reserved => CloseInfo {
                    code,
                    reason,
                    local: false,
                },
                _ => CloseInfo {
                    code: 0,
                    reason: format!("connection closed with code {raw:#x}: {reason}"),
                    local: false,
                },
            }
        }
        quinn::ConnectionError::LocallyClosed => CloseInfo {
            code: 0,
            reason: String::new(),
            local: true,
        },
        other => CloseInfo {
            code: 0,
            reason: format!("connection lost: {other}"),
            local: false,
        },
    }
}

/// The error of an operation that failed because the connection ended: the session's
/// close (see [`close_info_of`]) when the connection was closed by either side, else a
/// connection error (timeout, reset, transport error).
pub(crate) fn connection_lost(e: quinn::ConnectionError) -> Error {
    match e {
        quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => {
            Error::SessionClosed(close_info_of(&e))
        }
        other => Error::Connection(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_close(code: u32, reason: &str) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(code),
            reason: bytes::Bytes::copy_from_slice(reason.as_bytes()),
        })
    }

    #[test]
    fn http3_and_qpack_codes_are_not_session_codes() {
        let info = close_info_of(&app_close(0x10e, "bad CONNECT request"));
        assert_eq!(
            (info.code, info.reason.as_str()),
            (0, "H3_MESSAGE_ERROR: bad CONNECT request")
        );
        let info = close_info_of(&app_close(0x200, ""));
        assert_eq!(
            (info.code, info.reason.as_str()),
            (0, "QPACK_DECOMPRESSION_FAILED")
        );
        let info = close_info_of(&app_close(0x100, "bye"));
        assert_eq!((info.code, info.reason.as_str()), (0, "bye"));
        // A reserved (GREASE) HTTP/3 code is no session code either.
        assert_eq!(close_info_of(&app_close(0x21 + 0x1f * 3, "")).code, 0);
    }

    #[test]
    fn application_codes_pass_through_and_every_caller_sees_the_same_close() {
        let e = app_close(4242, "game over");
        let info = close_info_of(&e);
        assert_eq!(
            (info.code, info.reason.as_str(), info.local),
            (4242, "game over", false)
        );
        match connection_lost(e) {
            Error::SessionClosed(same) => assert_eq!(same, info),
            other => panic!("{other:?}"),
        }
        assert!(close_info_of(&quinn::ConnectionError::LocallyClosed).local);
        assert!(matches!(
            connection_lost(quinn::ConnectionError::TimedOut),
            Error::Connection(_)
        ));
    }
}
