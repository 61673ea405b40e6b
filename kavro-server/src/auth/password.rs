//! Argon2id password hashing, always on the blocking pool so that a burst of
//! logins never stalls the async workers (and `/health` keeps answering).
//!
//! Login for an unknown user verifies against a dummy hash made with the same
//! parameters, so an unknown name costs the same work as a wrong password:
//! response timing does not reveal which accounts exist.
//!
//! At most one hash per CPU runs at a time: each takes 19 MiB, and a burst of
//! registrations would otherwise start hundreds at once on the blocking pool
//! (memory the allocator then keeps) without finishing any sooner.

use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hash,
    #[error("password hashing task failed")]
    Join,
}

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// A hash of a random password, verified when the user does not exist.
    dummy_hash: Arc<str>,
    /// Hashes running at once.
    slots: Arc<Semaphore>,
    /// Holds each hash until a test releases it.
    #[cfg(any(test, feature = "testing"))]
    gate: Option<crate::testing::HashGate>,
}

impl Passwords {
    /// Argon2id with the crate's recommended parameters (19 MiB, t=2, p=1).
    pub fn new() -> Result<Self, PasswordError> {
        Self::with(Argon2::default())
    }

    fn with(argon: Argon2<'static>) -> Result<Self, PasswordError> {
        let random: [u8; 16] = rand::random();
        let dummy = argon
            .hash_password(hex::encode(random).as_bytes())
            .map_err(|_| PasswordError::Hash)?
            .to_string();
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            argon,
            dummy_hash: dummy.into(),
            slots: Arc::new(Semaphore::new(cpus)),
            #[cfg(any(test, feature = "testing"))]
            gate: None,
        })
    }

    /// Runs `work` on the blocking pool once a slot is free, so the async
    /// workers never hash and at most one hash per CPU runs.
    async fn off_the_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| PasswordError::Join)?;
        let argon = self.argon.clone();
        #[cfg(any(test, feature = "testing"))]
        let gate = self.gate.clone();
        tokio::task::spawn_blocking(move || {
            #[cfg(any(test, feature = "testing"))]
            if let Some(gate) = gate {
                gate.pass();
            }
            work(&argon)
        })
        .await
        .map_err(|_| PasswordError::Join)
    }

    /// The PHC string of a new hash.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let password = Zeroizing::new(password);
        self.off_the_workers(move |argon| {
            argon
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| PasswordError::Hash)
        })
        .await?
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy
    /// hash when there is no such user; the work is the same either way.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let password = Zeroizing::new(password);
        let exists = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        self.off_the_workers(move |argon| {
            let Ok(hash) = PasswordHash::new(&phc) else {
                // A corrupt stored hash never matches; still do the work.
                let _ = argon.hash_password(password.as_bytes());
                return false;
            };
            let matches = argon.verify_password(password.as_bytes(), &hash).is_ok();
            matches && exists
        })
        .await
    }
}

/// Hashers for tests, not in release builds (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
impl Passwords {
    /// Cheap parameters (1 MiB, t=1) for tests that create many accounts.
    pub fn fast_for_tests() -> Self {
        let params = argon2::Params::new(1024, 1, 1, None).expect("valid Argon2 parameters");
        Self::with(Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
        .expect("hash the dummy password")
    }

    /// Cheap parameters, and every hash waits at `gate` until it is released.
    pub fn gated_for_tests(gate: crate::testing::HashGate) -> Self {
        Self {
            gate: Some(gate),
            ..Self::fast_for_tests()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let passwords = Passwords::fast_for_tests();
        let hash = passwords.hash("Passw0rd!".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(
            passwords
                .verify("Passw0rd!".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("passw0rd!".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("Passw0rd!".into(), None).await.unwrap());
        assert!(
            !passwords
                .verify("x".into(), Some("garbage".into()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        // bcrypt would ignore everything past 72 bytes; Argon2 does not.
        let passwords = Passwords::fast_for_tests();
        let base = "A1".to_owned() + &"a".repeat(80);
        let hash = passwords.hash(format!("{base}X")).await.unwrap();
        assert!(
            !passwords
                .verify(format!("{base}Y"), Some(hash))
                .await
                .unwrap()
        );
    }
}
