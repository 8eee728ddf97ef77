//! Approvals on PostgreSQL.
//!
//! Creating (or reusing) an approval and deciding one run in transactions holding the writers' advisory lock;
//! redeeming is one guarded `UPDATE … RETURNING`, so of several racing retries exactly one
//! spends an approval. Decisions are admin changes and go to the change feed (entity
//! `approval`); creations and redemptions happen on requests and do not.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, owner_kind_from_str, record_change};
use crate::domain::PrincipalKind;
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalStatus, ApprovalStore, DecideOutcome, RedeemOutcome,
    StoreError, StoreResult,
};

const COLUMNS: &str = "id, principal_kind, subject, fingerprint, summary, rule, status, \
     created_at, expires_at, decided_at, decided_by, used_at";

fn approval_from_row(row: &PgRow) -> StoreResult<ApprovalRecord> {
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
impl ApprovalStore for PostgresStore {
    async fn create_or_reuse_approval(
        &self,
        new: &ApprovalRecord,
        now: i64,
    ) -> StoreResult<ApprovalRecord> {
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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
