//! Verifying one bearer token: size and shape first, then the issuer's key, the signature,
//! the registered claims, and the claim mapping; verified tokens are cached until they expire.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation};
use moka::Expiry;
use moka::future::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::claims::map_claims;
use super::config::{JwtConfigError, JwtIssuerConfig, parse_algorithm};
use super::jwks::{IssuerKeys, KeyLookup, KeySet, Refetch, Updated, VerifyingKey};
use crate::domain::{Denial, DenyKind};
use crate::identity::unauthenticated;

/// Tokens longer than this many bytes are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The least time between two on-demand JWKS fetches for one issuer (an unknown `kid`).
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// How long a verified token may stay cached at most, whatever its `exp`.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// The identity a valid bearer token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The issuer (`iss`), exactly as configured.
    pub issuer: String,
    /// The mapped subject claim (`sub` by default).
    pub subject: String,
    /// The mapped email claim, when present and a string.
    pub email: Option<String>,
    /// The mapped groups claim (an array of strings, or one string), without duplicates.
    pub groups: Vec<String>,
    /// The mapped extra attributes for rules (attribute name → text value).
    pub attributes: BTreeMap<String, String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// `amr`: how the user authenticated (`pwd`, `mfa`, `otp`…), for `require_mfa` routes.
    pub amr: Vec<String>,
    /// `acr`: the authentication context class.
    pub acr: Option<String>,
    /// `jti`: the token's id, for audit.
    pub token_id: Option<String>,
}

/// Why a bearer token was refused. The `Display` text is safe to show the caller, except for
/// [`JwtError::IdpUnavailable`], whose detail is for logs (see [`JwtError::to_denial`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments of JSON, a `crit` header, or an unusable header.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the bearer token is too large")]
    TooLarge,
    /// The header's `alg` is not accepted (never `none` or `HS*`), or not for this issuer.
    #[error("the token's signature algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    /// The `iss` claim names no configured issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// No key of the issuer has the token's `kid` (even after refetching the JWKS).
    #[error("the token was signed with a key the issuer does not publish")]
    UnknownKey,
    /// The key named by `kid` cannot verify the header's algorithm.
    #[error("the token's algorithm does not match its signing key")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signed `iss` does not match the issuer whose key verified it.
    #[error("the token's issuer does not match")]
    WrongIssuer,
    /// No `aud` value is one of the issuer's configured audiences.
    #[error("the token is not meant for this service (audience)")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`, or the mapped `subject`) is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong type (e.g. a non-numeric `exp`).
    #[error("the token's `{0}` claim is not valid")]
    InvalidClaim(&'static str),
    /// The issuer's keys could not be fetched and none in hand fits. The detail is for logs.
    #[error("the token issuer's keys cannot be fetched: {0}")]
    IdpUnavailable(String),
}

impl JwtError {
    /// A short stable name for metrics and audit (`token_expired`, `unknown_key`…).
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed_token",
            JwtError::TooLarge => "token_too_large",
            JwtError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            JwtError::UnknownIssuer => "unknown_issuer",
            JwtError::UnknownKey => "unknown_key",
            JwtError::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "token_expired",
            JwtError::NotYetValid => "token_not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::InvalidClaim(_) => "invalid_claim",
            JwtError::IdpUnavailable(_) => "idp_unavailable",
        }
    }

    /// The refusal to give: 401 `invalid_token` (RFC 6750) with the reason, or 503 when the
    /// issuer's keys cannot be fetched (the detail stays in the logs).
    pub fn to_denial(&self) -> Denial {
        match self {
            JwtError::IdpUnavailable(_) => Denial::new(
                DenyKind::Unavailable,
                "idp_unavailable",
                "the token issuer's keys cannot be fetched right now; try again",
            ),
            other => unauthenticated("invalid_token", other.to_string()),
        }
    }
}

/// Verifies bearer tokens from the configured issuers.
pub struct JwtVerifier {
    issuers: HashMap<String, Arc<Issuer>>,
    http: reqwest::Client,
    cache: Cache<[u8; 32], Arc<VerifiedToken>>,
    refetch_interval: Duration,
    signature_checks: AtomicU64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers())
            .field("refetch_interval", &self.refetch_interval)
            .finish_non_exhaustive()
    }
}

/// One configured issuer, ready to verify.
struct Issuer {
    config: JwtIssuerConfig,
    /// One validation per accepted algorithm (jsonwebtoken checks one key family at a time).
    validations: Vec<(Algorithm, Validation)>,
    keys: IssuerKeys,
}

impl Issuer {
    fn new(config: JwtIssuerConfig, algorithms: Vec<Algorithm>, keys: IssuerKeys) -> Self {
        let validations = algorithms
            .into_iter()
            .map(|alg| {
                let mut v = Validation::new(alg);
                // Time is judged against the caller's `now` below, with this issuer's leeway.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.leeway = config.leeway_secs;
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.set_issuer(&[&config.issuer]);
                v.set_audience(&config.audiences);
                v.validate_aud = true;
                (alg, v)
            })
            .collect();
        Issuer {
            config,
            validations,
            keys,
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// Expires each cached token at its `exp` (wall clock), and after [`MAX_CACHE_TTL`] at most.
struct UntilExp;

impl Expiry<[u8; 32], Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<VerifiedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let exp = UNIX_EPOCH.checked_add(Duration::from_secs(value.expires_at.max(0) as u64));
        let left = exp.map_or(MAX_CACHE_TTL, |exp| {
            exp.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        Some(left.min(MAX_CACHE_TTL))
    }
}

impl JwtVerifier {
    /// A verifier for `issuers`. Does not contact any IdP (it may be down at start): keys are
    /// fetched on first use and refreshed by [`JwtVerifier::spawn_refresh`].
    pub fn new(issuers: Vec<JwtIssuerConfig>) -> Result<Self, JwtConfigError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(super::jwks::redirect_policy())
            .user_agent(concat!("inferguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwtConfigError::HttpClient(e.to_string()))?;
        let mut verifier = JwtVerifier {
            issuers: HashMap::new(),
            http,
            cache: Cache::builder()
                .max_capacity(100_000)
                .expire_after(UntilExp)
                .support_invalidation_closures()
                .build(),
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            signature_checks: AtomicU64::new(0),
        };
        for config in issuers {
            let algorithms = config.validate(true)?;
            let keys = IssuerKeys::remote(&config.issuer, config.jwks_url.clone());
            verifier.insert(Issuer::new(config, algorithms, keys))?;
        }
        Ok(verifier)
    }

    /// Adds an issuer whose public keys are known locally (inferguard's own EdDSA tokens): no
    /// HTTP, and a token naming any other key is refused at once.
    pub fn add_static_issuer(
        &mut self,
        cfg: JwtIssuerConfig,
        jwks: JwkSet,
    ) -> Result<(), JwtConfigError> {
        let algorithms = cfg.validate(false)?;
        let keys = KeySet::from_jwks(&cfg.issuer, &jwks);
        if keys.is_empty() {
            return Err(JwtConfigError::Invalid {
                issuer: cfg.issuer.clone(),
                reason: "the key set holds no usable signature key".into(),
            });
        }
        let keys = IssuerKeys::fixed(&cfg.issuer, keys);
        self.insert(Issuer::new(cfg, algorithms, keys))
    }

    /// Sets the least time between two on-demand JWKS fetches for one issuer (default
    /// [`DEFAULT_REFETCH_INTERVAL`]).
    pub fn with_refetch_interval(mut self, every: Duration) -> Self {
        self.refetch_interval = every;
        self
    }

    fn insert(&mut self, issuer: Issuer) -> Result<(), JwtConfigError> {
        let name = issuer.config.issuer.clone();
        if self.issuers.contains_key(&name) {
            return Err(JwtConfigError::DuplicateIssuer(name));
        }
        self.issuers.insert(name, Arc::new(issuer));
        Ok(())
    }

    /// The configured issuers, sorted.
    pub fn issuers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.issuers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// How many signatures this verifier has checked (cache hits cost none).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch). A token verified before and
    /// not yet expired is answered from the cache without a signature check.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&digest).await {
            if now < hit.expires_at {
                return Ok(hit);
            }
            self.cache.invalidate(&digest).await;
        }
        let verified = match self.verify_uncached(token, now).await {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::debug!(error = %e, code = e.code(), "bearer token refused");
                return Err(e);
            }
        };
        if now < verified.expires_at {
            self.cache.insert(digest, verified.clone()).await;
        }
        Ok(verified)
    }

    async fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedToken, JwtError> {
        let unverified = inspect(token)?;
        // The unverified `iss` only picks whose keys to try; validation checks it again.
        let issuer = self
            .issuers
            .get(&unverified.issuer)
            .ok_or(JwtError::UnknownIssuer)?;
        let alg = unverified.alg;
        let validation = issuer
            .validation(alg)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm(alg_name(alg)))?;
        let key = self
            .find_key(issuer, unverified.kid.as_deref(), alg)
            .await?;

        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| from_jsonwebtoken(&e, alg, &issuer.config.issuer))?;
        let claims = data.claims;

        let leeway = issuer.config.leeway_secs as i64;
        let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        // Belt and braces: jsonwebtoken compared `iss` as a string or a set; demand the string.
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.config.issuer.as_str()) {
            return Err(JwtError::WrongIssuer);
        }

        let mapped = map_claims(&claims, &issuer.config.claims);
        Ok(VerifiedToken {
            issuer: issuer.config.issuer.clone(),
            subject: mapped.subject.ok_or(JwtError::MissingClaim("subject"))?,
            email: mapped.email,
            groups: mapped.groups,
            attributes: mapped.attributes,
            expires_at: exp,
            amr: mapped.amr,
            acr: mapped.acr,
            token_id: mapped.token_id,
        })
    }

    /// The issuer's key for this `kid` and algorithm, refetching the JWKS (rate-limited,
    /// coalesced) when the key is not in hand.
    async fn find_key(
        &self,
        issuer: &Issuer,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, JwtError> {
        let seen = issuer.keys.attempts();
        if let Some(keys) = issuer.keys.current() {
            match keys.find(kid, alg) {
                KeyLookup::Found(k) => return Ok(k),
                KeyLookup::WrongAlgorithm => return Err(JwtError::KeyAlgorithmMismatch),
                KeyLookup::NotFound => {}
            }
        }
        if !issuer.keys.is_remote() {
            return Err(JwtError::UnknownKey);
        }
        let (outcome, updated) = issuer
            .keys
            .refetch(&self.http, self.refetch_interval, seen)
            .await;
        if let Some(updated) = updated {
            self.after_update(issuer, updated);
        }
        if let Some(keys) = issuer.keys.current() {
            match keys.find(kid, alg) {
                KeyLookup::Found(k) => return Ok(k),
                KeyLookup::WrongAlgorithm => return Err(JwtError::KeyAlgorithmMismatch),
                KeyLookup::NotFound => {}
            }
        }
        match outcome {
            Refetch::Done | Refetch::RateLimited(None) => Err(JwtError::UnknownKey),
            Refetch::Failed(e) | Refetch::RateLimited(Some(e)) => Err(JwtError::IdpUnavailable(e)),
        }
    }

    fn after_update(&self, issuer: &Issuer, updated: Updated) {
        if updated.removed_keys {
            // A key left the JWKS (rotated out or revoked): tokens it signed are checked again.
            let name = issuer.config.issuer.clone();
            tracing::info!(issuer = %name, "a JWKS key was removed; dropping the issuer's cached tokens");
            if self
                .cache
                .invalidate_entries_if(move |_, v| v.issuer == name)
                .is_err()
            {
                self.cache.invalidate_all();
            }
        }
    }

    /// Fetches every remote issuer's keys now, in parallel. A failure keeps the keys in hand.
    pub async fn refresh_all(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for issuer in self.issuers.values().filter(|i| i.keys.is_remote()) {
            let issuer = issuer.clone();
            let http = self.http.clone();
            tasks.spawn(async move {
                let (_, updated) = issuer.keys.refresh(&http).await;
                (issuer, updated)
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((issuer, Some(updated))) = done {
                self.after_update(&issuer, updated);
            }
        }
    }

    /// Refreshes every remote issuer's keys now and then every `every` (at least 100 ms),
    /// until the verifier is dropped.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(verifier) = weak.upgrade() else {
                    break;
                };
                verifier.refresh_all().await;
            }
        })
    }

    #[cfg(test)]
    pub(crate) async fn cached_tokens(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

/// What the token says about itself before any verification.
struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    issuer: String,
}

/// Checks the shape and reads `alg`, `kid` and `iss` without trusting them.
fn inspect(token: &str) -> Result<Unverified, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = decode_segment(header)?;
    // Extensions the sender marks critical must be understood; inferguard understands none.
    if header.contains_key("crit") {
        return Err(JwtError::Malformed);
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => {
            parse_algorithm(name).ok_or_else(|| JwtError::UnsupportedAlgorithm(printable(name)))?
        }
        _ => return Err(JwtError::Malformed),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    if signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    let claims = decode_segment(payload)?;
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        None => return Err(JwtError::MissingClaim("iss")),
        Some(_) => return Err(JwtError::InvalidClaim("iss")),
    };
    Ok(Unverified { alg, kid, issuer })
}

fn decode_segment(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A caller-supplied name made safe to echo: printable ASCII, at most 32 characters.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// A NumericDate claim as whole seconds; fractions are dropped.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(JwtError::InvalidClaim(name)),
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

fn from_jsonwebtoken(e: &jsonwebtoken::errors::Error, alg: Algorithm, issuer: &str) -> JwtError {
    match e.kind() {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => {
            tracing::warn!(%issuer, error = %e, "a JWKS key cannot verify signatures");
            JwtError::BadSignature
        }
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            _ => "required claim",
        }),
        ErrorKind::InvalidClaimFormat(_) => JwtError::Malformed,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => JwtError::UnsupportedAlgorithm(alg_name(alg)),
        _ => JwtError::Malformed,
    }
}
