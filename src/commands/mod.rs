//! Administrative CLI commands that work directly on the configured store.

pub mod approvals;
pub mod audit;
pub mod keys;
pub mod report;
pub mod service_accounts;
pub mod sessions;
pub mod templates;
pub mod users;

use std::collections::BTreeSet;

use crate::store::DynStore;

/// What every store-backed command needs: the store and the role names the policy defines
/// (so `--role` is checked against the policy, never stored when unknown).
pub struct CliContext {
    pub store: DynStore,
    pub known_roles: BTreeSet<String>,
    /// The audit trail admin changes are recorded in (`None`: no `audit.file` configured).
    pub audit: Option<crate::audit::AuditTrail>,
}
