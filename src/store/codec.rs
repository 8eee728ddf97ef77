//! Backend-independent pieces of the store: how records' JSON columns and owner kinds are
//! encoded, the labels in `Conflict`/`NotFound` errors, and the clock. Both backends use these,
//! so SQLite and PostgreSQL store the same text and report the same errors.

use std::collections::BTreeMap;

use super::{StoreError, StoreResult};
use crate::domain::PrincipalKind;

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else as usual.
pub(super) fn conflict(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => e.into(),
    }
}

pub(super) fn user_label(username: &str) -> String {
    format!("user `{username}`")
}

pub(super) fn service_account_label(name: &str) -> String {
    format!("service account `{name}`")
}

pub(super) fn key_label(id: &str) -> String {
    format!("key `{id}`")
}

pub(super) fn attributes_to_json(attributes: &BTreeMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(attributes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn attributes_from_json(text: &str) -> StoreResult<BTreeMap<String, String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("attributes are not a JSON string map: {e}")))
}

pub(super) fn scopes_to_json(scopes: &Option<Vec<String>>) -> StoreResult<Option<String>> {
    scopes
        .as_ref()
        .map(|s| serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

pub(super) fn scopes_from_json(text: Option<String>) -> StoreResult<Option<Vec<String>>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("scopes are not a JSON string list: {e}")))
    })
    .transpose()
}

pub(super) fn owner_kind_from_str(kind: &str) -> StoreResult<PrincipalKind> {
    match kind {
        "user" => Ok(PrincipalKind::User),
        "service_account" => Ok(PrincipalKind::ServiceAccount),
        other => Err(StoreError::Corrupt(format!(
            "unknown key owner kind `{other}`"
        ))),
    }
}
