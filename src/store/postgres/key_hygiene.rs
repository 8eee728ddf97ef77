//! PostgreSQL bodies of the key-hygiene store methods (batched last-use, rotation expiry) and of
//! user enabling / deactivation.

use super::{
    DeactivationOutcome, PostgresStore, StoreError, StoreResult, key_label, record_change,
    revoke_refresh_where, user_label,
};

/// The session end reason a deactivation records.
pub(super) const DEPROVISIONED: &str = "deprovisioned";

impl PostgresStore {
    pub(super) async fn record_key_uses_impl(&self, uses: &[(String, i64)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // Not in the change feed, so no writers' lock: row locks only, taken in key order so
        // two replicas flushing at once never deadlock.
        let mut sorted: Vec<&(String, i64)> = uses.iter().collect();
        sorted.sort();
        let mut tx = self.pool.begin().await?;
        for (id, at) in sorted {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, $1), $1) \
                 WHERE id = $2",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_key_expiry_impl(&self, id: &str, expires_at: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
            .bind(expires_at)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(key_label(id)));
        }
        record_change(&mut tx, "key", id, super::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn enable_user_impl(&self, username: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE users SET disabled = FALSE WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(user_label(username)));
        }
        record_change(&mut tx, "user", username, super::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn deactivate_user_impl(
        &self,
        username: &str,
        now: i64,
    ) -> StoreResult<DeactivationOutcome> {
        let mut tx = self.begin_write().await?;
        let was_disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(was_disabled) = was_disabled else {
            return Err(StoreError::NotFound(user_label(username)));
        };
        sqlx::query("UPDATE users SET disabled = TRUE WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        record_change(&mut tx, "user", username, now).await?;

        let sessions_ended: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET ended_at = $1, end_reason = $2, refresh_lease_until = NULL \
             WHERE ended_at IS NULL AND username = $3 RETURNING id_sha256",
        )
        .bind(now)
        .bind(DEPROVISIONED)
        .bind(username)
        .fetch_all(&mut *tx)
        .await?;
        for id in &sessions_ended {
            record_change(&mut tx, "session", id, now).await?;
        }

        let keys_revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE owner_kind = 'user' AND owner = $2 AND revoked_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(username)
        .fetch_all(&mut *tx)
        .await?;
        for id in &keys_revoked {
            record_change(&mut tx, "key", id, now).await?;
        }

        let refresh_tokens_revoked =
            revoke_refresh_where(&mut tx, "username", username, now).await?;
        tx.commit().await?;
        Ok(DeactivationOutcome {
            newly_disabled: !was_disabled,
            sessions_ended,
            keys_revoked,
            refresh_tokens_revoked,
        })
    }
}
