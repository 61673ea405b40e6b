//! Attachments from the command line (issue #14): `kavro send TARGET --file
//! PATH [--caption TEXT]`, the files `kavro inbox` saves, and `kavro
//! attachments`. A group, or a person with Kavro v2 devices when this
//! installation is one, gets the file over MLS; any other person in a v1
//! file envelope (`session::files`), which the core refuses before anything
//! is uploaded unless they are known to run a Kavro client (see there).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::args::SendArgs;
use super::exit::{self, UsageError};
use super::output::{Printer, json_time, sanitize};
use super::v2::open;
use crate::attach::progress::Bar;
use crate::mls::attachments::AttachmentState;
use crate::session::Session;
use crate::v2::V2Session;
use crate::v2::files::SaveOutcome;
use crate::v2::payload::human_size;

/// `kavro send TARGET --file PATH [--caption TEXT]`.
pub async fn send_file(
    session: &Session,
    printer: &Printer,
    args: &SendArgs,
) -> anyhow::Result<u8> {
    let Some(path) = args.file.as_deref() else {
        return Err(UsageError("--file PATH is required".to_owned()).into());
    };
    // A missing or unreadable file is the user's to fix: said before anything else.
    let size = std::fs::File::open(path)
        .and_then(|file| file.metadata())
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?
        .len();
    let target = args.username.as_str();
    let group = target.starts_with('#');
    if !group {
        crate::session::check_username(target)?;
    }
    if !super::v2::has_device(session)? {
        if group {
            return Err(UsageError(
                "group files go over Kavro v2: this installation is not a Kavro v2 device (`kavro device link`)"
                    .to_owned(),
            )
            .into());
        }
        return super::files_v1::send(session, printer, args, path, size).await;
    }
    let mut v2 = open(session).await?;
    let result = send_inner(&mut v2, printer, args, path, size).await;
    v2.close().await;
    match result? {
        Some(code) => Ok(code),
        None => super::files_v1::send(session, printer, args, path, size).await,
    }
}

/// Over MLS; `None`: the person has no Kavro v2 device, send over v1.
async fn send_inner(
    v2: &mut V2Session,
    printer: &Printer,
    args: &SendArgs,
    path: &Path,
    size: u64,
) -> anyhow::Result<Option<u8>> {
    v2.sync().await?;
    let target = args.username.as_str();
    let group = if target.starts_with('#') {
        v2.find(target).await?
    } else {
        if !v2.has_active_devices(target).await? {
            return Ok(None);
        }
        v2.direct(target).await?
    };
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bar = Bar::new(&format!("uploading {name}"), !printer.json);
    let sent = v2
        .send_file(&group, path, args.caption.as_deref(), &bar)
        .await;
    bar.finish();
    let id = sent?;
    printer.emit(
        &format!(
            "Sent {} ({}) to {} (MLS).",
            sanitize(&name),
            human_size(size),
            sanitize(target)
        ),
        &json!({
            "to": target,
            "conversation": target,
            "id": id.to_string(),
            "file": name,
            "size": size,
            "protocol": "mls",
        }),
    )?;
    Ok(Some(exit::OK))
}

/// Where received files go: `--download-dir` / `KAVRO_DOWNLOAD_DIR`, else
/// the user's Downloads folder, else `downloads` in the profile's data directory.
pub fn download_dir(session: &Session, chosen: Option<&Path>) -> PathBuf {
    if let Some(dir) = chosen {
        return dir.to_path_buf();
    }
    directories::UserDirs::new()
        .and_then(|dirs| dirs.download_dir().map(Path::to_path_buf))
        .unwrap_or_else(|| session.profile().paths().data_dir.join("downloads"))
}

/// After `inbox` applied the v2 queue: downloads the files that came and
/// says where each went (or why not: nothing is saved under the final name
/// of a file that does not check).
pub async fn save_received(
    v2: &mut V2Session,
    printer: &Printer,
    dir: &Path,
) -> anyhow::Result<()> {
    let bar = Bar::new("downloading", !printer.json);
    let saved = v2.save_pending(dir, &bar).await;
    bar.finish();
    for SaveOutcome { row, result } in saved? {
        print_saved(printer, row.id, &row.sender, &row.file, &result, "mls")?;
    }
    Ok(())
}

/// Says where a received file went, or why it was not saved.
pub(super) fn print_saved(
    printer: &Printer,
    id: i64,
    from: &str,
    file: &kavro_proto::attachment::FileRef,
    result: &Result<PathBuf, String>,
    protocol: &str,
) -> anyhow::Result<()> {
    let name = sanitize(&file.name);
    match result {
        Ok(path) => printer.emit(
            &format!(
                "Saved {name} ({}) from {} to {}",
                human_size(file.size),
                sanitize(from),
                path.display()
            ),
            &json!({
                "attachment": id,
                "from": from,
                "file": file.name,
                "size": file.size,
                "media_type": file.media_type,
                "saved_to": path,
                "state": "saved",
                "protocol": protocol,
            }),
        )?,
        Err(reason) => printer.emit(
            &format!("Not saved: {name} from {}: {reason}", sanitize(from)),
            &json!({
                "attachment": id,
                "from": from,
                "file": file.name,
                "state": "failed",
                "error": reason,
                "protocol": protocol,
            }),
        )?,
    }
    Ok(())
}

/// `kavro attachments`: the files of v1 conversations, then those of v2
/// ones (when this installation is a device).
pub async fn attachments(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
    let me = session.account()?.username.clone();
    for row in session.files().await? {
        let line = Line {
            at: row.at,
            outgoing: row.outgoing,
            shown: &row.peer,
            from: if row.outgoing { &me } else { &row.peer },
            to: row.outgoing.then_some(row.peer.as_str()),
            file: &row.file,
            caption: row.caption.as_deref(),
            state: row.state,
            saved_path: row.saved_path.as_deref(),
            error: row.error.as_deref(),
            id: row.id,
            protocol: "v1",
        };
        print_line(printer, &line)?;
    }
    if !super::v2::has_device(session)? {
        return Ok(exit::OK);
    }
    let v2 = super::v2::open_local(session).await?;
    let rows = v2.attachments().await;
    v2.close().await;
    for row in rows? {
        let line = Line {
            at: row.at,
            outgoing: row.outgoing,
            shown: &row.sender,
            from: &row.sender,
            to: None,
            file: &row.file,
            caption: row.caption.as_deref(),
            state: row.state,
            saved_path: row.saved_path.as_deref(),
            error: row.error.as_deref(),
            id: row.id,
            protocol: "mls",
        };
        print_line(printer, &line)?;
    }
    Ok(exit::OK)
}

/// One attachment as `kavro attachments` lists it, whichever protocol.
struct Line<'a> {
    at: chrono::DateTime<chrono::Utc>,
    outgoing: bool,
    /// Who the human line names (v2 names the sender, v1 the other side).
    shown: &'a str,
    from: &'a str,
    /// The recipient of a sent v1 file.
    to: Option<&'a str>,
    file: &'a kavro_proto::attachment::FileRef,
    caption: Option<&'a str>,
    state: AttachmentState,
    saved_path: Option<&'a str>,
    error: Option<&'a str>,
    id: i64,
    protocol: &'static str,
}

fn print_line(printer: &Printer, row: &Line<'_>) -> anyhow::Result<()> {
    let state = match (row.state, row.saved_path, row.error) {
        (AttachmentState::Saved, Some(path), _) => format!("saved to {path}"),
        (AttachmentState::Failed, _, Some(error)) => format!("not saved: {error}"),
        (AttachmentState::Pending, ..) => "on the relay (kavro inbox saves it)".to_owned(),
        (AttachmentState::Sent, ..) => "sent".to_owned(),
        (state, ..) => state.as_str().to_owned(),
    };
    let direction = if row.outgoing { "to" } else { "from" };
    printer.emit(
        &format!(
            "{}  {} ({}) {direction} {}: {}",
            json_time(row.at),
            sanitize(&row.file.name),
            human_size(row.file.size),
            sanitize(row.shown),
            sanitize(&state)
        ),
        &json!({
            "attachment": row.id,
            "at": json_time(row.at),
            "outgoing": row.outgoing,
            "from": row.from,
            "to": row.to,
            "file": row.file.name,
            "size": row.file.size,
            "media_type": row.file.media_type,
            "sha256": row.file.sha256,
            "caption": row.caption,
            "state": row.state.as_str(),
            "saved_to": row.saved_path,
            "error": row.error,
            "protocol": row.protocol,
        }),
    )?;
    Ok(())
}
