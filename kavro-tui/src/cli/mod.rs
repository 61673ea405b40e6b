//! The scripted command line: parse ([`args`]), run one subcommand on a
//! [`Session`], print the result ([`output`]), and exit with a documented
//! code ([`exit`]).

pub mod args;
pub mod exit;
pub mod input;
pub mod output;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use kavro_proto::validate::INBOX_LIMIT_MAX;
use serde_json::json;

use self::args::{Cli, Command, Credentials, HistoryArgs, InboxArgs, SendArgs};
use self::output::{Printer, json_time};
use crate::config::Profile;
use crate::keystore::{ENV_KEY_STORE, KeyStoreKind, Keystores};
use crate::paths::Dirs;
use crate::relay::{HttpRelay, LongPoll};
use crate::session::{DeliveryOutcome, FlushReport, Session, SessionError, SyncOptions};

/// Longest long-poll `inbox --watch` asks for.
const WATCH_WAIT_SECS: u32 = 50;

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

/// Prints an error on stderr: text, or a JSON object with `--json`.
fn report(err: &anyhow::Error, code: u8, json: bool) {
    let text = error_text(err);
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

async fn open_session(cli: &Cli) -> anyhow::Result<Session> {
    let dirs = Dirs::from_env()?;
    let profile = Profile::load(&dirs, &cli.profile, cli.server.as_deref())?;
    let relay = HttpRelay::new(profile.server()).map_err(|e| SessionError::from_relay(e, ""))?;
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
        Command::Register(args) => account(&mut session, &printer, args, true).await,
        Command::Login(args) => account(&mut session, &printer, args, false).await,
        Command::Logout => logout(&mut session, &printer).await,
        Command::Whoami => whoami(&session, &printer).await,
        Command::Send(args) => send(&session, &printer, args).await,
        Command::Inbox(args) => {
            let poll_interval = Duration::from_secs(cli.poll_interval);
            inbox(&session, &printer, args, poll_interval).await
        }
        Command::History(args) => history(&session, &printer, args).await,
        Command::Contacts => contacts(&session, &printer).await,
        Command::Fingerprint { username } => {
            fingerprint(&session, &printer, username.as_deref()).await
        }
        Command::Trust { username } => trust(&session, &printer, username).await,
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

async fn account(
    session: &mut Session,
    printer: &Printer,
    args: &Credentials,
    register: bool,
) -> anyhow::Result<u8> {
    if session.profile().server().is_cleartext_remote() {
        warn(&format!(
            "warning: {} is plain http: your password and session token cross the network unencrypted (messages stay end-to-end encrypted). Use https.",
            session.profile().server()
        ));
    }
    let password = input::password(args.password_stdin, &args.username, register)?;
    let summary = if register {
        session.register(&args.username, &password).await?
    } else {
        session.login(&args.username, &password).await?
    };
    if let Some(notice) = &summary.notice {
        warn(&format!("note: {notice}"));
    }
    let verb = if register {
        "Registered"
    } else {
        "Logged in as"
    };
    let mut human = format!(
        "{verb} {} (user #{}) on {}.\nYour key fingerprint: {}",
        summary.username, summary.user_id, summary.server, summary.fingerprint
    );
    if summary.new_key && !register {
        human.push_str(
            "\nThis device has a new identity key (published): contacts will see a key change and should compare safety numbers with you.",
        );
    }
    printer.emit(
        &human,
        &json!({
            "username": summary.username,
            "user_id": summary.user_id.0,
            "server": summary.server.as_str(),
            "public_key": summary.public_key.to_hex(),
            "fingerprint": summary.fingerprint.to_string(),
            "key_store": summary.key_store.as_str(),
            "new_key": summary.new_key,
        }),
    )?;
    Ok(exit::OK)
}

async fn logout(session: &mut Session, printer: &Printer) -> anyhow::Result<u8> {
    let outcome = session.logout().await?;
    if !outcome.was_logged_in {
        printer.emit(
            &format!("{} was not logged in.", outcome.username),
            &json!({"username": outcome.username, "logged_out": true, "revoked": false}),
        )?;
        return Ok(exit::OK);
    }
    printer.emit(
        &format!("Logged out {}.", outcome.username),
        &json!({
            "username": outcome.username,
            "logged_out": true,
            "revoked": outcome.revoke_error.is_none(),
        }),
    )?;
    match outcome.revoke_error {
        None => Ok(exit::OK),
        Some(reason) => {
            warn(&format!(
                "warning: the token was forgotten here but could not be revoked on the relay ({reason}); it stays valid until it expires (at most a day)."
            ));
            Ok(exit::UNAVAILABLE)
        }
    }
}

async fn whoami(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
    let me = session.whoami().await?;
    let mut human = format!(
        "{} (user #{}) on {}, profile `{}`\nkey fingerprint: {}\nsecrets kept in {}",
        me.username, me.user_id, me.server, me.profile, me.fingerprint, me.key_location
    );
    if !me.newest_key_is_ours {
        human.push_str("\nwarning: another device published a newer key for this account; contacts now encrypt to that device, and this one cannot read those messages. Run `kavro login` here to make this device's key the newest again.");
    }
    printer.emit(
        &human,
        &json!({
            "username": me.username,
            "user_id": me.user_id.0,
            "server": me.server.as_str(),
            "profile": me.profile,
            "public_key": me.public_key.to_hex(),
            "fingerprint": me.fingerprint.to_string(),
            "key_store": me.key_store.as_str(),
            "newest_key_is_ours": me.newest_key_is_ours,
        }),
    )?;
    Ok(exit::OK)
}

async fn send(session: &Session, printer: &Printer, args: &SendArgs) -> anyhow::Result<u8> {
    let text = input::message(args.text.clone())?;
    let sent = session.send(&args.username, &text).await?;
    report_flush(&sent.flushed);
    if sent.first_use.is_some() {
        warn(&format!(
            "note: pinned {}'s key on first use. To be sure nobody intercepts, compare safety numbers: `kavro fingerprint {}`.",
            sent.to, sent.to
        ));
    }
    let mut state = "stored";
    let mut delivered_at = None;
    let mut code = exit::OK;
    if args.wait_delivered {
        match session
            .wait_for_delivery(
                sent.local_id,
                sent.relay_id,
                Duration::from_secs(args.timeout),
            )
            .await?
        {
            DeliveryOutcome::Delivered(at) => {
                state = "delivered";
                delivered_at = at;
            }
            DeliveryOutcome::Expired => {
                state = "expired";
                code = exit::OTHER;
                warn("error: the message expired on the relay before the recipient fetched it.");
            }
            DeliveryOutcome::TimedOut => {
                code = exit::OTHER;
                warn(&format!(
                    "error: not delivered within {} s; it stays on the relay until {} fetches it.",
                    args.timeout, sent.to
                ));
            }
        }
    }
    let human = match state {
        "delivered" => format!("Sent to {} and delivered.", sent.to),
        _ => format!("Sent to {}.", sent.to),
    };
    printer.emit(
        &human,
        &json!({
            "id": sent.msg_uuid.to_string(),
            "relay_id": sent.relay_id.0,
            "to": sent.to,
            "sent_at": json_time(sent.sent_at),
            "state": state,
            "delivered_at": delivered_at.map(json_time),
        }),
    )?;
    Ok(code)
}

/// Tells what retrying the outbox did, if anything.
fn report_flush(report: &FlushReport) {
    if report.sent > 0 {
        warn(&format!(
            "note: sent {} message(s) queued earlier.",
            report.sent
        ));
    }
    for (id, reason) in &report.failed {
        warn(&format!(
            "warning: a message queued earlier (#{id} in the history) could not be sent and was given up: {reason}"
        ));
    }
    if report.remaining > 0 {
        warn(&format!(
            "note: {} message(s) still queued; they go out with a later `kavro send` or `kavro inbox`.",
            report.remaining
        ));
    }
}

async fn warn_changed(session: &Session) -> anyhow::Result<()> {
    for contact in session.changed_contacts().await? {
        warn(&output::changed_warning(&contact));
    }
    Ok(())
}

async fn inbox(
    session: &Session,
    printer: &Printer,
    args: &InboxArgs,
    poll_interval: Duration,
) -> anyhow::Result<u8> {
    let me = session.account()?.username.clone();
    // Sends that did not get through earlier go out first.
    match session.flush_outbox().await {
        Ok(report) => report_flush(&report),
        Err(err) if err.is_transient() => {}
        Err(err) => return Err(err.into()),
    }
    if args.watch {
        tokio::select! {
            result = inbox_loop(session, printer, args, &me, poll_interval) => result?,
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        inbox_loop(session, printer, args, &me, poll_interval).await?;
    }
    warn_changed(session).await?;
    Ok(exit::OK)
}

async fn inbox_loop(
    session: &Session,
    printer: &Printer,
    args: &InboxArgs,
    me: &str,
    poll_interval: Duration,
) -> anyhow::Result<()> {
    // What the relay holds a request for; a relay without long-poll is
    // polled every `poll_interval` instead.
    let long_poll = if args.watch {
        session.long_poll().await.unwrap_or(LongPoll::Off)
    } else {
        LongPoll::Off
    };
    let mut remaining = args.limit;
    let mut drained = false;
    let mut shown = 0usize;
    let mut backoff = Duration::from_secs(1);
    loop {
        let page = remaining.unwrap_or(INBOX_LIMIT_MAX).min(INBOX_LIMIT_MAX);
        let options = SyncOptions {
            limit: page,
            wait: if args.watch && drained {
                long_poll.wait(WATCH_WAIT_SECS)
            } else {
                0
            },
            ack: !args.no_ack,
        };
        let batch = match session.sync_inbox(options).await {
            Ok(batch) => batch,
            Err(err) if args.watch && err.is_transient() => {
                let pause = retry_delay(&err, backoff);
                warn(&format!(
                    "warning: {err}; retrying in {} s",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        backoff = Duration::from_secs(1);
        for received in &batch.messages {
            let message = &received.message;
            printer.emit(
                &output::message_line(message),
                &output::message_json(message, me),
            )?;
            shown += 1;
        }
        if batch.duplicates > 0 {
            warn(&format!(
                "note: {} replayed copy(ies) of messages already received were dropped.",
                batch.duplicates
            ));
        }
        if let Some(err) = batch.interrupted {
            if args.watch && err.is_transient() {
                let pause = retry_delay(&err, backoff);
                warn(&format!(
                    "warning: {err}; retrying in {} s",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
                continue;
            }
            return Err(err.into());
        }
        let fetched = u32::try_from(batch.fetched).unwrap_or(u32::MAX);
        if let Some(left) = remaining.as_mut() {
            *left = left.saturating_sub(fetched);
            if *left == 0 {
                break;
            }
        }
        if args.no_ack {
            break;
        }
        if fetched < page {
            if !args.watch {
                break;
            }
            if !drained {
                warn("Waiting for new messages; Ctrl-C stops.");
            } else if long_poll == LongPoll::Off {
                tokio::time::sleep(poll_interval).await;
            }
            drained = true;
        }
    }
    if shown == 0 && !args.watch {
        printer.human("No new messages.")?;
    }
    Ok(())
}

/// How long to wait before retrying after a transient error: what the relay
/// asked for when it rate limits, else the current backoff.
fn retry_delay(err: &SessionError, backoff: Duration) -> Duration {
    match err {
        SessionError::RateLimited {
            retry_after: Some(wait),
        } => (*wait).max(Duration::from_secs(1)),
        _ => backoff,
    }
}

async fn history(session: &Session, printer: &Printer, args: &HistoryArgs) -> anyhow::Result<u8> {
    let me = session.account()?.username.clone();
    let messages = session.history(&args.username, args.limit).await?;
    if messages.is_empty() {
        printer.human(&format!(
            "No messages with {}.",
            output::sanitize(&args.username)
        ))?;
    }
    for message in &messages {
        printer.emit(
            &output::message_line(message),
            &output::message_json(message, &me),
        )?;
    }
    warn_changed(session).await?;
    Ok(exit::OK)
}

async fn contacts(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
    let contacts = session.contacts().await?;
    if contacts.is_empty() {
        printer.human("No contacts yet: they are added when you send to or hear from someone.")?;
    }
    for contact in &contacts {
        printer.emit(
            &output::contact_line(contact),
            &output::contact_json(contact),
        )?;
    }
    warn_changed(session).await?;
    Ok(exit::OK)
}

async fn fingerprint(
    session: &Session,
    printer: &Printer,
    username: Option<&str>,
) -> anyhow::Result<u8> {
    let Some(username) = username else {
        let own = session.own_key()?;
        printer.emit(
            &format!(
                "Your key fingerprint ({}):\n    {}\nRead it to a contact, or compare safety numbers with `kavro fingerprint <username>`.",
                own.username, own.fingerprint
            ),
            &json!({
                "username": own.username,
                "public_key": own.public_key.to_hex(),
                "fingerprint": own.fingerprint.to_string(),
            }),
        )?;
        return Ok(exit::OK);
    };
    let keys = session
        .contact_keys(username)
        .await
        .with_context(|| format!("looking up {username}'s key"))?;
    let name = output::sanitize(&keys.contact.username);
    let me = session.own_key()?.username;
    let mut human = if let Some(pending) = &keys.pending_safety_number {
        format!(
            "{name}'s key CHANGED. Safety number with the NEW key (the one `kavro trust {name}` accepts):\n{}\n\
             Previously pinned key, safety number:\n{}\n\
             Ask {name} to run `kavro fingerprint {me}` and read you their number, in person or over another channel you trust. \
             Only if it matches the NEW number, run `kavro trust {name}`.",
            output::safety_block(pending),
            output::safety_block(&keys.safety_number),
        )
    } else {
        format!(
            "Safety number with {name} ({}):\n{}\n\
             Ask {name} to run `kavro fingerprint {me}` and compare, in person or over another channel you trust. \
             If the numbers match, run `kavro trust {name}` to mark the key verified.",
            output::key_state_word(keys.contact.state),
            output::safety_block(&keys.safety_number),
        )
    };
    if !keys.refreshed {
        human.push_str(
            "\n(the relay was not asked for the current key: this is the key pinned locally)",
        );
    }
    printer.emit(
        &human,
        &json!({
            "username": keys.contact.username,
            "state": keys.contact.state.as_str(),
            "safety_number": keys.safety_number.to_string(),
            "key": keys.contact.key.to_hex(),
            "changed_safety_number": keys.pending_safety_number.map(|n| n.to_string()),
            "changed_key": keys.contact.pending.map(|p| p.key.to_hex()),
            "refreshed": keys.refreshed,
        }),
    )?;
    Ok(exit::OK)
}

async fn trust(session: &Session, printer: &Printer, username: &str) -> anyhow::Result<u8> {
    let outcome = session.trust(username).await?;
    let name = output::sanitize(&outcome.contact.username);
    let human = if outcome.replaced.is_some() {
        format!(
            "Now trusting {name}'s new key {} (verified). You can send to {name} again.",
            outcome.contact.key.fingerprint()
        )
    } else {
        format!(
            "{name}'s key {} is verified.",
            outcome.contact.key.fingerprint()
        )
    };
    printer.emit(
        &human,
        &json!({
            "username": outcome.contact.username,
            "state": outcome.contact.state.as_str(),
            "key": outcome.contact.key.to_hex(),
            "fingerprint": outcome.contact.key.fingerprint().to_string(),
            "safety_number": outcome.safety_number.to_string(),
            "replaced_key": outcome.replaced.map(|k| k.to_hex()),
        }),
    )?;
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
