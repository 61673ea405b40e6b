//! The chat app for real: two `kavro` processes in tmux (a private tmux
//! server), against the real relay. Alice types a message, it appears in
//! Bob's app; Bob answers, it appears in Alice's. Bob's account has no Kavro
//! v2 device (registered over the API, logged in with `kavro login`), so the
//! chat is the v1 box, with its sender marks and delivery receipts; a 1:1
//! between two v2 apps (MLS) is `tui_v2.rs`.

use kavro_e2e::tmux::Tmux;
use kavro_e2e::{Server, User, skip_unless};

#[test]
fn two_people_chat_in_real_time() {
    if skip_unless(Tmux::available(), "tmux") {
        return;
    }
    let server = Server::start();
    let alice = User::new("alice", &server.url);
    let bob = User::new("bob", &server.url);
    alice.ok(&["register", "alice"]);
    kavro_e2e::Http::new(&server.url).register("bob", &bob.password);
    bob.ok(&["login", "bob"]);
    // Bob says hello from a script, so Alice's app opens on his conversation.
    bob.ok(&["send", "--v1", "alice", "hello from bob's script"]);

    let tmux = Tmux::new("two");
    tmux.start("alice", &alice);
    tmux.start("bob", &bob);
    tmux.wait_for("alice", "hello from bob's script");
    tmux.wait_for("bob", "alice");

    // Alice types into the chat app; it reaches Bob's app on its own.
    tmux.keys("alice", &["-l", "Hi Bob, typed in the chat app 👋"]);
    tmux.keys("alice", &["Enter"]);
    let alice_screen = tmux.wait_for("alice", "on the relay");
    assert!(
        alice_screen.contains("Hi Bob, typed in the chat app"),
        "{alice_screen}"
    );
    let bob_screen = tmux.wait_for("bob", "Hi Bob, typed in the chat app");
    assert!(
        bob_screen.contains("pinned key, not compared"),
        "{bob_screen}"
    );

    // And back.
    tmux.keys("bob", &["-l", "Got it, Alice!"]);
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("alice", "Got it, Alice!");
    // Alice's first message shows as delivered once Bob's app acknowledged it.
    tmux.wait_for("alice", "✓✓ delivered");

    // Ctrl-Q quits and gives the terminal back.
    tmux.keys("alice", &["C-q"]);
    tmux.wait_for("alice", "EXITED 0");
    // The history outlives the app.
    let history = alice.ok(&["history", "bob"]);
    assert!(history.contains("Got it, Alice!"), "{history}");
}
