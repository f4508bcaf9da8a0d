use pyo3::prelude::*;
use std::sync::OnceLock;

static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();

fn threads() -> usize {
    std::env::var("FASTWT_IO_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2)
        })
}

/// The extension's tokio runtime, created on first use. I/O threads never take the GIL.
pub fn get() -> PyResult<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads())
                .thread_name("fastwt-io")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}"))
        })
}

/// How many tokio I/O threads the extension runs (env `FASTWT_IO_THREADS`).
#[pyfunction]
pub fn io_threads() -> usize {
    threads()
}
