//! Stream credit: how many streams the peer may open at once.
//!
//! quinn keeps a map entry for every stream id the peer is allowed to open, so the
//! default limits (100 bidirectional + 100 unidirectional) cost about 8 KiB per
//! connection before a single stream exists. A session therefore starts with
//! [`INITIAL_STREAM_CREDIT`] per direction and opens up to its configured limit as soon
//! as the peer opens its first WebTransport stream of that direction: idle and
//! datagram-only sessions stay small, sessions that use streams get the full limit one
//! round trip after their first stream.

use std::sync::atomic::{AtomicBool, Ordering};

/// Streams per direction the peer may open before it has used any (HTTP/3's own
/// unidirectional streams come on top).
pub const INITIAL_STREAM_CREDIT: u32 = 8;

/// Unidirectional streams HTTP/3 itself needs from the peer: control and the two QPACK
/// streams.
const H3_UNI_STREAMS: u32 = 3;

/// The bidirectional limit a connection starts with, for a configured limit.
pub(crate) fn initial_bidi(configured: u32) -> u32 {
    configured.min(INITIAL_STREAM_CREDIT)
}

/// The unidirectional limit a connection starts with, HTTP/3's streams included.
pub(crate) fn initial_uni(configured: u32) -> u32 {
    configured
        .min(INITIAL_STREAM_CREDIT)
        .saturating_add(H3_UNI_STREAMS)
}

/// One session's configured limits, granted on first use.
#[derive(Debug)]
pub(crate) struct StreamCredit {
    bidi: u32,
    uni: u32,
    bidi_granted: AtomicBool,
    uni_granted: AtomicBool,
}

impl StreamCredit {
    /// The configured limits (as in `TransportOptions`, without HTTP/3's streams).
    pub(crate) fn new(bidi: u32, uni: u32) -> Self {
        Self {
            bidi,
            uni,
            bidi_granted: AtomicBool::new(bidi <= INITIAL_STREAM_CREDIT),
            uni_granted: AtomicBool::new(uni <= INITIAL_STREAM_CREDIT),
        }
    }

    /// The peer opened a WebTransport bidirectional stream: the first one raises the
    /// limit to the configured one.
    pub(crate) fn peer_opened_bidi(&self, conn: &quinn::Connection) {
        if !self.bidi_granted.swap(true, Ordering::Relaxed) {
            conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(self.bidi));
        }
    }

    /// The peer opened a WebTransport unidirectional stream: the first one raises the
    /// limit to the configured one.
    pub(crate) fn peer_opened_uni(&self, conn: &quinn::Connection) {
        if !self.uni_granted.swap(true, Ordering::Relaxed) {
            conn.set_max_concurrent_uni_streams(quinn::VarInt::from_u32(
                self.uni.saturating_add(H3_UNI_STREAMS),
            ));
        }
    }
}
