//! `fastwt._core`: the Python face of fastwt-core.
//!
//! The contract (see docs/bridge.md): Python drives Rust futures by polling them with a
//! token; a poll that cannot finish registers a waker that, when fired on a tokio
//! thread, pushes the token to the event loop's [`notifier::Notifier`] without touching
//! Python. Ready results are returned by the same call, with no event-loop hop.

use pyo3::prelude::*;

/// Who drives the runtime: an event loop's thread while it waits, or the I/O thread.
mod baton;
/// `ClientHandle`: connects sessions.
mod client;
/// The core's defaults, bounds and error codes as module constants.
mod defaults;
/// Mapping of core errors to the `fastwt.errors` hierarchy.
mod errors;
/// One payload to many sessions in one call (room broadcasts).
mod fanout;
/// Rust log records to Python `logging` through a queue (no GIL on tokio threads).
mod logging;
/// Token wake-ups from tokio threads to a Python event loop, batched through one pipe.
mod notifier;
/// Spawned one-shot operations (connect, accept, open stream, close) polled from Python.
mod op;
/// Options parsing from Python keyword arguments.
mod options;
/// The tokio runtime owned by the extension.
mod runtime;
/// `ServerHandle`: a bound server and its queue of session requests.
mod server;
/// `SessionHandle`: one session's streams, datagrams and close.
mod session;
/// When a busy-poll pays: measured waits per spin site.
mod spin;
/// `SendStreamHandle` / `RecvStreamHandle`: polled stream I/O.
mod stream;
/// Locking that survives a poisoned mutex.
mod sync;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The core's defaults, bounds and error codes (config.py and errors.py read them).
    defaults::register(m)?;
    logging::install();
    // A child made with os.fork() has no I/O thread: the runtime refuses it (one load per
    // use instead of a getpid call).
    let after_in_child = wrap_pyfunction!(runtime::forked, m)?;
    let kwargs = pyo3::types::PyDict::new(m.py());
    pyo3::types::PyDictMethods::set_item(&kwargs, "after_in_child", &after_in_child)?;
    m.py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    m.add_class::<notifier::Notifier>()?;
    m.add_class::<op::Op>()?;
    m.add_class::<baton::LoopDriver>()?;
    m.add_class::<options::Transport>()?;
    m.add_class::<server::ServerHandle>()?;
    m.add_class::<client::ClientHandle>()?;
    m.add_class::<session::SessionHandle>()?;
    m.add_class::<stream::SendStreamHandle>()?;
    m.add_class::<stream::RecvStreamHandle>()?;
    m.add_function(wrap_pyfunction!(server::generate_dev_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(server::decode_cid, m)?)?;
    m.add_function(wrap_pyfunction!(fanout::broadcast_datagram, m)?)?;
    m.add_function(wrap_pyfunction!(fanout::broadcast_stream, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::io_threads, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::io_spin_us, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::spin_stats, m)?)?;
    m.add_function(wrap_pyfunction!(baton::io_driver_stats, m)?)?;
    m.add_function(wrap_pyfunction!(logging::set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logging::next_log_records, m)?)?;
    m.add_function(wrap_pyfunction!(logging::dropped_log_records, m)?)?;
    Ok(())
}
