//! qlog traces on request, for qvis and other QUIC debugging tools: with the `QLOGDIR`
//! environment variable set when a server or client is made (the name quiche and
//! other QUIC stacks read), every connection writes its own JSON-SEQ trace,
//! `<QLOGDIR>/<unix time in µs>-<server|client>-<peer>.sqlog`. quinn keeps the trace
//! writer in the transport configuration, so each connection gets a configuration of
//! its own; without the variable nothing changes and nothing is written.

use crate::config::TransportOptions;
use crate::error::Result;
use crate::transport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::warn;

/// Where and for whom traces are written.
#[derive(Clone, Debug)]
pub struct Qlog {
    dir: PathBuf,
    role: &'static str,
    transport: TransportOptions,
}

impl Qlog {
    /// `Some` when `QLOGDIR` is set and not empty.
    pub fn from_env(role: &'static str, transport: &TransportOptions) -> Option<Self> {
        let dir = std::env::var_os("QLOGDIR").filter(|d| !d.is_empty())?;
        Some(Self {
            dir: dir.into(),
            role,
            transport: transport.clone(),
        })
    }

    /// The transport configuration for one connection to or from `peer`, writing its
    /// trace to a new file (without a trace, and a warning, if the file cannot be made).
    pub fn transport_config(&self, peer: SocketAddr) -> Result<Arc<quinn::TransportConfig>> {
        let mut transport = transport::transport_config(&self.transport)?;
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let peer_name: String = peer
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self
            .dir
            .join(format!("{micros}-{}-{peer_name}.sqlog", self.role));
        match std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::File::create(&path)) {
            Ok(file) => {
                let mut config = quinn::QlogConfig::default();
                config
                    .writer(Box::new(file))
                    .title(Some(format!("fastwt {} {peer}", self.role)));
                transport.qlog_stream(config.into_stream());
            }
            Err(e) => {
                warn!(target: "fastwt.core", "cannot write qlog to {}: {e}", path.display());
            }
        }
        Ok(Arc::new(transport))
    }
}

/// Accepts `incoming`, with a trace of its own when `qlog` (and the server's base
/// configuration) is given.
pub fn accept(
    incoming: quinn::Incoming,
    qlog: Option<(&Qlog, quinn::ServerConfig)>,
) -> std::result::Result<quinn::Connecting, quinn::ConnectionError> {
    let Some((qlog, mut config)) = qlog else {
        return incoming.accept();
    };
    match qlog.transport_config(incoming.remote_address()) {
        Ok(transport) => {
            config.transport_config(transport);
        }
        Err(e) => warn!(target: "fastwt.core", "qlog: {e}"),
    }
    incoming.accept_with(Arc::new(config))
}

/// The client configuration for a connection to `peer`: `base`, with a trace of its
/// own when `qlog` is given.
pub fn client_config(
    base: &quinn::ClientConfig,
    qlog: Option<&Qlog>,
    peer: SocketAddr,
) -> quinn::ClientConfig {
    let mut config = base.clone();
    if let Some(qlog) = qlog {
        match qlog.transport_config(peer) {
            Ok(transport) => {
                config.transport_config(transport);
            }
            Err(e) => warn!(target: "fastwt.core", "qlog: {e}"),
        }
    }
    config
}
