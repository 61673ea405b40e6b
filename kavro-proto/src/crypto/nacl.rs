//! The one primitive everything else is built on: NaCl's `crypto_box`
//! (X25519 + XSalsa20-Poly1305), byte-compatible with libsodium.
//!
//! Construction (Bernstein, "Cryptography in NaCl", 2009; X25519 per RFC 7748):
//!
//! ```text
//! shared = X25519(secret, their_public)          // refused if all zero
//! key    = HSalsa20(shared, 0^16)                // crypto_box_beforenm
//! box    = crypto_secretbox(key, nonce[24], m)   // tag[16] || XSalsa20(m)
//! ```
//!
//! The output is libsodium's `crypto_box_easy` layout (tag first), which is
//! what PyNaCl's `Box.encrypt` returns after its 24-byte nonce prefix.
//!
//! Why not `crypto_box::SalsaBox` directly: in crypto_box 0.9 the secret key
//! type zeroizes only its scalar on drop (the raw bytes stay in memory), is
//! `Clone`, and multiplies by the clamped scalar *reduced mod ℓ*, which differs
//! from X25519 (and libsodium) for public keys with a small-order component.
//! x25519-dalek's `StaticSecret` zeroizes on drop, uses RFC 7748 clamped
//! multiplication, and tells us when the result is the all-zero point, which
//! libsodium refuses too. The symmetric half is the same RustCrypto code
//! crypto_box uses internally (`crypto_secretbox`).

use crypto_secretbox::{
    Kdf, Key, Nonce, XSalsa20Poly1305,
    aead::{Aead, KeyInit},
};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of a `crypto_box` nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag a box adds to its plaintext.
pub const TAG_LEN: usize = 16;
/// Length of an X25519 key, public or secret.
pub const KEY_LEN: usize = 32;

/// A box could not be made or opened. Deliberately without detail: a wrong
/// key, a tampered byte and a low-order public key all look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoxError;

/// `crypto_box_beforenm`: the symmetric key shared by `secret` and `their_public`.
fn beforenm(
    secret: &StaticSecret,
    their_public: &[u8; KEY_LEN],
) -> Result<XSalsa20Poly1305, BoxError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their_public));
    // A low-order public key forces the shared secret to zero, i.e. a key
    // everyone knows. libsodium's crypto_box refuses it; so do we.
    if !shared.was_contributory() {
        return Err(BoxError);
    }
    // HSalsa20 with an all-zero 16-byte input, exactly crypto_box_beforenm.
    let key = Zeroizing::new(<XSalsa20Poly1305 as Kdf>::kdf(
        Key::from_slice(shared.as_bytes()),
        &[0u8; 16].into(),
    ));
    Ok(XSalsa20Poly1305::new(&key))
}

/// `crypto_box_easy`: returns `tag || ciphertext` (plaintext length + 16).
pub(crate) fn seal(
    secret: &StaticSecret,
    their_public: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, BoxError> {
    beforenm(secret, their_public)?
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .map_err(|_| BoxError)
}

/// `crypto_box_open_easy`: checks the tag in constant time, then decrypts.
pub(crate) fn open(
    secret: &StaticSecret,
    their_public: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    boxed: &[u8],
) -> Result<Vec<u8>, BoxError> {
    beforenm(secret, their_public)?
        .decrypt(Nonce::from_slice(nonce), boxed)
        .map_err(|_| BoxError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(text: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    // RFC 7748 section 6.1 (also the keys of the NaCl paper's example).
    const ALICE_SK: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PK: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const BOB_SK: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const BOB_PK: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    #[test]
    fn x25519_matches_rfc7748() {
        let alice = StaticSecret::from(unhex::<32>(ALICE_SK));
        let bob = StaticSecret::from(unhex::<32>(BOB_SK));
        assert_eq!(PublicKey::from(&alice).to_bytes(), unhex::<32>(ALICE_PK));
        assert_eq!(PublicKey::from(&bob).to_bytes(), unhex::<32>(BOB_PK));
        let shared = alice.diffie_hellman(&PublicKey::from(unhex::<32>(BOB_PK)));
        assert_eq!(shared.to_bytes(), unhex::<32>(SHARED));
    }

    /// Known answer from PHP sodium_compat's test vectors (as used by the
    /// crypto_box crate), re-checked against libsodium 1.0.18's `crypto_box_easy`.
    #[test]
    fn crypto_box_known_answer() {
        let alice = StaticSecret::from(unhex::<32>(
            "68f208412d8dd5db9d0c6d18512e86f0ec75665ab841372d57b042b27ef89d4c",
        ));
        let alice_pk =
            unhex::<32>("ac3a70ba35df3c3fae427a7c72021d68f2c1e044040b75f17313c0c8b5d4241d");
        let bob = StaticSecret::from(unhex::<32>(
            "b581fb5ae182a16f603f39270d4e3b95bc008310b727a11dd4e784a0044d461b",
        ));
        let bob_pk =
            unhex::<32>("e8980c86e032f1eb2975052e8d65bddd15c3b59641174ec9678a53789d92c754");
        let nonce = unhex::<24>("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37");
        let plaintext = hex::decode(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a\
             1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057\
             e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040\
             e082f93776384864 5e0705"
                .replace(' ', ""),
        )
        .unwrap();
        let expected = hex::decode(
            "c03f27d188ef650cd12936913137bb17ed4c98c2648939e2e1d2e855470a7b8c632cabfd5ab3b3c2\
             d313dc8c9ecf5da173e1f9c318cdef1dced6d2519e695085e6b5c401a2bd5331442986c7076d4126\
             25497c4cb2fd94c6f103961033b2c930d7e82e0341f29d3879bd6ab9d881ea3a1f365d634e653c6e\
             171aac7fc1e76934d23be6f04a54010808dbf0f9bd30f63b68d026",
        )
        .unwrap();
        assert_eq!(seal(&alice, &bob_pk, &nonce, &plaintext).unwrap(), expected);
        assert_eq!(open(&bob, &alice_pk, &nonce, &expected).unwrap(), plaintext);
    }

    #[test]
    fn agrees_with_crypto_box_on_honest_keys() {
        use crypto_box::aead::Aead as _;
        let alice = StaticSecret::from([7u8; 32]);
        let bob = StaticSecret::from([9u8; 32]);
        let bob_pk = PublicKey::from(&bob).to_bytes();
        let nonce = [3u8; NONCE_LEN];
        let ours = seal(&alice, &bob_pk, &nonce, b"same bytes").unwrap();
        let theirs = crypto_box::SalsaBox::new(
            &crypto_box::PublicKey::from(bob_pk),
            &crypto_box::SecretKey::from([7u8; 32]),
        )
        .encrypt(&nonce.into(), &b"same bytes"[..])
        .unwrap();
        assert_eq!(ours, theirs);
    }

    /// A public key outside the prime-order subgroup (any 32 bytes a peer may
    /// send): libsodium 1.0.18 gives this box, crypto_box 0.9 a different one.
    #[test]
    fn matches_libsodium_for_keys_outside_the_subgroup() {
        let boxed = seal(
            &StaticSecret::from([0x11; 32]),
            &[0x14; 32],
            &[0x22; 24],
            b"hi",
        )
        .unwrap();
        assert_eq!(hex::encode(boxed), "924dae11038eb4c1affeffe97660417d8ade");
    }

    #[test]
    fn refuses_low_order_public_keys() {
        let secret = StaticSecret::from([5u8; 32]);
        let nonce = [0u8; NONCE_LEN];
        // u = 0 and u = 1 are points of order 1 and 4 (RFC 7748 section 7).
        let mut one = [0u8; 32];
        one[0] = 1;
        for low in [[0u8; 32], one] {
            assert_eq!(seal(&secret, &low, &nonce, b"x"), Err(BoxError));
            assert_eq!(open(&secret, &low, &nonce, &[0u8; 17]), Err(BoxError));
        }
    }

    #[test]
    fn tampering_and_short_input_fail() {
        let alice = StaticSecret::from([1u8; 32]);
        let bob = StaticSecret::from([2u8; 32]);
        let alice_pk = PublicKey::from(&alice).to_bytes();
        let bob_pk = PublicKey::from(&bob).to_bytes();
        let nonce = [4u8; NONCE_LEN];
        let mut boxed = seal(&alice, &bob_pk, &nonce, b"hello").unwrap();
        assert_eq!(boxed.len(), 5 + TAG_LEN);
        boxed[TAG_LEN] ^= 1;
        assert_eq!(open(&bob, &alice_pk, &nonce, &boxed), Err(BoxError));
        assert_eq!(open(&bob, &alice_pk, &nonce, &[0u8; 15]), Err(BoxError));
        // An empty message is a bare tag, and opens.
        let empty = seal(&alice, &bob_pk, &nonce, b"").unwrap();
        assert_eq!(open(&bob, &alice_pk, &nonce, &empty).unwrap(), b"");
    }
}
