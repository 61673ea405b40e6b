//! What the operating system says about the processes involved: the server's
//! resident memory and CPU time (from `/proc`), and our own file-descriptor
//! limit (raised through the `rlimit` crate, which owns the `unsafe` call).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Linux reports CPU times in `/proc/*/stat` in USER_HZ ticks, which is 100 on
/// every architecture Linux ships (it is part of the user-space ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Raises our soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The hard `RLIMIT_NOFILE` of this process (for the message when it is too low).
pub fn hard_fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(_, hard)| hard)
}

/// The soft open-files limit of another process (e.g. the server), if readable.
pub fn process_fd_limit(pid: u32) -> Option<u64> {
    let limits = rlimit::ProcLimits::read_process(i32::try_from(pid).ok()?).ok()?;
    limits.max_open_files?.soft_limit
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// User plus system CPU time of `pid` (or `self`) in ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted
/// after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state(3) ppid(4) … utime is the 12th, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Memory and CPU of the server processes (and CPU of this one) over a run.
pub struct Monitor {
    pids: Vec<u32>,
}

/// One reading of every watched process.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub rss_kib: Vec<Option<u64>>,
    pub ticks: Vec<Option<u64>>,
    pub own_ticks: Option<u64>,
}

/// The figures of one server process, as printed and as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub pid: u32,
    /// Before the run (before users are created).
    pub rss_idle_kib: Option<u64>,
    /// After the users were created (and inboxes filled), before the load.
    pub rss_ready_kib: Option<u64>,
    /// Highest reading while load (or the idle long-polls) ran.
    pub rss_peak_kib: Option<u64>,
    /// At the end, after the load stopped.
    pub rss_after_kib: Option<u64>,
    /// CPU use over the measured window, in percent of one core.
    pub cpu_percent: Option<f64>,
}

/// Samples the peak resident memory of each process until stopped.
pub struct PeakSampler {
    peaks: Arc<Vec<AtomicU64>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    pub async fn finish(self) -> Vec<Option<u64>> {
        self.stop.cancel();
        let _ = self.task.await;
        self.peaks
            .iter()
            .map(|p| match p.load(Ordering::Relaxed) {
                0 => None,
                v => Some(v),
            })
            .collect()
    }
}

impl Monitor {
    pub fn new(pids: Vec<u32>) -> Self {
        Self { pids }
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            rss_kib: self.pids.iter().map(|p| rss_kib(*p)).collect(),
            ticks: self
                .pids
                .iter()
                .map(|p| cpu_ticks(&p.to_string()))
                .collect(),
            own_ticks: cpu_ticks("self"),
        }
    }

    /// Starts sampling RSS every `every` (reading /proc is cheap: a few µs).
    pub fn sample_peaks(&self, every: Duration) -> PeakSampler {
        let peaks: Arc<Vec<AtomicU64>> =
            Arc::new(self.pids.iter().map(|_| AtomicU64::new(0)).collect());
        let stop = tokio_util::sync::CancellationToken::new();
        let pids = self.pids.clone();
        let task = {
            let peaks = peaks.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    for (pid, peak) in pids.iter().zip(peaks.iter()) {
                        if let Some(rss) = rss_kib(*pid) {
                            peak.fetch_max(rss, Ordering::Relaxed);
                        }
                    }
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = stop.cancelled() => break,
                    }
                }
            })
        };
        PeakSampler { peaks, stop, task }
    }
}

/// CPU use between two snapshots in percent of one core, per process.
pub fn cpu_percent(from: &Snapshot, to: &Snapshot) -> Vec<Option<f64>> {
    let seconds = to.at.duration_since(from.at).as_secs_f64();
    from.ticks
        .iter()
        .zip(&to.ticks)
        .map(|(a, b)| percent(*a, *b, seconds))
        .collect()
}

/// Our own CPU use between two snapshots in percent of one core.
pub fn own_cpu_percent(from: &Snapshot, to: &Snapshot) -> Option<f64> {
    percent(
        from.own_ticks,
        to.own_ticks,
        to.at.duration_since(from.at).as_secs_f64(),
    )
}

fn percent(a: Option<u64>, b: Option<u64>, seconds: f64) -> Option<f64> {
    let (a, b) = (a?, b?);
    (seconds > 0.0).then(|| b.saturating_sub(a) as f64 / TICKS_PER_SECOND / seconds * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tkavro-server\nVmPeak:\t  900 kB\nVmRSS:\t   23456 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(23456));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces() {
        let stat =
            "1234 (kavro (x) srv) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn our_own_process_is_readable() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks("self").is_some());
        assert!(process_fd_limit(me).is_some());
    }

    #[test]
    fn cpu_percent_of_two_snapshots() {
        let at = Instant::now();
        let from = Snapshot {
            at,
            rss_kib: vec![],
            ticks: vec![Some(100), None],
            own_ticks: Some(0),
        };
        let to = Snapshot {
            at: at + Duration::from_secs(2),
            rss_kib: vec![],
            ticks: vec![Some(400), Some(5)],
            own_ticks: Some(50),
        };
        let cpu = cpu_percent(&from, &to);
        assert!((cpu[0].unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(cpu[1], None);
        assert!((own_cpu_percent(&from, &to).unwrap() - 25.0).abs() < 1e-9);
    }
}
