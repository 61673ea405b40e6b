//! The subcommands' handlers: each calls the [`Session`], hands the result
//! to [`super::output`] for its text and JSON, and returns the exit code.

use std::time::Duration;

use kavro_proto::validate::INBOX_LIMIT_MAX;

use super::args::{Credentials, HistoryArgs, InboxArgs, SendArgs};

/// What `account` does: register (with the invite code, if any) or log in.
pub enum AccountAction<'a> {
    Register { invite: Option<&'a str> },
    Login,
}
use super::exit::UsageError;
use super::output::results::{self, SendState};
use super::output::{self, Printer};
use super::{exit, input, warn};
use crate::relay::LongPoll;
use crate::session::{Compared, DeliveryOutcome, FlushReport, Session, SessionError, SyncOptions};

/// Longest long-poll `inbox --watch` asks for.
const WATCH_WAIT_SECS: u32 = 50;
/// First pause of `inbox --watch` after a transient error.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between its retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `register` and `login`.
pub async fn account(
    session: &mut Session,
    printer: &Printer,
    args: &Credentials,
    action: AccountAction<'_>,
) -> anyhow::Result<u8> {
    let register = matches!(action, AccountAction::Register { .. });
    if session.profile().server().is_cleartext_remote() {
        warn(&format!(
            "warning: {} is plain http: your password and session token cross the network unencrypted (messages stay end-to-end encrypted). Use https.",
            session.profile().server()
        ));
    }
    let password = input::password(args.password_stdin, &args.username, register)?;
    let summary = match action {
        AccountAction::Register { invite } => {
            session.register(&args.username, &password, invite).await?
        }
        AccountAction::Login => session.login(&args.username, &password).await?,
    };
    if let Some(notice) = &summary.notice {
        warn(&format!("note: {notice}"));
    }
    let (human, json) = results::account(&summary, register);
    printer.emit(&human, &json)?;
    Ok(exit::OK)
}

pub async fn logout(session: &mut Session, printer: &Printer) -> anyhow::Result<u8> {
    crate::v2::profile::forget_device_session_at_logout(session).await;
    let outcome = session.logout().await?;
    let (human, json) = results::logout(&outcome);
    printer.emit(&human, &json)?;
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

pub async fn whoami(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
    let me = session.whoami().await?;
    let (human, json) = results::whoami(&me);
    printer.emit(&human, &json)?;
    Ok(exit::OK)
}

/// `send USER` over v1 (the contact has no Kavro v2 device, or `--v1`);
/// `text` is already read.
pub async fn send(
    session: &Session,
    printer: &Printer,
    args: &SendArgs,
    text: String,
) -> anyhow::Result<u8> {
    let sent = session.send(&args.username, &text).await?;
    report_flush(&sent.flushed);
    if sent.first_use.is_some() {
        warn(&format!(
            "note: pinned {}'s key on first use. To be sure nobody intercepts, compare safety numbers: `kavro fingerprint {}`.",
            sent.to, sent.to
        ));
    }
    let mut state = SendState::Stored;
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
                state = SendState::Delivered;
                delivered_at = at;
            }
            DeliveryOutcome::Expired => {
                state = SendState::Expired;
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
    let (human, json) = results::sent(&sent, state, delivered_at);
    printer.emit(&human, &json)?;
    Ok(code)
}

/// Tells what retrying the outbox did, if anything.
pub(super) fn report_flush(report: &FlushReport) {
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

pub async fn inbox(
    session: &Session,
    printer: &Printer,
    args: &InboxArgs,
    poll_interval: Duration,
) -> anyhow::Result<u8> {
    let me = session.account()?.username.clone();
    // On a v2 device the v1 lines are marked, as `history` marks them: the
    // MLS texts `kavro inbox` prints after them are the unmarked ones.
    let v1_mark = if super::v2::has_device(session).unwrap_or(false) {
        "[v1] "
    } else {
        ""
    };
    // Sends that did not get through earlier go out first.
    match session.flush_outbox().await {
        Ok(report) => report_flush(&report),
        Err(err) if err.is_transient() => {}
        Err(err) => return Err(err.into()),
    }
    if args.watch {
        tokio::select! {
            result = inbox_loop(session, printer, args, &me, v1_mark, poll_interval) => result?,
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        inbox_loop(session, printer, args, &me, v1_mark, poll_interval).await?;
    }
    warn_changed(session).await?;
    Ok(exit::OK)
}

async fn inbox_loop(
    session: &Session,
    printer: &Printer,
    args: &InboxArgs,
    me: &str,
    v1_mark: &str,
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
    let mut backoff = MIN_BACKOFF;
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
            Err(err) => {
                retry_later(args.watch, err, &mut backoff).await?;
                continue;
            }
        };
        for received in &batch.messages {
            let message = &received.message;
            printer.emit(
                &format!("{v1_mark}{}", output::message_line(message)),
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
            retry_later(args.watch, err, &mut backoff).await?;
            continue;
        }
        backoff = MIN_BACKOFF;
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

/// The one retry path of `inbox --watch`: after a transient error, say so
/// and wait (what the relay asked for when it rate limits, else `backoff`,
/// which doubles up to [`MAX_BACKOFF`]); any other error, or any error
/// without `--watch`, ends the command.
async fn retry_later(
    watch: bool,
    err: SessionError,
    backoff: &mut Duration,
) -> Result<(), SessionError> {
    if !watch || !err.is_transient() {
        return Err(err);
    }
    let pause = match &err {
        SessionError::RateLimited {
            retry_after: Some(wait),
        } => (*wait).max(MIN_BACKOFF),
        _ => *backoff,
    };
    warn(&format!(
        "warning: {err}; retrying in {} s",
        pause.as_secs()
    ));
    tokio::time::sleep(pause).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    Ok(())
}

pub async fn history(
    session: &Session,
    printer: &Printer,
    args: &HistoryArgs,
) -> anyhow::Result<u8> {
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

pub async fn contacts(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
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

pub async fn fingerprint(
    session: &Session,
    printer: &Printer,
    username: Option<&str>,
) -> anyhow::Result<u8> {
    let Some(username) = username else {
        let (human, json) = results::own_key(&session.own_key()?);
        printer.emit(&human, &json)?;
        return Ok(exit::OK);
    };
    let keys = anyhow::Context::with_context(session.contact_keys(username).await, || {
        format!("looking up {username}'s key")
    })?;
    let me = session.own_key()?.username;
    let (human, json) = results::contact_keys(&keys, &me);
    printer.emit(&human, &json)?;
    Ok(exit::OK)
}

pub async fn trust(
    session: &Session,
    printer: &Printer,
    username: &str,
    compared: Option<&str>,
) -> anyhow::Result<u8> {
    let Some(text) = compared else {
        return Err(UsageError(format!(
            "pass what you compared: `kavro trust {username} <safety number or key fingerprint>`, as `kavro fingerprint {username}` shows it; kavro trusts only that key"
        ))
        .into());
    };
    let compared = Compared::parse(text).ok_or_else(|| {
        UsageError(format!(
            "{text:?} is neither a safety number (60 digits) nor a key fingerprint (32 hex digits)"
        ))
    })?;
    let outcome = session.trust(username, &compared).await?;
    let (human, json) = results::trusted(&outcome);
    printer.emit(&human, &json)?;
    Ok(exit::OK)
}

/// `config legacy`: set, or list, whether legacy messages are shown.
pub async fn legacy(
    session: &Session,
    printer: &Printer,
    args: &super::args::LegacyArgs,
) -> anyhow::Result<u8> {
    let change = match (&args.default, &args.username, &args.policy) {
        (Some(policy), _, _) => Some((None, *policy)),
        (None, Some(name), Some(policy)) => Some((Some(name.as_str()), *policy)),
        _ => None,
    };
    if let Some((username, policy)) = change {
        session.set_legacy_policy(username, policy).await?;
    }
    let settings = session.legacy_policies().await?;
    let wanted = |name: &Option<String>| match &args.username {
        Some(user) if change.is_none() => name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(user)),
        _ => true,
    };
    let shown: Vec<_> = settings.iter().filter(|(name, _)| wanted(name)).collect();
    if shown.is_empty() {
        printer.human("Legacy messages are shown from everyone (no settings).")?;
    }
    for (name, policy) in shown {
        let who = name
            .as_deref()
            .map_or_else(|| "everyone else".to_owned(), output::sanitize);
        printer.emit(
            &format!("{who:<30} {policy}"),
            &serde_json::json!({"username": name, "legacy": policy.as_str()}),
        )?;
    }
    Ok(exit::OK)
}
