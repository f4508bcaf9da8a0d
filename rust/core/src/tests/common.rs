//! What the raw-peer test files share: a server on 127.0.0.1 port 0 with a development
//! certificate, a client that trusts it, and raw QUIC connections to it (for peers that
//! speak HTTP/3 by hand).
#![allow(clippy::unwrap_used, dead_code)]

use crate::{Client, ClientOptions, Identity, Server, ServerOptions, TrustMode};
use std::net::SocketAddr;
use std::sync::Arc;

/// A server with `options` (its `bind` replaced by 127.0.0.1 port 0), a client trusting
/// its certificate, and the server's address.
pub fn setup(options: ServerOptions) -> (Server, Client, SocketAddr) {
    let identity = Identity::development().unwrap();
    let options = ServerOptions {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..options
    };
    let server = Server::bind(options, &identity).unwrap();
    let addr = server.local_addrs()[0];
    let client = Client::new(ClientOptions {
        trust: TrustMode::CertificateHashes(vec![identity.certificate_hash()]),
        ..Default::default()
    })
    .unwrap();
    (server, client, addr)
}

/// A QUIC connection to `addr` with the client's TLS settings (and its transport, or
/// `transport` when given), from an endpoint of its own.
pub async fn raw_connection_with(
    client: &Client,
    addr: SocketAddr,
    transport: Option<quinn::TransportConfig>,
) -> quinn::Connection {
    let mut config = client.quic_config();
    if let Some(transport) = transport {
        config.transport_config(Arc::new(transport));
    }
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// [`raw_connection_with`] with the client's own transport settings.
pub async fn raw_connection(client: &Client, addr: SocketAddr) -> quinn::Connection {
    raw_connection_with(client, addr, None).await
}
