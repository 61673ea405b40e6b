//! Creating the benchmark's users through the API (register, publish a key,
//! ask who we are), concurrently but bounded, and filling inboxes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use kavro_proto::UserId;
use kavro_proto::api::{Credentials, Me, PublishKey, TokenResponse};
use rand::{Rng as _, RngCore as _};
use reqwest::header::HeaderValue;

use crate::client::{Instance, authed, bearer, exchange};
use crate::payload::SendTemplate;
use crate::stats::{Failure, FailureKind};

/// A user the benchmark acts as.
#[derive(Debug, Clone)]
pub struct BenchUser {
    pub id: UserId,
    pub name: String,
    /// `Authorization: Bearer …`, ready to attach.
    pub auth: HeaderValue,
}

/// The password of every benchmark user: valid (upper, lower, digit, ≥ 8).
pub const PASSWORD: &str = "Bench-pass-2026";

const RATE_LIMITED: &str = "the relay rate-limits these requests (HTTP 429). \
     Start it with rate limits off for benchmarks: KAVRO_RATE_LIMITS=off kavro-server … \
     (or `kavro-server --rate-limits off`)";

/// The `i`-th username of run `run`.
pub fn username(run: &str, i: usize) -> String {
    format!("bench_{run}_{i}")
}

/// A run id for usernames: 6 random lowercase hex digits.
pub fn random_run_id() -> String {
    format!("{:06x}", rand::rng().random::<u32>() & 0x00ff_ffff)
}

/// Checks that every instance answers `/health` before creating anything.
pub async fn check_reachable(instances: &[Instance]) -> anyhow::Result<()> {
    for instance in instances {
        exchange(instance.get(instance.routes.health.clone()), 200)
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))
            .with_context(|| {
                format!(
                    "cannot reach the relay at {}: is kavro-server running there?",
                    instance.url
                )
            })?;
    }
    Ok(())
}

/// Registers `count` users (spread over the instances), publishes a random
/// 32-byte key for each and learns their ids. At most `concurrency` requests
/// are in flight; progress goes to stderr.
pub async fn create_users(
    instances: &[Instance],
    run: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<BenchUser>> {
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let step = (count / 10).max(1);
    let mut users: Vec<(usize, BenchUser)> = futures_util::stream::iter(0..count)
        .map(|i| {
            let instance = &instances[i % instances.len()];
            let done = &done;
            async move {
                let user = create_user(instance, &username(run, i)).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(step) && count >= 100 {
                    eprintln!("  users: {n}/{count}");
                }
                anyhow::Ok((i, user))
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    users.sort_by_key(|(i, _)| *i);
    eprintln!(
        "created {count} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(users.into_iter().map(|(_, u)| u).collect())
}

async fn create_user(instance: &Instance, name: &str) -> anyhow::Result<BenchUser> {
    let credentials = Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    };
    let body = Bytes::from(serde_json::to_vec(&credentials)?);
    let token: TokenResponse = json(
        exchange(instance.post(instance.routes.register.clone(), body), 201).await,
        &format!("registering {name}"),
    )?;
    let auth = bearer(&token.access_token)?;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let publish = PublishKey {
        identity_pubkey: hex::encode(key).into(),
        device_name: Some("kavro-bench".into()),
    };
    let body = Bytes::from(serde_json::to_vec(&publish)?);
    checked(
        exchange(
            authed(instance.post(instance.routes.publish.clone(), body), &auth),
            201,
        )
        .await,
        &format!("publishing {name}'s key"),
    )?;
    let me: Me = json(
        exchange(authed(instance.get(instance.routes.me.clone()), &auth), 200).await,
        &format!("asking who {name} is"),
    )?;
    Ok(BenchUser {
        id: me.user_id,
        name: name.to_owned(),
        auth,
    })
}

/// Puts `per_user` messages in every user's inbox (from random other users),
/// with `concurrency` sends in flight. Any failure stops the run: a scenario
/// on half-filled inboxes would measure something else.
pub async fn fill_inboxes(
    instances: &[Instance],
    users: &[BenchUser],
    per_user: usize,
    concurrency: usize,
    message_bytes: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let templates: Vec<SendTemplate> = {
        let mut rng = rand::rng();
        users
            .iter()
            .map(|u| SendTemplate::new(u.id, message_bytes, &mut rng))
            .collect()
    };
    let total = users.len() * per_user;
    let next = Arc::new(AtomicUsize::new(0));
    let results = futures_util::future::join_all((0..concurrency).map(|w| {
        let next = next.clone();
        let templates = &templates;
        async move {
            let mut rng = rand::rng();
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= total {
                    return anyhow::Ok(());
                }
                let recipient = job % users.len();
                let sender = other_than(&mut rng, users.len(), recipient);
                let instance = &instances[(job + w) % instances.len()];
                let request = authed(
                    instance.post(instance.routes.send.clone(), templates[recipient].body()),
                    &users[sender].auth,
                );
                checked(exchange(request, 201).await, "filling inboxes")?;
            }
        }
    }))
    .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "filled {} inboxes with {per_user} messages each ({total} sends in {secs:.1} s, {:.0}/s)",
        users.len(),
        total as f64 / secs
    );
    Ok(())
}

/// A random index in `0..n` other than `not` (`n` ≥ 2).
pub fn other_than(rng: &mut impl rand::Rng, n: usize, not: usize) -> usize {
    let pick = rng.random_range(0..n - 1);
    if pick >= not { pick + 1 } else { pick }
}

fn checked(result: Result<Bytes, Failure>, doing: &str) -> anyhow::Result<Bytes> {
    result.map_err(|failure| match failure.kind {
        FailureKind::Status(429) => anyhow::anyhow!("{doing}: {RATE_LIMITED}"),
        FailureKind::Status(400) if failure.detail.contains("already taken") => anyhow::anyhow!(
            "{doing}: {} — pick another --run-id (or leave it out for a random one)",
            failure.detail
        ),
        _ => anyhow::anyhow!("{doing}: {failure}"),
    })
}

fn json<T: serde::de::DeserializeOwned>(
    result: Result<Bytes, Failure>,
    doing: &str,
) -> anyhow::Result<T> {
    let body = checked(result, doing)?;
    serde_json::from_slice(&body).with_context(|| format!("{doing}: unexpected answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_password_are_valid() {
        kavro_proto::validate::password(PASSWORD).unwrap();
        for _ in 0..20 {
            let run = random_run_id();
            assert_eq!(run.len(), 6);
            kavro_proto::validate::username(&username(&run, 9_999_999)).unwrap();
        }
        assert_eq!(username("ab12cd", 7), "bench_ab12cd_7");
    }

    #[test]
    fn other_than_never_picks_the_excluded_index() {
        let mut rng = rand::rng();
        for not in 0..3 {
            for _ in 0..200 {
                let pick = other_than(&mut rng, 3, not);
                assert!(pick < 3 && pick != not);
            }
        }
        assert_eq!(other_than(&mut rng, 2, 0), 1);
    }

    #[test]
    fn rate_limits_get_a_clear_hint() {
        let err = checked(
            Err(Failure::new(FailureKind::Status(429), "Too many requests")),
            "registering bench_x_0",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KAVRO_RATE_LIMITS=off"), "{err}");
        let err = checked(
            Err(Failure::new(
                FailureKind::Status(400),
                "Username 'x' is already taken",
            )),
            "registering x",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--run-id"), "{err}");
    }
}
