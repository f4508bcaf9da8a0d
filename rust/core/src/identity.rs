use crate::error::{Error, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A certificate chain and its private key, as the server presents them.
#[derive(Debug)]
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pem: Option<(String, String)>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
            pem: self.pem.clone(),
        }
    }
}

/// How long the development certificate is valid. Browsers accept a certificate for
/// `serverCertificateHashes` only when its validity is at most 14 days.
pub const DEV_CERT_VALIDITY_DAYS: i64 = 13;

impl Identity {
    /// A development identity: ECDSA P-256, valid from one hour ago for 13 days, for
    /// the given DNS names and IP addresses, so browsers accept it by hash.
    pub fn self_signed<I, S>(names: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Config(format!("key generation failed: {e}")))?;
        let mut params = rcgen::CertificateParams::new(names)
            .map_err(|e| Error::Config(format!("bad certificate name: {e}")))?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(DEV_CERT_VALIDITY_DAYS);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fastwt development certificate");
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Config(format!("self-signing failed: {e}")))?;
        let pem = (cert.pem(), key.serialize_pem());
        Ok(Self {
            certs: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            pem: Some(pem),
        })
    }

    /// The default development identity for `localhost`, `127.0.0.1` and `::1`.
    pub fn development() -> Result<Self> {
        Self::self_signed(["localhost", "127.0.0.1", "::1"])
    }

    /// A certificate file and its key file, which go together (both or neither: `None`).
    /// The one place this rule is written for the server's and the client's identity.
    pub fn pem_pair(
        certfile: Option<PathBuf>,
        keyfile: Option<PathBuf>,
    ) -> Result<Option<(PathBuf, PathBuf)>> {
        match (certfile, keyfile) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            _ => Err(Error::Config(
                "certfile and keyfile go together (both or neither)".into(),
            )),
        }
    }

    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load_pem(certfile: &Path, keyfile: &Path) -> Result<Self> {
        let certs = CertificateDer::pem_file_iter(certfile)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", certfile.display())))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("bad PEM in {}: {e}", certfile.display())))?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "no certificate in {}",
                certfile.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
            Error::Config(format!(
                "no usable private key in {}: {e}",
                keyfile.display()
            ))
        })?;
        Ok(Self {
            certs,
            key,
            pem: None,
        })
    }

    /// The chain, leaf first.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The private key.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// SHA-256 of the leaf certificate's DER: what browsers take in
    /// `serverCertificateHashes`.
    pub fn certificate_hash(&self) -> [u8; 32] {
        self.certs
            .first()
            .map(|c| sha256(c.as_ref()))
            .unwrap_or_default()
    }

    /// PEM texts (certificate, key) of a generated identity; `None` for loaded ones.
    pub fn pem(&self) -> Option<&(String, String)> {
        self.pem.as_ref()
    }
}

/// SHA-256 of some bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_identity_has_hash_and_pem() {
        let id = Identity::development().unwrap();
        assert_eq!(id.certificate_chain().len(), 1);
        assert_ne!(id.certificate_hash(), [0u8; 32]);
        let (cert, key) = id.pem().unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE"));
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn pem_roundtrip_through_files() {
        let id = Identity::development().unwrap();
        let dir = std::env::temp_dir().join(format!("fastwt-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = id.pem().unwrap();
        std::fs::write(dir.join("c.pem"), cert).unwrap();
        std::fs::write(dir.join("k.pem"), key).unwrap();
        let loaded = Identity::load_pem(&dir.join("c.pem"), &dir.join("k.pem")).unwrap();
        assert_eq!(loaded.certificate_hash(), id.certificate_hash());
        assert!(Identity::load_pem(&dir.join("k.pem"), &dir.join("k.pem")).is_err());
    }
}
