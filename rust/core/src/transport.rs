//! quinn's transport settings (idle timeout, keep-alive, stream limits, windows,
//! datagram buffers, congestion control) from fastwt's [`TransportOptions`].

use crate::config::{CongestionControl, TransportOptions};
use crate::credit;
use crate::error::{Error, Result};
use std::sync::Arc;

/// quinn transport settings from our options.
pub(crate) fn transport_config(opts: &TransportOptions) -> Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = match opts.max_idle_timeout {
        Some(d) => Some(
            quinn::IdleTimeout::try_from(d)
                .map_err(|_| Error::Config(format!("max_idle_timeout {d:?} is too large")))?,
        ),
        None => None,
    };
    let varint = |v: u64, what: &str| {
        quinn::VarInt::from_u64(v).map_err(|_| Error::Config(format!("{what} {v} is too large")))
    };
    t.max_idle_timeout(idle)
        .keep_alive_interval(opts.keep_alive_interval)
        // Small limits until the peer uses streams (see `credit`); HTTP/3's own three
        // unidirectional streams come on top.
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(credit::initial_bidi(
            opts.max_concurrent_bidi_streams,
        )))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(credit::initial_uni(
            opts.max_concurrent_uni_streams,
        )))
        .stream_receive_window(varint(opts.stream_receive_window, "stream_receive_window")?)
        .receive_window(varint(opts.receive_window, "receive_window")?)
        .send_window(opts.send_window)
        .datagram_send_buffer_size(opts.datagram_send_buffer)
        .datagram_receive_buffer_size(Some(opts.datagram_receive_buffer));
    match opts.congestion_control {
        CongestionControl::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
        }
        CongestionControl::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        CongestionControl::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
    }
    Ok(t)
}
