//! Quota counters on PostgreSQL, shared exactly by every replica.
//!
//! One consumption is one transaction: each counter is upserted by one atomic
//! `INSERT … ON CONFLICT DO UPDATE … WHERE used + amount <= limit` (PostgreSQL row-locks the
//! counter and evaluates the guard on its latest committed value, so concurrent requests on any
//! replica can never overshoot), and the transaction is rolled back when any guard fails. The
//! counters of one request are taken in a fixed order, so two requests never deadlock.

use super::PostgresStore;
use crate::store::{QuotaCounter, QuotaOutcome, QuotaStore, StoreResult};

/// BIGINT is signed 64-bit: larger limits and amounts are clamped (no real quota gets near).
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
impl QuotaStore for PostgresStore {
    async fn consume_quota(&self, counters: &[QuotaCounter]) -> StoreResult<QuotaOutcome> {
        if counters.is_empty() {
            return Ok(QuotaOutcome::Consumed { used: Vec::new() });
        }
        // Row locks are taken in one global order (no deadlock between two requests).
        let mut order: Vec<usize> = (0..counters.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&counters[a], &counters[b]);
            (&a.scope, a.unit, a.period, a.window_start).cmp(&(
                &b.scope,
                b.unit,
                b.period,
                b.window_start,
            ))
        });
        let mut tx = self.pool.begin().await?;
        let mut used = vec![0; counters.len()];
        let mut exceeded = Vec::new();
        for i in order {
            let c = &counters[i];
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
                Some(total) => used[i] = unclamp(total),
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
            exceeded.sort_unstable();
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
        let deleted = sqlx::query("DELETE FROM quota_counters WHERE window_end < $1")
            .bind(ended_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
