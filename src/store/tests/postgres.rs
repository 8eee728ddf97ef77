//! PostgreSQL only: concurrent migrations, change notifications (and their loss), the order
//! of the change feed under concurrent writers, url errors.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Connection;

use super::{PgSchema, TestStore, postgres_base_url};
use crate::store::*;

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: None,
        role: Some("viewer".into()),
        attributes: Default::default(),
        disabled: false,
        password_hash: None,
        created_at: 1_700_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let schema = PgSchema::create().await;
    let url = schema.url.as_str();
    let (a, b, c, d) = tokio::join!(open(url), open(url), open(url), open(url));
    for s in [a, b, c, d] {
        assert!(s.is_ok(), "every replica opens: {:?}", s.err());
    }
    let mut conn = sqlx::PgConnection::connect(&schema.url)
        .await
        .expect("connect");
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("migrations table");
    let expected: Vec<i64> = (1..=applied.len() as i64).collect();
    assert!(!applied.is_empty());
    assert_eq!(applied, expected, "each migration recorded once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_has_no_listener_and_postgres_has_one() {
    assert!(TestStore::sqlite().await.store.change_listener().is_none());
    assert!(
        TestStore::postgres()
            .await
            .store
            .change_listener()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_another_handle_wakes_the_listener() {
    let t = TestStore::postgres().await;
    let mut listener = t.store.change_listener().expect("listener");
    listener.subscribe().await.expect("listen");
    let other = t.reopen().await;
    other.create_user(&user("alice")).await.expect("write");
    let signal = tokio::time::timeout(Duration::from_secs(2), listener.next())
        .await
        .expect("woken within 2 s");
    assert_eq!(signal, ChangeSignal::Changed);

    // Nothing else changed: no spurious wake-up.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.next())
            .await
            .is_err()
    );
    // A failed mutation records nothing and notifies nobody.
    other.create_user(&user("alice")).await.expect_err("dup");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.next())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_says_so() {
    let t = TestStore::postgres().await;
    let mut listener = t.store.change_listener().expect("listener");
    listener.subscribe().await.expect("listen");
    let pid = listener.backend_pid().expect("pid");

    let mut admin = sqlx::PgConnection::connect(&postgres_base_url().await)
        .await
        .expect("connect");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);

    let signal = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("reconnects");
    assert_eq!(signal, ChangeSignal::Resubscribed);
    assert_ne!(listener.backend_pid(), Some(pid), "a new connection");

    t.store.create_user(&user("bob")).await.expect("write");
    let signal = tokio::time::timeout(Duration::from_secs(2), listener.next())
        .await
        .expect("woken");
    assert_eq!(signal, ChangeSignal::Changed);
}

/// Sequence numbers are assigned before commit: without the writers' lock, a follower could
/// read seq N+1 before N commits and skip N for ever. A follower reading while 100 writes race
/// through two handles must see every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_never_skips_a_change_under_concurrent_writers() {
    let t = TestStore::postgres().await;
    let a = t.store.clone();
    let b = t.reopen().await;
    for name in ["u0", "u1", "u2", "u3"] {
        a.create_user(&user(name)).await.expect("user");
    }
    let start = a.latest_change().await.expect("latest");
    let follower = {
        let store = t.reopen().await;
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut last = start;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while seen.len() < 100 && tokio::time::Instant::now() < deadline {
                for c in store.changes_since(last, 1000).await.expect("feed") {
                    seen.insert(c.seq);
                    last = c.seq;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    // Waves of 10 racing writers (5 per handle), as many as the pools serve at once.
    for wave in 0..10 {
        let mut writers = Vec::new();
        for i in wave * 10..wave * 10 + 10 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            writers.push(tokio::spawn(async move {
                store
                    .set_user_attr(&format!("u{}", i % 4), &format!("k{i}"), "v")
                    .await
            }));
        }
        for w in writers {
            w.await.expect("join").expect("write");
        }
    }
    let seen = follower.await.expect("join");
    let all: BTreeSet<i64> = a
        .changes_since(start, 1000)
        .await
        .expect("feed")
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(all.len(), 100);
    assert_eq!(seen, all, "the follower saw every change");
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_the_password_is_not_shown() {
    let err = open("postgres://inferguard:s3cret@127.0.0.1:1/test")
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("inferguard:***@127.0.0.1:1"), "{text}");
}
