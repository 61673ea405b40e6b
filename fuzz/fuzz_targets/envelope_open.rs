//! Arbitrary bytes behind a valid outer box reach the envelope parser; raw
//! strings go straight to `open`. Neither may panic.
#![no_main]

use kavro_proto::crypto::{IdentityKeypair, IdentitySecret, open, seal_raw_for_fuzzing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recipient = IdentityKeypair::from_secret(IdentitySecret::from_bytes([7u8; 32]));
    // 1. Whatever the relay hands us, as text.
    let text = String::from_utf8_lossy(data);
    let (ciphertext, ephemeral) = text.split_once('|').unwrap_or((&text, ""));
    let _ = open(&recipient, ciphertext, ephemeral);
    // 2. Arbitrary plaintext in a box that opens: the envelope parser's input.
    if let Ok(sealed) = seal_raw_for_fuzzing(recipient.public(), data, &[9u8; 32], &[3u8; 24]) {
        let _ = open(&recipient, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex);
    }
});
