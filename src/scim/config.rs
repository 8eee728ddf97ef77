//! `scim:` in inferguard.yaml.

use serde::Deserialize;

/// `scim: {enabled: true, token_env: INFERGUARD_SCIM_TOKEN}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Serve `/scim/v2` on the http listener.
    #[serde(default)]
    pub enabled: bool,
    /// The environment variable holding the bearer token the IdP sends.
    #[serde(default = "default_token_env")]
    pub token_env: String,
}

fn default_token_env() -> String {
    "INFERGUARD_SCIM_TOKEN".into()
}

/// Why SCIM cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ScimConfigError {
    #[error("scim.token_env: environment variable `{0}` is not set or empty")]
    Missing(String),
    #[error(
        "scim.token_env: the token in `{0}` is shorter than {min} characters; use a random one (e.g. `openssl rand -base64 32`)",
        min = super::MIN_TOKEN_LEN
    )]
    TooShort(String),
}

impl ScimConfig {
    /// The token from the environment (never logged).
    pub fn token(&self) -> Result<String, ScimConfigError> {
        let token = std::env::var(&self.token_env)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ScimConfigError::Missing(self.token_env.clone()))?;
        if token.len() < super::MIN_TOKEN_LEN {
            return Err(ScimConfigError::TooShort(self.token_env.clone()));
        }
        Ok(token)
    }
}
