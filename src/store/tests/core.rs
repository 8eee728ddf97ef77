//! Users, service accounts, keys, signing keys, refresh tokens and the change feed.

use std::collections::BTreeMap;

use super::TestStore;
use crate::domain::PrincipalKind;
use crate::store::*;

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        role: Some("designer_basic".into()),
        attributes: BTreeMap::from([("department".into(), "marketing".into())]),
        disabled: false,
        password_hash: None,
        created_at: 1_700_000_000,
    }
}

fn service_account(name: &str) -> ServiceAccountRecord {
    ServiceAccountRecord {
        name: name.into(),
        role: "designer_basic".into(),
        attributes: BTreeMap::from([("team".into(), "batch".into())]),
        daily_images: Some(100),
        daily_tokens: None,
        disabled: false,
        created_at: 1_700_000_000,
    }
}

fn key(id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("label-{id}"),
        owner: OwnerRef {
            kind: PrincipalKind::User,
            name: "alice".into(),
        },
        secret_sha256: "ab".repeat(32),
        scopes: Some(vec!["generation:create".into(), "models:view".into()]),
        daily_images: Some(10),
        created_at,
        expires_at: created_at + 90 * 86_400,
        revoked_at: None,
        allowed_networks: None,
        last_used_at: None,
    }
}

async fn users_round_trip(t: TestStore) {
    let store = &t.store;
    let mut bob = user("bob");
    bob.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    bob.email = None;
    store.create_user(&bob).await.expect("create bob");
    store
        .create_user(&user("alice"))
        .await
        .expect("create alice");

    assert_eq!(store.get_user("bob").await.expect("get"), Some(bob.clone()));
    assert_eq!(store.get_user("carol").await.expect("get"), None);
    let names: Vec<_> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let err = store.create_user(&user("alice")).await.expect_err("dup");
    assert!(matches!(&err, StoreError::Conflict(what) if what == "user `alice`"));
    assert_eq!(err.to_string(), "user `alice` already exists");
}

async fn user_attributes_roles_and_disabling(t: TestStore) {
    let store = &t.store;
    store.create_user(&user("alice")).await.expect("create");

    store
        .set_user_attr("alice", "clearance_level", "3")
        .await
        .expect("add attr");
    store
        .set_user_attr("alice", "department", "sales")
        .await
        .expect("replace attr");
    let alice = store.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(
        alice.attributes,
        BTreeMap::from([
            ("clearance_level".into(), "3".into()),
            ("department".into(), "sales".into()),
        ])
    );
    let err = store
        .set_user_attr("nobody", "a", "b")
        .await
        .expect_err("absent");
    assert!(matches!(&err, StoreError::NotFound(what) if what == "user `nobody`"));

    store.set_user_role("alice", "admin").await.expect("role");
    let alice = store.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(alice.role.as_deref(), Some("admin"));
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert_eq!(alice.created_at, 1_700_000_000, "binding keeps the record");

    // An IdP user known only by subject gets a record.
    store
        .set_user_role("00u1abcd", "viewer")
        .await
        .expect("role for new subject");
    let idp = store
        .get_user("00u1abcd")
        .await
        .expect("get")
        .expect("created");
    assert_eq!(idp.role.as_deref(), Some("viewer"));
    assert!(idp.attributes.is_empty());
    assert!(!idp.disabled);
    assert!(idp.email.is_none() && idp.password_hash.is_none());
    assert!(idp.created_at > 1_700_000_000);

    assert!(!alice.disabled);
    store.disable_user("alice").await.expect("disable");
    store.disable_user("alice").await.expect("disable twice");
    assert!(
        store
            .get_user("alice")
            .await
            .expect("get")
            .expect("exists")
            .disabled
    );
    let err = store.disable_user("nobody").await.expect_err("absent");
    assert!(matches!(err, StoreError::NotFound(_)));
}

async fn service_accounts_round_trip(t: TestStore) {
    let store = &t.store;
    let batch = service_account("batch-renderer");
    let mut ci = service_account("ci.bot");
    ci.daily_images = None;
    ci.daily_tokens = Some(1_000_000);
    ci.disabled = true;
    store.create_service_account(&ci).await.expect("create");
    store.create_service_account(&batch).await.expect("create");

    assert_eq!(
        store.get_service_account("ci.bot").await.expect("get"),
        Some(ci.clone())
    );
    assert_eq!(store.get_service_account("nope").await.expect("get"), None);
    assert_eq!(
        store.list_service_accounts().await.expect("list"),
        vec![batch.clone(), ci]
    );
    let err = store.create_service_account(&batch).await.expect_err("dup");
    assert_eq!(
        err.to_string(),
        "service account `batch-renderer` already exists"
    );
}

async fn keys_round_trip_and_revoke(t: TestStore) {
    let store = &t.store;
    let older = key("00000000000000aa", 1_700_000_000);
    let mut newer = key("00000000000000bb", 1_700_000_100);
    newer.scopes = None;
    newer.daily_images = None;
    newer.owner = OwnerRef {
        kind: PrincipalKind::ServiceAccount,
        name: "batch".into(),
    };
    store.create_key(&older).await.expect("create");
    store.create_key(&newer).await.expect("create");

    assert_eq!(
        store.get_key(&older.id).await.expect("get"),
        Some(older.clone())
    );
    assert_eq!(store.get_key("missing").await.expect("get"), None);
    assert_eq!(
        store.list_keys().await.expect("list"),
        vec![newer.clone(), older.clone()],
        "newest first"
    );
    let err = store.create_key(&older).await.expect_err("dup id");
    assert_eq!(err.to_string(), "key `00000000000000aa` already exists");

    store
        .revoke_key(&older.id, 1_700_001_000)
        .await
        .expect("revoke");
    store
        .revoke_key(&older.id, 1_700_002_000)
        .await
        .expect("revoke twice");
    let revoked = store
        .get_key(&older.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(revoked.revoked_at, Some(1_700_001_000), "first time kept");
    let err = store.revoke_key("missing", 1).await.expect_err("absent");
    assert!(matches!(&err, StoreError::NotFound(what) if what == "key `missing`"));
}

async fn every_mutation_feeds_the_change_log(t: TestStore) {
    let store = &t.store;
    assert_eq!(store.latest_change().await.expect("latest"), 0);
    assert!(store.changes_since(0, 100).await.expect("since").is_empty());

    store.create_user(&user("alice")).await.expect("user");
    store.set_user_attr("alice", "k", "v").await.expect("attr");
    store.set_user_role("alice", "admin").await.expect("role");
    store
        .set_user_role("idp-sub", "viewer")
        .await
        .expect("role");
    store.disable_user("alice").await.expect("disable");
    store
        .create_service_account(&service_account("batch"))
        .await
        .expect("sa");
    store.create_key(&key("k1", 1)).await.expect("key");
    store.revoke_key("k1", 2).await.expect("revoke");

    // Failed mutations record nothing.
    store.create_user(&user("alice")).await.expect_err("dup");
    store.disable_user("ghost").await.expect_err("absent");
    store.revoke_key("ghost", 3).await.expect_err("absent");

    let all = store.changes_since(0, 100).await.expect("since");
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|c| (c.entity.as_str(), c.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("user", "alice"),
            ("user", "alice"),
            ("user", "alice"),
            ("user", "idp-sub"),
            ("user", "alice"),
            ("service_account", "batch"),
            ("key", "k1"),
            ("key", "k1"),
        ]
    );
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence grows"
    );
    let latest = store.latest_change().await.expect("latest");
    assert_eq!(latest, all.last().expect("some").seq);

    let tail = store.changes_since(all[5].seq, 100).await.expect("since");
    assert_eq!(tail, all[6..].to_vec());
    let limited = store.changes_since(0, 3).await.expect("since");
    assert_eq!(limited, all[..3].to_vec());
    assert!(
        store
            .changes_since(latest, 10)
            .await
            .expect("since")
            .is_empty()
    );
}

async fn two_handles_on_one_file_see_each_other(t: TestStore) {
    let a = t.store.clone();
    let b = t.reopen().await;

    a.create_user(&user("alice")).await.expect("a writes");
    assert!(b.get_user("alice").await.expect("b reads").is_some());
    b.create_key(&key("k1", 10)).await.expect("b writes");
    b.revoke_key("k1", 20).await.expect("b revokes");
    assert_eq!(
        a.get_key("k1")
            .await
            .expect("a reads")
            .and_then(|k| k.revoked_at),
        Some(20)
    );
    assert_eq!(
        a.latest_change().await.expect("a"),
        b.latest_change().await.expect("b")
    );
    assert_eq!(a.changes_since(0, 10).await.expect("a").len(), 3);

    // Concurrent writers through both handles all succeed (busy timeout, BEGIN IMMEDIATE).
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.set_user_attr("alice", &format!("k{i}"), "v").await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("concurrent write");
    }
    let alice = b.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(alice.attributes.len(), 21);
}

async fn corrupt_attributes_are_reported(t: TestStore) {
    let store = &t.store;
    store.create_user(&user("alice")).await.expect("create");
    t.execute("UPDATE users SET attributes = 'not json' WHERE username = 'alice'")
        .await;
    let err = store.get_user("alice").await.expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

fn refresh(hash: &str, family: &str, username: &str, created_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_sha256: hash.into(),
        family_id: family.into(),
        username: username.into(),
        created_at,
        expires_at: created_at + 1_000,
        used_at: None,
        revoked_at: None,
    }
}

async fn signing_key_is_created_once_even_by_racing_processes(t: TestStore) {
    let a = t.store.clone();
    let b = t.reopen().await;
    let gen_a = || ("kid-a".to_string(), vec![1u8; 48]);
    let gen_b = || ("kid-b".to_string(), vec![2u8; 48]);
    let (ka, kb) = tokio::join!(
        a.get_or_create_signing_key("local_jwt", &gen_a),
        b.get_or_create_signing_key("local_jwt", &gen_b)
    );
    let (ka, kb) = (ka.expect("a"), kb.expect("b"));
    assert_eq!(ka, kb, "both processes use the key stored first");
    assert!(ka.kid == "kid-a" || ka.kid == "kid-b");
    assert_eq!(ka.purpose, "local_jwt");
    assert!(!format!("{ka:?}").contains("[1, 1"), "Debug hides the key");

    // Later calls never generate again; another purpose gets its own key.
    let never = || -> (String, Vec<u8>) { panic!("must not generate") };
    assert_eq!(
        a.get_or_create_signing_key("local_jwt", &never)
            .await
            .expect("again"),
        ka
    );
    let audit = a
        .get_or_create_signing_key("audit_checkpoint", &|| ("kid-c".into(), vec![3u8; 48]))
        .await
        .expect("other purpose");
    assert_eq!(audit.private_key_der, vec![3u8; 48]);

    let created: Vec<_> = a
        .changes_since(0, 100)
        .await
        .expect("feed")
        .into_iter()
        .map(|c| (c.entity, c.id))
        .collect();
    assert_eq!(
        created,
        [
            ("signing_key".to_string(), ka.kid.clone()),
            ("signing_key".to_string(), "kid-c".to_string())
        ]
    );
}

async fn refresh_tokens_are_spent_once_and_revocable(t: TestStore) {
    let store = &t.store;
    let t1 = refresh("h1", "fam1", "alice", 100);
    store.create_refresh_token(&t1).await.expect("create");
    let err = store.create_refresh_token(&t1).await.expect_err("dup");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // First use spends it and reports it as it was; the second use reports the spend.
    let first = store.use_refresh_token("h1", 150).await.expect("use");
    assert_eq!(first, Some(t1.clone()));
    let second = store
        .use_refresh_token("h1", 160)
        .await
        .expect("reuse")
        .expect("known");
    assert_eq!(second.used_at, Some(150), "first use time kept");
    assert_eq!(
        store.use_refresh_token("nope", 160).await.expect("unknown"),
        None
    );

    // The successor joins the family; revoking the family revokes both.
    store
        .create_refresh_token(&refresh("h2", "fam1", "alice", 150))
        .await
        .expect("successor");
    assert_eq!(
        store
            .revoke_refresh_family("fam1", 170)
            .await
            .expect("revoke"),
        2
    );
    assert_eq!(
        store
            .revoke_refresh_family("fam1", 180)
            .await
            .expect("again"),
        0
    );
    let h2 = store
        .use_refresh_token("h2", 175)
        .await
        .expect("use revoked")
        .expect("known");
    assert_eq!(h2.revoked_at, Some(170));
    assert_eq!(h2.used_at, None);
    let h2 = store
        .use_refresh_token("h2", 176)
        .await
        .expect("use")
        .expect("known");
    assert_eq!(h2.used_at, None, "a revoked token is not spent");

    // A rotation that lost the race with a revocation is refused.
    let err = store
        .create_refresh_token(&refresh("h3", "fam1", "alice", 180))
        .await
        .expect_err("revoked family");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Expired tokens are not spent, and are dropped when a later token is created.
    store
        .create_refresh_token(&refresh("old", "fam2", "bob", 200))
        .await
        .expect("create");
    let old = store
        .use_refresh_token("old", 1_200)
        .await
        .expect("use")
        .expect("known");
    assert_eq!(old.used_at, None);
    store
        .create_refresh_token(&refresh("new", "fam3", "bob", 1_300))
        .await
        .expect("create");
    assert_eq!(
        store.use_refresh_token("old", 1_300).await.expect("use"),
        None
    );

    // Revoking a user's tokens covers all their families and nobody else's.
    store
        .create_refresh_token(&refresh("c1", "fam4", "carol", 1_300))
        .await
        .expect("create");
    store
        .create_refresh_token(&refresh("b2", "fam5", "bob", 1_300))
        .await
        .expect("create");
    assert_eq!(
        store
            .revoke_refresh_tokens_for_user("bob", 1_400)
            .await
            .expect("revoke"),
        2
    );
    let carol = store
        .use_refresh_token("c1", 1_401)
        .await
        .expect("use")
        .expect("known");
    assert_eq!(carol.revoked_at, None);

    let feed: Vec<(String, String)> = store
        .changes_since(0, 100)
        .await
        .expect("feed")
        .into_iter()
        .map(|c| (c.entity, c.id))
        .collect();
    let ids: Vec<&str> = feed
        .iter()
        .inspect(|(entity, _)| assert_eq!(entity, "refresh_token"))
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "fam1", // create h1
            "fam1", // use h1
            "fam1", // create h2
            "fam1", // revoke family (one entry per family)
            "fam2", // create old
            "fam3", // create new
            "fam4", // create c1
            "fam5", // create b2
            "fam3", // revoke bob: fam3 and fam5
            "fam5", "fam4", // use c1
        ]
    );
}

store_tests!(
    users_round_trip,
    user_attributes_roles_and_disabling,
    service_accounts_round_trip,
    keys_round_trip_and_revoke,
    every_mutation_feeds_the_change_log,
    two_handles_on_one_file_see_each_other,
    corrupt_attributes_are_reported,
    signing_key_is_created_once_even_by_racing_processes,
    refresh_tokens_are_spent_once_and_revocable
);
