//! SCIM 2.0 provisioning (RFC 7643/7644) on the http listener under `/scim/v2`: an IdP
//! (Okta, Entra ID) creates and updates users, manages groups (whose display names
//! policy.yaml's `groups:` maps to roles) and deactivates users — which disables them, ends
//! their sessions and revokes their API keys and refresh tokens in one store transaction.
//!
//! Every change is recorded in the audit trail (actor `scim`) and reaches running servers
//! through the store's change feed. Requests need `Authorization: Bearer <token>`, the token
//! being read at start from the environment variable `scim.token_env` names.

mod config;
mod error;
mod handlers;
mod patch;
mod resources;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use config::{ScimConfig, ScimConfigError};
pub use error::ScimError;
pub use handlers::routes;

use crate::audit::{AuditEvent, AuditTrail};
use crate::store::DynStore;

/// The shortest SCIM bearer token accepted (a random 32-byte token is 43+ characters).
pub const MIN_TOKEN_LEN: usize = 32;

/// What the SCIM routes serve from.
pub struct ScimService {
    store: DynStore,
    /// SHA-256 of the bearer token (compared in constant time; the token is not kept).
    token_sha256: [u8; 32],
    audit: Option<AuditTrail>,
}

impl ScimService {
    /// A service accepting `token`.
    pub fn new(store: DynStore, token: &str, audit: Option<AuditTrail>) -> ScimService {
        ScimService {
            store,
            token_sha256: Sha256::digest(token.as_bytes()).into(),
            audit,
        }
    }

    /// True when the `Authorization` header value carries the token (constant time).
    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(value) = header else { return false };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        presented.ct_eq(&self.token_sha256).into()
    }

    /// Records an admin change made through SCIM. A change that could not be recorded is
    /// reported as a failure (it was made; the IdP will retry and find it done).
    async fn audit(
        &self,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), ScimError> {
        let Some(trail) = &self.audit else {
            return Ok(());
        };
        trail
            .record_durable(AuditEvent::admin("scim", action, target, details))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, action, target, "SCIM change made but not audited");
                ScimError {
                    status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    scim_type: None,
                    detail: "the change was made but its audit record could not be written".into(),
                }
            })
    }
}

/// Builds the SCIM service when `scim.enabled`: the token must be set (fail closed).
pub fn from_config(
    cfg: Option<&ScimConfig>,
    store: DynStore,
    audit: Option<AuditTrail>,
) -> Result<Option<Arc<ScimService>>, ScimConfigError> {
    let Some(cfg) = cfg.filter(|c| c.enabled) else {
        return Ok(None);
    };
    let token = cfg.token()?;
    Ok(Some(Arc::new(ScimService::new(store, &token, audit))))
}

#[cfg(test)]
mod tests;
