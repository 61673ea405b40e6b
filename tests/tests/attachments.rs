//! Attachments with the real binaries (issue #14): `kavro send USER|#GROUP
//! --file` seals and uploads, `kavro inbox` saves what came (checked, never
//! over an existing file), `kavro attachments` lists both sides; a missing
//! file, a recipient not known to run Kavro and a file over the relay's cap
//! are refused before anything is uploaded. A Kavro recipient without v2
//! devices gets files in a v1 file envelope.

use std::path::Path;
use std::process::Output;

use kavro_e2e::{Server, User};
use serde_json::Value;

fn registered(server: &Server, name: &str) -> User {
    let user = User::new(name, &server.url);
    user.ok(&["register", name]);
    user
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `kavro --json inbox` saving into `dir`; its JSON lines.
fn inbox_into(user: &User, dir: &Path) -> Vec<Value> {
    let output = user
        .command(&["--json", "inbox"])
        .env("KAVRO_DOWNLOAD_DIR", dir)
        .output()
        .expect("run kavro");
    assert!(output.status.success(), "{output:?}");
    json_lines(&output)
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[test]
fn files_go_through_one_to_one_and_groups_and_bad_ones_are_refused() {
    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    let carol = registered(&server, "carol");
    let files = tempfile::tempdir().expect("temp dir");
    let downloads = tempfile::tempdir().expect("temp dir");

    // 1:1 over MLS, with a caption; about 300 KiB (several segments).
    let report = files.path().join("report.pdf");
    let plain = sample(300 * 1024 + 7);
    std::fs::write(&report, &plain).expect("write");
    let path = report.to_str().expect("utf-8 path");
    let sent = alice.json(&["send", "bob", "--file", path, "--caption", "the numbers"]);
    assert_eq!(
        (&sent[0]["file"], &sent[0]["size"], &sent[0]["protocol"]),
        (
            &Value::from("report.pdf"),
            &Value::from(plain.len()),
            &Value::from("mls")
        ),
        "{sent:?}"
    );
    // bob already has a report.pdf: the new one is saved beside it.
    std::fs::write(downloads.path().join("report.pdf"), b"bob's own").expect("write");
    let got = inbox_into(&bob, downloads.path());
    let text = got
        .iter()
        .find(|l| l.get("text").is_some())
        .expect("the file line");
    assert!(
        text["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[file] report.pdf") && t.ends_with("the numbers")),
        "{got:?}"
    );
    let saved = got.iter().find(|l| l["state"] == "saved").expect("saved");
    let saved_to = downloads.path().join("report (1).pdf");
    assert_eq!(
        saved["saved_to"],
        Value::from(saved_to.to_str().expect("utf-8"))
    );
    assert_eq!(std::fs::read(&saved_to).expect("saved file"), plain);
    assert_eq!(
        std::fs::read(downloads.path().join("report.pdf")).expect("bob's file"),
        b"bob's own"
    );

    // A group of three: both others save it.
    alice.json(&[
        "group", "create", "team", "--member", "bob", "--member", "carol",
    ]);
    let photo = files.path().join("photo.png");
    std::fs::write(&photo, sample(1000)).expect("write");
    alice.json(&["send", "#team", "--file", photo.to_str().expect("utf-8")]);
    for user in [&bob, &carol] {
        let dir = tempfile::tempdir().expect("temp dir");
        let got = inbox_into(user, dir.path());
        assert!(got.iter().any(|l| l["state"] == "saved"), "{got:?}");
        assert_eq!(
            std::fs::read(dir.path().join("photo.png")).expect("saved"),
            sample(1000)
        );
    }
    let listed = bob.json(&["attachments"]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|a| a["state"] == "saved"), "{listed:?}");
    assert_eq!(listed[1]["media_type"], "image/png");
    let own = alice.json(&["attachments"]);
    assert!(
        own.iter()
            .all(|a| a["state"] == "sent" && a["outgoing"] == true),
        "{own:?}"
    );

    // Refused before any upload: a missing file, a directory, a recipient
    // without v2 devices who never sent alice a Kavro envelope, a file over
    // the relay's cap.
    let missing = files.path().join("nope.txt");
    let run = alice.exec(&["send", "bob", "--file", missing.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("nope.txt"), "{run:?}");
    let dave = User::new("dave", &server.url);
    kavro_e2e::Http::new(&server.url).register("dave", &dave.password);
    let run = alice.exec(&["send", "dave", "--file", path]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("cannot receive files"), "{run:?}");
    let big = files.path().join("big.iso");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(101 * 1024 * 1024))
        .expect("sparse file");
    let run = alice.exec(&["send", "bob", "--file", big.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("100 MiB"), "{run:?}");
    let run = alice.exec(&["send", "bob", "text", "--file", path]);
    assert_eq!(run.code, Some(2), "TEXT and --file together: {run:?}");
}

/// A Kavro client that is no v2 device (logged in on a fresh installation:
/// only `register` makes one): files reach it in v1 file envelopes once it
/// has sent the sender an authenticated message; before that, the send is
/// refused with the reason and exit code 2, nothing uploaded.
#[test]
fn a_v1_only_kavro_recipient_saves_a_file_and_an_unknown_one_is_refused() {
    let server = Server::start();
    let alice = registered(&server, "alice");
    let erin = User::new("erin", &server.url);
    kavro_e2e::Http::new(&server.url).register("erin", &erin.password);
    erin.ok(&["login", "erin"]);
    let files = tempfile::tempdir().expect("temp dir");
    let notes = files.path().join("notes.txt");
    let plain = sample(70 * 1024 + 3);
    std::fs::write(&notes, &plain).expect("write");
    let path = notes.to_str().expect("utf-8 path");

    // erin never sent alice anything: she may be a legacy client.
    let run = alice.exec(&["send", "erin", "--file", path]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("erin has not sent you an authenticated Kavro message")
            && run.stderr.contains("cannot receive files"),
        "{run:?}"
    );
    assert!(alice.json(&["attachments"]).is_empty());

    // erin writes (over v1: she has no v2 device); alice reads it.
    let sent = erin.json(&["send", "alice", "hello from v1"]);
    assert_eq!(sent[0]["state"], "stored", "{sent:?}");
    alice.ok(&["inbox"]);

    let sent = alice.json(&["send", "erin", "--file", path, "--caption", "read me"]);
    assert_eq!(
        (&sent[0]["protocol"], &sent[0]["file"], &sent[0]["size"]),
        (
            &Value::from("v1"),
            &Value::from("notes.txt"),
            &Value::from(plain.len())
        ),
        "{sent:?}"
    );
    let downloads = tempfile::tempdir().expect("temp dir");
    let got = inbox_into(&erin, downloads.path());
    assert!(
        got.iter().any(|l| l["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[file] notes.txt") && t.ends_with("read me"))),
        "{got:?}"
    );
    let saved = got.iter().find(|l| l["state"] == "saved").expect("saved");
    assert_eq!(saved["protocol"], "v1");
    assert_eq!(
        std::fs::read(downloads.path().join("notes.txt")).expect("saved file"),
        plain
    );
    let listed = erin.json(&["attachments"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            &listed[0]["state"],
            &listed[0]["from"],
            &listed[0]["caption"]
        ),
        (
            &Value::from("saved"),
            &Value::from("alice"),
            &Value::from("read me")
        )
    );
    let own = alice.json(&["attachments"]);
    assert!(
        own.iter()
            .any(|a| a["state"] == "sent" && a["to"] == "erin"),
        "{own:?}"
    );
    let history = erin.ok(&["history", "alice"]);
    assert!(history.contains("[file] notes.txt"), "{history}");
    // Saved once: the next inbox saves nothing again.
    let again = inbox_into(&erin, downloads.path());
    assert!(!again.iter().any(|l| l.get("state").is_some()), "{again:?}");
}
