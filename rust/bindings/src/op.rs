use crate::errors::to_py;
use crate::notifier::Notifier;
use crate::runtime;
use crate::session::SessionHandle;
use crate::stream::{RecvStreamHandle, SendStreamHandle};
use crate::sync::lock;
use fastwt_core::{RecvStream, SendStream, Session};
use pyo3::prelude::*;
use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// What a spawned operation yields; converted to Python only on the loop thread.
pub enum OpValue {
    /// Nothing (accept, reject, close).
    Unit,
    /// A session (connect).
    Session(Session),
    /// A new bidirectional stream.
    Bi(SendStream, RecvStream),
    /// A new unidirectional stream.
    Uni(SendStream),
}

type OpResult = fastwt_core::Result<OpValue>;

/// A Rust future running on the I/O runtime, polled from Python with a token. Used for
/// rare operations (connect, accept, open stream); hot paths poll without spawning.
#[pyclass(module = "fastwt._core", frozen)]
pub struct Op {
    rx: Mutex<Option<oneshot::Receiver<OpResult>>>,
}

impl Op {
    pub fn spawn<F>(fut: F) -> PyResult<Self>
    where
        F: Future<Output = OpResult> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        runtime::get()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        Ok(Self {
            rx: Mutex::new(Some(rx)),
        })
    }
}

pub(crate) fn value_to_py(py: Python<'_>, value: OpValue) -> PyResult<Py<PyAny>> {
    Ok(match value {
        OpValue::Unit => true.into_pyobject(py)?.to_owned().into_any().unbind(),
        OpValue::Session(s) => Py::new(py, SessionHandle::new(s))?.into_any(),
        OpValue::Bi(send, recv) => {
            let send = Py::new(py, SendStreamHandle::new(send))?;
            let recv = Py::new(py, RecvStreamHandle::new(recv))?;
            (send, recv).into_pyobject(py)?.into_any().unbind()
        }
        OpValue::Uni(send) => Py::new(py, SendStreamHandle::new(send))?.into_any(),
    })
}

#[pymethods]
impl Op {
    /// The result when done (`True` for operations without one), else `None` after
    /// registering `token` with `notifier`. Raises the operation's error.
    fn poll(&self, py: Python<'_>, notifier: &Notifier, token: u64) -> PyResult<Option<Py<PyAny>>> {
        let mut slot = lock(&self.rx);
        let Some(rx) = slot.as_mut() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "operation already completed",
            ));
        };
        let waker = notifier.waker(token);
        let mut cx = Context::from_waker(&waker);
        match std::pin::Pin::new(rx).poll(&mut cx) {
            Poll::Pending => Ok(None),
            Poll::Ready(result) => {
                *slot = None;
                match result {
                    Ok(Ok(value)) => Ok(Some(value_to_py(py, value)?)),
                    Ok(Err(e)) => Err(to_py(e)),
                    Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "operation was dropped by the runtime",
                    )),
                }
            }
        }
    }
}
