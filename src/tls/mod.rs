//! TLS on inferguard's listeners (rustls, ring provider): server certificates and keys read
//! from PEM files and reloaded when the files change, and optional client-certificate
//! verification (mutual TLS) against a CA bundle.
//!
//! One listener uses it in three steps (the `ext_authz`, `http` and `admin` listeners alike):
//!
//! ```ignore
//! let tls = tls::ReloadableServerConfig::load("admin", &files.resolved(&cfg.base_dir), tls::Protocols::Grpc)?;
//! tls.spawn_watch(tls::RELOAD_EVERY);                    // new connections see new files
//! let incoming = tls::accept(tcp_listener, tls);          // handshakes off the accept loop
//! tonic::transport::Server::builder()/* … */.serve_with_incoming_shutdown(incoming, shutdown);
//! // or, for axum: axum::serve(incoming, app) — `TlsIncoming` is an `axum::serve::Listener`.
//! ```
//!
//! A tonic handler on a TLS listener gets the caller's address from `request.remote_addr()` and
//! the verified client-certificate chain from `request.peer_certs()`, as with tonic's own TLS.

mod incoming;
mod load;
mod reload;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use incoming::{TlsConn, TlsIncoming, accept};
pub use load::{Protocols, TlsError, build_server_config};
pub use reload::{RELOAD_EVERY, ReloadableServerConfig};

/// `tls:` in inferguard.yaml: one optional section per listener; an absent section means that
/// listener speaks plaintext.
///
/// ```yaml
/// tls:
///   ext_authz: {cert: certs/inferguard.crt, key: certs/inferguard.key, client_ca: certs/ca.crt}
///   http:      {cert: certs/inferguard.crt, key: certs/inferguard.key}
///   admin:     {cert: certs/inferguard.crt, key: certs/inferguard.key, client_ca: certs/ca.crt}
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The ext_authz gRPC listener (Envoy's Check calls).
    pub ext_authz: Option<TlsFiles>,
    /// The HTTP listener (`/auth/*`, health, metrics).
    pub http: Option<TlsFiles>,
    /// The admin gRPC listener.
    pub admin: Option<TlsFiles>,
}

/// The PEM files of one TLS listener. Relative paths are relative to the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server certificate chain (leaf first).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign acceptable client certificates. Set: every caller must
    /// present a certificate chaining to one of them (mutual TLS); absent: no client
    /// certificate is asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The same files with relative paths resolved against `base_dir`.
    pub fn resolved(&self, base_dir: &Path) -> TlsFiles {
        TlsFiles {
            cert: base_dir.join(&self.cert),
            key: base_dir.join(&self.key),
            client_ca: self.client_ca.as_ref().map(|p| base_dir.join(p)),
        }
    }
}

#[cfg(test)]
mod tests;
