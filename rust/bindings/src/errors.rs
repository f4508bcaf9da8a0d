use fastwt_core::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::IntoPyObjectExt;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module = ERRORS_MODULE
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("fastwt.errors")?.unbind()))?;
    module.bind(py).getattr(name)
}

fn build(
    py: Python<'_>,
    name: &str,
    message: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyResult<PyErr> {
    let cls = class(py, name)?;
    let exc = cls.call1((message,))?;
    for (k, v) in attrs {
        exc.setattr(*k, v)?;
    }
    Ok(PyErr::from_value(exc))
}

/// A Python value for an exception attribute (`None` if conversion fails).
fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> Py<PyAny> {
    v.into_py_any(py).unwrap_or_else(|_| py.None())
}

/// Converts a core error into the matching `fastwt.errors` exception.
pub fn to_py(err: Error) -> PyErr {
    Python::attach(|py| {
        let message = err.to_string();
        let result = match &err {
            Error::Config(_) | Error::InvalidArgument(_) => {
                build(py, "ConfigurationError", message, &[])
            }
            Error::Io(_) | Error::Connection(_) | Error::EndpointClosed => {
                build(py, "ConnectionError", message, &[])
            }
            Error::SessionClosed(info) => build(
                py,
                "SessionClosedError",
                message,
                &[
                    ("error_code", obj(py, info.code)),
                    ("reason", obj(py, info.reason.clone())),
                ],
            ),
            Error::Rejected { status, headers } => {
                let dict = PyDict::new(py);
                for (k, v) in headers {
                    let _ = dict.set_item(k, v);
                }
                let status_obj = obj(py, status);
                build(
                    py,
                    "SessionRejectedError",
                    message,
                    &[
                        ("status_code", status_obj),
                        ("headers", dict.into_any().unbind()),
                    ],
                )
            }
            Error::Protocol(_) => build(py, "ProtocolError", message, &[]),
            Error::StreamReset(code) | Error::StreamStopped(code) => {
                let code_obj = obj(py, code);
                build(py, "StreamError", message, &[("error_code", code_obj)])
            }
            Error::StreamClosed => build(py, "StreamError", message, &[]),
            Error::DatagramTooLarge { size, max } => {
                let max_obj = obj(py, max);
                let size_obj = obj(py, size);
                build(
                    py,
                    "DatagramError",
                    message,
                    &[("max_size", max_obj), ("size", size_obj)],
                )
            }
            Error::DatagramUnsupported(_) => build(py, "DatagramError", message, &[]),
            Error::Timeout(_) => build(py, "TimeoutError", message, &[]),
            Error::InvalidState(_) => build(py, "SessionError", message, &[]),
        };
        result.unwrap_or_else(|e| e)
    })
}

/// A `fastwt.errors.StreamError` with `message` (for errors of the handles' own rules,
/// such as a read that the end of the stream left incomplete).
pub fn stream_error(py: Python<'_>, message: String) -> PyErr {
    build(py, "StreamError", message, &[]).unwrap_or_else(|e| e)
}
