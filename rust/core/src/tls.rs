use crate::config::{CongestionControl, TransportOptions, TrustMode};
use crate::credit;
use crate::error::{Error, Result};
use crate::identity::{sha256, Identity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

const ALPN_H3: &[u8] = b"h3";

/// ring, with AES-128-GCM/SHA-256 preferred: SHA-256 has hardware support on most CPUs
/// and SHA-384 (AES-256's suite) does not, which made it the top handshake cost.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
            _ => 2,
        });
    Arc::new(provider)
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS: {e}"))
}

/// quinn server crypto for an identity, TLS 1.3 with ALPN `h3`.
pub fn server_crypto(identity: &Identity) -> Result<quinn::crypto::rustls::QuicServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(
            identity.certificate_chain().to_vec(),
            identity.private_key(),
        )
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
    cfg.ignore_client_order = true;
    quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(tls_err)
}

/// quinn client crypto for a trust mode.
pub fn client_crypto(
    trust: &TrustMode,
    client_identity: Option<&Identity>,
) -> Result<quinn::crypto::rustls::QuicClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let builder = match trust {
        TrustMode::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots)
        }
        TrustMode::CaFile(path) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| Error::Config(format!("bad PEM in {}: {e}", path.display())))?;
                roots.add(cert).map_err(tls_err)?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "no CA certificate in {}",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots)
        }
        TrustMode::CertificateHashes(hashes) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                hashes: Some(hashes.clone()),
                provider: provider(),
            })),
        TrustMode::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                hashes: None,
                provider: provider(),
            })),
    };
    let mut cfg = match client_identity {
        Some(id) => builder
            .with_client_auth_cert(id.certificate_chain().to_vec(), id.private_key())
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(tls_err)
}

/// Trusts a server by the SHA-256 of its leaf certificate (browsers'
/// `serverCertificateHashes`), or anything when `hashes` is `None`. Handshake signatures
/// are verified either way, so the peer must hold the certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    hashes: Option<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match &self.hashes {
            None => Ok(ServerCertVerified::assertion()),
            Some(hashes) if hashes.contains(&sha256(end_entity.as_ref())) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// quinn transport settings from our options.
pub fn transport_config(opts: &TransportOptions) -> Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = match opts.max_idle_timeout {
        Some(d) => Some(
            quinn::IdleTimeout::try_from(d)
                .map_err(|_| Error::Config(format!("max_idle_timeout {d:?} is too large")))?,
        ),
        None => None,
    };
    let varint = |v: u64, what: &str| {
        quinn::VarInt::from_u64(v).map_err(|_| Error::Config(format!("{what} {v} is too large")))
    };
    t.max_idle_timeout(idle)
        .keep_alive_interval(opts.keep_alive_interval)
        // Small limits until the peer uses streams (see `credit`); HTTP/3's own three
        // unidirectional streams come on top.
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(credit::initial_bidi(
            opts.max_concurrent_bidi_streams,
        )))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(credit::initial_uni(
            opts.max_concurrent_uni_streams,
        )))
        .stream_receive_window(varint(opts.stream_receive_window, "stream_receive_window")?)
        .receive_window(varint(opts.receive_window, "receive_window")?)
        .send_window(opts.send_window)
        .datagram_send_buffer_size(opts.datagram_send_buffer)
        .datagram_receive_buffer_size(Some(opts.datagram_receive_buffer));
    match opts.congestion_control {
        CongestionControl::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
        }
        CongestionControl::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        CongestionControl::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
    }
    Ok(t)
}
