//! [`AuditEvent`]: one decision or admin change, as it is written to the trail.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::security::{self, SecurityEvent, Severity};
use crate::domain::{
    Action, Allow, AuthMethod, Denial, DenyKind, Permission, Principal, PrincipalKind, Request,
    RoleSource,
};

/// The longest prompt kept in clear (when `redact_prompts` is off); longer ones are cut and
/// marked `prompt_truncated`.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// The longest user agent, path, reason or admin target kept.
const MAX_SHORT_BYTES: usize = 1024;

/// What kind of event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// One ext_authz decision, allow or deny.
    Decision,
    /// A change to users, keys, roles, sessions, approvals or the policy, or a trail event.
    Admin,
    /// A finding of the security detectors (`auth_failure_burst`, `key_new_address_range`),
    /// recorded beside the decision that raised it.
    Security,
}

/// How an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request was allowed.
    Allow,
    /// The request was refused.
    Deny,
    /// The admin change was made.
    Ok,
    /// The admin change was attempted and failed (e.g. an invalid policy reload).
    Failed,
}

/// One audit event. Fields that do not apply are left out of the JSON. The trail adds
/// `seq`, `prev`, `ts` (when the record was written) and `hash`.
///
/// Never put a secret here: API keys, tokens, cookies, passwords and their hashes stay out;
/// session ids are hashed ([`AuditEvent::with_principal`]); prompts are hashed when
/// `audit.redact_prompts` is on ([`AuditEvent::with_action`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// `decision`, `admin` or `security`.
    pub event_type: EventType,
    /// How much the record matters to a SIEM: `info`, `low`, `medium` or `high` (set by
    /// [`security::classify`] when the event is built).
    pub severity: Severity,
    /// The security event this record is, if any (`prohibited_content`,
    /// `auth_failure_burst`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_event: Option<SecurityEvent>,
    /// A random id unique to this event (128 bits, hex).
    pub event_id: String,
    /// The request id (`x-request-id`) of a decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// The principal's subject (username, IdP `sub`, service account name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `user` or `service_account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<PrincipalKind>,
    /// `api_key`, `jwt` or `session`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
    /// The API key id (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// SHA-256 (hex) of the session id of a browser session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_sha256: Option<String>,
    /// The effective role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Where the role came from: `binding`, `group` or `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_source: Option<RoleSource>,
    /// The principal's IdP groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,

    /// The HTTP method of a decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path of a decision (never the query string, which may carry secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The action: `text-to-image`, `llm-chat`, … for decisions; `key.create`,
    /// `user.set_role`, `policy.reload`, … for admin changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The permissions the request needed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// The Fooocus performance preset in effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The LoRAs the caller chose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<String>,
    /// Images (or LLM choices) asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_number: Option<u32>,
    /// The base or LLM model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt, when prompts are not redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// SHA-256 (hex) of the prompt, when prompts are redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_sha256: Option<String>,
    /// The negative prompt, when prompts are not redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// SHA-256 (hex) of the negative prompt, when prompts are redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt_sha256: Option<String>,
    /// True when a clear-text prompt was cut at [`MAX_PROMPT_BYTES`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prompt_truncated: bool,
    /// The downstream address Envoy saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// The `User-Agent` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,

    /// Who made an admin change: `cli:<os user>`, `system`, or an admin principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What an admin change was made to: `user:alice`, `key:0123…`, `policy:policy.yaml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Further facts about an admin change (never secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,

    /// `allow`, `deny`, `ok` or `failed`.
    pub result: Outcome,
    /// The HTTP status a refused caller received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The refusal's error code (`preset_not_allowed`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why, in words (never a secret or prompt text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy rule or capability that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The approval request a `require_approval` refusal created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The policy version that decided (or was loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// How long the decision took, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

fn short(text: &str) -> String {
    cut(text, MAX_SHORT_BYTES).0.to_string()
}

impl AuditEvent {
    fn empty(event_type: EventType, result: Outcome) -> AuditEvent {
        AuditEvent {
            event_type,
            severity: Severity::Info,
            security_event: None,
            event_id: hex::encode(rand::random::<[u8; 16]>()),
            request_id: None,
            user_id: None,
            principal_kind: None,
            auth_method: None,
            key_id: None,
            session_sha256: None,
            role: None,
            role_source: None,
            groups: Vec::new(),
            method: None,
            path: None,
            action: None,
            permissions: Vec::new(),
            preset: None,
            loras: Vec::new(),
            image_number: None,
            model: None,
            prompt: None,
            prompt_sha256: None,
            negative_prompt: None,
            negative_prompt_sha256: None,
            prompt_truncated: false,
            client_address: None,
            user_agent: None,
            actor: None,
            target: None,
            details: None,
            result,
            status: None,
            error: None,
            reason: None,
            rule: None,
            approval_id: None,
            policy_version: None,
            duration_us: None,
        }
    }

    /// The event of one decision: the request (id, method, path, client address, user
    /// agent), and for an allow its principal and action, for a denial its error, reason,
    /// rule and approval id. `redact` is `audit.redact_prompts`.
    ///
    /// A denial carries no principal or action; add them with [`with_principal`] and
    /// [`with_action`] when the caller knows them.
    ///
    /// [`with_principal`]: AuditEvent::with_principal
    /// [`with_action`]: AuditEvent::with_action
    pub fn decision(
        req: &Request,
        outcome: Result<&Allow, &Denial>,
        policy_version: &str,
        duration: Duration,
        redact: bool,
    ) -> AuditEvent {
        let result = match outcome {
            Ok(_) => Outcome::Allow,
            Err(_) => Outcome::Deny,
        };
        let mut event = AuditEvent::empty(EventType::Decision, result);
        event.request_id = Some(short(&req.id));
        event.method = Some(short(&req.method));
        event.path = Some(short(&req.path));
        event.client_address = req.peer.as_deref().map(short);
        event.user_agent = req.header("user-agent").map(short);
        event.policy_version = Some(policy_version.to_string());
        event.duration_us = Some(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
        match outcome {
            Ok(allow) => {
                event = event
                    .with_principal(&allow.principal)
                    .with_action(&allow.action, redact);
                if !allow.policy_version.is_empty() {
                    event.policy_version = Some(allow.policy_version.clone());
                }
            }
            Err(denial) => {
                event.error = Some(denial.error.to_string());
                event.reason = Some(short(&denial.reason));
                event.rule = denial.rule.clone();
                if let DenyKind::PendingApproval { approval_id } = &denial.kind {
                    event.approval_id = Some(approval_id.clone());
                }
            }
        }
        event.classified()
    }

    /// Sets `severity` and `security_event` from [`security::classify`].
    fn classified(mut self) -> AuditEvent {
        let (severity, name) = security::classify(&self);
        self.severity = severity;
        self.security_event = name;
        self
    }

    /// A record of the security detectors: `name` at `severity`; the caller adds the
    /// address or key id and `details`.
    pub fn security(name: SecurityEvent, severity: Severity, result: Outcome) -> AuditEvent {
        let mut event = AuditEvent::empty(EventType::Security, result);
        event.severity = severity;
        event.security_event = Some(name);
        event.action = Some(name.as_str().to_string());
        event
    }

    /// Adds who the caller was: subject, kind, auth method, key id, the SHA-256 of the
    /// session id, role, role source and groups.
    pub fn with_principal(mut self, p: &Principal) -> AuditEvent {
        self.user_id = Some(p.subject.clone());
        self.principal_kind = Some(p.kind);
        self.auth_method = Some(p.auth);
        self.key_id = p.key_id.clone();
        self.session_sha256 = p.session_id.as_deref().map(sha256_hex);
        self.role = Some(p.role.clone());
        self.role_source = Some(p.role_source);
        self.groups = p.groups.clone();
        self
    }

    /// Adds what the request asked of the model: action name, permissions, preset, LoRAs,
    /// image count, model, and the prompts — their SHA-256 when `redact` is true, else their
    /// text (cut at [`MAX_PROMPT_BYTES`]). For LLM requests without a main prompt, the
    /// prompt is every text the model reads, joined with newlines.
    pub fn with_action(mut self, a: &Action, redact: bool) -> AuditEvent {
        self.action = Some(a.name.clone());
        self.permissions = a.permissions.clone();
        self.preset = a.preset.clone();
        self.loras = a.loras.clone();
        self.image_number = a.image_number;
        self.model = a.model.clone();
        let prompt = match &a.prompt {
            Some(p) => Some(p.clone()),
            None if !a.prompts.is_empty() => Some(a.prompts.join("\n")),
            None => None,
        };
        let mut truncated = false;
        let mut keep = |text: &str| {
            let (kept, cut_off) = cut(text, MAX_PROMPT_BYTES);
            truncated |= cut_off;
            kept.to_string()
        };
        if redact {
            self.prompt = None;
            self.negative_prompt = None;
            self.prompt_sha256 = prompt.as_deref().map(sha256_hex);
            self.negative_prompt_sha256 = a.negative_prompt.as_deref().map(sha256_hex);
        } else {
            self.prompt = prompt.as_deref().map(&mut keep);
            self.negative_prompt = a.negative_prompt.as_deref().map(&mut keep);
            self.prompt_sha256 = None;
            self.negative_prompt_sha256 = None;
        }
        self.prompt_truncated = truncated;
        self
    }

    /// Sets the HTTP status a refused caller received (the protocol layer knows it).
    pub fn with_status(mut self, status: u16) -> AuditEvent {
        self.status = Some(status);
        self
    }

    /// An admin change that was made: `actor` (`cli:alice`, `system`), `action`
    /// (`key.create`), `target` (`key:0123…`) and `details` (a JSON object; never secrets).
    pub fn admin(
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> AuditEvent {
        let mut event = AuditEvent::empty(EventType::Admin, Outcome::Ok);
        event.actor = Some(short(actor));
        event.action = Some(short(action));
        event.target = Some(short(target));
        event.details = (!details.is_null()).then_some(details);
        event.classified()
    }

    /// A policy reload by the running server: `ok` with the new version, or `failed` with
    /// the validation error (the old policy stays in force).
    pub fn policy_reload(file: &str, outcome: Result<&str, &str>) -> AuditEvent {
        let mut event = AuditEvent::admin(
            "system",
            "policy.reload",
            &format!("policy:{file}"),
            serde_json::Value::Null,
        );
        match outcome {
            Ok(version) => event.policy_version = Some(version.to_string()),
            Err(error) => {
                event.result = Outcome::Failed;
                event.reason = Some(short(error));
            }
        }
        event.classified()
    }
}
