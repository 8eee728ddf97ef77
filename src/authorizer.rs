//! The pipeline of one Check: authenticate → understand → decide. The one entry point the
//! protocol layer calls.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::domain::{Action, Allow, Denial, DenyKind, Principal, Request};
use crate::identity::jwt::JwtVerifier;
use crate::identity::local::LocalIssuer;
use crate::identity::{
    Credential, KeyAuthenticator, LoginRedirect, SessionAuthenticator, UserDirectory,
    find_credential, principal_from_token, unauthenticated,
};
use crate::inference::{self, InferenceError};
use crate::policy::approved::ApprovedTemplates;
use crate::policy::{self, Policy, QuotaConfig, RuleOutcome, StoredLimits};
use crate::store::{Change, DynStore};

/// What the pipeline learned about a request before deciding it.
#[derive(Debug, Default)]
pub struct Trace {
    pub principal: Option<Principal>,
    pub action: Option<Action>,
}

/// The most header bytes a request may carry, as Envoy's shipped `max_request_headers_kb`
/// allows; larger requests can only come from callers that bypass Envoy.
pub const MAX_HEADER_BYTES: usize = 96 * 1024;

/// Decides Checks against the current policy and the store.
pub struct Authorizer {
    policy: ArcSwap<Policy>,
    keys: KeyAuthenticator,
    users: UserDirectory,
    jwt: Option<Arc<JwtVerifier>>,
    assertions: Option<Arc<LocalIssuer>>,
    sessions: Option<Arc<dyn SessionAuthenticator>>,
    login: Option<LoginRedirect>,
    quota: QuotaConfig,
    store: DynStore,
    key_headers: Vec<String>,
    /// Templates approved at run time, for `templates_only` roles.
    templates: ApprovedTemplates,
}

/// What an [`Authorizer`] is built from.
pub struct AuthorizerParts {
    pub policy: Policy,
    pub store: DynStore,
    /// Headers an API key may arrive in (besides `Authorization: Bearer`).
    pub key_headers: Vec<String>,
    /// How long store lookups stay cached without a change-feed event.
    pub cache_ttl: Duration,
    /// Bearer-token verification, when any issuer is configured.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Signs identity assertions for routes with `assertion: true`.
    pub assertions: Option<Arc<LocalIssuer>>,
    /// Browser sessions, when SSO is on.
    pub sessions: Option<Arc<dyn SessionAuthenticator>>,
    /// Where browsers without a session go, when SSO is on.
    pub login: Option<LoginRedirect>,
    /// Quota windows.
    pub quota: QuotaConfig,
}

/// The header carrying the signed identity assertion to the upstream.
pub const ASSERTION_HEADER: &str = "x-inferguard-assertion";

impl Authorizer {
    /// An authorizer with an initial policy.
    pub fn new(parts: AuthorizerParts) -> Self {
        Authorizer {
            policy: ArcSwap::from_pointee(parts.policy),
            keys: KeyAuthenticator::new(parts.store.clone(), parts.cache_ttl),
            users: UserDirectory::new(parts.store.clone(), parts.cache_ttl),
            jwt: parts.jwt,
            assertions: parts.assertions,
            sessions: parts.sessions,
            login: parts.login,
            quota: parts.quota,
            store: parts.store.clone(),
            key_headers: parts.key_headers,
            templates: ApprovedTemplates::new(parts.store.clone(), parts.cache_ttl),
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

    /// The key authenticator.
    pub fn keys(&self) -> &KeyAuthenticator {
        &self.keys
    }

    /// Drops what the store's change feed says has changed.
    pub async fn apply_change(&self, change: &Change) {
        if let Some(sessions) = &self.sessions {
            // Ended or refreshed sessions (entity `session`), and users (whose sessions carry
            // their role binding and disabled flag).
            sessions.apply_change(change).await;
        }
        match change.entity.as_str() {
            "key" => self.keys.invalidate_key(&change.id).await,
            "user" => {
                self.users.invalidate(&change.id).await;
                // Keys carry their owner's state.
                self.keys.invalidate_all();
            }
            "service_account" => self.keys.invalidate_all(),
            "template" => self.templates.invalidate(),
            _ => {}
        }
    }

    /// Drops every cached store lookup (the change feed was lost or restarted).
    pub fn flush_caches(&self) {
        self.keys.invalidate_all();
        self.users.invalidate_all();
        self.templates.invalidate();
        if let Some(sessions) = &self.sessions {
            sessions.flush();
        }
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
        self.check_traced(req, None).await
    }

    /// Decides one request, keeping in `trace` who the caller turned out to be and what they
    /// asked, so the audit record of a refusal can say so.
    pub async fn check_traced(
        &self,
        req: &Request,
        mut trace: Option<&mut Trace>,
    ) -> Result<Allow, Denial> {
        let policy = self.policy.load_full();
        let now_utc = chrono::Utc::now();
        let now = now_utc.timestamp();

        let header_bytes: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if header_bytes > MAX_HEADER_BYTES {
            return Err(Denial::new(
                DenyKind::BadRequest,
                "headers_too_large",
                format!("the request headers exceed {} KiB", MAX_HEADER_BYTES / 1024),
            ));
        }

        let (principal, stored_limits) = self.authenticate_with(req, &policy, now).await?;

        if let Some(t) = trace.as_deref_mut() {
            t.principal = Some(principal.clone());
        }

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
        crate::identity::oidc::check_mfa(
            &principal,
            policy.roles.get(&principal.role),
            route,
            self.login.as_ref(),
            req,
        )?;
        let action = inference::understand(route, req).map_err(refusal_for)?;
        if let Some(t) = trace {
            t.action = Some(action.clone());
        }
        policy::decide(&policy, &principal, &action)?;
        let approved = self.approved_templates(&policy, &principal).await?;
        let findings =
            policy::check_content_and_templates(&policy, &principal, &action, &approved)?;
        let outcome = policy.rules.evaluate(&policy::RuleInput {
            principal: &principal,
            action: &action,
            method: &req.method,
            path: &req.path,
            permission: route.permission,
            pii: &findings.pii,
            now: now_utc,
        });
        if let RuleOutcome::Deny(denial) = outcome {
            return Err(denial);
        }
        // The network call comes after every local refusal, and before an approval is asked
        // for a request the DLP service would block.
        policy.content.check_dlp(&action).await?;
        let redeemed = match &outcome {
            RuleOutcome::RequireApproval { rule, message } => Some(
                self.approval(req, &principal, &action, rule, message, now_utc)
                    .await?,
            ),
            _ => None,
        };

        let mut extra_headers = Vec::new();
        if route.assertion {
            let Some(signer) = &self.assertions else {
                return Err(Denial::new(
                    DenyKind::Unavailable,
                    "assertion_unavailable",
                    "this route needs a signed identity assertion and no signing key is loaded",
                ));
            };
            let assertion = signer.assertion(&principal, &req.id, now);
            extra_headers.push((ASSERTION_HEADER.to_string(), assertion));
        }

        // Quota last: a request refused for any other reason costs nothing.
        let role = &policy.roles[&principal.role];
        let quota = policy::quota::enforce_known(
            &*self.store,
            &self.quota,
            role,
            &principal,
            Some(&stored_limits),
            &action,
            now_utc,
        )
        .await;
        let grant = match quota {
            Ok(grant) => grant,
            Err(denial) => {
                // A quota refusal must not spend the approval.
                if let Some(id) = &redeemed
                    && let Err(e) = policy::release_approval(&*self.store, id).await
                {
                    tracing::warn!(error = %e, "could not release an approval after a quota refusal");
                }
                return Err(denial);
            }
        };
        extra_headers.extend(grant.headers(now_utc));

        Ok(Allow {
            principal,
            action,
            extra_headers,
            policy_version: policy.version.clone(),
        })
    }
}

impl Authorizer {
    /// A `require_approval` rule matched: redeem the approval the request names, or record a
    /// pending one and refuse. Returns the redeemed approval's id.
    async fn approval(
        &self,
        req: &Request,
        principal: &Principal,
        action: &Action,
        rule: &str,
        message: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Denial> {
        let fp = policy::fingerprint(principal, action, &req.method, &req.path);
        let rule_ref = format!("rules.{rule}");
        match req.header(policy::APPROVAL_HEADER) {
            Some(id) => {
                let redeemed =
                    policy::redeem_approval(&*self.store, id.trim(), principal, &fp, now)
                        .await
                        .map_err(|e| e.to_denial())?;
                Ok(redeemed.id)
            }
            None => {
                let id =
                    policy::request_approval(&*self.store, principal, &fp, Some(&rule_ref), now)
                        .await
                        .map_err(|e| policy::ApprovalError::from(e).to_denial())?;
                Err(policy::pending_denial(&id, Some(&rule_ref), Some(message)))
            }
        }
    }

    /// The run-time approved templates when the principal's role is `templates_only` (the
    /// store is not asked otherwise); a store failure refuses with 503, never allows.
    async fn approved_templates(
        &self,
        policy: &Policy,
        principal: &Principal,
    ) -> Result<Arc<Vec<policy::Template>>, Denial> {
        let templates_only = policy
            .roles
            .get(&principal.role)
            .is_some_and(|r| r.templates_only);
        if !templates_only {
            return Ok(Arc::default());
        }
        self.templates.get().await.map_err(|e| {
            tracing::error!(error = %e, "store lookup of the approved templates failed");
            Denial::new(
                DenyKind::Unavailable,
                "store_unavailable",
                "the template store is unreachable; try again",
            )
        })
    }

    /// Authenticates a request's credential (session cookie, bearer token or API key) exactly
    /// as a Check does, without judging any route: the admin API's callers use it. Returns the
    /// principal and, for keys, the stored limits.
    pub async fn authenticate(&self, req: &Request) -> Result<(Principal, StoredLimits), Denial> {
        let policy = self.policy.load_full();
        self.authenticate_with(req, &policy, chrono::Utc::now().timestamp())
            .await
    }

    /// The credential step of a Check, against `policy` at `now`.
    async fn authenticate_with(
        &self,
        req: &Request,
        policy: &Policy,
        now: i64,
    ) -> Result<(Principal, StoredLimits), Denial> {
        // Users authenticated by token or session have no stored key limits (only keys and
        // service accounts, which authenticate by key, do).
        let found = match find_credential(req, &self.key_headers)? {
            None => {
                if let Some(redirect) = self.login.as_ref().and_then(|l| l.for_request(req)) {
                    return Err(redirect);
                }
                return Err(unauthenticated(
                    "missing_credential",
                    "no API key, bearer token or session was presented",
                ));
            }
            Some(Credential::Session { id }) => {
                let Some(sessions) = &self.sessions else {
                    return Err(unauthenticated(
                        "invalid_session",
                        "browser sessions are not enabled",
                    ));
                };
                let principal = match sessions.authenticate(&id, policy, now).await {
                    Ok(p) => p,
                    // A stale or unknown session: a browser signs in again.
                    Err(d) if d.kind == DenyKind::Unauthenticated => {
                        return Err(self
                            .login
                            .as_ref()
                            .and_then(|l| l.for_request(req))
                            .unwrap_or(d));
                    }
                    Err(d) => return Err(d),
                };
                (principal, StoredLimits::default())
            }
            Some(Credential::ApiKey { text, .. }) => {
                let peer = req
                    .peer
                    .as_deref()
                    .and_then(crate::audit::security::parse_address);
                self.keys.authenticate(text, policy, now, peer).await?
            }
            Some(Credential::Bearer { token }) => (
                self.authenticate_token(token, policy, now).await?,
                StoredLimits::default(),
            ),
        };
        Ok(found)
    }

    async fn authenticate_token(
        &self,
        token: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<Principal, Denial> {
        let Some(jwt) = &self.jwt else {
            return Err(unauthenticated(
                "invalid_token",
                "bearer tokens are not accepted: no token issuer is configured",
            ));
        };
        let verified = jwt.verify(token, now).await.map_err(|e| e.to_denial())?;
        let user = self.users.get(&verified.subject).await.map_err(|e| {
            tracing::error!(error = %e, "store lookup for a token's user failed");
            Denial::new(
                DenyKind::Unavailable,
                "store_unavailable",
                "the user store is unreachable; try again",
            )
        })?;
        principal_from_token(&verified, user.as_deref(), policy)
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
