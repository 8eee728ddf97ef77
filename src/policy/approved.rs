//! The prompt templates approved at run time (`inferguard templates approve`), kept in memory
//! for the authorizer.
//!
//! The set is loaded from the store on first use — only a `templates_only` role's request
//! needs it — and kept until the change feed reports a `template` change (or the cache TTL
//! passes, or the feed is lost). A load that raced an invalidation is used once but not kept,
//! so a retirement is never undone by a stale read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::Template;
use crate::store::{DynStore, StoreResult, TemplateRecord};

struct Loaded {
    templates: Arc<Vec<Template>>,
    at: Instant,
}

/// The approved templates of the store, cached with change-feed invalidation.
pub struct ApprovedTemplates {
    store: DynStore,
    ttl: Duration,
    loaded: ArcSwapOption<Loaded>,
    /// Bumped on every invalidation, so a load that started before it is not kept.
    generation: AtomicU64,
}

impl ApprovedTemplates {
    /// A cache over `store` whose set is reloaded at least every `ttl`.
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        ApprovedTemplates {
            store,
            ttl,
            loaded: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
        }
    }

    /// The approved templates, from memory when fresh, otherwise from the store.
    pub async fn get(&self) -> StoreResult<Arc<Vec<Template>>> {
        if let Some(loaded) = self.loaded.load_full()
            && loaded.at.elapsed() < self.ttl
        {
            return Ok(loaded.templates.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let records = self.store.approved_templates().await?;
        let templates = Arc::new(compile(&records));
        if self.generation.load(Ordering::SeqCst) == generation {
            self.loaded.store(Some(Arc::new(Loaded {
                templates: templates.clone(),
                at: Instant::now(),
            })));
        }
        Ok(templates)
    }

    /// Forgets the set: the next request that needs it reloads it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.loaded.store(None);
    }
}

/// Compiles stored templates; one that no longer compiles (it was checked when added) is
/// skipped with an error log rather than matching anything.
pub fn compile(records: &[TemplateRecord]) -> Vec<Template> {
    records
        .iter()
        .filter_map(|r| {
            let compiled = Template::new(r.name.clone(), r.text.clone())
                .and_then(|t| t.with_max_words(r.max_words as usize));
            match compiled {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(template = %r.name, error = %e, "stored template is invalid; ignored");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, TemplateStore};

    #[tokio::test]
    async fn caches_until_invalidated() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let cache = ApprovedTemplates::new(store.clone(), Duration::from_secs(60));
        assert!(cache.get().await.expect("empty").is_empty());
        store
            .add_template("t", "a {x} b", 2, "ann", 1)
            .await
            .expect("add");
        store
            .approve_template("t", "bob", 2)
            .await
            .expect("approve");
        assert!(cache.get().await.expect("cached").is_empty());
        cache.invalidate();
        let set = cache.get().await.expect("reloaded");
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].max_words, 2);
        assert!(set[0].matches("a one two b"));
        assert!(!set[0].matches("a one two three b"));
    }
}
