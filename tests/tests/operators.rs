//! Issue #13 end to end, with the real binaries: `kavro-server admin` and
//! `kavro-server backup` against a running relay, `kavro register --invite`,
//! a backup restored into a fresh data directory whose queued messages the
//! real client reads, and a relay with its own certificate authority
//! (`kavro --ca-cert`).

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kavro_e2e::{Server, ServerOptions, User, binary, eventually};
use serde_json::Value;

/// `kavro-server <args>` on the data directory `data_dir`.
fn server_command(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("kavro-server", "KAVRO_SERVER_BIN"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", data_dir)
        .env("KAVRO_DATA_DIR", data_dir)
        .env("KAVRO_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let output = server_command(data_dir, args);
    assert!(
        output.status.success(),
        "kavro-server {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn invite_relay() -> Server {
    Server::start_with(&ServerOptions {
        env: vec![("KAVRO_REGISTRATION".into(), "invite".into())],
        ..ServerOptions::default()
    })
}

#[test]
fn invites_and_admin_commands_against_a_running_relay() {
    let server = invite_relay();
    let data = server.data_dir.path();
    let alice = User::new("alice", &server.url);

    let refused = alice.exec(&["register", "alice"]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("only with an invite code"),
        "{refused:?}"
    );
    let refused = alice.exec(&["register", "alice", "--invite", "made-up"]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("not valid"), "{refused:?}");

    let code = ok(
        data,
        &[
            "admin",
            "invites",
            "create",
            "--uses",
            "2",
            "--expires",
            "7d",
        ],
    );
    let code = code.trim();
    assert_eq!(code.len(), 32, "{code}");
    let run = alice.exec(&["register", "alice", "--invite", code]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let bob = User::new("bob", &server.url);
    assert_eq!(
        bob.exec(&["register", "bob", "--invite", code]).code,
        Some(0)
    );
    let carol = User::new("carol", &server.url);
    let used_up = carol.exec(&["register", "carol", "--invite", code]);
    assert!(used_up.stderr.contains("not valid"), "{used_up:?}");

    let invites: Value =
        serde_json::from_str(&ok(data, &["admin", "invites", "list", "--json"])).unwrap();
    assert_eq!(invites[0]["uses"], 2);
    assert_eq!(invites[0]["state"], "used up");
    let table = ok(data, &["admin", "invites", "list"]);
    assert!(
        table.contains("2/2") && table.contains("used up"),
        "{table}"
    );
    let revoked = ok(data, &["admin", "invites", "revoke", "1"]);
    assert!(revoked.contains("revoked invite 1"), "{revoked}");

    alice.ok(&["send", "--v1", "bob", "queued for bob"]);
    let users: Value =
        serde_json::from_str(&ok(data, &["admin", "users", "list", "--json"])).unwrap();
    assert_eq!(users[0]["username"], "alice");
    assert_eq!(users[0]["keys"], 1);
    assert_eq!(users[1]["pending_messages"], 1);
    assert!(users[1]["last_seen_at"].is_string());
    let table = ok(data, &["admin", "users", "list"]);
    assert!(
        table.contains("USERNAME") && table.contains("bob"),
        "{table}"
    );

    // Bad input: unknown users and invites, a nonsense --uses; nothing changes.
    for args in [
        &["admin", "users", "disable", "nobody"][..],
        &["admin", "users", "enable", "nobody"],
        &["admin", "users", "delete", "nobody"],
        &["admin", "invites", "revoke", "424242"],
        &["admin", "invites", "create", "--uses", "0"],
    ] {
        let output = server_command(data, args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("kavro-server: "), "{args:?}");
    }
    let output = server_command(data, &["admin", "invites", "create", "--expires", "soon"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // Disabled: bob's session ends (the relay reads it from the database
    // within a second), and logging in is refused.
    ok(data, &["admin", "users", "disable", "bob"]);
    // Polled with `whoami`, which reads nothing: an `inbox` that ran before
    // the relay saw the change would take bob's queued message with it.
    eventually("bob's session ends", Duration::from_secs(10), || {
        bob.exec(&["whoami"]).code == Some(3)
    });
    let login = bob.exec(&["login", "bob"]);
    assert!(login.stderr.contains("disabled"), "{login:?}");
    ok(data, &["admin", "users", "enable", "bob"]);
    bob.ok(&["login", "bob"]);
    let inbox = bob.ok(&["inbox"]);
    assert!(inbox.contains("queued for bob"), "{inbox}");

    let deleted = ok(data, &["admin", "users", "delete", "alice"]);
    assert!(deleted.contains("deleted alice"), "{deleted}");
    eventually("alice's session ends", Duration::from_secs(10), || {
        alice.exec(&["whoami"]).code == Some(3)
    });
    let log = server.log();
    assert!(!log.contains(code), "the code is never logged");
}

#[test]
fn admin_commands_refuse_a_database_without_this_schema() {
    let empty = tempfile::tempdir().unwrap();
    let output = server_command(empty.path(), &["admin", "users", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no database"),
        "{}",
        stderr(&output)
    );
    assert!(!empty.path().join("kavro.db").exists(), "nothing created");

    // An older schema: the newest migration's row removed.
    let server = Server::start();
    let data = server.data_dir.path().to_owned();
    let dir = server.stop();
    let db = data.join("kavro.db");
    let sqlite = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute('DELETE FROM _sqlx_migrations WHERE version=(SELECT max(version) FROM _sqlx_migrations)'); \
             c.commit()",
        ])
        .arg(&db)
        .status();
    if !sqlite.is_ok_and(|s| s.success()) {
        eprintln!("skipped the older-schema case: python3 with sqlite3 is not available");
        return;
    }
    let output = server_command(&data, &["admin", "invites", "create"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("run `kavro-server migrate` first"),
        "{}",
        stderr(&output)
    );
    drop(dir);
}

#[test]
fn a_backup_restores_into_a_fresh_relay_with_the_queued_messages() {
    let server = Server::start();
    let alice = User::new("alice", &server.url);
    alice.ok(&["register", "alice"]);
    let bob = User::new("bob", &server.url);
    bob.ok(&["register", "bob"]);
    alice.ok(&["send", "--v1", "bob", "first, before the backup"]);
    alice.ok(&["send", "--v1", "bob", "second, before the backup"]);

    // While the relay runs.
    let backups = tempfile::tempdir().unwrap();
    let copy = backups.path().join("kavro-backup.db");
    let copy_arg = copy.to_str().unwrap();
    let data = server.data_dir.path().to_owned();
    let written = ok(&data, &["backup", copy_arg]);
    assert!(written.contains("backup written"), "{written}");
    let again = server_command(&data, &["backup", copy_arg]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    alice.ok(&["send", "--v1", "bob", "third, after the backup"]);

    // A fresh data directory: the backup as kavro.db, and the two secrets.
    let address = server.url.trim_start_matches("http://").to_owned();
    let old = server.stop();
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, fresh.path().join("kavro.db")).unwrap();
    for secret in ["jwt.secret", "fernet.key"] {
        std::fs::copy(old.path().join(secret), fresh.path().join(secret)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                fresh.path().join(secret),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
    }
    let restored = Server::start_in(
        fresh,
        &ServerOptions {
            bind: Some(address),
            ..ServerOptions::default()
        },
    );
    assert_eq!(restored.url, bob.server);
    let inbox = bob.ok(&["inbox"]);
    assert!(inbox.contains("first, before the backup"), "{inbox}");
    assert!(inbox.contains("second, before the backup"), "{inbox}");
    assert!(!inbox.contains("third"), "{inbox}");
}

#[test]
fn a_backup_of_postgres_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary("kavro-server", "KAVRO_SERVER_BIN"))
        .args(["backup", dir.path().join("x.db").to_str().unwrap()])
        .env_clear()
        .env("KAVRO_DATA_DIR", dir.path())
        .env("KAVRO_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("pg_dump"), "{}", stderr(&output));
    assert!(stderr(&output).contains("docs/OPERATIONS.md"));
    assert!(!dir.path().join("x.db").exists());
}

/// A CA and a leaf certificate for `localhost` and 127.0.0.1 signed by it:
/// (CA PEM, leaf PEM, leaf key PEM).
fn private_ca() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Kavro test family CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), leaf_key.serialize_pem())
}

#[test]
fn a_relay_with_its_own_certificate_authority() {
    let (ca, leaf, key) = private_ca();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_file, cert_file, key_file) = (
        write("ca.pem", &ca),
        write("relay.pem", &leaf),
        write("relay.key", &key),
    );
    let not_pem = write("not.pem", "just text\n");
    let server = Server::start_with(&ServerOptions {
        env: vec![
            ("KAVRO_TLS_CERT".into(), cert_file),
            ("KAVRO_TLS_KEY".into(), key_file),
        ],
        ..ServerOptions::default()
    });
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let alice = User::new("alice", &server.url);

    // Without the CA: a certificate problem, not "cannot reach".
    let untrusted = alice.exec(&["register", "alice"]);
    assert_eq!(untrusted.code, Some(7), "{untrusted:?}");
    assert!(untrusted.stderr.contains("certificate"), "{untrusted:?}");
    assert!(untrusted.stderr.contains("--ca-cert"), "{untrusted:?}");
    assert!(!untrusted.stderr.contains("cannot reach"), "{untrusted:?}");

    // Bad --ca-cert files are usage errors.
    let missing = alice.exec(&["--ca-cert", "/nonexistent/ca.pem", "register", "alice"]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    let garbage = alice.exec(&["--ca-cert", &not_pem, "register", "alice"]);
    assert_eq!(garbage.code, Some(2), "{garbage:?}");
    assert!(garbage.stderr.contains("no PEM certificate"), "{garbage:?}");

    // With it (flag or environment): everything works.
    let run = alice.exec(&["--ca-cert", &ca_file, "register", "alice"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    // The v2 device was registered over the same trusted connection.
    assert!(!run.stderr.contains("warning"), "{run:?}");
    let devices = alice.exec(&["--ca-cert", &ca_file, "device", "list"]);
    assert_eq!(devices.code, Some(0), "{devices:?}");
    let mut whoami = alice.command(&["whoami"]);
    whoami.env("KAVRO_CA_CERT", &ca_file);
    let output = whoami.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}
