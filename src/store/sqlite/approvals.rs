//! Approvals on SQLite.
//!
//! Creating (or reusing) an approval and deciding one run in `BEGIN IMMEDIATE` transactions;
//! redeeming is one guarded `UPDATE … RETURNING`, so of several racing retries exactly one
//! spends an approval. Decisions are admin changes and go to the change feed (entity
//! `approval`); creations and redemptions happen on requests and do not.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{BEGIN_WRITE, SqliteStore, owner_kind_from_str, record_change};
use crate::domain::PrincipalKind;
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalStatus, ApprovalStore, DecideOutcome, RedeemOutcome,
    StoreError, StoreResult,
};

const COLUMNS: &str = "id, principal_kind, subject, fingerprint, summary, rule, status, \
     created_at, expires_at, decided_at, decided_by, used_at";

fn approval_from_row(row: &SqliteRow) -> StoreResult<ApprovalRecord> {
    let status: String = row.try_get("status")?;
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        principal_kind: owner_kind_from_str(&row.try_get::<String, _>("principal_kind")?)?,
        subject: row.try_get("subject")?,
        fingerprint: row.try_get("fingerprint")?,
        summary: row.try_get("summary")?,
        rule: row.try_get("rule")?,
        status: status
            .parse()
            .map_err(|e: crate::store::UnknownApprovalStatus| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
        used_at: row.try_get("used_at")?,
    })
}

/// True when `decision` may be taken on `record` at `now`.
fn decidable(record: &ApprovalRecord, decision: ApprovalDecision, now: i64) -> bool {
    if record.is_expired(now) {
        return false;
    }
    match decision {
        ApprovalDecision::Approve => record.status == ApprovalStatus::Pending,
        ApprovalDecision::Reject => matches!(
            record.status,
            ApprovalStatus::Pending | ApprovalStatus::Approved
        ),
    }
}

#[async_trait::async_trait]
impl ApprovalStore for SqliteStore {
    async fn create_or_reuse_approval(
        &self,
        new: &ApprovalRecord,
        now: i64,
    ) -> StoreResult<ApprovalRecord> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals WHERE principal_kind = $1 AND subject = $2 \
             AND fingerprint = $3 AND status IN ('pending', 'approved') AND expires_at > $4 \
             ORDER BY created_at DESC, id LIMIT 1"
        )))
        .bind(new.principal_kind.as_str())
        .bind(&new.subject)
        .bind(&new.fingerprint)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let record = approval_from_row(&row)?;
            tx.rollback().await?;
            return Ok(record);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO approvals ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, NULL, NULL, NULL)"
        )))
        .bind(&new.id)
        .bind(new.principal_kind.as_str())
        .bind(&new.subject)
        .bind(&new.fingerprint)
        .bind(&new.summary)
        .bind(&new.rule)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::conflict(e, || format!("approval `{}`", new.id)))?;
        tx.commit().await?;
        Ok(ApprovalRecord {
            status: ApprovalStatus::Pending,
            decided_at: None,
            decided_by: None,
            used_at: None,
            ..new.clone()
        })
    }

    async fn get_approval(&self, id: &str) -> StoreResult<Option<ApprovalRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(approval_from_row)
        .transpose()
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> StoreResult<Vec<ApprovalRecord>> {
        let rows = match status {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM approvals ORDER BY created_at DESC, id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
            Some(status) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM approvals WHERE status = $1 \
                     ORDER BY created_at DESC, id"
                )))
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(approval_from_row).collect()
    }

    async fn decide_approval(
        &self,
        id: &str,
        decision: ApprovalDecision,
        approver: &str,
        now: i64,
    ) -> StoreResult<DecideOutcome> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(DecideOutcome::NotFound);
        };
        let record = approval_from_row(&row)?;
        if !decidable(&record, decision, now) {
            tx.rollback().await?;
            return Ok(DecideOutcome::Refused(record));
        }
        let status = match decision {
            ApprovalDecision::Approve => ApprovalStatus::Approved,
            ApprovalDecision::Reject => ApprovalStatus::Rejected,
        };
        sqlx::query(
            "UPDATE approvals SET status = $1, decided_at = $2, decided_by = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(approver)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        record_change(&mut tx, "approval", id, now).await?;
        tx.commit().await?;
        Ok(DecideOutcome::Decided(ApprovalRecord {
            status,
            decided_at: Some(now),
            decided_by: Some(approver.to_string()),
            ..record
        }))
    }

    async fn redeem_approval(
        &self,
        id: &str,
        principal_kind: PrincipalKind,
        subject: &str,
        fingerprint: &str,
        now: i64,
    ) -> StoreResult<RedeemOutcome> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET status = 'used', used_at = $1 \
             WHERE id = $2 AND status = 'approved' AND expires_at > $1 \
             AND principal_kind = $3 AND subject = $4 AND fingerprint = $5 \
             RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(id)
        .bind(principal_kind.as_str())
        .bind(subject)
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(RedeemOutcome::Redeemed(approval_from_row(&row)?));
        }
        Ok(match self.get_approval(id).await? {
            None => RedeemOutcome::NotFound,
            Some(record) => RedeemOutcome::Refused(record),
        })
    }

    async fn release_approval(&self, id: &str) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE approvals SET status = 'approved', used_at = NULL \
             WHERE id = $1 AND status = 'used'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("approvals.db").display());
        let store = SqliteStore::connect(&url).await.expect("store opens");
        (dir, store)
    }

    fn approval(id: &str, subject: &str, fingerprint: &str, created_at: i64) -> ApprovalRecord {
        ApprovalRecord {
            id: id.into(),
            principal_kind: PrincipalKind::User,
            subject: subject.into(),
            fingerprint: fingerprint.into(),
            summary: r#"{"path":"/v1/generation/text-to-image"}"#.into(),
            rule: Some("cost_control".into()),
            status: ApprovalStatus::Pending,
            created_at,
            expires_at: created_at + 86_400,
            decided_at: None,
            decided_by: None,
            used_at: None,
        }
    }

    #[tokio::test]
    async fn create_reuse_get_and_list() {
        let (_dir, store) = open_store().await;
        let a = approval("ap_a", "alice", "f1", 100);
        assert_eq!(store.create_or_reuse_approval(&a, 100).await.expect("a"), a);
        // The same principal and fingerprint while pending: the first one comes back.
        let again = approval("ap_b", "alice", "f1", 200);
        assert_eq!(
            store
                .create_or_reuse_approval(&again, 200)
                .await
                .expect("reuse")
                .id,
            "ap_a"
        );
        // Another fingerprint or another principal: a new one.
        for (id, subject, fp) in [("ap_c", "alice", "f2"), ("ap_d", "bob", "f1")] {
            let new = approval(id, subject, fp, 300);
            assert_eq!(
                store
                    .create_or_reuse_approval(&new, 300)
                    .await
                    .expect("new")
                    .id,
                id
            );
        }
        assert_eq!(store.get_approval("ap_a").await.expect("get"), Some(a));
        assert_eq!(store.get_approval("ap_b").await.expect("get"), None);
        let all = store.list_approvals(None).await.expect("list");
        assert_eq!(
            all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["ap_c", "ap_d", "ap_a"]
        );
        assert_eq!(
            store
                .list_approvals(Some(ApprovalStatus::Approved))
                .await
                .expect("list")
                .len(),
            0
        );
    }

    #[tokio::test]
    async fn an_expired_pending_approval_is_not_reused() {
        let (_dir, store) = open_store().await;
        let a = approval("ap_a", "alice", "f1", 100);
        store.create_or_reuse_approval(&a, 100).await.expect("a");
        let later = approval("ap_b", "alice", "f1", a.expires_at);
        assert_eq!(
            store
                .create_or_reuse_approval(&later, a.expires_at)
                .await
                .expect("new")
                .id,
            "ap_b"
        );
    }

    #[tokio::test]
    async fn decisions_follow_the_lifecycle_and_feed_the_change_log() {
        let (_dir, store) = open_store().await;
        store
            .create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
            .await
            .expect("a");
        store
            .create_or_reuse_approval(&approval("ap_b", "alice", "f2", 100), 100)
            .await
            .expect("b");
        let before = store.latest_change().await.expect("latest");
        let DecideOutcome::Decided(a) = store
            .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 150)
            .await
            .expect("approve")
        else {
            panic!("not decided");
        };
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(
            (a.decided_at, a.decided_by.as_deref()),
            (Some(150), Some("carol"))
        );
        assert_eq!(
            store.get_approval("ap_a").await.expect("get"),
            Some(a.clone())
        );
        let changes = store.changes_since(before, 10).await.expect("changes");
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.entity.as_str(), c.id.as_str()))
                .collect::<Vec<_>>(),
            [("approval", "ap_a")]
        );
        // Approving twice is refused; rejecting an approved (unused) one revokes it.
        assert!(matches!(
            store
                .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 160)
                .await
                .expect("again"),
            DecideOutcome::Refused(r) if r.status == ApprovalStatus::Approved
        ));
        assert!(matches!(
            store
                .decide_approval("ap_a", ApprovalDecision::Reject, "dave", 170)
                .await
                .expect("reject"),
            DecideOutcome::Decided(r) if r.status == ApprovalStatus::Rejected
        ));
        assert!(matches!(
            store
                .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 180)
                .await
                .expect("after reject"),
            DecideOutcome::Refused(r) if r.status == ApprovalStatus::Rejected
        ));
        // Expired while pending: no decision.
        assert!(matches!(
            store
                .decide_approval("ap_b", ApprovalDecision::Approve, "carol", 100 + 86_400)
                .await
                .expect("expired"),
            DecideOutcome::Refused(r) if r.is_expired(100 + 86_400)
        ));
        assert_eq!(
            store
                .decide_approval("ap_zz", ApprovalDecision::Reject, "carol", 100)
                .await
                .expect("unknown"),
            DecideOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn redeeming_spends_once_for_the_right_principal_and_fingerprint() {
        let (_dir, store) = open_store().await;
        store
            .create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
            .await
            .expect("a");
        let redeem = |subject: &'static str, fp: &'static str, now: i64| {
            let store = store.clone();
            async move {
                store
                    .redeem_approval("ap_a", PrincipalKind::User, subject, fp, now)
                    .await
                    .expect("redeem")
            }
        };
        // Pending: refused.
        assert!(
            matches!(redeem("alice", "f1", 110).await, RedeemOutcome::Refused(r) if r.status == ApprovalStatus::Pending)
        );
        store
            .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 120)
            .await
            .expect("approve");
        assert!(matches!(
            redeem("bob", "f1", 130).await,
            RedeemOutcome::Refused(_)
        ));
        assert!(matches!(
            redeem("alice", "f2", 130).await,
            RedeemOutcome::Refused(_)
        ));
        assert!(matches!(
            store
                .redeem_approval("ap_a", PrincipalKind::ServiceAccount, "alice", "f1", 130)
                .await
                .expect("kind"),
            RedeemOutcome::Refused(_)
        ));
        let RedeemOutcome::Redeemed(r) = redeem("alice", "f1", 140).await else {
            panic!("not redeemed");
        };
        assert_eq!((r.status, r.used_at), (ApprovalStatus::Used, Some(140)));
        assert!(
            matches!(redeem("alice", "f1", 150).await, RedeemOutcome::Refused(r) if r.status == ApprovalStatus::Used)
        );
        // Released after a later refusal, it can be redeemed again (once).
        assert!(store.release_approval("ap_a").await.expect("release"));
        assert!(!store.release_approval("ap_a").await.expect("not used"));
        assert!(matches!(
            redeem("alice", "f1", 160).await,
            RedeemOutcome::Redeemed(_)
        ));
        assert_eq!(
            store
                .redeem_approval("ap_nope", PrincipalKind::User, "alice", "f1", 160)
                .await
                .expect("unknown"),
            RedeemOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn an_approved_approval_expires_unredeemed() {
        let (_dir, store) = open_store().await;
        let a = approval("ap_a", "alice", "f1", 100);
        store.create_or_reuse_approval(&a, 100).await.expect("a");
        store
            .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 120)
            .await
            .expect("approve");
        assert!(matches!(
            store
                .redeem_approval("ap_a", PrincipalKind::User, "alice", "f1", a.expires_at)
                .await
                .expect("late"),
            RedeemOutcome::Refused(r) if r.is_expired(a.expires_at)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_redemptions_spend_an_approval_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("race.db").display());
        let a = SqliteStore::connect(&url).await.expect("first handle");
        let b = SqliteStore::connect(&url).await.expect("second handle");
        a.create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
            .await
            .expect("create");
        a.decide_approval("ap_a", ApprovalDecision::Approve, "carol", 110)
            .await
            .expect("approve");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .redeem_approval("ap_a", PrincipalKind::User, "alice", "f1", 120)
                    .await
            }));
        }
        let mut redeemed = 0;
        for t in tasks {
            if let RedeemOutcome::Redeemed(_) = t.await.expect("join").expect("redeem") {
                redeemed += 1;
            }
        }
        assert_eq!(redeemed, 1);
    }
}
