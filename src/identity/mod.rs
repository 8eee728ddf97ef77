//! Finds the caller's credential and turns it into a [`Principal`](crate::domain::Principal).

pub mod api_key;
mod cache;
mod credential;
pub mod jwt;
mod keys;

pub use credential::{Credential, find_credential};
pub use keys::{KeyAuthenticator, KeyGrant};

use crate::domain::{Denial, DenyKind};

/// The 401 refusal for a missing or bad credential. Every bad-credential answer uses the same
/// code and wording whatever failed, so callers cannot probe which keys exist.
pub fn unauthenticated(error: &'static str, reason: impl Into<String>) -> Denial {
    Denial::new(DenyKind::Unauthenticated, error, reason)
}
