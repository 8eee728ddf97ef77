//! The store test suite, run against every backend: each test in these modules is an
//! `async fn name(t: TestStore)`, and [`store_tests!`] runs it once on a fresh SQLite file and
//! once on a fresh PostgreSQL schema.
//!
//! PostgreSQL is not optional: it runs on every development and CI machine (127.0.0.1:5432,
//! database `test`, trust auth; `INFERGUARD_TEST_POSTGRES_URL` overrides). When it cannot be
//! reached the PostgreSQL tests fail with a message saying so; they never skip.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

use super::{DynStore, open};

/// Runs each named test against both backends (`<module>::sqlite::<name>` and
/// `<module>::postgres::<name>`).
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::tests::TestStore::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::tests::TestStore::postgres().await).await
                }
            )*
        }
    };
}

mod approvals;
mod core;
mod key_hygiene;
mod postgres;
mod quota;
mod scim;
mod sessions;
mod templates;

/// The server the PostgreSQL tests use, tried in order (the first that answers wins).
const DEFAULT_POSTGRES_URLS: &[&str] = &[
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];

/// A fresh, migrated store for one test; its PostgreSQL schema (or SQLite file) is removed
/// when it is dropped, even when the test failed.
pub(crate) struct TestStore {
    /// The store under test.
    pub store: DynStore,
    /// The url `store` was opened with (a second handle opens the same store).
    pub url: String,
    backend: Backend,
}

/// What the store lives in; dropping it removes the store.
enum Backend {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgSchema),
}

impl TestStore {
    /// A store on a new SQLite file.
    pub(crate) async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = open(&url).await.expect("SQLite store opens");
        TestStore {
            store,
            url,
            backend: Backend::Sqlite(dir),
        }
    }

    /// A store on a new schema of the test PostgreSQL database.
    pub(crate) async fn postgres() -> TestStore {
        let schema = PgSchema::create().await;
        let url = schema.url.clone();
        let store = open(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL store opens on a fresh schema: {e}"));
        TestStore {
            store,
            url,
            backend: Backend::Postgres(schema),
        }
    }

    /// A second, independent handle on the same store (as another process would have).
    pub(crate) async fn reopen(&self) -> DynStore {
        open(&self.url).await.expect("second handle opens")
    }

    /// Runs raw SQL on the store's database (to tamper with rows).
    pub(crate) async fn execute(&self, sql: &'static str) {
        match &self.backend {
            Backend::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("sql");
            }
            Backend::Postgres(_) => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("sql");
            }
        }
    }

    /// True on PostgreSQL.
    #[allow(dead_code)]
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }
}

/// The test server's base url (without a schema): `INFERGUARD_TEST_POSTGRES_URL`, or the
/// first of [`DEFAULT_POSTGRES_URLS`] that accepts a connection. Panics with a clear message
/// when none does.
pub(crate) async fn postgres_base_url() -> String {
    static FOUND: OnceLock<String> = OnceLock::new();
    if let Some(url) = FOUND.get() {
        return url.clone();
    }
    let candidates: Vec<String> = match std::env::var("INFERGUARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => vec![url],
        _ => DEFAULT_POSTGRES_URLS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut errors = Vec::new();
    for url in &candidates {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                let _ = FOUND.set(url.clone());
                return url.clone();
            }
            Err(e) => errors.push(format!("{}: {e}", super::redacted_url(url))),
        }
    }
    panic!(
        "the store tests need PostgreSQL (127.0.0.1:5432, database `test`, trust auth; set \
         INFERGUARD_TEST_POSTGRES_URL to use another server) and none answered: {}",
        errors.join("; ")
    );
}

/// A schema of its own for one test, dropped (with everything in it) on drop.
pub(crate) struct PgSchema {
    base: String,
    name: String,
    /// The base url with `search_path` set to this schema.
    pub url: String,
}

impl PgSchema {
    /// Creates a new, empty schema with a unique name.
    pub(crate) async fn create() -> PgSchema {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = postgres_base_url().await;
        let name = format!(
            "ig_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("create a test schema");
        let _ = conn.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        PgSchema { base, name, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}
