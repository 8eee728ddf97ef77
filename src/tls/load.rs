//! Reading PEM files and building a rustls `ServerConfig` from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::TlsFiles;

/// What goes wrong loading a listener's certificate, key or client CA. Messages name the file
/// and never include key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key.
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    /// A file is not well-formed PEM.
    #[error("{} is not well-formed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// The key is unusable or does not belong to the certificate.
    #[error("the TLS key {} cannot serve the certificate {}: {reason}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// The client CA bundle is unusable.
    #[error("the client CA {} is unusable: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    /// rustls refused the protocol settings (should not happen with the built-in provider).
    #[error("TLS settings refused: {0}")]
    Settings(String),
}

/// The application protocols a listener offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// gRPC: HTTP/2 only (`h2`).
    Grpc,
    /// The axum HTTP listener: HTTP/1.1.
    Http1,
}

impl Protocols {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocols::Grpc => vec![b"h2".to_vec()],
            Protocols::Http1 => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The bytes of one listener's files, read together, with a digest to notice changes.
pub(crate) struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    /// SHA-256 over the three files (lengths included), for change detection only.
    pub(crate) digest: [u8; 32],
}

impl Drop for Material {
    fn drop(&mut self) {
        // Best effort: don't leave the private key's bytes in freed memory.
        self.key.iter_mut().for_each(|b| *b = 0);
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the files named by `files` (already resolved).
pub(crate) fn read_material(files: &TlsFiles) -> Result<Material, TlsError> {
    let cert = read("certificate", &files.cert)?;
    let key = read("key", &files.key)?;
    let client_ca = match &files.client_ca {
        Some(p) => Some(read("client CA", p)?),
        None => None,
    };
    let mut h = Sha256::new();
    for part in [Some(&cert), Some(&key), client_ca.as_ref()] {
        let bytes = part.map(Vec::as_slice).unwrap_or_default();
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    Ok(Material {
        cert,
        key,
        client_ca,
        digest: h.finalize().into(),
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// The crypto provider of every listener: ring (already in the tree through reqwest).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `files` (resolved paths) and builds the listener's rustls configuration: TLS 1.2 and
/// 1.3, the given ALPN protocols, and a client-certificate verifier when `client_ca` is set
/// (then a caller without a certificate signed by that CA fails the handshake).
pub fn build_server_config(
    files: &TlsFiles,
    protocols: Protocols,
) -> Result<ServerConfig, TlsError> {
    let material = read_material(files)?;
    build_from(files, &material, protocols)
}

pub(crate) fn build_from(
    files: &TlsFiles,
    m: &Material,
    protocols: Protocols,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = certificates(&files.cert, &m.cert)?;
    let key = private_key(&files.key, &m.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match (&files.client_ca, &m.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path, pem)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = protocols.alpn();
    Ok(config)
}
