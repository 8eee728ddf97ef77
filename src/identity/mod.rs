//! Finds the caller's credential and turns it into a [`Principal`](crate::domain::Principal).

pub mod api_key;
mod cache;
mod credential;
pub mod jwt;
pub mod key_uses;
mod keys;
pub mod local;
pub mod networks;
pub mod oidc;
mod session;
mod users;

pub use credential::{
    Credential, INFERGUARD_COOKIE_PREFIX, SESSION_COOKIE, cookie_header_without_session,
    find_credential,
};
pub use keys::{KeyAuthenticator, KeyGrant, NETWORK_NOT_ALLOWED};
pub use session::{LoginRedirect, SessionAuthenticator};
pub use users::{UserDirectory, principal_from_token};

use crate::domain::{Denial, DenyKind};

/// The 401 refusal for a missing or bad credential. Every bad-credential answer uses the same
/// code and wording whatever failed, so callers cannot probe which keys exist.
pub fn unauthenticated(error: &'static str, reason: impl Into<String>) -> Denial {
    Denial::new(DenyKind::Unauthenticated, error, reason)
}
