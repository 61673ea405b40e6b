//! `kavro-server`: the relay's command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kavro_server::config::{Config, FlagOverrides, LogFormat, Toggle};
use poem::listener::Acceptor as _;
use tracing_subscriber::EnvFilter;

mod admin_cli;
mod allocator;

/// mimalloc instead of glibc malloc: glibc kept the freed 19 MiB Argon2
/// buffers in per-thread arenas (RSS grew past 2 GiB after a few hundred
/// logins) and its malloc/free were ~12 % of the relay's CPU under load.
/// Figures in docs/BENCHMARKS.md. Its settings: [`allocator`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Kavro relay: stores only opaque ciphertext between end-to-end encrypted clients.
///
/// With no options it runs the embedded default (SQLite in the data directory,
/// in-process counters) on http://127.0.0.1:8000. Every setting can come from a
/// TOML file (--config), a KAVRO_* environment variable, or a flag; see
/// assets/server.example.toml.
#[derive(Parser, Debug)]
#[command(name = "kavro-server", version, about, long_about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "KAVRO_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [env: KAVRO_BIND] [default: 127.0.0.1:8000]
    #[arg(long, global = true)]
    bind: Option<std::net::SocketAddr>,
    /// Data directory (embedded database, generated secrets) [env: KAVRO_DATA_DIR]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://… [env: KAVRO_DATABASE_URL, DATABASE_URL]
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// redis://… for shared counters and wake-ups [env: KAVRO_REDIS_URL, REDIS_URL]
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Where attachment blobs live: s3://bucket/prefix, or empty for DATA_DIR/blobs [env: KAVRO_BLOB_URL]
    #[arg(long, global = true)]
    blob_url: Option<String>,
    /// Seed nodes of a Redis Cluster, comma separated, instead of --redis-url [env: KAVRO_REDIS_CLUSTER]
    #[arg(long, global = true, value_delimiter = ',')]
    redis_cluster: Option<Vec<String>>,
    /// Log format [env: KAVRO_LOG_FORMAT]
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormatArg>,
    /// Log filter, e.g. `info` or `kavro_server=debug` [env: KAVRO_LOG_LEVEL]
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// `off` disables every request rate limit (benchmarks); the lockout stays [env: KAVRO_RATE_LIMITS]
    #[arg(long, value_enum, global = true)]
    rate_limits: Option<ToggleArg>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the relay (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a new JWT secret and Fernet key for a shared (PostgreSQL) deployment.
    GenSecrets,
    /// Print the effective configuration (secrets redacted) and exit.
    CheckConfig,
    /// Manage accounts and invite codes on the configured database (works
    /// while the relay runs; never migrates).
    #[command(subcommand)]
    Admin(admin_cli::AdminCommand),
    /// Copy the embedded database to PATH while the relay runs (SQLite only;
    /// PostgreSQL: see docs/OPERATIONS.md).
    Backup {
        /// A file that does not exist yet.
        path: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ToggleArg {
    On,
    Off,
}

impl Cli {
    fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            bind: self.bind,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            blob_url: self.blob_url.clone(),
            redis_cluster: self.redis_cluster.clone(),
            log_format: self.log_format.map(|f| match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            }),
            log_level: self.log_level.clone(),
            rate_limits: self.rate_limits.map(|t| match t {
                ToggleArg::On => Toggle::On,
                ToggleArg::Off => Toggle::Off,
            }),
        }
    }
}

fn main() -> ExitCode {
    allocator::apply();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("kavro-server: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("kavro-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("kavro-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    // One TLS provider for everything that speaks TLS (sqlx, redis, our listener).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match command {
        Command::GenSecrets => {
            let jwt = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                rand::random::<[u8; 48]>(),
            );
            println!("KAVRO_JWT_SECRET={jwt}");
            println!(
                "KAVRO_FERNET_KEYS={}",
                kavro_server::fieldcrypt::FieldCrypt::generate_key()
            );
            Ok(())
        }
        Command::CheckConfig => {
            config.validate()?;
            println!("{config:#?}");
            Ok(())
        }
        Command::Migrate => {
            config.validate()?;
            kavro_server::store::connect(&kavro_server::store::StoreOptions {
                url: config.effective_database_url(),
                read_url: None,
                max_connections: 1,
                migrate: true,
            })
            .await
            .context("migrating the database")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(command) => admin_cli::run(command, &config).await,
        Command::Backup { path } => {
            kavro_server::admin::backup::backup(&config, &path).await?;
            println!("backup written to {}", path.display());
            Ok(())
        }
        // Boxed: the serve and bootstrap futures are 16–18 KiB in release (clippy::large_futures).
        Command::Serve => Box::pin(serve(config)).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let state = Box::pin(kavro_server::bootstrap::build(&config)).await?;
    let acceptor = kavro_server::server::bind(&config).await?;
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    for addr in acceptor.local_addr() {
        if let Some(addr) = addr.as_socket_addr() {
            tracing::info!(%addr, database = %kavro_server::config::redact_url(&config.effective_database_url()), redis = ?config.redis(), "kavro-server listening");
            // Scripts and tests read this line to find the port.
            println!("kavro-server listening on {scheme}://{addr}");
        }
    }
    let _ = std::io::stdout().flush();
    kavro_server::server::serve(acceptor, state, &config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (systemd, Kubernetes).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
