//! One trusted JWT issuer as written under `identity.jwt` in `inferguard.yaml`, and its checks.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde::Deserialize;

/// The signature algorithms inferguard accepts, by their JOSE names. HMAC (`HS*`) and `none`
/// are never accepted, whatever the configuration says.
pub const SUPPORTED_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// The largest clock-skew allowance an issuer may configure, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// The clock-skew allowance when an issuer does not set `leeway_secs`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// One issuer whose bearer tokens are accepted.
///
/// ```yaml
/// identity:
///   jwt:
///     - issuer: https://idp.example.com/realms/corp
///       audiences: [inferguard]
///       algorithms: [RS256, ES256]        # optional; default RS256, PS256, ES256, EdDSA
///       leeway_secs: 30                   # optional; at most 300
///       claims:                           # optional; these are the defaults
///         subject: sub
///         email: email
///         groups: groups
///         attributes: {department: department, clearance_level: ext.clearance}
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// The exact `iss` value the issuer puts in its tokens (and in its discovery document).
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one. Never empty.
    pub audiences: Vec<String>,
    /// The JWKS address. When set, OIDC discovery is skipped.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted algorithms, a subset of [`SUPPORTED_ALGORITHMS`]; `None` means all four.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds (default 30, at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Which claims carry the subject, email, groups and rule attributes.
    #[serde(default)]
    pub claims: ClaimMapping,
}

impl JwtIssuerConfig {
    /// A configuration with the defaults for everything but the issuer and audiences.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        JwtIssuerConfig {
            issuer: issuer.into(),
            audiences,
            jwks_url: None,
            algorithms: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            claims: ClaimMapping::default(),
        }
    }

    /// Checks the configuration and returns the accepted algorithms. `remote` is true when the
    /// keys will be fetched over HTTP (so the issuer or `jwks_url` must be an http(s) address).
    pub(crate) fn validate(&self, remote: bool) -> Result<Vec<Algorithm>, JwtConfigError> {
        let bad = |reason: String| JwtConfigError::Invalid {
            issuer: self.issuer.clone(),
            reason,
        };
        if self.issuer.trim().is_empty() || self.issuer.trim() != self.issuer {
            return Err(bad(
                "`issuer` must be a non-empty value without surrounding spaces".into(),
            ));
        }
        if self.audiences.is_empty() {
            return Err(bad(
                "`audiences` must name at least one audience: without it any token the issuer \
                 mints for any application would be accepted"
                    .into(),
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(bad("`audiences` has an empty entry".into()));
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(bad(format!(
                "`leeway_secs` is {}; at most {MAX_LEEWAY_SECS} is allowed",
                self.leeway_secs
            )));
        }
        let algorithms = match &self.algorithms {
            None => SUPPORTED_ALGORITHMS
                .iter()
                .map(|a| parse_algorithm(a).expect("supported"))
                .collect(),
            Some(names) if names.is_empty() => {
                return Err(bad(
                    "`algorithms` is empty; leave it out to accept all supported algorithms".into(),
                ));
            }
            Some(names) => {
                let mut algs = Vec::new();
                for name in names {
                    let alg = parse_algorithm(name).ok_or_else(|| {
                        bad(format!(
                            "algorithm `{name}` is not supported; use {}",
                            SUPPORTED_ALGORITHMS.join(", ")
                        ))
                    })?;
                    if !algs.contains(&alg) {
                        algs.push(alg);
                    }
                }
                algs
            }
        };
        if remote {
            match &self.jwks_url {
                Some(url) => check_http_url(url).map_err(|r| bad(format!("`jwks_url`: {r}")))?,
                None => check_http_url(&self.issuer).map_err(|r| {
                    bad(format!(
                        "`issuer` {r} (OIDC discovery needs it; or set `jwks_url`)"
                    ))
                })?,
            }
        }
        self.claims.validate().map_err(bad)?;
        Ok(algorithms)
    }
}

/// Parses one of the [`SUPPORTED_ALGORITHMS`]; anything else (`HS256`, `none`, `RS384`…) is
/// `None`.
pub(crate) fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

fn check_http_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if !loopback {
                tracing::warn!(url = %text, "JWT keys will be fetched over plain http; use https outside a trusted network");
            }
            Ok(())
        }
        other => Err(format!(
            "`{text}` has scheme `{other}`; only http and https are supported"
        )),
    }
}

/// Where the identity fields are found in a token's claims. Each value is a claim name; a name
/// with dots (`ext.department`) that is not itself a top-level claim is followed as a path
/// into nested objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// The claim holding the stable subject (default `sub`). Required in every token.
    pub subject: String,
    /// The claim holding the email address (default `email`).
    pub email: String,
    /// The claim holding the groups, as an array of strings or one string (default `groups`).
    pub groups: String,
    /// Attribute name (as rules see it) → claim name, e.g. `department: department`.
    pub attributes: BTreeMap<String, String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            email: "email".into(),
            groups: "groups".into(),
            attributes: BTreeMap::new(),
        }
    }
}

impl ClaimMapping {
    fn validate(&self) -> Result<(), String> {
        for (what, name) in [
            ("subject", &self.subject),
            ("email", &self.email),
            ("groups", &self.groups),
        ] {
            if name.trim().is_empty() {
                return Err(format!("`claims.{what}` is empty"));
            }
        }
        for (attr, claim) in &self.attributes {
            if attr.trim().is_empty() || claim.trim().is_empty() {
                return Err(format!(
                    "`claims.attributes` has an empty name or claim (`{attr}`: `{claim}`)"
                ));
            }
        }
        Ok(())
    }
}

/// A JWT issuer configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// One issuer's settings are wrong.
    #[error("JWT issuer `{issuer}`: {reason}")]
    Invalid {
        /// The issuer as configured.
        issuer: String,
        /// What is wrong, in words for the operator.
        reason: String,
    },
    /// The same issuer is configured twice.
    #[error("JWT issuer `{0}` is configured more than once")]
    DuplicateIssuer(String),
    /// The HTTP client for discovery and JWKS could not be built.
    #[error("cannot build the HTTP client for JWKS: {0}")]
    HttpClient(String),
}
