use std::collections::BTreeMap;

/// Whether a principal is a person or a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    /// The stored name: `user` or `service_account`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

/// How the caller proved who they are; sent upstream as `x-inferguard-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Session,
}

impl AuthMethod {
    /// The header value: `api_key`, `jwt` or `session`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Session => "session",
        }
    }
}

/// Where a principal's role came from, recorded for audit and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// An explicit role binding in the store (`users set-role`, service account role).
    Binding,
    /// An IdP group mapped through `groups:` in policy.yaml.
    Group,
    /// Nothing else matched: the policy's `default_role`.
    Default,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Stable subject: the username, the IdP `sub`, or the service account name.
    pub subject: String,
    pub kind: PrincipalKind,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The effective role name (always one defined in the policy when decided).
    pub role: String,
    pub role_source: RoleSource,
    pub auth: AuthMethod,
    /// The API key id when authenticated with a key.
    pub key_id: Option<String>,
    /// Scopes the credential is narrowed to; `None` means the role's full permissions.
    pub scopes: Option<Vec<crate::domain::Permission>>,
    /// The session id (hashed) for browser sessions.
    pub session_id: Option<String>,
    /// True when the caller completed multi-factor authentication (a session or token whose
    /// `amr`/`acr` says so); always false for API keys. Judged by `require_mfa` roles and
    /// routes.
    pub mfa: bool,
    /// Extra attributes for rules (department, clearance_level, …).
    pub attributes: BTreeMap<String, String>,
}
