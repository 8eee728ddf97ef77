//! Sessions on the Check path against a real SQLite store, with a stand-in IdP for refreshes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::domain::{AuthMethod, DenyKind, RoleSource};
use crate::identity::SessionAuthenticator;
use crate::policy::Policy;
use crate::store::{self, Change, DynStore, RefreshedClaims, UserRecord};

const POLICY: &str = "\
apis: [fooocus-api]
default_role: viewer
groups: {designers: designer, admins: admin}
roles:
  viewer: {permissions: [generation:view]}
  designer: {permissions: [generation:create, generation:view]}
  admin: {permissions: ['*']}
";

fn policy() -> Policy {
    crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("policy")
}

/// A stand-in IdP: answers refreshes with fixed groups, or refuses, counting calls.
struct FakeIdp {
    answer: std::sync::Mutex<Result<Vec<String>, RefreshError>>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl ClaimsRefresher for FakeIdp {
    async fn refresh(
        &self,
        refresh_token: &str,
        _subject: &str,
        now: i64,
    ) -> Result<RefreshedClaims, RefreshError> {
        assert_eq!(refresh_token, "rt-1");
        self.calls.fetch_add(1, Ordering::SeqCst);
        let groups = self.answer.lock().expect("lock").clone()?;
        Ok(RefreshedClaims {
            email: Some("alice@new.example.com".into()),
            groups,
            attributes: BTreeMap::new(),
            id_token: None,
            refresh_token: Some("rt-2".into()),
            refreshed_at: now,
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: DynStore,
    sessions: SessionManager,
    idp: Arc<FakeIdp>,
}

async fn fixture() -> Fixture {
    fixture_with(100, 1000).await
}

async fn fixture_with(idle_secs: i64, absolute_secs: i64) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = store::open(&url).await.expect("store");
    let idp = Arc::new(FakeIdp {
        answer: std::sync::Mutex::new(Ok(vec!["admins".into()])),
        calls: AtomicUsize::new(0),
    });
    let sessions = SessionManager::new(
        store.clone(),
        SessionSettings {
            issuer: "https://idp.example.com".into(),
            idle_secs,
            absolute_secs,
            groups_max_age_secs: 300,
            mfa_acr_values: vec!["urn:mfa".into()],
        },
        Duration::from_secs(300),
        Some(idp.clone() as Arc<dyn ClaimsRefresher>),
    );
    Fixture {
        _dir: dir,
        store,
        sessions,
        idp,
    }
}

fn login(amr: &[&str], acr: Option<&str>) -> LoginResult {
    LoginResult {
        issuer: "https://idp.example.com".into(),
        subject: "alice".into(),
        sid: Some("sid-1".into()),
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        attributes: BTreeMap::from([("department".into(), "design".into())]),
        amr: amr.iter().map(|s| s.to_string()).collect(),
        acr: acr.map(str::to_string),
        id_token: "header.payload.sig".into(),
        refresh_token: Some("rt-1".into()),
    }
}

const T0: i64 = 1_700_000_000;

#[tokio::test]
async fn a_session_is_a_principal_with_the_token_rules() {
    let f = fixture().await;
    let (id, record) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    assert_eq!(id.len(), 43);
    assert_eq!(record.id_sha256, secret_hash(&id));
    assert!(!record.mfa);
    let stored = f
        .store
        .get_session(&record.id_sha256)
        .await
        .expect("get")
        .expect("row");
    assert_ne!(stored.id_sha256, id, "only the hash is stored");

    let p = f
        .sessions
        .authenticate(&id, &policy(), T0 + 1)
        .await
        .expect("principal");
    assert_eq!(p.subject, "alice");
    assert_eq!(p.role, "designer");
    assert_eq!(p.role_source, RoleSource::Group);
    assert_eq!(p.auth, AuthMethod::Session);
    assert_eq!(p.session_id.as_deref(), Some(record.id_sha256.as_str()));
    assert_eq!(p.attributes["department"], "design");
    assert!(!p.mfa);

    // A store binding wins over the groups.
    f.store
        .set_user_role("alice", "viewer")
        .await
        .expect("bind");
    f.sessions
        .apply_change(&Change {
            seq: 1,
            entity: "user".into(),
            id: "alice".into(),
        })
        .await;
    let p = f
        .sessions
        .authenticate(&id, &policy(), T0 + 2)
        .await
        .expect("principal");
    assert_eq!(
        (p.role.as_str(), p.role_source),
        ("viewer", RoleSource::Binding)
    );

    // A disabled user is refused at once (after the feed says so).
    f.store.disable_user("alice").await.expect("disable");
    f.sessions
        .apply_change(&Change {
            seq: 2,
            entity: "user".into(),
            id: "alice".into(),
        })
        .await;
    let d = f
        .sessions
        .authenticate(&id, &policy(), T0 + 3)
        .await
        .expect_err("disabled");
    assert_eq!(d.error, "disabled_principal");
}

#[tokio::test]
async fn mfa_comes_from_amr_or_acr() {
    let f = fixture().await;
    let (id, _) = f
        .sessions
        .create(&login(&["pwd", "otp"], None), T0)
        .await
        .expect("create");
    assert!(
        f.sessions
            .authenticate(&id, &policy(), T0)
            .await
            .expect("p")
            .mfa
    );
    let (id, _) = f
        .sessions
        .create(&login(&["pwd"], Some("urn:mfa")), T0)
        .await
        .expect("create");
    assert!(
        f.sessions
            .authenticate(&id, &policy(), T0)
            .await
            .expect("p")
            .mfa
    );
}

#[tokio::test]
async fn junk_unknown_and_ended_sessions_are_refused() {
    let f = fixture().await;
    let p = policy();
    for junk in [
        "",
        "short",
        &"x".repeat(43).replace('x', "!"),
        &new_session_id(),
    ] {
        let d = f
            .sessions
            .authenticate(junk, &p, T0)
            .await
            .expect_err("junk");
        assert_eq!(
            (d.kind, d.error),
            (DenyKind::Unauthenticated, "invalid_session")
        );
    }
    let (id, record) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    f.sessions.authenticate(&id, &p, T0).await.expect("ok");
    // Ended by another process: the feed drops the cached copy.
    f.store
        .end_sessions_for_user("alice", T0 + 1, "revoked")
        .await
        .expect("end");
    f.sessions
        .apply_change(&Change {
            seq: 1,
            entity: "session".into(),
            id: record.id_sha256.clone(),
        })
        .await;
    let d = f
        .sessions
        .authenticate(&id, &p, T0 + 2)
        .await
        .expect_err("ended");
    assert_eq!(d.error, "invalid_session");
}

#[tokio::test]
async fn idle_and_absolute_timeouts() {
    let f = fixture().await;
    let p = policy();
    let (id, record) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    // Activity slides the idle expiry (idle 100 s: touched when 10 s have passed).
    for t in [50, 140, 230, 320] {
        f.sessions
            .authenticate(&id, &p, T0 + t)
            .await
            .expect("active");
    }
    let s = f
        .store
        .get_session(&record.id_sha256)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(s.last_seen_at, T0 + 320);
    let d = f
        .sessions
        .authenticate(&id, &p, T0 + 421)
        .await
        .expect_err("idle");
    assert_eq!(d.error, "session_expired");
    let s = f
        .store
        .get_session(&record.id_sha256)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(s.end_reason.as_deref(), Some("idle_timeout"));

    let (id, record) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    let mut t = T0;
    while t < T0 + 990 {
        t += 90;
        let r = f.sessions.authenticate(&id, &p, t).await;
        if t < T0 + 1000 {
            r.expect("active before the absolute timeout");
        }
    }
    let d = f
        .sessions
        .authenticate(&id, &p, T0 + 1000)
        .await
        .expect_err("absolute");
    assert_eq!(d.error, "session_expired");
    let s = f
        .store
        .get_session(&record.id_sha256)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(s.end_reason.as_deref(), Some("absolute_timeout"));
}

#[tokio::test]
async fn old_claims_are_refreshed_and_a_refused_refresh_ends_the_session() {
    let f = fixture_with(10_000, 100_000).await;
    let p = policy();
    let (id, record) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    let before = f.sessions.authenticate(&id, &p, T0 + 60).await.expect("p");
    assert_eq!(before.role, "designer");
    assert_eq!(f.idp.calls.load(Ordering::SeqCst), 0, "claims still fresh");

    let after = f.sessions.authenticate(&id, &p, T0 + 301).await.expect("p");
    assert_eq!(after.role, "admin", "new groups from the IdP");
    assert_eq!(after.email.as_deref(), Some("alice@new.example.com"));
    assert_eq!(f.idp.calls.load(Ordering::SeqCst), 1);
    let s = f
        .store
        .get_session(&record.id_sha256)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        s.refresh_token.as_deref(),
        Some("rt-2"),
        "rotated token kept"
    );
    assert_eq!(s.claims_refreshed_at, T0 + 301);

    // The next refresh is refused by the IdP: the session ends.
    let (id, _) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    *f.idp.answer.lock().expect("lock") = Err(RefreshError::Refused("invalid_grant".into()));
    let d = f
        .sessions
        .authenticate(&id, &p, T0 + 350)
        .await
        .expect_err("refused");
    assert_eq!(d.error, "invalid_session");
    let d = f
        .sessions
        .authenticate(&id, &p, T0 + 351)
        .await
        .expect_err("ended");
    assert_eq!(d.error, "invalid_session");

    // An unreachable IdP keeps the claims in hand (and retries after the lease).
    let (id, _) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    *f.idp.answer.lock().expect("lock") = Err(RefreshError::Unavailable("down".into()));
    let calls = f.idp.calls.load(Ordering::SeqCst);
    let p1 = f
        .sessions
        .authenticate(&id, &p, T0 + 400)
        .await
        .expect("kept");
    assert_eq!(p1.role, "designer");
    f.sessions
        .authenticate(&id, &p, T0 + 401)
        .await
        .expect("kept");
    assert_eq!(
        f.idp.calls.load(Ordering::SeqCst),
        calls + 1,
        "leased: one attempt"
    );
}

#[tokio::test]
async fn a_logged_in_disabled_user_is_refused_even_with_fresh_session() {
    let f = fixture().await;
    f.store
        .create_user(&UserRecord {
            username: "alice".into(),
            email: None,
            role: None,
            attributes: BTreeMap::new(),
            disabled: true,
            password_hash: None,
            created_at: T0,
        })
        .await
        .expect("user");
    let (id, _) = f
        .sessions
        .create(&login(&["pwd"], None), T0)
        .await
        .expect("create");
    let d = f
        .sessions
        .authenticate(&id, &policy(), T0)
        .await
        .expect_err("disabled");
    assert_eq!(d.error, "disabled_principal");
}
