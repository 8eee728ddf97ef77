//! The cost of the JWT path: first sight (signature check) against a cached token. Run with
//! `cargo test --release --test jwt_cost -- --ignored --nocapture`; the figures are in the
//! README. Ignored by default: timings belong to benchmarks, not to the test suite.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use inferguard::domain::{AuthMethod, Principal, PrincipalKind, RoleSource};
use inferguard::identity::jwt::{JwtIssuerConfig, JwtVerifier};
use inferguard::identity::local::{ASSERTION_AUDIENCE, LocalIssuer, LocalUsersConfig};
use inferguard::store::{DynStore, SqliteStore};

#[tokio::test(flavor = "current_thread")]
#[ignore = "a timing run; see the module docs"]
async fn jwt_first_sight_vs_cached() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let issuer = LocalIssuer::load(&LocalUsersConfig::default(), store, Path::new("."))
        .await
        .unwrap();
    let (iss, _) = issuer.issuer_config();
    let mut cfg = JwtIssuerConfig::new(iss, vec![ASSERTION_AUDIENCE.to_string()]);
    cfg.algorithms = Some(vec!["EdDSA".into()]);
    let mut verifier = JwtVerifier::new(Vec::new()).unwrap();
    verifier.add_static_issuer(cfg, issuer.jwks()).unwrap();

    let now = chrono::Utc::now().timestamp();
    let principal = Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        role: "designer_basic".into(),
        role_source: RoleSource::Group,
        auth: AuthMethod::Jwt,
        key_id: None,
        scopes: None,
        session_id: None,
        attributes: Default::default(),
        mfa: false,
    };
    const N: usize = 2000;
    let tokens: Vec<String> = (0..N)
        .map(|i| issuer.assertion(&principal, &format!("r{i}"), now))
        .collect();

    let started = Instant::now();
    for t in &tokens {
        verifier.verify(t, now).await.unwrap();
    }
    let first = started.elapsed().as_secs_f64() * 1e6 / N as f64;
    let started = Instant::now();
    for t in &tokens {
        verifier.verify(t, now).await.unwrap();
    }
    let cached = started.elapsed().as_secs_f64() * 1e6 / N as f64;
    println!("EdDSA JWT verify: first sight {first:.1} µs, cached {cached:.1} µs (N = {N})");
    assert!(
        cached < first,
        "a cached token must cost less than a signature check"
    );
}
