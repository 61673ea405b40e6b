//! Every wire type and input rule takes arbitrary bytes without panicking,
//! and whatever parses re-serialises and parses again to the same value.
#![no_main]

use kavro_proto::api::{
    BatchAck, Credentials, DeliveryStatus, Devices, ErrorBody, Inbox, PublishKey, SendMessage,
    UserInfo,
};
use kavro_proto::validate;
use libfuzzer_sys::fuzz_target;

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&value).expect("serialises");
        let back: T = serde_json::from_slice(&again).expect("parses what it wrote");
        assert_eq!(serde_json::to_vec(&back).expect("serialises"), again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Credentials>(data);
    round_trip::<PublishKey>(data);
    round_trip::<SendMessage>(data);
    round_trip::<BatchAck>(data);
    round_trip::<Inbox>(data);
    round_trip::<Devices>(data);
    round_trip::<UserInfo>(data);
    round_trip::<DeliveryStatus>(data);
    round_trip::<ErrorBody>(data);
    let text = String::from_utf8_lossy(data);
    let _ = validate::username(&text);
    let _ = validate::password(&text);
    let _ = validate::pubkey_hex(&text);
    let _ = validate::device_name(&text);
    if let Ok(bytes) = validate::ciphertext(&text) {
        assert_eq!(validate::base64_encode(&bytes), text, "strict base64 is canonical");
    }
});
