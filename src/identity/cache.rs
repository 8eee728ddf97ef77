//! A bounded, expiring cache whose entries the store's change feed can drop, with no window
//! in which a load that raced an invalidation re-inserts stale data.
//!
//! Lean by design: the API-key cache holds one entry per key in the store (100,000 keys is a
//! real deployment), so an entry costs its key, its value and an 8-byte deadline in a sharded
//! hash map, nothing else (no per-entry access-order nodes or shared bookkeeping records).
//! Expired entries are dropped when met, and each shard sweeps its expired entries after a
//! number of inserts proportional to its size. A full shard evicts the entry nearest to expiry
//! (the oldest) among a few it samples.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards, each behind its own lock (a power of two).
const SHARDS: usize = 16;
/// Entries a full shard looks at to choose the one to evict.
const EVICTION_SAMPLE: usize = 8;
/// The fewest inserts between two sweeps of a shard's expired entries.
const MIN_SWEEP_INTERVAL: usize = 64;

/// One cached value and when it stops being served (nanoseconds since the cache's epoch).
struct Slot<V> {
    value: V,
    deadline: u64,
}

struct Shard<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Inserts since this shard last swept out expired entries.
    inserts: usize,
}

/// A cache of store lookups (negative answers included) with change-feed invalidation.
pub struct FeedCache<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    /// The most entries one shard keeps.
    shard_capacity: usize,
    ttl_nanos: u64,
    epoch: Instant,
    hasher: RandomState,
    /// Bumped on every invalidation, so a load that started before it is not cached.
    generation: AtomicU64,
}

impl<K, V> FeedCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries (split evenly over the shards, at least one
    /// each), each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shard_capacity = (capacity / SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    inserts: 0,
                })
            })
            .collect();
        FeedCache {
            shards,
            shard_capacity,
            ttl_nanos: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached value, or the loader's (cached unless an invalidation happened meanwhile).
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let value = load.await?;
        let mut shard = self.shard(key);
        // Checked under the shard lock: an invalidation of this key takes the same lock after
        // bumping the generation, so it either sees this insert or this check sees its bump.
        if self.generation.load(Ordering::SeqCst) == generation {
            let now = self.now();
            self.insert(&mut shard, key.clone(), value.clone(), now);
        }
        Ok(value)
    }

    /// Drops one entry.
    pub async fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.shard(key).map.remove(key);
    }

    /// Drops every entry (and frees the memory they held).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.map = HashMap::new();
            shard.inserts = 0;
        }
    }

    /// How many entries are held (expired ones not yet dropped included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// True when no entry is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &K) -> Option<V> {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some(slot) if now < slot.deadline => Some(slot.value.clone()),
            Some(_) => {
                shard.map.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, shard: &mut Shard<K, V>, key: K, value: V, now: u64) {
        shard.inserts += 1;
        if shard.inserts >= (shard.map.len() / 2).max(MIN_SWEEP_INTERVAL) {
            shard.map.retain(|_, slot| now < slot.deadline);
            shard.inserts = 0;
        }
        if shard.map.len() >= self.shard_capacity && !shard.map.contains_key(&key) {
            let victim = shard
                .map
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, slot)| slot.deadline)
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                shard.map.remove(&victim);
            }
        }
        let deadline = now.saturating_add(self.ttl_nanos);
        shard.map.insert(key, Slot { value, deadline });
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        // SHARDS is a power of two; the low bits of a SipHash are as good as any.
        let index = (self.hasher.hash_one(key) as usize) & (SHARDS - 1);
        lock(&self.shards[index])
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Locks a shard; a panic while holding it left a consistent map (every update is one call).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    async fn expired_entries_are_swept_without_being_met_again() {
        let c: FeedCache<u64, u64> = FeedCache::new(100_000, Duration::from_millis(500));
        for k in 0..2_000u64 {
            c.get_or_load(&k, async { Ok::<_, ()>(k) })
                .await
                .expect("load");
        }
        assert_eq!(c.len(), 2_000);
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Fresh inserts trigger each shard's sweep of the expired ones.
        for k in 10_000..12_000u64 {
            c.get_or_load(&k, async { Ok::<_, ()>(k) })
                .await
                .expect("load");
        }
        let held = c.len();
        assert!(
            held < 3_000,
            "{held} entries held: expired ones were not swept"
        );
    }
}
