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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{QuotaPeriod, QuotaUnit};

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("quota.db").display());
        let store = SqliteStore::connect(&url).await.expect("store opens");
        (dir, store)
    }

    fn counter(scope: &str, limit: u64, amount: u64) -> QuotaCounter {
        QuotaCounter {
            scope: scope.into(),
            unit: QuotaUnit::Images,
            period: QuotaPeriod::Day,
            window_start: 1_000,
            window_end: 87_400,
            limit,
            amount,
        }
    }

    #[tokio::test]
    async fn consumes_up_to_the_limit_and_not_beyond() {
        let (_dir, store) = open_store().await;
        let c = counter("user:alice", 10, 4);
        assert_eq!(
            store
                .consume_quota(std::slice::from_ref(&c))
                .await
                .expect("1"),
            QuotaOutcome::Consumed { used: vec![4] }
        );
        assert_eq!(
            store
                .consume_quota(std::slice::from_ref(&c))
                .await
                .expect("2"),
            QuotaOutcome::Consumed { used: vec![8] }
        );
        assert_eq!(
            store
                .consume_quota(std::slice::from_ref(&c))
                .await
                .expect("3"),
            QuotaOutcome::Exceeded {
                exceeded: vec![(0, 8)]
            }
        );
        assert_eq!(store.quota_used(&c).await.expect("used"), 8);
        let two = QuotaCounter {
            amount: 2,
            ..c.clone()
        };
        assert_eq!(
            store.consume_quota(&[two]).await.expect("exact fit"),
            QuotaOutcome::Consumed { used: vec![10] }
        );
    }

    #[tokio::test]
    async fn a_new_counter_is_not_created_over_its_limit() {
        let (_dir, store) = open_store().await;
        let c = counter("user:bob", 3, 5);
        assert_eq!(
            store
                .consume_quota(std::slice::from_ref(&c))
                .await
                .expect("over"),
            QuotaOutcome::Exceeded {
                exceeded: vec![(0, 0)]
            }
        );
        assert_eq!(store.quota_used(&c).await.expect("used"), 0);
        let zero = counter("user:carol", 0, 1);
        assert!(matches!(
            store.consume_quota(&[zero]).await.expect("zero limit"),
            QuotaOutcome::Exceeded { .. }
        ));
    }

    #[tokio::test]
    async fn consumption_is_all_or_nothing_across_counters() {
        let (_dir, store) = open_store().await;
        let user = counter("user:alice", 100, 3);
        let key = counter("key:k1", 5, 3);
        let month = QuotaCounter {
            period: QuotaPeriod::Month,
            ..counter("user:alice", 1_000, 3)
        };
        let all = [user.clone(), key.clone(), month.clone()];
        assert_eq!(
            store.consume_quota(&all).await.expect("first"),
            QuotaOutcome::Consumed {
                used: vec![3, 3, 3]
            }
        );
        // The key's limit fails: neither the user's daily nor monthly counter moves.
        assert_eq!(
            store.consume_quota(&all).await.expect("second"),
            QuotaOutcome::Exceeded {
                exceeded: vec![(1, 3)]
            }
        );
        assert_eq!(store.quota_used(&user).await.expect("user"), 3);
        assert_eq!(store.quota_used(&key).await.expect("key"), 3);
        assert_eq!(store.quota_used(&month).await.expect("month"), 3);
        // Every failing counter is reported.
        let tight = [
            QuotaCounter {
                limit: 4,
                ..user.clone()
            },
            key.clone(),
        ];
        assert_eq!(
            store.consume_quota(&tight).await.expect("third"),
            QuotaOutcome::Exceeded {
                exceeded: vec![(0, 3), (1, 3)]
            }
        );
    }

    #[tokio::test]
    async fn windows_units_and_scopes_are_separate_counters() {
        let (_dir, store) = open_store().await;
        let today = counter("user:alice", 5, 5);
        store
            .consume_quota(std::slice::from_ref(&today))
            .await
            .expect("today");
        let tomorrow = QuotaCounter {
            window_start: today.window_end,
            window_end: today.window_end + 86_400,
            ..today.clone()
        };
        let tokens = QuotaCounter {
            unit: QuotaUnit::Tokens,
            ..today.clone()
        };
        let other = counter("user:bob", 5, 5);
        for c in [tomorrow, tokens, other] {
            assert_eq!(
                store.consume_quota(&[c]).await.expect("fresh"),
                QuotaOutcome::Consumed { used: vec![5] }
            );
        }
        assert_eq!(
            store.consume_quota(&[]).await.expect("empty"),
            QuotaOutcome::Consumed { used: vec![] }
        );
    }

    #[tokio::test]
    async fn counters_stay_out_of_the_change_feed_and_can_be_pruned() {
        let (_dir, store) = open_store().await;
        use crate::store::Store;
        let before = store.latest_change().await.expect("latest");
        store
            .consume_quota(&[counter("user:alice", 5, 1)])
            .await
            .expect("consume");
        assert_eq!(store.latest_change().await.expect("latest"), before);
        assert_eq!(store.prune_quota_counters(87_400).await.expect("keep"), 0);
        assert_eq!(store.prune_quota_counters(87_401).await.expect("prune"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_racing_requests_through_two_handles_get_exactly_the_remaining_ten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("race.db").display());
        let a = SqliteStore::connect(&url).await.expect("first handle");
        let b = SqliteStore::connect(&url).await.expect("second handle");
        // 40 of 50 already used: 10 remain.
        let c = counter("user:alice", 50, 40);
        a.consume_quota(std::slice::from_ref(&c))
            .await
            .expect("prefill");
        let one = QuotaCounter { amount: 1, ..c };
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let counters = [one.clone(), counter("key:k1", 1_000, 1)];
            tasks.push(tokio::spawn(
                async move { store.consume_quota(&counters).await },
            ));
        }
        let mut consumed = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.expect("join").expect("no store error") {
                QuotaOutcome::Consumed { .. } => consumed += 1,
                QuotaOutcome::Exceeded { .. } => refused += 1,
            }
        }
        assert_eq!((consumed, refused), (10, 40));
        assert_eq!(b.quota_used(&one).await.expect("used"), 50);
        // The refused 40 cost the key nothing either.
        assert_eq!(
            a.quota_used(&counter("key:k1", 1_000, 1))
                .await
                .expect("key"),
            10
        );
    }
}
