//! kavro-bench: a load generator for the Kavro relay.
//!
//! It creates its own users through the public API, drives one scenario
//! (sends, inbox fetches, a send/fetch/ack mix, long-poll delivery, or idle
//! long-polls) with a fixed number of concurrent tasks for a fixed time, and
//! reports throughput and latency percentiles per operation, errors by
//! status, and optionally the relay's memory and CPU. It also measures the
//! timing of failed logins (`login-timing`), and seeds a relay's database
//! with many users and messages directly (`seed`), and puts the relay's sends
//! next to pgbench's plain insert on the same machine (`ceiling`). Method and figures:
//! `docs/BENCHMARKS.md`.
#![forbid(unsafe_code)]

pub mod ceiling;
pub mod cli;
pub mod client;
pub mod payload;
pub mod report;
pub mod scenarios;
pub mod seed;
pub mod setup;
pub mod stats;
pub mod sysinfo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Map, Value, json};

use crate::cli::{Cli, Scenario};
use crate::client::Instance;
use crate::report::{Report, RunConfig};
use crate::scenarios::{Ctx, measured_seconds};
use crate::stats::Window;
use crate::sysinfo::{Monitor, ProcessFigures};

/// File descriptors kept free for everything but the benchmark's connections.
const SPARE_FDS: u64 = 64;

/// Runs the benchmark `cli` describes and returns its report.
pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    cli.validate().map_err(anyhow::Error::msg)?;
    if cli.seed_plan().is_some() {
        bail!("`seed` is not a load scenario: run it with kavro_bench::seed::run");
    }
    check_fd_limits(&cli)?;
    let instances: Vec<Instance> = cli
        .urls
        .iter()
        .map(|url| Instance::new(url, cli.connections(), cli.http2))
        .collect::<anyhow::Result<_>>()?;
    setup::check_reachable(&instances).await?;

    let monitor = Monitor::new(cli.server_pids.clone());
    let idle = monitor.snapshot();
    let run_id = cli.run_id.clone().unwrap_or_else(setup::random_run_id);
    let user_count = cli.users_needed();
    eprintln!(
        "kavro-bench {}: run {run_id}, creating {user_count} users on {}",
        cli.scenario.name(),
        cli.urls.join(" + ")
    );
    let users = setup::create_users(&instances, &run_id, user_count, cli.setup_concurrency).await?;
    if let Scenario::Inbox { prefill, .. } | Scenario::Send { pending: prefill } = cli.scenario
        && prefill > 0
    {
        setup::fill_inboxes(
            &instances,
            &users,
            prefill,
            cli.concurrency,
            cli.message_bytes,
        )
        .await?;
    }

    let ceiling = match cli.ceiling_plan() {
        Some(plan) => {
            eprintln!(
                "pgbench: plain single-row inserts, {} clients, {} …",
                cli.concurrency,
                humantime::format_duration(cli.duration)
            );
            Some(
                ceiling::measure(
                    &plan,
                    &run_id,
                    cli.concurrency,
                    cli.duration,
                    cli.message_bytes,
                )
                .await?,
            )
        }
        None => None,
    };

    let ready = monitor.snapshot();

    let warmup = match cli.scenario {
        Scenario::IdlePolls { .. } | Scenario::LoginTiming { .. } => Duration::ZERO,
        _ => cli.warmup,
    };
    let window = Window::new(Instant::now(), warmup, cli.duration);
    let ctx = Ctx {
        instances: Arc::new(instances),
        users: Arc::new(users),
        window,
        concurrency: cli.concurrency,
        rate: cli.rate,
        message_bytes: cli.message_bytes,
    };
    let peaks = monitor.sample_peaks(Duration::from_millis(100));
    let at_measure = {
        let monitor = Monitor::new(cli.server_pids.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(window.measure_from.into()).await;
            monitor.snapshot()
        })
    };
    eprintln!(
        "running {} for {} (+{} warmup)…",
        cli.scenario.name(),
        humantime::format_duration(cli.duration),
        humantime::format_duration(warmup)
    );
    let outcome = match cli.scenario {
        Scenario::Send { .. } | Scenario::Ceiling { .. } => scenarios::send::run(ctx).await,
        Scenario::Inbox { limit, .. } => scenarios::inbox::run(ctx, limit).await,
        Scenario::Mixed { limit } => scenarios::mixed::run(ctx, limit).await,
        Scenario::Delivery { wait, .. } => {
            scenarios::delivery::run(ctx, cli.receivers(), wait).await
        }
        Scenario::Groups {
            group_size,
            wait,
            separate_acks,
        } => {
            scenarios::groups::run(
                ctx,
                group_size as usize,
                (wait, separate_acks),
                &monitor,
                cli.warmup,
                cli.duration,
            )
            .await?
        }
        Scenario::IdlePolls {
            count,
            per_user,
            open_rate,
        } => scenarios::idle::run(ctx, count, per_user, open_rate, &monitor, cli.duration).await,
        Scenario::LoginTiming {
            logins,
            per_account,
            warmup_logins,
        } => scenarios::login_timing::run(ctx, logins, per_account as usize, warmup_logins).await,
        Scenario::Seed { .. } => unreachable!("refused above"),
    };
    let at_end = monitor.snapshot();
    let peak = peaks.finish().await;
    let start = at_measure.await.unwrap_or_else(|_| idle.clone());
    // Give the relay a moment after the last request before reading "after".
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = monitor.snapshot();

    let cpu = sysinfo::cpu_percent(&start, &at_end);
    let servers: Vec<ProcessFigures> = monitor
        .pids()
        .iter()
        .enumerate()
        .map(|(i, pid)| ProcessFigures {
            pid: *pid,
            rss_idle_kib: idle.rss_kib[i],
            rss_ready_kib: ready.rss_kib[i],
            rss_peak_kib: peak[i],
            rss_after_kib: after.rss_kib[i],
            cpu_percent: cpu[i],
        })
        .collect();
    let seconds = measured_seconds(&window, outcome.finished);
    let operations = outcome.recorder.summaries(seconds);
    let mut figures = outcome.figures;
    if let Some(pgbench) = &ceiling {
        let sends = operations
            .iter()
            .find(|o| o.name == scenarios::send::SEND)
            .map_or(0.0, |o| o.ops_per_sec);
        figures.extend(pgbench.figures(sends, cli.concurrency));
    }
    let bench_cpu_percent = sysinfo::own_cpu_percent(&start, &at_end);
    let notes = notes(&operations, bench_cpu_percent, &servers);
    Ok(Report {
        config: RunConfig {
            scenario: cli.scenario.name().to_owned(),
            urls: cli.urls.clone(),
            users: user_count,
            concurrency: cli.concurrency,
            duration_s: cli.duration.as_secs_f64(),
            warmup_s: warmup.as_secs_f64(),
            rate: cli.rate,
            message_bytes: cli.message_bytes,
            http2: cli.http2,
            run_id,
            options: options(&cli),
        },
        measured_seconds: seconds,
        operations,
        figures,
        servers,
        bench_cpu_percent,
        notes,
    })
}

fn options(cli: &Cli) -> Map<String, Value> {
    let mut map = Map::new();
    match &cli.scenario {
        Scenario::Seed { .. } => {}
        Scenario::Ceiling {
            pgbench_threads, ..
        } => {
            map.insert("pgbench_threads".into(), json!(pgbench_threads));
        }
        Scenario::Send { pending } => {
            map.insert("pending".into(), json!(pending));
        }
        Scenario::Inbox { prefill, limit } => {
            map.insert("prefill".into(), json!(prefill));
            map.insert("limit".into(), json!(limit));
        }
        Scenario::Mixed { limit } => {
            map.insert("limit".into(), json!(limit));
        }
        Scenario::Delivery { wait, .. } => {
            map.insert("receivers".into(), json!(cli.receivers()));
            map.insert("wait".into(), json!(wait));
        }
        Scenario::Groups {
            group_size,
            wait,
            separate_acks,
        } => {
            map.insert("group_size".into(), json!(group_size));
            map.insert("wait".into(), json!(wait));
            map.insert("separate_acks".into(), json!(separate_acks));
        }
        Scenario::IdlePolls {
            count,
            per_user,
            open_rate,
        } => {
            map.insert("long_polls".into(), json!(count));
            map.insert("per_user".into(), json!(per_user));
            map.insert("open_rate".into(), json!(open_rate));
        }
        Scenario::LoginTiming {
            logins,
            per_account,
            warmup_logins,
        } => {
            map.insert("logins".into(), json!(logins));
            map.insert("per_account".into(), json!(per_account));
            map.insert("warmup_logins".into(), json!(warmup_logins));
        }
    }
    map
}

/// Raises our open-files limit and refuses a run that cannot get its
/// connections; warns when a watched server's limit looks too low.
fn check_fd_limits(cli: &Cli) -> anyhow::Result<()> {
    let soft = sysinfo::raise_fd_limit().unwrap_or(0);
    let connections = (cli.connections() * cli.urls.len()) as u64;
    let needed = connections + SPARE_FDS;
    if soft > 0 && needed > soft {
        let hard = sysinfo::hard_fd_limit().map_or_else(|| "?".to_owned(), |h| h.to_string());
        bail!(
            "this run needs about {needed} open files ({connections} connections), but this \
             process may open only {soft} (hard limit {hard}). Lower the count, or raise the \
             limit: as root `ulimit -Hn {needed}` in the shell that starts kavro-bench \
             (or LimitNOFILE= for a systemd unit)"
        );
    }
    for pid in &cli.server_pids {
        let per_instance = cli.connections() as u64 + SPARE_FDS;
        if let Some(limit) = sysinfo::process_fd_limit(*pid)
            && limit < per_instance
        {
            eprintln!(
                "warning: server pid {pid} may open only {limit} files, but this run \
                 holds about {per_instance} connections to it: expect refused connections. \
                 Start it with a higher limit (ulimit -n {per_instance}, or LimitNOFILE= in systemd)."
            );
        }
    }
    Ok(())
}

/// Things the reader should know to trust (or not) the figures.
fn notes(
    operations: &[stats::OpSummary],
    bench_cpu: Option<f64>,
    servers: &[ProcessFigures],
) -> Vec<String> {
    let mut notes = Vec::new();
    let limited = |o: &&stats::OpSummary| o.errors_by_kind.contains_key("HTTP 429");
    if operations
        .iter()
        .filter(limited)
        .any(|o| o.name == scenarios::login_timing::EXISTING)
    {
        notes.push(
            "a login answered 429: the account lockout (lockout.failures, 5 by default) or the \
             login rate limit; use --per-account below lockout.failures, and KAVRO_RATE_LIMITS=off"
                .to_owned(),
        );
    } else if operations.iter().any(|o| limited(&o)) {
        notes.push(
            "the relay answered 429 (rate limited): start it with KAVRO_RATE_LIMITS=off for \
             benchmarks (a 429 on long-polls is max_long_polls_per_user)"
                .to_owned(),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if let Some(own) = bench_cpu {
        let server: f64 = servers.iter().filter_map(|s| s.cpu_percent).sum();
        if own + server > 90.0 * cores as f64 {
            notes.push(format!(
                "the machine was CPU-bound ({own:.0}% kavro-bench + {server:.0}% relay of \
                 {cores} cores): the relay and the generator compete; figures are a floor"
            ));
        }
    }
    notes
}
