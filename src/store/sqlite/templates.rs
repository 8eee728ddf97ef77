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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.expect("store opens");
        (dir, store)
    }

    #[tokio::test]
    async fn lifecycle_and_change_feed() {
        let (_dir, store) = open_store().await;
        let added = store
            .add_template("shot", "a photo of {subject}", 4, "ann", 100)
            .await
            .expect("add");
        assert_eq!(added.status, TemplateStatus::Proposed);
        assert_eq!(
            store.get_template("shot").await.expect("get"),
            Some(added.clone())
        );
        assert!(
            store
                .approved_templates()
                .await
                .expect("approved")
                .is_empty()
        );
        let err = store
            .add_template("shot", "other {x}", 6, "bob", 101)
            .await
            .expect_err("duplicate");
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        let TemplateOutcome::Changed(approved) = store
            .approve_template("shot", "bob", 110)
            .await
            .expect("approve")
        else {
            panic!("not approved");
        };
        assert_eq!(approved.status, TemplateStatus::Approved);
        assert_eq!(approved.approved_by.as_deref(), Some("bob"));
        assert_eq!(approved.approved_at, Some(110));
        assert_eq!(
            store.approved_templates().await.expect("approved"),
            vec![approved.clone()]
        );
        // Approving twice is refused and changes nothing.
        assert_eq!(
            store
                .approve_template("shot", "carl", 111)
                .await
                .expect("again"),
            TemplateOutcome::Refused(approved.clone())
        );
        assert_eq!(
            store
                .approve_template("nope", "bob", 111)
                .await
                .expect("unknown"),
            TemplateOutcome::NotFound
        );

        let TemplateOutcome::Changed(retired) = store
            .retire_template("shot", "ann", 120)
            .await
            .expect("retire")
        else {
            panic!("not retired");
        };
        assert_eq!(retired.status, TemplateStatus::Retired);
        assert_eq!(retired.retired_by.as_deref(), Some("ann"));
        assert!(
            store
                .approved_templates()
                .await
                .expect("approved")
                .is_empty()
        );
        assert!(matches!(
            store
                .retire_template("shot", "ann", 121)
                .await
                .expect("again"),
            TemplateOutcome::Refused(_)
        ));
        assert!(matches!(
            store
                .approve_template("shot", "bob", 121)
                .await
                .expect("approve retired"),
            TemplateOutcome::Refused(_)
        ));

        let feed = store.changes_since(0, 100).await.expect("feed");
        let entries: Vec<(&str, &str)> = feed
            .iter()
            .map(|c| (c.entity.as_str(), c.id.as_str()))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("template", "shot"),
                ("template", "shot"),
                ("template", "shot")
            ]
        );
    }

    #[tokio::test]
    async fn list_filters_by_status_and_a_proposal_can_be_withdrawn() {
        let (_dir, store) = open_store().await;
        for name in ["b", "a", "c"] {
            store
                .add_template(name, "x {y}", 6, "ann", 1)
                .await
                .expect("add");
        }
        store
            .approve_template("a", "bob", 2)
            .await
            .expect("approve");
        store
            .retire_template("c", "ann", 3)
            .await
            .expect("withdraw");
        let names = |v: Vec<TemplateRecord>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_templates(None).await.unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(
                store
                    .list_templates(Some(TemplateStatus::Proposed))
                    .await
                    .unwrap()
            ),
            ["b"]
        );
        assert_eq!(
            names(
                store
                    .list_templates(Some(TemplateStatus::Approved))
                    .await
                    .unwrap()
            ),
            ["a"]
        );
        assert_eq!(
            names(
                store
                    .list_templates(Some(TemplateStatus::Retired))
                    .await
                    .unwrap()
            ),
            ["c"]
        );
    }
}
