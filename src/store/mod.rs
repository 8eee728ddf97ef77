//! Storage of users, service accounts, role bindings, API keys, refresh tokens and
//! inferguard's own signing keys behind one interface.
//!
//! The backend (embedded SQLite by default, PostgreSQL for several replicas) is picked at
//! runtime from `store.url`. Every mutation also appends a row to a change feed, which running
//! servers poll to invalidate their caches, so a change made by the CLI in another process
//! reaches them within the poll interval.

mod approvals;
mod quota;
mod records;
mod sessions;
mod sqlite;
mod templates;

use std::sync::Arc;

pub use records::{
    ApiKeyRecord, Change, OwnerRef, RefreshTokenRecord, ServiceAccountRecord, SigningKeyRecord,
    UserRecord,
};
pub use sqlite::SqliteStore;

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
}

/// A shared handle to whichever backend the configuration chose.
pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`) and runs its migrations.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Err(StoreError::Unavailable(
            "the PostgreSQL store is not built yet; use sqlite://".into(),
        ))
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
