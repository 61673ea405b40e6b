//! Turns a [`Config`] into a running [`AppState`]: opens the store and the
//! counters, and loads (or, on the embedded default, creates) the secrets.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;

use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::clock::before;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Toggle};
use crate::fieldcrypt::FieldCrypt;
use crate::http::client_ip::ClientPrefixes;
use crate::limits::memory::MemoryCounters;
use crate::limits::redis::RedisCounters;
use crate::limits::{Counters, Limiter};
use crate::secret::SecretString;
use crate::state::{AppState, MetricsAccess, Settings};
use crate::store::{self, StoreOptions};
use crate::wake::WakeHub;

/// Builds the state for `config`, with the real clock and Argon2 parameters.
pub async fn build(config: &Config) -> anyhow::Result<Arc<AppState>> {
    build_with(config, Arc::new(SystemClock), Passwords::new()?).await
}

/// Builds the state with an injected clock and password hasher (tests).
pub async fn build_with(
    config: &Config,
    clock: Arc<dyn Clock>,
    passwords: Passwords,
) -> anyhow::Result<Arc<AppState>> {
    // Boxed: the state machine of everything a start opens (stores, Redis,
    // blob storage) is over 16 KiB, too large to move around inline in
    // every caller's future (clippy::large_futures).
    Box::pin(build_boxed(config, clock, passwords)).await
}

async fn build_boxed(
    config: &Config,
    clock: Arc<dyn Clock>,
    passwords: Passwords,
) -> anyhow::Result<Arc<AppState>> {
    config.validate()?;
    let embedded = config.is_embedded_database();
    if embedded {
        create_private_dir(&config.data_dir)?;
    }
    let jwt_secret = secret_or_generated(
        &config.jwt_secret,
        embedded,
        &config.data_dir.join("jwt.secret"),
        "KAVRO_JWT_SECRET",
        || base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 48]>()),
    )?;
    let fernet_keys = secret_or_generated(
        &config.fernet_keys,
        embedded,
        &config.data_dir.join("fernet.key"),
        "KAVRO_FERNET_KEYS",
        FieldCrypt::generate_key,
    )?;
    if !config.jwt_secret.is_empty() {
        crate::auth::entropy::check_secret(config.jwt_secret.expose())
            .context("KAVRO_JWT_SECRET (jwt_secret) is refused")?;
    }
    let tokens = Tokens::new(jwt_secret.expose().as_bytes())
        .context("KAVRO_JWT_SECRET is too short: use at least 32 random bytes")?;
    let fields = FieldCrypt::new(fernet_keys.expose()).context("KAVRO_FERNET_KEYS")?;

    let device_tokens = crate::v2::DeviceTokens::new(jwt_secret.expose().as_bytes())
        .context("KAVRO_JWT_SECRET is too short: use at least 32 random bytes")?;
    let stores = store::connect_stores(&StoreOptions {
        url: config.effective_database_url(),
        read_url: Some(config.database_read_url.trim().to_owned()).filter(|u| !u.is_empty()),
        max_connections: config.db_max_connections,
        migrate: true,
    })
    .await
    .context("opening the database")?;
    let (store, v2_store, ops) = (stores.store, stores.v2, stores.ops);
    let storage =
        crate::blobs::objects::open(&config.blob_url, &config.data_dir, &config.blob_s3_settings)
            .context("opening the blob storage (blob_url)")?;
    tracing::info!(storage = %storage.description, "blob storage");
    let blobs = Arc::new(crate::blobs::Blobs::new(
        stores.blobs,
        storage,
        crate::blobs::BlobLimits {
            max_bytes: config.blob_max_bytes,
            quota_bytes: config.blob_quota_bytes,
            chunk_max: kavro_proto::v2::limits::BLOB_CHUNK_MAX,
        },
    ));

    let redis = config.redis();
    let counters: Arc<dyn Counters> = match &redis {
        Some(target) => Arc::new(
            RedisCounters::connect(target, &config.redis_prefix)
                .await
                .with_context(|| format!("connecting to Redis at {}", target.redacted()))?,
        ),
        None => Arc::new(MemoryCounters::default()),
    };
    let wake = Arc::new(match &redis {
        Some(target) => WakeHub::with_redis(target, &config.redis_prefix)
            .await
            .context("subscribing to Redis for long-poll wake-ups")?,
        None => WakeHub::local(),
    });
    restore_revocations(
        store.as_ref(),
        counters.as_ref(),
        clock.now(),
        config.token_ttl,
    )
    .await?;
    let limiter = Limiter::new(
        counters,
        config.limits.clone(),
        config.rate_limits == Toggle::On,
        config.lockout.clone(),
        clock.clone(),
    );
    Ok(Arc::new(AppState {
        store,
        ops,
        limiter,
        tokens,
        passwords,
        fields,
        clock,
        wake,
        settings: Settings {
            token_ttl: config.token_ttl,
            message_ttl: config.message_ttl,
            receipt_ttl: config.receipt_ttl,
            max_pending_per_recipient: config.max_pending_per_recipient,
            max_pending_per_sender: config.max_pending_per_sender,
            username_reservation: config.username_reservation,
            trusted_proxies: config.trusted_proxies.clone(),
            prefixes: ClientPrefixes {
                v4: config.ip_prefix_v4,
                v6: config.ip_prefix_v6,
            },
            metrics: MetricsAccess {
                allow: config.metrics_allow.clone(),
                token: Some(config.metrics_token.clone()).filter(|t| !t.is_empty()),
            },
            max_long_polls_per_user: config.max_long_polls_per_user,
            max_wait: config.max_wait,
            tls: config.tls_cert.is_some(),
            registration: config.registration,
        },
        v2: crate::v2::V2State {
            store: v2_store,
            tokens: device_tokens,
            blobs,
        },
    }))
}

/// Puts the token generations the database raised within the last token
/// lifetime back into the counters: in-process counters start empty, and a
/// Redis may have lost them. Older ones no longer matter (every token they
/// refuse has expired).
async fn restore_revocations(
    store: &dyn crate::store::Store,
    counters: &dyn Counters,
    now: chrono::DateTime<chrono::Utc>,
    token_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let revoked = store
        .revoked_generations(before(now, token_ttl))
        .await
        .context("reading revoked sessions")?;
    for entry in &revoked {
        counters
            .revoke_generation(
                entry.user,
                entry.generation,
                crate::clock::after(entry.revoked_at, token_ttl),
                now,
            )
            .await
            .context("restoring revoked sessions into the counters")?;
    }
    if !revoked.is_empty() {
        tracing::info!(
            accounts = revoked.len(),
            "restored session revocations from the database"
        );
    }
    Ok(())
}

/// The configured secret; else, on the embedded default, the one kept in
/// `file` (created 0600 on first start). A shared database needs every
/// instance to use the same secrets, so there they must be configured.
fn secret_or_generated(
    configured: &SecretString,
    embedded: bool,
    file: &Path,
    variable: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<SecretString> {
    if !configured.is_empty() {
        return Ok(configured.clone());
    }
    if !embedded {
        bail!(
            "{variable} must be set when using PostgreSQL: every instance sharing the database \
             needs the same value (generate one with `kavro-server gen-secrets`)"
        );
    }
    // The text read is zeroized too, not only the secret made from it.
    match std::fs::read_to_string(file).map(zeroize::Zeroizing::new) {
        Ok(text) if !text.trim().is_empty() => {
            check_private(file)?;
            return Ok(SecretString::from(text.trim().to_owned()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let secret = generate();
    write_private(file, &secret).with_context(|| format!("writing {}", file.display()))?;
    tracing::info!(file = %file.display(), "generated a new secret");
    Ok(SecretString::from(secret))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

#[cfg(unix)]
fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(file, contents)
}

/// Refuses a secret file others can read.
#[cfg(unix)]
fn check_private(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
            file.display(),
            mode & 0o777,
            file.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt.secret");
        let first =
            secret_or_generated(&SecretString::default(), true, &file, "X", || "abc".into())
                .unwrap();
        let second =
            secret_or_generated(&SecretString::default(), true, &file, "X", || "zzz".into())
                .unwrap();
        assert_eq!(first.expose(), "abc");
        assert_eq!(second.expose(), "abc", "kept across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                secret_or_generated(&SecretString::default(), true, &file, "X", || "q".into())
                    .is_err()
            );
        }
    }

    #[test]
    fn shared_database_requires_configured_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let err = secret_or_generated(
            &SecretString::default(),
            false,
            &dir.path().join("s"),
            "KAVRO_JWT_SECRET",
            || "abc".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("KAVRO_JWT_SECRET"));
        let configured = SecretString::from("given".to_owned());
        assert_eq!(
            secret_or_generated(&configured, false, &dir.path().join("s"), "X", || "no"
                .into())
            .unwrap()
            .expose(),
            "given"
        );
    }

    fn embedded(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn revocations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = embedded(dir.path());
        let clock = Arc::new(crate::clock::ManualClock::default());
        let first = build_with(&config, clock.clone(), Passwords::fast_for_tests())
            .await
            .unwrap();
        let new_user = |name: &'static str| crate::store::NewUser {
            username: name,
            username_normalized: name,
            password_hash: "$argon2id$x",
            created_at: clock.now(),
        };
        let stays = first.store.create_user(new_user("stays")).await.unwrap();
        let leaves = first.store.create_user(new_user("leaves")).await.unwrap();
        let untouched = first
            .store
            .create_user(new_user("untouched"))
            .await
            .unwrap();
        // Written to the database only, as if the process died before (or
        // the in-memory counters forgot on restart).
        let generation = first.store.revoke_tokens(stays, clock.now()).await.unwrap();
        let deleted = first
            .store
            .delete_account(leaves, clock.now())
            .await
            .unwrap();
        drop(first);
        clock.advance(std::time::Duration::from_secs(60));
        let second = build_with(&config, clock.clone(), Passwords::fast_for_tests())
            .await
            .unwrap();
        let state = |user| second.limiter.token_state("any", user);
        assert_eq!(state(stays).await.unwrap().min_generation, generation);
        assert_eq!(
            state(leaves).await.unwrap().min_generation,
            deleted.generation
        );
        assert_eq!(
            state(untouched).await.unwrap().min_generation,
            crate::store::TokenGeneration(0)
        );
        // Past a token lifetime every older token has expired: nothing to restore.
        drop(second);
        clock.advance(config.token_ttl);
        let third = build_with(&config, clock.clone(), Passwords::fast_for_tests())
            .await
            .unwrap();
        assert_eq!(
            third
                .limiter
                .token_state("any", stays)
                .await
                .unwrap()
                .min_generation,
            crate::store::TokenGeneration(0)
        );
    }

    #[tokio::test]
    async fn guessable_jwt_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for weak in ["k".repeat(64), "kavro-secret".repeat(4)] {
            let config = Config {
                jwt_secret: SecretString::from(weak.clone()),
                ..embedded(dir.path())
            };
            let err = build_with(&config, Arc::new(SystemClock), Passwords::fast_for_tests())
                .await
                .err()
                .expect("refused");
            let text = format!("{err:#}");
            assert!(
                text.contains("KAVRO_JWT_SECRET") && text.contains("gen-secrets"),
                "{text}"
            );
            assert!(!text.contains(&weak), "the secret is not repeated: {text}");
        }
        let strong = Config {
            jwt_secret: SecretString::from(hex::encode(rand::random::<[u8; 32]>())),
            ..embedded(dir.path())
        };
        build_with(&strong, Arc::new(SystemClock), Passwords::fast_for_tests())
            .await
            .unwrap();
    }
}
