//! Key hygiene: allowed networks, batched last use, rotation expiry, enabling and deactivating users.

use std::collections::BTreeMap;

use super::TestStore;
use crate::domain::PrincipalKind;
use crate::store::*;

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: None,
        role: None,
        attributes: BTreeMap::new(),
        disabled: false,
        password_hash: None,
        created_at: 1,
    }
}

fn key(id: &str, owner: &str, networks: Option<Vec<&str>>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: id.into(),
        owner: OwnerRef {
            kind: PrincipalKind::User,
            name: owner.into(),
        },
        secret_sha256: "00".repeat(32),
        scopes: None,
        daily_images: None,
        created_at: 10,
        expires_at: 1_000_000,
        revoked_at: None,
        allowed_networks: networks.map(|n| n.into_iter().map(str::to_string).collect()),
        last_used_at: None,
    }
}

fn session(id: &str, user: &str, now: i64) -> SessionRecord {
    SessionRecord {
        id_sha256: id.into(),
        username: user.into(),
        issuer: "https://idp.example.com".into(),
        idp_sid: None,
        email: None,
        groups: vec![],
        attributes: BTreeMap::new(),
        amr: vec![],
        acr: None,
        mfa: false,
        id_token: None,
        refresh_token: None,
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + 3600,
        absolute_expires_at: now + 36_000,
        claims_refreshed_at: now,
        ended_at: None,
        end_reason: None,
    }
}

async fn allowed_networks_round_trip_and_uses_keep_the_latest(t: TestStore) {
    let store = &t.store;
    store
        .create_key(&key(
            "k1",
            "alice",
            Some(vec!["10.0.0.0/8", "127.0.0.1/32"]),
        ))
        .await
        .expect("create");
    store
        .create_key(&key("k2", "alice", None))
        .await
        .expect("create");
    let k1 = store.get_key("k1").await.expect("get").expect("k1");
    assert_eq!(
        k1.allowed_networks,
        Some(vec!["10.0.0.0/8".to_string(), "127.0.0.1/32".to_string()])
    );
    assert_eq!(k1.last_used_at, None);

    let before = store.latest_change().await.expect("seq");
    store
        .record_key_uses(&[("k1".into(), 500), ("k2".into(), 300), ("nope".into(), 9)])
        .await
        .expect("uses");
    // An older batch arriving late never moves last_used_at back.
    store
        .record_key_uses(&[("k1".into(), 400)])
        .await
        .expect("uses");
    store.record_key_uses(&[]).await.expect("empty batch");
    assert_eq!(
        store.get_key("k1").await.unwrap().unwrap().last_used_at,
        Some(500)
    );
    assert_eq!(
        store.get_key("k2").await.unwrap().unwrap().last_used_at,
        Some(300)
    );
    assert_eq!(
        store.latest_change().await.expect("seq"),
        before,
        "key uses are not in the change feed"
    );
}

async fn key_expiry_is_set_and_fed_to_caches(t: TestStore) {
    let store = &t.store;
    store
        .create_key(&key("k1", "alice", None))
        .await
        .expect("create");
    let before = store.latest_change().await.expect("seq");
    store.set_key_expiry("k1", 777).await.expect("expiry");
    assert_eq!(store.get_key("k1").await.unwrap().unwrap().expires_at, 777);
    let changes = store.changes_since(before, 10).await.expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].entity.as_str(), changes[0].id.as_str()),
        ("key", "k1")
    );
    assert!(matches!(
        store.set_key_expiry("missing", 1).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn deactivation_disables_ends_sessions_and_revokes_in_one_go(t: TestStore) {
    let store = &t.store;
    store.create_user(&user("alice")).await.expect("alice");
    store.create_user(&user("bob")).await.expect("bob");
    store
        .create_key(&key("ka", "alice", None))
        .await
        .expect("key");
    let mut revoked = key("kold", "alice", None);
    revoked.revoked_at = Some(5);
    store.create_key(&revoked).await.expect("key");
    store
        .create_key(&key("kb", "bob", None))
        .await
        .expect("key");
    store
        .create_session(&session("s1", "alice", 100))
        .await
        .expect("s1");
    store
        .create_session(&session("s2", "bob", 100))
        .await
        .expect("s2");
    store
        .create_refresh_token(&RefreshTokenRecord {
            token_sha256: "t1".into(),
            family_id: "f1".into(),
            username: "alice".into(),
            created_at: 100,
            expires_at: 10_000,
            used_at: None,
            revoked_at: None,
        })
        .await
        .expect("refresh");

    let before = store.latest_change().await.expect("seq");
    let outcome = store
        .deactivate_user("alice", 200)
        .await
        .expect("deactivate");
    assert!(outcome.newly_disabled);
    assert_eq!(outcome.sessions_ended, vec!["s1".to_string()]);
    assert_eq!(outcome.keys_revoked, vec!["ka".to_string()]);
    assert_eq!(outcome.refresh_tokens_revoked, 1);

    assert!(store.get_user("alice").await.unwrap().unwrap().disabled);
    assert!(!store.get_user("bob").await.unwrap().unwrap().disabled);
    assert_eq!(
        store.get_key("ka").await.unwrap().unwrap().revoked_at,
        Some(200)
    );
    assert_eq!(
        store.get_key("kold").await.unwrap().unwrap().revoked_at,
        Some(5)
    );
    assert_eq!(store.get_key("kb").await.unwrap().unwrap().revoked_at, None);
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(s1.end_reason.as_deref(), Some("deprovisioned"));
    assert!(
        store
            .get_session("s2")
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_none()
    );

    let mut fed: Vec<(String, String)> = store
        .changes_since(before, 100)
        .await
        .expect("changes")
        .into_iter()
        .map(|c| (c.entity, c.id))
        .collect();
    fed.sort();
    assert_eq!(
        fed,
        vec![
            ("key".into(), "ka".into()),
            ("refresh_token".into(), "f1".into()),
            ("session".into(), "s1".into()),
            ("user".into(), "alice".into()),
        ]
    );

    let again = store.deactivate_user("alice", 300).await.expect("again");
    assert!(!again.newly_disabled);
    assert!(again.keys_revoked.is_empty() && again.sessions_ended.is_empty());
    assert!(matches!(
        store.deactivate_user("nobody", 1).await,
        Err(StoreError::NotFound(_))
    ));

    store.enable_user("alice").await.expect("enable");
    assert!(!store.get_user("alice").await.unwrap().unwrap().disabled);
    assert!(matches!(
        store.enable_user("nobody").await,
        Err(StoreError::NotFound(_))
    ));
}

store_tests!(
    allowed_networks_round_trip_and_uses_keep_the_latest,
    key_expiry_is_set_and_fed_to_caches,
    deactivation_disables_ends_sessions_and_revokes_in_one_go
);
