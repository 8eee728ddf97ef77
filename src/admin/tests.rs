//! The admin API over real gRPC: a server on a loopback port, a generated client, a SQLite
//! store and an audit trail in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use super::pb;
use super::pb::admin_client::AdminClient;
use super::service::AdminParts;
use crate::authorizer::{Authorizer, AuthorizerParts};
use crate::commands::CliContext;
use crate::commands::keys::{CreateKey, create_key};
use crate::commands::users::{CreateUser, create_user};
use crate::config::{ServerConfig, compile_policy};
use crate::domain::Request;
use crate::store::{DynStore, SqliteStore};

const POLICY: &str = r#"
apis: [fooocus-api]
roles:
  admin: {permissions: ["*"]}
  designer: {permissions: [generation:create, generation:view]}
  approver: {permissions: [approvals:decide]}
  strict_admin: {permissions: ["*"], require_mfa: true}
"#;

struct Fixture {
    client: AdminClient<Channel>,
    authorizer: Arc<Authorizer>,
    store: DynStore,
    trail_base: std::path::PathBuf,
    admin_key: String,
    designer_key: String,
    /// An admin's key narrowed to `admin:view_logs`.
    viewer_key: String,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    let mut cfg = ServerConfig::parse(
        &dir.path().join("inferguard.yaml"),
        "policy: {file: policy.yaml}\naudit: {file: logs/audit.jsonl}\n",
    )
    .expect("config");
    cfg.base_dir = dir.path().to_path_buf();
    let audit = crate::commands::audit::open_trail(&cfg, &store)
        .await
        .expect("trail");
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).expect("policy");
    let ctx = CliContext {
        store: store.clone(),
        known_roles: policy.roles.keys().cloned().collect(),
        audit: None,
    };
    let mut keys = Vec::new();
    for (name, role, scopes) in [
        ("root", "admin", vec![]),
        ("dana", "designer", vec![]),
        ("olga", "admin", vec!["admin:view_logs".to_string()]),
    ] {
        create_user(
            &ctx,
            CreateUser {
                username: name.into(),
                role: role.into(),
                email: None,
                attributes: BTreeMap::new(),
                password: None,
            },
        )
        .await
        .expect("user");
        let key = create_key(
            &ctx,
            CreateKey {
                name: format!("{name}-key"),
                user: Some(name.into()),
                service_account: None,
                scopes,
                expires_days: 1,
                daily_images: None,
            },
            crate::commands::users::now(),
        )
        .await
        .expect("key");
        keys.push(key.full_key);
    }
    let authorizer = Arc::new(Authorizer::new(AuthorizerParts {
        policy,
        store: store.clone(),
        key_headers: vec!["x-api-key".into()],
        cache_ttl: Duration::from_secs(1),
        jwt: None,
        assertions: None,
        sessions: None,
        login: None,
        quota: Default::default(),
    }));
    let trail_base = dir.path().join("logs/audit.jsonl");
    let parts = AdminParts {
        authorizer: authorizer.clone(),
        store: store.clone(),
        audit,
        trail_base: Some(trail_base.clone()),
    };
    let listener = super::server::bind(([127, 0, 0, 1], 0).into())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(super::server::serve(listener, None, parts, stopped));
    let client = AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let [admin_key, designer_key, viewer_key] = <[String; 3]>::try_from(keys).expect("3 keys");
    Fixture {
        client,
        authorizer,
        store,
        trail_base,
        admin_key,
        designer_key,
        viewer_key,
        stop,
        _dir: dir,
    }
}

/// A request carrying `key` the way a caller sends it.
fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii"));
    request
}

fn bearer<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

fn create_key_request(owner: &str) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        name: "laptop".into(),
        owner: Some(pb::create_key_request::Owner::User(owner.into())),
        scopes: vec!["generation:create".into()],
        expires_days: Some(30),
        daily_images: None,
        allowed_networks: vec![],
    }
}

/// The admin records of the trail, as (actor, action, target).
fn admin_records(base: &Path) -> Vec<(String, String, String)> {
    let trail = crate::commands::report::read_trail(base, None).expect("trail");
    trail
        .records
        .iter()
        .filter(|r| r.get("event_type").and_then(|v| v.as_str()) == Some("admin"))
        .map(|r| {
            let s = |k: &str| {
                r.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            (s("actor"), s("action"), s("target"))
        })
        .collect()
}

/// Authenticates `key` as a Check would (the cache dropped first, as the change feed would).
async fn key_works(f: &Fixture, key: &str) -> bool {
    f.authorizer.flush_caches();
    let mut req = Request::default();
    req.headers.insert("x-api-key".into(), key.into());
    f.authorizer.authenticate(&req).await.is_ok()
}

#[tokio::test]
async fn callers_without_a_good_credential_are_unauthenticated() {
    let mut f = fixture().await;
    let none = f
        .client
        .list_users(pb::ListUsersRequest {})
        .await
        .expect_err("no credential");
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let forged = format!("{}x", &f.admin_key[..f.admin_key.len() - 1]);
    let bad = f
        .client
        .create_key(with_key(&forged, create_key_request("dana")))
        .await
        .expect_err("bad key");
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");
    assert!(!bad.message().contains(&forged), "the key is not echoed");
    // The same key in `authorization: Bearer` works like `x-api-key`.
    f.client
        .list_users(bearer(&f.admin_key, pb::ListUsersRequest {}))
        .await
        .expect("bearer key");
    assert!(
        admin_records(&f.trail_base).is_empty(),
        "refused and read-only calls change nothing"
    );
    let _ = f.stop.send(true);
}

#[tokio::test]
async fn permissions_follow_the_role_and_the_key_scopes() {
    let mut f = fixture().await;
    let keys_before = f.store.list_keys().await.expect("keys").len();
    let denied = f
        .client
        .create_key(with_key(&f.designer_key, create_key_request("dana")))
        .await
        .expect_err("a designer cannot create keys");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("admin:manage_keys"), "{denied:?}");
    let denied = f
        .client
        .list_users(with_key(&f.designer_key, pb::ListUsersRequest {}))
        .await
        .expect_err("nor list users");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // An admin's key scoped to admin:view_logs reads the trail and nothing else.
    let scoped = f
        .client
        .create_user(with_key(
            &f.viewer_key,
            pb::CreateUserRequest {
                username: "eve".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("scope");
    assert_eq!(scoped.code(), Code::PermissionDenied);
    assert!(scoped.message().contains("scope"), "{scoped:?}");
    f.client
        .query_audit(with_key(&f.viewer_key, pb::QueryAuditRequest::default()))
        .await
        .expect("view_logs is in scope");

    assert_eq!(f.store.list_keys().await.expect("keys").len(), keys_before);
    assert!(f.store.get_user("eve").await.expect("get").is_none());
    let _ = f.stop.send(true);
}

#[tokio::test]
async fn every_change_is_made_and_audited_as_the_caller() {
    let mut f = fixture().await;
    let key = f.admin_key.clone();
    let c = &mut f.client;

    let user = c
        .create_user(with_key(
            &key,
            pb::CreateUserRequest {
                username: "mia".into(),
                role: "designer".into(),
                email: Some("mia@example.com".into()),
                attributes: [("department".to_string(), "marketing".to_string())].into(),
                password: Some("correct horse battery".into()),
            },
        ))
        .await
        .expect("create user")
        .into_inner();
    assert!(user.has_password);
    let stored = f.store.get_user("mia").await.expect("get").expect("stored");
    assert!(
        stored
            .password_hash
            .as_deref()
            .is_some_and(|h| h.starts_with("$argon2id$"))
    );
    let dup = c
        .create_user(with_key(
            &key,
            pb::CreateUserRequest {
                username: "mia".into(),
                role: "designer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("exists");
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
    let unknown_role = c
        .set_user_role(with_key(
            &key,
            pb::SetUserRoleRequest {
                username: "mia".into(),
                role: "god".into(),
            },
        ))
        .await
        .expect_err("unknown role");
    assert_eq!(unknown_role.code(), Code::InvalidArgument);
    let user = c
        .set_user_role(with_key(
            &key,
            pb::SetUserRoleRequest {
                username: "mia".into(),
                role: "approver".into(),
            },
        ))
        .await
        .expect("set role")
        .into_inner();
    assert_eq!(user.role.as_deref(), Some("approver"));
    c.set_user_attribute(with_key(
        &key,
        pb::SetUserAttributeRequest {
            username: "mia".into(),
            key: "clearance".into(),
            value: "2".into(),
        },
    ))
    .await
    .expect("set attr");
    c.create_service_account(with_key(
        &key,
        pb::CreateServiceAccountRequest {
            name: "batch".into(),
            role: "designer".into(),
            daily_images: Some(10),
            ..Default::default()
        },
    ))
    .await
    .expect("service account");

    let created = c
        .create_key(with_key(&key, create_key_request("dana")))
        .await
        .expect("create key")
        .into_inner();
    let new_key = created.key.expect("key");
    assert!(created.full_key.starts_with(&format!("fk_{}_", new_key.id)));
    assert_eq!(new_key.scopes, ["generation:create"]);
    assert!(key_works(&f, &created.full_key).await);

    // Rotation: both keys work during the grace period; the old one's expiry is shortened.
    let c = &mut f.client;
    let rotated = c
        .rotate_key(with_key(
            &key,
            pb::RotateKeyRequest {
                id: new_key.id.clone(),
                grace_seconds: Some(3600),
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    let (old, replacement) = (rotated.old_key.expect("old"), rotated.new_key.expect("new"));
    assert_ne!(replacement.id, old.id);
    assert_eq!(replacement.scopes, old.scopes);
    assert_eq!(replacement.owner, "dana");
    assert!(old.expires_at <= crate::commands::users::now() + 3600);
    assert!(key_works(&f, &created.full_key).await, "old key in grace");
    assert!(key_works(&f, &rotated.full_key).await, "new key");
    // Zero grace: the old key stops at once.
    let c = &mut f.client;
    let again = c
        .rotate_key(with_key(
            &key,
            pb::RotateKeyRequest {
                id: replacement.id.clone(),
                grace_seconds: Some(0),
            },
        ))
        .await
        .expect("rotate again")
        .into_inner();
    assert!(!key_works(&f, &rotated.full_key).await, "no grace");
    assert!(key_works(&f, &again.full_key).await);

    let c = &mut f.client;
    let revoked = c
        .revoke_key(with_key(
            &key,
            pb::RevokeKeyRequest {
                id: new_key.id.clone(),
            },
        ))
        .await
        .expect("revoke")
        .into_inner();
    assert!(!revoked.already_revoked);
    assert_eq!(revoked.key.expect("key").status, "revoked");
    assert!(!key_works(&f, &created.full_key).await, "revoked");
    let c = &mut f.client;
    let missing = c
        .revoke_key(with_key(
            &key,
            pb::RevokeKeyRequest {
                id: "ffffffffffffffff".into(),
            },
        ))
        .await
        .expect_err("absent");
    assert_eq!(missing.code(), Code::NotFound);
    let sessions = c
        .revoke_sessions(with_key(
            &key,
            pb::RevokeSessionsRequest {
                username: "mia".into(),
            },
        ))
        .await
        .expect("sessions")
        .into_inner();
    assert_eq!(sessions.sessions_ended, 0);
    c.disable_user(with_key(
        &key,
        pb::DisableUserRequest {
            username: "mia".into(),
        },
    ))
    .await
    .expect("disable");
    assert!(
        f.store
            .get_user("mia")
            .await
            .expect("get")
            .expect("mia")
            .disabled
    );

    let listed = f
        .client
        .list_keys(with_key(&key, pb::ListKeysRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed
            .keys
            .iter()
            .any(|k| k.id == again.new_key.as_ref().expect("k").id)
    );

    let actor = "admin_api:user:root";
    let expected = [
        ("user.create", "user:mia".to_string()),
        ("user.set_role", "user:mia".to_string()),
        ("user.set_attr", "user:mia".to_string()),
        (
            "service_account.create",
            "service_account:batch".to_string(),
        ),
        ("key.create", format!("key:{}", new_key.id)),
        ("key.rotate", format!("key:{}", new_key.id)),
        ("key.rotate", format!("key:{}", replacement.id)),
        ("key.revoke", format!("key:{}", new_key.id)),
        ("session.revoke", "user:mia".to_string()),
        ("user.disable", "user:mia".to_string()),
    ];
    let records = admin_records(&f.trail_base);
    let got: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let want: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(action, target)| (actor, *action, target.as_str()))
        .collect();
    assert_eq!(got, want, "one record per change, none for failures");
    // The trail is readable through the API too, filtered.
    let queried = f
        .client
        .query_audit(with_key(
            &key,
            pb::QueryAuditRequest {
                action_prefix: Some("key.".into()),
                limit: Some(2),
                ..Default::default()
            },
        ))
        .await
        .expect("query")
        .into_inner();
    assert_eq!((queried.records_json.len(), queried.left_out), (2, 2));
    assert!(queried.records_json[1].contains("key.revoke"));
    let report = f
        .client
        .report(with_key(
            &key,
            pb::ReportRequest {
                kind: "permission-changes".into(),
                format: Some("json".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("report")
        .into_inner();
    let rows: serde_json::Value = serde_json::from_str(&report.text).expect("json");
    assert!(
        rows.as_array()
            .expect("rows")
            .iter()
            .any(|r| r["actor"] == actor && r["action"] == "user.set_role"),
        "{rows}"
    );
    let _ = f.stop.send(true);
}

#[tokio::test]
async fn key_network_limits_are_set_checked_and_kept_by_rotation() {
    let mut f = fixture().await;
    let key = f.admin_key.clone();
    let mut request = create_key_request("dana");
    request.allowed_networks = vec!["not-a-network".into()];
    let bad = f
        .client
        .create_key(with_key(&key, request.clone()))
        .await
        .expect_err("invalid CIDR");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    request.allowed_networks = vec!["10.0.0.0/8".into()];
    let created = f
        .client
        .create_key(with_key(&key, request))
        .await
        .expect("create")
        .into_inner();
    let id = created.key.expect("key").id;
    assert_eq!(
        f.store
            .get_key(&id)
            .await
            .expect("get")
            .expect("stored")
            .allowed_networks,
        Some(vec!["10.0.0.0/8".to_string()])
    );
    let rotated = f
        .client
        .rotate_key(with_key(
            &key,
            pb::RotateKeyRequest {
                id: id.clone(),
                grace_seconds: None,
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    let new_key = rotated.new_key.expect("new");
    assert_eq!(new_key.allowed_networks, ["10.0.0.0/8"]);
    let old = rotated.old_key.expect("old");
    let week = crate::commands::keys::DEFAULT_ROTATION_GRACE_DAYS * 86_400;
    assert!(
        old.expires_at <= crate::commands::users::now() + week,
        "default grace"
    );
    // Revoked keys cannot be rotated.
    f.client
        .revoke_key(with_key(&key, pb::RevokeKeyRequest { id: id.clone() }))
        .await
        .expect("revoke");
    let refused = f
        .client
        .rotate_key(with_key(
            &key,
            pb::RotateKeyRequest {
                id,
                grace_seconds: Some(60),
            },
        ))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let negative = f
        .client
        .rotate_key(with_key(
            &key,
            pb::RotateKeyRequest {
                id: new_key.id,
                grace_seconds: Some(-1),
            },
        ))
        .await
        .expect_err("negative grace");
    assert_eq!(negative.code(), Code::InvalidArgument);
    let _ = f.stop.send(true);
}

#[tokio::test]
async fn roles_that_require_mfa_refuse_api_keys() {
    let mut f = fixture().await;
    let ctx = CliContext {
        store: f.store.clone(),
        known_roles: f.authorizer.policy().roles.keys().cloned().collect(),
        audit: None,
    };
    create_user(
        &ctx,
        CreateUser {
            username: "sam".into(),
            role: "strict_admin".into(),
            email: None,
            attributes: BTreeMap::new(),
            password: None,
        },
    )
    .await
    .expect("user");
    let key = create_key(
        &ctx,
        CreateKey {
            name: "sam-key".into(),
            user: Some("sam".into()),
            service_account: None,
            scopes: vec![],
            expires_days: 1,
            daily_images: None,
        },
        crate::commands::users::now(),
    )
    .await
    .expect("key")
    .full_key;
    let refused = f
        .client
        .list_users(with_key(&key, pb::ListUsersRequest {}))
        .await
        .expect_err("no MFA");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().starts_with("mfa_required"), "{refused:?}");
    let _ = f.stop.send(true);
}
