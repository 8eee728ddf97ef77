//! Browser sessions (SSO) and the login states of authorization-code flows in progress.
//!
//! A session is stored under the SHA-256 of its opaque id (the cookie value); the id itself is
//! never stored. Ending a session (logout, back-channel logout, `sessions revoke`, a timeout,
//! a refused refresh) appends to the change feed (entity `session`, id = the hash), so every
//! replica drops its cached copy; so does a claim refresh (new groups). Touching a session
//! (sliding idle timeout) and login-state churn do not: they happen on requests and no cache
//! depends on them being seen at once.

use std::collections::BTreeMap;

use super::StoreResult;

/// One signed-in browser, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Lower-case hex SHA-256 of the session id.
    pub id_sha256: String,
    /// The IdP `sub` (a store user's username).
    pub username: String,
    /// The IdP that signed the user in (`iss`).
    pub issuer: String,
    /// The IdP session id (`sid` claim), for back-channel logout.
    pub idp_sid: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// Rule attributes mapped from the IdP claims.
    pub attributes: BTreeMap<String, String>,
    /// `amr` of the last authentication.
    pub amr: Vec<String>,
    /// `acr` of the last authentication.
    pub acr: Option<String>,
    /// True when the authentication was multi-factor (judged from `amr`/`acr` at login).
    pub mfa: bool,
    /// The raw ID token, sent back as `id_token_hint` at logout.
    pub id_token: Option<String>,
    /// The IdP refresh token, used to refresh the group claims.
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    /// When the claims were last read from the IdP.
    pub claims_refreshed_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

impl std::fmt::Debug for SessionRecord {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id_sha256", &self.id_sha256)
            .field("username", &self.username)
            .field("issuer", &self.issuer)
            .field("idp_sid", &self.idp_sid.as_ref().map(|_| "<set>"))
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("attributes", &self.attributes)
            .field("amr", &self.amr)
            .field("acr", &self.acr)
            .field("mfa", &self.mfa)
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .field("claims_refreshed_at", &self.claims_refreshed_at)
            .field("ended_at", &self.ended_at)
            .field("end_reason", &self.end_reason)
            .finish()
    }
}

impl SessionRecord {
    /// True while the session has not ended and neither expiry has passed at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.ended_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }

    /// When the session ends if nothing else happens: the earlier expiry.
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }
}

/// Claims read again from the IdP (a refresh-token grant).
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshedClaims {
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    /// A new ID token, when the IdP sent one (kept for `id_token_hint`).
    pub id_token: Option<String>,
    /// A rotated refresh token, when the IdP sent one.
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub refreshed_at: i64,
}

impl std::fmt::Debug for RefreshedClaims {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshedClaims")
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("attributes", &self.attributes)
            .field("refreshed_at", &self.refreshed_at)
            .finish_non_exhaustive()
    }
}

/// An authorization request in flight, kept until its callback (single use) or expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginStateRecord {
    /// Lower-case hex SHA-256 of the `state` parameter.
    pub state_sha256: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier (S256).
    pub pkce_verifier: String,
    /// The `redirect_uri` sent in the authorization request (the token request repeats it).
    pub redirect_uri: String,
    /// Where the browser goes after the callback.
    pub return_to: String,
    /// The login was asked for by a `require_mfa` route (step-up).
    pub step_up: bool,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for LoginStateRecord {
    /// Never prints the nonce or the PKCE verifier.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStateRecord")
            .field("state_sha256", &self.state_sha256)
            .field("redirect_uri", &self.redirect_uri)
            .field("return_to", &self.return_to)
            .field("step_up", &self.step_up)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// How long ended or expired sessions are kept (for `sessions list` and audits) before they
/// are deleted, in seconds.
pub const ENDED_SESSION_RETENTION_SECS: i64 = 7 * 86_400;

/// Storage of sessions and login states.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a login state; also deletes login states that expired before its creation.
    async fn create_login_state(&self, state: &LoginStateRecord) -> StoreResult<()>;

    /// Takes (deletes and returns) a login state in one statement, so of two callbacks with the
    /// same `state` at most one gets it. An expired state is deleted and `None` is returned.
    async fn take_login_state(
        &self,
        state_sha256: &str,
        now: i64,
    ) -> StoreResult<Option<LoginStateRecord>>;

    /// Stores a new session (`Conflict` when the hash exists); also deletes sessions that
    /// ended or expired more than [`ENDED_SESSION_RETENTION_SECS`] before its creation.
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;

    /// A session by the hash of its id, ended or not.
    async fn get_session(&self, id_sha256: &str) -> StoreResult<Option<SessionRecord>>;

    /// Records activity: `last_seen_at = now` and the new idle expiry, unless the session has
    /// ended. Returns false when nothing was updated. Not in the change feed.
    async fn touch_session(
        &self,
        id_sha256: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool>;

    /// Takes the right to refresh the session's claims until `until`, unless another process
    /// holds it at `now` or the session has ended. Returns true when taken.
    async fn acquire_refresh_lease(
        &self,
        id_sha256: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool>;

    /// Stores refreshed claims (and rotated tokens) and releases the lease, unless the
    /// session has ended. Returns false when nothing was updated. In the change feed.
    async fn update_session_claims(
        &self,
        id_sha256: &str,
        claims: &RefreshedClaims,
    ) -> StoreResult<bool>;

    /// Ends one session at `now` with `reason`. Returns false when it had ended already or
    /// does not exist. In the change feed.
    async fn end_session(&self, id_sha256: &str, now: i64, reason: &str) -> StoreResult<bool>;

    /// Ends every session of `username`; returns the hashes of the sessions ended.
    async fn end_sessions_for_user(
        &self,
        username: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>>;

    /// Ends the sessions an IdP logout names (back-channel logout): those of `issuer` with
    /// this IdP session id when `sid` is given, further narrowed to `subject` when given; all
    /// of the subject's sessions at that issuer when only `subject` is given. Returns the
    /// hashes of the sessions ended.
    async fn end_idp_sessions(
        &self,
        issuer: &str,
        sid: Option<&str>,
        subject: Option<&str>,
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>>;

    /// Sessions active at `now` (not ended, not expired), newest first; only `username`'s
    /// when given.
    async fn list_sessions(
        &self,
        username: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<SessionRecord>>;
}
