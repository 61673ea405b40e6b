//! Crash safety: `kill -9` the relay while senders and a reader are busy,
//! restart it on the same data, and check that every message that got a `201`
//! is delivered exactly once, and that nothing acknowledged reappears. Sends
//! whose answer was lost in the crash are retried with the same
//! `client_msg_id`, as our client's outbox does, so they too arrive once.
//! Runs on SQLite, and on PostgreSQL when KAVRO_TEST_DATABASE_URL is set.

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kavro_e2e::{Http, Server, ServerOptions, eventually};
use kavro_server::testing::TestDatabase;
use serde_json::json;

const SENDERS: usize = 4;
const PER_SENDER: usize = 150;

/// Message ids may be handed out again after a crash (a lost SQLite row's
/// id goes to the next send), so every check pairs an id with the content
/// that was sent under it: the ciphertext is the base64 of its
/// `client_msg_id`, unique per send.
#[derive(Default)]
struct Ledger {
    /// client_msg_id -> id, for sends answered 201.
    stored: Mutex<HashMap<String, i64>>,
    /// Sends whose answer never came (connection died).
    unanswered: Mutex<Vec<String>>,
    /// What the reader acknowledged (and got 200 for): id -> ciphertext.
    acked: Mutex<BTreeMap<i64, String>>,
    /// Acks whose answer never came: acknowledged or not, either is right.
    ack_unknown: Mutex<BTreeSet<i64>>,
}

fn ciphertext(client_msg_id: &str) -> String {
    kavro_proto::validate::base64_encode(client_msg_id.as_bytes())
}

fn body(bob_id: i64, client_msg_id: &str) -> serde_json::Value {
    json!({
        "recipient_id": bob_id,
        "ciphertext": ciphertext(client_msg_id),
        "ephemeral_pubkey": "ef".repeat(32),
        "client_msg_id": client_msg_id,
    })
}

/// (id, ciphertext) of an inbox message.
fn id_and_content(message: &serde_json::Value) -> (i64, String) {
    (
        message["id"].as_i64().expect("id"),
        message["ciphertext"]
            .as_str()
            .expect("ciphertext")
            .to_owned(),
    )
}

fn crash_and_recover(options: &ServerOptions) {
    let server = Server::start_with(options);
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let ledger = Arc::new(Ledger::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (url, alice, ledger, sent) = (
                server.url.clone(),
                alice.clone(),
                ledger.clone(),
                sent.clone(),
            );
            std::thread::spawn(move || {
                let http = Http::new(&url);
                for _ in 0..PER_SENDER {
                    let cid = uuid::Uuid::new_v4().to_string();
                    match http.try_post("/messages", Some(&alice), &body(bob_id, &cid)) {
                        Some((201, answer)) => {
                            let id = answer["id"].as_i64().expect("id");
                            ledger.stored.lock().unwrap().insert(cid, id);
                            sent.fetch_add(1, Ordering::SeqCst);
                        }
                        Some((status, answer)) => panic!("unexpected {status}: {answer}"),
                        None => {
                            ledger.unanswered.lock().unwrap().push(cid);
                            return; // the server is gone
                        }
                    }
                }
            })
        })
        .collect();
    // The reader acknowledges whatever it sees while the senders run.
    let reader = {
        let (url, bob, ledger, stop) = (
            server.url.clone(),
            bob.clone(),
            ledger.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let http = Http::new(&url);
            while !stop.load(Ordering::SeqCst) {
                let Some((200, inbox)) =
                    http.try_get("/messages/inbox?limit=20&order=asc", Some(&bob))
                else {
                    return;
                };
                for m in inbox["messages"].as_array().into_iter().flatten() {
                    let (id, content) = id_and_content(m);
                    match http.try_post(&format!("/messages/{id}/ack"), Some(&bob), &json!({})) {
                        Some((200, _)) => {
                            ledger.acked.lock().unwrap().insert(id, content);
                        }
                        Some((status, answer)) => panic!("ack answered {status}: {answer}"),
                        None => {
                            ledger.ack_unknown.lock().unwrap().insert(id);
                            return;
                        }
                    }
                }
            }
        })
    };

    // Crash in the middle of the load.
    eventually(
        "a third of the sends stored",
        Duration::from_secs(120),
        || sent.load(Ordering::SeqCst) >= SENDERS * PER_SENDER / 3,
    );
    let mut server = server;
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.join().expect("sender");
    }
    reader.join().expect("reader");
    let data_dir = server.stop();

    let server = Server::start_in(data_dir, options);
    let http = Http::new(&server.url);
    // The outbox's retry: same client_msg_id.
    let unanswered = ledger.unanswered.lock().unwrap().clone();
    for cid in &unanswered {
        let (status, answer) = http.post("/messages", Some(&alice), &body(bob_id, cid));
        assert_eq!(status, 201, "{answer}");
        ledger
            .stored
            .lock()
            .unwrap()
            .insert(cid.clone(), answer["id"].as_i64().expect("id"));
    }
    let stored = ledger.stored.lock().unwrap().clone();
    let acked = ledger.acked.lock().unwrap().clone();
    let ack_unknown = ledger.ack_unknown.lock().unwrap().clone();
    // What each id was given to: (id, content) as the senders saw it.
    let sent_as: BTreeMap<i64, String> = stored
        .iter()
        .map(|(cid, id)| (*id, ciphertext(cid)))
        .collect();
    assert_eq!(sent_as.len(), stored.len(), "one id was given to two sends");
    for (id, content) in &acked {
        assert_eq!(
            sent_as.get(id),
            Some(content),
            "message {id} was read with other content than was sent under its id"
        );
    }

    // Everything left is delivered once, with its content; nothing
    // acknowledged comes back.
    let delivered: Vec<(i64, String)> = http.drain_inbox(&bob).iter().map(id_and_content).collect();
    let by_id: BTreeMap<i64, String> = delivered.iter().cloned().collect();
    let contents: BTreeSet<&String> = delivered.iter().map(|(_, c)| c).collect();
    assert_eq!(by_id.len(), delivered.len(), "an id was delivered twice");
    assert_eq!(
        contents.len(),
        delivered.len(),
        "a message was delivered twice"
    );
    for (id, content) in &delivered {
        assert_eq!(
            sent_as.get(id),
            Some(content),
            "message {id}: not what was sent under that id (or nobody sent it)"
        );
        assert!(
            !acked.contains_key(id),
            "acknowledged message {id} came back"
        );
    }
    // Sends that reached the database but whose answer was lost come back via
    // their retry (same id), so every 201 not acknowledged is delivered,
    // give or take an ack cut off by the crash.
    let lost: Vec<_> = sent_as
        .keys()
        .filter(|id| !acked.contains_key(id) && !ack_unknown.contains(id))
        .filter(|id| !by_id.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "messages that got a 201 were lost: {lost:?}"
    );
    assert!(
        stored.len() >= SENDERS * PER_SENDER / 3,
        "the crash happened under load"
    );
}

#[test]
fn kill_9_on_sqlite_loses_nothing() {
    crash_and_recover(&ServerOptions::default());
}

#[test]
fn kill_9_on_postgres_loses_nothing() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDatabase::create()) else {
        return;
    };
    let options = ServerOptions {
        env: vec![
            ("KAVRO_DATABASE_URL".to_owned(), db.url.clone()),
            (
                "KAVRO_JWT_SECRET".to_owned(),
                "crash-tests-5e8b1d9f2a7c4360-not-a-real-secret".to_owned(),
            ),
            (
                "KAVRO_FERNET_KEYS".to_owned(),
                kavro_server::fieldcrypt::FieldCrypt::generate_key(),
            ),
        ],
        rate_limits: false,
        ..ServerOptions::default()
    };
    crash_and_recover(&options);
    drop(db);
}
