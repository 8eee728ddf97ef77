//! SCIM provisioning: users linked to store users, groups and memberships feeding role resolution.

use std::collections::BTreeMap;

use super::TestStore;
use crate::store::*;

fn user(name: &str, disabled: bool) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        role: None,
        attributes: BTreeMap::new(),
        disabled,
        password_hash: None,
        created_at: 1,
    }
}

fn scim_user(id: &str, name: &str) -> ScimUserRecord {
    ScimUserRecord {
        scim_id: id.into(),
        username: name.into(),
        external_id: Some(format!("ext-{id}")),
        display_name: Some(format!("{name} display")),
        given_name: Some("Given".into()),
        family_name: Some("Family".into()),
        email: Some(format!("{name}@example.com")),
        active: true,
        created_at: 10,
        updated_at: 10,
    }
}

fn group(id: &str, name: &str, members: &[&str]) -> ScimGroupRecord {
    ScimGroupRecord {
        scim_id: id.into(),
        display_name: name.into(),
        external_id: None,
        members: members.iter().map(|m| m.to_string()).collect(),
        created_at: 20,
        updated_at: 20,
    }
}

async fn changed_users(store: &DynStore, after: i64) -> Vec<String> {
    let mut ids: Vec<String> = store
        .changes_since(after, 100)
        .await
        .expect("changes")
        .into_iter()
        .filter(|c| c.entity == "user")
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn users_are_created_adopted_read_and_updated(t: TestStore) {
    let store = &t.store;
    store
        .scim_create_user(&scim_user("u1", "alice"), &user("alice", false))
        .await
        .expect("create");
    // An existing CLI user is adopted (not duplicated); its disabled flag follows SCIM.
    store.create_user(&user("bob", false)).await.expect("bob");
    store
        .scim_create_user(&scim_user("u2", "bob"), &user("bob", true))
        .await
        .expect("adopt");
    assert!(store.get_user("bob").await.unwrap().unwrap().disabled);
    assert!(matches!(
        store
            .scim_create_user(&scim_user("u3", "alice"), &user("alice", false))
            .await,
        Err(StoreError::Conflict(_))
    ));

    let alice = store
        .scim_get_user("u1")
        .await
        .expect("get")
        .expect("alice");
    assert_eq!(alice, scim_user("u1", "alice"));
    let bob = store
        .scim_get_user_by_username("bob")
        .await
        .expect("get")
        .expect("bob");
    assert!(!bob.active);
    assert!(store.scim_get_user("nope").await.expect("get").is_none());
    let all: Vec<String> = store
        .scim_list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(all, vec!["alice", "bob"]);

    let before = store.latest_change().await.expect("seq");
    let mut changed = alice.clone();
    changed.email = Some("new@example.com".into());
    changed.family_name = None;
    changed.updated_at = 99;
    store.scim_update_user(&changed).await.expect("update");
    assert_eq!(store.scim_get_user("u1").await.unwrap().unwrap(), changed);
    assert_eq!(
        store
            .get_user("alice")
            .await
            .unwrap()
            .unwrap()
            .email
            .as_deref(),
        Some("new@example.com")
    );
    assert_eq!(changed_users(store, before).await, vec!["alice"]);
    let mut missing = changed.clone();
    missing.scim_id = "missing".into();
    assert!(matches!(
        store.scim_update_user(&missing).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn groups_and_memberships_feed_role_resolution(t: TestStore) {
    let store = &t.store;
    for (id, name) in [("u1", "alice"), ("u2", "bob"), ("u3", "carol")] {
        store
            .scim_create_user(&scim_user(id, name), &user(name, false))
            .await
            .expect("user");
    }
    let before = store.latest_change().await.expect("seq");
    store
        .scim_create_group(&group("g1", "designers", &["u1", "u2"]))
        .await
        .expect("group");
    assert_eq!(changed_users(store, before).await, vec!["alice", "bob"]);
    assert!(matches!(
        store
            .scim_create_group(&group("g2", "designers", &[]))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .scim_create_group(&group("g3", "admins", &["ghost"]))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.scim_get_group("g3").await.expect("get").is_none());
    store
        .scim_create_group(&group("g4", "admins", &["u1"]))
        .await
        .expect("admins");
    assert_eq!(
        store.scim_groups_for_user("alice").await.expect("groups"),
        vec!["admins", "designers"]
    );

    let before = store.latest_change().await.expect("seq");
    let after = store
        .scim_modify_group(
            "g1",
            &ScimGroupChange {
                add_members: vec!["u3".into()],
                remove_members: vec!["u1".into()],
                ..Default::default()
            },
            50,
        )
        .await
        .expect("modify");
    assert_eq!(after.members, vec!["u2", "u3"]);
    assert_eq!(after.updated_at, 50);
    assert_eq!(changed_users(store, before).await, vec!["alice", "carol"]);
    assert_eq!(
        store.scim_groups_for_user("alice").await.expect("groups"),
        vec!["admins"]
    );

    // A failing change (unknown member) changes nothing.
    assert!(matches!(
        store
            .scim_modify_group(
                "g1",
                &ScimGroupChange {
                    replace_members: Some(vec![]),
                    add_members: vec!["ghost".into()],
                    ..Default::default()
                },
                60,
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.scim_get_group("g1").await.unwrap().unwrap().members,
        vec!["u2", "u3"]
    );

    let before = store.latest_change().await.expect("seq");
    let renamed = store
        .scim_modify_group(
            "g1",
            &ScimGroupChange {
                display_name: Some("artists".into()),
                external_id: Some(Some("okta-1".into())),
                replace_members: Some(vec!["u3".into()]),
                ..Default::default()
            },
            70,
        )
        .await
        .expect("rename");
    assert_eq!(renamed.display_name, "artists");
    assert_eq!(renamed.external_id.as_deref(), Some("okta-1"));
    assert_eq!(changed_users(store, before).await, vec!["bob", "carol"]);
    assert!(matches!(
        store
            .scim_modify_group(
                "g1",
                &ScimGroupChange {
                    display_name: Some("admins".into()),
                    ..Default::default()
                },
                80,
            )
            .await,
        Err(StoreError::Conflict(_))
    ));

    let names: Vec<String> = store
        .scim_list_groups()
        .await
        .expect("list")
        .into_iter()
        .map(|g| format!("{}:{}", g.display_name, g.members.join(",")))
        .collect();
    assert_eq!(names, vec!["admins:u1", "artists:u3"]);

    let before = store.latest_change().await.expect("seq");
    store.scim_delete_group("g1").await.expect("delete");
    assert_eq!(changed_users(store, before).await, vec!["carol"]);
    assert!(
        store
            .scim_groups_for_user("carol")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.scim_delete_group("g1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .scim_modify_group("g1", &ScimGroupChange::default(), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

store_tests!(
    users_are_created_adopted_read_and_updated,
    groups_and_memberships_feed_role_resolution
);
