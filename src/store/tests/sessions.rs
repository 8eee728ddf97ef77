//! Browser sessions and login states.

use std::collections::BTreeMap;

use super::TestStore;
use crate::store::*;

fn session(id: &str, user: &str, sid: Option<&str>, now: i64) -> SessionRecord {
    SessionRecord {
        id_sha256: id.into(),
        username: user.into(),
        issuer: "https://idp.example.com".into(),
        idp_sid: sid.map(str::to_string),
        email: Some(format!("{user}@example.com")),
        groups: vec!["g1".into()],
        attributes: BTreeMap::from([("department".into(), "design".into())]),
        amr: vec!["pwd".into()],
        acr: Some("urn:x:pwd".into()),
        mfa: false,
        id_token: Some("id.token.x".into()),
        refresh_token: Some("rt-1".into()),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + 3600,
        absolute_expires_at: now + 36_000,
        claims_refreshed_at: now,
        ended_at: None,
        end_reason: None,
    }
}

fn login_state(hash: &str, now: i64) -> LoginStateRecord {
    LoginStateRecord {
        state_sha256: hash.into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        redirect_uri: "https://app/auth/callback".into(),
        return_to: "/".into(),
        step_up: true,
        created_at: now,
        expires_at: now + 600,
    }
}

async fn session_changes(store: &DynStore) -> Vec<String> {
    store
        .changes_since(0, 1000)
        .await
        .expect("changes")
        .into_iter()
        .filter(|c| c.entity == "session")
        .map(|c| c.id)
        .collect()
}

async fn login_states_are_single_use_and_expire(t: TestStore) {
    let store = &t.store;
    let now = 1_700_000_000;
    store
        .create_login_state(&login_state("a", now))
        .await
        .expect("create");
    assert!(
        store
            .create_login_state(&login_state("a", now))
            .await
            .is_err()
    );
    let taken = store.take_login_state("a", now + 1).await.expect("take");
    assert_eq!(taken, Some(login_state("a", now)));
    assert_eq!(
        store.take_login_state("a", now + 1).await.expect("take"),
        None
    );

    store
        .create_login_state(&login_state("b", now))
        .await
        .expect("create");
    assert_eq!(
        store.take_login_state("b", now + 600).await.expect("take"),
        None,
        "expired"
    );
    // Expired states are swept by the next creation; none of this reaches the feed.
    store
        .create_login_state(&login_state("c", now))
        .await
        .expect("create");
    store
        .create_login_state(&login_state("d", now + 10_000))
        .await
        .expect("create");
    assert_eq!(
        store.take_login_state("c", now + 1).await.expect("take"),
        None
    );
    assert!(
        store
            .changes_since(0, 100)
            .await
            .expect("changes")
            .is_empty()
    );
}

async fn sessions_round_trip_touch_and_end(t: TestStore) {
    let store = &t.store;
    let now = 1_700_000_000;
    let s = session("h1", "alice", Some("sid-1"), now);
    store.create_session(&s).await.expect("create");
    assert!(store.create_session(&s).await.is_err(), "duplicate hash");
    assert_eq!(store.get_session("h1").await.expect("get"), Some(s.clone()));
    assert_eq!(store.get_session("nope").await.expect("get"), None);

    assert!(
        store
            .touch_session("h1", now + 5, now + 3605)
            .await
            .expect("touch")
    );
    let touched = store.get_session("h1").await.expect("get").expect("row");
    assert_eq!(touched.last_seen_at, now + 5);
    assert_eq!(touched.idle_expires_at, now + 3605);
    // Touches never go backwards (a slow replica) and stay out of the feed.
    store
        .touch_session("h1", now + 1, now + 3601)
        .await
        .expect("touch");
    let touched = store.get_session("h1").await.expect("get").expect("row");
    assert_eq!(touched.last_seen_at, now + 5);
    assert!(session_changes(store).await.is_empty());

    assert!(
        store
            .end_session("h1", now + 6, "logout")
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_session("h1", now + 7, "logout")
            .await
            .expect("end")
    );
    let ended = store.get_session("h1").await.expect("get").expect("row");
    assert_eq!(ended.ended_at, Some(now + 6));
    assert_eq!(ended.end_reason.as_deref(), Some("logout"));
    assert!(
        !store
            .touch_session("h1", now + 8, now + 9000)
            .await
            .expect("touch")
    );
    assert_eq!(session_changes(store).await, vec!["h1".to_string()]);
}

async fn ending_by_user_and_by_idp_session(t: TestStore) {
    let store = &t.store;
    let now = 1_700_000_000;
    for (id, user, sid) in [
        ("a1", "alice", Some("s-a")),
        ("a2", "alice", Some("s-b")),
        ("b1", "bob", Some("s-c")),
        ("b2", "bob", None),
    ] {
        store
            .create_session(&session(id, user, sid, now))
            .await
            .expect("create");
    }
    let mut ended = store
        .end_sessions_for_user("alice", now, "revoked")
        .await
        .expect("end");
    ended.sort();
    assert_eq!(ended, vec!["a1", "a2"]);
    assert!(
        store
            .end_sessions_for_user("alice", now, "revoked")
            .await
            .expect("end")
            .is_empty()
    );

    let iss = "https://idp.example.com";
    assert!(
        store
            .end_idp_sessions(iss, None, None, now, "x")
            .await
            .expect("end")
            .is_empty()
    );
    assert!(
        store
            .end_idp_sessions("https://other", Some("s-c"), None, now, "x")
            .await
            .expect("end")
            .is_empty(),
        "another issuer's sid"
    );
    assert!(
        store
            .end_idp_sessions(iss, Some("s-c"), Some("alice"), now, "x")
            .await
            .expect("end")
            .is_empty(),
        "sid and sub must both match"
    );
    assert_eq!(
        store
            .end_idp_sessions(iss, Some("s-c"), Some("bob"), now, "backchannel_logout")
            .await
            .expect("end"),
        vec!["b1"]
    );
    assert_eq!(
        store
            .end_idp_sessions(iss, None, Some("bob"), now, "backchannel_logout")
            .await
            .expect("end"),
        vec!["b2"]
    );
    assert_eq!(session_changes(store).await.len(), 4);
}

async fn refresh_lease_and_claims(t: TestStore) {
    let store = &t.store;
    let now = 1_700_000_000;
    store
        .create_session(&session("h", "alice", None, now))
        .await
        .expect("create");
    assert!(
        store
            .acquire_refresh_lease("h", now, now + 30)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .acquire_refresh_lease("h", now + 1, now + 31)
            .await
            .expect("lease")
    );
    let claims = RefreshedClaims {
        email: Some("new@example.com".into()),
        groups: vec!["g2".into(), "g3".into()],
        attributes: BTreeMap::new(),
        id_token: None,
        refresh_token: Some("rt-2".into()),
        refreshed_at: now + 2,
    };
    assert!(
        store
            .update_session_claims("h", &claims)
            .await
            .expect("update")
    );
    let s = store.get_session("h").await.expect("get").expect("row");
    assert_eq!(s.groups, vec!["g2", "g3"]);
    assert_eq!(s.email.as_deref(), Some("new@example.com"));
    assert_eq!(
        s.id_token.as_deref(),
        Some("id.token.x"),
        "kept when none came"
    );
    assert_eq!(s.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(s.claims_refreshed_at, now + 2);
    // The lease was released.
    assert!(
        store
            .acquire_refresh_lease("h", now + 3, now + 33)
            .await
            .expect("lease")
    );
    assert_eq!(session_changes(store).await, vec!["h".to_string()]);
    store
        .end_session("h", now + 4, "logout")
        .await
        .expect("end");
    assert!(
        !store
            .acquire_refresh_lease("h", now + 100, now + 130)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .update_session_claims("h", &claims)
            .await
            .expect("update")
    );
}

async fn listing_shows_active_sessions_and_old_ones_are_swept(t: TestStore) {
    let store = &t.store;
    let now = 1_700_000_000;
    let mut idle = session("idle", "alice", None, now - 100);
    idle.idle_expires_at = now - 1;
    store.create_session(&idle).await.expect("create");
    store
        .create_session(&session("live", "alice", None, now))
        .await
        .expect("create");
    store
        .create_session(&session("bob", "bob", None, now + 1))
        .await
        .expect("create");
    let all: Vec<String> = store
        .list_sessions(None, now)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id_sha256)
        .collect();
    assert_eq!(all, vec!["bob", "live"]);
    let alice = store.list_sessions(Some("alice"), now).await.expect("list");
    assert_eq!(alice.len(), 1);

    // A week later, a new session sweeps the long-expired one.
    store
        .create_session(&session(
            "later",
            "carol",
            None,
            now + ENDED_SESSION_RETENTION_SECS + 10,
        ))
        .await
        .expect("create");
    assert_eq!(store.get_session("idle").await.expect("get"), None);
    assert!(store.get_session("live").await.expect("get").is_some());
}

store_tests!(
    login_states_are_single_use_and_expire,
    sessions_round_trip_touch_and_end,
    ending_by_user_and_by_idp_session,
    refresh_lease_and_claims,
    listing_shows_active_sessions_and_old_ones_are_swept
);
