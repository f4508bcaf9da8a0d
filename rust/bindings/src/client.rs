use crate::errors::to_py;
use crate::op::{Op, OpValue};
use crate::options::{secs, Transport};
use crate::runtime;
use fastwt_core::{Client, ClientOptions, TrustMode};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// A client endpoint; `connect` returns an `Op` resolving to a `SessionHandle`.
#[pyclass(module = "fastwt._core", frozen)]
pub struct ClientHandle {
    client: Arc<Client>,
}

fn parse_hash(h: &str) -> PyResult<[u8; 32]> {
    let clean: String = h.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    // ASCII only: the slicing below is by bytes (64 bytes of "é"s and others panicked).
    if clean.len() != 64 || !clean.is_ascii() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "certificate hash must be 32 bytes of hex, got {h:?}"
        )));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!("bad hex in certificate hash {h:?}"))
        })?;
    }
    Ok(out)
}

#[pymethods]
impl ClientHandle {
    /// `trust` is "system", "ca", "hashes" or "insecure".
    #[new]
    #[pyo3(signature = (*, trust="system", ca_certs=None, certificate_hashes=Vec::new(),
        certfile=None, keyfile=None, connect_timeout=None, headers=Vec::new(), user_agent=None,
        transport=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        trust: &str,
        ca_certs: Option<PathBuf>,
        certificate_hashes: Vec<String>,
        certfile: Option<PathBuf>,
        keyfile: Option<PathBuf>,
        connect_timeout: Option<f64>,
        headers: Vec<(String, String)>,
        user_agent: Option<String>,
        transport: Option<PyRef<'_, Transport>>,
    ) -> PyResult<Self> {
        let trust = match trust {
            "system" => TrustMode::SystemRoots,
            "ca" => TrustMode::CaFile(ca_certs.ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err("trust='ca' needs ca_certs")
            })?),
            "hashes" => TrustMode::CertificateHashes(
                certificate_hashes
                    .iter()
                    .map(|h| parse_hash(h))
                    .collect::<PyResult<_>>()?,
            ),
            "insecure" => TrustMode::Insecure,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown trust mode {other:?}"
                )))
            }
        };
        let client_identity = fastwt_core::Identity::pem_pair(certfile, keyfile).map_err(to_py)?;
        let transport = transport.map(|t| t.options.clone()).unwrap_or_default();
        let connect_timeout = secs(connect_timeout, "connect_timeout")?;
        let opts = ClientOptions {
            trust,
            client_identity,
            connect_timeout,
            headers,
            user_agent,
            transport,
        };
        let rt = runtime::get()?;
        let client = py.detach(|| {
            let _guard = rt.enter();
            Client::new(opts)
        });
        Ok(Self {
            client: Arc::new(client.map_err(to_py)?),
        })
    }

    /// Opens a session to `url`; the `Op` resolves to a `SessionHandle`.
    #[pyo3(signature = (url, headers=Vec::new(), timeout=None))]
    fn connect(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        timeout: Option<f64>,
    ) -> PyResult<Op> {
        let timeout = secs(timeout, "timeout")?;
        let client = self.client.clone();
        Op::spawn(async move {
            client
                .connect(&url, headers, timeout)
                .await
                .map(OpValue::Session)
        })
    }

    /// Moves the client's sockets to new local ports (open sessions follow); returns
    /// the new local addresses as (host, port).
    fn rebind(&self, py: Python<'_>) -> PyResult<Vec<(String, u16)>> {
        let rt = runtime::get()?;
        let addrs = py
            .detach(|| {
                let _guard = rt.enter();
                self.client.rebind()
            })
            .map_err(to_py)?;
        Ok(addrs
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect())
    }

    /// Closes the client's sockets.
    fn close(&self) {
        self.client.close();
    }
}
