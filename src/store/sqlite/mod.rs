//! The embedded SQLite backend (the default store).
//!
//! One database file is shared by the server and the CLI, possibly in several processes at
//! once: the file is opened in WAL mode (readers never block the writer) with a busy timeout
//! (a writer waits for another process' write instead of failing at once), and every write
//! transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up front and never has
//! to upgrade a read snapshot (which SQLite refuses without waiting).
//!
//! Every mutation appends to the `changes` table in the same transaction: a running server
//! polls that feed to drop cached entries, so a change made anywhere reaches it quickly.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

use super::{
    ApiKeyRecord, Change, DeactivationOutcome, OwnerRef, RefreshTokenRecord, ScimGroupChange,
    ScimGroupRecord, ScimUserRecord, ServiceAccountRecord, SigningKeyRecord, Store, StoreError,
    StoreResult, UserRecord,
};

mod approvals;
mod key_hygiene;
mod quota;
mod scim;
mod sessions;
mod templates;

/// How long a statement waits for another connection's (or process') write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept by one process.
const MAX_CONNECTIONS: u32 = 8;
/// The page cache of each pooled connection, in KiB (SQLite's default is 2,000 KiB, so 16 MiB
/// over a full pool). Lookups are by primary key and the operating system caches the file
/// anyway; a smaller cache keeps the sidecar's memory near its working set.
const CACHE_SIZE_KIB: u32 = 512;
/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at running the migrations (two processes creating a fresh file at once may race;
/// the loser sees the winner's result on its next attempt).
const MIGRATION_ATTEMPTS: u32 = 10;

/// The migrations, embedded in the binary: `(version, description, sql)`, in order.
/// Files follow sqlx's `<version>_<description>.sql` naming, so the recorded checksums are the
/// same as `sqlx::migrate!("./migrations/sqlite")` would record.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "local_login",
        include_str!("../../../migrations/sqlite/0002_local_login.sql"),
    ),
    (
        3,
        "quotas_approvals",
        include_str!("../../../migrations/sqlite/0003_quotas_approvals.sql"),
    ),
    (
        4,
        "sessions",
        include_str!("../../../migrations/sqlite/0004_sessions.sql"),
    ),
    (
        5,
        "templates",
        include_str!("../../../migrations/sqlite/0005_templates.sql"),
    ),
    (
        6,
        "key_hygiene",
        include_str!("../../../migrations/sqlite/0006_key_hygiene.sql"),
    ),
    (
        7,
        "scim",
        include_str!("../../../migrations/sqlite/0007_scim.sql"),
    ),
];

/// Starts a write transaction holding the write lock from its first statement.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The SQLite store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing, unless the url says `mode=ro` or `mode=rw`) the database
    /// named by a `sqlite://FILE[?…]` url, in WAL mode with foreign keys on and a busy timeout,
    /// and runs the embedded migrations.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let in_memory = url.contains(":memory:") || query_param(url, "mode") == Some("memory");
        let mut options = SqliteConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("invalid SQLite store url `{url}`: {e}"))
        })?;
        options = options
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Negative: a size in KiB rather than in pages.
            .pragma("cache_size", format!("-{CACHE_SIZE_KIB}"));
        if query_param(url, "mode").is_none() {
            options = options.create_if_missing(true);
        }
        if !in_memory {
            options = options.journal_mode(SqliteJournalMode::Wal);
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open SQLite store `{url}`: {e}"))
            })?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies any embedded migration the database has not seen yet.
    async fn migrate(&self) -> StoreResult<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    (*sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        let mut attempt = 1;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < MIGRATION_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "store migration failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot migrate the SQLite store: {e}"
                    )));
                }
            }
        }
    }
}

/// The value of `name` in the url's query string, if present.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Current time in unix seconds.
use crate::store::codec::{
    attributes_from_json, attributes_to_json, conflict, key_label, now, owner_kind_from_str,
    scopes_from_json, scopes_to_json, service_account_label, user_label,
};

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        attributes: attributes_from_json(&row.try_get::<String, _>("attributes")?)?,
        disabled: row.try_get("disabled")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

fn service_account_from_row(row: &SqliteRow) -> StoreResult<ServiceAccountRecord> {
    Ok(ServiceAccountRecord {
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        attributes: attributes_from_json(&row.try_get::<String, _>("attributes")?)?,
        daily_images: row.try_get("daily_images")?,
        daily_tokens: row.try_get("daily_tokens")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: OwnerRef {
            kind: owner_kind_from_str(&row.try_get::<String, _>("owner_kind")?)?,
            name: row.try_get("owner")?,
        },
        secret_sha256: row.try_get("secret_sha256")?,
        scopes: scopes_from_json(row.try_get("scopes")?)?,
        daily_images: row.try_get("daily_images")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        allowed_networks: scopes_from_json(row.try_get("allowed_networks")?)?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

const USER_COLUMNS: &str =
    "SELECT username, email, role, attributes, disabled, password_hash, created_at FROM users";
const SERVICE_ACCOUNT_COLUMNS: &str = "SELECT name, role, attributes, daily_images, daily_tokens, \
     disabled, created_at FROM service_accounts";
const KEY_COLUMNS: &str = "SELECT id, name, owner_kind, owner, secret_sha256, scopes, \
     daily_images, created_at, expires_at, revoked_at, allowed_networks, last_used_at \
     FROM api_keys";

const SIGNING_KEY_COLUMNS: &str = "SELECT kid, purpose, private_key, created_at FROM signing_keys";
const REFRESH_TOKEN_COLUMNS: &str = "SELECT token_sha256, family_id, username, created_at, \
     expires_at, used_at, revoked_at FROM refresh_tokens";

fn signing_key_from_row(row: &SqliteRow) -> StoreResult<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        purpose: row.try_get("purpose")?,
        private_key_der: row.try_get("private_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn refresh_token_from_row(row: &SqliteRow) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        token_sha256: row.try_get("token_sha256")?,
        family_id: row.try_get("family_id")?,
        username: row.try_get("username")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Revokes the not yet revoked tokens matching `filter` (`family_id = $2` or
/// `username = $2`) inside the caller's transaction, recording one change per family touched.
async fn revoke_refresh_where(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    filter: &'static str,
    value: &str,
    now: i64,
) -> StoreResult<u64> {
    let families: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE {filter} = $2 AND revoked_at IS NULL \
         RETURNING family_id"
    )))
    .bind(now)
    .bind(value)
    .fetch_all(&mut **tx)
    .await?;
    let touched: std::collections::BTreeSet<&str> = families.iter().map(String::as_str).collect();
    for family in touched {
        record_change(tx, "refresh_token", family, now).await?;
    }
    Ok(families.len() as u64)
}

/// Appends one entry to the change feed inside the caller's transaction.
async fn record_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    entity: &str,
    id: &str,
    at: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO changes (entity, id, at) VALUES ($1, $2, $3)")
        .bind(entity)
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let attributes = attributes_to_json(&user.attributes)?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO users (username, email, role, attributes, disabled, password_hash, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.username)
        .bind(&user.email)
        .bind(&user.role)
        .bind(attributes)
        .bind(user.disabled)
        .bind(&user.password_hash)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || user_label(&user.username)))?;
        record_change(&mut tx, "user", &user.username, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("{USER_COLUMNS} WHERE username = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("{USER_COLUMNS} ORDER BY username");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_user_attr(&self, username: &str, key: &str, value: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT attributes FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound(user_label(username)));
        };
        let mut attributes = attributes_from_json(&current)?;
        attributes.insert(key.to_string(), value.to_string());
        sqlx::query("UPDATE users SET attributes = $1 WHERE username = $2")
            .bind(attributes_to_json(&attributes)?)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        record_change(&mut tx, "user", username, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn disable_user(&self, username: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let updated = sqlx::query("UPDATE users SET disabled = TRUE WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(user_label(username)));
        }
        record_change(&mut tx, "user", username, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_user_role(&self, username: &str, role: &str) -> StoreResult<()> {
        let at = now();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO users (username, role, attributes, disabled, created_at) \
             VALUES ($1, $2, '{}', FALSE, $3) \
             ON CONFLICT (username) DO UPDATE SET role = excluded.role",
        )
        .bind(username)
        .bind(role)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        record_change(&mut tx, "user", username, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_service_account(&self, sa: &ServiceAccountRecord) -> StoreResult<()> {
        let attributes = attributes_to_json(&sa.attributes)?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO service_accounts (name, role, attributes, daily_images, daily_tokens, \
             disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&sa.name)
        .bind(&sa.role)
        .bind(attributes)
        .bind(sa.daily_images)
        .bind(sa.daily_tokens)
        .bind(sa.disabled)
        .bind(sa.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || service_account_label(&sa.name)))?;
        record_change(&mut tx, "service_account", &sa.name, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_service_account(&self, name: &str) -> StoreResult<Option<ServiceAccountRecord>> {
        let sql = format!("{SERVICE_ACCOUNT_COLUMNS} WHERE name = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(service_account_from_row)
            .transpose()
    }

    async fn list_service_accounts(&self) -> StoreResult<Vec<ServiceAccountRecord>> {
        let sql = format!("{SERVICE_ACCOUNT_COLUMNS} ORDER BY name");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(service_account_from_row)
            .collect()
    }

    async fn create_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let scopes = scopes_to_json(&key.scopes)?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, owner_kind, owner, secret_sha256, scopes, \
             daily_images, created_at, expires_at, revoked_at, allowed_networks, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.owner.kind.as_str())
        .bind(&key.owner.name)
        .bind(&key.secret_sha256)
        .bind(scopes)
        .bind(key.daily_images)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(scopes_to_json(&key.allowed_networks)?)
        .bind(key.last_used_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || key_label(&key.id)))?;
        record_change(&mut tx, "key", &key.id, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("{KEY_COLUMNS} WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let sql = format!("{KEY_COLUMNS} ORDER BY created_at DESC, id");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn revoke_key(&self, id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // The first revocation time is kept: revoking again changes nothing but is no error.
        let updated =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(key_label(id)));
        }
        record_change(&mut tx, "key", id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_or_create_signing_key(
        &self,
        purpose: &str,
        generate: &(dyn Fn() -> (String, Vec<u8>) + Send + Sync),
    ) -> StoreResult<SigningKeyRecord> {
        let sql = format!("{SIGNING_KEY_COLUMNS} WHERE purpose = $1 AND retired_at IS NULL");
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(purpose)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = existing {
            return signing_key_from_row(&row);
        }
        let (kid, private_key_der) = generate();
        let at = now();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // Another process may have stored its key since the read above: the unique index on
        // the active key per purpose makes this insert a no-op then, and everyone reads the
        // first key stored.
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, purpose, private_key, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&kid)
        .bind(purpose)
        .bind(&private_key_der)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            record_change(&mut tx, "signing_key", &kid, at).await?;
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(purpose)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        signing_key_from_row(&row)
    }

    async fn create_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let family_revoked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM refresh_tokens \
             WHERE family_id = $1 AND revoked_at IS NOT NULL)",
        )
        .bind(&token.family_id)
        .fetch_one(&mut *tx)
        .await?;
        if family_revoked {
            return Err(StoreError::Conflict(format!(
                "revoked refresh token family `{}`",
                token.family_id
            )));
        }
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(token.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_sha256, family_id, username, created_at, \
             expires_at, used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.token_sha256)
        .bind(&token.family_id)
        .bind(&token.username)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.used_at)
        .bind(token.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || "refresh token".to_string()))?;
        record_change(&mut tx, "refresh_token", &token.family_id, token.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_sha256: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let sql = format!("{REFRESH_TOKEN_COLUMNS} WHERE token_sha256 = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_sha256)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let before = refresh_token_from_row(&row)?;
        if before.used_at.is_none() && before.revoked_at.is_none() && before.expires_at > now {
            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_sha256 = $2")
                .bind(now)
                .bind(token_sha256)
                .execute(&mut *tx)
                .await?;
            record_change(&mut tx, "refresh_token", &before.family_id, now).await?;
        }
        tx.commit().await?;
        Ok(Some(before))
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let revoked = revoke_refresh_where(&mut tx, "family_id", family_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn revoke_refresh_tokens_for_user(&self, username: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let revoked = revoke_refresh_where(&mut tx, "username", username, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    async fn changes_since(&self, after: i64, limit: i64) -> StoreResult<Vec<Change>> {
        sqlx::query("SELECT seq, entity, id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(Change {
                    seq: row.try_get("seq")?,
                    entity: row.try_get("entity")?,
                    id: row.try_get("id")?,
                })
            })
            .collect()
    }

    // === key hygiene and SCIM provisioning (bodies in key_hygiene.rs and scim.rs) ===
    async fn record_key_uses(&self, uses: &[(String, i64)]) -> StoreResult<()> {
        self.record_key_uses_impl(uses).await
    }

    async fn set_key_expiry(&self, id: &str, expires_at: i64) -> StoreResult<()> {
        self.set_key_expiry_impl(id, expires_at).await
    }

    async fn enable_user(&self, username: &str) -> StoreResult<()> {
        self.enable_user_impl(username).await
    }

    async fn deactivate_user(&self, username: &str, now: i64) -> StoreResult<DeactivationOutcome> {
        self.deactivate_user_impl(username, now).await
    }

    async fn scim_create_user(&self, scim: &ScimUserRecord, user: &UserRecord) -> StoreResult<()> {
        self.scim_create_user_impl(scim, user).await
    }

    async fn scim_get_user(&self, scim_id: &str) -> StoreResult<Option<ScimUserRecord>> {
        self.scim_get_user_impl("s.scim_id", scim_id).await
    }

    async fn scim_get_user_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<ScimUserRecord>> {
        self.scim_get_user_impl("s.username", username).await
    }

    async fn scim_list_users(&self) -> StoreResult<Vec<ScimUserRecord>> {
        self.scim_list_users_impl().await
    }

    async fn scim_update_user(&self, scim: &ScimUserRecord) -> StoreResult<()> {
        self.scim_update_user_impl(scim).await
    }

    async fn scim_create_group(&self, group: &ScimGroupRecord) -> StoreResult<()> {
        self.scim_create_group_impl(group).await
    }

    async fn scim_get_group(&self, scim_id: &str) -> StoreResult<Option<ScimGroupRecord>> {
        self.scim_get_group_impl(scim_id).await
    }

    async fn scim_list_groups(&self) -> StoreResult<Vec<ScimGroupRecord>> {
        self.scim_list_groups_impl().await
    }

    async fn scim_modify_group(
        &self,
        scim_id: &str,
        change: &ScimGroupChange,
        now: i64,
    ) -> StoreResult<ScimGroupRecord> {
        self.scim_modify_group_impl(scim_id, change, now).await
    }

    async fn scim_delete_group(&self, scim_id: &str) -> StoreResult<()> {
        self.scim_delete_group_impl(scim_id).await
    }

    async fn scim_groups_for_user(&self, username: &str) -> StoreResult<Vec<String>> {
        self.scim_groups_for_user_impl(username).await
    }
    // === end key hygiene and SCIM provisioning ===
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_for(dir: &tempfile::TempDir, query: &str) -> String {
        format!("sqlite://{}{query}", dir.path().join("store.db").display())
    }

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::connect(&url_for(&dir, ""))
            .await
            .expect("store opens");
        (dir, store)
    }

    #[test]
    fn query_params_are_found() {
        assert_eq!(query_param("sqlite://a.db?mode=rwc", "mode"), Some("rwc"));
        assert_eq!(query_param("sqlite://a.db?x=1&mode=ro", "mode"), Some("ro"));
        assert_eq!(query_param("sqlite://a.db", "mode"), None);
        assert_eq!(query_param("sqlite://a.db?model=x", "mode"), None);
    }

    #[tokio::test]
    async fn opens_with_and_without_mode_rwc_and_reopens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = SqliteStore::connect(&url_for(&dir, ""))
            .await
            .expect("creates");
        plain
            .set_user_role("alice", "viewer")
            .await
            .expect("insert");
        drop(plain);
        // Reopening runs the migrations again: they are already applied.
        let rwc = SqliteStore::connect(&url_for(&dir, "?mode=rwc"))
            .await
            .expect("reopens");
        assert!(rwc.get_user("alice").await.expect("get").is_some());

        let other = tempfile::tempdir().expect("temp dir");
        SqliteStore::connect(&url_for(&other, "?mode=rwc"))
            .await
            .expect("creates with mode=rwc");
        assert!(other.path().join("store.db").exists());
    }

    #[tokio::test]
    async fn explicit_read_write_mode_does_not_create() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = SqliteStore::connect(&url_for(&dir, "?mode=rw"))
            .await
            .expect_err("missing file with mode=rw");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn pragmas_are_set() {
        let (_dir, store) = open_store().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(mode.to_lowercase(), "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(busy, 5000);
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(cache, -i64::from(CACHE_SIZE_KIB));
    }

    #[tokio::test]
    async fn concurrent_first_open_of_a_fresh_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = url_for(&dir, "");
        let (a, b) = tokio::join!(SqliteStore::connect(&url), SqliteStore::connect(&url));
        a.expect("first");
        b.expect("second");
    }
}
