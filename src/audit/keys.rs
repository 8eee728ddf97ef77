//! The audit checkpoint key (Ed25519): loading it from the environment, a file or the store,
//! signing, and reading public keys for `audit verify --key`.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AuditError;
use crate::config::AuditConfig;
use crate::store::DynStore;

/// The store purpose of the checkpoint key generated at first start.
pub const AUDIT_KEY_PURPOSE: &str = "audit";

/// The key that signs checkpoints. Its `Debug` output shows only the key id.
pub struct CheckpointKey {
    kid: String,
    key: SigningKey,
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The key id of a public key: its RFC 7638 JWK thumbprint (SHA-256, base64url), as for
/// inferguard's token key.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.to_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

impl CheckpointKey {
    /// Loads the key `cfg` names: the PKCS#8 PEM in the environment variable
    /// `audit.signing_key_env`, or in the file `audit.signing_key_file` (relative to
    /// `base_dir`), else the one kept in the store under [`AUDIT_KEY_PURPOSE`], generated and
    /// stored first when there is none (safe when several processes start at once).
    pub async fn load(
        cfg: &AuditConfig,
        base_dir: &Path,
        store: &DynStore,
    ) -> Result<CheckpointKey, AuditError> {
        CheckpointKey::load_with_env(cfg, base_dir, store, &|var| std::env::var(var).ok()).await
    }

    /// [`load`](CheckpointKey::load) with the environment read through `getenv`.
    pub(crate) async fn load_with_env(
        cfg: &AuditConfig,
        base_dir: &Path,
        store: &DynStore,
        getenv: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<CheckpointKey, AuditError> {
        if let Some(var) = &cfg.signing_key_env {
            let pem = getenv(var).ok_or_else(|| {
                AuditError::Key(format!(
                    "audit.signing_key_env names `{var}`, which is not set"
                ))
            })?;
            return CheckpointKey::from_pem(&pem)
                .map_err(|e| AuditError::Key(format!("`{var}`: {e}")));
        }
        if let Some(file) = &cfg.signing_key_file {
            let path = base_dir.join(file);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                AuditError::Key(format!(
                    "cannot read audit.signing_key_file {}: {e}",
                    path.display()
                ))
            })?;
            return CheckpointKey::from_pem(&pem)
                .map_err(|e| AuditError::Key(format!("{}: {e}", path.display())));
        }
        let stored = store
            .get_or_create_signing_key(AUDIT_KEY_PURPOSE, &generate)
            .await?;
        let key = SigningKey::from_pkcs8_der(&stored.private_key_der).map_err(|e| {
            AuditError::Key(format!(
                "the stored key `{}` is not an Ed25519 PKCS#8 key: {e}",
                stored.kid
            ))
        })?;
        let key = CheckpointKey::new(key);
        if key.kid != stored.kid {
            return Err(AuditError::Key(format!(
                "the stored key `{}` does not match its key id (thumbprint `{}`)",
                stored.kid, key.kid
            )));
        }
        Ok(key)
    }

    /// A key from its private half.
    pub fn new(key: SigningKey) -> CheckpointKey {
        CheckpointKey {
            kid: key_id(&key.verifying_key()),
            key,
        }
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<CheckpointKey, String> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(CheckpointKey::new)
            .map_err(|e| {
                format!(
                    "not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----): {e}"
                )
            })
    }

    /// A new random key (for tests and first starts).
    pub fn generate() -> CheckpointKey {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        CheckpointKey::new(key)
    }

    /// The key id written into every checkpoint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for `audit verify --key`.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message`; the signature in base64url.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.key.sign(message);
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> String {
        self.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding an Ed25519 public key cannot fail")
    }

    /// The public key as a JWK Set (`{"keys":[{"kty":"OKP","crv":"Ed25519",…}]}`).
    pub fn public_jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.verifying_key().to_bytes()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }]})
    }

    /// The private key as PKCS#8 PEM (for tests that configure `signing_key_env`).
    #[cfg(test)]
    pub(crate) fn private_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encoding cannot fail")
            .to_string()
    }
}

/// A new random key as `(kid, PKCS#8 DER)`, for the store to keep.
fn generate() -> (String, Vec<u8>) {
    let key = CheckpointKey::generate();
    let der = key
        .key
        .to_pkcs8_der()
        .expect("encoding an Ed25519 key as PKCS#8 cannot fail");
    (key.kid, der.as_bytes().to_vec())
}

/// Reads the public keys `audit verify --key` is given: an SPKI PEM
/// (`-----BEGIN PUBLIC KEY-----`), a JWK, or a JWK Set (Ed25519 `OKP` keys; others are
/// skipped). Fails when no Ed25519 key is found.
pub fn parse_public_keys(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(text)
            .map(|k| vec![k])
            .map_err(|e| format!("not an Ed25519 public key in SPKI PEM: {e}"));
    }
    if text.starts_with("-----BEGIN") {
        return Err(
            "expected a public key (-----BEGIN PUBLIC KEY-----) or a JWK Set, not a private key or certificate"
                .into(),
        );
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("neither a PEM public key nor JSON (JWK or JWK Set): {e}"))?;
    let jwks: Vec<&serde_json::Value> = match value.get("keys").and_then(|k| k.as_array()) {
        Some(keys) => keys.iter().collect(),
        None => vec![&value],
    };
    let mut keys = Vec::new();
    for jwk in jwks {
        if jwk.get("kty").and_then(|v| v.as_str()) != Some("OKP")
            || jwk.get("crv").and_then(|v| v.as_str()) != Some("Ed25519")
        {
            continue;
        }
        let x = jwk
            .get("x")
            .and_then(|v| v.as_str())
            .ok_or("an Ed25519 JWK without `x`")?;
        let bytes = URL_SAFE_NO_PAD
            .decode(x.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(x))
            .map_err(|e| format!("the JWK's `x` is not base64url: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the JWK's `x` is not 32 bytes".to_string())?;
        keys.push(
            VerifyingKey::from_bytes(&bytes)
                .map_err(|e| format!("the JWK's `x` is not an Ed25519 point: {e}"))?,
        );
    }
    if keys.is_empty() {
        return Err("no Ed25519 key (kty OKP, crv Ed25519) in the JWK Set".into());
    }
    Ok(keys)
}

/// Checks a base64url signature over `message` with `key`.
pub(crate) fn verify_signature(key: &VerifyingKey, message: &[u8], sig: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_in_every_format() {
        let key = CheckpointKey::generate();
        let vk = key.verifying_key();
        assert_eq!(parse_public_keys(&key.public_pem()).expect("pem"), [vk]);
        let jwks = key.public_jwks();
        assert_eq!(parse_public_keys(&jwks.to_string()).expect("jwks"), [vk]);
        assert_eq!(
            parse_public_keys(&jwks["keys"][0].to_string()).expect("jwk"),
            [vk]
        );
        assert!(parse_public_keys(&key.private_pem()).is_err());
        assert!(parse_public_keys("{\"keys\":[]}").is_err());
        assert!(parse_public_keys("garbage").is_err());
        let again = CheckpointKey::from_pem(&key.private_pem()).expect("pem");
        assert_eq!(again.kid(), key.kid());
        assert!(!format!("{key:?}").contains(&key.private_pem()[30..60]));

        let sig = key.sign(b"message");
        assert!(verify_signature(&vk, b"message", &sig));
        assert!(!verify_signature(&vk, b"messagE", &sig));
        assert!(!verify_signature(
            &CheckpointKey::generate().verifying_key(),
            b"message",
            &sig
        ));
    }
}
