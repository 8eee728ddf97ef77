//! Quota counters on SQLite.
//!
//! One consumption is one `BEGIN IMMEDIATE` transaction (the write lock is held from the first
//! statement, so no other connection or process can interleave): each counter is upserted with
//! a guard (`used + amount <= limit`), and the transaction is rolled back when any guard fails.

use super::{BEGIN_WRITE, SqliteStore};
use crate::store::{QuotaCounter, QuotaOutcome, QuotaStore, StoreResult};

/// SQLite integers are signed 64-bit: larger limits and amounts are clamped (no real quota
/// gets near).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unclamp(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Adds `amount` when the counter stays within `limit` (creating the counter when it is new);
/// returns the new total, or `None` when the limit would be exceeded. The `SELECT … WHERE`
/// keeps a new counter from being created over its limit; the `DO UPDATE … WHERE` does the
/// same for an existing one.
const CONSUME: &str = "INSERT INTO quota_counters \
     (scope, unit, period, window_start, window_end, used) \
     SELECT $1, $2, $3, $4, $5, $6 WHERE $6 <= $7 \
     ON CONFLICT (scope, unit, period, window_start) \
     DO UPDATE SET used = quota_counters.used + excluded.used \
     WHERE quota_counters.used + excluded.used <= $7 \
     RETURNING used";

const USED: &str = "SELECT used FROM quota_counters \
     WHERE scope = $1 AND unit = $2 AND period = $3 AND window_start = $4";

#[async_trait::async_trait]
impl QuotaStore for SqliteStore {
    async fn consume_quota(&self, counters: &[QuotaCounter]) -> StoreResult<QuotaOutcome> {
        if counters.is_empty() {
            return Ok(QuotaOutcome::Consumed { used: Vec::new() });
        }
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut used = Vec::with_capacity(counters.len());
        let mut exceeded = Vec::new();
        for (i, c) in counters.iter().enumerate() {
            let total: Option<i64> = sqlx::query_scalar(CONSUME)
                .bind(&c.scope)
                .bind(c.unit.as_str())
                .bind(c.period.as_str())
                .bind(c.window_start)
                .bind(c.window_end)
                .bind(clamp(c.amount))
                .bind(clamp(c.limit))
                .fetch_optional(&mut *tx)
                .await?;
            match total {
                Some(total) => used.push(unclamp(total)),
                None => {
                    let before: Option<i64> = sqlx::query_scalar(USED)
                        .bind(&c.scope)
                        .bind(c.unit.as_str())
                        .bind(c.period.as_str())
                        .bind(c.window_start)
                        .fetch_optional(&mut *tx)
                        .await?;
                    exceeded.push((i, before.map_or(0, unclamp)));
                }
            }
        }
        if exceeded.is_empty() {
            tx.commit().await?;
            Ok(QuotaOutcome::Consumed { used })
        } else {
            tx.rollback().await?;
            Ok(QuotaOutcome::Exceeded { exceeded })
        }
    }

    async fn quota_used(&self, counter: &QuotaCounter) -> StoreResult<u64> {
        let used: Option<i64> = sqlx::query_scalar(USED)
            .bind(&counter.scope)
            .bind(counter.unit.as_str())
            .bind(counter.period.as_str())
            .bind(counter.window_start)
            .fetch_optional(&self.pool)
            .await?;
        Ok(used.map_or(0, unclamp))
    }

    async fn prune_quota_counters(&self, ended_before: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let deleted = sqlx::query("DELETE FROM quota_counters WHERE window_end < $1")
            .bind(ended_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

#[cfg(test)]
impl SqliteStore {
    /// Closes the pool, so every later call fails as an unreachable store would.
    pub(crate) async fn close_for_tests(&self) {
        self.pool.close().await;
    }
}
