//! The `kavro` process: parse the arguments ([`args`]), set up the runtime
//! and the session, run one subcommand ([`commands`], whose results
//! [`output`] formats) or the chat app, and exit with a documented code
//! ([`exit`]), reporting errors on stderr.

mod advice;
pub mod args;
mod commands;
mod direct;
pub mod exit;
pub mod files;
mod files_v1;
pub mod input;
mod manage;
pub mod output;
pub(crate) mod v2;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, Parser as _};
use serde_json::json;

use self::args::{Cli, Command};
use self::exit::UsageError;
use self::output::Printer;
use crate::config::Profile;
use crate::config::ServerUrl;
use crate::keystore::{ENV_KEY_STORE, KeyStoreKind, Keystores};
use crate::paths::Dirs;
use crate::relay::{HttpRelay, RelayError, http_client};
use crate::session::{Session, SessionError};

/// Runs `kavro` with the process's arguments and environment.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    // reqwest is built without a default TLS crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(Command::Completions { shell }) = cli.command {
        // Into a buffer first: clap_complete panics on a write error
        // (`kavro completions bash | head`).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "kavro", &mut script);
        let mut out = std::io::stdout().lock();
        return match std::io::Write::write_all(&mut out, &script)
            .and_then(|()| std::io::Write::flush(&mut out))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: cannot write the completion script: {err}");
                ExitCode::from(exit::OTHER)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = runtime.block_on(run(&cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::for_error(&err);
            report(&err, code, cli.json);
            ExitCode::from(code)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, "outer: inner", leaving out a cause whose text
/// an outer message already includes.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Prints an error on stderr, with what to do about it: text, or a JSON
/// object with `--json`.
fn report(err: &anyhow::Error, code: u8, json: bool) {
    let mut text = error_text(err);
    let advice = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<SessionError>())
        .and_then(advice::for_session);
    if let Some(advice) = advice {
        text.push_str(". ");
        text.push_str(&advice);
    }
    if json {
        eprintln!("{}", json!({"error": text, "exit_code": code}));
    } else {
        eprintln!("error: {text}");
    }
}

fn warn(text: &str) {
    eprintln!("{}", output::sanitize(text));
}

/// The key store `KAVRO_KEY_STORE` asks for, if any.
fn explicit_key_store() -> anyhow::Result<Option<KeyStoreKind>> {
    match std::env::var(ENV_KEY_STORE) {
        Ok(value) if !value.trim().is_empty() => Ok(Some(value.parse()?)),
        _ => Ok(None),
    }
}

/// The certificates of `--ca-cert` / `KAVRO_CA_CERT`: a usage error when
/// the file cannot be read or holds no PEM certificate.
fn ca_roots(file: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(file).map_err(|e| {
        UsageError(format!(
            "cannot read the CA certificate {} (--ca-cert / KAVRO_CA_CERT): {e}",
            file.display()
        ))
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(roots) if !roots.is_empty() => Ok(roots),
        _ => Err(UsageError(format!(
            "{} (--ca-cert / KAVRO_CA_CERT) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            file.display()
        ))
        .into()),
    }
}

/// The one HTTP client of this process (v1 and v2 relay calls alike),
/// built when the session opens with the platform's roots and those of
/// `--ca-cert` / `KAVRO_CA_CERT`. One, because building a client reads and
/// parses every root certificate of the platform: done twice, it was a
/// tenth of a `kavro send`.
static HTTP_CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();

/// [`HTTP_CLIENT`], or (no session opened in this process) a client with the
/// platform's roots only, kept for the next call.
pub(crate) fn relay_client(server: &ServerUrl) -> Result<reqwest::Client, RelayError> {
    if let Some(client) = HTTP_CLIENT.get() {
        return Ok(client.clone());
    }
    let client = http_client(server.as_str(), &[])?;
    Ok(HTTP_CLIENT.get_or_init(|| client).clone())
}

async fn open_session(cli: &Cli) -> anyhow::Result<Session> {
    let dirs = Dirs::from_env()?;
    let profile = Profile::load(&dirs, &cli.profile, cli.server.as_deref())?;
    let roots = match &cli.ca_cert {
        Some(file) => ca_roots(file)?,
        None => Vec::new(),
    };
    let client = http_client(profile.server().as_str(), &roots)
        .map_err(|e| SessionError::from_relay(e, None))?;
    // The v2 client (cli/v2.rs) reaches the same relay over the same client
    // (set once per process, as the roots are).
    let _ = HTTP_CLIENT.set(client.clone());
    let relay = HttpRelay::with_client(profile.server(), client);
    let keystores = Keystores::new(profile.paths().secrets_file(), explicit_key_store()?);
    Ok(Session::open(profile, Arc::new(relay), keystores).await?)
}

async fn run(cli: &Cli) -> anyhow::Result<u8> {
    let printer = Printer { json: cli.json };
    let mut session = open_session(cli).await?;
    let Some(command) = &cli.command else {
        return chat(cli, session).await;
    };
    let result = match command {
        Command::Register(args) => {
            let action = commands::AccountAction::Register {
                invite: args.invite.as_deref(),
            };
            let result = commands::account(&mut session, &printer, &args.credentials, action).await;
            if result.is_ok()
                && let Err(err) = v2::register_first_device(&session).await
            {
                warn(&format!(
                    "warning: the account works, but this installation could not become its Kavro v2 device: {}",
                    error_text(&err)
                ));
            }
            result
        }
        Command::Login(args) => {
            commands::account(&mut session, &printer, args, commands::AccountAction::Login).await
        }
        Command::Logout { everywhere: false } => commands::logout(&mut session, &printer).await,
        Command::Logout { everywhere: true } => {
            manage::logout_everywhere(&mut session, &printer).await
        }
        Command::Password { password_stdin } => {
            manage::password(&session, &printer, *password_stdin).await
        }
        Command::Keys { action: None } => manage::keys(&session, &printer).await,
        Command::Keys {
            action: Some(args::KeysCommand::Retire { key_id }),
        } => manage::retire(&session, &printer, *key_id).await,
        Command::DeleteAccount {
            yes,
            password_stdin,
        } => manage::delete_account(&mut session, &printer, *yes, *password_stdin).await,
        Command::Whoami => commands::whoami(&session, &printer).await,
        Command::Send(args) if args.file.is_some() => {
            files::send_file(&session, &printer, args).await
        }
        Command::Send(args) => match input::message(args.text.clone()) {
            Ok(text) if args.username.starts_with('#') => {
                v2::send(&session, &printer, &args.username, &text).await
            }
            Ok(text) if !args.v1 && !args.wait_delivered => {
                match direct::send(&session, &printer, &args.username, &text).await {
                    Ok(Some(code)) => Ok(code),
                    Ok(None) => commands::send(&session, &printer, args, text).await,
                    Err(err) => Err(err),
                }
            }
            Ok(text) => commands::send(&session, &printer, args, text).await,
            Err(err) => Err(err),
        },
        Command::Inbox(args) => {
            let poll_interval = Duration::from_secs(cli.poll_interval);
            let result = commands::inbox(&session, &printer, args, poll_interval).await;
            match result {
                Ok(code) if !args.watch && !args.no_ack => {
                    let dir = files::download_dir(&session, args.download_dir.as_deref());
                    files_v1::save_received(&session, &printer, &dir).await?;
                    v2::inbox(&session, &printer, args.download_dir.as_deref())
                        .await
                        .map(|()| code)
                }
                other => other,
            }
        }
        Command::History(args) if args.username.starts_with('#') => {
            v2::history(&session, &printer, &args.username, args.limit).await
        }
        Command::History(args) => {
            match direct::history(&session, &printer, &args.username, args.limit).await {
                Ok(Some(code)) => Ok(code),
                Ok(None) => commands::history(&session, &printer, args).await,
                Err(err) => Err(err),
            }
        }
        Command::Device(command) => v2::device(&session, &printer, command).await,
        Command::Group(command) => v2::group(&session, &printer, command).await,
        Command::Contacts => commands::contacts(&session, &printer).await,
        Command::Attachments => files::attachments(&session, &printer).await,
        Command::Fingerprint { username } => {
            let code = commands::fingerprint(&session, &printer, username.as_deref()).await;
            match (code, username) {
                (Ok(code), Some(user)) => direct::fingerprint(&session, &printer, user)
                    .await
                    .map(|()| code),
                (other, _) => other,
            }
        }
        Command::Trust { username, compared } => {
            let compared = (!compared.is_empty()).then(|| compared.join(" "));
            let v2 = match compared.as_deref() {
                Some(text) => direct::trust(&session, &printer, username, text).await,
                None => Ok(None),
            };
            match v2 {
                Ok(Some(code)) => Ok(code),
                Ok(None) => {
                    commands::trust(&session, &printer, username, compared.as_deref()).await
                }
                Err(err) => Err(err),
            }
        }
        Command::Config(args::ConfigCommand::Legacy(args)) => {
            commands::legacy(&session, &printer, args).await
        }
        Command::Completions { .. } => Ok(exit::OK),
    };
    session.close().await;
    result
}

/// `kavro` with no command: the chat app, on a terminal.
async fn chat(cli: &Cli, session: Session) -> anyhow::Result<u8> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout())
        || !std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        session.close().await;
        anyhow::bail!(
            "the chat app needs a terminal; for scripts use the subcommands (`kavro --help`)"
        );
    }
    let options = crate::app::AppOptions {
        sync: crate::app::sync::SyncSettings {
            poll_interval: Duration::from_secs(cli.poll_interval),
            ..crate::app::sync::SyncSettings::default()
        },
    };
    crate::app::run(session, options).await?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_does_not_repeat_causes() {
        let inner = crate::keystore::KeystoreError::KeyringUnavailable("no bus".into());
        let err = anyhow::Error::new(SessionError::Keystore {
            account: "kate".into(),
            source: inner,
        })
        .context("opening the profile");
        assert_eq!(
            error_text(&err),
            "opening the profile: the secrets of kate are unavailable: the OS keyring is not available: no bus"
        );
    }
}
