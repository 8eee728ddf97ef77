use crate::domain::{Action, Principal};

/// What an allowed request carries on to the upstream.
#[derive(Debug, Clone)]
pub struct Allow {
    pub principal: Principal,
    pub action: Action,
    /// Extra headers for the upstream beyond the identity headers (e.g. remaining quota).
    pub extra_headers: Vec<(String, String)>,
    /// The policy version that decided, for audit.
    pub policy_version: String,
}

/// Why a request was refused, mapped to a status in exactly one place (protocol).
#[derive(Debug, Clone, PartialEq)]
pub enum DenyKind {
    /// No credential or a bad one: 401 (or 302 to login for a browser).
    Unauthenticated,
    /// Authenticated but not permitted: 403.
    Forbidden,
    /// Content filter or malformed body: 400.
    BadRequest,
    /// The body was needed but Envoy sent only part of it: 413.
    PayloadTooLarge,
    /// Over quota: 429 with `Retry-After` seconds.
    RateLimited {
        retry_after_secs: u64,
        limit: u64,
        reset_secs: u64,
    },
    /// The store is unreachable and nothing cached can decide: 503.
    Unavailable,
    /// The request needs an approver first: 403 with `status: pending_approval`.
    PendingApproval { approval_id: String },
    /// A browser without a session when SSO is on: 302 to the login page.
    LoginRedirect { location: String },
}

/// A refusal with the words the caller sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub kind: DenyKind,
    /// Short machine-readable error code, e.g. `invalid_api_key`, `preset_not_allowed`.
    pub error: &'static str,
    /// A human sentence that says why (never echoes secrets or prompt text).
    pub reason: String,
    /// The policy rule or capability that decided, when one did.
    pub rule: Option<String>,
}

impl Denial {
    /// A refusal of the given kind.
    pub fn new(kind: DenyKind, error: &'static str, reason: impl Into<String>) -> Self {
        Denial {
            kind,
            error,
            reason: reason.into(),
            rule: None,
        }
    }

    /// The same refusal, naming the rule that decided.
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
}
