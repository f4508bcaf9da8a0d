//! The core's defaults, bounds and error codes as Python values, so that `fastwt.config`
//! and `fastwt.errors` derive their dataclass defaults, checks and `ErrorCodes` from the
//! one place each is written (rust/core/src/config.rs, h3.rs) instead of copying them.
//! The names are the Python config's field names.

use crate::options::{entry_cap, seconds};
use fastwt_core::codes as h3;
use fastwt_core::{
    ClientOptions, CongestionControl, ServerOptions, TransportOptions, DEFAULT_CONNECT_TIMEOUT,
    MAX_SESSIONS_PER_CONNECTION, REJECTION_STATUS,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Every congestion controller, by the name `Transport(congestion_control=...)` and the
/// configs take (exported as `CONGESTION_CONTROLS`).
const CONGESTION: [(&str, CongestionControl); 3] = [
    ("cubic", CongestionControl::Cubic),
    ("bbr", CongestionControl::Bbr),
    ("newreno", CongestionControl::NewReno),
];

/// The name of a congestion controller.
pub(crate) fn congestion_name(c: CongestionControl) -> &'static str {
    CONGESTION
        .iter()
        .find(|(_, cc)| *cc == c)
        .map_or("cubic", |(name, _)| name)
}

/// The congestion controller of a name (any case; "reno" is NewReno too).
pub(crate) fn congestion_of(name: &str) -> Option<CongestionControl> {
    let name = name.to_ascii_lowercase();
    let name = if name == "reno" { "newreno" } else { &name };
    CONGESTION
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, cc)| *cc)
}

/// The QUIC knobs both configs have.
fn transport<'py>(py: Python<'py>, t: &TransportOptions) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("max_idle_timeout", seconds(t.max_idle_timeout))?;
    d.set_item("keep_alive_interval", seconds(t.keep_alive_interval))?;
    d.set_item("max_concurrent_bidi_streams", t.max_concurrent_bidi_streams)?;
    d.set_item("max_concurrent_uni_streams", t.max_concurrent_uni_streams)?;
    d.set_item("stream_receive_window", t.stream_receive_window)?;
    d.set_item("receive_window", t.receive_window)?;
    d.set_item("send_window", t.send_window)?;
    d.set_item("datagram_queue_size", entry_cap(t.datagram_queue_capacity))?;
    d.set_item("datagram_queue_bytes", t.datagram_queue_bytes)?;
    d.set_item(
        "congestion_control_algorithm",
        congestion_name(t.congestion_control),
    )?;
    d.set_item("wt_max_data", t.wt_max_data)?;
    d.set_item("wt_max_streams_bidi", t.wt_max_streams_bidi)?;
    d.set_item("wt_max_streams_uni", t.wt_max_streams_uni)?;
    Ok(d)
}

fn server<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let s = ServerOptions::default();
    let d = transport(py, &s.transport)?;
    // The default binds one address (`[::]:4433`): its host and port are the config's.
    if let Some(addr) = s.bind.first() {
        d.set_item("bind_host", addr.ip().to_string())?;
        d.set_item("bind_port", addr.port())?;
    }
    d.set_item("max_sessions", s.max_sessions)?;
    d.set_item("max_sessions_per_ip", s.max_sessions_per_ip)?;
    d.set_item("max_sessions_per_connection", s.max_sessions_per_connection)?;
    d.set_item("max_handshakes", s.max_handshakes)?;
    d.set_item("retry", s.retry)?;
    d.set_item("pending_request_capacity", s.pending_request_capacity)?;
    d.set_item("request_timeout", s.request_timeout.as_secs_f64())?;
    Ok(d)
}

fn client<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let c = ClientOptions::default();
    let d = transport(py, &c.transport)?;
    let timeout = c.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    d.set_item("connect_timeout", timeout.as_secs_f64())?;
    Ok(d)
}

fn error_codes<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("H3_NO_ERROR", h3::H3_NO_ERROR)?;
    d.set_item("H3_REQUEST_REJECTED", h3::H3_REQUEST_REJECTED)?;
    d.set_item("WEBTRANSPORT_SESSION_GONE", h3::WT_SESSION_GONE)?;
    Ok(d)
}

/// Adds `SERVER_DEFAULTS`, `CLIENT_DEFAULTS`, `ERROR_CODES`, `CONGESTION_CONTROLS`,
/// `REJECTION_STATUS` and `MAX_SESSIONS_PER_CONNECTION` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SERVER_DEFAULTS", server(py)?)?;
    m.add("CLIENT_DEFAULTS", client(py)?)?;
    m.add("ERROR_CODES", error_codes(py)?)?;
    let names: Vec<&str> = CONGESTION.iter().map(|(name, _)| *name).collect();
    m.add("CONGESTION_CONTROLS", pyo3::types::PyTuple::new(py, names)?)?;
    // The HTTP statuses a session may be rejected with (both ends included).
    m.add(
        "REJECTION_STATUS",
        (*REJECTION_STATUS.start(), *REJECTION_STATUS.end()),
    )?;
    // The bound the core checks `max_sessions_per_connection` against.
    m.add("MAX_SESSIONS_PER_CONNECTION", MAX_SESSIONS_PER_CONNECTION)?;
    Ok(())
}
