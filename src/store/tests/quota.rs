//! Quota counters: limits, all-or-nothing consumption, races through two handles.

use super::TestStore;
use crate::store::*;

fn counter(scope: &str, limit: u64, amount: u64) -> QuotaCounter {
    QuotaCounter {
        scope: scope.into(),
        unit: QuotaUnit::Images,
        period: QuotaPeriod::Day,
        window_start: 1_000,
        window_end: 87_400,
        limit,
        amount,
    }
}

async fn consumes_up_to_the_limit_and_not_beyond(t: TestStore) {
    let store = &t.store;
    let c = counter("user:alice", 10, 4);
    assert_eq!(
        store
            .consume_quota(std::slice::from_ref(&c))
            .await
            .expect("1"),
        QuotaOutcome::Consumed { used: vec![4] }
    );
    assert_eq!(
        store
            .consume_quota(std::slice::from_ref(&c))
            .await
            .expect("2"),
        QuotaOutcome::Consumed { used: vec![8] }
    );
    assert_eq!(
        store
            .consume_quota(std::slice::from_ref(&c))
            .await
            .expect("3"),
        QuotaOutcome::Exceeded {
            exceeded: vec![(0, 8)]
        }
    );
    assert_eq!(store.quota_used(&c).await.expect("used"), 8);
    let two = QuotaCounter {
        amount: 2,
        ..c.clone()
    };
    assert_eq!(
        store.consume_quota(&[two]).await.expect("exact fit"),
        QuotaOutcome::Consumed { used: vec![10] }
    );
}

async fn a_new_counter_is_not_created_over_its_limit(t: TestStore) {
    let store = &t.store;
    let c = counter("user:bob", 3, 5);
    assert_eq!(
        store
            .consume_quota(std::slice::from_ref(&c))
            .await
            .expect("over"),
        QuotaOutcome::Exceeded {
            exceeded: vec![(0, 0)]
        }
    );
    assert_eq!(store.quota_used(&c).await.expect("used"), 0);
    let zero = counter("user:carol", 0, 1);
    assert!(matches!(
        store.consume_quota(&[zero]).await.expect("zero limit"),
        QuotaOutcome::Exceeded { .. }
    ));
}

async fn consumption_is_all_or_nothing_across_counters(t: TestStore) {
    let store = &t.store;
    let user = counter("user:alice", 100, 3);
    let key = counter("key:k1", 5, 3);
    let month = QuotaCounter {
        period: QuotaPeriod::Month,
        ..counter("user:alice", 1_000, 3)
    };
    let all = [user.clone(), key.clone(), month.clone()];
    assert_eq!(
        store.consume_quota(&all).await.expect("first"),
        QuotaOutcome::Consumed {
            used: vec![3, 3, 3]
        }
    );
    // The key's limit fails: neither the user's daily nor monthly counter moves.
    assert_eq!(
        store.consume_quota(&all).await.expect("second"),
        QuotaOutcome::Exceeded {
            exceeded: vec![(1, 3)]
        }
    );
    assert_eq!(store.quota_used(&user).await.expect("user"), 3);
    assert_eq!(store.quota_used(&key).await.expect("key"), 3);
    assert_eq!(store.quota_used(&month).await.expect("month"), 3);
    // Every failing counter is reported.
    let tight = [
        QuotaCounter {
            limit: 4,
            ..user.clone()
        },
        key.clone(),
    ];
    assert_eq!(
        store.consume_quota(&tight).await.expect("third"),
        QuotaOutcome::Exceeded {
            exceeded: vec![(0, 3), (1, 3)]
        }
    );
}

async fn windows_units_and_scopes_are_separate_counters(t: TestStore) {
    let store = &t.store;
    let today = counter("user:alice", 5, 5);
    store
        .consume_quota(std::slice::from_ref(&today))
        .await
        .expect("today");
    let tomorrow = QuotaCounter {
        window_start: today.window_end,
        window_end: today.window_end + 86_400,
        ..today.clone()
    };
    let tokens = QuotaCounter {
        unit: QuotaUnit::Tokens,
        ..today.clone()
    };
    let other = counter("user:bob", 5, 5);
    for c in [tomorrow, tokens, other] {
        assert_eq!(
            store.consume_quota(&[c]).await.expect("fresh"),
            QuotaOutcome::Consumed { used: vec![5] }
        );
    }
    assert_eq!(
        store.consume_quota(&[]).await.expect("empty"),
        QuotaOutcome::Consumed { used: vec![] }
    );
}

async fn counters_stay_out_of_the_change_feed_and_can_be_pruned(t: TestStore) {
    let store = &t.store;
    let before = store.latest_change().await.expect("latest");
    store
        .consume_quota(&[counter("user:alice", 5, 1)])
        .await
        .expect("consume");
    assert_eq!(store.latest_change().await.expect("latest"), before);
    assert_eq!(store.prune_quota_counters(87_400).await.expect("keep"), 0);
    assert_eq!(store.prune_quota_counters(87_401).await.expect("prune"), 1);
}

async fn fifty_racing_requests_through_two_handles_get_exactly_the_remaining_ten(t: TestStore) {
    let a = t.store.clone();
    let b = t.reopen().await;
    // 40 of 50 already used: 10 remain.
    let c = counter("user:alice", 50, 40);
    a.consume_quota(std::slice::from_ref(&c))
        .await
        .expect("prefill");
    let one = QuotaCounter { amount: 1, ..c };
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let counters = [one.clone(), counter("key:k1", 1_000, 1)];
        tasks.push(tokio::spawn(
            async move { store.consume_quota(&counters).await },
        ));
    }
    let mut consumed = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("join").expect("no store error") {
            QuotaOutcome::Consumed { .. } => consumed += 1,
            QuotaOutcome::Exceeded { .. } => refused += 1,
        }
    }
    assert_eq!((consumed, refused), (10, 40));
    assert_eq!(b.quota_used(&one).await.expect("used"), 50);
    // The refused 40 cost the key nothing either.
    assert_eq!(
        a.quota_used(&counter("key:k1", 1_000, 1))
            .await
            .expect("key"),
        10
    );
}

store_tests!(
    consumes_up_to_the_limit_and_not_beyond,
    a_new_counter_is_not_created_over_its_limit,
    consumption_is_all_or_nothing_across_counters,
    windows_units_and_scopes_are_separate_counters,
    counters_stay_out_of_the_change_feed_and_can_be_pruned,
    fifty_racing_requests_through_two_handles_get_exactly_the_remaining_ten
);
