//! Prompt templates proposed, approved and retired at run time.

use super::TestStore;
use crate::store::*;

async fn lifecycle_and_change_feed(t: TestStore) {
    let store = &t.store;
    let added = store
        .add_template("shot", "a photo of {subject}", 4, "ann", 100)
        .await
        .expect("add");
    assert_eq!(added.status, TemplateStatus::Proposed);
    assert_eq!(
        store.get_template("shot").await.expect("get"),
        Some(added.clone())
    );
    assert!(
        store
            .approved_templates()
            .await
            .expect("approved")
            .is_empty()
    );
    let err = store
        .add_template("shot", "other {x}", 6, "bob", 101)
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    let TemplateOutcome::Changed(approved) = store
        .approve_template("shot", "bob", 110)
        .await
        .expect("approve")
    else {
        panic!("not approved");
    };
    assert_eq!(approved.status, TemplateStatus::Approved);
    assert_eq!(approved.approved_by.as_deref(), Some("bob"));
    assert_eq!(approved.approved_at, Some(110));
    assert_eq!(
        store.approved_templates().await.expect("approved"),
        vec![approved.clone()]
    );
    // Approving twice is refused and changes nothing.
    assert_eq!(
        store
            .approve_template("shot", "carl", 111)
            .await
            .expect("again"),
        TemplateOutcome::Refused(approved.clone())
    );
    assert_eq!(
        store
            .approve_template("nope", "bob", 111)
            .await
            .expect("unknown"),
        TemplateOutcome::NotFound
    );

    let TemplateOutcome::Changed(retired) = store
        .retire_template("shot", "ann", 120)
        .await
        .expect("retire")
    else {
        panic!("not retired");
    };
    assert_eq!(retired.status, TemplateStatus::Retired);
    assert_eq!(retired.retired_by.as_deref(), Some("ann"));
    assert!(
        store
            .approved_templates()
            .await
            .expect("approved")
            .is_empty()
    );
    assert!(matches!(
        store
            .retire_template("shot", "ann", 121)
            .await
            .expect("again"),
        TemplateOutcome::Refused(_)
    ));
    assert!(matches!(
        store
            .approve_template("shot", "bob", 121)
            .await
            .expect("approve retired"),
        TemplateOutcome::Refused(_)
    ));

    let feed = store.changes_since(0, 100).await.expect("feed");
    let entries: Vec<(&str, &str)> = feed
        .iter()
        .map(|c| (c.entity.as_str(), c.id.as_str()))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("template", "shot"),
            ("template", "shot"),
            ("template", "shot")
        ]
    );
}

async fn list_filters_by_status_and_a_proposal_can_be_withdrawn(t: TestStore) {
    let store = &t.store;
    for name in ["b", "a", "c"] {
        store
            .add_template(name, "x {y}", 6, "ann", 1)
            .await
            .expect("add");
    }
    store
        .approve_template("a", "bob", 2)
        .await
        .expect("approve");
    store
        .retire_template("c", "ann", 3)
        .await
        .expect("withdraw");
    let names = |v: Vec<TemplateRecord>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_templates(None).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(
            store
                .list_templates(Some(TemplateStatus::Proposed))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            store
                .list_templates(Some(TemplateStatus::Approved))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            store
                .list_templates(Some(TemplateStatus::Retired))
                .await
                .unwrap()
        ),
        ["c"]
    );
}

store_tests!(
    lifecycle_and_change_feed,
    list_filters_by_status_and_a_proposal_can_be_withdrawn
);
