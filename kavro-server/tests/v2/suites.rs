//! Key packages per ciphersuite (post-quantum groups, issue #12 point 7):
//! a device keeps a classic and a post-quantum stock, each counted, bounded
//! and claimed on its own; an upload mixes no ciphersuites; a suite Kavro
//! does not speak is refused, in a package or in the query.

use openmls::prelude::Ciphersuite;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client::{Client, b64};
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;

const PQ: Ciphersuite = Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519;
const PQ_ID: u16 = 0x004F;

async fn upload(s: &TestServer, c: &Client, body: Value) -> (StatusCode, Value) {
    let path = format!("/v2/devices/{}/key-packages", c.device_id);
    s.post(&path, Some(&c.token), body).await
}

async fn count(s: &TestServer, c: &Client, suite: Option<u16>) -> (StatusCode, Value) {
    let query = suite.map_or(String::new(), |n| format!("?ciphersuite={n}"));
    let path = format!("/v2/devices/{}/key-packages{query}", c.device_id);
    s.get(&path, Some(&c.token)).await
}

/// Claims one of alice's packages of `suite`, as `by`.
async fn claim(s: &TestServer, by: &Client, suite: u16) -> (StatusCode, Value) {
    let path = format!("/v2/users/alice/key-packages/claim?ciphersuite={suite}");
    s.post(&path, Some(&by.token), json!({})).await
}

on_both_databases!(
    key_packages_are_kept_per_ciphersuite,
    |s: TestServer| async move {
        let alice = Client::root(&s, "alice").await;
        let bob = Client::root(&s, "bob").await;
        alice.upload_key_packages(&s, 2).await;
        let (status, body) = upload(
            &s,
            &alice,
            json!({
                "key_packages": [b64(&alice.key_package_in(PQ, false))],
                "last_resort": b64(&alice.key_package_in(PQ, true)),
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(
            (
                &body["remaining"],
                &body["last_resort"],
                &body["ciphersuite"]
            ),
            (&json!(1), &json!(true), &json!(PQ_ID)),
            "the answer counts the uploaded suite"
        );
        let (_, body) = count(&s, &alice, None).await;
        assert_eq!(
            (
                &body["remaining"],
                &body["last_resort"],
                &body["ciphersuite"]
            ),
            (&json!(2), &json!(false), &json!(1)),
            "no suite asked: the classic stock"
        );
        let (_, body) = count(&s, &alice, Some(PQ_ID)).await;
        assert_eq!(
            (&body["remaining"], &body["ciphersuite"]),
            (&json!(1), &json!(PQ_ID))
        );

        // A post-quantum claim hands out the post-quantum package, then its
        // last-resort one; the classic stock is untouched.
        let expected = [(false, PQ_ID), (true, PQ_ID), (false, 1)];
        for (last_resort, suite) in expected {
            let (status, body) = claim(&s, &bob, suite).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let package = &body["key_packages"][0];
            assert_eq!(package["last_resort"], last_resort, "{body}");
            let bytes =
                kavro_proto::validate::base64_strict(package["key_package"].as_str().unwrap())
                    .unwrap();
            let checked = kavro_proto::v2::mls::check_key_package(
                &bytes,
                &kavro_proto::v2::link::SignatureKey::from_bytes(alice.signer.public()).unwrap(),
                u64::try_from(chrono::Utc::now().timestamp()).unwrap(),
            )
            .unwrap();
            assert_eq!(checked.ciphersuite, suite);
        }
        let (_, body) = count(&s, &alice, None).await;
        assert_eq!(body["remaining"], 1, "one classic package taken, one left");

        // Refused: mixed suites in one upload (nothing stored), a suite Kavro
        // does not speak, in a package or in the query.
        let other = alice.key_package_in(
            Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
            false,
        );
        for (body, field) in [
            (
                json!({"key_packages": [
                    b64(&alice.key_package(false)),
                    b64(&alice.key_package_in(PQ, false)),
                ]}),
                "key_packages[1]",
            ),
            (
                json!({"key_packages": [b64(&alice.key_package(false))],
                       "last_resort": b64(&alice.key_package_in(PQ, true))}),
                "last_resort",
            ),
            (json!({"key_packages": [b64(&other)]}), "key_packages[0]"),
        ] {
            let (status, answer) = upload(&s, &alice, body).await;
            assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(answer["details"][0]["field"], field, "{answer}");
        }
        let (_, body) = count(&s, &alice, None).await;
        assert_eq!(body["remaining"], 1, "nothing half-stored");
        for path in [
            format!("/v2/devices/{}/key-packages?ciphersuite=2", alice.device_id),
            format!(
                "/v2/devices/{}/key-packages?ciphersuite=70000",
                alice.device_id
            ),
        ] {
            let (status, answer) = s.get(&path, Some(&alice.token)).await;
            assert!(status.is_client_error(), "{path}: {status} {answer}");
        }
        let (status, answer) = claim(&s, &bob, 3).await;
        assert_eq!(
            assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY),
            answer["error"].as_str().unwrap()
        );
        assert_eq!(answer["details"][0]["field"], "ciphersuite", "{answer}");
    }
);
