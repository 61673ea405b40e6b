//! Attachments in v1 file envelopes from the command line (issue #14): the
//! send to a person without Kavro v2 devices (or from an installation that
//! is none), and the files `kavro inbox` saves from the v1 inbox. The core
//! (`session::files`) decides who can receive one; the wording is here.

use std::path::Path;

use serde_json::json;

use super::args::SendArgs;
use super::commands::report_flush;
use super::exit;
use super::output::{Printer, sanitize};
use super::warn;
use crate::attach::progress::Bar;
use crate::session::{SavedFile, Session};
use crate::v2::payload::human_size;
use crate::v2::relay::V2Relay;

/// The relay's blob routes over the process's one HTTP client.
fn blob_relay(session: &Session) -> anyhow::Result<V2Relay> {
    let server = session.profile().server();
    super::relay_client(server)
        .map(|client| V2Relay::with_client(server, client))
        .map_err(|e| session.relay_error(e).into())
}

/// `kavro send USER --file PATH` in a v1 file envelope.
pub async fn send(
    session: &Session,
    printer: &Printer,
    args: &SendArgs,
    path: &Path,
    size: u64,
) -> anyhow::Result<u8> {
    let relay = blob_relay(session)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bar = Bar::new(&format!("uploading {name}"), !printer.json);
    let sent = session
        .send_file(&relay, &args.username, path, args.caption.as_deref(), &bar)
        .await;
    bar.finish();
    let sent = sent?;
    report_flush(&sent.flushed);
    if sent.first_use.is_some() {
        warn(&format!(
            "note: pinned {}'s key on first use. To be sure nobody intercepts, compare safety numbers: `kavro fingerprint {}`.",
            sent.to, sent.to
        ));
    }
    printer.emit(
        &format!(
            "Sent {} ({}) to {} (v1).",
            sanitize(&name),
            human_size(size),
            sanitize(&sent.to)
        ),
        &json!({
            "to": sent.to,
            "id": sent.msg_uuid.to_string(),
            "relay_id": sent.relay_id,
            "file": name,
            "size": size,
            "state": "stored",
            "protocol": "v1",
        }),
    )?;
    Ok(exit::OK)
}

/// After the v1 inbox: downloads the files that came in verified file
/// envelopes into `dir` and says where each went, or why not.
pub async fn save_received(session: &Session, printer: &Printer, dir: &Path) -> anyhow::Result<()> {
    let relay = blob_relay(session)?;
    let bar = Bar::new("downloading", !printer.json);
    let saved = session.save_files(&relay, dir, &bar).await;
    bar.finish();
    for SavedFile { row, result } in saved? {
        super::files::print_saved(printer, row.id, &row.peer, &row.file, &result, "v1")?;
    }
    Ok(())
}
