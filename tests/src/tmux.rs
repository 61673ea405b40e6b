//! A private tmux server (`-L`) for driving chat apps: start a `kavro`
//! app in a session of its own, type into it, and poll its screen until
//! it shows something (with a deadline, never a fixed sleep). Nothing
//! touches the user's own tmux sessions.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::User;

/// How long a screen may take to show what a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server named after this process (and `tag`, for tests that run at
    /// the same time in one binary).
    pub fn new(tag: &str) -> Self {
        Self {
            socket: format!("kavro-e2e-{}-{tag}", std::process::id()),
        }
    }

    /// Whether tmux is installed.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `user`'s chat app in a new 100×30 session.
    pub fn start(&self, name: &str, user: &User) {
        self.start_command(name, &user.command(&[]), (100, 30));
    }

    /// Starts `command` (with only its own environment) in a new session of
    /// `size` columns × rows; the pane stays a minute after it exits.
    pub fn start_command(&self, name: &str, command: &Command, size: (u16, u16)) {
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
        line.extend(
            command
                .get_args()
                .map(|a| format!("'{}'", a.to_string_lossy())),
        );
        let line = line.join(" ");
        let (width, height) = (size.0.to_string(), size.1.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width,
            "-y",
            &height,
            &format!("env -i {line}; echo EXITED $?; sleep 60"),
        ]);
    }

    pub fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    pub fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally.
    pub fn type_text(&self, name: &str, text: &str) {
        self.keys(name, &["-l", text]);
    }

    /// Waits until `name`'s screen shows `text`; returns that screen.
    pub fn wait_for(&self, name: &str, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
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
