//! Local users: inferguard as its own token issuer.
//!
//! Users created with `inferguard users create … --password-stdin` (Argon2id hashes in the
//! store) log in at `POST /auth/token` (OAuth2 password grant) and get a short-lived EdDSA JWT
//! signed with inferguard's own key, plus an opaque refresh token that rotates on every use.
//! The public key is published at `GET /auth/jwks.json`, so inferguard verifies its own tokens
//! like any other issuer's, and other services can too.
//!
//! The same key signs the *identity assertion* sent to upstreams that ask for one: a JWT of
//! at most 60 s for the audience `inferguard-upstream` naming the principal of one request.
//!
//! * [`LocalUsersConfig`] — `identity.local_users` in `inferguard.yaml`.
//! * [`LocalIssuer`] — the signing key (from `signing_key_file`, or generated once and kept in
//!   the store), the JWKS, access tokens and assertions.
//! * [`TokenEndpoint`] — the password and refresh-token grants, with failed-login rate limits.
//!
//! Nothing here logs a password, a token or a hash.

mod config;
mod endpoint;
mod issuer;
mod keys;
mod limiter;

#[cfg(test)]
mod tests;

pub use config::LocalUsersConfig;
pub use endpoint::{TokenEndpoint, TokenResponse};
pub use issuer::{ASSERTION_AUDIENCE, ASSERTION_TTL_SECS, LocalIssuer, SIGNING_KEY_PURPOSE};
pub use limiter::{
    ADDRESS_FAILURE_LIMIT, Attempt, FAILURE_WINDOW_SECS, LoginLimiter, USERNAME_FAILURE_LIMIT,
};

use std::path::PathBuf;

use crate::store::StoreError;

/// Why local login could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// `identity.local_users` holds a value that cannot work.
    #[error("identity.local_users: {0}")]
    InvalidConfig(String),
    /// `identity.local_users.signing_key_file` cannot be read or is not an Ed25519 key.
    #[error("identity.local_users.signing_key_file {}: {reason}", path.display())]
    KeyFile {
        /// The file, resolved against the config's directory.
        path: PathBuf,
        /// What is wrong (never the key itself).
        reason: String,
    },
    /// The signing key kept in the store is not a usable Ed25519 PKCS#8 key.
    #[error("the stored signing key `{kid}` is unusable: {reason}")]
    StoredKey {
        /// The stored key's id.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
