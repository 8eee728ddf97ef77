//! Browser single sign-on: inferguard as an OpenID Connect relying party
//! (`identity.oidc` in `inferguard.yaml`).
//!
//! * `/auth/login?rd=URL` starts the authorization-code flow with PKCE (S256); the state,
//!   nonce and verifier are kept in the store (any replica can take the callback), single
//!   use and short-lived, and the state is also bound to the browser by a `__Host-` cookie.
//! * `/auth/callback` checks the state, exchanges the code, verifies the ID token (the
//!   `openidconnect` crate: signature with the IdP's keys, `iss`, `aud`, `exp`, `nonce`),
//!   reads userinfo, creates a session and sends the browser to `rd` — a path on this site or
//!   an allowed origin only.
//! * Sessions: an opaque 256-bit id in `__Host-inferguard-session` (HttpOnly, Secure,
//!   SameSite=Lax, Path=/); the store keeps its SHA-256. Idle (sliding) and absolute
//!   timeouts; group claims refreshed with the refresh token when older than
//!   `groups_max_age` (a refused refresh ends the session). Sessions are cached and dropped
//!   by the change feed, so `sessions revoke` reaches every replica within the poll interval.
//! * `/auth/logout` ends the session and the IdP's (RP-initiated logout);
//!   `/auth/backchannel-logout` accepts the IdP's logout tokens.
//! * Step-up: [`check_mfa`] for `require_mfa` roles and routes.

mod claims;
mod config;
mod endpoints;
mod logout_token;
mod mfa;
mod provider;
mod redirect;
mod sessions;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use config::{OidcClaimMapping, OidcConfig, OidcConfigError, SessionTimeouts};
pub use endpoints::{BrowserRequest, HttpAnswer, LOGIN_COOKIE_PREFIX, SsoEndpoints};
pub use logout_token::{
    BACKCHANNEL_LOGOUT_EVENT, LogoutClaims, LogoutTokenError, LogoutTokenVerifier,
};
pub use mfa::{
    INSUFFICIENT_USER_AUTHENTICATION, MFA_AMR_VALUES, amr_indicates_mfa, check_mfa, login_was_mfa,
};
pub use provider::{
    ClaimsRefresher, LoginResult, LoginStart, OidcError, RefreshError, RelyingParty,
};
pub use redirect::{public_origin, safe_return_to};
pub use sessions::{SessionManager, SessionSettings, new_session_id, secret_hash};

use crate::identity::LoginRedirect;
use crate::store::DynStore;

/// How often the IdP's metadata and keys are fetched again in the background.
const METADATA_REFRESH: Duration = Duration::from_secs(300);

/// Everything SSO adds to a running server.
pub struct Sso {
    /// The Check path's session authenticator (`AuthorizerParts::sessions`).
    pub sessions: Arc<SessionManager>,
    /// The http listener's `/auth/login`, `/auth/callback`, `/auth/logout`,
    /// `/auth/backchannel-logout`.
    pub endpoints: Arc<SsoEndpoints>,
    /// The relying party (its metadata refresh runs in the background).
    pub relying_party: Arc<RelyingParty>,
}

impl Sso {
    /// Builds SSO from a validated `identity.oidc`; contacts nobody (the IdP may be down at
    /// start). `cache_ttl` bounds how long a session stays cached without a change-feed event.
    pub fn build(
        config: &OidcConfig,
        store: DynStore,
        base_dir: &Path,
        cache_ttl: Duration,
    ) -> Result<Sso, OidcError> {
        let secret = config
            .client_secret(base_dir)
            .map_err(|e| OidcError::Config(e.to_string()))?;
        let config = Arc::new(config.clone());
        let rp = Arc::new(RelyingParty::new(config.clone(), secret)?);
        let settings = SessionSettings {
            issuer: config.issuer.clone(),
            idle_secs: config.session.idle_timeout.as_secs() as i64,
            absolute_secs: config.session.absolute_timeout.as_secs() as i64,
            groups_max_age_secs: config.groups_max_age.as_secs() as i64,
            mfa_acr_values: config.mfa_acr_values.clone(),
        };
        let sessions = Arc::new(SessionManager::new(
            store.clone(),
            settings,
            cache_ttl,
            Some(rp.clone() as Arc<dyn ClaimsRefresher>),
        ));
        let logout_tokens = LogoutTokenVerifier::new(&config.issuer, &config.client_id)
            .map_err(OidcError::Config)?;
        let endpoints = Arc::new(SsoEndpoints::new(
            rp.clone(),
            sessions.clone(),
            store,
            logout_tokens,
        ));
        Ok(Sso {
            sessions,
            endpoints,
            relying_party: rp,
        })
    }

    /// Starts fetching the IdP's metadata now and every few minutes (needs a runtime).
    pub fn spawn_background(&self) {
        self.relying_party.spawn_refresh(METADATA_REFRESH);
    }

    /// Where browsers without a session go: `/auth/login`.
    pub fn login_redirect() -> LoginRedirect {
        LoginRedirect {
            login_path: "/auth/login".into(),
        }
    }
}
