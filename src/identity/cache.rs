//! A bounded, expiring cache whose entries the store's change feed can drop, with no window
//! in which a load that raced an invalidation stays cached.
//!
//! Built on `quick_cache` (its S3-FIFO policy, entries in a slab with a compact index), so an
//! entry costs its key, its value and an 8-byte deadline plus a few bytes of bookkeeping: the
//! API-key cache holds one entry per key in the store (100,000 keys is a real deployment).
//! `quick_cache` has no expiry of its own: each entry carries its deadline, and an expired entry
//! met by a lookup is removed and treated as a miss. Expired entries that are never looked up
//! again are not swept; they stay until `quick_cache`'s capacity policy evicts them, so the
//! capacity, not the TTL, bounds the memory held.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

/// One cached value and when it stops being served (nanoseconds since the cache's epoch).
#[derive(Clone)]
struct Slot<V> {
    value: V,
    deadline: u64,
}

/// A cache of store lookups (negative answers included) with change-feed invalidation.
pub struct FeedCache<K, V> {
    cache: Cache<K, Slot<V>>,
    ttl_nanos: u64,
    epoch: Instant,
    /// Bumped on every invalidation, so a load that started before it is not kept.
    generation: AtomicU64,
}

impl<K, V> FeedCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries (about: `quick_cache` splits it over its shards),
    /// each served at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        FeedCache {
            cache: Cache::new(capacity),
            ttl_nanos: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached value, or the loader's (kept unless an invalidation happened meanwhile).
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let value = load.await?;
        if self.generation.load(Ordering::SeqCst) != generation {
            // An invalidation came while loading: the value may be stale; serve it to this
            // caller only (it was read from the store after the call began), keep nothing.
            return Ok(value);
        }
        let deadline = self.now().saturating_add(self.ttl_nanos);
        self.cache.insert(
            key.clone(),
            Slot {
                value: value.clone(),
                deadline,
            },
        );
        // An invalidation can still land between the check above and the insert: it bumps the
        // generation first, then removes its key (or clears all), so it may have removed
        // nothing and this insert would keep a stale value until the TTL. Re-reading the
        // generation after the insert (SeqCst on both sides) closes that: either the
        // invalidation's removal ran after the insert and dropped it, or this read sees its
        // bump and removes the key here. A concurrent lookup can meet the value only in that
        // instant, as if the change feed had arrived a moment later; it is never kept. Removing
        // the key may drop a fresh value another load just inserted: that costs one miss.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.cache.remove(key);
        }
        Ok(value)
    }

    /// Drops one entry.
    pub async fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(key);
    }

    /// Drops every entry (their values are freed; `quick_cache` keeps its table's capacity).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }

    /// How many entries are held (expired ones not yet dropped included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when no entry is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    fn get(&self, key: &K) -> Option<V> {
        let slot = self.cache.get(key)?;
        let now = self.now();
        if now < slot.deadline {
            return Some(slot.value);
        }
        // Expired: a miss. Only an expired entry is removed, not one a load just replaced it by.
        self.cache.remove_if(key, |slot| now >= slot.deadline);
        None
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
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

        let (fresh, other) = ("c".to_string(), "b".to_string());
        let v = c
            .get_or_load(&fresh, async {
                c.invalidate(&other).await; // any invalidation, not only of this key
                Ok::<_, ()>(3)
            })
            .await;
        assert_eq!(v, Ok(3));
        assert_eq!(c.get_or_load(&fresh, async { Ok::<_, ()>(4) }).await, Ok(4));
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let c: FeedCache<u64, u32> = FeedCache::new(10, Duration::from_millis(500));
        assert_eq!(c.get_or_load(&1, async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(c.get_or_load(&1, async { Ok::<_, ()>(2) }).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(c.get_or_load(&1, async { Ok::<_, ()>(3) }).await, Ok(3));
    }

    #[tokio::test]
    async fn the_capacity_bounds_the_entries_held() {
        let capacity = 1_000;
        let c: FeedCache<u64, u64> = FeedCache::new(capacity, Duration::from_secs(60));
        for k in 0..20_000u64 {
            assert_eq!(
                c.get_or_load(&k, async { Ok::<_, ()>(k * 2) }).await,
                Ok(k * 2)
            );
        }
        let held = c.len();
        assert!(held as u64 <= capacity, "{held} entries held");
        // Shards fill unevenly, but each one is full by now.
        assert!(held as u64 >= capacity * 9 / 10, "{held} entries held");
        // The newest entry is still there.
        assert_eq!(
            c.get_or_load(&19_999, async { Ok::<_, ()>(0) }).await,
            Ok(39_998)
        );
        c.invalidate_all();
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn an_expired_entry_met_again_is_dropped() {
        let c: FeedCache<u64, u64> = FeedCache::new(100_000, Duration::from_millis(500));
        for k in 0..2_000u64 {
            c.get_or_load(&k, async { Ok::<_, ()>(k) })
                .await
                .expect("load");
        }
        assert_eq!(c.len(), 2_000);
        tokio::time::sleep(Duration::from_millis(600)).await;
        // A lookup of an expired entry is a miss that removes it (no reload here: the loader
        // fails, so nothing new is inserted).
        for k in 0..1_000u64 {
            assert_eq!(
                c.get_or_load(&k, async { Err::<u64, _>("down") }).await,
                Err("down")
            );
        }
        assert_eq!(c.len(), 1_000);
    }

    #[tokio::test]
    async fn expired_entries_never_met_again_are_evicted_by_the_capacity() {
        let capacity = 1_000;
        let c: FeedCache<u64, u64> = FeedCache::new(capacity, Duration::from_millis(300));
        for k in 0..1_000u64 {
            c.get_or_load(&k, async { Ok::<_, ()>(k) })
                .await
                .expect("load");
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        for k in 10_000..12_000u64 {
            c.get_or_load(&k, async { Ok::<_, ()>(k) })
                .await
                .expect("load");
        }
        let held = c.len();
        assert!(held as u64 <= capacity, "{held} entries held");
        // The fresh entries are served from the cache.
        assert_eq!(
            c.get_or_load(&11_999, async { Ok::<_, ()>(0) }).await,
            Ok(11_999)
        );
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_after_its_check_is_not_kept() {
        // The invalidation lands between the loader's first generation check and its insert:
        // simulated by bumping the generation from inside a value's Clone, which runs after the
        // check and before the insert.
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        struct Bump {
            cache: Arc<std::sync::OnceLock<Arc<FeedCache<u64, Bump>>>>,
            armed: Arc<AtomicBool>,
        }
        impl Clone for Bump {
            fn clone(&self) -> Self {
                if self.armed.swap(false, Ordering::SeqCst)
                    && let Some(c) = self.cache.get()
                {
                    c.invalidate_all();
                }
                Bump {
                    cache: self.cache.clone(),
                    armed: self.armed.clone(),
                }
            }
        }
        let cell = Arc::new(std::sync::OnceLock::new());
        let c = Arc::new(FeedCache::new(10, Duration::from_secs(60)));
        assert!(cell.set(c.clone()).is_ok());
        let armed = Arc::new(AtomicBool::new(true));
        let v = Bump {
            cache: cell.clone(),
            armed: armed.clone(),
        };
        c.get_or_load(&1, async { Ok::<_, ()>(v) })
            .await
            .expect("load");
        assert!(!armed.load(Ordering::SeqCst), "the clone ran");
        assert!(
            c.is_empty(),
            "a value loaded across an invalidation was kept"
        );
    }
}
