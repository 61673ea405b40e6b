//! Numbers people compare out of band to detect a swapped key: the safety
//! number of a conversation (the same on both sides) and the short fingerprint
//! of one's own key.
//!
//! Safety number v2 is Signal's numeric-fingerprint design: each party has a
//! half derived only from its own identity, and the two halves are shown in a
//! fixed (ascending) order. For a party with a 32-byte public key and a
//! stable id (v1 accounts: the lowercased username):
//!
//! ```text
//! h0      = SHA-512("Kavro safety number v2" || 0x00 || u64_be(len(id)) || id || key)
//! h(i+1)  = SHA-512(h(i) || key),  i = 0 .. 5200
//! half    = u40_be(h5200[5j .. 5j+5]) mod 100000 for j = 0..6, as 6 groups of 5 digits
//! number  = the two halves, smaller first: 12 groups, 60 digits
//! ```
//!
//! Why per-party halves: with one hash over both parties (v1), a relay that
//! substitutes *both* keys can search for two keys whose two numbers agree, a
//! collision search (about 2^50 hashes for half the digits). With halves,
//! matching a party's half is a second preimage against that party's own key:
//! each try costs 5,201 SHA-512 computations, and hitting all 30 digits of a
//! half takes about 10^30 ≈ 2^100 tries (2^112 hashes); people who compare
//! only the first 15 digits of each half still leave about 2^50 tries
//! (2^62 hashes) per half. The halves depend only on `(key, id)`, so the
//! function is reused for any 32-byte key (v2's account root keys).
//!
//! Key fingerprint v1: the first 16 bytes of
//! `SHA-256("Kavro key fingerprint v1" || 0x00 || key)`, as 8 groups of 4 hex digits.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256, Sha512};

use super::keys::IdentityPublic;

const SAFETY_NUMBER_LABEL: &[u8] = b"Kavro safety number v2\0";
const KEY_FINGERPRINT_LABEL: &[u8] = b"Kavro key fingerprint v1\0";

/// SHA-512 iterations after the first hash of a party's half.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5_200;

/// Number of 5-digit groups in a safety number.
pub const SAFETY_NUMBER_GROUPS: usize = 12;
/// Number of 5-digit groups in one party's half.
pub const PARTY_HALF_GROUPS: usize = SAFETY_NUMBER_GROUPS / 2;

/// One party's half of a safety number: 6 groups of 5 digits, derived only
/// from that party's public key and stable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartyHalf([u32; PARTY_HALF_GROUPS]);

impl PartyHalf {
    /// The half of the party with `public_key` (any 32-byte key) and
    /// `stable_id` (for v1 accounts, the lowercased username). CPU work:
    /// 5,201 SHA-512 computations.
    pub fn compute(public_key: &[u8; 32], stable_id: &[u8]) -> Self {
        let mut hash = Sha512::new()
            .chain_update(SAFETY_NUMBER_LABEL)
            .chain_update((stable_id.len() as u64).to_be_bytes())
            .chain_update(stable_id)
            .chain_update(public_key)
            .finalize();
        for _ in 0..SAFETY_NUMBER_ITERATIONS {
            hash = Sha512::new()
                .chain_update(hash)
                .chain_update(public_key)
                .finalize();
        }
        let mut groups = [0u32; PARTY_HALF_GROUPS];
        for (group, chunk) in groups.iter_mut().zip(hash.chunks_exact(5)) {
            let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // < 100000, so the cast is lossless.
            *group = (value % 100_000) as u32;
        }
        Self(groups)
    }

    /// The half of a v1 account: its identity key, and its username
    /// lowercased (usernames are unique ignoring case).
    pub fn of_account(username: &str, key: &IdentityPublic) -> Self {
        Self::compute(key.as_bytes(), username.to_ascii_lowercase().as_bytes())
    }

    /// The groups as numbers below 100000.
    pub fn groups(&self) -> [u32; PARTY_HALF_GROUPS] {
        self.0
    }
}

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
        Self::from_halves(
            PartyHalf::of_account(a_name, a_key),
            PartyHalf::of_account(b_name, b_key),
        )
    }

    /// The two halves, in ascending order whatever the order given.
    pub fn from_halves(a: PartyHalf, b: PartyHalf) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut groups = [0u32; SAFETY_NUMBER_GROUPS];
        groups[..PARTY_HALF_GROUPS].copy_from_slice(&low.0);
        groups[PARTY_HALF_GROUPS..].copy_from_slice(&high.0);
        Self(groups)
    }

    /// Whether `half` is one of the two halves of this number.
    pub fn contains(&self, half: &PartyHalf) -> bool {
        self.0[..PARTY_HALF_GROUPS] == half.0 || self.0[PARTY_HALF_GROUPS..] == half.0
    }

    /// Parses 60 digits, with any spaces in between (as people copy it).
    pub fn parse(text: &str) -> Option<Self> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if digits.len() != SAFETY_NUMBER_GROUPS * 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut groups = [0u32; SAFETY_NUMBER_GROUPS];
        for (group, chunk) in groups.iter_mut().zip(digits.chunks_exact(5)) {
            *group = chunk
                .iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
        }
        Some(Self(groups))
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

    /// Parses 32 hex digits, either case, with any spaces in between (as
    /// `Display` writes them).
    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut out = [0u8; 16];
        hex::decode_to_slice(&digits, &mut out).ok()?;
        Some(Self(out))
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
    fn each_half_comes_from_one_party_only() {
        let alice = PartyHalf::of_account("alice", &A);
        let ab = SafetyNumber::compute("alice", &A, "bob", &B);
        let ac = SafetyNumber::compute("alice", &A, "carol", &B);
        assert!(ab.contains(&alice) && ac.contains(&alice));
        assert!(ab.contains(&PartyHalf::of_account("BOB", &B)));
        assert!(!ab.contains(&PartyHalf::of_account("bob", &A)));
        assert_eq!(
            ab,
            SafetyNumber::from_halves(PartyHalf::of_account("bob", &B), alice)
        );
        // Generic over any 32-byte key and stable id.
        assert_eq!(
            PartyHalf::compute(A.as_bytes(), b"alice"),
            PartyHalf::of_account("Alice", &A)
        );
    }

    #[test]
    fn typed_numbers_and_fingerprints_parse() {
        let n = SafetyNumber::compute("alice", &A, "bob", &B);
        assert_eq!(SafetyNumber::parse(&n.to_string()), Some(n));
        assert_eq!(SafetyNumber::parse(&n.digits()), Some(n));
        assert_eq!(SafetyNumber::parse(&n.lines().join("\n")), Some(n));
        assert_eq!(SafetyNumber::parse(&n.digits()[1..]), None);
        assert_eq!(SafetyNumber::parse(&format!("{}x", &n.digits()[1..])), None);
        assert_eq!(SafetyNumber::parse(""), None);
        let f = A.fingerprint();
        assert_eq!(KeyFingerprint::parse(&f.to_string()), Some(f));
        assert_eq!(
            KeyFingerprint::parse(&f.to_string().to_uppercase().replace(' ', "")),
            Some(f)
        );
        assert_eq!(KeyFingerprint::parse("abcd"), None);
        assert_eq!(KeyFingerprint::parse(&"zz".repeat(16)), None);
        assert_eq!(KeyFingerprint::parse(&"é".repeat(16)), None);
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
