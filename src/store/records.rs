use std::collections::BTreeMap;

use crate::domain::PrincipalKind;

/// A user as stored. Users authenticated by an IdP get a record when an admin binds a role.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    pub email: Option<String>,
    /// The explicit role binding, if any (wins over IdP groups).
    pub role: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub disabled: bool,
    /// Argon2id PHC string for local login (issue 3); `None` for IdP-only users.
    pub password_hash: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A machine identity that owns API keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountRecord {
    pub name: String,
    pub role: String,
    pub attributes: BTreeMap<String, String>,
    pub daily_images: Option<i64>,
    pub daily_tokens: Option<i64>,
    pub disabled: bool,
    pub created_at: i64,
}

/// Who owns a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: PrincipalKind,
    pub name: String,
}

/// An API key as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// The public key id (the middle part of `fk_<id>_<secret>`).
    pub id: String,
    /// A human label.
    pub name: String,
    pub owner: OwnerRef,
    /// Lower-case hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Permission names the key is narrowed to; `None` = the owner's role permissions.
    pub scopes: Option<Vec<String>>,
    pub daily_images: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// CIDR strings (validated at creation) the key may be used from; `None` = anywhere.
    pub allowed_networks: Option<Vec<String>>,
    /// Unix seconds of the last recorded use (written in batches, so up to a few seconds
    /// behind); `None` = never used.
    pub last_used_at: Option<i64>,
}

/// One entry of the change feed: which entity changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    /// `key`, `user`, `service_account`, `refresh_token`, `signing_key`.
    pub entity: String,
    /// The entity's id (key id, username, service account name, refresh-token family id,
    /// signing key id).
    pub id: String,
}

/// One of inferguard's own signing keys, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id published in the JWKS and put in token headers.
    pub kid: String,
    /// What the key signs, e.g. `local_jwt`; at most one active key per purpose.
    pub purpose: String,
    /// The private key, PKCS#8 DER.
    pub private_key_der: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("purpose", &self.purpose)
            .field("private_key_der", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A refresh token as stored: never the token, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Lower-case hex SHA-256 of the whole token.
    pub token_sha256: String,
    /// The login this token descends from; every rotation stays in the family.
    pub family_id: String,
    /// The local user the token logs in.
    pub username: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the end of the family's login (rotation does not extend it).
    pub expires_at: i64,
    /// When the token was exchanged (it is then spent).
    pub used_at: Option<i64>,
    /// When the token's family was revoked.
    pub revoked_at: Option<i64>,
}
