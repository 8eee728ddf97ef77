//! Prompt templates on SQLite.
//!
//! Adding, approving and retiring run in `BEGIN IMMEDIATE` transactions that also append the
//! change-feed entry (entity `template`), so a running server sees every status change.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{BEGIN_WRITE, SqliteStore, record_change};
use crate::store::{
    StoreError, StoreResult, TemplateOutcome, TemplateRecord, TemplateStatus, TemplateStore,
};

const COLUMNS: &str = "name, text, max_words, status, proposed_by, proposed_at, approved_by, \
     approved_at, retired_by, retired_at";

fn template_from_row(row: &SqliteRow) -> StoreResult<TemplateRecord> {
    let status: String = row.try_get("status")?;
    let max_words: i64 = row.try_get("max_words")?;
    Ok(TemplateRecord {
        name: row.try_get("name")?,
        text: row.try_get("text")?,
        max_words: u32::try_from(max_words)
            .map_err(|_| StoreError::Corrupt(format!("template max_words {max_words}")))?,
        status: status
            .parse()
            .map_err(|e: crate::store::UnknownTemplateStatus| StoreError::Corrupt(e.to_string()))?,
        proposed_by: row.try_get("proposed_by")?,
        proposed_at: row.try_get("proposed_at")?,
        approved_by: row.try_get("approved_by")?,
        approved_at: row.try_get("approved_at")?,
        retired_by: row.try_get("retired_by")?,
        retired_at: row.try_get("retired_at")?,
    })
}

/// The change a transition makes.
#[derive(Clone, Copy)]
enum Transition {
    Approve,
    Retire,
}

impl SqliteStore {
    async fn transition_template(
        &self,
        name: &str,
        transition: Transition,
        by: &str,
        now: i64,
    ) -> StoreResult<TemplateOutcome> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM prompt_templates WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(TemplateOutcome::NotFound);
        };
        let record = template_from_row(&row)?;
        let allowed = match transition {
            Transition::Approve => record.status == TemplateStatus::Proposed,
            Transition::Retire => record.status != TemplateStatus::Retired,
        };
        if !allowed {
            tx.rollback().await?;
            return Ok(TemplateOutcome::Refused(record));
        }
        let (sql, status) = match transition {
            Transition::Approve => (
                "UPDATE prompt_templates SET status = 'approved', approved_by = $1, \
                 approved_at = $2 WHERE name = $3",
                TemplateStatus::Approved,
            ),
            Transition::Retire => (
                "UPDATE prompt_templates SET status = 'retired', retired_by = $1, \
                 retired_at = $2 WHERE name = $3",
                TemplateStatus::Retired,
            ),
        };
        sqlx::query(sql)
            .bind(by)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        record_change(&mut tx, "template", name, now).await?;
        tx.commit().await?;
        let changed = match transition {
            Transition::Approve => TemplateRecord {
                status,
                approved_by: Some(by.to_string()),
                approved_at: Some(now),
                ..record
            },
            Transition::Retire => TemplateRecord {
                status,
                retired_by: Some(by.to_string()),
                retired_at: Some(now),
                ..record
            },
        };
        Ok(TemplateOutcome::Changed(changed))
    }
}

#[async_trait::async_trait]
impl TemplateStore for SqliteStore {
    async fn add_template(
        &self,
        name: &str,
        text: &str,
        max_words: u32,
        proposed_by: &str,
        now: i64,
    ) -> StoreResult<TemplateRecord> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO prompt_templates (name, text, max_words, status, proposed_by, \
             proposed_at) VALUES ($1, $2, $3, 'proposed', $4, $5)",
        )
        .bind(name)
        .bind(text)
        .bind(i64::from(max_words))
        .bind(proposed_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::conflict(e, || format!("template `{name}`")))?;
        record_change(&mut tx, "template", name, now).await?;
        tx.commit().await?;
        Ok(TemplateRecord {
            name: name.to_string(),
            text: text.to_string(),
            max_words,
            status: TemplateStatus::Proposed,
            proposed_by: proposed_by.to_string(),
            proposed_at: now,
            approved_by: None,
            approved_at: None,
            retired_by: None,
            retired_at: None,
        })
    }

    async fn get_template(&self, name: &str) -> StoreResult<Option<TemplateRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM prompt_templates WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(template_from_row)
        .transpose()
    }

    async fn approve_template(
        &self,
        name: &str,
        approved_by: &str,
        now: i64,
    ) -> StoreResult<TemplateOutcome> {
        self.transition_template(name, Transition::Approve, approved_by, now)
            .await
    }

    async fn retire_template(
        &self,
        name: &str,
        by: &str,
        now: i64,
    ) -> StoreResult<TemplateOutcome> {
        self.transition_template(name, Transition::Retire, by, now)
            .await
    }

    async fn list_templates(
        &self,
        status: Option<TemplateStatus>,
    ) -> StoreResult<Vec<TemplateRecord>> {
        let rows = match status {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM prompt_templates ORDER BY name"
                )))
                .fetch_all(&self.pool)
                .await?
            }
            Some(status) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM prompt_templates WHERE status = $1 ORDER BY name"
                )))
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(template_from_row).collect()
    }
}
