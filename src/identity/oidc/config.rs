//! `identity.oidc` in `inferguard.yaml`: the relying party, its sessions and step-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openidconnect::url::Url;
use serde::Deserialize;

/// Browser single sign-on with an OpenID Provider (authorization-code flow with PKCE).
///
/// ```yaml
/// identity:
///   oidc:
///     issuer: https://idp.example.com            # discovery: <issuer>/.well-known/openid-configuration
///     client_id: inferguard
///     client_secret_env: OIDC_CLIENT_SECRET      # or client_secret_file; neither = public client
///     scopes: [openid, email, profile, groups]   # `openid` is always sent
///     # redirect_url: https://gen.example.com/auth/callback   # default: from the login request
///     # post_logout_redirect_url: https://gen.example.com/    # default: <origin>/
///     allowed_redirect_origins: [https://portal.example.com]  # absolute `rd` targets allowed
///     mfa_acr_values: [phr]                      # `acr` values that count as MFA (step-up asks for them)
///     claims: {email: email, groups: groups, attributes: {department: department}}
///     groups_max_age: 15m                        # refresh group claims with the refresh token
///     login_timeout: 10m                         # how long a login may take at the IdP
///     session: {idle_timeout: 1h, absolute_timeout: 10h}
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer, exactly as in its discovery document and ID tokens.
    pub issuer: String,
    /// inferguard's client id at the IdP (the `aud` of its ID tokens).
    pub client_id: String,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File holding the client secret (relative to the config file).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for; `openid` is added when missing.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The redirect URI registered at the IdP; default `<scheme>://<host>/auth/callback` of
    /// the login request (Envoy's `x-forwarded-proto` and `:authority`).
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Where the IdP sends the browser after logout; default `<origin>/`.
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
    /// Origins (`https://host[:port]`) an absolute `rd` may point to; relative paths are
    /// always allowed.
    #[serde(default)]
    pub allowed_redirect_origins: Vec<String>,
    /// `acr` values that count as multi-factor authentication; sent as `acr_values` when a
    /// `require_mfa` route sends the browser back to the IdP.
    #[serde(default)]
    pub mfa_acr_values: Vec<String>,
    /// Which claims (of the ID token, then the userinfo response) carry the email, groups
    /// and rule attributes. The subject is always `sub`.
    #[serde(default)]
    pub claims: OidcClaimMapping,
    /// Group claims older than this are refreshed with the refresh token (default 15m).
    #[serde(
        default = "default_groups_max_age",
        deserialize_with = "human_duration"
    )]
    pub groups_max_age: Duration,
    /// How long a login may take between `/auth/login` and `/auth/callback` (default 10m).
    #[serde(default = "default_login_timeout", deserialize_with = "human_duration")]
    pub login_timeout: Duration,
    /// Session timeouts.
    #[serde(default)]
    pub session: SessionTimeouts,
}

/// Idle (sliding) and absolute session timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionTimeouts {
    /// A session unused this long ends (default 1h).
    #[serde(deserialize_with = "human_duration")]
    pub idle_timeout: Duration,
    /// A session ends this long after the login, however active (default 10h).
    #[serde(deserialize_with = "human_duration")]
    pub absolute_timeout: Duration,
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        SessionTimeouts {
            idle_timeout: Duration::from_secs(3600),
            absolute_timeout: Duration::from_secs(10 * 3600),
        }
    }
}

/// Claim names for the identity fields of a session. A name with dots (`ext.department`)
/// that is not itself a claim is followed as a path into nested objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcClaimMapping {
    /// The email claim (default `email`).
    pub email: String,
    /// The groups claim: an array of strings or one string (default `groups`).
    pub groups: String,
    /// Attribute name (as rules see it) → claim name.
    pub attributes: BTreeMap<String, String>,
}

impl Default for OidcClaimMapping {
    fn default() -> Self {
        OidcClaimMapping {
            email: "email".into(),
            groups: "groups".into(),
            attributes: BTreeMap::new(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_groups_max_age() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_login_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

/// Parses `"15m"`, `"10h"` with `humantime`.
fn human_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. 30s, 15m or 10h"
        ))
    })
}

/// An `identity.oidc` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity.oidc.{key}: {reason}")]
pub struct OidcConfigError {
    /// The key at fault, below `identity.oidc`.
    pub key: &'static str,
    /// What is wrong, for the operator.
    pub reason: String,
}

fn bad(key: &'static str, reason: impl Into<String>) -> OidcConfigError {
    OidcConfigError {
        key,
        reason: reason.into(),
    }
}

/// An absolute http(s) URL without user info or fragment.
fn http_url(key: &'static str, text: &str) -> Result<Url, OidcConfigError> {
    let url = Url::parse(text).map_err(|e| bad(key, format!("`{text}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(key, format!("`{text}` is not an http(s) URL")));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(bad(
            key,
            format!("`{text}` must not carry user info or a fragment"),
        ));
    }
    Ok(url)
}

/// The serialized origin (`scheme://host[:port]`) of an http(s) URL.
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl OidcConfig {
    /// Checks what serde cannot; returns the normalised configuration (`openid` scope added,
    /// origins serialised).
    pub fn validated(mut self) -> Result<OidcConfig, OidcConfigError> {
        if self.issuer.trim() != self.issuer || self.issuer.is_empty() {
            return Err(bad("issuer", "must be a non-empty URL without spaces"));
        }
        http_url("issuer", &self.issuer)?;
        if self.client_id.trim().is_empty() {
            return Err(bad("client_id", "must not be empty"));
        }
        if self.client_secret_env.is_some() && self.client_secret_file.is_some() {
            return Err(bad(
                "client_secret_env",
                "client_secret_env and client_secret_file are both set; keep one",
            ));
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(bad("scopes", "a scope is empty or contains a space"));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            self.scopes.insert(0, "openid".into());
        }
        if let Some(url) = &self.redirect_url {
            let u = http_url("redirect_url", url)?;
            if u.query().is_some() {
                return Err(bad("redirect_url", "must not have a query string"));
            }
        }
        if let Some(url) = &self.post_logout_redirect_url {
            http_url("post_logout_redirect_url", url)?;
        }
        let mut origins = Vec::with_capacity(self.allowed_redirect_origins.len());
        for text in &self.allowed_redirect_origins {
            let url = http_url("allowed_redirect_origins", text)?;
            if url.path() != "/" || url.query().is_some() {
                return Err(bad(
                    "allowed_redirect_origins",
                    format!("`{text}` is not an origin; write scheme://host[:port] only"),
                ));
            }
            origins.push(origin_of(&url));
        }
        self.allowed_redirect_origins = origins;
        if self.mfa_acr_values.iter().any(|v| v.trim().is_empty()) {
            return Err(bad("mfa_acr_values", "has an empty value"));
        }
        for (what, name) in [
            ("claims", &self.claims.email),
            ("claims", &self.claims.groups),
        ] {
            if name.trim().is_empty() {
                return Err(bad(what, "a claim name is empty"));
            }
        }
        if self
            .claims
            .attributes
            .iter()
            .any(|(a, c)| a.trim().is_empty() || c.trim().is_empty())
        {
            return Err(bad("claims", "`attributes` has an empty name or claim"));
        }
        let secs = |d: Duration| d.as_secs();
        if secs(self.session.idle_timeout) < 1 || secs(self.session.absolute_timeout) < 1 {
            return Err(bad("session", "timeouts must be at least 1s"));
        }
        if self.session.absolute_timeout > Duration::from_secs(366 * 86_400) {
            return Err(bad("session", "absolute_timeout must be at most a year"));
        }
        if secs(self.groups_max_age) < 1 {
            return Err(bad("groups_max_age", "must be at least 1s"));
        }
        if secs(self.login_timeout) < 10 || secs(self.login_timeout) > 3600 {
            return Err(bad("login_timeout", "must be between 10s and 1h"));
        }
        Ok(self)
    }

    /// The client secret from the environment or file; `None` for a public client.
    pub fn client_secret(&self, base_dir: &Path) -> Result<Option<String>, OidcConfigError> {
        if let Some(var) = &self.client_secret_env {
            return std::env::var(var).map(Some).map_err(|_| {
                bad(
                    "client_secret_env",
                    format!("names `{var}`, which is not set"),
                )
            });
        }
        if let Some(file) = &self.client_secret_file {
            let path = base_dir.join(file);
            return std::fs::read_to_string(&path)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| {
                    bad(
                        "client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OidcConfig, String> {
        let cfg: OidcConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validated().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_normalisation() {
        let cfg = parse(
            "{issuer: 'https://idp.example.com', client_id: ig, scopes: [email], \
             allowed_redirect_origins: ['https://Portal.example.com:443/']}",
        )
        .expect("valid");
        assert_eq!(cfg.scopes, vec!["openid", "email"]);
        assert_eq!(
            cfg.allowed_redirect_origins,
            vec!["https://portal.example.com"]
        );
        assert_eq!(cfg.session.idle_timeout, Duration::from_secs(3600));
        assert_eq!(cfg.session.absolute_timeout, Duration::from_secs(36_000));
        assert_eq!(cfg.groups_max_age, Duration::from_secs(900));
        assert_eq!(cfg.claims.groups, "groups");

        let cfg = parse(
            "{issuer: 'http://127.0.0.1:4444', client_id: ig, \
             session: {idle_timeout: 2s, absolute_timeout: 5s}, groups_max_age: 3s}",
        )
        .expect("valid");
        assert_eq!(cfg.session.idle_timeout, Duration::from_secs(2));
        assert_eq!(cfg.groups_max_age, Duration::from_secs(3));
    }

    #[test]
    fn refusals() {
        for (yaml, needle) in [
            ("{issuer: 'ftp://x', client_id: a}", "issuer"),
            ("{issuer: 'https://x', client_id: ''}", "client_id"),
            (
                "{issuer: 'https://x', client_id: a, client_secret_env: A, client_secret_file: f}",
                "both set",
            ),
            (
                "{issuer: 'https://x', client_id: a, allowed_redirect_origins: ['https://a/b']}",
                "not an origin",
            ),
            (
                "{issuer: 'https://x', client_id: a, redirect_url: '/auth/callback'}",
                "redirect_url",
            ),
            (
                "{issuer: 'https://x', client_id: a, session: {idle_timeout: 0s}}",
                "at least 1s",
            ),
            (
                "{issuer: 'https://x', client_id: a, session: {idle_timeout: soon}}",
                "not a duration",
            ),
            (
                "{issuer: 'https://x', client_id: a, cookie: x}",
                "unknown field",
            ),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
