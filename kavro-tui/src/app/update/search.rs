//! `/` searches the open conversation: the matches follow each key typed
//! (case-insensitive, the newest match shown first), Enter stops typing,
//! `n` goes to the previous (older) match and `N` to the next (newer) one,
//! Esc leaves the search.

use crossterm::event::{KeyCode, KeyEvent};

use crate::app::command::Command;
use crate::app::state::{Search, State};

/// `/`: starts a search in the open conversation.
pub(super) fn start(state: &mut State) -> Vec<Command> {
    if state.current().is_some() {
        state.search = Some(Search::default());
    }
    Vec::new()
}

/// Keys while a search is on; `None` for keys it leaves to the panes.
pub(super) fn on_key(state: &mut State, key: KeyEvent) -> Option<Vec<Command>> {
    let search = state.search.as_mut()?;
    match key.code {
        KeyCode::Esc => {
            state.search = None;
            return Some(Vec::new());
        }
        KeyCode::Enter if search.typing => search.typing = false,
        _ if search.typing => {
            search.query.input(key);
            refresh(state);
        }
        KeyCode::Char('n') => step(state, true),
        KeyCode::Char('N') => step(state, false),
        KeyCode::Char('/') => search.typing = true,
        _ => return None,
    }
    Some(Vec::new())
}

/// Finds the query's matches again and shows the newest.
fn refresh(state: &mut State) {
    let Some(search) = state.search.as_ref() else {
        return;
    };
    let query = search.text().to_lowercase();
    let matches: Vec<usize> = match state.current().and_then(|c| state.conversation(&c.name)) {
        Some(conversation) if !query.is_empty() => conversation
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.text
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase().contains(&query))
            })
            .map(|(i, _)| i)
            .collect(),
        _ => Vec::new(),
    };
    let current = matches.len().checked_sub(1);
    if let Some(search) = state.search.as_mut() {
        search.matches = matches;
        search.current = current;
    }
    scroll_to_match(state);
}

/// `n` (older) / `N` (newer), wrapping around.
fn step(state: &mut State, older: bool) {
    let Some(search) = state.search.as_mut() else {
        return;
    };
    let count = search.matches.len();
    if count == 0 {
        return;
    }
    let at = search.current.unwrap_or(count - 1);
    search.current = Some(if older {
        (at + count - 1) % count
    } else {
        (at + 1) % count
    });
    scroll_to_match(state);
}

/// Scrolls the conversation so the match shown is on screen.
fn scroll_to_match(state: &mut State) {
    let Some(index) = state.search.as_ref().and_then(Search::shown) else {
        return;
    };
    let Some(name) = state.current().map(|c| c.name.clone()) else {
        return;
    };
    let scroll = crate::ui::scroll_to(state, index);
    state.conversation_mut(&name).scroll = scroll;
}
