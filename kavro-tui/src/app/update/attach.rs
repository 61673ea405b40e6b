//! Attachments in `update`: the attach key and its path prompt (Tab asks
//! the worker to complete, Enter sends with the message line as caption),
//! upload progress, the choice of an attachment in the conversation and
//! the key that opens (or downloads) it.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui_textarea::TextArea;

use super::{notice, touch};
use crate::app::attachments::FileToSend;
use crate::app::command::{Command, V2Command};
use crate::app::complete::Completion;
use crate::app::state::{
    AttachPrompt, AttachmentStatus, AttachmentView, FileProtocol, Mark, MessageView, NoticeKind,
    Overlay, SendStatus, State, ViewId,
};
use crate::v2::payload::human_size;

/// The attach key: opens the path prompt for the open conversation when
/// files can go there (a group over Kavro v2; a person over v2 or in a v1
/// file envelope, which the worker chooses and may refuse); else says why.
pub(super) fn open_prompt(state: &mut State) -> Vec<Command> {
    let Some(contact) = state.current() else {
        notice(
            state,
            NoticeKind::Error,
            "No conversation open: press Ctrl-N to start one",
        );
        return Vec::new();
    };
    let label = contact.name.clone();
    let group = contact
        .group
        .as_ref()
        .or(contact.direct.as_ref())
        .map(|g| (g.id.clone(), g.active));
    // A named group this device left; a person's 1:1 this device was
    // removed from is found or made again by the worker.
    let named = contact.group.is_some();
    if named && !state.v2 {
        notice(
            state,
            NoticeKind::Error,
            "Group files go over Kavro v2: this installation is not a Kavro v2 device",
        );
        return Vec::new();
    }
    if named && group.as_ref().is_some_and(|(_, active)| !active) {
        notice(
            state,
            NoticeKind::Error,
            format!("Not sent: you are no longer a member of {label}"),
        );
        return Vec::new();
    }
    let group = group.filter(|(_, active)| *active).map(|(id, _)| id);
    state.overlay = Some(Overlay::Attach(Box::new(AttachPrompt::new(label, group))));
    Vec::new()
}

pub(super) fn on_prompt_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Some(Overlay::Attach(prompt)) = state.overlay.as_mut() else {
        return Vec::new();
    };
    match key.code {
        KeyCode::Esc => {
            state.overlay = None;
            Vec::new()
        }
        KeyCode::Tab => vec![Command::Complete {
            typed: prompt.text(),
        }],
        KeyCode::Enter => submit(state),
        _ => {
            prompt.path.input(key);
            prompt.candidates.clear();
            prompt.error = None;
            Vec::new()
        }
    }
}

/// Enter in the prompt: the file goes to the worker and shows at once as
/// an attachment line being uploaded; the message line is its caption.
fn submit(state: &mut State) -> Vec<Command> {
    let Some(Overlay::Attach(prompt)) = state.overlay.as_mut() else {
        return Vec::new();
    };
    let typed = prompt.text().trim().to_owned();
    if typed.is_empty() {
        prompt.error = Some("Type the path of a file (Tab completes)".to_owned());
        return Vec::new();
    }
    let (label, group) = (prompt.label.clone(), prompt.group.clone());
    state.overlay = None;
    let caption = state.input.lines().join("\n").trim().to_owned();
    let caption = (!caption.is_empty()).then_some(caption);
    state.input = TextArea::default();
    let name = std::path::Path::new(&typed)
        .file_name()
        .map_or_else(|| typed.clone(), |n| n.to_string_lossy().into_owned());
    let pending = state.next_pending_id();
    let me = state
        .me
        .as_ref()
        .map(|m| m.username.clone())
        .unwrap_or_default();
    let now = state.now;
    let v2 = state.v2;
    let text = match &caption {
        Some(caption) => format!("[file] {name} {caption}"),
        None => format!("[file] {name}"),
    };
    let conversation = state.conversation_mut(&label);
    conversation.messages.push(MessageView {
        id: ViewId::Pending(pending),
        author: me,
        sent_at: now,
        text: Some(text),
        mark: Mark::Own,
        status: Some(SendStatus::Sending),
        relay_id: None,
        attachment: Some(Box::new(AttachmentView {
            id: None,
            // For a person, the worker chooses (a v2 device may still send
            // over v1); the history's line replaces this one once sent.
            protocol: if group.is_none() && !v2 {
                FileProtocol::V1
            } else {
                FileProtocol::V2
            },
            name,
            size: 0,
            media_type: String::new(),
            outgoing: true,
            status: AttachmentStatus::Uploading { percent: 0 },
            caption: caption.clone(),
        })),
    });
    conversation.scroll = 0;
    touch(state, &label, now);
    vec![Command::V2(V2Command::SendFile {
        pending,
        group,
        label,
        file: FileToSend {
            path: PathBuf::from(typed),
            caption,
        },
    })]
}

/// The worker's answer to Tab, if the prompt still shows what was completed.
pub(super) fn on_completed(state: &mut State, typed: &str, completion: Completion) {
    let Some(Overlay::Attach(prompt)) = state.overlay.as_mut() else {
        return;
    };
    if prompt.text() != typed {
        return;
    }
    if let Some(text) = &completion.text {
        prompt.set_text(text);
    }
    prompt.error = (completion.text.is_none() && completion.candidates.is_empty())
        .then(|| "Nothing matches".to_owned());
    prompt.candidates = completion.candidates;
}

/// Upload progress of file send `pending`.
pub(super) fn on_upload(state: &mut State, pending: u64, label: &str, percent: u8, size: u64) {
    let Some(message) = state
        .conversation_mut(label)
        .messages
        .iter_mut()
        .find(|m| m.id == ViewId::Pending(pending))
    else {
        return;
    };
    let Some(attachment) = message.attachment.as_mut() else {
        return;
    };
    attachment.status = AttachmentStatus::Uploading {
        percent: percent.min(100),
    };
    if attachment.size != size {
        attachment.size = size;
        // The history line it becomes (`Body::file_line`), so a send
        // queued after the upload is matched when the history holds it.
        let head = format!("[file] {}", attachment.name);
        if let Some(rest) = message.text.as_deref().and_then(|t| t.strip_prefix(&head)) {
            message.text = Some(format!("{head} ({}){rest}", human_size(size)));
        }
    }
}

/// The attachments of the open conversation, oldest first (message indexes).
fn attachment_indexes(state: &State) -> Vec<usize> {
    state
        .current()
        .and_then(|c| state.conversation(&c.name))
        .map(|c| {
            c.messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m.attachment.is_some())
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default()
}

/// The message index of the attachment the open/save key acts on: the one
/// chosen, else the newest.
pub fn selected_index(state: &State) -> Option<usize> {
    let indexes = attachment_indexes(state);
    let conversation = state.current().and_then(|c| state.conversation(&c.name))?;
    conversation
        .selected_attachment
        .and_then(|id| {
            indexes
                .iter()
                .copied()
                .find(|&i| conversation.messages[i].id == id)
        })
        .or_else(|| indexes.last().copied())
}

/// `a` in the conversation: chooses the attachment before the chosen one
/// (from the newest, round again after the oldest), and shows it.
pub(super) fn select_previous(state: &mut State) {
    let indexes = attachment_indexes(state);
    let Some(name) = state.current().map(|c| c.name.clone()) else {
        return;
    };
    if indexes.is_empty() {
        notice(
            state,
            NoticeKind::Info,
            "No attachments in this conversation",
        );
        return;
    }
    let chosen = state
        .conversation(&name)
        .is_some_and(|c| c.selected_attachment.is_some());
    let next = match (chosen, selected_index(state)) {
        (true, Some(current)) => {
            let at = indexes.iter().position(|&i| i == current).unwrap_or(0);
            indexes[(at + indexes.len() - 1) % indexes.len()]
        }
        _ => indexes[indexes.len() - 1],
    };
    let scroll = crate::ui::scroll_to(state, next);
    let conversation = state.conversation_mut(&name);
    conversation.selected_attachment = Some(conversation.messages[next].id);
    conversation.scroll = scroll;
}

/// `o` in the conversation: opens the chosen attachment when it is saved
/// here, downloads it now when it is still on the relay, else says why not.
pub(super) fn open_selected(state: &mut State) -> Vec<Command> {
    let Some(index) = selected_index(state) else {
        notice(
            state,
            NoticeKind::Info,
            "No attachments in this conversation",
        );
        return Vec::new();
    };
    let Some(attachment) = state
        .current()
        .and_then(|c| state.conversation(&c.name))
        .and_then(|c| c.messages[index].attachment.as_deref())
        .cloned()
    else {
        return Vec::new();
    };
    match (&attachment.status, attachment.outgoing) {
        (AttachmentStatus::Saved(path), _) => {
            notice(state, NoticeKind::Info, format!("Opening {path}"));
            vec![Command::OpenFile { path: path.clone() }]
        }
        (AttachmentStatus::NotSaved(reason), _) => {
            notice(
                state,
                NoticeKind::Error,
                format!("{} was not saved: {reason}", attachment.name),
            );
            Vec::new()
        }
        (AttachmentStatus::OnRelay, false) => {
            notice(
                state,
                NoticeKind::Info,
                format!("Downloading {}…", attachment.name),
            );
            vec![match attachment.protocol {
                FileProtocol::V1 => Command::SaveV1Files,
                FileProtocol::V2 => Command::V2(V2Command::SaveAttachments),
            }]
        }
        (AttachmentStatus::OnRelay | AttachmentStatus::Uploading { .. }, true) => {
            notice(
                state,
                NoticeKind::Info,
                format!(
                    "You sent {}: the file stays where it was, Kavro keeps no copy",
                    attachment.name
                ),
            );
            Vec::new()
        }
        (AttachmentStatus::Uploading { .. }, false) => Vec::new(),
    }
}

/// Asks for the thumbnails of the saved pictures of conversation `label`
/// not asked for yet (only when the terminal shows pictures).
pub(super) fn want_pictures(state: &mut State, label: &str) -> Vec<Command> {
    let saved: Vec<(i64, String)> = state
        .conversation(label)
        .map(|c| {
            c.messages
                .iter()
                .filter_map(|m| m.attachment.as_deref())
                .filter(|a| a.is_picture())
                .filter_map(|a| Some((a.picture_key()?, a.saved_path()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    saved
        .into_iter()
        .filter(|(id, _)| state.pictures.request(*id))
        .map(|(id, path)| Command::LoadPicture { id, path })
        .collect()
}
