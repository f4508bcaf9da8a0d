use pyo3::prelude::*;
use std::sync::OnceLock;

static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Handle>> = OnceLock::new();

fn threads() -> usize {
    std::env::var("FASTWT_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn build() -> std::io::Result<tokio::runtime::Handle> {
    let n = threads();
    if n > 1 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("fastwt-io")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        // The runtime lives for the whole process.
        std::mem::forget(rt);
        return Ok(handle);
    }
    // One I/O thread running a current-thread runtime: quinn's endpoint and connection
    // drivers and fastwt's tasks hand work to each other without crossing threads,
    // which is what small-message latency is made of.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("fastwt-io".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// The extension's tokio runtime, created on first use. I/O threads never take the GIL.
/// `FASTWT_IO_THREADS` (default 1) chooses how many threads run it.
pub fn get() -> PyResult<&'static tokio::runtime::Handle> {
    RUNTIME.get_or_init(build).as_ref().map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}"))
    })
}

/// How many tokio I/O threads the extension runs (env `FASTWT_IO_THREADS`).
#[pyfunction]
pub fn io_threads() -> usize {
    threads()
}
