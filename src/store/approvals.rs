//! Approvals: requests a `require_approval` rule held back until an approver decides.
//!
//! An approval belongs to one principal and one request fingerprint (a hash of the request's
//! authorization-relevant attributes). It is `pending` until an approver approves or rejects
//! it, and an approved one is spent (`used`) by the one retry that redeems it. Pending and
//! approved approvals expire at `expires_at`; expiry is judged against the caller's clock and
//! never stored.

use std::fmt;
use std::str::FromStr;

use super::StoreResult;
use crate::domain::PrincipalKind;

/// An approval's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an approver.
    Pending,
    /// Approved and not yet redeemed.
    Approved,
    /// Rejected by an approver.
    Rejected,
    /// Approved and redeemed by a retry (spent).
    Used,
}

impl ApprovalStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Used => "used",
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval status `{0}` (known: pending, approved, rejected, used)")]
pub struct UnknownApprovalStatus(pub String);

impl FromStr for ApprovalStatus {
    type Err = UnknownApprovalStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(ApprovalStatus::Pending),
            "approved" => Ok(ApprovalStatus::Approved),
            "rejected" => Ok(ApprovalStatus::Rejected),
            "used" => Ok(ApprovalStatus::Used),
            other => Err(UnknownApprovalStatus(other.to_string())),
        }
    }
}

/// An approval as stored. Never holds prompt text or image data: only the fingerprint hash
/// and a summary of the attributes an approver judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// `ap_` + 22 base62 characters.
    pub id: String,
    /// Who asked.
    pub principal_kind: PrincipalKind,
    pub subject: String,
    /// Lower-case hex SHA-256 of the request's authorization-relevant attributes.
    pub fingerprint: String,
    /// JSON object describing the request for approvers (method, path, permissions, preset,
    /// LoRAs, image count, model, token budget…).
    pub summary: String,
    /// The rule that asked for approval, when known.
    pub rule: Option<String>,
    pub status: ApprovalStatus,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; pending and approved approvals are expired from then on.
    pub expires_at: i64,
    /// When it was approved or rejected, and by whom.
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    /// When it was redeemed.
    pub used_at: Option<i64>,
}

impl ApprovalRecord {
    /// True when the approval can no longer be decided or redeemed because its time is up
    /// (rejected and used approvals are final and never "expire").
    pub fn is_expired(&self, now: i64) -> bool {
        matches!(
            self.status,
            ApprovalStatus::Pending | ApprovalStatus::Approved
        ) && self.expires_at <= now
    }

    /// The status as people see it at `now`: `expired` for a pending or approved approval
    /// past its expiry, otherwise the stored status.
    pub fn effective_status(&self, now: i64) -> &'static str {
        if self.is_expired(now) {
            "expired"
        } else {
            self.status.as_str()
        }
    }
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDecision {
    Approve,
    Reject,
}

/// What [`ApprovalStore::decide_approval`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideOutcome {
    /// The decision was recorded; the record as it is now.
    Decided(ApprovalRecord),
    /// No approval has this id.
    NotFound,
    /// The approval cannot take this decision (already decided, used or expired); the
    /// record as it is.
    Refused(ApprovalRecord),
}

/// What [`ApprovalStore::redeem_approval`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The approval was approved, unexpired and matched the principal and fingerprint: it is
    /// now `used`. The record as it is now.
    Redeemed(ApprovalRecord),
    /// No approval has this id.
    NotFound,
    /// Nothing changed; the record as it is (the caller tells the reason from it).
    Refused(ApprovalRecord),
}

/// Storage of approvals.
#[async_trait::async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Stores `new` (status pending) unless the same principal already has an unexpired
    /// pending or approved (unused) approval for the same fingerprint at `now`, in which case
    /// that one is returned instead; atomic, so identical concurrent requests share one.
    async fn create_or_reuse_approval(
        &self,
        new: &ApprovalRecord,
        now: i64,
    ) -> StoreResult<ApprovalRecord>;

    /// An approval by id.
    async fn get_approval(&self, id: &str) -> StoreResult<Option<ApprovalRecord>>;

    /// Approvals, newest first; with `status`, only those whose stored status is that.
    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> StoreResult<Vec<ApprovalRecord>>;

    /// Records a decision by `approver` at `now`. Approving needs a pending, unexpired
    /// approval; rejecting a pending or approved (unused), unexpired one.
    async fn decide_approval(
        &self,
        id: &str,
        decision: ApprovalDecision,
        approver: &str,
        now: i64,
    ) -> StoreResult<DecideOutcome>;

    /// Spends an approval atomically: only an approved, unexpired approval of this principal
    /// with this fingerprint becomes `used` (once, however many retries race).
    async fn redeem_approval(
        &self,
        id: &str,
        principal_kind: PrincipalKind,
        subject: &str,
        fingerprint: &str,
        now: i64,
    ) -> StoreResult<RedeemOutcome>;

    /// Undoes a redemption whose request was refused by a later stage (the quota): a `used`
    /// approval goes back to `approved` so the same request can be retried before expiry.
    /// Returns false when the approval was not `used`.
    async fn release_approval(&self, id: &str) -> StoreResult<bool>;
}
