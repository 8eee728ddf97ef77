//! Approvals: creation and reuse, decisions, single redemption.

use super::TestStore;
use crate::domain::PrincipalKind;
use crate::store::*;

fn approval(id: &str, subject: &str, fingerprint: &str, created_at: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        principal_kind: PrincipalKind::User,
        subject: subject.into(),
        fingerprint: fingerprint.into(),
        summary: r#"{"path":"/v1/generation/text-to-image"}"#.into(),
        rule: Some("cost_control".into()),
        status: ApprovalStatus::Pending,
        created_at,
        expires_at: created_at + 86_400,
        decided_at: None,
        decided_by: None,
        used_at: None,
    }
}

async fn create_reuse_get_and_list(t: TestStore) {
    let store = &t.store;
    let a = approval("ap_a", "alice", "f1", 100);
    assert_eq!(store.create_or_reuse_approval(&a, 100).await.expect("a"), a);
    // The same principal and fingerprint while pending: the first one comes back.
    let again = approval("ap_b", "alice", "f1", 200);
    assert_eq!(
        store
            .create_or_reuse_approval(&again, 200)
            .await
            .expect("reuse")
            .id,
        "ap_a"
    );
    // Another fingerprint or another principal: a new one.
    for (id, subject, fp) in [("ap_c", "alice", "f2"), ("ap_d", "bob", "f1")] {
        let new = approval(id, subject, fp, 300);
        assert_eq!(
            store
                .create_or_reuse_approval(&new, 300)
                .await
                .expect("new")
                .id,
            id
        );
    }
    assert_eq!(store.get_approval("ap_a").await.expect("get"), Some(a));
    assert_eq!(store.get_approval("ap_b").await.expect("get"), None);
    let all = store.list_approvals(None).await.expect("list");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["ap_c", "ap_d", "ap_a"]
    );
    assert_eq!(
        store
            .list_approvals(Some(ApprovalStatus::Approved))
            .await
            .expect("list")
            .len(),
        0
    );
}

async fn an_expired_pending_approval_is_not_reused(t: TestStore) {
    let store = &t.store;
    let a = approval("ap_a", "alice", "f1", 100);
    store.create_or_reuse_approval(&a, 100).await.expect("a");
    let later = approval("ap_b", "alice", "f1", a.expires_at);
    assert_eq!(
        store
            .create_or_reuse_approval(&later, a.expires_at)
            .await
            .expect("new")
            .id,
        "ap_b"
    );
}

async fn decisions_follow_the_lifecycle_and_feed_the_change_log(t: TestStore) {
    let store = &t.store;
    store
        .create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
        .await
        .expect("a");
    store
        .create_or_reuse_approval(&approval("ap_b", "alice", "f2", 100), 100)
        .await
        .expect("b");
    let before = store.latest_change().await.expect("latest");
    let DecideOutcome::Decided(a) = store
        .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 150)
        .await
        .expect("approve")
    else {
        panic!("not decided");
    };
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(
        (a.decided_at, a.decided_by.as_deref()),
        (Some(150), Some("carol"))
    );
    assert_eq!(
        store.get_approval("ap_a").await.expect("get"),
        Some(a.clone())
    );
    let changes = store.changes_since(before, 10).await.expect("changes");
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.entity.as_str(), c.id.as_str()))
            .collect::<Vec<_>>(),
        [("approval", "ap_a")]
    );
    // Approving twice is refused; rejecting an approved (unused) one revokes it.
    assert!(matches!(
        store
            .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 160)
            .await
            .expect("again"),
        DecideOutcome::Refused(r) if r.status == ApprovalStatus::Approved
    ));
    assert!(matches!(
        store
            .decide_approval("ap_a", ApprovalDecision::Reject, "dave", 170)
            .await
            .expect("reject"),
        DecideOutcome::Decided(r) if r.status == ApprovalStatus::Rejected
    ));
    assert!(matches!(
        store
            .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 180)
            .await
            .expect("after reject"),
        DecideOutcome::Refused(r) if r.status == ApprovalStatus::Rejected
    ));
    // Expired while pending: no decision.
    assert!(matches!(
        store
            .decide_approval("ap_b", ApprovalDecision::Approve, "carol", 100 + 86_400)
            .await
            .expect("expired"),
        DecideOutcome::Refused(r) if r.is_expired(100 + 86_400)
    ));
    assert_eq!(
        store
            .decide_approval("ap_zz", ApprovalDecision::Reject, "carol", 100)
            .await
            .expect("unknown"),
        DecideOutcome::NotFound
    );
}

async fn redeeming_spends_once_for_the_right_principal_and_fingerprint(t: TestStore) {
    let store = &t.store;
    store
        .create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
        .await
        .expect("a");
    let redeem = |subject: &'static str, fp: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .redeem_approval("ap_a", PrincipalKind::User, subject, fp, now)
                .await
                .expect("redeem")
        }
    };
    // Pending: refused.
    assert!(
        matches!(redeem("alice", "f1", 110).await, RedeemOutcome::Refused(r) if r.status == ApprovalStatus::Pending)
    );
    store
        .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 120)
        .await
        .expect("approve");
    assert!(matches!(
        redeem("bob", "f1", 130).await,
        RedeemOutcome::Refused(_)
    ));
    assert!(matches!(
        redeem("alice", "f2", 130).await,
        RedeemOutcome::Refused(_)
    ));
    assert!(matches!(
        store
            .redeem_approval("ap_a", PrincipalKind::ServiceAccount, "alice", "f1", 130)
            .await
            .expect("kind"),
        RedeemOutcome::Refused(_)
    ));
    let RedeemOutcome::Redeemed(r) = redeem("alice", "f1", 140).await else {
        panic!("not redeemed");
    };
    assert_eq!((r.status, r.used_at), (ApprovalStatus::Used, Some(140)));
    assert!(
        matches!(redeem("alice", "f1", 150).await, RedeemOutcome::Refused(r) if r.status == ApprovalStatus::Used)
    );
    // Released after a later refusal, it can be redeemed again (once).
    assert!(store.release_approval("ap_a").await.expect("release"));
    assert!(!store.release_approval("ap_a").await.expect("not used"));
    assert!(matches!(
        redeem("alice", "f1", 160).await,
        RedeemOutcome::Redeemed(_)
    ));
    assert_eq!(
        store
            .redeem_approval("ap_nope", PrincipalKind::User, "alice", "f1", 160)
            .await
            .expect("unknown"),
        RedeemOutcome::NotFound
    );
}

async fn an_approved_approval_expires_unredeemed(t: TestStore) {
    let store = &t.store;
    let a = approval("ap_a", "alice", "f1", 100);
    store.create_or_reuse_approval(&a, 100).await.expect("a");
    store
        .decide_approval("ap_a", ApprovalDecision::Approve, "carol", 120)
        .await
        .expect("approve");
    assert!(matches!(
        store
            .redeem_approval("ap_a", PrincipalKind::User, "alice", "f1", a.expires_at)
            .await
            .expect("late"),
        RedeemOutcome::Refused(r) if r.is_expired(a.expires_at)
    ));
}

async fn racing_redemptions_spend_an_approval_once(t: TestStore) {
    let a = t.store.clone();
    let b = t.reopen().await;
    a.create_or_reuse_approval(&approval("ap_a", "alice", "f1", 100), 100)
        .await
        .expect("create");
    a.decide_approval("ap_a", ApprovalDecision::Approve, "carol", 110)
        .await
        .expect("approve");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .redeem_approval("ap_a", PrincipalKind::User, "alice", "f1", 120)
                .await
        }));
    }
    let mut redeemed = 0;
    for t in tasks {
        if let RedeemOutcome::Redeemed(_) = t.await.expect("join").expect("redeem") {
            redeemed += 1;
        }
    }
    assert_eq!(redeemed, 1);
}

store_tests!(
    create_reuse_get_and_list,
    an_expired_pending_approval_is_not_reused,
    decisions_follow_the_lifecycle_and_feed_the_change_log,
    redeeming_spends_once_for_the_right_principal_and_fingerprint,
    an_approved_approval_expires_unredeemed,
    racing_redemptions_spend_an_approval_once
);
