//! Where a received file is saved: its name as the sender gave it, made safe
//! (no directories, no control characters, not hidden, not too long), in the
//! downloads directory, never over an existing file (`name (1).pdf`).

use std::path::{Path, PathBuf};

/// Longest saved name, in bytes.
const MAX_NAME: usize = 200;

/// A file name from another person, safe to create in a directory.
pub fn safe_name(sent: &str) -> String {
    // The last path component, whichever separator the sender's system uses.
    let last = sent.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    let mut name = if cleaned.is_empty() {
        "attachment".to_owned()
    } else {
        cleaned.to_owned()
    };
    if name.len() > MAX_NAME {
        let (stem, ext) = split(&name);
        let ext = if ext.len() < 16 { ext } else { "" };
        let mut cut = MAX_NAME - ext.len();
        while !stem.is_char_boundary(cut.min(stem.len())) {
            cut -= 1;
        }
        name = format!("{}{ext}", &stem[..cut.min(stem.len())]);
    }
    name
}

/// `report.pdf` → (`report`, `.pdf`); no extension → (`name`, ``).
fn split(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// Reserves a new file for `name` in `dir` (created empty, so that no other
/// download takes the same name): `name`, else `name (1)`, `name (2)`, ….
pub fn reserve(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let (stem, ext) = split(name);
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(_) => return Ok(candidate),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "no free name for {name} in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_from_others_are_made_safe() {
        assert_eq!(safe_name("report.pdf"), "report.pdf");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\Users\\bob\\notes.txt"), "notes.txt");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name(".."), "attachment");
        assert_eq!(safe_name(""), "attachment");
        assert_eq!(safe_name("a\u{1b}[31mred\n.txt"), "a_[31mred_.txt");
        let long = format!("{}.tar.gz", "é".repeat(300));
        let safe = safe_name(&long);
        assert!(safe.len() <= MAX_NAME, "{safe}");
        assert_eq!(std::path::Path::new(&safe).extension().unwrap(), "gz");
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.pdf"), b"mine").unwrap();
        let first = reserve(dir.path(), "report.pdf").unwrap();
        assert_eq!(first, dir.path().join("report (1).pdf"));
        let second = reserve(dir.path(), "report.pdf").unwrap();
        assert_eq!(second, dir.path().join("report (2).pdf"));
        assert_eq!(
            std::fs::read(dir.path().join("report.pdf")).unwrap(),
            b"mine"
        );
        assert_eq!(
            reserve(dir.path(), "README").unwrap(),
            dir.path().join("README")
        );
        assert_eq!(
            reserve(dir.path(), "README").unwrap(),
            dir.path().join("README (1)")
        );
    }
}
