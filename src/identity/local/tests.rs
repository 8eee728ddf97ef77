//! Local login: configuration, the signing key, the token endpoint and the assertion.
//!
//! Argon2 is costly even optimised; users here get cheap hashes (parameters travel in the
//! PHC string) except where the cost itself matters, and only the unknown-user cases pay for
//! the dummy hash.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::*;
use crate::domain::{AuthMethod, Principal, PrincipalKind, RoleSource};
use crate::store::{self, DynStore, UserRecord};

const ADDR: &str = "198.51.100.7";
const PASSWORD: &str = "correct horse battery staple";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An Argon2id hash with tiny parameters: verifying it costs microseconds.
fn cheap_hash(password: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn user(name: &str, password: Option<&str>, disabled: bool) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        role: Some("designer_basic".into()),
        attributes: BTreeMap::new(),
        disabled,
        password_hash: password.map(cheap_hash),
        created_at: 1_700_000_000,
    }
}

async fn open_store() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = store::open(&url).await.expect("store");
    (dir, store)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: DynStore,
    issuer: Arc<LocalIssuer>,
    endpoint: TokenEndpoint,
}

async fn fixture() -> Fixture {
    let (dir, store) = open_store().await;
    for u in [
        user("alice", Some(PASSWORD), false),
        user("dave", Some(PASSWORD), true),
        user("idp-only", None, false),
    ] {
        store.create_user(&u).await.expect("user");
    }
    let cfg = LocalUsersConfig {
        enabled: true,
        ..LocalUsersConfig::default()
    };
    let issuer = Arc::new(
        LocalIssuer::load(&cfg, store.clone(), dir.path())
            .await
            .expect("issuer"),
    );
    let endpoint = TokenEndpoint::new(&cfg, issuer.clone(), store.clone()).expect("endpoint");
    Fixture {
        _dir: dir,
        store,
        issuer,
        endpoint,
    }
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn login(username: &str, password: &str) -> HashMap<String, String> {
    form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ])
}

fn refresh(token: &str) -> HashMap<String, String> {
    form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
}

fn body(r: &TokenResponse) -> Value {
    serde_json::from_str(&r.body).expect("JSON body")
}

fn header<'a>(r: &'a TokenResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// Verifies `token` with nothing but the published JWKS and `jsonwebtoken`.
fn verify(jwks: &JwkSet, token: &str, audience: &str) -> jsonwebtoken::errors::Result<Value> {
    let kid = jsonwebtoken::decode_header(token)?
        .kid
        .expect("kid in header");
    let jwk = jwks.find(&kid).expect("kid is published");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["inferguard"]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)
        .map(|data| data.claims)
}

// === configuration ===

#[test]
fn config_defaults_and_yaml() {
    let cfg: LocalUsersConfig = serde_yaml::from_str("{}").expect("empty");
    assert_eq!(cfg, LocalUsersConfig::default());
    assert!(!cfg.enabled);
    assert_eq!(cfg.token_ttl, Duration::from_secs(1800));
    assert_eq!(cfg.refresh_ttl, Duration::from_secs(30 * 86_400));
    assert_eq!(cfg.issuer, "inferguard");
    assert_eq!(cfg.audiences, ["inferguard"]);
    assert!(cfg.signing_key_file.is_none());
    cfg.validate().expect("defaults are valid");

    let cfg: LocalUsersConfig = serde_yaml::from_str(
        "{enabled: true, token_ttl: 15m, refresh_ttl: 7d, issuer: https://ig.example.com, \
         audiences: [inferguard, reports], signing_key_file: keys/ig.pem}",
    )
    .expect("full");
    assert_eq!(cfg.token_ttl, Duration::from_secs(900));
    assert_eq!(cfg.refresh_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(
        cfg.signing_key_file.as_deref(),
        Some("keys/ig.pem".as_ref())
    );
    cfg.validate().expect("valid");

    let err = serde_yaml::from_str::<LocalUsersConfig>("{token_tll: 30m}").expect_err("typo");
    assert!(err.to_string().contains("token_tll"), "{err}");
    let err = serde_yaml::from_str::<LocalUsersConfig>("{token_ttl: soon}").expect_err("bad");
    assert!(
        err.to_string().contains("`soon` is not a duration"),
        "{err}"
    );
}

#[test]
fn config_values_are_checked() {
    let base = LocalUsersConfig::default;
    for (cfg, expect) in [
        (
            LocalUsersConfig {
                token_ttl: Duration::from_secs(5),
                ..base()
            },
            "token_ttl",
        ),
        (
            LocalUsersConfig {
                token_ttl: Duration::from_secs(2 * 86_400),
                ..base()
            },
            "token_ttl",
        ),
        (
            LocalUsersConfig {
                refresh_ttl: Duration::from_secs(60),
                ..base()
            },
            "refresh_ttl",
        ),
        (
            LocalUsersConfig {
                issuer: " inferguard".into(),
                ..base()
            },
            "issuer",
        ),
        (
            LocalUsersConfig {
                audiences: vec![],
                ..base()
            },
            "audiences",
        ),
        (
            LocalUsersConfig {
                audiences: vec!["inferguard-upstream".into()],
                ..base()
            },
            "reserved",
        ),
    ] {
        let err = cfg.validate().expect_err(expect);
        assert!(err.to_string().contains(expect), "{err}");
    }
}

// === the signing key ===

#[tokio::test]
async fn generated_key_is_kept_in_the_store() {
    let (dir, store) = open_store().await;
    let cfg = LocalUsersConfig::default();
    let first = LocalIssuer::load(&cfg, store.clone(), dir.path())
        .await
        .expect("first start generates");
    let second = LocalIssuer::load(&cfg, store.clone(), dir.path())
        .await
        .expect("second start reuses");
    assert_eq!(first.kid(), second.kid());
    assert_eq!(first.jwks(), second.jwks());
    assert_eq!(first.jwks().keys.len(), 1);

    // What one signs, the other's JWKS verifies.
    let token = first.access_token("alice", None, now()).token;
    verify(&second.jwks(), &token, "inferguard").expect("verifies");

    let feed = store.changes_since(0, 10).await.expect("feed");
    assert_eq!(feed.len(), 1);
    assert_eq!(
        (feed[0].entity.as_str(), feed[0].id.as_str()),
        ("signing_key", first.kid())
    );
    assert!(
        !format!("{first:?}").contains("encoding"),
        "Debug shows no key"
    );
}

#[tokio::test]
async fn configured_key_file_is_used() {
    let (dir, store) = open_store().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .expect("pem")
        .to_string();
    std::fs::write(dir.path().join("ig.pem"), pem).expect("write");
    let cfg = LocalUsersConfig {
        signing_key_file: Some("ig.pem".into()),
        ..LocalUsersConfig::default()
    };
    let issuer = LocalIssuer::load(&cfg, store.clone(), dir.path())
        .await
        .expect("loads");
    let x = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        key.verifying_key().to_bytes(),
    );
    let jwks = serde_json::to_value(issuer.jwks()).expect("json");
    assert_eq!(jwks["keys"][0]["x"], x);
    assert_eq!(
        store.latest_change().await.expect("feed"),
        0,
        "store untouched"
    );

    // RFC 7638 §3.1 shape: the kid is the key's thumbprint.
    let jwk = &issuer.jwks().keys[0];
    assert_eq!(
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .expect("thumbprint"),
        issuer.kid()
    );

    std::fs::write(dir.path().join("bad.pem"), "not a key").expect("write");
    for file in ["bad.pem", "missing.pem"] {
        let cfg = LocalUsersConfig {
            signing_key_file: Some(file.into()),
            ..LocalUsersConfig::default()
        };
        let err = LocalIssuer::load(&cfg, store.clone(), dir.path())
            .await
            .expect_err(file);
        assert!(matches!(err, LocalError::KeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains(file), "{err}");
    }
}

// === the assertion ===

#[tokio::test]
async fn assertion_names_the_principal_for_sixty_seconds() {
    let f = fixture().await;
    let principal = Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["fooocus_designers_basic".into()],
        role: "designer_basic".into(),
        role_source: RoleSource::Binding,
        auth: AuthMethod::ApiKey,
        key_id: Some("0123456789abcdef".into()),
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: BTreeMap::new(),
    };
    let at = now();
    let token = f.issuer.assertion(&principal, "req-42", at);
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(f.issuer.kid()));

    let claims = verify(&f.issuer.jwks(), &token, ASSERTION_AUDIENCE).expect("verifies");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["kind"], "user");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["role"], "designer_basic");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["fooocus_designers_basic"])
    );
    assert_eq!(claims["auth"], "api_key");
    assert_eq!(claims["key_id"], "0123456789abcdef");
    assert_eq!(claims["request_id"], "req-42");
    assert_eq!(claims["aud"], ASSERTION_AUDIENCE);
    assert_eq!(claims["iat"], at);
    assert_eq!(claims["nbf"], at);
    assert_eq!(claims["exp"], at + 60);
    assert_eq!(ASSERTION_TTL_SECS, 60);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32));

    // Not usable as an access token, and gone after a minute.
    verify(&f.issuer.jwks(), &token, "inferguard").expect_err("wrong audience");
    let stale = f.issuer.assertion(&principal, "req-43", at - 61);
    verify(&f.issuer.jwks(), &stale, ASSERTION_AUDIENCE).expect_err("expired");
}

// === the token endpoint ===

#[tokio::test]
async fn password_grant_issues_a_verifiable_token_and_refresh_token() {
    let f = fixture().await;
    let at = now();
    let r = f.endpoint.token(login("alice", PASSWORD), ADDR, at).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let b = body(&r);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 1800);
    let refresh_token = b["refresh_token"].as_str().expect("refresh token");
    assert!(refresh_token.starts_with("igr_") && refresh_token.len() > 40);

    let access = b["access_token"].as_str().expect("access token");
    let header = jsonwebtoken::decode_header(access).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(f.issuer.kid()));
    let claims = verify(&f.issuer.jwks(), access, "inferguard").expect("verifies");
    assert_eq!(claims["iss"], "inferguard");
    assert_eq!(claims["aud"], serde_json::json!(["inferguard"]));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["iat"], at);
    assert_eq!(claims["nbf"], at);
    assert_eq!(claims["exp"], at + 1800);
    assert!(claims["jti"].as_str().is_some());
    assert!(
        claims.get("role").is_none(),
        "roles are resolved at check time"
    );

    // Only the refresh token's hash is stored.
    let feed = f.store.changes_since(0, 100).await.expect("feed");
    let family = &feed.last().expect("change").id;
    assert_eq!(feed.last().expect("change").entity, "refresh_token");
    assert!(!refresh_token.contains(family.as_str()));
}

#[tokio::test]
async fn every_refused_login_looks_the_same() {
    let f = fixture().await;
    let at = now();
    let answers = [
        f.endpoint
            .token(login("alice", "wrong password!"), ADDR, at)
            .await,
        f.endpoint.token(login("nobody", PASSWORD), ADDR, at).await,
        f.endpoint.token(login("dave", PASSWORD), ADDR, at).await,
        f.endpoint
            .token(login("idp-only", PASSWORD), ADDR, at)
            .await,
        f.endpoint
            .token(login("bad name!", PASSWORD), ADDR, at)
            .await,
    ];
    for r in &answers {
        assert_eq!(r, &answers[0], "identical status, headers and body");
    }
    assert_eq!(answers[0].status, 400);
    assert_eq!(body(&answers[0])["error"], "invalid_grant");
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let f = fixture().await;
    let at = now();
    let cases = [
        (form(&[]), 400, "invalid_request"),
        (form(&[("grant_type", "")]), 400, "invalid_request"),
        (
            form(&[("grant_type", "client_credentials")]),
            400,
            "unsupported_grant_type",
        ),
        (
            form(&[("grant_type", "password"), ("username", "alice")]),
            400,
            "invalid_request",
        ),
        (
            form(&[("grant_type", "refresh_token")]),
            400,
            "invalid_request",
        ),
        (refresh("igr_unknown"), 400, "invalid_grant"),
        (refresh("not-ours"), 400, "invalid_grant"),
    ];
    for (form, status, error) in cases {
        let r = f.endpoint.token(form.clone(), ADDR, at).await;
        assert_eq!(
            (r.status, body(&r)["error"].clone()),
            (status, error.into()),
            "{form:?}"
        );
    }
}

#[tokio::test]
async fn eleventh_failure_for_a_username_is_rate_limited() {
    let f = fixture().await;
    let start = 1_800_000_000;
    for i in 0..10 {
        // Different addresses: only the username limit can be what stops the 11th.
        let addr = format!("192.0.2.{i}");
        let r = f
            .endpoint
            .token(login("alice", "wrong password!"), &addr, start + i)
            .await;
        assert_eq!(r.status, 400, "failure {i}");
    }
    let r = f
        .endpoint
        .token(login("alice", PASSWORD), "192.0.2.99", start + 10)
        .await;
    assert_eq!(r.status, 429, "even the right password waits");
    assert_eq!(header(&r, "retry-after"), Some("890"));
    assert_eq!(body(&r)["error"], "too_many_attempts");

    // Unknown names are limited the same way (so 429 reveals nothing): 10 dummy checks.
    for i in 0..10 {
        let r = f
            .endpoint
            .token(login("ghost", "guess"), "192.0.2.50", start + i)
            .await;
        assert_eq!(r.status, 400);
    }
    let r = f
        .endpoint
        .token(login("ghost", "guess"), "192.0.2.51", start + 10)
        .await;
    assert_eq!(r.status, 429);

    // Other users are unaffected; once the oldest failure leaves the window, alice may try.
    let r = f
        .endpoint
        .token(login("bob", "x"), "192.0.2.99", start + 10)
        .await;
    assert_eq!(r.status, 400);
    let r = f
        .endpoint
        .token(login("alice", PASSWORD), "192.0.2.99", start + 900)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Success forgives alice's failures.
    let r = f
        .endpoint
        .token(login("alice", "wrong password!"), "192.0.2.99", start + 901)
        .await;
    assert_eq!(r.status, 400);
}

#[test]
fn address_limit_and_forgiveness() {
    let limiter = LoginLimiter::new();
    for i in 0..ADDRESS_FAILURE_LIMIT {
        limiter
            .begin(Some(&format!("user{i}")), ADDR, 1_000)
            .expect("admitted");
    }
    assert_eq!(
        limiter
            .begin(Some("fresh"), ADDR, 1_100)
            .expect_err("limited"),
        (FAILURE_WINDOW_SECS - 100) as u64
    );
    assert_eq!(limiter.begin(None, ADDR, 1_100).expect_err("limited"), 800);
    limiter
        .begin(Some("fresh"), "192.0.2.1", 1_100)
        .expect("other address");
    limiter
        .begin(Some("fresh"), ADDR, 1_000 + FAILURE_WINDOW_SECS)
        .expect("window passed");

    // A success no longer counts against its address; a cancelled attempt never did.
    let limiter = LoginLimiter::new();
    for _ in 0..USERNAME_FAILURE_LIMIT - 1 {
        limiter.begin(Some("alice"), ADDR, 5).expect("admitted");
    }
    let last = limiter.begin(Some("alice"), ADDR, 5).expect("tenth");
    limiter.cancel(last);
    let ok = limiter.begin(Some("alice"), ADDR, 5).expect("tenth again");
    limiter.succeeded(ok);
    for _ in 0..USERNAME_FAILURE_LIMIT {
        limiter.begin(Some("alice"), ADDR, 6).expect("forgiven");
    }
    limiter
        .begin(Some("alice"), ADDR, 6)
        .expect_err("limited again");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_login() {
    let f = fixture().await;
    let at = now();
    let first = body(&f.endpoint.token(login("alice", PASSWORD), ADDR, at).await);
    let r1 = first["refresh_token"].as_str().expect("r1").to_string();

    let second = f.endpoint.token(refresh(&r1), ADDR, at + 10).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let second = body(&second);
    let r2 = second["refresh_token"].as_str().expect("r2").to_string();
    assert_ne!(r1, r2, "rotated");
    let claims = verify(
        &f.issuer.jwks(),
        second["access_token"].as_str().expect("access"),
        "inferguard",
    )
    .expect("verifies");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iat"], at + 10);

    // r1 again: refused, and the whole login (r2 included) is revoked.
    let reuse = f.endpoint.token(refresh(&r1), ADDR, at + 20).await;
    assert_eq!(
        (reuse.status, body(&reuse)["error"].clone()),
        (400, "invalid_grant".into())
    );
    let after = f.endpoint.token(refresh(&r2), ADDR, at + 30).await;
    assert_eq!(after.status, 400, "family revoked");
    assert_eq!(after, reuse, "the same refusal");

    // A separate login is unaffected.
    let other = body(
        &f.endpoint
            .token(login("alice", PASSWORD), ADDR, at + 40)
            .await,
    );
    let r3 = other["refresh_token"].as_str().expect("r3").to_string();
    let ok = f.endpoint.token(refresh(&r3), ADDR, at + 50).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn refresh_stops_for_disabled_users_and_at_the_login_end() {
    let f = fixture().await;
    let at = now();
    let b = body(&f.endpoint.token(login("alice", PASSWORD), ADDR, at).await);
    let r1 = b["refresh_token"].as_str().expect("r1").to_string();

    // The login ends refresh_ttl after the password was given, however often it rotates.
    let late = at + 30 * 86_400;
    let r = f.endpoint.token(refresh(&r1), ADDR, late).await;
    assert_eq!(r.status, 400, "expired");

    // Revoking a user's refresh tokens (logout everywhere) ends every login of theirs.
    let b = body(&f.endpoint.token(login("alice", PASSWORD), ADDR, at).await);
    let r2 = b["refresh_token"].as_str().expect("r2").to_string();
    let revoked = f
        .store
        .revoke_refresh_tokens_for_user("alice", at + 1)
        .await
        .expect("revoke");
    assert!(revoked >= 1);
    let r = f.endpoint.token(refresh(&r2), ADDR, at + 2).await;
    assert_eq!(r.status, 400, "revoked");

    let b = body(&f.endpoint.token(login("alice", PASSWORD), ADDR, at).await);
    let r3 = b["refresh_token"].as_str().expect("r3").to_string();
    f.store.disable_user("alice").await.expect("disable");
    let r = f.endpoint.token(refresh(&r3), ADDR, at + 3).await;
    assert_eq!(r.status, 400, "disabled");
    assert_eq!(body(&r)["error"], "invalid_grant");
}
