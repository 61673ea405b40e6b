//! The command line: where the relay is, how hard to push, for how long, and
//! which scenario to run.

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Load generator for the Kavro relay.
///
/// Creates its own users through the API, drives one scenario at a chosen
/// concurrency for a chosen time, and prints throughput and latency
/// percentiles per operation. Start the relay with KAVRO_RATE_LIMITS=off: the
/// default limits (e.g. 3 registrations per hour) refuse a benchmark at once.
/// `seed` instead fills a relay's database directly (no --url).
#[derive(Parser, Debug, Clone)]
#[command(name = "kavro-bench", version, about, long_about)]
pub struct Cli {
    /// Relay base URL; repeat it for several instances (requests go round-robin).
    /// Required by every scenario but `seed`
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Users to create (usernames `bench_<run>_<i>`)
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Concurrent load tasks (each one request at a time)
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// How long to measure, after the warmup (e.g. 30s, 2m)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring, not counted (connections open, caches warm)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Cap on sends per second across all tasks (0: as fast as the relay answers)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Print the results as JSON on stdout (progress stays on stderr)
    #[arg(long)]
    pub json: bool,
    /// A server process to watch (RSS from /proc/PID/status, CPU); repeatable
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    /// Concurrent requests while creating users (each is an Argon2 hash on the relay)
    #[arg(long, default_value_t = 4)]
    pub setup_concurrency: usize,
    /// Run id in usernames [default: random]
    #[arg(long)]
    pub run_id: Option<String>,
    /// Ciphertext bytes per message
    #[arg(long, default_value_t = crate::payload::DEFAULT_CIPHERTEXT_BYTES)]
    pub message_bytes: usize,
    /// Speak HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1
    #[arg(long)]
    pub http2: bool,
    /// Allow a relay that is not on this machine (loopback only by default)
    #[arg(long)]
    pub allow_remote: bool,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Scenario {
    /// C tasks send ~200-byte messages to random users
    Send {
        /// Undelivered messages put in every inbox before measuring, so the
        /// sends go to recipients with that many pending (e.g. 10000 against
        /// 0: the relay's pending quota must not cost more for a full queue).
        /// Raise the relay's max_pending_per_recipient and
        /// max_pending_per_sender above it, or the fill is refused
        #[arg(long, default_value_t = 0)]
        pending: usize,
    },
    /// Fill every inbox, then C tasks fetch pages of it (no ack)
    Inbox {
        /// Messages put in each inbox before measuring
        #[arg(long, default_value_t = 50)]
        prefill: usize,
        /// Page size of each fetch
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Each task sends, fetches its user's inbox and acknowledges the page
    Mixed {
        /// Page size of each fetch
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Receivers long-poll and ack; senders send them timestamped messages
    Delivery {
        /// Receiving users, each with one long-poll open [default: users / 2]
        #[arg(long)]
        receivers: Option<usize>,
        /// Long-poll wait in seconds (1–60)
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
        wait: u32,
    },
    /// v1 sends with long-poll delivery, then v2 (MLS) group messages to
    /// groups of --group-size devices at the same --rate, in one run: relay
    /// CPU per message, messages/s and delivery latency of each
    Groups {
        /// Devices per group (the sender and its recipients)
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=100))]
        group_size: u32,
        /// Long-poll wait in seconds (1–60)
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
        wait: u32,
        /// Acknowledge each page with its own `POST …/queue/ack` instead of on
        /// the next read (`GET …/queue?ack=`), as clients did before `ack=`
        #[arg(long)]
        separate_acks: bool,
    },
    /// Failed logins of existing vs unknown users, one at a time: does the
    /// time tell which accounts exist? (--duration and --warmup do not apply)
    LoginTiming {
        /// Measured logins of each kind
        #[arg(long, default_value_t = 200)]
        logins: usize,
        /// Wrong passwords per existing account; keep it below the relay's
        /// lockout.failures (5 by default), or a locked account answers 429
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        per_account: u32,
        /// Unmeasured pairs of logins first
        #[arg(long, default_value_t = 10)]
        warmup_logins: usize,
    },
    /// Put users and messages straight into a relay's database (not through
    /// the API); the schema must exist (`kavro-server migrate`)
    Seed {
        /// The relay's database: sqlite://DATA_DIR/kavro.db or postgres://…
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// Users to add (usernames `seed_<run>_<i>`, password as the benchmark users')
        #[arg(long, default_value_t = 1000)]
        users: u64,
        /// Undelivered messages to add, spread over the seeded users' inboxes
        #[arg(long, default_value_t = 1000)]
        messages: u64,
    },
    /// pgbench's plain single-row insert (PostgreSQL's ceiling on this
    /// machine), then the relay's `send` at the same concurrency and
    /// duration: both figures and their ratio, in one run
    Ceiling {
        /// PostgreSQL for pgbench: a user that may create databases (the run
        /// creates its own, kavro_ceiling_<run>, and drops it)
        #[arg(
            long,
            value_name = "URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        pg_url: String,
        /// The pgbench executable
        #[arg(long, value_name = "PATH", default_value = "pgbench")]
        pgbench: std::path::PathBuf,
        /// pgbench worker threads (-j)
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        pgbench_threads: u32,
    },
    /// Hold N idle long-polls open for the duration
    IdlePolls {
        /// Long-polls to hold open at once
        count: usize,
        /// Long-polls per user (the relay's max_long_polls_per_user)
        #[arg(long, default_value_t = 4)]
        per_user: usize,
        /// Long-polls opened per second while ramping up
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        open_rate: u32,
    },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Send { .. } => "send",
            Self::Ceiling { .. } => "ceiling",
            Self::Inbox { .. } => "inbox",
            Self::Mixed { .. } => "mixed",
            Self::Delivery { .. } => "delivery",
            Self::Groups { .. } => "groups",
            Self::IdlePolls { .. } => "idle-polls",
            Self::LoginTiming { .. } => "login-timing",
            Self::Seed { .. } => "seed",
        }
    }
}

impl Cli {
    /// Checks what clap cannot: combinations and ranges. The message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(plan) = self.seed_plan() {
            return crate::seed::validate(&plan);
        }
        if self.urls.is_empty() {
            return Err(
                "give the relay's address with --url (e.g. --url http://127.0.0.1:8000)".into(),
            );
        }
        if let Some(url) = self
            .urls
            .iter()
            .find(|u| !self.allow_remote && !crate::client::is_loopback(u))
        {
            return Err(format!(
                "{url} is not on this machine; kavro-bench targets loopback addresses unless you pass --allow-remote"
            ));
        }
        if self.users < 2 {
            return Err("--users must be at least 2 (messages go to another user)".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be above zero".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a number of sends per second, 0 for no cap".into());
        }
        if self.setup_concurrency == 0 {
            return Err("--setup-concurrency must be at least 1".into());
        }
        if self.message_bytes < crate::payload::STAMP_BYTES
            || self.message_bytes > kavro_proto::validate::MAX_CIPHERTEXT_BYTES
        {
            return Err(format!(
                "--message-bytes must be {} to {}",
                crate::payload::STAMP_BYTES,
                kavro_proto::validate::MAX_CIPHERTEXT_BYTES
            ));
        }
        if let Some(run) = &self.run_id {
            let longest = crate::setup::username(run, self.users_needed().saturating_sub(1));
            kavro_proto::validate::username(&longest).map_err(|e| {
                format!(
                    "--run-id {run:?} makes usernames like {longest:?} that the relay refuses: {e}"
                )
            })?;
        }
        match &self.scenario {
            Scenario::Inbox { limit, .. } | Scenario::Mixed { limit } => check_limit(*limit),
            Scenario::Delivery { receivers, .. } => match receivers {
                Some(r) if *r == 0 || *r >= self.users => Err(format!(
                    "--receivers must be 1 to {} (the other users send)",
                    self.users - 1
                )),
                _ => Ok(()),
            },
            Scenario::IdlePolls {
                count, per_user, ..
            } => {
                if *count == 0 || *per_user == 0 {
                    Err("idle-polls needs a count and --per-user of at least 1".into())
                } else {
                    Ok(())
                }
            }
            Scenario::LoginTiming { logins, .. } if *logins == 0 => {
                Err("login-timing needs --logins of at least 1".into())
            }
            Scenario::Groups { group_size, .. } if self.users < *group_size as usize => Err(
                format!("--users must be at least --group-size ({group_size}): one group at least"),
            ),
            Scenario::Ceiling { pg_url, .. } => {
                if pg_url.starts_with("postgres://") || pg_url.starts_with("postgresql://") {
                    if !self.allow_remote && !crate::client::is_loopback(pg_url) {
                        return Err(format!(
                            "--pg-url {pg_url} is not on this machine; the ceiling is measured on loopback unless you pass --allow-remote"
                        ));
                    }
                    Ok(())
                } else {
                    Err("--pg-url must be a postgres:// URL".into())
                }
            }
            Scenario::Send { .. }
            | Scenario::LoginTiming { .. }
            | Scenario::Seed { .. }
            | Scenario::Groups { .. } => Ok(()),
        }
    }

    /// What `ceiling` runs pgbench with (`None` for the other scenarios).
    pub fn ceiling_plan(&self) -> Option<crate::ceiling::CeilingPlan> {
        match &self.scenario {
            Scenario::Ceiling {
                pg_url,
                pgbench,
                pgbench_threads,
            } => Some(crate::ceiling::CeilingPlan {
                admin_url: pg_url.clone(),
                pgbench: pgbench.clone(),
                threads: *pgbench_threads as usize,
            }),
            _ => None,
        }
    }

    /// What `seed` is to do (`None` for the load scenarios).
    pub fn seed_plan(&self) -> Option<crate::seed::Plan> {
        match &self.scenario {
            Scenario::Seed {
                database_url,
                users,
                messages,
            } => Some(crate::seed::Plan {
                database_url: database_url.clone(),
                users: *users,
                messages: *messages,
                prefix: crate::seed::prefix(
                    &self
                        .run_id
                        .clone()
                        .unwrap_or_else(crate::setup::random_run_id),
                ),
            }),
            _ => None,
        }
    }

    /// Users the scenario needs: `--users`, or more for idle long-polls.
    pub fn users_needed(&self) -> usize {
        match &self.scenario {
            Scenario::IdlePolls {
                count, per_user, ..
            } => self.users.max(count.div_ceil(*per_user)),
            Scenario::LoginTiming {
                logins,
                per_account,
                warmup_logins,
            } => (logins + warmup_logins)
                .div_ceil(*per_account as usize)
                .max(2),
            _ => self.users,
        }
    }

    /// Receivers of the delivery scenario.
    pub fn receivers(&self) -> usize {
        match &self.scenario {
            Scenario::Delivery { receivers, .. } => receivers.unwrap_or((self.users / 2).max(1)),
            _ => 0,
        }
    }

    /// Connections the run keeps open to each instance at most.
    pub fn connections(&self) -> usize {
        match &self.scenario {
            Scenario::IdlePolls { count, .. } => *count,
            Scenario::Delivery { .. } => self.concurrency + self.receivers(),
            Scenario::Groups { .. } => self.concurrency + self.users,
            _ => self.concurrency,
        }
        .max(self.setup_concurrency)
    }
}

fn check_limit(limit: u32) -> Result<(), String> {
    let (min, max) = (
        kavro_proto::validate::INBOX_LIMIT_MIN,
        kavro_proto::validate::INBOX_LIMIT_MAX,
    );
    if (min..=max).contains(&limit) {
        Ok(())
    } else {
        Err(format!("--limit must be {min} to {max}"))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    // A bare number means seconds.
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 30s, 500ms or 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kavro-bench").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults() {
        let cli = parse(&["--url", "http://127.0.0.1:8000", "send"]);
        assert_eq!(cli.urls, ["http://127.0.0.1:8000"]);
        assert_eq!((cli.users, cli.concurrency), (100, 32));
        assert_eq!(cli.duration, Duration::from_secs(30));
        assert_eq!(cli.warmup, Duration::from_secs(2));
        assert!(!cli.json && cli.server_pids.is_empty());
        assert_eq!(cli.scenario, Scenario::Send { pending: 0 });
        let cli = parse(&[
            "--url",
            "http://127.0.0.1:8000",
            "send",
            "--pending",
            "10000",
        ]);
        assert_eq!(cli.scenario, Scenario::Send { pending: 10_000 });
        cli.validate().unwrap();
    }

    #[test]
    fn options_then_scenario_then_its_options() {
        let cli = parse(&[
            "--url",
            "http://127.0.0.1:1",
            "--url",
            "http://127.0.0.1:2",
            "-c",
            "8",
            "--duration",
            "1m",
            "--warmup",
            "500ms",
            "--json",
            "--server-pid",
            "11",
            "--server-pid",
            "12",
            "--users",
            "40",
            "delivery",
            "--receivers",
            "10",
        ]);
        assert_eq!(cli.urls.len(), 2);
        assert_eq!(cli.concurrency, 8);
        assert_eq!(cli.duration, Duration::from_secs(60));
        assert_eq!(cli.warmup, Duration::from_millis(500));
        assert_eq!(cli.server_pids, [11, 12]);
        assert_eq!(cli.receivers(), 10);
        assert_eq!(cli.connections(), 18);
        assert!(cli.json);
        cli.validate().unwrap();
        // Run options go before the scenario: nothing is silently dropped.
        assert!(
            Cli::try_parse_from([
                "kavro-bench",
                "--url",
                "http://127.0.0.1:1",
                "send",
                "--url",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn scenario_options() {
        let cli = parse(&[
            "--url",
            "http://localhost:1",
            "inbox",
            "--prefill",
            "20",
            "--limit",
            "20",
        ]);
        assert_eq!(
            cli.scenario,
            Scenario::Inbox {
                prefill: 20,
                limit: 20
            }
        );
        let cli = parse(&[
            "--url",
            "http://localhost:1",
            "--users",
            "10",
            "idle-polls",
            "10000",
        ]);
        assert_eq!(
            cli.scenario,
            Scenario::IdlePolls {
                count: 10_000,
                per_user: 4,
                open_rate: 1000,
            }
        );
        assert_eq!(cli.users_needed(), 2500);
        assert_eq!(cli.connections(), 10_000);
        let cli = parse(&["--url", "http://localhost:1", "--users", "9", "delivery"]);
        assert_eq!(cli.receivers(), 4);
        let cli = parse(&["--url", "http://localhost:1", "--duration", "5", "mixed"]);
        assert_eq!(cli.duration, Duration::from_secs(5));
        assert_eq!(cli.scenario.name(), "mixed");
    }

    #[test]
    fn refusals_say_what_to_change() {
        let err = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(err(&["send"]).contains("--url"), "--url is required");
        assert!(err(&["--url", "http://10.1.2.3:8000", "send"]).contains("--allow-remote"));
        assert!(err(&["--url", "http://127.0.0.1:1", "--users", "1", "send"]).contains("--users"));
        assert!(err(&["--url", "http://127.0.0.1:1", "-c", "0", "send"]).contains("--concurrency"));
        assert!(
            err(&["--url", "http://127.0.0.1:1", "inbox", "--limit", "500"]).contains("--limit")
        );
        assert!(
            err(&[
                "--url",
                "http://127.0.0.1:1",
                "--users",
                "4",
                "delivery",
                "--receivers",
                "4"
            ])
            .contains("--receivers")
        );
        assert!(
            err(&["--url", "http://127.0.0.1:1", "--run-id", "a b", "send"]).contains("--run-id")
        );
        assert!(
            err(&[
                "--url",
                "http://127.0.0.1:1",
                "--run-id",
                "much_too_long_for_a_name",
                "send"
            ])
            .contains("--run-id")
        );
        assert!(
            Cli::try_parse_from(["kavro-bench", "--url", "x", "--duration", "soon", "send"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["kavro-bench", "--url", "x", "delivery", "--wait", "61"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["kavro-bench", "--url", "x"]).is_err(),
            "a scenario is required"
        );
    }

    #[test]
    fn login_timing_creates_accounts_for_its_attempts() {
        let cli = parse(&["--url", "http://127.0.0.1:1", "login-timing"]);
        assert_eq!(
            cli.scenario,
            Scenario::LoginTiming {
                logins: 200,
                per_account: 4,
                warmup_logins: 10
            }
        );
        // 210 wrong passwords, 4 per account: 53 accounts, whatever --users says.
        assert_eq!(cli.users_needed(), 53);
        cli.validate().unwrap();
        let cli = parse(&[
            "--url",
            "http://127.0.0.1:1",
            "login-timing",
            "--logins",
            "3",
            "--per-account",
            "50",
            "--warmup-logins",
            "0",
        ]);
        assert_eq!(cli.users_needed(), 2);
        assert!(
            Cli::try_parse_from([
                "kavro-bench",
                "--url",
                "x",
                "login-timing",
                "--per-account",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn seed_needs_a_database_not_a_relay() {
        let cli = parse(&[
            "--run-id",
            "s1k",
            "seed",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/kavro_bench",
            "--users",
            "1000",
            "--messages",
            "5000",
        ]);
        cli.validate().unwrap();
        let plan = cli.seed_plan().unwrap();
        assert_eq!((plan.users, plan.messages), (1000, 5000));
        assert_eq!(plan.prefix, "seed_s1k_");
        assert_eq!(cli.scenario.name(), "seed");
        let cli = parse(&["seed", "--database-url", "redis://x"]);
        assert!(cli.validate().unwrap_err().contains("--database-url"));
        assert!(Cli::try_parse_from(["kavro-bench", "seed"]).is_err());
        assert!(
            parse(&["--url", "http://127.0.0.1:1", "send"])
                .seed_plan()
                .is_none()
        );
    }

    #[test]
    fn ceiling_runs_pgbench_on_a_local_postgres() {
        let cli = parse(&[
            "--url",
            "http://127.0.0.1:1",
            "--duration",
            "15s",
            "ceiling",
        ]);
        cli.validate().unwrap();
        let plan = cli.ceiling_plan().unwrap();
        assert_eq!(
            plan.admin_url,
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!((plan.pgbench.to_str(), plan.threads), (Some("pgbench"), 2));
        assert_eq!(cli.connections(), 32);
        assert!(
            parse(&["--url", "http://127.0.0.1:1", "send"])
                .ceiling_plan()
                .is_none()
        );
        let err = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(
            err(&[
                "--url",
                "http://127.0.0.1:1",
                "ceiling",
                "--pg-url",
                "mysql://x"
            ])
            .contains("--pg-url")
        );
        assert!(
            err(&[
                "--url",
                "http://127.0.0.1:1",
                "ceiling",
                "--pg-url",
                "postgres://postgres@192.0.2.1/postgres"
            ])
            .contains("--allow-remote")
        );
        assert!(
            Cli::try_parse_from([
                "kavro-bench",
                "--url",
                "x",
                "ceiling",
                "--pgbench-threads",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn remote_hosts_need_a_flag() {
        let cli = parse(&["--url", "http://192.0.2.1:8000", "--allow-remote", "send"]);
        cli.validate().unwrap();
    }

    #[test]
    fn groups_need_one_full_group() {
        let cli = parse(&[
            "--url",
            "http://127.0.0.1:1",
            "--users",
            "20",
            "groups",
            "--group-size",
            "10",
        ]);
        assert_eq!(
            cli.scenario,
            Scenario::Groups {
                group_size: 10,
                wait: 5,
                separate_acks: false,
            }
        );
        cli.validate().unwrap();
        assert_eq!(cli.connections(), 32 + 20);
        let small = parse(&["--url", "http://127.0.0.1:1", "--users", "5", "groups"]);
        assert!(small.validate().unwrap_err().contains("--group-size"));
        for bad in ["1", "101"] {
            assert!(
                Cli::try_parse_from(["kavro-bench", "--url", "x", "groups", "--group-size", bad])
                    .is_err(),
                "{bad}"
            );
        }
    }
}
