//! The pipeline of one Check: authenticate → understand → decide. The one entry point the
//! protocol layer calls.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::domain::{Allow, Denial, DenyKind, Request};
use crate::identity::{Credential, KeyAuthenticator, find_credential, unauthenticated};
use crate::inference::{self, InferenceError};
use crate::policy::{self, Policy};
use crate::store::DynStore;

/// Decides Checks against the current policy and the store.
pub struct Authorizer {
    policy: ArcSwap<Policy>,
    keys: KeyAuthenticator,
    key_headers: Vec<String>,
}

impl Authorizer {
    /// An authorizer with an initial policy.
    pub fn new(
        policy: Policy,
        store: DynStore,
        key_headers: Vec<String>,
        key_cache_ttl: Duration,
    ) -> Self {
        Authorizer {
            policy: ArcSwap::from_pointee(policy),
            keys: KeyAuthenticator::new(store, key_cache_ttl),
            key_headers,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replaces the policy atomically; Checks in flight finish on the old one.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// The key authenticator, for cache invalidation by the change feed.
    pub fn keys(&self) -> &KeyAuthenticator {
        &self.keys
    }

    /// Headers that may carry a caller's credential (removed before the upstream).
    pub fn credential_headers(&self) -> impl Iterator<Item = &str> {
        self.key_headers
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("authorization"))
    }

    /// Decides one request.
    pub async fn check(&self, req: &Request) -> Result<Allow, Denial> {
        let policy = self.policy.load_full();
        let now = chrono::Utc::now().timestamp();

        let principal = match find_credential(req, &self.key_headers)? {
            None => {
                return Err(unauthenticated(
                    "missing_credential",
                    "no API key, bearer token or session was presented",
                ));
            }
            Some(Credential::ApiKey { text, .. }) => {
                self.keys.authenticate(text, &policy, now).await?
            }
            Some(Credential::Bearer { .. }) => {
                return Err(unauthenticated(
                    "invalid_token",
                    "bearer tokens are not accepted: no JWT issuer is configured",
                ));
            }
        };

        let Some(route) = policy.routes.find(&req.method, &req.path) else {
            return Err(Denial::new(
                DenyKind::Forbidden,
                "unknown_route",
                format!(
                    "no route allows {} on this path",
                    printable_method(&req.method)
                ),
            )
            .with_rule("routes"));
        };
        let action = inference::understand(route, req).map_err(refusal_for)?;
        policy::decide(&policy, &principal, &action)?;

        Ok(Allow {
            principal,
            action,
            extra_headers: Vec::new(),
            policy_version: policy.version.clone(),
        })
    }
}

/// How a request that cannot be understood is refused.
fn refusal_for(e: InferenceError) -> Denial {
    match e {
        InferenceError::Truncated => Denial::new(
            DenyKind::PayloadTooLarge,
            "body_truncated",
            "the request body is larger than the authorization service receives; send a smaller body",
        ),
        InferenceError::Malformed(why) => Denial::new(DenyKind::BadRequest, "malformed_body", why),
        InferenceError::Invalid { field, reason } => Denial::new(
            DenyKind::BadRequest,
            "invalid_field",
            format!("`{field}`: {reason}"),
        ),
    }
}

fn printable_method(m: &str) -> &str {
    if m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase()) {
        m
    } else {
        "this method"
    }
}
