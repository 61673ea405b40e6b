//! The `kavro` executable as a process: what a script sees of usage errors,
//! help and completions (exit codes and streams), without a relay.
//!
//! Being an integration test of this package also makes `cargo test
//! --workspace` build the `kavro` binary that the end-to-end tests in
//! `tests/` run.

use std::process::{Command, Output};

fn kavro(args: &[&str]) -> Output {
    let empty = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_kavro"))
        .args(args)
        .env("KAVRO_CONFIG_DIR", empty.path().join("config"))
        .env("KAVRO_DATA_DIR", empty.path().join("data"))
        .env("KAVRO_SERVER", "http://127.0.0.1:9")
        .env_remove("KAVRO_PROFILE")
        .env_remove("KAVRO_PASSWORD")
        .output()
        .expect("run kavro")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_of_every_command_exits_0_on_stdout() {
    for command in [
        "register",
        "login",
        "logout",
        "whoami",
        "send",
        "inbox",
        "history",
        "contacts",
        "fingerprint",
        "trust",
        "completions",
    ] {
        let out = kavro(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "kavro {command} --help");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("Usage: kavro {command}")),
            "{command}: {stdout}"
        );
    }
    let out = kavro(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("the chat app"));
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong_on_stderr() {
    for (args, says) in [
        (&["sned", "bob"][..], "unrecognized subcommand"),
        (&["send"][..], "<USERNAME>"),
        (&["inbox", "--limit", "many"][..], "--limit"),
        (&["--server"][..], "--server"),
        (&["completions", "cmd.exe"][..], "cmd.exe"),
    ] {
        let out = kavro(args);
        assert_eq!(out.status.code(), Some(2), "kavro {args:?}");
        assert!(out.stdout.is_empty(), "kavro {args:?}: nothing on stdout");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "kavro {args:?}: {stderr}");
    }
}

#[test]
fn completions_are_scripts_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kavro"),
        ("fish", "complete -c kavro"),
    ] {
        let out = kavro(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains(marker), "{shell}");
    }
}

#[test]
fn commands_that_need_an_account_exit_3_before_touching_the_network() {
    for args in [&["whoami"][..], &["inbox"][..], &["send", "bob", "hi"][..]] {
        let out = kavro(args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "kavro {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("kavro login"),
            "says what to do next: {}",
            text(&out.stderr)
        );
    }
}
