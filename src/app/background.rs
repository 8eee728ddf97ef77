//! Background tasks of `serve`: following the store's change feed (woken by the store's change
//! notifications where it has them), and reloading the policy.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::app::Shared;
use crate::audit::{AuditEvent, AuditTrail};
use crate::authorizer::Authorizer;
use crate::config;
use crate::store::{ChangeListener, ChangeSignal};

const FEED_BATCH: i64 = 1000;

/// Wake-ups from the store's change notifications (PostgreSQL LISTEN/NOTIFY).
#[derive(Default)]
struct Wake {
    /// Signalled on every notification (permits coalesce: many changes, one read).
    notify: Notify,
    /// Set when the notification channel was lost and is back: caches may be stale.
    resubscribed: AtomicBool,
}

/// Aborts the listening task when the follower ends (or is cancelled).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows the change feed and drops the cache entries it names, so that a change made by
/// another process (the CLI, another replica) reaches this one quickly: at once when the
/// store pushes change notifications (PostgreSQL), and within `interval` by polling in any
/// case (SQLite, or a lost notification). When the notification channel was lost, every
/// cache is flushed once it is back and the feed has been read (a change may have been missed
/// meanwhile; flushing only once the store answers keeps the caches deciding while it is down).
pub async fn follow_changes(
    shared: Arc<Shared>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = Arc::new(Wake::default());
    let _listening = shared
        .store
        .change_listener()
        .map(|listener| AbortOnDrop(tokio::spawn(listen(listener, wake.clone()))));
    let mut last: Option<i64> = None;
    let mut flush_pending = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = wake.notify.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let authorizer = &shared.authorizer;
        if wake.resubscribed.swap(false, Ordering::SeqCst) {
            flush_pending = true;
        }
        let Some(after) = last else {
            match shared.store.latest_change().await {
                Ok(seq) => {
                    last = Some(seq);
                    // Anything cached before we knew where the feed stood may be stale.
                    authorizer.flush_caches();
                    shared.store_healthy.store(true, Ordering::SeqCst);
                }
                Err(e) => mark_unhealthy(&shared, &e.to_string()),
            }
            continue;
        };
        match shared.store.changes_since(after, FEED_BATCH).await {
            Ok(changes) => {
                if !shared.store_healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!("store reachable again");
                }
                for c in &changes {
                    authorizer.apply_change(c).await;
                    last = Some(c.seq);
                }
                if flush_pending {
                    flush_pending = false;
                    tracing::info!("store change notifications resumed: all caches flushed");
                    authorizer.flush_caches();
                }
                if changes.len() as i64 == FEED_BATCH {
                    ticker.reset_immediately();
                }
            }
            Err(e) => mark_unhealthy(&shared, &e.to_string()),
        }
    }
}

/// Forwards the store's change notifications to the follower, for as long as it runs (the
/// listener reconnects by itself).
async fn listen(mut listener: ChangeListener, wake: Arc<Wake>) {
    loop {
        match listener.next().await {
            ChangeSignal::Changed => {}
            ChangeSignal::Resubscribed => wake.resubscribed.store(true, Ordering::SeqCst),
        }
        wake.notify.notify_one();
    }
}

fn mark_unhealthy(shared: &Shared, error: &str) {
    if shared.store_healthy.swap(false, Ordering::SeqCst) {
        tracing::error!(
            error,
            "store change feed unreachable: cached credentials keep deciding, uncached ones get 503"
        );
    }
}

/// Reloads the policy when its file changes (checked every second) or on SIGHUP. A valid new
/// policy replaces the old one atomically; an invalid one is logged and the old one stays.
pub async fn reload_policy(
    authorizer: Arc<Authorizer>,
    path: PathBuf,
    audit: Option<AuditTrail>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; file changes still reload the policy");
            None
        }
    };
    let mut seen = digest_of(&path).await;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => true,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let current = digest_of(&path).await;
        if !forced && current == seen {
            continue;
        }
        seen = current;
        match config::read_file(&path).and_then(|text| config::compile_policy(&path, &text)) {
            Ok(policy) => {
                tracing::info!(version = %policy.version, file = %path.display(), "policy reloaded");
                let version = policy.version.clone();
                authorizer.replace_policy(policy);
                record(
                    &audit,
                    AuditEvent::policy_reload(&path.display().to_string(), Ok(&version)),
                )
                .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload refused; the previous policy stays in force");
                let error = e.to_string();
                record(
                    &audit,
                    AuditEvent::policy_reload(&path.display().to_string(), Err(&error)),
                )
                .await;
            }
        }
    }
}

async fn record(audit: &Option<AuditTrail>, event: AuditEvent) {
    if let Some(trail) = audit
        && let Err(e) = trail.record(event).await
    {
        tracing::error!(error = %e, "audit: the policy reload could not be recorded");
    }
}

async fn digest_of(path: &PathBuf) -> Option<Vec<u8>> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(Sha256::digest(&bytes).to_vec())
}
