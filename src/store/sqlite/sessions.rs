//! Sessions and login states on SQLite.
//!
//! Taking a login state is one `DELETE … RETURNING` (single use, even with racing callbacks);
//! ending sessions is one `UPDATE … RETURNING` plus one change-feed row per session ended, in
//! one `BEGIN IMMEDIATE` transaction.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{
    BEGIN_WRITE, SqliteStore, attributes_from_json, attributes_to_json, conflict, record_change,
};
use crate::store::{
    ENDED_SESSION_RETENTION_SECS, LoginStateRecord, RefreshedClaims, SessionRecord, SessionStore,
    StoreError, StoreResult,
};

/// The change-feed entity of sessions.
const ENTITY: &str = "session";

const SESSION_COLUMNS: &str = "id_sha256, username, issuer, idp_sid, email, groups, attributes, \
     amr, acr, mfa, id_token, refresh_token, created_at, last_seen_at, idle_expires_at, \
     absolute_expires_at, claims_refreshed_at, ended_at, end_reason";

const LOGIN_STATE_COLUMNS: &str =
    "state_sha256, nonce, pkce_verifier, redirect_uri, return_to, step_up, created_at, expires_at";

fn list_to_json(items: &[String]) -> StoreResult<String> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn list_from_json(text: &str, what: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("session {what} are not a JSON string list: {e}")))
}

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id_sha256: row.try_get("id_sha256")?,
        username: row.try_get("username")?,
        issuer: row.try_get("issuer")?,
        idp_sid: row.try_get("idp_sid")?,
        email: row.try_get("email")?,
        groups: list_from_json(&row.try_get::<String, _>("groups")?, "groups")?,
        attributes: attributes_from_json(&row.try_get::<String, _>("attributes")?)?,
        amr: list_from_json(&row.try_get::<String, _>("amr")?, "amr values")?,
        acr: row.try_get("acr")?,
        mfa: row.try_get("mfa")?,
        id_token: row.try_get("id_token")?,
        refresh_token: row.try_get("refresh_token")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        claims_refreshed_at: row.try_get("claims_refreshed_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
    })
}

fn login_state_from_row(row: &SqliteRow) -> StoreResult<LoginStateRecord> {
    Ok(LoginStateRecord {
        state_sha256: row.try_get("state_sha256")?,
        nonce: row.try_get("nonce")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        redirect_uri: row.try_get("redirect_uri")?,
        return_to: row.try_get("return_to")?,
        step_up: row.try_get("step_up")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl SqliteStore {
    /// Ends the active sessions matching `filter` (an SQL condition on `$3`, `$4`, `$5`) in
    /// one transaction, with one change-feed row per session ended.
    async fn end_sessions_where(
        &self,
        filter: &'static str,
        binds: [Option<&str>; 3],
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let ended: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET ended_at = $1, end_reason = $2, refresh_lease_until = NULL \
             WHERE ended_at IS NULL AND {filter} RETURNING id_sha256"
        )))
        .bind(now)
        .bind(reason)
        .bind(binds[0])
        .bind(binds[1])
        .bind(binds[2])
        .fetch_all(&mut *tx)
        .await?;
        for id in &ended {
            record_change(&mut tx, ENTITY, id, now).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn create_login_state(&self, state: &LoginStateRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query("DELETE FROM login_states WHERE expires_at < $1")
            .bind(state.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO login_states ({LOGIN_STATE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&state.state_sha256)
        .bind(&state.nonce)
        .bind(&state.pkce_verifier)
        .bind(&state.redirect_uri)
        .bind(&state.return_to)
        .bind(state.step_up)
        .bind(state.created_at)
        .bind(state.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || "login state".to_string()))?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_login_state(
        &self,
        state_sha256: &str,
        now: i64,
    ) -> StoreResult<Option<LoginStateRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM login_states WHERE state_sha256 = $1 RETURNING {LOGIN_STATE_COLUMNS}"
        )))
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state = login_state_from_row(&row)?;
        Ok((state.expires_at > now).then_some(state))
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let groups = list_to_json(&session.groups)?;
        let amr = list_to_json(&session.amr)?;
        let attributes = attributes_to_json(&session.attributes)?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "DELETE FROM sessions WHERE \
             MIN(COALESCE(ended_at, absolute_expires_at), absolute_expires_at, idle_expires_at) < $1",
        )
        .bind(session.created_at - ENDED_SESSION_RETENTION_SECS)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        )))
        .bind(&session.id_sha256)
        .bind(&session.username)
        .bind(&session.issuer)
        .bind(&session.idp_sid)
        .bind(&session.email)
        .bind(groups)
        .bind(attributes)
        .bind(amr)
        .bind(&session.acr)
        .bind(session.mfa)
        .bind(&session.id_token)
        .bind(&session.refresh_token)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.idle_expires_at)
        .bind(session.absolute_expires_at)
        .bind(session.claims_refreshed_at)
        .bind(session.ended_at)
        .bind(&session.end_reason)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || "session".to_string()))?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_session(&self, id_sha256: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_sha256 = $1"
        )))
        .bind(id_sha256)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn touch_session(
        &self,
        id_sha256: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE sessions SET last_seen_at = MAX(last_seen_at, $1), \
             idle_expires_at = MAX(idle_expires_at, $2) \
             WHERE id_sha256 = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(idle_expires_at)
        .bind(id_sha256)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn acquire_refresh_lease(
        &self,
        id_sha256: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE sessions SET refresh_lease_until = $1 WHERE id_sha256 = $2 \
             AND ended_at IS NULL AND (refresh_lease_until IS NULL OR refresh_lease_until <= $3)",
        )
        .bind(until)
        .bind(id_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn update_session_claims(
        &self,
        id_sha256: &str,
        claims: &RefreshedClaims,
    ) -> StoreResult<bool> {
        let groups = list_to_json(&claims.groups)?;
        let attributes = attributes_to_json(&claims.attributes)?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let updated = sqlx::query(
            "UPDATE sessions SET email = $1, groups = $2, attributes = $3, \
             id_token = COALESCE($4, id_token), refresh_token = COALESCE($5, refresh_token), \
             claims_refreshed_at = $6, refresh_lease_until = NULL \
             WHERE id_sha256 = $7 AND ended_at IS NULL",
        )
        .bind(&claims.email)
        .bind(groups)
        .bind(attributes)
        .bind(&claims.id_token)
        .bind(&claims.refresh_token)
        .bind(claims.refreshed_at)
        .bind(id_sha256)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated > 0 {
            record_change(&mut tx, ENTITY, id_sha256, claims.refreshed_at).await?;
        }
        tx.commit().await?;
        Ok(updated > 0)
    }

    async fn end_session(&self, id_sha256: &str, now: i64, reason: &str) -> StoreResult<bool> {
        let ended = self
            .end_sessions_where("id_sha256 = $3", [Some(id_sha256), None, None], now, reason)
            .await?;
        Ok(!ended.is_empty())
    }

    async fn end_sessions_for_user(
        &self,
        username: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        self.end_sessions_where("username = $3", [Some(username), None, None], now, reason)
            .await
    }

    async fn end_idp_sessions(
        &self,
        issuer: &str,
        sid: Option<&str>,
        subject: Option<&str>,
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        if sid.is_none() && subject.is_none() {
            return Ok(Vec::new());
        }
        self.end_sessions_where(
            "issuer = $3 AND ($4 IS NULL OR idp_sid = $4) AND ($5 IS NULL OR username = $5)",
            [Some(issuer), sid, subject],
            now,
            reason,
        )
        .await
    }

    async fn list_sessions(
        &self,
        username: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL \
             AND idle_expires_at > $1 AND absolute_expires_at > $1 \
             AND ($2 IS NULL OR username = $2) ORDER BY created_at DESC, id_sha256"
        )))
        .bind(now)
        .bind(username)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }
}
