//! What a load task records: per-operation latency histograms (microseconds,
//! HdrHistogram), error counts by kind, and the measurement window that decides
//! which operations count.
//!
//! Every task owns its own [`Recorder`] (no shared state on the hot path); the
//! runner merges them once at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant figures kept by the histograms: 0.1 % resolution.
const SIGFIG: u8 = 3;
// hdrhistogram takes 0 to 5 significant figures.
const _: () = assert!(SIGFIG <= 5);

/// The phases of a run: operations that *start* before `measure_from` are the
/// warmup and are not counted; no task starts an operation at or after `end`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When load started; also the epoch of the timestamps embedded in messages.
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let measure_from = start + warmup;
        Self {
            start,
            measure_from,
            end: measure_from + duration,
        }
    }

    /// Whether a task may start another operation now.
    pub fn open(&self) -> bool {
        Instant::now() < self.end
    }

    /// Whether an operation started at `started` is measured.
    pub fn measured(&self, started: Instant) -> bool {
        started >= self.measure_from
    }
}

/// Why an operation failed. Ordered so reports list them stably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The relay answered with an unexpected HTTP status.
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// The TCP connection could not be made (server down, out of ports or file descriptors).
    Connect,
    /// The connection broke, or the request could not be sent.
    Transport,
    /// A success status with a body we could not read.
    BadBody,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "HTTP {code}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Connect => f.write_str("connect"),
            Self::Transport => f.write_str("transport"),
            Self::BadBody => f.write_str("bad body"),
        }
    }
}

/// A failed operation: its kind and a short description (the relay's error
/// text, or the client error), kept once per kind as a sample.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// One operation's figures from one or more tasks.
#[derive(Debug, Clone)]
pub struct OpStats {
    latency: Histogram<u64>,
    errors: BTreeMap<FailureKind, u64>,
    samples: BTreeMap<FailureKind, String>,
    warmup_errors: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

impl OpStats {
    pub fn new() -> Self {
        // Auto-resizing: small until a slow outlier needs a wider range.
        let latency = Histogram::new(SIGFIG).expect("SIGFIG is within 0..=5 (asserted above)");
        Self {
            latency,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            warmup_errors: 0,
        }
    }

    /// A completed operation that took `elapsed`.
    pub fn record(&mut self, elapsed: Duration) {
        self.record_micros(micros(elapsed));
    }

    /// A completed operation that took `micros` microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        let value = micros.max(1);
        // `record` grows the histogram; `saturating_record` would clamp to
        // its current (small) range instead.
        if self.latency.record(value).is_err() {
            self.latency.saturating_record(value);
        }
    }

    /// A failed operation; `measured` is false during the warmup, where
    /// failures are still counted (separately), never dropped.
    pub fn fail(&mut self, failure: &Failure, measured: bool) {
        if measured {
            *self.errors.entry(failure.kind).or_default() += 1;
        } else {
            self.warmup_errors += 1;
        }
        self.samples
            .entry(failure.kind)
            .or_insert_with(|| truncate(&failure.detail, 160));
    }

    /// Records the outcome of an operation started at `started`.
    pub fn outcome<T>(&mut self, window: &Window, started: Instant, result: &Result<T, Failure>) {
        let measured = window.measured(started);
        match result {
            Ok(_) if measured => self.record(started.elapsed()),
            Ok(_) => {}
            Err(failure) => self.fail(failure, measured),
        }
    }

    pub fn merge(&mut self, other: &Self) {
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.latency.add(&other.latency);
        for (kind, count) in &other.errors {
            *self.errors.entry(*kind).or_default() += count;
        }
        for (kind, sample) in &other.samples {
            self.samples.entry(*kind).or_insert_with(|| sample.clone());
        }
        self.warmup_errors += other.warmup_errors;
    }

    /// Completed (successful, measured) operations.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The figures of this operation over `seconds` of measurement.
    pub fn summary(&self, name: &str, seconds: f64) -> OpSummary {
        let h = &self.latency;
        let empty = h.is_empty();
        let q = |quantile: f64| {
            if empty {
                0
            } else {
                h.value_at_quantile(quantile)
            }
        };
        OpSummary {
            name: name.to_owned(),
            ops: h.len(),
            ops_per_sec: if seconds > 0.0 {
                h.len() as f64 / seconds
            } else {
                0.0
            },
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
            mean_us: if empty { 0.0 } else { h.mean() },
            errors: self.error_count(),
            errors_by_kind: self
                .errors
                .iter()
                .map(|(kind, n)| (kind.to_string(), *n))
                .collect(),
            error_samples: self
                .samples
                .iter()
                .map(|(kind, s)| (kind.to_string(), s.clone()))
                .collect(),
            warmup_errors: self.warmup_errors,
        }
    }
}

/// The per-operation figures of a run, as printed and as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub name: String,
    /// Successful operations in the measured window.
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// Failed operations in the measured window.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first error message seen for each kind.
    pub error_samples: BTreeMap<String, String>,
    /// Failures during the warmup (not in `errors`).
    pub warmup_errors: u64,
}

/// The operations of one task (or, merged, of a whole run), in first-use order.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    ops: Vec<(&'static str, OpStats)>,
}

impl Recorder {
    /// A recorder that lists `names` in this order even if some never ran.
    pub fn with_ops(names: &[&'static str]) -> Self {
        Self {
            ops: names.iter().map(|n| (*n, OpStats::new())).collect(),
        }
    }

    /// The figures of operation `name` (a handful per scenario: a linear scan is cheapest).
    pub fn op(&mut self, name: &'static str) -> &mut OpStats {
        let index = self
            .ops
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| {
                self.ops.push((name, OpStats::new()));
                self.ops.len() - 1
            });
        &mut self.ops[index].1
    }

    pub fn merge(&mut self, other: &Self) {
        for (name, stats) in &other.ops {
            self.op(name).merge(stats);
        }
    }

    pub fn get(&self, name: &str) -> Option<&OpStats> {
        self.ops.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    pub fn summaries(&self, seconds: f64) -> Vec<OpSummary> {
        self.ops
            .iter()
            .map(|(name, stats)| stats.summary(name, seconds))
            .collect()
    }
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut stats = OpStats::new();
        for us in 1..=1000 {
            stats.record_micros(us);
        }
        let s = stats.summary("send", 2.0);
        assert_eq!(s.ops, 1000);
        assert!((s.ops_per_sec - 500.0).abs() < f64::EPSILON);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 0.5);
    }

    #[test]
    fn empty_summary_is_zero_not_a_panic() {
        let s = OpStats::new().summary("ack", 0.0);
        assert_eq!((s.ops, s.p50_us, s.max_us, s.errors), (0, 0, 0, 0));
        assert!(s.ops_per_sec.abs() < f64::EPSILON);
    }

    #[test]
    fn errors_are_counted_by_kind_and_sampled_once() {
        let mut stats = OpStats::new();
        stats.fail(
            &Failure::new(FailureKind::Status(500), "Internal error"),
            true,
        );
        stats.fail(&Failure::new(FailureKind::Status(500), "other text"), true);
        stats.fail(&Failure::new(FailureKind::Timeout, ""), true);
        stats.fail(&Failure::new(FailureKind::Connect, "refused"), false);
        let s = stats.summary("send", 1.0);
        assert_eq!(s.errors, 3);
        assert_eq!(s.warmup_errors, 1);
        assert_eq!(s.errors_by_kind["HTTP 500"], 2);
        assert_eq!(s.errors_by_kind["timeout"], 1);
        assert_eq!(s.error_samples["HTTP 500"], "Internal error");
    }

    #[test]
    fn merge_adds_counts_and_keeps_order() {
        let mut a = Recorder::with_ops(&["send", "fetch"]);
        a.op("send").record_micros(10);
        let mut b = Recorder::default();
        b.op("ack").record_micros(30);
        b.op("send").record_micros(20);
        b.op("send")
            .fail(&Failure::new(FailureKind::Status(429), "slow down"), true);
        a.merge(&b);
        let names: Vec<_> = a.summaries(1.0).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["send", "fetch", "ack"]);
        let send = a.get("send").unwrap().summary("send", 1.0);
        assert_eq!((send.ops, send.errors, send.max_us), (2, 1, 20));
    }

    #[test]
    fn warmup_outcomes_are_not_measured() {
        let start = Instant::now();
        let window = Window::new(start, Duration::from_secs(3600), Duration::from_secs(1));
        let mut stats = OpStats::new();
        stats.outcome::<()>(&window, Instant::now(), &Ok(()));
        stats.outcome::<()>(
            &window,
            Instant::now(),
            &Err(Failure::new(FailureKind::Transport, "reset")),
        );
        assert_eq!(stats.count(), 0);
        assert_eq!(stats.summary("x", 1.0).warmup_errors, 1);
        assert!(window.open());
        assert!(!window.measured(start));
    }

    #[test]
    fn long_error_text_is_truncated() {
        let mut stats = OpStats::new();
        stats.fail(
            &Failure::new(FailureKind::Status(500), "x".repeat(500)),
            true,
        );
        let sample = &stats.summary("s", 1.0).error_samples["HTTP 500"];
        assert_eq!(sample.chars().count(), 161);
    }
}
