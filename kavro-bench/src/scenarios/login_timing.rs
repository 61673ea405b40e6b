//! `login-timing`: does the time of a failed login reveal whether the account
//! exists? N logins of existing accounts with a wrong password and N logins
//! of unknown (but valid) usernames, one request at a time, interleaved in
//! pairs whose order is a coin flip, so drift in the machine's load falls on
//! both sides alike. Prints both latency distributions and their difference,
//! with a bootstrap confidence interval for the difference of the medians.
//!
//! The relay locks an account after `lockout.failures` failed logins (5 by
//! default) and a locked account answers `429` at once, without the Argon2
//! work: that would be a timing difference of our own making. So each existing
//! account takes at most `--per-account` wrong passwords (4 by default, below
//! the lockout) and every unknown name is used once.

use std::time::Instant;

use bytes::Bytes;
use kavro_proto::api::Credentials;
use rand::Rng as _;
use serde_json::json;

use crate::client::{exchange, json_body};
use crate::scenarios::Ctx;
use crate::scenarios::Outcome;
use crate::stats::{Failure, Recorder, micros};

pub const EXISTING: &str = "login: existing user, wrong password";
pub const UNKNOWN: &str = "login: unknown user";
const OPS: [&str; 2] = [EXISTING, UNKNOWN];

/// A valid password that no benchmark account has.
const WRONG_PASSWORD: &str = "Wrong-pass-2026";
/// Resamples for the confidence interval.
const BOOTSTRAP_ROUNDS: usize = 2000;

/// The existing account used by the `j`-th pair.
pub fn account_for(j: usize, per_account: usize) -> usize {
    j / per_account.max(1)
}

/// The unknown username of the `j`-th pair of run `tag`: valid, so the relay
/// looks it up like a real one, and never used twice (never locked).
pub fn unknown_name(tag: &str, j: usize) -> String {
    format!("nobody_{tag}_{j}")
}

/// The `q`-quantile of sorted values (nearest rank); 0 for none.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(values: &[u64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<u64>() as f64 / values.len() as f64
    }
}

/// A 95 % bootstrap interval for `median(a) - median(b)` (microseconds).
pub fn median_difference_interval(
    a: &[u64],
    b: &[u64],
    rounds: usize,
    rng: &mut impl rand::Rng,
) -> (i64, i64) {
    if a.is_empty() || b.is_empty() {
        return (0, 0);
    }
    let mut resampled = |values: &[u64], buf: &mut Vec<u64>| {
        buf.clear();
        buf.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
        buf.sort_unstable();
        quantile(buf, 0.5) as i64
    };
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    let mut diffs: Vec<i64> = (0..rounds.max(1))
        .map(|_| resampled(a, &mut buf_a) - resampled(b, &mut buf_b))
        .collect();
    diffs.sort_unstable();
    let at = |q: f64| diffs[((q * diffs.len() as f64) as usize).min(diffs.len() - 1)];
    (at(0.025), at(0.975))
}

/// A distribution in milliseconds, for the report.
fn describe(sorted: &[u64]) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p10 {:.2} ms, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, mean {:.2} ms (n {})",
        ms(quantile(sorted, 0.10)),
        ms(quantile(sorted, 0.50)),
        ms(quantile(sorted, 0.90)),
        ms(quantile(sorted, 0.99)),
        mean(sorted) / 1000.0,
        sorted.len()
    )
}

pub async fn run(ctx: Ctx, logins: usize, per_account: usize, warmup: usize) -> Outcome {
    let mut recorder = Recorder::with_ops(&OPS);
    let (mut existing, mut unknown) = (Vec::with_capacity(logins), Vec::with_capacity(logins));
    let mut rng = super::task_rng();
    let tag = format!("{:06x}", rng.random::<u32>() & 0x00ff_ffff);
    for j in 0..warmup + logins {
        let measured = j >= warmup;
        let instance = &ctx.instances[j % ctx.instances.len()];
        let account = &ctx.users[account_for(j, per_account)].name;
        let unknown_user = unknown_name(&tag, j);
        let pair = [
            (EXISTING, account.as_str()),
            (UNKNOWN, unknown_user.as_str()),
        ];
        let order = if rng.random::<bool>() { [0, 1] } else { [1, 0] };
        for side in order {
            let (op, username) = pair[side];
            let body = json_body(&Credentials {
                username: username.into(),
                password: WRONG_PASSWORD.into(),
            });
            let request = instance.post(instance.routes.login.clone(), body);
            let started = Instant::now();
            // A wrong password and an unknown user both get 401.
            let result: Result<Bytes, Failure> = exchange(request, 401).await;
            let elapsed = micros(started.elapsed());
            match &result {
                Ok(_) if measured => {
                    recorder.op(op).record_micros(elapsed);
                    if op == EXISTING {
                        existing.push(elapsed);
                    } else {
                        unknown.push(elapsed);
                    }
                }
                Ok(_) => {}
                Err(failure) => recorder.op(op).fail(failure, measured),
            }
        }
    }
    let finished = Instant::now();
    existing.sort_unstable();
    unknown.sort_unstable();
    let diff = |q: f64| quantile(&existing, q) as i64 - quantile(&unknown, q) as i64;
    let (low, high) = median_difference_interval(&existing, &unknown, BOOTSTRAP_ROUNDS, &mut rng);
    let mut outcome = Outcome::merge(&[(recorder, finished)], &OPS);
    let f = &mut outcome.figures;
    f.insert(
        "existing_user_wrong_password".into(),
        json!(describe(&existing)),
    );
    f.insert("unknown_user".into(), json!(describe(&unknown)));
    f.insert("difference_p50_us".into(), json!(diff(0.5)));
    f.insert("difference_p90_us".into(), json!(diff(0.9)));
    f.insert(
        "difference_mean_us".into(),
        json!((mean(&existing) - mean(&unknown)).round() as i64),
    );
    f.insert(
        "difference_p50_95ci_us".into(),
        json!(format!("{low} to {high}")),
    );
    f.insert(
        "existing_accounts_used".into(),
        json!(account_for(warmup + logins - 1, per_account) + 1),
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn accounts_stay_below_the_lockout() {
        let uses = (0..20).fold([0usize; 5], |mut uses, j| {
            uses[account_for(j, 4)] += 1;
            uses
        });
        assert_eq!(uses, [4; 5]);
        assert_eq!(account_for(7, 0), 7, "0 means one attempt per account");
    }

    #[test]
    fn unknown_names_are_valid_and_distinct() {
        let a = unknown_name("ab12cd", 0);
        let b = unknown_name("ab12cd", 99_999);
        kavro_proto::validate::username(&b).unwrap();
        assert_ne!(a, b);
        assert!(
            !a.starts_with("bench_"),
            "never one of the accounts we created"
        );
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), 50);
        assert_eq!(quantile(&values, 0.9), 90);
        assert_eq!(quantile(&values, 0.99), 99);
        assert_eq!(quantile(&values, 0.0), 1);
        assert_eq!(quantile(&values, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.9), 7);
    }

    #[test]
    fn the_interval_holds_a_real_shift_and_excludes_zero() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let b: Vec<u64> = (0..200).map(|i| 10_000 + (i * 37) % 1000).collect();
        let a: Vec<u64> = b.iter().map(|v| v + 500).collect();
        let (low, high) = median_difference_interval(&a, &b, 1000, &mut rng);
        assert!(low <= 500 && 500 <= high, "{low}..{high}");
        assert!(low > 0, "a 0.5 ms shift is detected: {low}..{high}");
        // The same distribution on both sides: zero inside.
        let (low, high) = median_difference_interval(&b, &b, 1000, &mut rng);
        assert!(low <= 0 && 0 <= high, "{low}..{high}");
        assert_eq!(median_difference_interval(&[], &b, 10, &mut rng), (0, 0));
    }

    #[test]
    fn distributions_read_in_milliseconds() {
        let values: Vec<u64> = (1..=10).map(|i| i * 1000).collect();
        assert_eq!(
            describe(&values),
            "p10 1.00 ms, p50 5.00 ms, p90 9.00 ms, p99 10.00 ms, mean 5.50 ms (n 10)"
        );
    }
}
