//! What the raw-peer test files share: a server on 127.0.0.1 port 0 with a development
//! certificate, a client that trusts it, and raw QUIC connections to it (for peers that
//! speak HTTP/3 by hand).
#![allow(clippy::unwrap_used, dead_code)]

use crate::h3;
use crate::{Client, ClientOptions, Identity, Server, ServerOptions, Session, TrustMode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// A draft-15 client's SETTINGS (datagrams, WebTransport, some flow-control credit).
pub const DRAFT15: &[(u64, u64)] = &[
    (h3::SETTING_H3_DATAGRAM, 1),
    (h3::SETTING_WT_ENABLED, 1),
    (h3::SETTING_WT_INITIAL_MAX_DATA, 1 << 20),
    (h3::SETTING_WT_INITIAL_MAX_STREAMS_BIDI, 10),
    (h3::SETTING_WT_INITIAL_MAX_STREAMS_UNI, 10),
];

/// A control stream preamble (stream type, SETTINGS) with exactly these settings.
pub fn control_with(settings: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = vec![];
    for (id, v) in settings {
        h3::put_varint(&mut payload, *id);
        h3::put_varint(&mut payload, *v);
    }
    let mut out = vec![];
    h3::put_varint(&mut out, h3::STREAM_CONTROL);
    out.extend(h3::encode_frame(h3::FRAME_SETTINGS, &payload));
    out
}

/// A CONNECT request's HEADERS frame for `path` on `addr` with `:protocol` `protocol`.
pub fn connect_request(addr: SocketAddr, protocol: &str, path: &str) -> Vec<u8> {
    h3::encode_headers(&[
        (":method".into(), "CONNECT".into()),
        (":protocol".into(), protocol.into()),
        (":scheme".into(), "https".into()),
        (":authority".into(), addr.to_string()),
        (":path".into(), path.into()),
    ])
}

/// The server's next session request, within 5 s.
pub async fn next_request(server: &Server) -> Session {
    tokio::time::timeout(Duration::from_secs(5), server.accept())
        .await
        .expect("a session request")
        .unwrap()
}
