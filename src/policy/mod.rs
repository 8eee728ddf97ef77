//! The decision on an authenticated, understood request: role capabilities and key scopes.
//!
//! Stages run in a fixed order so the first refusal is the one reported: permissions (role,
//! then key scopes), then the role's model limits (preset, LoRAs, base model, image count,
//! resolution).

pub mod approvals;
pub mod approved;
mod capabilities;
pub mod content;
pub mod quota;
mod role;
pub mod rules;
pub mod templates;

use std::collections::BTreeMap;

pub use capabilities::check_capabilities;
pub use role::{NameSet, Role};

pub use content::{ContentFindings, ContentPolicy, PiiAction, PiiCategory};
pub use rules::{Effect, RuleInput, RuleOutcome, RuleSet, RuleSpec};
pub use templates::{Template, matches_any};

pub use approvals::{
    APPROVAL_HEADER, ApprovalError, Fingerprint, Redeemed, fingerprint, pending_denial,
    redeem_approval, release_approval, request_approval,
};
pub use quota::{QuotaConfig, QuotaGrant, StoredLimits};

use crate::domain::{Action, Denial, DenyKind, Permission, Principal};
use crate::inference::RouteTable;

/// A validated, compiled policy (policy.yaml). Replaced atomically on reload.
#[derive(Debug)]
pub struct Policy {
    /// A short content hash of the file that produced this policy, for audit.
    pub version: String,
    /// The role of a principal with no binding and no mapped group; `None` = such principals
    /// are refused.
    pub default_role: Option<String>,
    /// IdP group → role.
    pub groups: BTreeMap<String, String>,
    pub roles: BTreeMap<String, Role>,
    pub routes: RouteTable,
    /// CEL rules (`rules:`), evaluated in order after the content filters.
    pub rules: RuleSet,
    /// Content filters (`content:`).
    pub content: ContentPolicy,
    /// Approved prompt templates (`templates:`) for roles with `templates_only`.
    pub templates: Vec<Template>,
}

impl Policy {
    /// The role that applies to a principal with these groups and no explicit binding, and
    /// whether it came from a group. Several matching groups: the most privileged role wins.
    pub fn role_for_groups(&self, groups: &[String]) -> Option<(&str, bool)> {
        let best = groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .filter_map(|r| self.roles.get(r))
            .max_by(|a, b| a.privilege().cmp(&b.privilege()).then(b.name.cmp(&a.name)));
        match best {
            Some(role) => Some((role.name.as_str(), true)),
            None => self.default_role.as_deref().map(|r| (r, false)),
        }
    }
}

/// Checks that the principal may do what the action asks; the first failing check refuses.
pub fn decide(policy: &Policy, principal: &Principal, action: &Action) -> Result<(), Denial> {
    let Some(role) = policy.roles.get(&principal.role) else {
        // A binding to a role the current policy no longer defines: fail closed.
        return Err(Denial::new(
            DenyKind::Forbidden,
            "unknown_role",
            format!(
                "role `{}` is not defined by the current policy",
                principal.role
            ),
        ));
    };
    for &permission in &action.permissions {
        check_permission(role, principal, permission)?;
    }
    check_capabilities(role, action)
}

fn check_permission(
    role: &Role,
    principal: &Principal,
    permission: Permission,
) -> Result<(), Denial> {
    if !role.grants(permission) {
        return Err(Denial::new(
            DenyKind::Forbidden,
            "permission_denied",
            format!("role `{}` does not grant `{permission}`", role.name),
        )
        .with_rule(format!("roles.{}.permissions", role.name)));
    }
    if let Some(scopes) = &principal.scopes
        && !scopes.contains(&permission)
    {
        return Err(Denial::new(
            DenyKind::Forbidden,
            "insufficient_scope",
            format!("the credential's scopes do not include `{permission}`"),
        )
        .with_rule("key.scopes"));
    }
    Ok(())
}

/// Checks a request's texts after [`decide`] allowed it: a `templates_only` role's prompts must
/// match a template of the policy or one of `approved` (templates approved at run time), then the
/// content filters scan every prompt. The findings (PII categories) feed the rules
/// (`RuleInput::pii`) and the audit redaction.
///
/// Refusals: 403 `template_required`; 400 `content_blocked` naming the category, never the text.
pub fn check_content_and_templates(
    policy: &Policy,
    principal: &Principal,
    action: &Action,
    approved: &[Template],
) -> Result<ContentFindings, Denial> {
    let Some(role) = policy.roles.get(&principal.role) else {
        return Err(Denial::new(
            DenyKind::Forbidden,
            "unknown_role",
            format!(
                "role `{}` is not defined by the current policy",
                principal.role
            ),
        ));
    };
    if role.templates_only {
        let off_template = content::positive_texts(action).any(|prompt| {
            matches_any(prompt, &policy.templates)
                .or_else(|| matches_any(prompt, approved))
                .is_none()
        });
        if off_template {
            return Err(Denial::new(
                DenyKind::Forbidden,
                "template_required",
                format!(
                    "role `{}` may only use approved prompt templates, and the prompt matches none",
                    role.name
                ),
            )
            .with_rule(format!("roles.{}.templates_only", role.name)));
        }
    }
    let findings = policy.content.scan(action);
    match &findings.denied {
        Some(denial) => Err(denial.clone()),
        None => Ok(findings),
    }
}

/// Why a stored user may not act with a permission outside the Check path (deciding
/// approvals, managing templates).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("user `{0}` is disabled")]
    Disabled(String),
    #[error(
        "user `{user}` has no role binding in the store; bind one that grants {permission} with `users set-role`"
    )]
    NoRole {
        user: String,
        permission: Permission,
    },
    #[error("user `{user}` has role `{role}`, which the current policy does not define")]
    UnknownRole { user: String, role: String },
    #[error("role `{role}` of user `{user}` does not grant {permission}")]
    NotAllowed {
        user: String,
        role: String,
        permission: Permission,
    },
}

/// Checks that a stored user may act with `permission`: enabled, and bound to a role of the
/// current policy that grants it (an admin role with `["*"]` does).
pub fn check_user_grants(
    policy: &Policy,
    user: &crate::store::UserRecord,
    permission: Permission,
) -> Result<(), GrantError> {
    let name = user.username.clone();
    if user.disabled {
        return Err(GrantError::Disabled(name));
    }
    let Some(role_name) = &user.role else {
        return Err(GrantError::NoRole {
            user: name,
            permission,
        });
    };
    let Some(role) = policy.roles.get(role_name) else {
        return Err(GrantError::UnknownRole {
            user: name,
            role: role_name.clone(),
        });
    };
    if !role.grants(permission) {
        return Err(GrantError::NotAllowed {
            user: name,
            role: role_name.clone(),
            permission,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
