use fastwt_core::{CongestionControl, TransportOptions};
use pyo3::prelude::*;
use std::time::Duration;

fn secs(v: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be a positive number of seconds, got {s}"
        ))),
    }
}

/// QUIC knobs from Python values (the dataclass fields of ServerConfig/ClientConfig).
#[allow(clippy::too_many_arguments)]
pub fn transport(
    max_idle_timeout: Option<f64>,
    keep_alive_interval: Option<f64>,
    max_concurrent_bidi_streams: u32,
    max_concurrent_uni_streams: u32,
    stream_receive_window: u64,
    receive_window: u64,
    send_window: u64,
    datagram_queue_capacity: usize,
    congestion_control: &str,
) -> PyResult<TransportOptions> {
    let congestion_control = match congestion_control.to_ascii_lowercase().as_str() {
        "cubic" => CongestionControl::Cubic,
        "bbr" => CongestionControl::Bbr,
        "newreno" | "reno" => CongestionControl::NewReno,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "congestion_control must be 'cubic', 'bbr' or 'newreno', got {other:?}"
            )))
        }
    };
    Ok(TransportOptions {
        max_idle_timeout: secs(max_idle_timeout, "max_idle_timeout")?,
        keep_alive_interval: secs(keep_alive_interval, "keep_alive_interval")?,
        max_concurrent_bidi_streams,
        max_concurrent_uni_streams,
        stream_receive_window,
        receive_window,
        send_window,
        datagram_queue_capacity,
        congestion_control,
        ..TransportOptions::default()
    })
}
