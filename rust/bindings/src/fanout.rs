//! One payload to many sessions in one call: what a room broadcast needs, with no
//! Python code run per recipient (and the GIL released for large rooms).

use crate::runtime;
use crate::session::{with_buffer, SessionHandle};
use fastwt_core::{Session, SessionPhase};
use pyo3::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The WebTransport stream error code a broadcast stream is reset with when it could
/// not be written within its timeout (the application's code 0x10b: "too slow").
const STREAM_TIMEOUT_CODE: u32 = 0x10b;

/// Rooms of at least this many sessions are sent to with the GIL released (see
/// `broadcast_datagram`); `FASTWT_FANOUT_DETACH_AT` (read once) changes it, for
/// measuring.
fn detach_at() -> usize {
    static DETACH_AT: OnceLock<usize> = OnceLock::new();
    *DETACH_AT.get_or_init(|| {
        std::env::var("FASTWT_FANOUT_DETACH_AT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_DETACH_AT)
    })
}

/// 1,000 sends (about a millisecond) are worth releasing the GIL for.
const DEFAULT_DETACH_AT: usize = 1000;

/// Collects the core sessions of `handles` (any iterable of `SessionHandle`) under the
/// GIL; the `Session`s are reference-counted clones, free to use without it.
fn sessions_of(handles: &Bound<'_, PyAny>) -> PyResult<Vec<Session>> {
    let mut out = Vec::new();
    for item in handles.try_iter()? {
        let item = item?;
        let handle = item.cast::<SessionHandle>()?;
        out.push(handle.get().core().clone());
    }
    Ok(out)
}

/// Sends `data` as one datagram on every session of `handles`; returns how many took
/// it (the GIL is released for rooms of 1,000 sessions or more). Sessions that are
/// closed, do not accept datagrams, or whose limit is below
/// `len(data)` are skipped (never raises for them): a broadcast is at most once.
/// It never waits, unlike an awaited `send_datagram` (a slow member must not stall a
/// tick): it uses the core's non-waiting send, so quinn drops a member's oldest queued
/// datagram when that connection's buffer is full.
#[pyfunction]
pub fn broadcast_datagram(
    py: Python<'_>,
    handles: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    let sessions = sessions_of(handles)?;
    with_buffer(data, |payload| {
        let send_all = || {
            sessions
                .iter()
                .filter(|s| s.send_datagram(payload).is_ok())
                .count()
        };
        // Each send takes about a microsecond and never blocks: for a small room,
        // releasing the GIL costs more than it frees (another thread that takes it
        // meanwhile can hold it for up to the 5 ms switch interval).
        if sessions.len() >= detach_at() {
            py.detach(send_all)
        } else {
            send_all()
        }
    })
}

/// Sends `data` on a new unidirectional stream of every session of `handles` (the
/// stream carries exactly `data`, then ends) and returns how many streams were
/// started; the writes finish on the I/O runtime. A stream not written within
/// `timeout` seconds (a peer that does not read, or grants no stream) is reset with
/// code 0x10b, so a slow member costs at most one payload of memory for that long.
/// Sessions not open (closed, or still a request) are skipped.
#[pyfunction]
#[pyo3(signature = (handles, data, timeout=10.0))]
pub fn broadcast_stream(
    py: Python<'_>,
    handles: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    timeout: f64,
) -> PyResult<usize> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a positive number of seconds, got {timeout}"
        )));
    }
    let limit = Duration::from_secs_f64(timeout);
    let sessions = sessions_of(handles)?;
    let payload: Arc<[u8]> = with_buffer(data, |b| Arc::from(b))?;
    let rt = runtime::get()?;
    let sessions_len = sessions.len();
    let start_all = move || {
        let mut started = 0;
        for session in sessions {
            if session.phase() != SessionPhase::Accepted {
                continue;
            }
            started += 1;
            let payload = Arc::clone(&payload);
            rt.spawn(async move {
                let deadline = tokio::time::Instant::now() + limit;
                let Ok(Ok(mut stream)) =
                    tokio::time::timeout_at(deadline, session.open_uni()).await
                else {
                    return;
                };
                match tokio::time::timeout_at(deadline, stream.write_all(&payload)).await {
                    Ok(Ok(())) => {
                        let _ = stream.finish();
                    }
                    Ok(Err(_)) => {}
                    Err(_) => {
                        let _ = stream.reset(STREAM_TIMEOUT_CODE);
                    }
                }
            });
        }
        started
    };
    // As for datagrams: spawning is cheap, the GIL is worth releasing for large rooms.
    Ok(if sessions_len >= detach_at() {
        py.detach(start_all)
    } else {
        start_all()
    })
}
