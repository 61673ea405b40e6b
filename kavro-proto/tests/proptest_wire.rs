//! Every wire type and input rule: arbitrary input never panics, and what
//! parses serialises back to an equal value.

use kavro_proto::api::{
    BatchAck, Credentials, DeliveryStatus, Devices, ErrorBody, Inbox, PublishKey, SendMessage,
    UserInfo,
};
use kavro_proto::validate;
use proptest::prelude::*;

fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        let written = serde_json::to_vec(&value).expect("serialises");
        let again: T = serde_json::from_slice(&written).expect("parses what it wrote");
        assert_eq!(serde_json::to_vec(&again).expect("serialises"), written);
    }
}

fn all_types(bytes: &[u8]) {
    round_trips::<Credentials>(bytes);
    round_trips::<PublishKey>(bytes);
    round_trips::<SendMessage>(bytes);
    round_trips::<BatchAck>(bytes);
    round_trips::<Inbox>(bytes);
    round_trips::<Devices>(bytes);
    round_trips::<UserInfo>(bytes);
    round_trips::<DeliveryStatus>(bytes);
    round_trips::<ErrorBody>(bytes);
}

/// JSON-ish text, so many cases get past the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9+/=_ -]{0,12}".prop_map(|s| format!("{s:?}")),
    ];
    let keys = prop::sample::select(vec![
        "username",
        "password",
        "identity_pubkey",
        "device_name",
        "recipient_id",
        "ciphertext",
        "ephemeral_pubkey",
        "metadata",
        "client_msg_id",
        "ids",
        "messages",
        "devices",
        "status",
        "delivered_at",
        "error",
        "status_code",
        "id",
        "user_id",
        "created_at",
    ]);
    prop::collection::vec((keys, leaf), 0..6).prop_map(|fields| {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
        format!("{{{}}}", body.join(", "))
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        all_types(&bytes);
    }

    #[test]
    fn json_shaped_input_round_trips(text in jsonish()) {
        all_types(text.as_bytes());
    }

    #[test]
    fn input_rules_never_panic(text in ".{0,200}") {
        let _ = validate::username(&text);
        let _ = validate::password(&text);
        let _ = validate::pubkey_hex(&text);
        let _ = validate::device_name(&text);
        if let Ok(bytes) = validate::ciphertext(&text) {
            prop_assert_eq!(validate::base64_encode(&bytes), text, "strict base64 is canonical");
        }
    }

    #[test]
    fn ciphertext_round_trips(bytes in prop::collection::vec(any::<u8>(), 1..2048)) {
        let text = validate::base64_encode(&bytes);
        prop_assert_eq!(validate::ciphertext(&text).unwrap(), bytes);
    }

    #[test]
    fn hex_keys_round_trip(key in any::<[u8; 32]>()) {
        prop_assert_eq!(validate::pubkey_hex(&hex::encode(key)).unwrap(), key);
        prop_assert_eq!(validate::pubkey_hex(&hex::encode_upper(key)).unwrap(), key);
    }
}
