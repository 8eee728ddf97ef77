//! Micro-benchmarks of the Check stages, one at a time: body extraction, authentication per
//! method (API key cached and uncached on SQLite, JWT cached and at first sight), policy
//! evaluation (roles and CEL rules) and an audit append. Run with `cargo bench --bench stages`;
//! the figures are in README "Performance". The whole Check (gRPC included) is measured by
//! scripts/bench-check and bench/callgrind-check.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use inferguard::audit::{AuditEvent, AuditTrail, CheckpointKey};
use inferguard::config::{AuditConfig, compile_policy};
use inferguard::domain::{Action, AuthMethod, PrincipalKind};
use inferguard::identity::KeyAuthenticator;
use inferguard::identity::api_key;
use inferguard::identity::jwt::{JwtIssuerConfig, JwtVerifier};
use inferguard::identity::local::{ASSERTION_AUDIENCE, LocalIssuer, LocalUsersConfig};
use inferguard::inference::{ApiSet, RouteTable, understand};
use inferguard::policy::{self, RuleInput};
use inferguard::store::{ApiKeyRecord, DynStore, OwnerRef, SqliteStore, UserRecord};

mod common;

use common::{POLICY, chat_body, fooocus_body, principal, request};

fn extract(c: &mut Criterion) {
    let table = RouteTable::new(&[ApiSet::FooocusApi, ApiSet::OpenAi], vec![]);
    let mut g = c.benchmark_group("extract");
    for (name, path, body) in [
        (
            "fooocus_text_to_image_2kb",
            "/v1/generation/text-to-image",
            fooocus_body(),
        ),
        ("openai_chat", "/v1/chat/completions", chat_body()),
    ] {
        let req = request(path, body);
        let route = table.find("POST", path).expect("route");
        understand(route, &req).expect("understood");
        g.bench_function(name, |b| {
            b.iter(|| understand(route, black_box(&req)).unwrap())
        });
    }
    g.finish();
}

struct Store {
    store: DynStore,
    key: String,
    _dir: tempfile::TempDir,
}

async fn store_with_key() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("sqlite"));
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
        .expect("user");
    let k = api_key::generate();
    let now = chrono::Utc::now().timestamp();
    store
        .create_key(&ApiKeyRecord {
            id: k.id.clone(),
            name: "bench".into(),
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
        .expect("key");
    Store {
        store,
        key: k.full,
        _dir: dir,
    }
}

fn authenticate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).expect("policy");
    let s = rt.block_on(store_with_key());
    let keys = KeyAuthenticator::new(s.store.clone(), Duration::from_secs(3600));
    let now = chrono::Utc::now().timestamp();
    let mut g = c.benchmark_group("authenticate");
    g.bench_function("api_key_cached", |b| {
        b.iter(|| {
            rt.block_on(keys.authenticate(black_box(&s.key), &policy, now, None))
                .unwrap()
        })
    });
    g.bench_function("api_key_uncached_sqlite", |b| {
        b.iter(|| {
            keys.invalidate_all();
            rt.block_on(keys.authenticate(black_box(&s.key), &policy, now, None))
                .unwrap()
        })
    });

    let issuer = rt
        .block_on(LocalIssuer::load(
            &LocalUsersConfig::default(),
            s.store.clone(),
            Path::new("."),
        ))
        .expect("local issuer");
    let (iss, _) = issuer.issuer_config();
    let mut cfg = JwtIssuerConfig::new(iss, vec![ASSERTION_AUDIENCE.to_string()]);
    cfg.algorithms = Some(vec!["EdDSA".into()]);
    let mut verifier = JwtVerifier::new(Vec::new()).expect("verifier");
    verifier
        .add_static_issuer(cfg, issuer.jwks())
        .expect("issuer");
    let who = principal(AuthMethod::Jwt);
    let token = issuer.assertion(&who, "r0", now);
    rt.block_on(verifier.verify(&token, now)).expect("valid");
    g.bench_function("jwt_cached", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(black_box(&token), now))
                .unwrap()
        })
    });
    let mut n = 0u64;
    g.bench_function("jwt_first_sight_eddsa", |b| {
        b.iter_batched(
            || {
                n += 1;
                issuer.assertion(&who, &format!("r{n}"), now)
            },
            |t| rt.block_on(verifier.verify(&t, now)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn evaluate(c: &mut Criterion) {
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).expect("policy");
    let table = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
    let req = request("/v1/generation/text-to-image", fooocus_body());
    let route = table.find("POST", &req.path).expect("route");
    let action: Action = understand(route, &req).expect("action");
    let who = principal(AuthMethod::ApiKey);
    let now = chrono::Utc::now();
    let mut g = c.benchmark_group("policy");
    g.bench_function("decide_role", |b| {
        b.iter(|| policy::decide(&policy, black_box(&who), black_box(&action)).unwrap())
    });
    g.bench_function("cel_rules_2", |b| {
        b.iter(|| {
            policy.rules.evaluate(&RuleInput {
                principal: &who,
                action: black_box(&action),
                method: "POST",
                path: &req.path,
                permission: route.permission,
                pii: &[],
                now,
            })
        })
    });
    g.finish();
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = AuditConfig {
        checkpoint_every: Duration::from_secs(1),
        ..AuditConfig::default()
    };
    let trail = AuditTrail::open_with_key(
        &dir.path().join("audit.jsonl"),
        &cfg,
        CheckpointKey::generate(),
    )
    .expect("trail");
    let table = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
    let req = request("/v1/generation/text-to-image", fooocus_body());
    let route = table.find("POST", &req.path).expect("route");
    let action = understand(route, &req).expect("action");
    let who = principal(AuthMethod::ApiKey);
    let allow = inferguard::domain::Allow {
        principal: who.clone(),
        action: action.clone(),
        extra_headers: Vec::new(),
        policy_version: "v1".into(),
    };
    let mut g = c.benchmark_group("audit");
    g.bench_function("append_decision", |b| {
        b.iter(|| {
            let event =
                AuditEvent::decision(&req, Ok(&allow), "v1", Duration::from_micros(30), true)
                    .with_principal(&who)
                    .with_action(&action, true)
                    .with_status(200);
            trail.record_now(&event).unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = stages;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = extract, authenticate, evaluate, audit
}
criterion_main!(stages);
