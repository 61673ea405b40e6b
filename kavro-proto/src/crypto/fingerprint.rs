//! Numbers people compare out of band to detect a swapped key: the safety
//! number of a conversation (the same on both sides) and the short fingerprint
//! of one's own key.
//!
//! Safety number v1, for two parties `(name, key)`:
//!
//! ```text
//! party(name, key) = u64_be(len(lower(name))) || lower(name) || key[32]
//! (p, q)           = the two party encodings, sorted bytewise
//! digest           = SHA-512("Kavro safety number v1" || 0x00 || p || q)
//! group i (0..12)  = u40_be(digest[5i .. 5i+5]) mod 100000, as 5 digits
//! ```
//!
//! Names are lowercased because usernames are unique ignoring case, and each
//! side may know the other under a different spelling. Sorting makes the
//! result independent of who computes it. 60 decimal digits carry about 199
//! bits; a key crafted to match even half of them costs about 2^100 hashes, so
//! no key stretching is applied.
//!
//! Key fingerprint v1: the first 16 bytes of
//! `SHA-256("Kavro key fingerprint v1" || 0x00 || key)`, as 8 groups of 4 hex digits.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256, Sha512};

use super::keys::IdentityPublic;

const SAFETY_NUMBER_LABEL: &[u8] = b"Kavro safety number v1\0";
const KEY_FINGERPRINT_LABEL: &[u8] = b"Kavro key fingerprint v1\0";

/// Number of 5-digit groups in a safety number.
pub const SAFETY_NUMBER_GROUPS: usize = 12;

/// The safety number of a conversation between two users: 12 groups of 5 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyNumber([u32; SAFETY_NUMBER_GROUPS]);

impl SafetyNumber {
    /// Computes the number for `(a_name, a_key)` and `(b_name, b_key)`; swapping
    /// the two parties, or the case of a name, gives the same number.
    pub fn compute(
        a_name: &str,
        a_key: &IdentityPublic,
        b_name: &str,
        b_key: &IdentityPublic,
    ) -> Self {
        let mut parties = [party(a_name, a_key), party(b_name, b_key)];
        parties.sort();
        let digest = Sha512::new()
            .chain_update(SAFETY_NUMBER_LABEL)
            .chain_update(&parties[0])
            .chain_update(&parties[1])
            .finalize();
        let mut groups = [0u32; SAFETY_NUMBER_GROUPS];
        for (group, chunk) in groups.iter_mut().zip(digest.chunks_exact(5)) {
            let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // < 100000, so the cast is lossless.
            *group = (value % 100_000) as u32;
        }
        Self(groups)
    }

    /// The groups as numbers below 100000.
    pub fn groups(&self) -> [u32; SAFETY_NUMBER_GROUPS] {
        self.0
    }

    /// All 60 digits without separators (for comparing typed-in numbers).
    pub fn digits(&self) -> String {
        self.0.iter().fold(String::with_capacity(60), |mut out, g| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{g:05}");
            out
        })
    }

    /// Three lines of four groups, the way it is best shown on a screen.
    pub fn lines(&self) -> [String; 3] {
        let line = |i: usize| {
            self.0[i * 4..i * 4 + 4]
                .iter()
                .map(|g| format!("{g:05}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        [line(0), line(1), line(2)]
    }
}

/// Groups separated by single spaces: `"12345 67890 …"`.
impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{group:05}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

fn party(name: &str, key: &IdentityPublic) -> Vec<u8> {
    let name = name.to_ascii_lowercase();
    let mut out = Vec::with_capacity(8 + name.len() + 32);
    // A length prefix keeps the encoding injective for any input string.
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// A short, stable fingerprint of one public key, for `whoami` and for reading
/// out to a contact: 8 groups of 4 hex digits (128 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint([u8; 16]);

impl KeyFingerprint {
    pub fn of(key: &IdentityPublic) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_FINGERPRINT_LABEL)
            .chain_update(key.as_bytes())
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }
}

/// `"a1b2 c3d4 e5f6 0718 293a 4b5c 6d7e 8f90"`.
impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks_exact(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

impl IdentityPublic {
    /// Shorthand for [`KeyFingerprint::of`].
    pub fn fingerprint(&self) -> KeyFingerprint {
        KeyFingerprint::of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IdentityPublic = IdentityPublic::from_bytes([1; 32]);
    const B: IdentityPublic = IdentityPublic::from_bytes([2; 32]);

    #[test]
    fn safety_number_is_symmetric_and_case_insensitive() {
        let ab = SafetyNumber::compute("alice", &A, "bob", &B);
        assert_eq!(ab, SafetyNumber::compute("bob", &B, "alice", &A));
        assert_eq!(ab, SafetyNumber::compute("Alice", &A, "BOB", &B));
        assert_ne!(ab, SafetyNumber::compute("alice", &A, "bob", &A));
        assert_ne!(ab, SafetyNumber::compute("alice", &B, "bob", &A));
        assert_ne!(ab, SafetyNumber::compute("alicf", &A, "bob", &B));
    }

    #[test]
    fn safety_number_format() {
        let n = SafetyNumber::compute("alice", &A, "bob", &B);
        let text = n.to_string();
        assert_eq!(text.len(), 12 * 5 + 11);
        assert!(
            text.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(n.digits(), text.replace(' ', ""));
        assert_eq!(n.lines().join(" "), text);
        assert!(n.groups().iter().all(|&g| g < 100_000));
    }

    #[test]
    fn key_fingerprint_format() {
        let text = A.fingerprint().to_string();
        assert_eq!(text.len(), 8 * 4 + 7);
        assert!(
            text.split(' ')
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        assert_ne!(A.fingerprint(), B.fingerprint());
        assert!(format!("{:?}", A.fingerprint()).starts_with("KeyFingerprint("));
    }
}
