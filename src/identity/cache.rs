//! A moka cache whose entries the store's change feed can drop, with no window in which a
//! load that raced an invalidation re-inserts stale data.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

/// A cache of store lookups (negative answers included) with change-feed invalidation.
pub struct FeedCache<K, V> {
    cache: Cache<K, V>,
    /// Bumped on every invalidation, so a load that started before it is not cached.
    generation: AtomicU64,
}

impl<K, V> FeedCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        FeedCache {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached value, or the loader's (cached unless an invalidation happened meanwhile).
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(hit) = self.cache.get(key).await {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let value = load.await?;
        if self.generation.load(Ordering::SeqCst) == generation {
            self.cache.insert(key.clone(), value.clone()).await;
        }
        Ok(value)
    }

    /// Drops one entry.
    pub async fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(key).await;
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caches_until_invalidated() {
        let c: FeedCache<String, u32> = FeedCache::new(10, Duration::from_secs(60));
        let k = "a".to_string();
        assert_eq!(c.get_or_load(&k, async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(c.get_or_load(&k, async { Ok::<_, ()>(2) }).await, Ok(1));
        c.invalidate(&k).await;
        assert_eq!(c.get_or_load(&k, async { Ok::<_, ()>(3) }).await, Ok(3));
        c.invalidate_all();
        assert_eq!(c.get_or_load(&k, async { Ok::<_, ()>(4) }).await, Ok(4));
        assert_eq!(
            c.get_or_load(&"b".to_string(), async { Err::<u32, _>("down") })
                .await,
            Err("down")
        );
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_is_not_cached() {
        let c: FeedCache<String, u32> = FeedCache::new(10, Duration::from_secs(60));
        let k = "a".to_string();
        let v = c
            .get_or_load(&k, async {
                c.invalidate_all(); // the change feed fires while the store read is in flight
                Ok::<_, ()>(1)
            })
            .await;
        assert_eq!(v, Ok(1));
        assert_eq!(c.get_or_load(&k, async { Ok::<_, ()>(2) }).await, Ok(2));
    }
}
