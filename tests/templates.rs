//! Run-time prompt templates through the ext_authz service (no network): a `templates_only`
//! user is refused until a template is added and approved with the CLI and the change feed
//! entry is applied, and refused again after it is retired; a store failure refuses with 503.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use inferguard::authorizer::{Authorizer, AuthorizerParts};
use inferguard::commands::CliContext;
use inferguard::commands::templates::TemplatesCommand;
use inferguard::config::compile_policy;
use inferguard::domain::PrincipalKind;
use inferguard::identity::api_key;
use inferguard::policy::Policy;
use inferguard::protocol::{CheckService, UpstreamCredential};
use inferguard::store::{ApiKeyRecord, DynStore, OwnerRef, SqliteStore, UserRecord};
use inferguard::telemetry::Metrics;

const POLICY: &str = r#"
apis: [fooocus-api]
roles:
  intern:
    permissions: [generation:create]
    templates_only: true
  designer: {permissions: [generation:create]}
  art_director: {permissions: [generation:create, templates:manage]}
"#;

const T2I: &str = "/v1/generation/text-to-image";

struct Fixture {
    service: CheckService,
    authorizer: Arc<Authorizer>,
    store: DynStore,
    policy: Policy,
    db_url: String,
    /// Applied change-feed position.
    seen: i64,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store: DynStore = Arc::new(SqliteStore::connect(&db_url).await.unwrap());
    for (name, role) in [
        ("ivy", "intern"),
        ("dan", "designer"),
        ("ann", "art_director"),
        ("bob", "art_director"),
    ] {
        store
            .create_user(&UserRecord {
                username: name.into(),
                email: None,
                role: Some(role.into()),
                attributes: BTreeMap::new(),
                disabled: false,
                password_hash: None,
                created_at: 0,
            })
            .await
            .unwrap();
    }
    let authorizer = Arc::new(Authorizer::new(AuthorizerParts {
        policy: compile_policy(Path::new("policy.yaml"), POLICY).unwrap(),
        store: store.clone(),
        key_headers: vec!["x-api-key".into()],
        // Long enough that only the change feed can make a change visible in this test.
        cache_ttl: Duration::from_secs(3600),
        jwt: None,
        assertions: None,
        sessions: None,
        login: None,
        quota: Default::default(),
    }));
    let upstream = UpstreamCredential {
        header: "x-api-key".into(),
        value: None,
    };
    let seen = store.latest_change().await.unwrap();
    Fixture {
        service: CheckService::new(authorizer.clone(), upstream, Arc::new(Metrics::new())),
        authorizer,
        store,
        policy: compile_policy(Path::new("policy.yaml"), POLICY).unwrap(),
        db_url,
        seen,
        _dir: dir,
    }
}

impl Fixture {
    async fn key_for(&self, user: &str) -> String {
        let k = api_key::generate();
        let now = chrono::Utc::now().timestamp();
        self.store
            .create_key(&ApiKeyRecord {
                id: k.id.clone(),
                name: "test".into(),
                owner: OwnerRef {
                    kind: PrincipalKind::User,
                    name: user.into(),
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
        k.full
    }

    /// What the server's change-feed poller does.
    async fn apply_changes(&mut self) {
        for change in self.store.changes_since(self.seen, 1000).await.unwrap() {
            self.authorizer.apply_change(&change).await;
            self.seen = change.seq;
        }
    }

    async fn cli(&self, cmd: TemplatesCommand) -> anyhow::Result<String> {
        let ctx = CliContext {
            store: self.store.clone(),
            known_roles: self.policy.roles.keys().cloned().collect(),
            audit: None,
        };
        cmd.run_at(&ctx, &self.policy, chrono::Utc::now().timestamp())
            .await
    }

    async fn generate(&self, key: &str, prompt: &str) -> CheckResponse {
        let body = serde_json::json!({"prompt": prompt}).to_string();
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttrRequest {
                    http: Some(HttpRequest {
                        method: "POST".into(),
                        path: T2I.into(),
                        headers: [("authorization".to_string(), format!("Bearer {key}"))]
                            .into_iter()
                            .collect(),
                        raw_body: body.into_bytes(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        self.service
            .check(tonic::Request::new(req))
            .await
            .expect("Check never fails at the gRPC level")
            .into_inner()
    }
}

fn is_allowed(resp: &CheckResponse) -> bool {
    resp.status.as_ref().unwrap().code == 0
}

fn refusal(resp: &CheckResponse) -> (i32, String) {
    let (status, body) = common::denied(resp);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

const PROMPT: &str = "a photo of red sneakers on a white background";

#[tokio::test]
async fn approved_templates_apply_after_the_change_feed_and_stop_after_retirement() {
    let mut f = fixture().await;
    let ivy = f.key_for("ivy").await;

    assert_eq!(
        refusal(&f.generate(&ivy, PROMPT).await),
        (403, "template_required".into())
    );

    f.cli(TemplatesCommand::Add {
        name: "product-shot".into(),
        text: "a photo of {subject} on a white background".into(),
        max_words: 3,
        by: "ann".into(),
    })
    .await
    .expect("add");
    f.apply_changes().await;
    // Proposed is not approved.
    assert_eq!(
        refusal(&f.generate(&ivy, PROMPT).await).1,
        "template_required"
    );

    f.cli(TemplatesCommand::Approve {
        name: "product-shot".into(),
        by: "bob".into(),
    })
    .await
    .expect("approve");
    // Cached until the change is applied.
    assert_eq!(
        refusal(&f.generate(&ivy, PROMPT).await).1,
        "template_required"
    );
    f.apply_changes().await;
    assert!(is_allowed(&f.generate(&ivy, PROMPT).await));
    // Placeholders still take plain words only, at most max_words of them.
    for bad in [
        "a photo of <lora:x:1> on a white background",
        "a photo of one two three four on a white background",
        "a photo of shoes, nsfw on a white background",
    ] {
        assert_eq!(refusal(&f.generate(&ivy, bad).await).1, "template_required");
    }

    f.cli(TemplatesCommand::Retire {
        name: "product-shot".into(),
        by: "ann".into(),
    })
    .await
    .expect("retire");
    f.apply_changes().await;
    assert_eq!(
        refusal(&f.generate(&ivy, PROMPT).await),
        (403, "template_required".into())
    );
}

#[tokio::test]
async fn a_template_store_failure_refuses_templates_only_roles_with_503() {
    let mut f = fixture().await;
    let ivy = f.key_for("ivy").await;
    let dan = f.key_for("dan").await;
    // Break the templates table behind the store's back, and drop the cached set.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&f.db_url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE prompt_templates")
        .execute(&mut conn)
        .await
        .unwrap();
    f.authorizer.flush_caches();
    f.apply_changes().await;

    assert_eq!(
        refusal(&f.generate(&ivy, PROMPT).await),
        (503, "store_unavailable".into())
    );
    // Other roles never ask for templates.
    assert!(is_allowed(
        &f.generate(&dan, "anything at all, really").await
    ));
}
