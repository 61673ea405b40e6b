//! Any text that fits round-trips through seal and open, and the sender key
//! comes back as the sealer's.
#![no_main]

use kavro_proto::crypto::{IdentityKeypair, IdentitySecret, Opened, Payload, open, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let alice = IdentityKeypair::from_secret(IdentitySecret::from_bytes([1u8; 32]));
    let bob = IdentityKeypair::from_secret(IdentitySecret::from_bytes([2u8; 32]));
    let payload = Payload::new("alice", "bob", text);
    let Ok(sealed) = seal(&alice, bob.public(), &payload) else {
        return; // too long: a clean error is the contract
    };
    match open(&bob, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex) {
        Ok(Opened::Envelope { sender_key, payload: opened }) => {
            assert_eq!(&sender_key, alice.public());
            assert_eq!(opened, payload);
        }
        other => panic!("sealed message did not open: {other:?}"),
    }
});
