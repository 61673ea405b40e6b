//! A check of how guessable a configured JWT secret is. Length alone lets
//! `aaaa…` or `password` repeated through: whoever guesses the secret mints
//! tokens for any account.
//!
//! The estimate is deliberately simple and conservative, and says what it
//! catches: a small alphabet, skewed character use, and repetition. It is the
//! smaller of two numbers of bits:
//! - **Shannon**: the entropy of the secret's own character frequencies
//!   times its length (`aaaa…` has 0 bits; a random base64 string of 64
//!   characters about 340);
//! - **distinct trigrams**: the number of different 3-character windows times
//!   the per-character entropy, so `abcdabcd…` counts only its period.
//!
//! It cannot recognise a passphrase made of dictionary words; the error
//! message points to `kavro-server gen-secrets` for a random one.

use std::collections::{HashMap, HashSet};

/// Estimated bits a configured JWT secret must reach: 128, the strength of
/// HS256's security level and of the 32 random bytes `gen-secrets` exceeds.
pub const MIN_SECRET_BITS: f64 = 128.0;

/// Why a configured secret was refused; carries only numbers, never the secret.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "looks guessable: about {bits:.0} bits of entropy estimated, at least {min:.0} needed \
     (it is too short, repeats itself or uses few distinct characters); \
     generate a random one with `kavro-server gen-secrets`"
)]
pub struct WeakSecret {
    pub bits: f64,
    pub min: f64,
}

/// The estimated entropy of `secret` in bits (see the module doc).
pub fn estimated_bits(secret: &str) -> f64 {
    let chars: Vec<char> = secret.chars().collect();
    if chars.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in &chars {
        *counts.entry(*c).or_default() += 1;
    }
    let len = chars.len() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&n| {
            let p = n as f64 / len;
            -p * p.log2()
        })
        .sum();
    let shannon = per_char * len;
    let trigrams: HashSet<&[char]> = chars.windows(3).collect();
    let distinct = (trigrams.len() + 2).min(chars.len()) as f64;
    shannon.min(per_char * distinct)
}

/// Refuses a secret whose estimate is below [`MIN_SECRET_BITS`].
pub fn check_secret(secret: &str) -> Result<(), WeakSecret> {
    let bits = estimated_bits(secret);
    if bits < MIN_SECRET_BITS {
        return Err(WeakSecret {
            bits,
            min: MIN_SECRET_BITS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn random_secrets_pass() {
        for _ in 0..100 {
            // What `gen-secrets` prints: 48 random bytes in base64.
            let secret =
                base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 48]>());
            assert!(check_secret(&secret).is_ok(), "{secret}");
            // 32 random bytes in hex.
            let secret = hex::encode(rand::random::<[u8; 32]>());
            assert!(check_secret(&secret).is_ok(), "{secret}");
        }
    }

    #[test]
    fn long_but_guessable_secrets_fail() {
        for weak in [
            "a".repeat(64),
            "ab".repeat(32),
            "abcd".repeat(16),
            "password".repeat(8),
            "0123456789".repeat(8),
            "secretsecretsecretsecretsecretse".to_owned(),
            "x".repeat(1000),
            "12345678901234567890123456789012".to_owned(),
            String::new(),
        ] {
            let err = check_secret(&weak).unwrap_err();
            assert!(err.bits < MIN_SECRET_BITS, "{weak}: {err}");
            assert!(!err.to_string().contains(&weak) || weak.is_empty());
        }
    }

    #[test]
    fn the_estimate_orders_secrets_sensibly() {
        assert!(estimated_bits("aaaa").abs() < f64::EPSILON);
        assert!(estimated_bits(&"ab".repeat(32)) < estimated_bits(&"abcdefgh".repeat(8)));
        let random = hex::encode(rand::random::<[u8; 32]>());
        assert!(estimated_bits(&"abcdefgh".repeat(8)) < estimated_bits(&random));
    }
}
