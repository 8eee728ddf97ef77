//! Security events through the ext_authz service (no network): a burst of bad API keys
//! yields one high-severity `auth_failure_burst` record, a content-blocked refusal carries
//! severity `medium`, and a key used from a new address range is noticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use inferguard::audit::AuditTrail;
use inferguard::authorizer::{Authorizer, AuthorizerParts};
use inferguard::config::{AuditConfig, compile_policy};
use inferguard::domain::PrincipalKind;
use inferguard::identity::api_key;
use inferguard::protocol::{CheckService, UpstreamCredential};
use inferguard::store::{ApiKeyRecord, DynStore, OwnerRef, SqliteStore, UserRecord};
use inferguard::telemetry::Metrics;

const POLICY: &str = r#"
apis: [fooocus-api]
default_role: viewer
roles:
  viewer: {permissions: [generation:view]}
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed]
    max_images: 4
content:
  forbidden_terms: [evil corp]
"#;

const T2I: &str = "/v1/generation/text-to-image";

struct Fixture {
    service: CheckService,
    trail: AuditTrail,
    key: String,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.unwrap());
    store
        .create_user(&UserRecord {
            username: "alice".into(),
            email: None,
            role: Some("designer_basic".into()),
            attributes: BTreeMap::new(),
            disabled: false,
            password_hash: None,
            created_at: 0,
        })
        .await
        .unwrap();
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
            expires_at: now + 3600,
            revoked_at: None,
            allowed_networks: None,
            last_used_at: None,
        })
        .await
        .unwrap();
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
    let cfg = AuditConfig {
        file: Some("audit.jsonl".into()),
        ..AuditConfig::default()
    };
    let trail = AuditTrail::open(&cfg, dir.path(), store.clone())
        .await
        .unwrap();
    let upstream = UpstreamCredential {
        header: "x-api-key".into(),
        value: None,
    };
    let service = CheckService::new(authorizer, upstream, Arc::new(Metrics::new()))
        .with_audit(Some(trail.clone()));
    Fixture {
        service,
        trail,
        key: k.full,
        dir,
    }
}

fn http_check(peer: &str, headers: &[(&str, &str)], body: &[u8]) -> CheckRequest {
    common::check_request("POST", T2I, Some(peer), headers, body)
}

async fn check(f: &Fixture, req: CheckRequest) -> CheckResponse {
    f.service
        .check(tonic::Request::new(req))
        .await
        .expect("Check never fails at the gRPC level")
        .into_inner()
}

/// Every record written so far, as JSON.
async fn records(f: &Fixture) -> Vec<serde_json::Value> {
    f.trail.close().await.unwrap();
    let mut out: Vec<serde_json::Value> = Vec::new();
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("audit-") && !name.contains(".checkpoints") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out.sort_by_key(|r| r["seq"].as_u64());
    out
}

const BODY: &[u8] = br#"{"prompt":"a cat","performance_selection":"Speed","image_number":1}"#;

#[tokio::test]
async fn a_burst_of_bad_keys_yields_one_high_severity_record() {
    let f = fixture().await;
    // A well-formed key whose secret is wrong: the key id may be named, never the text.
    let id = api_key::parse(&f.key).unwrap().id.to_string();
    let bad = format!("fk_{id}_{}", "x".repeat(43));
    for _ in 0..30 {
        let resp = check(
            &f,
            http_check(
                "192.0.2.10",
                &[("authorization", &format!("Bearer {bad}"))],
                BODY,
            ),
        )
        .await;
        assert_ne!(resp.status.unwrap().code, 0);
    }
    let all = records(&f).await;
    let decisions = all.iter().filter(|r| r["event_type"] == "decision").count();
    assert_eq!(decisions, 30);
    let bursts: Vec<_> = all
        .iter()
        .filter(|r| r["security_event"] == "auth_failure_burst")
        .collect();
    assert_eq!(
        bursts.len(),
        2,
        "one per address and one per key id: {bursts:?}"
    );
    let by_address = bursts
        .iter()
        .find(|r| r["client_address"] == "192.0.2.10")
        .expect("address burst");
    assert_eq!(by_address["severity"], "high");
    assert_eq!(by_address["event_type"], "security");
    assert_eq!(by_address["details"]["failures"], 20);
    let by_key = bursts
        .iter()
        .find(|r| r["key_id"] == id.as_str())
        .expect("key id burst");
    assert_eq!(by_key["severity"], "high");
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains(&bad),
        "the presented key never reaches the trail"
    );
    assert!(!text.contains(&"x".repeat(43)));
}

#[tokio::test]
async fn content_blocked_is_medium_and_new_ranges_are_noticed() {
    let f = fixture().await;
    let blocked =
        br#"{"prompt":"an evil corp logo","performance_selection":"Speed","image_number":1}"#;
    let resp = check(
        &f,
        http_check("192.0.2.10", &[("x-api-key", &f.key)], blocked),
    )
    .await;
    assert_ne!(resp.status.unwrap().code, 0);
    for peer in ["192.0.2.10", "192.0.2.77", "198.51.100.3"] {
        let resp = check(&f, http_check(peer, &[("x-api-key", &f.key)], BODY)).await;
        assert_eq!(resp.status.unwrap().code, 0, "allowed from {peer}");
    }
    let all = records(&f).await;
    let refusal = all
        .iter()
        .find(|r| r["error"] == "content_blocked")
        .expect("refusal recorded");
    assert_eq!(refusal["severity"], "medium");
    assert_eq!(refusal["security_event"], "prohibited_content");
    let allowed: Vec<_> = all.iter().filter(|r| r["result"] == "allow").collect();
    assert!(
        allowed
            .iter()
            .filter(|r| r["event_type"] == "decision")
            .all(|r| r["severity"] == "info" && r.get("security_event").is_none())
    );
    let new_ranges: Vec<_> = all
        .iter()
        .filter(|r| r["security_event"] == "key_new_address_range")
        .collect();
    assert_eq!(new_ranges.len(), 1, "{new_ranges:?}");
    assert_eq!(new_ranges[0]["severity"], "medium");
    assert_eq!(new_ranges[0]["details"]["range"], "198.51.100.0/24");
    assert_eq!(new_ranges[0]["client_address"], "198.51.100.3");
}
