//! `identity.local_users` in `inferguard.yaml`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::LocalError;
use super::issuer::ASSERTION_AUDIENCE;

/// The shortest access-token lifetime accepted.
const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The longest access-token lifetime accepted: these tokens cannot be revoked one by one.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest refresh-token (login) lifetime accepted.
const MAX_REFRESH_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Local-user login and inferguard's own token issuer.
///
/// ```yaml
/// identity:
///   local_users:
///     enabled: true                  # serve POST /auth/token (default false)
///     token_ttl: 30m                 # access-token lifetime
///     refresh_ttl: 30d               # how long one login can be refreshed
///     issuer: inferguard             # `iss` of the tokens
///     audiences: [inferguard]        # `aud` of the tokens
///     signing_key_file: key.pem      # optional Ed25519 PKCS#8 PEM; absent = generated once
///                                    # and kept in the store
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalUsersConfig {
    /// Whether `POST /auth/token` is served. The signing key and `/auth/jwks.json` exist
    /// either way (they also sign the upstream identity assertion).
    pub enabled: bool,
    /// Lifetime of an access token (`30m`, `1h`; between 1 minute and 24 hours).
    #[serde(deserialize_with = "human_duration")]
    pub token_ttl: Duration,
    /// Lifetime of a login's refresh tokens, counted from the password login; rotation does
    /// not extend it (`30d`; at least `token_ttl`, at most 365 days).
    #[serde(deserialize_with = "human_duration")]
    pub refresh_ttl: Duration,
    /// The `iss` of inferguard's tokens.
    pub issuer: String,
    /// The `aud` of inferguard's access tokens; never `inferguard-upstream`, which is
    /// reserved for identity assertions.
    pub audiences: Vec<String>,
    /// An Ed25519 private key (PKCS#8 PEM), relative to the config file's directory. Absent,
    /// a key is generated at first start and kept in the store.
    pub signing_key_file: Option<PathBuf>,
}

impl Default for LocalUsersConfig {
    fn default() -> Self {
        LocalUsersConfig {
            enabled: false,
            token_ttl: Duration::from_secs(30 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            issuer: "inferguard".into(),
            audiences: vec!["inferguard".into()],
            signing_key_file: None,
        }
    }
}

/// Parses `"30m"`, `"1h 30m"`, `"30d"` with `humantime`.
fn human_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. 30m, 1h or 30d"
        ))
    })
}

impl LocalUsersConfig {
    /// Checks values serde cannot: lifetimes in range, a usable issuer, and audiences that
    /// cannot be confused with the identity assertion's.
    pub fn validate(&self) -> Result<(), LocalError> {
        let bad = |m: String| Err(LocalError::InvalidConfig(m));
        if self.token_ttl < MIN_TOKEN_TTL || self.token_ttl > MAX_TOKEN_TTL {
            return bad(format!(
                "token_ttl must be between 1m and 24h, not {}",
                humantime::format_duration(self.token_ttl)
            ));
        }
        if self.refresh_ttl < self.token_ttl || self.refresh_ttl > MAX_REFRESH_TTL {
            return bad(format!(
                "refresh_ttl must be at least token_ttl and at most 365d, not {}",
                humantime::format_duration(self.refresh_ttl)
            ));
        }
        if self.issuer.is_empty() || self.issuer.trim() != self.issuer {
            return bad("issuer must be a non-empty value without surrounding spaces".into());
        }
        if self.audiences.is_empty() {
            return bad("audiences must name at least one audience".into());
        }
        for aud in &self.audiences {
            if aud.is_empty() || aud.trim() != aud {
                return bad(format!(
                    "audience `{aud}` is empty or has surrounding spaces"
                ));
            }
            if aud == ASSERTION_AUDIENCE {
                return bad(format!(
                    "audience `{ASSERTION_AUDIENCE}` is reserved for the upstream identity assertion"
                ));
            }
        }
        Ok(())
    }
}
