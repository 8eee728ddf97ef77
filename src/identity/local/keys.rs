//! inferguard's Ed25519 signing key: generation, parsing, key id and public JWK.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A parsed signing key with what is derived from it.
pub(crate) struct KeyMaterial {
    /// The key id: the key's RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub kid: String,
    /// The private key for `jsonwebtoken`.
    pub encoding: EncodingKey,
    /// The public key as published.
    pub jwk: Jwk,
}

impl KeyMaterial {
    /// Derives the key id, encoding key and public JWK of `key`.
    pub fn new(key: &SigningKey) -> Result<KeyMaterial, String> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the key as PKCS#8: {e}"))?;
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        let kid = thumbprint(&x);
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            }),
        };
        Ok(KeyMaterial {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk,
        })
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key given as its base64url `x`.
fn thumbprint(x: &str) -> String {
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A new random key as `(kid, PKCS#8 DER)`, for the store to keep.
pub(crate) fn generate() -> (String, Vec<u8>) {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let der = key
        .to_pkcs8_der()
        .expect("encoding an Ed25519 key as PKCS#8 cannot fail");
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    (thumbprint(&x), der.as_bytes().to_vec())
}

/// Parses a PKCS#8 DER Ed25519 private key.
pub(crate) fn from_der(der: &[u8]) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_der(der).map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))
}

/// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 private key.
pub(crate) fn from_pem(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
        format!("not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----): {e}")
    })
}
