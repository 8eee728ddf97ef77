//! Storage of users, service accounts, role bindings, API keys, refresh tokens and
//! inferguard's own signing keys behind one interface.
//!
//! The backend (embedded SQLite by default, PostgreSQL for several replicas) is picked at
//! runtime from `store.url`. Every mutation also appends a row to a change feed, which running
//! servers follow to invalidate their caches (polled; on PostgreSQL also pushed by
//! LISTEN/NOTIFY), so a change made by the CLI in another process or by another replica
//! reaches them within the poll interval, on PostgreSQL at once.

mod approvals;
mod codec;
mod postgres;
mod provisioning;
mod quota;
mod records;
mod sessions;
mod sqlite;
mod templates;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use postgres::{CHANGE_CHANNEL, ChangeListener, ChangeSignal, PostgresStore};
pub use records::{
    ApiKeyRecord, Change, OwnerRef, RefreshTokenRecord, ServiceAccountRecord, SigningKeyRecord,
    UserRecord,
};
pub use sqlite::SqliteStore;

pub use provisioning::{DeactivationOutcome, ScimGroupChange, ScimGroupRecord, ScimUserRecord};

pub use approvals::{
    ApprovalDecision, ApprovalRecord, ApprovalStatus, ApprovalStore, DecideOutcome, RedeemOutcome,
    UnknownApprovalStatus,
};
pub use quota::{QuotaCounter, QuotaOutcome, QuotaPeriod, QuotaStore, QuotaUnit};
pub use sessions::{
    ENDED_SESSION_RETENTION_SECS, LoginStateRecord, RefreshedClaims, SessionRecord, SessionStore,
};
pub use templates::{
    TemplateOutcome, TemplateRecord, TemplateStatus, TemplateStore, UnknownTemplateStatus,
};

/// Errors from the store. `Unavailable` is the only transient kind: the caller may decide
/// from a cache, and must otherwise answer 503 (never allow).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The one storage interface every backend implements.
#[async_trait::async_trait]
pub trait Store:
    QuotaStore + ApprovalStore + SessionStore + TemplateStore + Send + Sync + 'static
{
    // === users ===
    /// Creates a user; `Conflict` when the username exists.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// A user by username.
    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// All users, ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Sets (or replaces) one attribute; `NotFound` when the user does not exist.
    async fn set_user_attr(&self, username: &str, key: &str, value: &str) -> StoreResult<()>;
    /// Disables a user; `NotFound` when absent.
    async fn disable_user(&self, username: &str) -> StoreResult<()>;
    /// Binds a user to a role, creating the user record when it does not exist yet (an IdP
    /// user seen only by subject).
    async fn set_user_role(&self, username: &str, role: &str) -> StoreResult<()>;

    // === service accounts ===
    /// Creates a service account; `Conflict` when the name exists.
    async fn create_service_account(&self, sa: &ServiceAccountRecord) -> StoreResult<()>;
    /// A service account by name.
    async fn get_service_account(&self, name: &str) -> StoreResult<Option<ServiceAccountRecord>>;
    /// All service accounts, ordered by name.
    async fn list_service_accounts(&self) -> StoreResult<Vec<ServiceAccountRecord>>;

    // === API keys ===
    /// Stores a new key (only its secret's hash).
    async fn create_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// A key by id.
    async fn get_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// All keys, newest first.
    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key at `now` (unix seconds); `NotFound` when absent. Revoking twice is fine.
    async fn revoke_key(&self, id: &str, now: i64) -> StoreResult<()>;

    // === signing keys ===
    /// The active signing key for `purpose`, created first when there is none: `generate`
    /// returns a new key's `(kid, PKCS#8 DER)`. Safe when several processes start at once on
    /// one store: all of them get the one key that was stored first.
    async fn get_or_create_signing_key(
        &self,
        purpose: &str,
        generate: &(dyn Fn() -> (String, Vec<u8>) + Send + Sync),
    ) -> StoreResult<SigningKeyRecord>;

    // === refresh tokens ===
    /// Stores a new refresh token (only its hash). `Conflict` when the hash exists or when
    /// the token's family has been revoked (a rotation racing a revocation loses). Also drops
    /// tokens that expired before `token.created_at`.
    async fn create_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()>;
    /// Spends a refresh token in one transaction: when it is unused, unrevoked and unexpired
    /// at `now` it is marked used. Returns the record as it was *before* this call (so
    /// `used_at: Some(_)` means it had been spent already: a reuse), or `None` when unknown.
    async fn use_refresh_token(
        &self,
        token_sha256: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Revokes every token of a family at `now`; returns how many were not revoked before.
    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> StoreResult<u64>;
    /// Revokes every refresh token of a user at `now`; returns how many were not revoked
    /// before.
    async fn revoke_refresh_tokens_for_user(&self, username: &str, now: i64) -> StoreResult<u64>;

    // === change feed ===
    /// The highest change sequence number (0 when none).
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Changes with a sequence number above `after`, oldest first, at most `limit`.
    async fn changes_since(&self, after: i64, limit: i64) -> StoreResult<Vec<Change>>;
    /// A listener that wakes on every committed change, when the backend pushes them
    /// (PostgreSQL LISTEN/NOTIFY); `None` when the feed can only be polled (SQLite).
    fn change_listener(&self) -> Option<ChangeListener> {
        None
    }

    // === key hygiene and SCIM provisioning (issue 7) ===
    // Defaulted so a backend that has not implemented them yet still compiles; a caller gets
    // `Unavailable` (and fails closed) until it does.

    /// Records key uses in one batch: each key's `last_used_at` becomes the larger of the
    /// stored value and the given time (so out-of-order batches never move it back). Unknown
    /// ids are ignored. Not in the change feed (no cache depends on it).
    async fn record_key_uses(&self, uses: &[(String, i64)]) -> StoreResult<()> {
        let _ = uses;
        Err(unsupported("record_key_uses"))
    }

    /// Sets a key's expiry (rotation grace: the old key keeps working until then);
    /// `NotFound` when absent. In the change feed, so every server's key cache sees it.
    async fn set_key_expiry(&self, id: &str, expires_at: i64) -> StoreResult<()> {
        let _ = (id, expires_at);
        Err(unsupported("set_key_expiry"))
    }

    /// Re-enables a disabled user; `NotFound` when absent. In the change feed.
    async fn enable_user(&self, username: &str) -> StoreResult<()> {
        let _ = username;
        Err(unsupported("enable_user"))
    }

    /// Deactivates a user in ONE transaction: disables the user, ends their browser sessions
    /// (reason `deprovisioned`), revokes their API keys and refresh tokens, and writes the
    /// change rows. `NotFound` when absent. Deactivating twice is fine.
    async fn deactivate_user(&self, username: &str, now: i64) -> StoreResult<DeactivationOutcome> {
        let _ = (username, now);
        Err(unsupported("deactivate_user"))
    }

    /// Creates a SCIM user linked to `user`: creates the `users` row, or adopts an existing
    /// user of that name that has no SCIM link yet (its email and disabled flag then follow
    /// `user`). `Conflict` when the username is linked already. In the change feed.
    async fn scim_create_user(&self, scim: &ScimUserRecord, user: &UserRecord) -> StoreResult<()> {
        let _ = (scim, user);
        Err(unsupported("scim_create_user"))
    }

    /// A SCIM user by SCIM id (`active` read from the user's disabled flag).
    async fn scim_get_user(&self, scim_id: &str) -> StoreResult<Option<ScimUserRecord>> {
        let _ = scim_id;
        Err(unsupported("scim_get_user"))
    }

    /// A SCIM user by store username.
    async fn scim_get_user_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<ScimUserRecord>> {
        let _ = username;
        Err(unsupported("scim_get_user_by_username"))
    }

    /// All SCIM users, ordered by username.
    async fn scim_list_users(&self) -> StoreResult<Vec<ScimUserRecord>> {
        Err(unsupported("scim_list_users"))
    }

    /// Replaces a SCIM user's attributes (external id, names, email, `updated_at`), found by
    /// SCIM id; the username is never changed (renaming would orphan keys and sessions).
    /// Does not touch `active`: use `enable_user` / `deactivate_user`. `NotFound` when
    /// absent. In the change feed.
    async fn scim_update_user(&self, scim: &ScimUserRecord) -> StoreResult<()> {
        let _ = scim;
        Err(unsupported("scim_update_user"))
    }

    /// Creates a SCIM group with its members; `Conflict` when the display name exists,
    /// `NotFound` when a member is not a SCIM user. In the change feed (each member).
    async fn scim_create_group(&self, group: &ScimGroupRecord) -> StoreResult<()> {
        let _ = group;
        Err(unsupported("scim_create_group"))
    }

    /// A SCIM group by SCIM id, with its members.
    async fn scim_get_group(&self, scim_id: &str) -> StoreResult<Option<ScimGroupRecord>> {
        let _ = scim_id;
        Err(unsupported("scim_get_group"))
    }

    /// All SCIM groups with their members, ordered by display name.
    async fn scim_list_groups(&self) -> StoreResult<Vec<ScimGroupRecord>> {
        Err(unsupported("scim_list_groups"))
    }

    /// Applies `change` to a group in one transaction at `now` and returns the group after
    /// it; `NotFound` when the group or an added member is absent, `Conflict` when the new
    /// display name is taken. Every user whose membership changed (or every member, when the
    /// name changed) gets a `user` change row, so caches re-resolve their roles.
    async fn scim_modify_group(
        &self,
        scim_id: &str,
        change: &ScimGroupChange,
        now: i64,
    ) -> StoreResult<ScimGroupRecord> {
        let _ = (scim_id, change, now);
        Err(unsupported("scim_modify_group"))
    }

    /// Deletes a group; `NotFound` when absent. Its former members get change rows.
    async fn scim_delete_group(&self, scim_id: &str) -> StoreResult<()> {
        let _ = scim_id;
        Err(unsupported("scim_delete_group"))
    }

    /// The display names of the SCIM groups `username` belongs to, sorted.
    async fn scim_groups_for_user(&self, username: &str) -> StoreResult<Vec<String>> {
        let _ = username;
        Err(unsupported("scim_groups_for_user"))
    }
    // === end key hygiene and SCIM provisioning ===
}

/// The error a defaulted trait method returns on a backend that does not implement it yet.
fn unsupported(method: &str) -> StoreError {
    StoreError::Unavailable(format!("{method} not supported by this store backend"))
}

/// A shared handle to whichever backend the configuration chose.
pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`) and runs its migrations.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported store url scheme in `{}` (use sqlite://FILE or postgres://…)",
            redacted_url(url)
        )))
    }
}

/// The url with any password replaced, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
