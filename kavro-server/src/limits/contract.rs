//! One behavioural test of [`Counters`], run against every backend (memory
//! always, Redis when `KAVRO_TEST_REDIS_URL` is set). Time comes from the
//! arguments, so nothing sleeps.

use std::time::Duration;

use chrono::Utc;

use kavro_proto::UserId;

use super::{Counters, Decision, TokenState};
use crate::config::{Lockout, Window};
use crate::store::TokenGeneration;

pub async fn run(counters: &dyn Counters, tag: &str) {
    let t0 = Utc::now();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let window = Window {
        max: 3,
        per: Duration::from_secs(60),
    };
    let key = format!("rl:test:{tag}");

    // Three hits pass, the fourth waits for the oldest to leave the window.
    for s in 0..3 {
        assert_eq!(
            counters.hit(&key, window, at(s)).await.unwrap(),
            Decision::Allowed
        );
    }
    match counters.hit(&key, window, at(10)).await.unwrap() {
        Decision::Limited { retry_after } => assert_eq!(retry_after, Duration::from_secs(50)),
        Decision::Allowed => panic!("4th hit in the window must be refused"),
    }
    // Refused hits are not recorded: after the first leaves, one more passes.
    // The window is (now - 60 s, now]: at 60 s the hit at 0 s has left.
    assert_eq!(
        counters.hit(&key, window, at(60)).await.unwrap(),
        Decision::Allowed
    );
    assert!(matches!(
        counters.hit(&key, window, at(60)).await.unwrap(),
        Decision::Limited { .. }
    ));
    // Other keys are independent.
    assert_eq!(
        counters
            .hit(&format!("{key}:other"), window, at(61))
            .await
            .unwrap(),
        Decision::Allowed
    );

    // Lockout: 3 failures within the window lock for 5 minutes.
    let policy = Lockout {
        failures: 3,
        window: Duration::from_secs(300),
        duration: Duration::from_secs(300),
        max_duration: Duration::from_secs(1000),
    };
    let who = format!("user-{tag}");
    assert_eq!(counters.lock_remaining(&who, at(0)).await.unwrap(), None);
    assert_eq!(
        counters.record_failure(&who, &policy, at(0)).await.unwrap(),
        None
    );
    assert_eq!(
        counters.record_failure(&who, &policy, at(1)).await.unwrap(),
        None
    );
    // A success in between resets the count.
    counters.clear_failures(&who).await.unwrap();
    assert_eq!(
        counters.record_failure(&who, &policy, at(2)).await.unwrap(),
        None
    );
    assert_eq!(
        counters.record_failure(&who, &policy, at(3)).await.unwrap(),
        None
    );
    assert_eq!(
        counters.record_failure(&who, &policy, at(4)).await.unwrap(),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        counters.lock_remaining(&who, at(100)).await.unwrap(),
        Some(Duration::from_secs(204))
    );
    assert_eq!(
        counters
            .lock_remaining(&format!("{who}-2"), at(100))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        counters.lock_remaining(&who, at(304)).await.unwrap(),
        None,
        "lock lifts"
    );
    // Back-off: the next lock of the same subject lasts twice as long, the
    // one after is capped; an unrelated subject starts at the base.
    for s in 310..312 {
        assert_eq!(
            counters.record_failure(&who, &policy, at(s)).await.unwrap(),
            None
        );
    }
    assert_eq!(
        counters
            .record_failure(&who, &policy, at(312))
            .await
            .unwrap(),
        Some(Duration::from_secs(600)),
        "second lock doubles"
    );
    assert_eq!(
        counters.lock_remaining(&who, at(912)).await.unwrap(),
        None,
        "the doubled lock lifts after 600 s"
    );
    for s in 920..922 {
        counters.record_failure(&who, &policy, at(s)).await.unwrap();
    }
    assert_eq!(
        counters
            .record_failure(&who, &policy, at(922))
            .await
            .unwrap(),
        Some(Duration::from_secs(1000)),
        "capped at max_duration"
    );
    // A success forgets the strikes: the next lock is the base again.
    counters.clear_failures(&who).await.unwrap();
    for s in 2000..2002 {
        counters.record_failure(&who, &policy, at(s)).await.unwrap();
    }
    assert_eq!(
        counters
            .record_failure(&who, &policy, at(2002))
            .await
            .unwrap(),
        Some(Duration::from_secs(300))
    );
    // So does staying unlocked for max_duration after a lock ends.
    let quiet = format!("quiet-{tag}");
    for s in 0..3 {
        counters
            .record_failure(&quiet, &policy, at(s))
            .await
            .unwrap();
    }
    for s in 1400..1402 {
        counters
            .record_failure(&quiet, &policy, at(s))
            .await
            .unwrap();
    }
    assert_eq!(
        counters
            .record_failure(&quiet, &policy, at(1402))
            .await
            .unwrap(),
        Some(Duration::from_secs(300)),
        "forgotten 1000 s after the first lock ended"
    );

    // Failures spread wider than the window do not lock.
    let slow = format!("slow-{tag}");
    for s in [0, 200, 400, 600] {
        assert_eq!(
            counters
                .record_failure(&slow, &policy, at(s))
                .await
                .unwrap(),
            None
        );
    }

    // Revocation.
    let jti = format!("jti-{tag}");
    assert!(!counters.is_revoked(&jti, at(0)).await.unwrap());
    counters.revoke(&jti, at(3600), at(0)).await.unwrap();
    assert!(counters.is_revoked(&jti, at(1)).await.unwrap());
    assert!(
        !counters
            .is_revoked(&format!("{jti}x"), at(1))
            .await
            .unwrap()
    );
    // Generations: tokens below the stored one are refused, per account,
    // until the stored deadline; a lower generation never replaces a higher.
    let user = UserId(i64::from(rand::random::<u32>()));
    let other = UserId(user.0 + 1);
    assert_eq!(
        counters.token_state(&jti, user, at(1)).await.unwrap(),
        TokenState {
            revoked: true,
            min_generation: TokenGeneration(0)
        }
    );
    counters
        .revoke_generation(user, TokenGeneration(2), at(3600), at(0))
        .await
        .unwrap();
    counters
        .revoke_generation(user, TokenGeneration(1), at(7200), at(0))
        .await
        .unwrap();
    let state = counters.token_state("fresh", user, at(1)).await.unwrap();
    assert_eq!(
        state,
        TokenState {
            revoked: false,
            min_generation: TokenGeneration(2)
        }
    );
    assert_eq!(
        counters
            .token_state("fresh", other, at(1))
            .await
            .unwrap()
            .min_generation,
        TokenGeneration(0),
        "other accounts unaffected"
    );
    counters.ping().await.unwrap();
}
