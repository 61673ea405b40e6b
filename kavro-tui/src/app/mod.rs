//! The interactive chat app (`kavro` with no subcommand).
//!
//! The shape follows the ratatui async templates: [`state::State`] is plain
//! data; [`update::update`] applies an [`action::Action`] and returns
//! [`command::Command`]s; the [`worker::Worker`] turns commands into session
//! calls on its own tasks and sends results back as actions over a channel;
//! [`crate::ui::render`] only reads the state. The UI never awaits the network.

pub mod action;
pub mod attachments;
pub mod command;
pub mod complete;
pub mod files_v1;
#[cfg(test)]
pub mod fixtures;
pub mod groups;
pub mod notify;
pub mod opener;
pub mod pictures;
pub mod settings;
pub mod state;
pub mod sync;
pub mod terminal;
pub mod update;
pub mod v2side;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Local, Offset as _, Utc};
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt as _;
use tokio::sync::{RwLock, mpsc};

use self::action::Action;
use self::state::{Screen, State};
use self::sync::SyncSettings;
use self::worker::Worker;
use crate::session::Session;

/// Options of the chat app.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppOptions {
    pub sync: SyncSettings,
}

/// Turns a terminal event into an action (or nothing, for events we ignore).
fn action_for(event: Event) -> Option<Action> {
    match event {
        Event::Key(key) => Some(Action::Key(key)),
        Event::Mouse(mouse) => Some(Action::Mouse(mouse)),
        Event::Paste(text) => Some(Action::Paste(text)),
        Event::Resize(width, height) => Some(Action::Resize(width, height)),
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// Runs the chat app on this terminal until the user quits.
pub async fn run(session: Session, options: AppOptions) -> anyhow::Result<()> {
    let server = session.profile().server().as_str().to_owned();
    let logged_in = session.account().is_ok() && session.own_key().is_ok();
    let (settings, settings_problem) = settings::load(&settings::path(session.profile().paths()));
    let session = Arc::new(RwLock::new(session));
    let (actions_tx, mut actions) = mpsc::unbounded_channel::<Action>();
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker::new(session.clone(), actions_tx, options.sync));
    let worker_task = {
        let worker = worker.clone();
        tokio::spawn(async move {
            if logged_in {
                worker.start().await;
            }
            // Commands run one at a time, in order (sends keep their order).
            while let Some(command) = commands.recv().await {
                worker.handle(command).await;
            }
        })
    };

    let offset = Local::now().offset().fix();
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut state = State::new(server, Utc::now(), offset, color);
    state.settings = settings;
    if let Some(problem) = settings_problem {
        update::update(&mut state, Action::Net(action::NetEvent::Failed(problem)));
    }
    if !logged_in {
        state.screen = Screen::Login(Box::default());
    }

    let desktop = notify::desktop_session();
    let mut guard = terminal::init()?;
    // Asked once, before events are read (the answer comes on stdin).
    state.pictures = pictures::Pictures::new(pictures::detect());
    let size = guard.terminal.size()?;
    state.size = (size.width, size.height);
    let mut events = EventStream::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        if let Err(err) = guard
            .terminal
            .draw(|frame| crate::ui::render(frame, &state))
        {
            break Err(err.into());
        }
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => match action_for(event) {
                    Some(action) => action,
                    None => continue,
                },
                Some(Err(err)) => break Err(err.into()),
                None => break Ok(()),
            },
            Some(action) = actions.recv() => action,
            _ = ticker.tick() => Action::Tick(Utc::now()),
        };
        for command in update::update(&mut state, action) {
            if let command::Command::Notify { title, body } = &command {
                notify::notify(guard.terminal.backend_mut(), title, body, desktop);
            }
            let _ = commands_tx.send(command);
        }
        if state.should_quit {
            break Ok(());
        }
    };
    drop(guard);
    worker_task.abort();
    result
}
