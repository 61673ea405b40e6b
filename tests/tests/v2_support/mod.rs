//! What the Kavro v2 end-to-end tests share: registering, linking a second
//! installation with a code, and reading the MLS lines of `inbox --json`.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use kavro_e2e::{Server, User};
use serde_json::Value;

/// A new account and its first (root) device.
pub fn registered(server: &Server, name: &str) -> User {
    let user = User::new(name, &server.url);
    let run = user.exec(&["--json", "register", name]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("Kavro v2 device"), "{run:?}");
    user
}

/// A second installation of `first`'s account: logs in, asks for a link,
/// `first` approves the code. Returns it and the `device list` of `first`.
pub fn linked(server: &Server, first: &User) -> (User, Vec<Value>) {
    let second = User::new(&first.name, &server.url);
    second.json(&["login", &first.name]);
    let mut link = second
        .command(&["--json", "device", "link", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kavro device link");
    let mut shown = String::new();
    BufReader::new(link.stdout.as_mut().expect("stdout"))
        .read_line(&mut shown)
        .expect("the code line");
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    let code = shown["code"].as_str().expect("a code").to_owned();
    let approved = first.json(&["device", "approve", &code]);
    assert_eq!(approved[0]["fingerprint"], shown["fingerprint"]);
    let status = link.wait().expect("link exits");
    assert!(status.success(), "device link failed");
    let devices = first.json(&["device", "list"]);
    (second, devices)
}

/// The texts `inbox --json` printed for Kavro v2 conversations.
pub fn v2_texts(user: &User) -> Vec<(String, String, String)> {
    user.json(&["inbox"])
        .iter()
        .filter(|m| m["protocol"] == "mls")
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("conversation"), s("from"), s("text"))
        })
        .collect()
}

pub fn line(conversation: &str, from: &str, text: &str) -> (String, String, String) {
    (conversation.to_owned(), from.to_owned(), text.to_owned())
}
