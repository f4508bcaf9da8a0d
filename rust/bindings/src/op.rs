use crate::errors::to_py;
use crate::notifier::Notifier;
use crate::runtime;
use crate::session::{close_abandoned, SessionHandle};
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
///
/// Dropping the `Op` before it finished (Python cancelled the await) stops the work: the
/// future is aborted, and a session it already made is closed rather than left running.
#[pyclass(module = "fastwt._core", frozen)]
pub struct Op {
    rx: Mutex<Option<oneshot::Receiver<OpResult>>>,
    task: tokio::task::AbortHandle,
}

impl Op {
    pub fn spawn<F>(fut: F) -> PyResult<Self>
    where
        F: Future<Output = OpResult> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task = runtime::get()?.spawn(async move {
            if let Err(Ok(OpValue::Session(orphan))) = tx.send(fut.await) {
                close_abandoned(&orphan);
            }
        });
        Ok(Self {
            rx: Mutex::new(Some(rx)),
            task: task.abort_handle(),
        })
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let Some(mut rx) = lock(&self.rx).take() else {
            return; // the result was claimed
        };
        // Unfinished: stop it (a finished task ignores the abort). Finished but never
        // claimed: a session in the channel is closed like any abandoned one.
        self.task.abort();
        if let Ok(Ok(OpValue::Session(orphan))) = rx.try_recv() {
            close_abandoned(&orphan);
        }
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
        let result = {
            let mut slot = lock(&self.rx);
            let Some(rx) = slot.as_mut() else {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "operation already completed",
                ));
            };
            let waker = notifier.waker(token);
            let mut cx = Context::from_waker(&waker);
            match std::pin::Pin::new(rx).poll(&mut cx) {
                Poll::Pending => return Ok(None),
                Poll::Ready(result) => {
                    *slot = None;
                    result
                }
            }
        };
        // Python objects are made after the lock is released: allocating may run the
        // garbage collector and finalizers, which may call back into this object.
        match result {
            Ok(Ok(value)) => Ok(Some(value_to_py(py, value)?)),
            Ok(Err(e)) => Err(to_py(e)),
            Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "operation was dropped by the runtime",
            )),
        }
    }
}
