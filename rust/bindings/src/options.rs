use crate::defaults::{congestion_name, congestion_of};
use fastwt_core::TransportOptions;
use pyo3::prelude::*;
use std::time::Duration;

/// Longest duration taken from Python, in seconds (2^32, 136 years): far below what
/// `Duration` holds and what deadline arithmetic (`Instant + Duration`) can add.
pub(crate) const MAX_SECS: f64 = 4_294_967_296.0;

/// A positive, finite number of seconds from Python, at most [`MAX_SECS`]; `what` names
/// it in the error (`Duration::from_secs_f64` would panic on NaN or a huge value, and
/// `Instant::now() + d` on a huge `d`).
pub(crate) fn positive_secs(s: f64, what: &str) -> PyResult<Duration> {
    if s > 0.0 && s <= MAX_SECS {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be a positive number of seconds (at most 2**32), got {s}"
        )))
    }
}

/// [`positive_secs`] for optional values (`None` stays `None`).
pub(crate) fn secs(v: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    v.map(|s| positive_secs(s, what)).transpose()
}

/// The core's defaults of the QUIC knobs.
fn d() -> TransportOptions {
    TransportOptions::default()
}

/// A duration as Python seconds (`None` stays `None`).
pub(crate) fn seconds(v: Option<Duration>) -> Option<f64> {
    v.map(|v| v.as_secs_f64())
}

/// QUIC knobs shared by servers and clients, checked once when made.
#[pyclass(module = "fastwt._core", frozen)]
pub struct Transport {
    pub(crate) options: TransportOptions,
}

/// The datagram queue's entry cap as Python sees it: `None` for none (core's
/// `usize::MAX`).
pub(crate) fn entry_cap(capacity: usize) -> Option<usize> {
    (capacity != usize::MAX).then_some(capacity)
}

#[pymethods]
impl Transport {
    /// Every option left out takes the core's default (`TransportOptions::default()`,
    /// also `fastwt._core.SERVER_DEFAULTS`): none is written here a second time.
    #[new]
    #[pyo3(signature = (*, max_idle_timeout=seconds(d().max_idle_timeout),
        keep_alive_interval=seconds(d().keep_alive_interval),
        max_concurrent_bidi_streams=d().max_concurrent_bidi_streams,
        max_concurrent_uni_streams=d().max_concurrent_uni_streams,
        stream_receive_window=d().stream_receive_window, receive_window=d().receive_window,
        send_window=d().send_window, datagram_queue_capacity=entry_cap(d().datagram_queue_capacity),
        datagram_queue_bytes=d().datagram_queue_bytes,
        congestion_control=congestion_name(d().congestion_control),
        wt_max_data=d().wt_max_data, wt_max_streams_bidi=d().wt_max_streams_bidi,
        wt_max_streams_uni=d().wt_max_streams_uni))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_idle_timeout: Option<f64>,
        keep_alive_interval: Option<f64>,
        max_concurrent_bidi_streams: u32,
        max_concurrent_uni_streams: u32,
        stream_receive_window: u64,
        receive_window: u64,
        send_window: u64,
        datagram_queue_capacity: Option<usize>,
        datagram_queue_bytes: usize,
        congestion_control: &str,
        wt_max_data: u64,
        wt_max_streams_bidi: u64,
        wt_max_streams_uni: u64,
    ) -> PyResult<Self> {
        let Some(congestion_control) = congestion_of(congestion_control) else {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "congestion_control must be 'cubic', 'bbr' or 'newreno', got {:?}",
                congestion_control.to_ascii_lowercase()
            )));
        };
        let options = TransportOptions {
            max_idle_timeout: secs(max_idle_timeout, "max_idle_timeout")?,
            keep_alive_interval: secs(keep_alive_interval, "keep_alive_interval")?,
            max_concurrent_bidi_streams,
            max_concurrent_uni_streams,
            stream_receive_window,
            receive_window,
            send_window,
            // No cap on the count by default: the byte bound rules.
            datagram_queue_capacity: datagram_queue_capacity.unwrap_or(usize::MAX),
            datagram_queue_bytes,
            congestion_control,
            wt_max_data,
            wt_max_streams_bidi,
            wt_max_streams_uni,
            ..TransportOptions::default()
        };
        Ok(Self { options })
    }
}
