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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::Store;

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        (dir, store)
    }

    fn session(id: &str, user: &str, sid: Option<&str>, now: i64) -> SessionRecord {
        SessionRecord {
            id_sha256: id.into(),
            username: user.into(),
            issuer: "https://idp.example.com".into(),
            idp_sid: sid.map(str::to_string),
            email: Some(format!("{user}@example.com")),
            groups: vec!["g1".into()],
            attributes: BTreeMap::from([("department".into(), "design".into())]),
            amr: vec!["pwd".into()],
            acr: Some("urn:x:pwd".into()),
            mfa: false,
            id_token: Some("id.token.x".into()),
            refresh_token: Some("rt-1".into()),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + 3600,
            absolute_expires_at: now + 36_000,
            claims_refreshed_at: now,
            ended_at: None,
            end_reason: None,
        }
    }

    fn login_state(hash: &str, now: i64) -> LoginStateRecord {
        LoginStateRecord {
            state_sha256: hash.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            redirect_uri: "https://app/auth/callback".into(),
            return_to: "/".into(),
            step_up: true,
            created_at: now,
            expires_at: now + 600,
        }
    }

    async fn session_changes(store: &SqliteStore) -> Vec<String> {
        store
            .changes_since(0, 1000)
            .await
            .expect("changes")
            .into_iter()
            .filter(|c| c.entity == "session")
            .map(|c| c.id)
            .collect()
    }

    #[tokio::test]
    async fn login_states_are_single_use_and_expire() {
        let (_dir, store) = open_store().await;
        let now = 1_700_000_000;
        store
            .create_login_state(&login_state("a", now))
            .await
            .expect("create");
        assert!(
            store
                .create_login_state(&login_state("a", now))
                .await
                .is_err()
        );
        let taken = store.take_login_state("a", now + 1).await.expect("take");
        assert_eq!(taken, Some(login_state("a", now)));
        assert_eq!(
            store.take_login_state("a", now + 1).await.expect("take"),
            None
        );

        store
            .create_login_state(&login_state("b", now))
            .await
            .expect("create");
        assert_eq!(
            store.take_login_state("b", now + 600).await.expect("take"),
            None,
            "expired"
        );
        // Expired states are swept by the next creation; none of this reaches the feed.
        store
            .create_login_state(&login_state("c", now))
            .await
            .expect("create");
        store
            .create_login_state(&login_state("d", now + 10_000))
            .await
            .expect("create");
        assert_eq!(
            store.take_login_state("c", now + 1).await.expect("take"),
            None
        );
        assert!(
            store
                .changes_since(0, 100)
                .await
                .expect("changes")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn sessions_round_trip_touch_and_end() {
        let (_dir, store) = open_store().await;
        let now = 1_700_000_000;
        let s = session("h1", "alice", Some("sid-1"), now);
        store.create_session(&s).await.expect("create");
        assert!(store.create_session(&s).await.is_err(), "duplicate hash");
        assert_eq!(store.get_session("h1").await.expect("get"), Some(s.clone()));
        assert_eq!(store.get_session("nope").await.expect("get"), None);

        assert!(
            store
                .touch_session("h1", now + 5, now + 3605)
                .await
                .expect("touch")
        );
        let touched = store.get_session("h1").await.expect("get").expect("row");
        assert_eq!(touched.last_seen_at, now + 5);
        assert_eq!(touched.idle_expires_at, now + 3605);
        // Touches never go backwards (a slow replica) and stay out of the feed.
        store
            .touch_session("h1", now + 1, now + 3601)
            .await
            .expect("touch");
        let touched = store.get_session("h1").await.expect("get").expect("row");
        assert_eq!(touched.last_seen_at, now + 5);
        assert!(session_changes(&store).await.is_empty());

        assert!(
            store
                .end_session("h1", now + 6, "logout")
                .await
                .expect("end")
        );
        assert!(
            !store
                .end_session("h1", now + 7, "logout")
                .await
                .expect("end")
        );
        let ended = store.get_session("h1").await.expect("get").expect("row");
        assert_eq!(ended.ended_at, Some(now + 6));
        assert_eq!(ended.end_reason.as_deref(), Some("logout"));
        assert!(
            !store
                .touch_session("h1", now + 8, now + 9000)
                .await
                .expect("touch")
        );
        assert_eq!(session_changes(&store).await, vec!["h1".to_string()]);
    }

    #[tokio::test]
    async fn ending_by_user_and_by_idp_session() {
        let (_dir, store) = open_store().await;
        let now = 1_700_000_000;
        for (id, user, sid) in [
            ("a1", "alice", Some("s-a")),
            ("a2", "alice", Some("s-b")),
            ("b1", "bob", Some("s-c")),
            ("b2", "bob", None),
        ] {
            store
                .create_session(&session(id, user, sid, now))
                .await
                .expect("create");
        }
        let mut ended = store
            .end_sessions_for_user("alice", now, "revoked")
            .await
            .expect("end");
        ended.sort();
        assert_eq!(ended, vec!["a1", "a2"]);
        assert!(
            store
                .end_sessions_for_user("alice", now, "revoked")
                .await
                .expect("end")
                .is_empty()
        );

        let iss = "https://idp.example.com";
        assert!(
            store
                .end_idp_sessions(iss, None, None, now, "x")
                .await
                .expect("end")
                .is_empty()
        );
        assert!(
            store
                .end_idp_sessions("https://other", Some("s-c"), None, now, "x")
                .await
                .expect("end")
                .is_empty(),
            "another issuer's sid"
        );
        assert!(
            store
                .end_idp_sessions(iss, Some("s-c"), Some("alice"), now, "x")
                .await
                .expect("end")
                .is_empty(),
            "sid and sub must both match"
        );
        assert_eq!(
            store
                .end_idp_sessions(iss, Some("s-c"), Some("bob"), now, "backchannel_logout")
                .await
                .expect("end"),
            vec!["b1"]
        );
        assert_eq!(
            store
                .end_idp_sessions(iss, None, Some("bob"), now, "backchannel_logout")
                .await
                .expect("end"),
            vec!["b2"]
        );
        assert_eq!(session_changes(&store).await.len(), 4);
    }

    #[tokio::test]
    async fn refresh_lease_and_claims() {
        let (_dir, store) = open_store().await;
        let now = 1_700_000_000;
        store
            .create_session(&session("h", "alice", None, now))
            .await
            .expect("create");
        assert!(
            store
                .acquire_refresh_lease("h", now, now + 30)
                .await
                .expect("lease")
        );
        assert!(
            !store
                .acquire_refresh_lease("h", now + 1, now + 31)
                .await
                .expect("lease")
        );
        let claims = RefreshedClaims {
            email: Some("new@example.com".into()),
            groups: vec!["g2".into(), "g3".into()],
            attributes: BTreeMap::new(),
            id_token: None,
            refresh_token: Some("rt-2".into()),
            refreshed_at: now + 2,
        };
        assert!(
            store
                .update_session_claims("h", &claims)
                .await
                .expect("update")
        );
        let s = store.get_session("h").await.expect("get").expect("row");
        assert_eq!(s.groups, vec!["g2", "g3"]);
        assert_eq!(s.email.as_deref(), Some("new@example.com"));
        assert_eq!(
            s.id_token.as_deref(),
            Some("id.token.x"),
            "kept when none came"
        );
        assert_eq!(s.refresh_token.as_deref(), Some("rt-2"));
        assert_eq!(s.claims_refreshed_at, now + 2);
        // The lease was released.
        assert!(
            store
                .acquire_refresh_lease("h", now + 3, now + 33)
                .await
                .expect("lease")
        );
        assert_eq!(session_changes(&store).await, vec!["h".to_string()]);
        store
            .end_session("h", now + 4, "logout")
            .await
            .expect("end");
        assert!(
            !store
                .acquire_refresh_lease("h", now + 100, now + 130)
                .await
                .expect("lease")
        );
        assert!(
            !store
                .update_session_claims("h", &claims)
                .await
                .expect("update")
        );
    }

    #[tokio::test]
    async fn listing_shows_active_sessions_and_old_ones_are_swept() {
        let (_dir, store) = open_store().await;
        let now = 1_700_000_000;
        let mut idle = session("idle", "alice", None, now - 100);
        idle.idle_expires_at = now - 1;
        store.create_session(&idle).await.expect("create");
        store
            .create_session(&session("live", "alice", None, now))
            .await
            .expect("create");
        store
            .create_session(&session("bob", "bob", None, now + 1))
            .await
            .expect("create");
        let all: Vec<String> = store
            .list_sessions(None, now)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id_sha256)
            .collect();
        assert_eq!(all, vec!["bob", "live"]);
        let alice = store.list_sessions(Some("alice"), now).await.expect("list");
        assert_eq!(alice.len(), 1);

        // A week later, a new session sweeps the long-expired one.
        store
            .create_session(&session(
                "later",
                "carol",
                None,
                now + ENDED_SESSION_RETENTION_SECS + 10,
            ))
            .await
            .expect("create");
        assert_eq!(store.get_session("idle").await.expect("get"), None);
        assert!(store.get_session("live").await.expect("get").is_some());
    }
}
