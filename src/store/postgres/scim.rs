//! PostgreSQL bodies of the SCIM provisioning store methods: SCIM users linked to `users` rows,
//! SCIM groups and their memberships. Every change writes `user` change rows for the users
//! whose record or group membership changed, so running servers re-resolve their roles.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{
    PostgresStore, ScimGroupChange, ScimGroupRecord, ScimUserRecord, StoreError, StoreResult,
    UserRecord, attributes_to_json, conflict, record_change,
};

const SCIM_USER_COLUMNS: &str = "SELECT s.scim_id, s.username, s.external_id, s.display_name, \
     s.given_name, s.family_name, u.email, u.disabled, s.created_at, s.updated_at \
     FROM scim_users s JOIN users u ON u.username = s.username";

fn scim_user_label(id: &str) -> String {
    format!("SCIM user `{id}`")
}

fn scim_group_label(id: &str) -> String {
    format!("SCIM group `{id}`")
}

fn scim_user_from_row(row: &PgRow) -> StoreResult<ScimUserRecord> {
    Ok(ScimUserRecord {
        scim_id: row.try_get("scim_id")?,
        username: row.try_get("username")?,
        external_id: row.try_get("external_id")?,
        display_name: row.try_get("display_name")?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        email: row.try_get("email")?,
        active: !row.try_get::<bool, _>("disabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// The usernames of the given SCIM user ids; `NotFound` naming the first unknown id.
async fn usernames_of(tx: &mut Tx<'_>, ids: &BTreeSet<String>) -> StoreResult<Vec<String>> {
    let mut names = Vec::with_capacity(ids.len());
    for id in ids {
        let name: Option<String> =
            sqlx::query_scalar("SELECT username FROM scim_users WHERE scim_id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
        names.push(name.ok_or_else(|| StoreError::NotFound(scim_user_label(id)))?);
    }
    Ok(names)
}

/// The member ids of a group, sorted.
async fn members_of(tx: &mut Tx<'_>, group_id: &str) -> StoreResult<BTreeSet<String>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM scim_group_members WHERE group_id = $1 ORDER BY user_id",
    )
    .bind(group_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Records a `user` change for each of `ids`' users.
async fn record_user_changes(tx: &mut Tx<'_>, ids: &BTreeSet<String>, at: i64) -> StoreResult<()> {
    for name in usernames_of(tx, ids).await? {
        record_change(tx, "user", &name, at).await?;
    }
    Ok(())
}

/// Reads one group (with members) inside a transaction.
async fn group_in(tx: &mut Tx<'_>, scim_id: &str) -> StoreResult<Option<ScimGroupRecord>> {
    let row = sqlx::query(
        "SELECT scim_id, display_name, external_id, created_at, updated_at \
         FROM scim_groups WHERE scim_id = $1",
    )
    .bind(scim_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let members = members_of(tx, scim_id).await?.into_iter().collect();
    Ok(Some(group_from_row(&row, members)?))
}

fn group_from_row(row: &PgRow, members: Vec<String>) -> StoreResult<ScimGroupRecord> {
    Ok(ScimGroupRecord {
        scim_id: row.try_get("scim_id")?,
        display_name: row.try_get("display_name")?,
        external_id: row.try_get("external_id")?,
        members,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PostgresStore {
    pub(super) async fn scim_create_user_impl(
        &self,
        scim: &ScimUserRecord,
        user: &UserRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
                .bind(&user.username)
                .fetch_one(&mut *tx)
                .await?;
        if exists {
            let linked: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM scim_users WHERE username = $1)")
                    .bind(&user.username)
                    .fetch_one(&mut *tx)
                    .await?;
            if linked {
                return Err(StoreError::Conflict(format!(
                    "SCIM user with userName `{}`",
                    user.username
                )));
            }
            sqlx::query("UPDATE users SET email = $1, disabled = $2 WHERE username = $3")
                .bind(&user.email)
                .bind(user.disabled)
                .bind(&user.username)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO users (username, email, role, attributes, disabled, password_hash, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.role)
            .bind(attributes_to_json(&user.attributes)?)
            .bind(user.disabled)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO scim_users (scim_id, username, external_id, display_name, given_name, \
             family_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&scim.scim_id)
        .bind(&user.username)
        .bind(&scim.external_id)
        .bind(&scim.display_name)
        .bind(&scim.given_name)
        .bind(&scim.family_name)
        .bind(scim.created_at)
        .bind(scim.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || scim_user_label(&scim.scim_id)))?;
        record_change(&mut tx, "user", &user.username, scim.updated_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A SCIM user where `column` (`s.scim_id` or `s.username`) equals `value`.
    pub(super) async fn scim_get_user_impl(
        &self,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<ScimUserRecord>> {
        let sql = format!("{SCIM_USER_COLUMNS} WHERE {column} = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(scim_user_from_row)
            .transpose()
    }

    pub(super) async fn scim_list_users_impl(&self) -> StoreResult<Vec<ScimUserRecord>> {
        let sql = format!("{SCIM_USER_COLUMNS} ORDER BY s.username");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(scim_user_from_row)
            .collect()
    }

    pub(super) async fn scim_update_user_impl(&self, scim: &ScimUserRecord) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let username: Option<String> = sqlx::query_scalar(
            "UPDATE scim_users SET external_id = $1, display_name = $2, given_name = $3, \
             family_name = $4, updated_at = $5 WHERE scim_id = $6 RETURNING username",
        )
        .bind(&scim.external_id)
        .bind(&scim.display_name)
        .bind(&scim.given_name)
        .bind(&scim.family_name)
        .bind(scim.updated_at)
        .bind(&scim.scim_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(username) = username else {
            return Err(StoreError::NotFound(scim_user_label(&scim.scim_id)));
        };
        sqlx::query("UPDATE users SET email = $1 WHERE username = $2")
            .bind(&scim.email)
            .bind(&username)
            .execute(&mut *tx)
            .await?;
        record_change(&mut tx, "user", &username, scim.updated_at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn scim_create_group_impl(&self, group: &ScimGroupRecord) -> StoreResult<()> {
        let members: BTreeSet<String> = group.members.iter().cloned().collect();
        let mut tx = self.begin_write().await?;
        // Checks every member exists (NotFound otherwise) before writing anything.
        usernames_of(&mut tx, &members).await?;
        sqlx::query(
            "INSERT INTO scim_groups (scim_id, display_name, external_id, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&group.scim_id)
        .bind(&group.display_name)
        .bind(&group.external_id)
        .bind(group.created_at)
        .bind(group.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || format!("SCIM group `{}`", group.display_name)))?;
        for member in &members {
            sqlx::query("INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)")
                .bind(&group.scim_id)
                .bind(member)
                .execute(&mut *tx)
                .await?;
        }
        record_user_changes(&mut tx, &members, group.updated_at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn scim_get_group_impl(
        &self,
        scim_id: &str,
    ) -> StoreResult<Option<ScimGroupRecord>> {
        let mut tx = self.pool.begin().await?;
        let group = group_in(&mut tx, scim_id).await?;
        tx.commit().await?;
        Ok(group)
    }

    pub(super) async fn scim_list_groups_impl(&self) -> StoreResult<Vec<ScimGroupRecord>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT scim_id, display_name, external_id, created_at, updated_at \
             FROM scim_groups ORDER BY display_name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT group_id, user_id FROM scim_group_members ORDER BY group_id, user_id",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            members
                .entry(row.try_get("group_id")?)
                .or_default()
                .push(row.try_get("user_id")?);
        }
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("scim_id")?;
                group_from_row(row, members.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    pub(super) async fn scim_modify_group_impl(
        &self,
        scim_id: &str,
        change: &ScimGroupChange,
        now: i64,
    ) -> StoreResult<ScimGroupRecord> {
        let mut tx = self.begin_write().await?;
        let Some(before) = group_in(&mut tx, scim_id).await? else {
            return Err(StoreError::NotFound(scim_group_label(scim_id)));
        };
        let old: BTreeSet<String> = before.members.iter().cloned().collect();
        let mut new: BTreeSet<String> = match &change.replace_members {
            Some(list) => list.iter().cloned().collect(),
            None => old.clone(),
        };
        new.extend(change.add_members.iter().cloned());
        for gone in &change.remove_members {
            new.remove(gone);
        }
        let added: BTreeSet<String> = new.difference(&old).cloned().collect();
        // Checks the added members exist before writing anything.
        usernames_of(&mut tx, &added).await?;

        let renamed = change
            .display_name
            .as_ref()
            .is_some_and(|name| *name != before.display_name);
        let display_name = change.display_name.as_ref().unwrap_or(&before.display_name);
        let external_id = change.external_id.as_ref().unwrap_or(&before.external_id);
        sqlx::query(
            "UPDATE scim_groups SET display_name = $1, external_id = $2, updated_at = $3 \
             WHERE scim_id = $4",
        )
        .bind(display_name)
        .bind(external_id)
        .bind(now)
        .bind(scim_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, || format!("SCIM group `{display_name}`")))?;

        let removed: BTreeSet<String> = old.difference(&new).cloned().collect();
        for id in &removed {
            sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2")
                .bind(scim_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for id in &added {
            sqlx::query("INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)")
                .bind(scim_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let touched: BTreeSet<String> = if renamed {
            old.union(&new).cloned().collect()
        } else {
            added.union(&removed).cloned().collect()
        };
        // Removed members may have been deleted as SCIM users meanwhile: skip unknown ids.
        let touched: BTreeSet<String> = {
            let mut known = BTreeSet::new();
            for id in touched {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM scim_users WHERE scim_id = $1)",
                )
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
                if exists {
                    known.insert(id);
                }
            }
            known
        };
        record_user_changes(&mut tx, &touched, now).await?;
        let after = group_in(&mut tx, scim_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(scim_group_label(scim_id)))?;
        tx.commit().await?;
        Ok(after)
    }

    pub(super) async fn scim_delete_group_impl(&self, scim_id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let members = members_of(&mut tx, scim_id).await?;
        let deleted = sqlx::query("DELETE FROM scim_groups WHERE scim_id = $1")
            .bind(scim_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(scim_group_label(scim_id)));
        }
        record_user_changes(&mut tx, &members, super::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn scim_groups_for_user_impl(
        &self,
        username: &str,
    ) -> StoreResult<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT g.display_name FROM scim_groups g \
             JOIN scim_group_members m ON m.group_id = g.scim_id \
             JOIN scim_users s ON s.scim_id = m.user_id \
             WHERE s.username = $1 ORDER BY g.display_name",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }
}
