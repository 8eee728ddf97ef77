//! `last_used_at` of API keys, kept off the hot path: a Check only notes the use in memory;
//! a background task writes the notes to the store in one batch every few seconds (and once
//! more at shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{DynStore, StoreError};

/// How often noted uses are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The uses noted since the last flush: key id → latest use (unix seconds). Its size is
/// bounded by the number of keys that authenticated (unknown ids are never noted).
#[derive(Debug, Default)]
pub struct KeyUses {
    pending: Mutex<HashMap<String, i64>>,
}

impl KeyUses {
    /// Notes a use of key `id` at `at`; costs a lock and a map lookup (no allocation for a
    /// key already noted since the last flush).
    pub fn note(&self, id: &str, at: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(id.to_string(), at);
            }
        }
    }

    /// How many keys have uses waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes the noted uses to the store in one batch. On failure the uses are kept (merged
    /// with any noted meanwhile) for the next flush. Returns how many keys were written.
    pub async fn flush(&self, store: &DynStore) -> Result<usize, StoreError> {
        let batch: Vec<(String, i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            // Taken rather than drained: a burst of new keys leaves no large empty table.
            std::mem::take(&mut *pending).into_iter().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_key_uses(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for (id, at) in &batch {
                    self.note(id, *at);
                }
                Err(e)
            }
        }
    }
}

/// Flushes `uses` every `every` until `shutdown` turns true, then once more.
pub async fn flush_periodically(
    uses: Arc<KeyUses>,
    store: DynStore,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if let Err(e) = uses.flush(&store).await {
            tracing::warn!(error = %e, pending = uses.pending(), "could not record API key uses; will retry");
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ApiKeyRecord, OwnerRef, SqliteStore};

    #[tokio::test]
    async fn uses_are_batched_keep_the_latest_and_survive_a_failed_flush() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("u.db").display());
        let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        store
            .create_key(&ApiKeyRecord {
                id: "k1".into(),
                name: "k1".into(),
                owner: OwnerRef {
                    kind: crate::domain::PrincipalKind::User,
                    name: "alice".into(),
                },
                secret_sha256: "00".repeat(32),
                scopes: None,
                daily_images: None,
                created_at: 1,
                expires_at: i64::MAX,
                revoked_at: None,
                allowed_networks: None,
                last_used_at: None,
            })
            .await
            .expect("key");
        let uses = KeyUses::default();
        uses.note("k1", 100);
        uses.note("k1", 90);
        uses.note("k1", 120);
        uses.note("other", 5);
        assert_eq!(uses.pending(), 2);
        assert_eq!(uses.flush(&store).await.expect("flush"), 2);
        assert_eq!(uses.pending(), 0);
        let k1 = store.get_key("k1").await.expect("get").expect("k1");
        assert_eq!(k1.last_used_at, Some(120));
        assert_eq!(uses.flush(&store).await.expect("empty flush"), 0);

        // A store that cannot write (its table is gone): the uses stay for the next flush.
        uses.note("k1", 130);
        let raw = sqlx::SqlitePool::connect(&url).await.expect("raw");
        sqlx::query("DROP TABLE api_keys")
            .execute(&raw)
            .await
            .expect("drop");
        assert!(uses.flush(&store).await.is_err());
        assert_eq!(uses.pending(), 1, "a failed flush keeps the uses");
    }

    #[tokio::test]
    async fn the_periodic_flusher_writes_once_more_at_shutdown() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let uses = Arc::new(KeyUses::default());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(flush_periodically(
            uses.clone(),
            store,
            Duration::from_secs(3600),
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        uses.note("unknown-key", 7);
        tx.send(true).expect("send");
        task.await.expect("flusher ends");
        assert_eq!(uses.pending(), 0, "flushed at shutdown");
    }
}
