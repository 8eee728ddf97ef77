//! Wake-ups for the change-feed follower: `LISTEN inferguard_changes_<oid>`.
//!
//! A trigger on `changes` sends a notification when a change commits (migration 0001). The
//! notification only says "read the feed now": the follower reads the durable feed itself, so
//! a lost notification costs at most one poll interval. When the listening connection is lost,
//! notifications sent meanwhile are gone: after reconnecting, [`ChangeListener::next`] reports
//! [`ChangeSignal::Resubscribed`] and the follower flushes its caches and rereads the feed.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

/// The NOTIFY channel every change is announced on is this prefix followed by the oid of the
/// store's `changes` table (so stores in different schemas of one database stay apart).
pub const CHANGE_CHANNEL: &str = "inferguard_changes_";

/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait after a failed reconnection attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSignal {
    /// A change committed: read the feed now.
    Changed,
    /// The channel was lost and is listening again: notifications may have been missed, so
    /// cached entries may be stale.
    Resubscribed,
}

/// A LISTEN connection that reconnects by itself (with back-off) when it is lost.
pub struct ChangeListener {
    pool: PgPool,
    listener: Option<PgListener>,
    /// True once a connection has been lost (or could not be opened): the next successful
    /// LISTEN is reported as [`ChangeSignal::Resubscribed`].
    lost: bool,
    backoff: Duration,
    /// The server process id of the current LISTEN connection (for tests that cut it).
    backend_pid: Option<i32>,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener")
            .field("listening", &self.listener.is_some())
            .field("backend_pid", &self.backend_pid)
            .finish()
    }
}

impl ChangeListener {
    pub(super) fn new(pool: PgPool) -> ChangeListener {
        ChangeListener {
            pool,
            listener: None,
            lost: false,
            backoff: FIRST_BACKOFF,
            backend_pid: None,
        }
    }

    /// Connects and subscribes when not listening yet. Errors leave it unsubscribed (the next
    /// call retries).
    pub async fn subscribe(&mut self) -> Result<(), sqlx::Error> {
        if self.listener.is_some() {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // Keep listening when the store's pool is closed at shutdown until the task ends.
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        let (table, pid): (String, i32) =
            sqlx::query_as("SELECT 'changes'::regclass::oid::text, pg_backend_pid()")
                .fetch_one(&mut listener)
                .await?;
        listener.listen(&format!("{CHANGE_CHANNEL}{table}")).await?;
        self.backend_pid = Some(pid);
        self.listener = Some(listener);
        Ok(())
    }

    /// The server process id of the LISTEN connection, when listening.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// Waits for the next signal. Never fails: a lost connection is reopened with back-off
    /// (logged), and the first signal after it is [`ChangeSignal::Resubscribed`].
    pub async fn next(&mut self) -> ChangeSignal {
        loop {
            if self.listener.is_none() {
                match self.subscribe().await {
                    Ok(()) => {
                        self.backoff = FIRST_BACKOFF;
                        if std::mem::take(&mut self.lost) {
                            tracing::info!("store change notifications: listening again");
                            return ChangeSignal::Resubscribed;
                        }
                    }
                    Err(e) => {
                        if !self.lost {
                            tracing::warn!(error = %e, "store change notifications: cannot listen; polling meanwhile");
                        }
                        self.lost = true;
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(listener) = self.listener.as_mut() else {
                continue;
            };
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    // Several changes committed together wake the follower once.
                    while listener.next_buffered().is_some() {}
                    return ChangeSignal::Changed;
                }
                Ok(None) => {
                    tracing::warn!("store change notifications: connection lost; reconnecting");
                    self.drop_connection();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store change notifications failed; reconnecting");
                    self.drop_connection();
                }
            }
        }
    }

    fn drop_connection(&mut self) {
        self.listener = None;
        self.backend_pid = None;
        self.lost = true;
    }
}
