use crate::config::{ClientAuth, TrustMode};
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

/// TLS secrets go to the file named by `SSLKEYLOGFILE` (NSS key log format, what
/// Wireshark reads to decrypt QUIC), as browsers and curl do; without the variable
/// rustls' `KeyLogFile` does nothing. The variable is read when the server or client
/// is made.
fn key_log() -> Arc<dyn rustls::KeyLog> {
    Arc::new(rustls::KeyLogFile::new())
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS: {e}"))
}

/// quinn server crypto for an identity, TLS 1.3 with ALPN `h3`; with `client_auth`,
/// client certificates are requested and checked by rustls' `WebPkiClientVerifier`
/// against the CA file (chain, validity period, client-auth key usage, signatures).
pub fn server_crypto(
    identity: &Identity,
    client_auth: &ClientAuth,
) -> Result<quinn::crypto::rustls::QuicServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(path) | ClientAuth::Required(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_ca_file(path)? {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!(
                        "ca_certs ({}): not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if matches!(client_auth, ClientAuth::Optional(_)) {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(tls_err)?)
        }
    };
    let mut cfg = builder
        .with_single_cert(
            identity.certificate_chain().to_vec(),
            identity.private_key(),
        )
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
    cfg.ignore_client_order = true;
    cfg.key_log = key_log();
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
            let anchors = rustls_native_certs::load_native_certs().certs;
            let verifier = CaVerifier::new(anchors, "the system's root certificates".into())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        TrustMode::CaFile(path) => {
            let source = format!("ca_certs ({})", path.display());
            let verifier = CaVerifier::new(load_ca_file(path)?, source)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
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
    cfg.key_log = key_log();
    quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(tls_err)
}

/// The handshake-signature half of a `ServerCertVerifier`, the same for every verifier
/// here: the peer must hold the key of the certificate it presented, whatever decided
/// to trust that certificate. Each verifier has a `provider: Arc<CryptoProvider>`.
macro_rules! verify_signatures_with_provider {
    () => {
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
    };
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
            Some(_) => Err(refused(format!(
                "its SHA-256 is {}, which is not in server_certificate_hashes; pass the \
                 SHA-256 the server printed at start (fastwt cert / fastwt dev print it)",
                hex(&sha256(end_entity.as_ref()))
            ))),
        }
    }

    verify_signatures_with_provider!();
}

fn load_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "no CA certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// Why a server certificate was refused and what to do about it: carried inside rustls'
/// `CertificateError::Other`, so it reaches the connect error's message (rustls prints
/// `Other` with `Debug`, hence the plain text there too).
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server's certificate was refused: {}", self.0)
    }
}

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refusal {}

fn refused(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Refusal(why)),
    )))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether webpki refused a certificate only because it is marked as a CA
/// (`basicConstraints CA:TRUE`) and was presented as the server's own certificate.
fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

/// Trusts a set of CA certificates (a `ca_certs` file, or the system's) the way OpenSSL does (and Python's `ssl`,
/// aioquic and pywebtransport with it): a certificate signed by one of them, or one of
/// them itself. The second is what `openssl req -x509` and most tutorials make: a
/// self-signed certificate marked `CA:TRUE`, which webpki alone refuses as
/// `CaUsedAsEndEntity`. Such a certificate is accepted only when it is byte for byte a
/// certificate of the file and valid for the server name; webpki checks its validity
/// period before its basic constraints, so an expired one still fails as expired.
#[derive(Debug)]
struct CaVerifier {
    /// `None` when there is no anchor at all (a machine without a system store).
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    anchors: Vec<CertificateDer<'static>>,
    /// Where the anchors came from, for error messages.
    source: String,
}

impl CaVerifier {
    fn new(anchors: Vec<CertificateDer<'static>>, source: String) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        // The system store may hold certificates webpki cannot parse; skip those, as
        // rustls' own examples do. A file the user named must parse whole.
        let (_added, ignored) = roots.add_parsable_certificates(anchors.iter().cloned());
        if ignored > 0 && !source.starts_with("the system") {
            return Err(Error::Config(format!(
                "{source}: {ignored} certificate(s) cannot be used as trust anchors"
            )));
        }
        let webpki = if roots.is_empty() {
            None
        } else {
            let builder = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            Some(builder.build().map_err(tls_err)?)
        };
        Ok(Self {
            webpki,
            provider: provider(),
            anchors,
            source,
        })
    }

    fn explain(&self, end_entity: &CertificateDer<'_>, e: rustls::Error) -> rustls::Error {
        let hash = hex(&sha256(end_entity.as_ref()));
        let what = match &e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                format!("it is neither one of nor signed by {}", self.source)
            }
            other => other.to_string(),
        };
        refused(format!(
            "{what}; its SHA-256 is {hash}: pass the certificate (or its CA) as ca_certs, \
             or the SHA-256 in server_certificate_hashes"
        ))
    }
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Err(self.explain(
                end_entity,
                rustls::Error::General(format!("{} holds no certificate", self.source)),
            ));
        };
        let e = match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        if !is_ca_used_as_end_entity(&e) || !self.anchors.iter().any(|a| a == end_entity) {
            return Err(self.explain(end_entity, e));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| self.explain(end_entity, rustls::Error::General(e.to_string())))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|e| {
                self.explain(
                    end_entity,
                    rustls::Error::General(format!("not valid for {server_name:?}: {e}")),
                )
            })?;
        Ok(ServerCertVerified::assertion())
    }

    verify_signatures_with_provider!();
}
