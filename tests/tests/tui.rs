//! The chat app for real: two `kavro` processes in tmux (a private tmux
//! server), against the real relay. Alice types a message, it appears in
//! Bob's app; Bob answers, it appears in Alice's.

use std::process::Command;
use std::time::{Duration, Instant};

use kavro_e2e::{Server, User, skip_unless};

/// A tmux server of our own (`-L`), so nothing touches the user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!("kavro-e2e-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `user`'s chat app in a new 100×30 session.
    fn start(&self, name: &str, user: &User) {
        let command = user.command(&[]);
        let mut line: Vec<String> = command
            .get_envs()
            .filter_map(|(key, value)| {
                Some(format!(
                    "{}='{}'",
                    key.to_string_lossy(),
                    value?.to_string_lossy()
                ))
            })
            .collect();
        line.push(format!("'{}'", command.get_program().to_string_lossy()));
        let line = line.join(" ");
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "30",
            &format!("env -i {line}; echo EXITED $?; sleep 60"),
        ]);
    }

    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until `name`'s screen shows `text`.
    fn wait_for(&self, name: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(name);
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn two_people_chat_in_real_time() {
    let tmux_ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if skip_unless(tmux_ok, "tmux") {
        return;
    }
    let server = Server::start();
    let alice = User::new("alice", &server.url);
    let bob = User::new("bob", &server.url);
    alice.ok(&["register", "alice"]);
    bob.ok(&["register", "bob"]);
    // Bob says hello from a script, so Alice's app opens on his conversation.
    bob.ok(&["send", "--v1", "alice", "hello from bob's script"]);

    let tmux = Tmux::new();
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
