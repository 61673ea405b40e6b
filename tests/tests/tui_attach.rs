//! Attachments in the chat app for real: alice and bob registered with the
//! real `kavro` against a real `kavro-server`, both apps in tmux. Alice
//! attaches a file to her 1:1 with bob (Ctrl-T, the path completed with
//! Tab, a caption from the message line); bob's app shows the attachment
//! line, saves it into his downloads directory (the same bytes), and `o`
//! hands it to the opener.

use kavro_e2e::tmux::Tmux;
use kavro_e2e::{Server, User, skip_unless};

fn registered(server: &Server, name: &str) -> User {
    let user = User::new(name, &server.url);
    user.ok(&["register", name]);
    user
}

#[test]
fn alice_attaches_a_file_in_the_app_and_bobs_app_saves_it() {
    if skip_unless(Tmux::available(), "tmux") {
        return;
    }
    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    let files = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(files.path().join("report-2026.bin"), &bytes).expect("write");
    let downloads = tempfile::tempdir().expect("tempdir");
    let record = files.path().join("record.txt");
    // bob's opener records what it was asked to open.
    let opener = files.path().join("opener.sh");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\necho \"$1\" > '{}'\n", record.display()),
    )
    .expect("write");
    let mut permissions = std::fs::metadata(&opener).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&opener, permissions).expect("chmod");

    let tmux = Tmux::new("attach");
    tmux.start("alice", &alice);
    let mut bob_app = bob.command(&[]);
    bob_app
        .env("KAVRO_DOWNLOAD_DIR", downloads.path())
        .env("KAVRO_OPENER", &opener);
    tmux.start_command("bob", &bob_app, (100, 30));
    tmux.wait_for("alice", "online");
    tmux.wait_for("bob", "online");

    // Alice opens bob's conversation and types the caption first.
    tmux.keys("alice", &["C-n"]);
    tmux.wait_for("alice", "New conversation");
    tmux.type_text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "bob · ");
    tmux.type_text("alice", "the yearly numbers");
    // Ctrl-T: the prompt; Tab completes the file's name.
    tmux.keys("alice", &["C-t"]);
    tmux.wait_for("alice", "Attach a file to bob");
    tmux.type_text("alice", &format!("{}/rep", files.path().display()));
    tmux.keys("alice", &["Tab"]);
    tmux.wait_for("alice", "report-2026.bin");
    tmux.keys("alice", &["Enter"]);
    let sent = tmux.wait_for("alice", "↑ sent report-2026.bin (293.0 KiB) · on the relay");
    assert!(sent.contains("the yearly numbers"), "{sent}");

    // Bob's app shows it and saves it without overwriting anything.
    let saved_to = downloads.path().join("report-2026.bin");
    let shown = tmux.wait_for("bob", "↓ received report-2026.bin (293.0 KiB) · saved to");
    assert!(shown.contains("the yearly numbers"), "{shown}");
    assert_eq!(std::fs::read(&saved_to).expect("saved"), bytes);

    // o in the conversation pane (Shift-Tab from the input) opens the
    // newest attachment.
    tmux.keys("bob", &["BTab"]);
    tmux.keys("bob", &["o"]);
    tmux.wait_for("bob", "Opening");
    kavro_e2e::eventually("the opener ran", std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&record).is_ok_and(|p| p.trim() == saved_to.display().to_string())
    });

    // The CLI's list agrees.
    tmux.keys("bob", &["C-q"]);
    tmux.wait_for("bob", "EXITED 0");
    let list = bob.ok(&["attachments"]);
    assert!(list.contains("report-2026.bin"), "{list}");
    assert!(list.contains("saved to"), "{list}");
}
