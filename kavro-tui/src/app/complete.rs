//! Tab completion of a file path in the attach prompt, and `~` expansion.
//! The worker runs [`complete`] (it reads a directory); `update` only puts
//! the answer into the prompt, so it stays pure.

use std::path::{Path, PathBuf};

/// At most this many names are offered (a huge directory stays cheap).
const MAX_CANDIDATES: usize = 200;

/// What Tab found for a typed path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// The text to put in the prompt (the longest prefix every candidate
    /// shares, or the one match, with `/` after a directory); `None` when
    /// nothing fits or the prefix does not grow.
    pub text: Option<String>,
    /// The names that fit when there are several (directories end in `/`),
    /// sorted.
    pub candidates: Vec<String>,
}

/// `~` and `~/…` expanded with `home`; anything else as typed.
pub fn expand(typed: &str, home: Option<&Path>) -> PathBuf {
    match (typed, home) {
        ("~", Some(home)) => home.to_path_buf(),
        (t, Some(home)) if t.starts_with("~/") => home.join(&t[2..]),
        _ => PathBuf::from(typed),
    }
}

/// The user's home directory, for `~`.
pub fn home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

/// Completes `typed` against the file system: the directory part is kept
/// as typed (`~` stays `~`), the last part is completed. Hidden names are
/// offered only when the last part starts with a dot.
pub fn complete(typed: &str, home: Option<&Path>) -> Completion {
    if typed == "~" {
        return Completion {
            text: Some("~/".to_owned()),
            candidates: Vec::new(),
        };
    }
    let (dir_part, prefix) = match typed.rfind('/') {
        Some(slash) => typed.split_at(slash + 1),
        None => ("", typed),
    };
    let dir = if dir_part.is_empty() {
        PathBuf::from(".")
    } else {
        expand(dir_part, home)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Completion::default();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            // Follows symbolic links: a link to a directory completes as one.
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .take(MAX_CANDIDATES)
        .collect();
    names.sort();
    match names.as_slice() {
        [] => Completion::default(),
        [only] => Completion {
            text: Some(format!("{dir_part}{only}")),
            candidates: Vec::new(),
        },
        several => {
            let common = common_prefix(several);
            Completion {
                text: (common.len() > prefix.len()).then(|| format!("{dir_part}{common}")),
                candidates: names,
            }
        }
    }
}

/// The longest prefix all `names` share (on a character boundary).
fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut end = first.len();
    for name in &names[1..] {
        end = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(end);
    }
    first[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        std::fs::write(dir.path().join("report.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join("report-old.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        std::fs::write(dir.path().join("photos/cat.png"), b"x").unwrap();
        dir
    }

    #[test]
    fn one_match_completes_and_a_directory_gets_a_slash() {
        let dir = tree();
        let base = format!("{}/", dir.path().display());
        let done = complete(&format!("{base}ph"), None);
        assert_eq!(done.text, Some(format!("{base}photos/")));
        assert!(done.candidates.is_empty());
        let done = complete(&format!("{base}photos/c"), None);
        assert_eq!(done.text, Some(format!("{base}photos/cat.png")));
    }

    #[test]
    fn several_matches_grow_to_their_common_prefix_and_are_listed() {
        let dir = tree();
        let base = format!("{}/", dir.path().display());
        let done = complete(&format!("{base}r"), None);
        assert_eq!(done.text, Some(format!("{base}report")));
        assert_eq!(done.candidates, vec!["report-old.pdf", "report.pdf"]);
        // Nothing more to add: the list only.
        let done = complete(&format!("{base}report"), None);
        assert_eq!(done.text, None);
        assert_eq!(done.candidates.len(), 2);
        // A directory lists what it holds, hidden names left out.
        let done = complete(&base, None);
        assert_eq!(
            done.candidates,
            vec!["photos/", "report-old.pdf", "report.pdf"]
        );
        let done = complete(&format!("{base}.h"), None);
        assert_eq!(done.text, Some(format!("{base}.hidden")));
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let dir = tree();
        let home = dir.path();
        assert_eq!(complete("~", Some(home)).text.as_deref(), Some("~/"));
        assert_eq!(
            complete("~/pho", Some(home)).text.as_deref(),
            Some("~/photos/")
        );
        assert_eq!(
            expand("~/photos/cat.png", Some(home)),
            home.join("photos/cat.png")
        );
        assert_eq!(expand("~", Some(home)), home);
        assert_eq!(expand("~bob/x", Some(home)), PathBuf::from("~bob/x"));
        assert_eq!(expand("/tmp/x", Some(home)), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn nothing_fits_or_no_such_directory() {
        let dir = tree();
        let base = format!("{}/", dir.path().display());
        assert_eq!(complete(&format!("{base}zzz"), None), Completion::default());
        assert_eq!(
            complete(&format!("{base}missing/x"), None),
            Completion::default()
        );
    }

    #[test]
    fn common_prefix_respects_characters() {
        let names = vec!["été.txt".to_owned(), "étude.txt".to_owned()];
        assert_eq!(common_prefix(&names), "ét");
        assert_eq!(common_prefix(&["a".to_owned(), "b".to_owned()]), "");
    }
}
