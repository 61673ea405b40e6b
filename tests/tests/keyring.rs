//! The OS keyring path for real: the Secret Service of a gnome-keyring
//! daemon in a private D-Bus session (`dbus-run-session`). Without a chosen
//! key store, `kavro register` probes the keyring, keeps the identity key
//! there and records it; outside that session the keyring is gone, and kavro
//! refuses clearly instead of creating a new identity.
//!
//! Needs `dbus-run-session` and `gnome-keyring-daemon` (Debian: `dbus`,
//! `gnome-keyring`). Skipped with a printed reason when they are missing,
//! unless `KAVRO_REQUIRE_SERVICES=1` (CI installs them).

use std::process::Command;

use kavro_e2e::{Run, Server, User, binary};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `user`'s environment, without `KAVRO_KEY_STORE` (so kavro chooses).
fn choosing(user: &User, program: &str) -> Command {
    let base = user.command(&[]);
    let mut command = Command::new(program);
    command.env_clear();
    for (key, value) in base.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command.env_remove("KAVRO_KEY_STORE");
    command
}

#[test]
fn the_identity_key_lives_in_the_os_keyring() {
    let available = have("dbus-run-session") && have("gnome-keyring-daemon");
    if kavro_e2e::skip_unless(available, "dbus-run-session and gnome-keyring-daemon") {
        return;
    }
    let server = Server::start();
    let user = User::new("kate", &server.url);
    let script = "printf 'kavro-test-keyring' | gnome-keyring-daemon --unlock --components=secrets >/dev/null \
                  && \"$KAVRO\" --json register kate && \"$KAVRO\" --json whoami";
    let output = choosing(&user, "dbus-run-session")
        .env("KAVRO", binary("kavro", "KAVRO_BIN"))
        .args(["--", "sh", "-c", script])
        .output()
        .expect("dbus-run-session");
    let run = Run::from_output(&output);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines[0]["key_store"], "keyring", "{run:?}");
    assert_eq!(lines[1]["key_store"], "keyring", "{run:?}");
    assert!(
        !run.stderr.contains("no usable OS keyring"),
        "the keyring worked, so no fallback notice: {run:?}"
    );
    assert!(!user.secrets_file().exists(), "nothing in the key file");

    // Outside the D-Bus session there is no keyring: a clear error, and no
    // new identity is generated behind the user's back.
    let output = choosing(&user, binary("kavro", "KAVRO_BIN").to_str().expect("path"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .arg("whoami")
        .output()
        .expect("kavro whoami");
    let run = Run::from_output(&output);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("OS keyring"), "{run:?}");
    assert!(
        run.stderr.contains("will not create a new identity"),
        "{run:?}"
    );
    assert!(!user.secrets_file().exists());
    let config =
        std::fs::read_to_string(user.config_dir.path().join("profiles").join("default.toml"))
            .expect("profile");
    assert!(config.contains("key_store = \"keyring\""), "{config}");
}
