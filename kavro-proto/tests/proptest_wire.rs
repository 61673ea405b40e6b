//! The wire types, generated from their own fields: every value serialises to
//! the contract's JSON (the wire names, optional fields left out when unset),
//! parses back to the same value, and a request body missing a required
//! field or carrying a wrong type is refused with an error, never a panic.
//! Arbitrary bytes never panic either, and the input rules accept exactly
//! what they document.

// Helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use kavro_proto::api::{
    BatchAck, BatchAckResponse, Credentials, DeliveryState, DeliveryStatus, Device, Devices,
    ErrorBody, FieldError, Health, Inbox, InboxMessage, Me, PublishKey, Ready, SendMessage,
    SendResponse, StatusResponse, TokenResponse, UserInfo,
};
use kavro_proto::ids::{DeviceId, MessageId, UserId};
use kavro_proto::validate;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `value` serialises to exactly `expected`, and parses back to a value that
/// serialises the same way.
fn wire_form<T: Serialize + DeserializeOwned>(value: &T, expected: &Value) {
    let text = serde_json::to_string(value).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&written, expected, "the wire form");
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &serde_json::to_value(&back).unwrap(),
        expected,
        "parsed back"
    );
}

/// Every required field of a request body is required: without it, or with
/// a value of the wrong JSON type, the body is refused.
fn required_fields<T: DeserializeOwned>(body: &Value, required: &[&str]) {
    assert!(serde_json::from_value::<T>(body.clone()).is_ok(), "{body}");
    for field in required {
        let mut missing = body.clone();
        missing.as_object_mut().unwrap().remove(*field);
        assert!(
            serde_json::from_value::<T>(missing).is_err(),
            "{field} missing from {body}"
        );
        let mut wrong = body.clone();
        wrong[*field] = if body[*field].is_string() {
            json!(17)
        } else {
            json!({"not": "this"})
        };
        assert!(
            serde_json::from_value::<T>(wrong).is_err(),
            "{field} of the wrong type in {body}"
        );
    }
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..8_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
}

/// Any JSON value, a few levels deep (for `metadata`).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Quarters print exactly, so the text parses back to the same number.
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 4.0)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn device() -> impl Strategy<Value = Device> {
    (
        any::<i64>(),
        any::<i64>(),
        "[0-9a-f]{64}",
        prop::option::of(".{0,64}"),
        time(),
    )
        .prop_map(
            |(id, user_id, identity_pubkey, device_name, created_at)| Device {
                id: DeviceId(id),
                user_id: UserId(user_id),
                identity_pubkey,
                device_name,
                created_at,
            },
        )
}

fn device_json(d: &Device) -> Value {
    json!({
        "id": d.id.0,
        "user_id": d.user_id.0,
        "identity_pubkey": d.identity_pubkey,
        "device_name": d.device_name,
        "created_at": d.created_at,
    })
}

fn inbox_message() -> impl Strategy<Value = InboxMessage> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>()),
        "[A-Za-z0-9+/]{0,40}={0,2}",
        "[0-9a-f]{64}",
        prop::option::of(json_value()),
        time(),
    )
        .prop_map(
            |((id, sender, recipient), ciphertext, ephemeral_pubkey, metadata, created_at)| {
                InboxMessage {
                    id: MessageId(id),
                    sender_id: UserId(sender),
                    recipient_id: UserId(recipient),
                    ciphertext,
                    ephemeral_pubkey,
                    metadata,
                    created_at,
                }
            },
        )
}

fn inbox_message_json(m: &InboxMessage) -> Value {
    json!({
        "id": m.id.0,
        "sender_id": m.sender_id.0,
        "recipient_id": m.recipient_id.0,
        "ciphertext": m.ciphertext,
        "ephemeral_pubkey": m.ephemeral_pubkey,
        "metadata": m.metadata,
        "created_at": m.created_at,
    })
}

fn delivery_state() -> impl Strategy<Value = (DeliveryState, &'static str)> {
    prop::sample::select(vec![
        (DeliveryState::Pending, "pending"),
        (DeliveryState::Delivered, "delivered"),
        (DeliveryState::Expired, "expired"),
    ])
}

proptest! {
    #[test]
    fn requests_have_their_wire_form(
        username in ".{0,40}",
        password in ".{0,140}",
        identity_pubkey in ".{0,70}",
        device_name in prop::option::of(".{0,70}"),
        recipient in any::<i64>(),
        ciphertext in ".{0,60}",
        metadata in prop::option::of(json_value()),
        client_msg_id in prop::option::of(any::<u128>().prop_map(uuid::Uuid::from_u128)),
        ids in prop::collection::vec(any::<i64>(), 0..8),
    ) {
        // Requests parse leniently (any string): the server answers rule
        // violations with 422 details, so the text must survive unchanged.
        let credentials = Credentials {
            username: username.as_str().into(),
            password: password.as_str().into(),
        };
        let body = json!({"username": username, "password": password});
        wire_form(&credentials, &body);
        required_fields::<Credentials>(&body, &["username", "password"]);

        let publish = PublishKey {
            identity_pubkey: identity_pubkey.as_str().into(),
            device_name: device_name.as_deref().map(Into::into),
        };
        let mut body = json!({"identity_pubkey": identity_pubkey});
        if let Some(name) = &device_name {
            body["device_name"] = json!(name);
        }
        wire_form(&publish, &body);
        required_fields::<PublishKey>(&body, &["identity_pubkey"]);

        // `metadata: null` is "no metadata": it is left out, as when absent.
        let metadata = metadata.filter(|m| !m.is_null());
        let send = SendMessage {
            recipient_id: UserId(recipient),
            ciphertext: ciphertext.as_str().into(),
            ephemeral_pubkey: identity_pubkey.as_str().into(),
            metadata: metadata.clone(),
            client_msg_id,
        };
        let mut body = json!({
            "recipient_id": recipient,
            "ciphertext": ciphertext,
            "ephemeral_pubkey": identity_pubkey,
        });
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        if let Some(id) = client_msg_id {
            body["client_msg_id"] = json!(id.to_string());
        }
        wire_form(&send, &body);
        required_fields::<SendMessage>(&body, &["recipient_id", "ciphertext", "ephemeral_pubkey"]);

        let ack = BatchAck { ids: ids.iter().copied().map(MessageId).collect() };
        let body = json!({"ids": ids});
        wire_form(&ack, &body);
        required_fields::<BatchAck>(&body, &["ids"]);
    }

    #[test]
    fn responses_have_their_wire_form(
        devices in prop::collection::vec(device(), 0..4),
        messages in prop::collection::vec(inbox_message(), 0..4),
        (state, state_name) in delivery_state(),
        delivered_at in prop::option::of(time()),
        (id, count) in (any::<i64>(), any::<u64>()),
        text in ".{0,30}",
        details in prop::option::of(prop::collection::vec((".{0,10}", ".{0,20}"), 0..3)),
        status_code in 100u16..600,
        (long_poll, long_poll_max_wait) in (any::<bool>(), 0u32..=60),
    ) {
        let list = Devices { devices: devices.clone() };
        let device_list: Vec<Value> = devices.iter().map(device_json).collect();
        wire_form(&list, &json!({"devices": device_list}));
        let user = UserInfo { user_id: UserId(id), username: text.clone(), devices };
        wire_form(&user, &json!({"user_id": id, "username": text, "devices": device_list}));

        let inbox = Inbox { messages: messages.clone() };
        let message_list: Vec<Value> = messages.iter().map(inbox_message_json).collect();
        wire_form(&inbox, &json!({"messages": message_list}));
        // Optional fields of a response are written as null, and read back.
        if let Some(first) = messages.first().filter(|m| m.metadata.is_none()) {
            prop_assert_eq!(&serde_json::to_value(first).unwrap()["metadata"], &Value::Null);
        }

        let status = DeliveryStatus { status: state, delivered_at };
        wire_form(&status, &json!({"status": state_name, "delivered_at": delivered_at}));

        wire_form(&Me { user_id: UserId(id), username: text.clone() },
            &json!({"user_id": id, "username": text}));
        wire_form(&SendResponse { status: text.clone(), id: MessageId(id) },
            &json!({"status": text, "id": id}));
        wire_form(&StatusResponse { status: text.clone() }, &json!({"status": text}));
        wire_form(&BatchAckResponse { acknowledged: count }, &json!({"acknowledged": count}));
        wire_form(&TokenResponse { access_token: text.clone(), token_type: "bearer".into() },
            &json!({"access_token": text, "token_type": "bearer"}));
        wire_form(&Health { status: text.clone(), service: "kavro".into(), version: text.clone() },
            &json!({"status": text, "service": "kavro", "version": text}));
        let ready = Ready {
            status: text.clone(),
            database: text.clone(),
            redis: text.clone(),
            long_poll,
            long_poll_max_wait,
        };
        wire_form(&ready, &json!({
            "status": text, "database": text, "redis": text,
            "long_poll": long_poll, "long_poll_max_wait": long_poll_max_wait,
        }));

        let error = ErrorBody {
            error: text.clone(),
            details: details.as_ref().map(|d| d.iter().map(|(field, message)| FieldError {
                field: field.clone(),
                message: message.clone(),
            }).collect()),
            status_code,
        };
        let mut body = json!({"error": text, "status_code": status_code});
        if let Some(details) = &details {
            let details: Vec<Value> = details.iter()
                .map(|(field, message)| json!({"field": field, "message": message}))
                .collect();
            body["details"] = json!(details);
        }
        wire_form(&error, &body);
    }

    /// A `/ready` from a relay older than `long_poll_max_wait` still parses.
    #[test]
    fn ready_without_max_wait_parses(long_poll in any::<bool>()) {
        let ready: Ready = serde_json::from_value(json!({
            "status": "ready", "database": "ok", "redis": "ok", "long_poll": long_poll,
        })).unwrap();
        prop_assert_eq!((ready.long_poll, ready.long_poll_max_wait), (long_poll, 0));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Credentials>(&bytes);
        let _ = serde_json::from_slice::<PublishKey>(&bytes);
        let _ = serde_json::from_slice::<SendMessage>(&bytes);
        let _ = serde_json::from_slice::<BatchAck>(&bytes);
        let _ = serde_json::from_slice::<Inbox>(&bytes);
        let _ = serde_json::from_slice::<UserInfo>(&bytes);
        let _ = serde_json::from_slice::<DeliveryStatus>(&bytes);
        let _ = serde_json::from_slice::<ErrorBody>(&bytes);
        let _ = serde_json::from_slice::<Ready>(&bytes);
    }

    #[test]
    fn usernames_follow_the_rule(
        good in "[A-Za-z0-9_-]{3,30}",
        short in "[A-Za-z0-9_-]{0,2}",
        long in "[A-Za-z0-9_-]{31,40}",
        (head, bad, tail) in ("[a-z]{1,10}", "[^A-Za-z0-9_-]", "[a-z]{1,10}"),
    ) {
        prop_assert!(validate::username(&good).is_ok());
        prop_assert!(validate::username(&short).is_err());
        prop_assert!(validate::username(&long).is_err());
        let with_bad = format!("{head}{bad}{tail}");
        prop_assert!(validate::username(&with_bad).is_err(), "{}", with_bad);
    }

    #[test]
    fn passwords_follow_the_rule(
        (upper, lower, digit) in ("[A-Z]", "[a-z]", "[0-9]"),
        rest in "[a-z]{5,100}",
        dropped in 0usize..3,
    ) {
        let good = format!("{upper}{rest}{digit}{lower}");
        prop_assert!(validate::password(&good).is_ok(), "{}", good);
        // Without one of the three classes, it is refused and named.
        let classes = [upper.clone(), lower.clone(), digit.clone()];
        let kept: String = classes.iter().enumerate()
            .filter(|(i, _)| *i != dropped)
            .map(|(_, c)| c.as_str())
            .collect();
        let filler = if dropped == 1 { "XXXXXXXX" } else { "xxxxxxxx" };
        let missing = ["an uppercase letter", "a lowercase letter", "a digit"][dropped];
        let err = validate::password(&format!("{kept}{filler}")).unwrap_err();
        prop_assert!(err.contains(missing), "{}: {}", missing, err);
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
