//! [`LocalIssuer`]: inferguard's signing key, its JWKS, access tokens and identity assertions.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;
use serde::Serialize;

use super::keys::{self, KeyMaterial};
use super::{LocalError, LocalUsersConfig};
use crate::domain::Principal;
use crate::store::DynStore;

/// The store purpose of the key that signs access tokens and assertions.
pub const SIGNING_KEY_PURPOSE: &str = "local_jwt";
/// The `aud` of the identity assertion sent to upstreams.
pub const ASSERTION_AUDIENCE: &str = "inferguard-upstream";
/// The lifetime of an identity assertion, in seconds.
pub const ASSERTION_TTL_SECS: i64 = 60;

/// inferguard as a token issuer: its Ed25519 key and what it signs.
pub struct LocalIssuer {
    issuer: String,
    audiences: Vec<String>,
    token_ttl: Duration,
    key: KeyMaterial,
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("token_ttl", &self.token_ttl)
            .field("kid", &self.key.kid)
            .finish_non_exhaustive()
    }
}

/// A freshly minted access token.
pub(crate) struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a [String],
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    /// How the user authenticated (RFC 8176): a password.
    amr: [&'static str; 1],
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    aud: &'static str,
    sub: &'a str,
    /// `user` or `service_account`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    role: &'a str,
    groups: &'a [String],
    /// `api_key`, `jwt` or `session` (as `x-inferguard-auth`).
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    request_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
}

impl LocalIssuer {
    /// Loads the signing key: from `cfg.signing_key_file` (resolved against `base_dir`) when
    /// set, else the one kept in the store, generated and stored first when there is none
    /// (safe when several processes start at once).
    pub async fn load(
        cfg: &LocalUsersConfig,
        store: DynStore,
        base_dir: &Path,
    ) -> Result<LocalIssuer, LocalError> {
        cfg.validate()?;
        let key = match &cfg.signing_key_file {
            Some(file) => {
                let path = base_dir.join(file);
                let key_file_error = |reason: String| LocalError::KeyFile {
                    path: path.clone(),
                    reason,
                };
                let pem = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| key_file_error(e.to_string()))?;
                let key = keys::from_pem(&pem).map_err(key_file_error)?;
                KeyMaterial::new(&key).map_err(key_file_error)?
            }
            None => {
                let stored = store
                    .get_or_create_signing_key(SIGNING_KEY_PURPOSE, &keys::generate)
                    .await?;
                let unusable = |reason: String| LocalError::StoredKey {
                    kid: stored.kid.clone(),
                    reason,
                };
                let key = keys::from_der(&stored.private_key_der).map_err(unusable)?;
                let material = KeyMaterial::new(&key).map_err(unusable)?;
                if material.kid != stored.kid {
                    return Err(unusable(format!(
                        "its key id does not match its key (thumbprint `{}`)",
                        material.kid
                    )));
                }
                material
            }
        };
        tracing::info!(kid = %key.kid, issuer = %cfg.issuer, "local token issuer ready");
        let issuer = LocalIssuer {
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            token_ttl: cfg.token_ttl,
            key,
        };
        // Sign once now, so that signing can be relied on later.
        jsonwebtoken::encode(
            &issuer.header(),
            &serde_json::json!({}),
            &issuer.key.encoding,
        )
        .map_err(|e| LocalError::StoredKey {
            kid: issuer.key.kid.clone(),
            reason: format!("cannot sign with it: {e}"),
        })?;
        Ok(issuer)
    }

    /// The key id in every token header and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// The public key set served at `/auth/jwks.json` (never the private key).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.key.jwk.clone()],
        }
    }

    /// `(issuer, audiences)` of the access tokens, for registering this issuer with the
    /// JWT verifier.
    pub fn issuer_config(&self) -> (String, Vec<String>) {
        (self.issuer.clone(), self.audiences.clone())
    }

    /// The lifetime of access tokens.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid.clone());
        header.typ = Some("JWT".into());
        header
    }

    fn sign(&self, claims: &impl Serialize) -> String {
        // The key was parsed and used once in `load`; Ed25519 signing of serialisable claims
        // cannot fail after that.
        jsonwebtoken::encode(&self.header(), claims, &self.key.encoding)
            .expect("signing with the key checked at load")
    }

    /// An access token for a local user, valid from `now` for the configured lifetime. The
    /// role is deliberately absent: it is resolved from the store and policy at each check.
    pub(crate) fn access_token(
        &self,
        username: &str,
        email: Option<&str>,
        now: i64,
    ) -> AccessToken {
        let jti = random_id();
        let token = self.sign(&AccessClaims {
            iss: &self.issuer,
            aud: &self.audiences,
            sub: username,
            email,
            amr: ["pwd"],
            iat: now,
            nbf: now,
            exp: now + self.token_ttl.as_secs() as i64,
            jti: &jti,
        });
        AccessToken { token, jti }
    }

    /// The signed identity assertion for an upstream: who `principal` is, for request
    /// `request_id`, valid for [`ASSERTION_TTL_SECS`] from `now`, audience
    /// [`ASSERTION_AUDIENCE`]. Claims: `sub`, `kind`, `email`, `role`, `groups`, `auth`,
    /// `key_id`, `request_id`, `iss`, `iat`, `nbf`, `exp`, `jti`.
    pub fn assertion(&self, principal: &Principal, request_id: &str, now: i64) -> String {
        let jti = random_id();
        self.sign(&AssertionClaims {
            iss: &self.issuer,
            aud: ASSERTION_AUDIENCE,
            sub: &principal.subject,
            kind: principal.kind.as_str(),
            email: principal.email.as_deref(),
            role: &principal.role,
            groups: &principal.groups,
            auth: principal.auth.as_str(),
            key_id: principal.key_id.as_deref(),
            request_id,
            iat: now,
            nbf: now,
            exp: now + ASSERTION_TTL_SECS,
            jti: &jti,
        })
    }
}

/// 128 random bits as 32 hex digits.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
