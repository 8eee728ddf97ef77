//! The ext_authz service called directly (no network): what Envoy gets back for allowed and
//! refused requests, and hostile input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{allowed, denied};
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use inferguard::authorizer::{Authorizer, AuthorizerParts};
use inferguard::config::compile_policy;
use inferguard::domain::PrincipalKind;
use inferguard::identity::api_key;
use inferguard::identity::local::{LocalIssuer, LocalUsersConfig};
use inferguard::protocol::{CheckService, UpstreamCredential};
use inferguard::store::{ApiKeyRecord, DynStore, OwnerRef, SqliteStore, UserRecord};
use inferguard::telemetry::Metrics;

const POLICY: &str = r#"
apis: [fooocus-api, openai]
routes:
  - {method: POST, path: /signed/*, permission: generation:create, body: fooocus, assertion: true}
default_role: viewer
roles:
  viewer: {permissions: [generation:view]}
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed, Lightning, Extreme Speed]
    loras: []
    max_images: 4
"#;

struct Fixture {
    service: CheckService,
    authorizer: Arc<Authorizer>,
    store: DynStore,
    key: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.unwrap());
    store
        .create_user(&UserRecord {
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            role: Some("designer_basic".into()),
            attributes: BTreeMap::new(),
            disabled: false,
            password_hash: None,
            created_at: 0,
        })
        .await
        .unwrap();
    let key = new_key(&store, 3600).await;
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).unwrap();
    let authorizer = Arc::new(Authorizer::new(AuthorizerParts {
        policy,
        store: store.clone(),
        key_headers: vec!["x-api-key".into()],
        cache_ttl: Duration::from_secs(60),
        jwt: None,
        assertions: None,
        sessions: None,
        login: None,
        quota: Default::default(),
    }));
    let upstream = UpstreamCredential {
        header: "x-api-key".into(),
        value: Some("upstream-secret".into()),
    };
    Fixture {
        service: CheckService::new(authorizer.clone(), upstream, Arc::new(Metrics::new())),
        authorizer,
        store,
        key,
        _dir: dir,
    }
}

async fn new_key(store: &DynStore, ttl: i64) -> String {
    let k = api_key::generate();
    let now = chrono::Utc::now().timestamp();
    store
        .create_key(&ApiKeyRecord {
            id: k.id.clone(),
            name: "test".into(),
            owner: OwnerRef {
                kind: PrincipalKind::User,
                name: "alice".into(),
            },
            secret_sha256: k.secret_sha256.clone(),
            scopes: None,
            daily_images: None,
            created_at: now,
            expires_at: now + ttl,
            revoked_at: None,
            allowed_networks: None,
            last_used_at: None,
        })
        .await
        .unwrap();
    k.full
}

fn http_check(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> CheckRequest {
    common::check_request(method, path, None, headers, body)
}

async fn check(f: &Fixture, req: CheckRequest) -> CheckResponse {
    f.service
        .check(tonic::Request::new(req))
        .await
        .expect("Check never fails at the gRPC level")
        .into_inner()
}

const T2I: &str = "/v1/generation/text-to-image";

#[tokio::test]
async fn allow_sets_identity_and_swaps_credentials() {
    let f = fixture().await;
    let body = br#"{"prompt":"a cat","performance_selection":"Speed","image_number":2}"#;
    let resp = check(
        &f,
        http_check(
            "POST",
            T2I,
            &[
                ("authorization", &format!("Bearer {}", f.key)),
                ("x-inferguard-role", "admin"),
                ("x-inferguard-email", "m@x"),
                ("x-request-id", "rid-1"),
            ],
            body,
        ),
    )
    .await;
    let (set, removed) = allowed(&resp);
    assert_eq!(set["x-inferguard-subject"], "alice");
    assert_eq!(set["x-inferguard-role"], "designer_basic");
    assert_eq!(set["x-inferguard-email"], "alice@example.com");
    assert_eq!(set["x-inferguard-auth"], "api_key");
    assert_eq!(
        set["x-inferguard-key-id"],
        api_key::parse(&f.key).unwrap().id
    );
    assert_eq!(set["x-request-id"], "rid-1");
    assert_eq!(set["x-api-key"], "upstream-secret");
    assert!(
        removed.contains(&"authorization".to_string()),
        "{removed:?}"
    );
    assert!(!set.values().any(|v| v.contains(&f.key)));
}

#[tokio::test]
async fn spoofed_identity_headers_without_a_value_of_ours_are_removed() {
    let f = fixture().await;
    let resp = check(
        &f,
        http_check(
            "POST",
            T2I,
            &[
                ("x-api-key", &f.key),
                ("x-inferguard-groups", "admins"),
                ("x-inferguard-anything", "x"),
            ],
            b"{}",
        ),
    )
    .await;
    let (set, removed) = allowed(&resp);
    assert!(removed.contains(&"x-inferguard-groups".to_string()));
    assert!(removed.contains(&"x-inferguard-anything".to_string()));
    assert!(
        !removed.contains(&"x-api-key".to_string()),
        "x-api-key is overwritten, not removed"
    );
    assert_eq!(set["x-api-key"], "upstream-secret");
}

#[tokio::test]
async fn refusals_carry_status_and_body() {
    let f = fixture().await;
    let (status, body) = denied(&check(&f, http_check("POST", T2I, &[], b"{}")).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credential"))
    );
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    let wrong = format!("{}x", &f.key[..f.key.len() - 1]);
    let (status, body) =
        denied(&check(&f, http_check("POST", T2I, &[("x-api-key", &wrong)], b"{}")).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_api_key"))
    );

    let quality = br#"{"performance_selection":"Quality"}"#;
    let (status, body) = denied(
        &check(
            &f,
            http_check("POST", T2I, &[("x-api-key", &f.key)], quality),
        )
        .await,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("preset_not_allowed"))
    );
    assert_eq!(body["rule"], "roles.designer_basic.presets");

    let (status, body) = denied(
        &check(
            &f,
            http_check("POST", "/v1/unknown", &[("x-api-key", &f.key)], b"{}"),
        )
        .await,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("unknown_route"))
    );

    let (status, _) = denied(
        &check(
            &f,
            http_check("POST", T2I, &[("x-api-key", &f.key)], b"{not json"),
        )
        .await,
    );
    assert_eq!(status, 400);

    let partial = http_check(
        "POST",
        T2I,
        &[("x-api-key", &f.key), ("content-length", "5000")],
        b"{\"prompt\":",
    );
    let (status, body) = denied(&check(&f, partial).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("body_truncated"))
    );
}

#[tokio::test]
async fn expired_and_revoked_keys_are_refused() {
    let f = fixture().await;
    let expired = new_key(&f.store, -1).await;
    let (status, body) = denied(
        &check(
            &f,
            http_check("POST", T2I, &[("x-api-key", &expired)], b"{}"),
        )
        .await,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("expired_api_key"))
    );

    let id = api_key::parse(&f.key).unwrap().id.to_string();
    allowed(&check(&f, http_check("POST", T2I, &[("x-api-key", &f.key)], b"{}")).await);
    f.store
        .revoke_key(&id, chrono::Utc::now().timestamp())
        .await
        .unwrap();
    // Until the change feed names the key, the cached grant decides (no query per request);
    // `serve` follows the feed, here we deliver the invalidation directly.
    allowed(&check(&f, http_check("POST", T2I, &[("x-api-key", &f.key)], b"{}")).await);
    f.authorizer.keys().invalidate_key(&id).await;
    let (status, body) =
        denied(&check(&f, http_check("POST", T2I, &[("x-api-key", &f.key)], b"{}")).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("revoked_api_key"))
    );
}

#[tokio::test]
async fn hostile_input_is_refused_cleanly() {
    let f = fixture().await;
    let (status, _) = denied(&check(&f, CheckRequest::default()).await);
    assert_eq!(status, 401);

    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (status, _) = denied(
        &check(
            &f,
            http_check("POST", T2I, &[("x-api-key", &f.key)], &garbage),
        )
        .await,
    );
    assert_eq!(status, 400);

    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, _) = denied(
        &check(
            &f,
            http_check("POST", T2I, &[("x-api-key", &f.key)], nested.as_bytes()),
        )
        .await,
    );
    assert_eq!(status, 400);

    let huge = "a".repeat(10 * 1024 * 1024);
    let (status, body) =
        denied(&check(&f, http_check("POST", T2I, &[("x-api-key", &huge)], b"{}")).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("headers_too_large"))
    );
    let with_key = [("x-api-key", f.key.as_str()), ("x-big", huge.as_str())];
    let (status, _) = denied(&check(&f, http_check("POST", T2I, &with_key, b"{}")).await);
    assert_eq!(status, 400, "a valid key does not excuse oversized headers");

    let (status, _) = denied(
        &check(
            &f,
            http_check("POST", "/v1/\u{fffd}\u{0}", &[("x-api-key", &f.key)], b"{}"),
        )
        .await,
    );
    assert_eq!(status, 403);

    allowed(&check(&f, http_check("POST", T2I, &[("x-api-key", &f.key)], b"{}")).await);
}

#[tokio::test]
async fn assertion_routes_carry_a_signed_identity() {
    let f = fixture().await;
    // Without a signing key, an assertion route fails closed.
    let signed = http_check("POST", "/signed/t2i", &[("x-api-key", &f.key)], b"{}");
    let (status, _) = denied(&check(&f, signed.clone()).await);
    assert_eq!(status, 503);

    let issuer = Arc::new(
        LocalIssuer::load(
            &LocalUsersConfig::default(),
            f.store.clone(),
            Path::new("."),
        )
        .await
        .unwrap(),
    );
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).unwrap();
    let authorizer = Arc::new(Authorizer::new(AuthorizerParts {
        policy,
        store: f.store.clone(),
        key_headers: vec!["x-api-key".into()],
        cache_ttl: Duration::from_secs(60),
        jwt: None,
        assertions: Some(issuer.clone()),
        sessions: None,
        login: None,
        quota: Default::default(),
    }));
    let upstream = UpstreamCredential {
        header: "x-api-key".into(),
        value: None,
    };
    let service = CheckService::new(authorizer, upstream, Arc::new(Metrics::new()));
    let resp = service
        .check(tonic::Request::new(signed))
        .await
        .unwrap()
        .into_inner();
    let (set, _) = allowed(&resp);
    let token = &set["x-inferguard-assertion"];

    let jwks = issuer.jwks();
    let jwk = &jwks.keys[0];
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["inferguard-upstream"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["role"], "designer_basic");
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(life <= 60, "assertions live at most a minute, got {life}s");

    // Ordinary routes carry none.
    let plain = http_check("POST", T2I, &[("x-api-key", &f.key)], b"{}");
    let resp = service
        .check(tonic::Request::new(plain))
        .await
        .unwrap()
        .into_inner();
    assert!(!allowed(&resp).0.contains_key("x-inferguard-assertion"));
}
