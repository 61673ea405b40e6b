//! The progress bar of a transfer on stderr (indicatif): shown only for a
//! transfer that lasts over a second, never in `--json` mode nor when stderr
//! is not a terminal (scripts read stderr for errors, not bars).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::attach::transfer::Progress;

/// After this long a transfer gets a bar.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A bar for one transfer; hidden until it has lasted [`SHOW_AFTER`].
pub struct Bar {
    inner: Option<ProgressBar>,
    started: Instant,
    shown: Mutex<bool>,
}

impl Bar {
    /// `label`: what moves (`uploading report.pdf`). `enabled`: the caller's
    /// choice (not `--json`); stderr must also be a terminal.
    pub fn new(label: &str, enabled: bool) -> Self {
        let inner = (enabled && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            inner,
            started: Instant::now(),
            shown: Mutex::new(false),
        }
    }

    /// Removes the bar (if it was shown).
    pub fn finish(&self) {
        if let Some(bar) = &self.inner {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn update(&self, done: u64, total: u64) {
        let Some(bar) = &self.inner else { return };
        bar.set_length(total);
        bar.set_position(done);
        if self.started.elapsed() >= SHOW_AFTER
            && let Ok(mut shown) = self.shown.lock()
            && !*shown
        {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            *shown = true;
        }
    }
}
