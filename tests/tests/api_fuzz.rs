//! Property-based fuzzing of the relay from its own OpenAPI spec with
//! schemathesis (from PyPI; `.ci/run` installs it): every route at both
//! mounts (`/` and `/api/v1`, each from its own spec), every check, a bounded
//! number of examples, a fixed seed. Zero failures, and no 500. The second
//! mount is the same handlers behind another prefix, so it gets fewer
//! examples and no stateful phase: what it adds is the prefix's routing and
//! error rendering.
//!
//! One worker: with two threads, CPython 3.11.7's `ast.parse` (which
//! Hypothesis calls to describe filters) fails now and then with
//! "SystemError: AST constructor recursion depth mismatch".

use std::path::Path;
use std::process::Command;

use kavro_e2e::{Http, Server, ServerOptions, skip_unless};

fn schemathesis_available() -> bool {
    Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Which spec and how hard: the mount's prefix, test cases per operation,
/// and the phases to run.
type Mount = (&'static str, u32, &'static str);

const MOUNTS: [Mount; 2] = [
    ("", 25, "examples,coverage,fuzzing,stateful"),
    ("/api/v1", 10, "examples,coverage,fuzzing"),
];

/// Arguments that leave out the routes ending the session or the account.
const SESSION_ENDING_EXCLUDED: &[&str] = &[
    "--exclude-path",
    "/auth/logout",
    "--exclude-path",
    "/auth/logout-all",
    "--exclude-path",
    "/auth/password",
    "--exclude-operation-id",
    "delete_account",
];

/// Each session-ending route on its own (one operation per filter).
const SESSION_ENDING: [&[&str]; 4] = [
    &["--include-path", "/auth/logout"],
    &["--include-path", "/auth/logout-all"],
    &["--include-path", "/auth/password"],
    // With only DELETE selected, schemathesis takes GET /auth/me (which the
    // spec has, and the main run checks) for an undeclared method.
    &[
        "--include-operation-id",
        "delete_account",
        "--exclude-checks",
        "unsupported_method",
    ],
];

/// Runs `st run` against one mount's spec with `args`; returns (success, output).
fn schemathesis(
    server: &Server,
    token: &str,
    (mount, examples, phases): Mount,
    args: &[&str],
) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemathesis.toml");
    let report_dir = server.data_dir.path().join("schemathesis-report");
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{}{mount}/openapi.json", server.url))
        .args(["--checks", "all", "--max-examples", &examples.to_string()])
        .args(["--phases", phases])
        .args(["--workers", "1", "--seed", "20261129"])
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
        ..ServerOptions::default()
    });
    let http = Http::new(&server.url);
    for (i, mount) in MOUNTS.into_iter().enumerate() {
        let (_, spec) = http.get(&format!("{}/openapi.json", mount.0), None);
        let operations: usize = spec["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|item| item.as_object().map_or(0, serde_json::Map::len))
            .sum();
        let (token, _) = http.register(&format!("fuzzer{i}"), "Fuzz-passw0rd");
        // Everything but the routes that end the session (or the account),
        // with a token that stays valid.
        let (ok, output) = schemathesis(&server, &token, mount, SESSION_ENDING_EXCLUDED);
        assert!(ok, "schemathesis found problems at {mount:?}:\n{output}");
        let expected = operations - SESSION_ENDING.len();
        assert!(
            output.contains(&format!("Tested: {expected}\n")),
            "every operation but the session-ending ones was tested at {mount:?}:\n{output}"
        );
        // Each of those on its own, with its own account (they revoke the
        // token they are given, or close the account).
        for (j, filter) in SESSION_ENDING.iter().enumerate() {
            let (own_token, _) = http.register(&format!("fuzzer{i}x{j}"), "Fuzz-passw0rd");
            let (ok, output) = schemathesis(&server, &own_token, mount, filter);
            assert!(
                ok,
                "schemathesis found problems with {filter:?} at {mount:?}:\n{output}"
            );
            assert!(
                output.contains("Tested: 1\n"),
                "{filter:?} was tested at {mount:?}: {output}"
            );
        }
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        !log.contains("internal error"),
        "the server answered 500:\n{log}"
    );
}
