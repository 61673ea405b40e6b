//! Opens a saved attachment with the desktop's program for it: `open` on
//! macOS, `xdg-open` elsewhere (`KAVRO_OPENER` names another program). Its
//! failure is reported, never fatal.

use std::path::Path;
use std::process::{Command, Stdio};

/// The program that opens files here.
fn program() -> String {
    std::env::var("KAVRO_OPENER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".to_owned()
            } else {
                "xdg-open".to_owned()
            }
        })
}

/// Runs the opener on `path` and waits for it (it hands the file to a
/// viewer and returns); why not, in words for the app's notice.
pub fn open(path: &Path) -> Result<(), String> {
    open_with(&program(), path)
}

fn open_with(program: &str, path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Err(format!(
            "Cannot open {}: it is not there any more",
            path.display()
        ));
    }
    // Its output would draw over the app: the terminal belongs to it.
    let status = Command::new(program)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("Cannot open {}: {program}: {e}", path.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "Cannot open {}: {program} ended with {status}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn failures_are_reported_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(open_with("true", &file), Ok(()));
        let failed = open_with("false", &file).unwrap_err();
        assert!(failed.contains("false ended with"), "{failed}");
        let missing = open_with("kavro-no-such-opener", &file).unwrap_err();
        assert!(missing.contains("kavro-no-such-opener"), "{missing}");
        let gone = open_with("true", &dir.path().join("gone.txt")).unwrap_err();
        assert!(gone.contains("not there any more"), "{gone}");
    }
}
