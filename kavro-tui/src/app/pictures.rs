//! Pictures inline in the conversation (`ratatui-image`): the terminal's
//! graphics protocol, asked once at start-up (kitty, iTerm2, sixel; half
//! blocks when it does not answer), and a bounded set of
//! small thumbnails, each encoded once for that protocol. Inside tmux
//! pictures stay text lines (see [`detect`]). A picture that does not
//! decode stays a plain attachment line.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use image::DynamicImage;
use ratatui::layout::Size;
use ratatui_image::Resize;
use ratatui_image::picker::Picker;
use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::protocol::Protocol;

/// The largest thumbnail kept, in pixels (decoded pictures are shrunk to it
/// at once: memory does not grow with the pictures' own sizes).
const THUMBNAIL: (u32, u32) = (480, 320);
/// The cells a picture takes at most in the conversation.
pub const CELLS: (u16, u16) = (32, 8);
/// Thumbnails kept; the oldest goes first (it is decoded again if shown again).
const KEEP: usize = 24;
/// The most a picture may take while it is decoded.
const DECODE_LIMIT: u64 = 64 * 1024 * 1024;
/// How long the terminal has to answer the graphics query.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// What the app knows of one picture attachment.
#[derive(Clone)]
enum Picture {
    /// Asked the worker to decode it.
    Loading,
    Shown(Box<Protocol>),
    /// It did not decode: a plain attachment line.
    Unreadable,
}

/// The graphics protocol and the thumbnails of pictures shown.
#[derive(Clone, Default)]
pub struct Pictures {
    /// `None`: no inline pictures (tests, or turned off).
    picker: Option<Picker>,
    by_id: HashMap<i64, Picture>,
    /// Attachment ids shown, oldest first.
    order: VecDeque<i64>,
}

impl std::fmt::Debug for Pictures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pictures")
            .field("protocol", &self.picker.as_ref().map(Picker::protocol_type))
            .field("shown", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl Pictures {
    pub fn new(picker: Option<Picker>) -> Self {
        Self {
            picker,
            by_id: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether attachment `id` should be decoded now (pictures are on and
    /// it was not asked for yet); marks it asked.
    pub fn request(&mut self, id: i64) -> bool {
        if self.picker.is_none() || self.by_id.contains_key(&id) {
            return false;
        }
        self.by_id.insert(id, Picture::Loading);
        true
    }

    /// The worker's thumbnail of attachment `id` (or why it did not decode).
    pub fn put(&mut self, id: i64, decoded: Result<DynamicImage, String>) {
        let Some(picker) = &self.picker else {
            return;
        };
        let shown = decoded.ok().and_then(|image| {
            picker
                .new_protocol(image, Size::new(CELLS.0, CELLS.1), Resize::Fit(None))
                .ok()
        });
        match shown {
            Some(protocol) => {
                self.by_id.insert(id, Picture::Shown(Box::new(protocol)));
                self.order.retain(|&i| i != id);
                self.order.push_back(id);
                while self.order.len() > KEEP {
                    if let Some(old) = self.order.pop_front() {
                        self.by_id.remove(&old);
                    }
                }
            }
            None => {
                self.by_id.insert(id, Picture::Unreadable);
            }
        }
    }

    /// The encoded thumbnail of attachment `id`, when there is one.
    pub fn get(&self, id: i64) -> Option<&Protocol> {
        match self.by_id.get(&id) {
            Some(Picture::Shown(protocol)) => Some(protocol),
            _ => None,
        }
    }
}

/// Asks the terminal once which graphics protocol it speaks (call after
/// entering the alternate screen, before reading events); half blocks when
/// it does not answer in time. Inside tmux: `None`, pictures stay text
/// lines (every `Picker` constructor of ratatui-image 11 runs `tmux set -p
/// allow-passthrough on` there, changing the user's tmux pane behind
/// their back).
pub fn detect() -> Option<Picker> {
    if inside_tmux(|name| std::env::var(name).ok()) {
        return None;
    }
    let options = QueryStdioOptions {
        timeout: QUERY_TIMEOUT,
        ..QueryStdioOptions::default()
    };
    Some(Picker::from_query_stdio_with_options(options).unwrap_or_else(|_| Picker::halfblocks()))
}

/// Whether the app runs inside tmux, from the environment (`var`).
fn inside_tmux(var: impl Fn(&str) -> Option<String>) -> bool {
    var("TMUX").is_some_and(|v| !v.is_empty())
        || var("TERM").is_some_and(|t| t.starts_with("tmux"))
        || var("TERM_PROGRAM").is_some_and(|p| p == "tmux")
}

/// Decodes the picture at `path` into a thumbnail of at most
/// [`THUMBNAIL`] pixels; a picture over [`DECODE_LIMIT`] while decoding,
/// or one that does not decode, is refused with the reason.
pub fn thumbnail(path: &Path) -> Result<DynamicImage, String> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(DECODE_LIMIT);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| e.to_string())?;
    Ok(image.thumbnail(THUMBNAIL.0, THUMBNAIL.1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn png(dir: &Path, width: u32, height: u32) -> std::path::PathBuf {
        let path = dir.join("p.png");
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                u8::try_from(x % 256).unwrap(),
                u8::try_from(y % 256).unwrap(),
                128,
            ])
        });
        image.save(&path).unwrap();
        path
    }

    #[test]
    fn a_picture_becomes_a_small_thumbnail_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let thumb = thumbnail(&png(dir.path(), 1200, 900)).unwrap();
        assert!(thumb.width() <= THUMBNAIL.0 && thumb.height() <= THUMBNAIL.1);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"\x89PNG not really").unwrap();
        assert!(thumbnail(&bad).is_err());
        assert!(thumbnail(&dir.path().join("missing.png")).is_err());
    }

    #[test]
    fn tmux_is_recognised_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(inside_tmux(env(&[("TMUX", "/tmp/tmux-0/default,1,0")])));
        assert!(inside_tmux(env(&[("TERM", "tmux-256color")])));
        assert!(inside_tmux(env(&[("TERM_PROGRAM", "tmux")])));
        assert!(!inside_tmux(env(&[("TERM", "xterm-kitty"), ("TMUX", "")])));
        assert!(!inside_tmux(env(&[])));
    }

    #[test]
    fn thumbnails_are_bounded_and_asked_for_once() {
        let mut off = Pictures::new(None);
        assert!(!off.request(1), "no pictures without a protocol");
        let mut pictures = Pictures::new(Some(Picker::halfblocks()));
        let image = DynamicImage::new_rgb8(64, 32);
        assert!(pictures.request(1));
        assert!(!pictures.request(1), "asked once");
        pictures.put(1, Ok(image.clone()));
        assert!(pictures.get(1).is_some());
        pictures.put(2, Err("not a picture".into()));
        assert!(pictures.get(2).is_none());
        assert!(!pictures.request(2), "an unreadable one is not asked again");
        for id in 10..10 + i64::try_from(KEEP).unwrap() {
            pictures.put(id, Ok(image.clone()));
        }
        assert_eq!(pictures.order.len(), KEEP);
        assert!(pictures.get(1).is_none(), "the oldest went first");
        let size = pictures.get(10).unwrap().size();
        assert!(size.width <= CELLS.0 && size.height <= CELLS.1, "{size:?}");
    }
}
