//! `POST /auth/token`: the OAuth2 password and refresh-token grants for local users.
//!
//! * `grant_type=password&username=U&password=P` checks the Argon2id hash kept in the store
//!   and answers an access token and a refresh token.
//! * `grant_type=refresh_token&refresh_token=R` spends R and answers a new pair. R is opaque
//!   (`igr_` + 256 random bits), only its SHA-256 is stored, it works once, and presenting an
//!   already spent R again revokes every token of its login (its family): a stolen and a
//!   legitimate copy cannot both keep going.
//!
//! Wrong password, unknown username, disabled user and a user without a local password all
//! get the same 400 `invalid_grant` body, after the same Argon2 work (an unknown user's
//! password is checked against a dummy hash). Failures are limited per username and per client
//! address ([`LoginLimiter`]); a limited attempt gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::issuer::random_id;
use super::limiter::Attempt;
use super::{LocalError, LocalIssuer, LocalUsersConfig, LoginLimiter};
use crate::store::{DynStore, RefreshTokenRecord, StoreError, UserRecord};

/// The prefix of inferguard's refresh tokens (lets secret scanners recognise them).
const REFRESH_PREFIX: &str = "igr_";
/// Passwords longer than this are refused without hashing them.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Refresh tokens longer than this are refused without a lookup.
const MAX_REFRESH_TOKEN_BYTES: usize = 256;
/// The longest username (as `users create` accepts).
const MAX_USERNAME_CHARS: usize = 128;
/// `Retry-After` when the store cannot be reached.
const UNAVAILABLE_RETRY_SECS: u64 = 5;
/// The one description of every refused password login, whatever the reason.
const INVALID_LOGIN: &str = "the username or password is wrong, or the account cannot log in";
/// The one description of every refused refresh token.
const INVALID_REFRESH: &str = "the refresh token is invalid, expired, spent or revoked";

/// The answer of the token endpoint, ready for any HTTP server: status, headers and a JSON
/// body. `Debug` never shows the body (it may hold tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The HTTP status: 200, 400, 429 or 503.
    pub status: u16,
    /// Headers besides `content-type: application/json` (always `cache-control: no-store`;
    /// `retry-after` with 429 and 503).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body: `{"access_token", "token_type", "expires_in", "refresh_token"}` on
    /// success, `{"error", "error_description"}` otherwise.
    pub body: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl TokenResponse {
    fn json(status: u16, body: serde_json::Value) -> TokenResponse {
        TokenResponse {
            status,
            headers: vec![
                ("cache-control", "no-store".into()),
                ("pragma", "no-cache".into()),
            ],
            body: body.to_string(),
        }
    }

    fn error(status: u16, error: &str, description: &str) -> TokenResponse {
        Self::json(
            status,
            serde_json::json!({"error": error, "error_description": description}),
        )
    }

    fn with_retry_after(mut self, secs: u64) -> TokenResponse {
        self.headers.push(("retry-after", secs.max(1).to_string()));
        self
    }

    fn invalid_request(description: &str) -> TokenResponse {
        Self::error(400, "invalid_request", description)
    }

    fn invalid_login() -> TokenResponse {
        Self::error(400, "invalid_grant", INVALID_LOGIN)
    }

    fn invalid_refresh() -> TokenResponse {
        Self::error(400, "invalid_grant", INVALID_REFRESH)
    }

    fn too_many_attempts(retry_after: u64) -> TokenResponse {
        Self::json(
            429,
            serde_json::json!({
                "error": "too_many_attempts",
                "error_description": "too many failed logins; try again later",
                "retry_after": retry_after.max(1),
            }),
        )
        .with_retry_after(retry_after)
    }

    fn unavailable() -> TokenResponse {
        Self::error(
            503,
            "temporarily_unavailable",
            "the store is unreachable; try again shortly",
        )
        .with_retry_after(UNAVAILABLE_RETRY_SECS)
    }
}

/// The token endpoint: password and refresh-token grants over the store, with the failed-login
/// limiter. One per `serve`.
pub struct TokenEndpoint {
    issuer: Arc<LocalIssuer>,
    store: DynStore,
    refresh_ttl: Duration,
    limiter: LoginLimiter,
    /// A hash of a random password, checked for unknown users so they cost the same time.
    dummy_hash: String,
    /// Bounds concurrent Argon2 verifications (each takes ~19 MiB and tens of ms of a core).
    argon2_slots: Semaphore,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("issuer", &self.issuer)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

/// Why a grant was refused after the credential was examined (for the log only).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownUser,
    WrongPassword,
    NoLocalPassword,
    Disabled,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::WrongPassword => "wrong_password",
            Refusal::NoLocalPassword => "no_local_password",
            Refusal::Disabled => "disabled",
        }
    }
}

impl TokenEndpoint {
    /// The endpoint for `cfg` (its refresh lifetime), signing with `issuer`. Computes the
    /// dummy Argon2 hash once (tens of milliseconds).
    pub fn new(
        cfg: &LocalUsersConfig,
        issuer: Arc<LocalIssuer>,
        store: DynStore,
    ) -> Result<TokenEndpoint, LocalError> {
        cfg.validate()?;
        let mut password = [0u8; 32];
        rand::rng().fill_bytes(&mut password);
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).expect("16 bytes encode as a salt");
        let dummy_hash = Argon2::default()
            .hash_password(&password, &salt)
            .expect("Argon2id with default parameters hashes any input")
            .to_string();
        let slots = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        Ok(TokenEndpoint {
            issuer,
            store,
            refresh_ttl: cfg.refresh_ttl,
            limiter: LoginLimiter::new(),
            dummy_hash,
            argon2_slots: Semaphore::new(slots),
        })
    }

    /// Answers one token request: `form` is the decoded `application/x-www-form-urlencoded`
    /// body (each parameter once), `client_addr` the caller's address for rate limiting,
    /// `now` unix seconds.
    pub async fn token(
        &self,
        form: HashMap<String, String>,
        client_addr: &str,
        now: i64,
    ) -> TokenResponse {
        match form.get("grant_type").map(String::as_str) {
            Some("password") => self.password_grant(&form, client_addr, now).await,
            Some("refresh_token") => self.refresh_grant(&form, client_addr, now).await,
            Some("") | None => TokenResponse::invalid_request("grant_type is required"),
            Some(_) => TokenResponse::error(
                400,
                "unsupported_grant_type",
                "grant_type must be password or refresh_token",
            ),
        }
    }

    async fn password_grant(
        &self,
        form: &HashMap<String, String>,
        client: &str,
        now: i64,
    ) -> TokenResponse {
        let (Some(username), Some(password)) = (param(form, "username"), param(form, "password"))
        else {
            return TokenResponse::invalid_request("username and password are required");
        };
        // A name no account can have is limited by address only (it is not worth tracking),
        // and refused without a lookup: that says nothing about which accounts exist.
        let plausible = plausible_username(username) && password.len() <= MAX_PASSWORD_BYTES;
        let attempt = match self
            .limiter
            .begin(plausible.then_some(username), client, now)
        {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                tracing::warn!(
                    client,
                    retry_after,
                    "local login refused: too many failures"
                );
                return TokenResponse::too_many_attempts(retry_after);
            }
        };
        if !plausible {
            tracing::info!(
                client,
                "local login refused: malformed username or password"
            );
            return TokenResponse::invalid_login();
        }
        let user = match self.store.get_user(username).await {
            Ok(user) => user,
            Err(e) => return self.store_failed(attempt, &e),
        };
        let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let matches = self.verify_password(password, stored).await;
        let refusal = match &user {
            None => Some(Refusal::UnknownUser),
            Some(u) if u.password_hash.is_none() => Some(Refusal::NoLocalPassword),
            Some(_) if !matches => Some(Refusal::WrongPassword),
            Some(u) if u.disabled => Some(Refusal::Disabled),
            Some(_) => None,
        };
        match (refusal, user) {
            (None, Some(user)) => {
                let family = random_id();
                let expires_at = now.saturating_add(self.refresh_ttl.as_secs() as i64);
                match self.issue(&user, family, expires_at, now).await {
                    Ok(response) => {
                        self.limiter.succeeded(attempt);
                        tracing::info!(username = %user.username, client, "local login");
                        response
                    }
                    Err(e) => self.store_failed(attempt, &e),
                }
            }
            (Some(Refusal::UnknownUser) | None, _) => {
                // No name in the log: it may be a password typed into the wrong field.
                tracing::info!(client, "local login refused: unknown username");
                TokenResponse::invalid_login()
            }
            (Some(reason), _) => {
                tracing::info!(
                    username,
                    client,
                    reason = reason.as_str(),
                    "local login refused"
                );
                TokenResponse::invalid_login()
            }
        }
    }

    async fn refresh_grant(
        &self,
        form: &HashMap<String, String>,
        client: &str,
        now: i64,
    ) -> TokenResponse {
        let Some(token) = param(form, "refresh_token") else {
            return TokenResponse::invalid_request("refresh_token is required");
        };
        let attempt = match self.limiter.begin(None, client, now) {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                tracing::warn!(
                    client,
                    retry_after,
                    "token refresh refused: too many failures"
                );
                return TokenResponse::too_many_attempts(retry_after);
            }
        };
        if token.len() > MAX_REFRESH_TOKEN_BYTES || !token.starts_with(REFRESH_PREFIX) {
            tracing::info!(client, "token refresh refused: malformed refresh token");
            return TokenResponse::invalid_refresh();
        }
        let record = match self.store.use_refresh_token(&sha256_hex(token), now).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::info!(client, "token refresh refused: unknown refresh token");
                return TokenResponse::invalid_refresh();
            }
            Err(e) => return self.store_failed(attempt, &e),
        };
        let family = record.family_id.as_str();
        let username = record.username.as_str();
        if record.revoked_at.is_some() || record.expires_at <= now {
            tracing::info!(
                username,
                family,
                client,
                "token refresh refused: revoked or expired"
            );
            return TokenResponse::invalid_refresh();
        }
        if record.used_at.is_some() {
            // A spent token came back: either the client or a thief holds a stale copy.
            // End the whole login so neither can continue.
            tracing::warn!(
                username,
                family,
                client,
                "refresh token reused; revoking every token of its login"
            );
            if let Err(e) = self.store.revoke_refresh_family(family, now).await {
                tracing::error!(family, error = %e, "cannot revoke a reused refresh token family");
            }
            return TokenResponse::invalid_refresh();
        }
        // The token is spent from here on: should the store fail now, the client must log in
        // again (a retry with the same token counts as reuse).
        let user = match self.store.get_user(username).await {
            Ok(user) => user,
            Err(e) => return self.store_failed(attempt, &e),
        };
        let Some(user) = user.filter(|u| !u.disabled) else {
            tracing::info!(
                username,
                family,
                client,
                "token refresh refused: user disabled or gone"
            );
            if let Err(e) = self.store.revoke_refresh_family(family, now).await {
                tracing::error!(family, error = %e, "cannot revoke a disabled user's refresh tokens");
            }
            return TokenResponse::invalid_refresh();
        };
        match self
            .issue(&user, record.family_id.clone(), record.expires_at, now)
            .await
        {
            Ok(response) => {
                self.limiter.succeeded(attempt);
                tracing::debug!(username, family, client, "refresh token rotated");
                response
            }
            Err(StoreError::Conflict(_)) => {
                tracing::info!(
                    username,
                    family,
                    client,
                    "token refresh refused: login revoked meanwhile"
                );
                TokenResponse::invalid_refresh()
            }
            Err(e) => self.store_failed(attempt, &e),
        }
    }

    /// Stores a new refresh token in `family` and answers it with a new access token.
    async fn issue(
        &self,
        user: &UserRecord,
        family: String,
        expires_at: i64,
        now: i64,
    ) -> Result<TokenResponse, StoreError> {
        let refresh_token = new_refresh_token();
        self.store
            .create_refresh_token(&RefreshTokenRecord {
                token_sha256: sha256_hex(&refresh_token),
                family_id: family,
                username: user.username.clone(),
                created_at: now,
                expires_at,
                used_at: None,
                revoked_at: None,
            })
            .await?;
        let access = self
            .issuer
            .access_token(&user.username, user.email.as_deref(), now);
        tracing::debug!(username = %user.username, jti = %access.jti, "access token issued");
        Ok(TokenResponse::json(
            200,
            serde_json::json!({
                "access_token": access.token,
                "token_type": "Bearer",
                "expires_in": self.issuer.token_ttl().as_secs(),
                "refresh_token": refresh_token,
            }),
        ))
    }

    fn store_failed(&self, attempt: Attempt, e: &StoreError) -> TokenResponse {
        self.limiter.cancel(attempt);
        tracing::warn!(error = %e, "token endpoint: store failed");
        TokenResponse::unavailable()
    }

    /// Whether `password` matches `stored` (an Argon2 PHC string). With no usable stored hash
    /// the dummy hash is checked instead and the answer is false, after the same work.
    async fn verify_password(&self, password: &str, stored: Option<&str>) -> bool {
        let stored = stored.filter(|s| PasswordHash::new(s).is_ok());
        let (hash, real) = match stored {
            Some(s) => (s.to_string(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let password = password.as_bytes().to_vec();
        let _slot = self
            .argon2_slots
            .acquire()
            .await
            .expect("the Argon2 semaphore is never closed");
        let matches = tokio::task::spawn_blocking(move || {
            let hash = PasswordHash::new(&hash).expect("checked above");
            Argon2::default().verify_password(&password, &hash).is_ok()
        })
        .await
        .unwrap_or(false);
        real && matches
    }
}

/// A form parameter, when present and non-empty.
fn param<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Whether `name` could be a stored username (as `users create` accepts them).
fn plausible_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

/// A new opaque refresh token: the prefix and 256 random bits, base64url.
fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Lower-case hex SHA-256, as refresh tokens are stored.
fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
