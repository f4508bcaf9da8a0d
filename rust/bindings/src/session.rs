use crate::errors::to_py;
use crate::notifier::{Notifier, WakerSlot};
use crate::op::{value_to_py, Op, OpValue};
use crate::runtime;
use crate::stream::{RecvStreamHandle, SendStreamHandle};
use crate::sync::lock;
use fastwt_core::{ConnectWrite, SendDatagram, Session, SessionPhase, Spawner, StreamTask};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// The tasks of streams opened on the loop's thread, collected for the notifier: they
/// start with the loop's next flush, batched with the turn's other work (one hand-off
/// to the I/O thread per turn instead of one per pump; see `docs/bridge.md`).
struct Deferred<'a>(&'a mut Vec<StreamTask>);

impl Spawner for Deferred<'_> {
    fn spawn(&mut self, task: StreamTask) {
        self.0.push(task);
    }
}

/// Polls an opening once from the loop's thread, its pumps handed to `notifier` (see
/// [`Deferred`]). `Pending`: the opening waits for stream credit, to be finished on
/// the runtime.
fn open_deferred<T>(
    notifier: &Notifier,
    poll: impl FnOnce(&mut Context<'_>, &mut dyn Spawner) -> Poll<fastwt_core::Result<T>>,
) -> PyResult<Poll<T>> {
    let _rt = runtime::get()?.enter();
    let mut pumps = Vec::new();
    let polled = poll(
        &mut Context::from_waker(Waker::noop()),
        &mut Deferred(&mut pumps),
    );
    notifier.defer_pumps(&mut pumps);
    match polled {
        Poll::Ready(result) => result.map(Poll::Ready).map_err(to_py),
        Poll::Pending => Ok(Poll::Pending),
    }
}

/// One session. Hot calls (`poll_datagrams`, `send_datagram`) take no loop hop when the
/// result is ready, and never block (a datagram send that must wait for room returns an
/// `Op` to await).
#[pyclass(module = "fastwt._core", frozen)]
pub struct SessionHandle {
    session: Session,
    /// Wakers of the two hot polls (incoming bidirectional streams, datagrams).
    accept_bi_waker: Mutex<WakerSlot>,
    datagram_waker: Mutex<WakerSlot>,
}

impl SessionHandle {
    /// The core session, for calls that work on many handles at once (`fanout`).
    pub(crate) fn core(&self) -> &Session {
        &self.session
    }

    /// One datagram, waiting for room (`wait`) or dropping quinn's oldest queued:
    /// `None` when it was queued at once, else the send still waiting for room.
    fn send_one(&self, payload: &[u8], wait: bool) -> fastwt_core::Result<Option<SendDatagram>> {
        if !wait {
            return self.session.send_datagram(payload).map(|()| None);
        }
        match self.session.send_datagram_wait(payload).ready() {
            Ok(queued) => queued.map(|()| None),
            Err(waiting) => Ok(Some(waiting)),
        }
    }

    pub fn new(session: Session) -> Self {
        Self {
            session,
            accept_bi_waker: Mutex::default(),
            datagram_waker: Mutex::default(),
        }
    }
}

/// Ends a session nobody holds any more: an unanswered request is refused (404), an
/// open session closed with code 0, so the QUIC connection (kept alive by keep-alives)
/// does not outlive every reference to it. Needs no GIL.
pub(crate) fn close_abandoned(session: &Session) {
    if matches!(
        session.phase(),
        SessionPhase::Closed | SessionPhase::Rejected
    ) {
        return;
    }
    let Ok(rt) = runtime::get() else { return };
    let _guard = rt.enter();
    if let Err(writing) = session
        .close(0, "session dropped by the application")
        .ready()
    {
        rt.spawn(writing);
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        close_abandoned(&self.session);
    }
}

fn phase_name(p: SessionPhase) -> &'static str {
    match p {
        SessionPhase::Requested => "requested",
        SessionPhase::Accepted => "accepted",
        SessionPhase::Rejected => "rejected",
        SessionPhase::Closed => "closed",
    }
}

/// Runs `f` on the bytes of any buffer-protocol object (bytes, bytearray, memoryview...)
/// without copying when it is `bytes`.
pub(crate) fn with_buffer<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    let buf = PyBuffer::<u8>::get(data)?;
    let v = buf.to_vec(data.py())?;
    Ok(f(&v))
}

#[pymethods]
impl SessionHandle {
    #[getter]
    fn session_id(&self) -> u64 {
        self.session.id()
    }
    #[getter]
    fn path(&self) -> &str {
        self.session.path()
    }
    #[getter]
    fn authority(&self) -> &str {
        self.session.authority()
    }
    /// Request headers (server) or response headers (client), lower-case names.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.session.headers() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
    /// The peer's certificate chain, DER, leaf first (empty without one).
    #[getter]
    fn peer_certificates<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.session
            .peer_certificates()
            .iter()
            .map(|der| PyBytes::new(py, der))
            .collect()
    }

    #[getter]
    fn remote_address(&self) -> (String, u16) {
        let a = self.session.remote_address();
        let ip = match a.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(a.ip()),
            v4 => v4,
        };
        (ip.to_string(), a.port())
    }
    #[getter]
    fn phase(&self) -> &'static str {
        phase_name(self.session.phase())
    }
    /// (code, reason, local) once closed, else `None`.
    #[getter]
    fn close_info(&self) -> Option<(u32, String, bool)> {
        self.session
            .close_info()
            .map(|i| (i.code, i.reason, i.local))
    }
    #[getter]
    fn max_datagram_size(&self) -> Option<usize> {
        self.session.max_datagram_size()
    }
    /// The negotiated draft: "draft-02", "draft-07..14" or "draft-15".
    #[getter]
    fn draft(&self) -> &'static str {
        self.session.draft().name()
    }
    /// The application protocol agreed through `wt-protocol`, if any.
    #[getter]
    fn protocol(&self) -> Option<String> {
        self.session.protocol()
    }
    /// Whether the peer asked to wind the session down (GOAWAY, DRAIN_WEBTRANSPORT_SESSION).
    #[getter]
    fn draining(&self) -> bool {
        self.session.is_draining()
    }
    /// Sends DRAIN_WEBTRANSPORT_SESSION: asks the peer to wind the session down.
    fn drain(&self) -> PyResult<()> {
        // The capsule may have to finish on the runtime (a write in flight, no room).
        let _rt = runtime::get()?.enter();
        self.session.drain().map_err(to_py)
    }

    /// Session flow-control limits (drafts 13+), `None` for draft-02 sessions.
    fn flow_control<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(f) = self.session.flow_control() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("local_max_data", f.local_max_data)?;
        d.set_item("local_max_streams_bidi", f.local_max_streams_bidi)?;
        d.set_item("local_max_streams_uni", f.local_max_streams_uni)?;
        d.set_item("peer_max_data", f.peer_max_data)?;
        d.set_item("peer_max_streams_bidi", f.peer_max_streams_bidi)?;
        d.set_item("peer_max_streams_uni", f.peer_max_streams_uni)?;
        d.set_item("received", f.received)?;
        Ok(Some(d))
    }

    /// `True` when the response went out at once, else an `Op` finishing it.
    /// `wt_protocol` answers the request's `wt-available-protocols`.
    #[pyo3(signature = (headers=Vec::new(), wt_protocol=None))]
    fn accept(
        &self,
        py: Python<'_>,
        headers: Vec<(String, String)>,
        wt_protocol: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let _rt = runtime::get()?.enter();
        done_or_op(py, self.session.accept(headers, wt_protocol))
    }

    /// `True` when the response went out at once, else an `Op` finishing it.
    #[pyo3(signature = (status_code, headers=Vec::new()))]
    fn reject(
        &self,
        py: Python<'_>,
        status_code: u16,
        headers: Vec<(String, String)>,
    ) -> PyResult<Py<PyAny>> {
        // The core refuses a non-rejection status with a ConfigurationError (a ValueError).
        let _rt = runtime::get()?.enter();
        done_or_op(py, self.session.reject(status_code, headers))
    }

    /// `True` when the close went out at once, else an `Op` finishing it.
    #[pyo3(signature = (code=0, reason=String::new()))]
    fn close(&self, py: Python<'_>, code: u32, reason: String) -> PyResult<Py<PyAny>> {
        let _rt = runtime::get()?.enter();
        done_or_op(py, self.session.close(code, &reason))
    }

    /// A new bidirectional stream as (send, recv) when it can be opened at once,
    /// else an `Op` resolving to it.
    fn open_bi(&self, py: Python<'_>, notifier: &Notifier) -> PyResult<Py<PyAny>> {
        let mut open = self.session.open_bi();
        match open_deferred(notifier, |cx, spawner| open.poll_spawning(cx, spawner))? {
            Poll::Ready((send, recv)) => value_to_py(py, OpValue::Bi(send, recv)),
            Poll::Pending => Ok(Py::new(
                py,
                Op::spawn(async move { open.await.map(|(a, b)| OpValue::Bi(a, b)) })?,
            )?
            .into_any()),
        }
    }

    /// A new unidirectional stream when it can be opened at once, else an `Op`.
    fn open_uni(&self, py: Python<'_>, notifier: &Notifier) -> PyResult<Py<PyAny>> {
        let mut open = self.session.open_uni();
        match open_deferred(notifier, |cx, spawner| open.poll_spawning(cx, spawner))? {
            Poll::Ready(send) => value_to_py(py, OpValue::Uni(send)),
            Poll::Pending => Ok(Py::new(
                py,
                Op::spawn(async move { open.await.map(OpValue::Uni) })?,
            )?
            .into_any()),
        }
    }

    /// (code, reason, local) when closed, else `None` with the token registered.
    fn poll_closed(&self, notifier: &Notifier, token: u64) -> Option<(u32, String, bool)> {
        let waker = notifier.waker(token);
        let mut cx = Context::from_waker(&waker);
        match self.session.poll_closed(&mut cx) {
            Poll::Ready(i) => Some((i.code, i.reason, i.local)),
            Poll::Pending => None,
        }
    }

    /// A peer-opened bidirectional stream, or `None` (token registered).
    fn poll_accept_bi(
        &self,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<(SendStreamHandle, RecvStreamHandle)>> {
        let polled = {
            let mut slot = lock(&self.accept_bi_waker);
            let waker = notifier.waker_in(&mut slot, token);
            self.session.poll_accept_bi(&mut Context::from_waker(waker))
        };
        match polled {
            Poll::Ready(Ok((s, r))) => {
                Ok(Some((SendStreamHandle::new(s), RecvStreamHandle::new(r))))
            }
            Poll::Pending => Ok(None),
            Poll::Ready(Err(e)) => Err(to_py(e)),
        }
    }

    /// A peer-opened unidirectional stream, or `None` (token registered).
    fn poll_accept_uni(
        &self,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<RecvStreamHandle>> {
        let waker = notifier.waker(token);
        match self
            .session
            .poll_accept_uni(&mut Context::from_waker(&waker))
        {
            Poll::Ready(Ok(r)) => Ok(Some(RecvStreamHandle::new(r))),
            Poll::Pending => Ok(None),
            Poll::Ready(Err(e)) => Err(to_py(e)),
        }
    }

    /// One received datagram, or `None` (token registered).
    fn poll_datagram<'py>(
        &self,
        py: Python<'py>,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let polled = {
            let mut slot = lock(&self.datagram_waker);
            let waker = notifier.waker_in(&mut slot, token);
            self.session
                .poll_read_datagram(&mut Context::from_waker(waker))
        };
        // Python objects only after the lock is released (see `Op::poll`).
        match polled {
            Poll::Ready(Ok(d)) => Ok(Some(PyBytes::new(py, &d))),
            Poll::Pending => Ok(None),
            Poll::Ready(Err(e)) => Err(to_py(e)),
        }
    }

    /// Up to `max_count` received datagrams in one call, or `None` (token registered)
    /// when none is ready.
    fn poll_datagrams<'py>(
        &self,
        py: Python<'py>,
        max_count: usize,
        notifier: &Notifier,
        token: u64,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let mut out = Vec::new();
        {
            let mut slot = lock(&self.datagram_waker);
            let waker = notifier.waker_in(&mut slot, token);
            let cx = &mut Context::from_waker(waker);
            if let Poll::Ready(Err(e)) = self.session.poll_read_datagrams(cx, max_count, &mut out) {
                return Err(to_py(e));
            }
        }
        // Python objects only after the lock is released (see `Op::poll`).
        if out.is_empty() {
            return Ok(None);
        }
        let list = PyList::empty(py);
        for d in out {
            list.append(PyBytes::new(py, &d))?;
        }
        Ok(Some(list))
    }

    /// Sends one datagram: `None` when quinn queued it at once, else an `Op` that
    /// queues it once quinn's send buffer has room (awaiting it is the back-pressure:
    /// older queued datagrams are never dropped for it; dropping the `Op` unsent leaves
    /// the datagram unsent). With `wait=False` never an `Op`: a full buffer drops its
    /// oldest datagram instead. Raises `DatagramError` when too large.
    #[pyo3(signature = (data, wait=true))]
    fn send_datagram(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        wait: bool,
    ) -> PyResult<Option<Py<Op>>> {
        let opened = with_buffer(data, |b| self.send_one(b, wait))?.map_err(to_py)?;
        pending_send(py, opened)
    }

    /// Sends datagrams taken from the iterator `data` until it is exhausted or one has
    /// to wait for room: `(queued, None)` when all went at once, `(queued, op)` when
    /// the next one waits in `op` (the iterator resumes after it). Stops at the first
    /// error, raising it.
    #[pyo3(signature = (data, wait=true))]
    fn send_datagrams(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        wait: bool,
    ) -> PyResult<(usize, Option<Py<Op>>)> {
        let mut sent = 0;
        for item in data.try_iter()? {
            let item = item?;
            let opened = with_buffer(&item, |b| self.send_one(b, wait))?.map_err(to_py)?;
            if let Some(op) = pending_send(py, opened)? {
                return Ok((sent, Some(op)));
            }
            sent += 1;
        }
        Ok((sent, None))
    }

    fn export_keying_material<'py>(
        &self,
        py: Python<'py>,
        label: &[u8],
        context: &[u8],
        length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self
            .session
            .export_keying_material(label, context, length)
            .map_err(to_py)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Counters: datagrams sent/received/dropped, bytes, RTT (seconds), lost packets,
    /// DATAGRAM frames sent and received on the connection.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.session.stats();
        let d = PyDict::new(py);
        d.set_item("datagrams_sent", s.datagrams_sent)?;
        d.set_item("datagrams_received", s.datagrams_received)?;
        d.set_item("datagrams_dropped", s.datagrams_dropped)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("rtt", s.rtt.as_secs_f64())?;
        d.set_item("lost_packets", s.lost_packets)?;
        d.set_item("datagram_frames_sent", s.datagram_frames_sent)?;
        d.set_item("datagram_frames_received", s.datagram_frames_received)?;
        Ok(d)
    }
}

/// `None` for a datagram queued at once, else the `Op` that waits for room to queue it.
fn pending_send(py: Python<'_>, waiting: Option<SendDatagram>) -> PyResult<Option<Py<Op>>> {
    match waiting {
        None => Ok(None),
        Some(send) => Ok(Some(Py::new(
            py,
            Op::spawn(async move { send.await.map(|()| OpValue::Unit) })?,
        )?)),
    }
}

/// `True` when the write went out before the call returned, its error raised, else an
/// `Op` finishing it on the runtime.
fn done_or_op(py: Python<'_>, write: ConnectWrite) -> PyResult<Py<PyAny>> {
    match write.ready() {
        Ok(Ok(())) => Ok(true.into_pyobject(py)?.to_owned().into_any().unbind()),
        Ok(Err(e)) => Err(to_py(e)),
        Err(writing) => Ok(Py::new(
            py,
            Op::spawn(async move { writing.await.map(|_| OpValue::Unit) })?,
        )?
        .into_any()),
    }
}
