//! Property-based fuzzing of the relay from its own OpenAPI spec with
//! schemathesis (from PyPI; `.ci/run` installs it): every route, every check,
//! a bounded number of examples, a fixed seed. Zero failures, and no 500.

use std::path::Path;
use std::process::Command;

use kavro_e2e::{Http, Server, ServerOptions, skip_unless};

fn schemathesis_available() -> bool {
    Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `st run` with `args`; returns (success, output).
fn schemathesis(server: &Server, token: &str, args: &[&str]) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemathesis.toml");
    let report_dir = server.data_dir.path().join("schemathesis-report");
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--seed",
            "20261129",
        ])
        .args(["--generation-deterministic", "--request-timeout", "20"])
        .arg("--report-dir")
        .arg(&report_dir)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(args)
        .current_dir(server.data_dir.path())
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn every_route_passes_every_check() {
    if skip_unless(
        schemathesis_available(),
        "schemathesis (pip install schemathesis)",
    ) {
        return;
    }
    let server = Server::start_with(&ServerOptions {
        // Long-polls are capped at one second so generated `wait` values do not stall the run.
        env: vec![("KAVRO_MAX_WAIT".to_owned(), "1s".to_owned())],
        rate_limits: false,
    });
    let http = Http::new(&server.url);
    let (token, _) = http.register("fuzzer", "Fuzz-passw0rd");
    // Everything but the routes that end the session (or the account), with
    // a token that stays valid.
    let (ok, output) = schemathesis(
        &server,
        &token,
        &[
            "--exclude-path",
            "/auth/logout",
            "--exclude-path",
            "/auth/logout-all",
            "--exclude-path",
            "/auth/password",
            "--exclude-operation-id",
            "delete_account",
        ],
    );
    assert!(ok, "schemathesis found problems:\n{output}");
    // Each of those on its own, with its own account (they revoke the token
    // they are given, or close the account).
    let delete_only: &[&str] = &[
        "--include-operation-id",
        "delete_account",
        // With only DELETE selected, schemathesis takes GET /auth/me (which
        // the spec has, and the run above checks) for an undeclared method.
        "--exclude-checks",
        "unsupported_method",
    ];
    for (i, filter) in [
        &["--include-path", "/auth/logout"][..],
        &["--include-path", "/auth/logout-all"],
        &["--include-path", "/auth/password"],
        delete_only,
    ]
    .iter()
    .enumerate()
    {
        let (own_token, _) = http.register(&format!("fuzzer{}", i + 2), "Fuzz-passw0rd");
        let (ok, output) = schemathesis(&server, &own_token, filter);
        assert!(ok, "schemathesis found problems with {filter:?}:\n{output}");
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        !log.contains("internal error"),
        "the server answered 500:\n{log}"
    );
}
