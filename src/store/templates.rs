//! Prompt templates managed at run time: proposed by a user whose role grants
//! `templates:manage`, approved by another such user, and retired when no longer wanted.
//!
//! Only approved templates apply (to roles with `templates_only: true`, next to the static
//! templates of policy.yaml). A template's lifecycle is `proposed` → `approved` → `retired`,
//! or `proposed` → `retired` (a withdrawn proposal); retired is final, and a name is never
//! reused. Every status change appends to the change feed (entity `template`, id = the name),
//! so running servers reload the approved set within the poll interval.

use std::fmt;
use std::str::FromStr;

use super::StoreResult;

/// A template's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    /// Waiting for approval; does not apply yet.
    Proposed,
    /// Applies to `templates_only` roles.
    Approved,
    /// No longer applies; final.
    Retired,
}

impl TemplateStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Proposed => "proposed",
            TemplateStatus::Approved => "approved",
            TemplateStatus::Retired => "retired",
        }
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown template status `{0}` (known: proposed, approved, retired)")]
pub struct UnknownTemplateStatus(pub String);

impl FromStr for TemplateStatus {
    type Err = UnknownTemplateStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "proposed" => Ok(TemplateStatus::Proposed),
            "approved" => Ok(TemplateStatus::Approved),
            "retired" => Ok(TemplateStatus::Retired),
            other => Err(UnknownTemplateStatus(other.to_string())),
        }
    }
}

/// A template as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Unique; never reused, even after retirement.
    pub name: String,
    /// The template text with `{placeholders}` (validated when added).
    pub text: String,
    /// Most words in one placeholder value (1–50).
    pub max_words: u32,
    pub status: TemplateStatus,
    /// Who proposed it and when (unix seconds).
    pub proposed_by: String,
    pub proposed_at: i64,
    /// Who approved it and when.
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    /// Who retired it and when.
    pub retired_by: Option<String>,
    pub retired_at: Option<i64>,
}

/// What an approval or retirement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOutcome {
    /// The status changed; the record as it is now.
    Changed(TemplateRecord),
    /// No template has this name.
    NotFound,
    /// The template is not in a state that allows the change; the record as it is.
    Refused(TemplateRecord),
}

/// Storage of run-time prompt templates.
#[async_trait::async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a new template, status `proposed`, proposed by `proposed_by` at `now`.
    /// `Conflict` when the name exists (in any state).
    async fn add_template(
        &self,
        name: &str,
        text: &str,
        max_words: u32,
        proposed_by: &str,
        now: i64,
    ) -> StoreResult<TemplateRecord>;

    /// A template by name.
    async fn get_template(&self, name: &str) -> StoreResult<Option<TemplateRecord>>;

    /// Approves a proposed template (only a proposed one).
    async fn approve_template(
        &self,
        name: &str,
        approved_by: &str,
        now: i64,
    ) -> StoreResult<TemplateOutcome>;

    /// Retires a proposed or approved template.
    async fn retire_template(&self, name: &str, by: &str, now: i64)
    -> StoreResult<TemplateOutcome>;

    /// Templates ordered by name; with `status`, only those in that state.
    async fn list_templates(
        &self,
        status: Option<TemplateStatus>,
    ) -> StoreResult<Vec<TemplateRecord>>;

    /// The approved templates, ordered by name.
    async fn approved_templates(&self) -> StoreResult<Vec<TemplateRecord>> {
        self.list_templates(Some(TemplateStatus::Approved)).await
    }
}
