//! The results of a run: one struct, printed as a table for people or as
//! JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::stats::OpSummary;
use crate::sysinfo::ProcessFigures;

/// What was run, against what.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub scenario: String,
    pub urls: Vec<String>,
    pub users: usize,
    pub concurrency: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Sends per second cap; 0 for none.
    pub rate: f64,
    pub message_bytes: usize,
    pub http2: bool,
    pub run_id: String,
    /// Scenario options (prefill, limit, receivers, wait, count, per_user).
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: RunConfig,
    /// From the end of the warmup to the last task's finish.
    pub measured_seconds: f64,
    pub operations: Vec<OpSummary>,
    /// Scenario-specific numbers (messages per fetch, held long-polls, …).
    pub figures: Map<String, Value>,
    pub servers: Vec<ProcessFigures>,
    /// CPU use of kavro-bench itself over the measured window, % of one core.
    pub bench_cpu_percent: Option<f64>,
    pub notes: Vec<String>,
}

impl RunConfig {
    /// The one-line summary of the configuration.
    pub fn line(&self) -> String {
        let mut line = format!(
            "kavro-bench {}: url {}, users {}, concurrency {}, duration {} (+{} warmup)",
            self.scenario,
            self.urls.join(" + "),
            self.users,
            self.concurrency,
            secs(self.duration_s),
            secs(self.warmup_s),
        );
        if self.rate > 0.0 {
            let _ = write!(line, ", rate {}/s", trim_float(self.rate));
        }
        for (key, value) in &self.options {
            let _ = write!(line, ", {} {}", key.replace('_', " "), plain(value));
        }
        if self.http2 {
            line.push_str(", http2");
        }
        let _ = write!(line, ", run {}", self.run_id);
        line
    }
}

/// The human-readable report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.config.line());
    let _ = writeln!(out, "measured {:.2} s", report.measured_seconds);
    let _ = writeln!(out);
    let name_width = report
        .operations
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(0)
        .max("operation".len());
    let _ = writeln!(
        out,
        "{:<name_width$} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "operation", "ops", "ops/s", "p50", "p99", "p99.9", "max", "errors"
    );
    for op in &report.operations {
        let _ = writeln!(
            out,
            "{:<name_width$} {:>9} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>7}",
            op.name,
            op.ops,
            op.ops_per_sec,
            latency(op.p50_us),
            latency(op.p99_us),
            latency(op.p999_us),
            latency(op.max_us),
            op.errors,
        );
    }
    let failing: Vec<&OpSummary> = report
        .operations
        .iter()
        .filter(|o| o.errors > 0 || o.warmup_errors > 0)
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(out, "\nerrors:");
        for op in failing {
            for (kind, count) in &op.errors_by_kind {
                let sample = op.error_samples.get(kind).map_or("", String::as_str);
                let _ = writeln!(out, "  {}: {kind} x{count}  {sample:?}", op.name);
            }
            if op.warmup_errors > 0 {
                let _ = writeln!(
                    out,
                    "  {}: {} during the warmup (not in the table)",
                    op.name, op.warmup_errors
                );
            }
        }
    }
    if !report.figures.is_empty() {
        let _ = writeln!(out);
        for (key, value) in &report.figures {
            let _ = writeln!(out, "{}: {}", key.replace('_', " "), plain(value));
        }
    }
    if !report.servers.is_empty() || report.bench_cpu_percent.is_some() {
        let _ = writeln!(out);
    }
    for server in &report.servers {
        let _ = writeln!(
            out,
            "server pid {}: RSS idle {}, after setup {}, peak under load {}, after {}; CPU {}",
            server.pid,
            mib(server.rss_idle_kib),
            mib(server.rss_ready_kib),
            mib(server.rss_peak_kib),
            mib(server.rss_after_kib),
            cpu(server.cpu_percent),
        );
    }
    if let Some(own) = report.bench_cpu_percent {
        let _ = writeln!(out, "kavro-bench CPU: {}", cpu(Some(own)));
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out);
        for note in &report.notes {
            let _ = writeln!(out, "note: {note}");
        }
    }
    out
}

/// A latency in microseconds, in milliseconds with sensible precision.
pub fn latency(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    match us {
        0 => "-".to_owned(),
        1..10_000 => format!("{ms:.2}ms"),
        10_000..100_000 => format!("{ms:.1}ms"),
        100_000..10_000_000 => format!("{ms:.0}ms"),
        _ => format!("{:.1}s", ms / 1000.0),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "?".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn cpu(percent: Option<f64>) -> String {
    percent.map_or_else(|| "?".to_owned(), |p| format!("{p:.0}% of one core"))
}

fn secs(s: f64) -> String {
    format!("{}s", trim_float(s))
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}").trim_end_matches('0').to_owned()
    }
}

/// A JSON value without quotes around strings; floats to two places.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| format!("{f:.2}")),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Null => "?".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Failure, FailureKind, OpStats};

    fn config() -> RunConfig {
        let mut options = Map::new();
        options.insert("receivers".into(), Value::from(50));
        RunConfig {
            scenario: "delivery".into(),
            urls: vec![
                "http://127.0.0.1:8000".into(),
                "http://127.0.0.1:8001".into(),
            ],
            users: 100,
            concurrency: 32,
            duration_s: 30.0,
            warmup_s: 0.5,
            rate: 200.0,
            message_bytes: 200,
            http2: false,
            run_id: "abc123".into(),
            options,
        }
    }

    #[test]
    fn latencies_are_milliseconds() {
        assert_eq!(latency(0), "-");
        assert_eq!(latency(850), "0.85ms");
        assert_eq!(latency(7_120), "7.12ms");
        assert_eq!(latency(18_240), "18.2ms");
        assert_eq!(latency(250_400), "250ms");
        assert_eq!(latency(30_000_000), "30.0s");
    }

    #[test]
    fn configuration_line() {
        assert_eq!(
            config().line(),
            "kavro-bench delivery: url http://127.0.0.1:8000 + http://127.0.0.1:8001, users 100, \
             concurrency 32, duration 30s (+0.5s warmup), rate 200/s, receivers 50, run abc123"
        );
    }

    #[test]
    fn table_and_errors() {
        let mut send = OpStats::new();
        for us in [900, 1_000, 1_100, 25_000] {
            send.record_micros(us);
        }
        send.fail(
            &Failure::new(FailureKind::Status(500), "Internal server error"),
            true,
        );
        send.fail(
            &Failure::new(FailureKind::Timeout, "operation timed out"),
            false,
        );
        let mut figures = Map::new();
        figures.insert("messages_per_fetch".into(), Value::from(49.5));
        let report = Report {
            config: config(),
            measured_seconds: 2.0,
            operations: vec![
                send.summary("send", 2.0),
                OpStats::new().summary("delivery", 2.0),
            ],
            figures,
            servers: vec![ProcessFigures {
                pid: 42,
                rss_idle_kib: Some(10_240),
                rss_ready_kib: Some(15_360),
                rss_peak_kib: Some(20_480),
                rss_after_kib: None,
                cpu_percent: Some(150.4),
            }],
            bench_cpu_percent: Some(40.0),
            notes: vec!["something to know".into()],
        };
        let text = render(&report);
        let expected = "\
operation       ops      ops/s       p50       p99     p99.9       max  errors
send              4        2.0    1.00ms    25.0ms    25.0ms    25.0ms       1
delivery          0        0.0         -         -         -         -       0

errors:
  send: HTTP 500 x1  \"Internal server error\"
  send: 1 during the warmup (not in the table)

messages per fetch: 49.50

server pid 42: RSS idle 10.0 MiB, after setup 15.0 MiB, peak under load 20.0 MiB, after ?; CPU 150% of one core
kavro-bench CPU: 40% of one core

note: something to know
";
        assert!(text.ends_with(expected), "{text}");
        assert!(text.starts_with("kavro-bench delivery: url "));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["operations"][0]["errors_by_kind"]["HTTP 500"], 1);
        assert_eq!(json["operations"][0]["p99_us"], 25_007);
        assert_eq!(json["servers"][0]["rss_peak_kib"], 20_480);
    }
}
