//! `Range: bytes=…` for blob downloads: one range only (`a-b`, `a-`, `-n`);
//! anything else is served in full, as RFC 9110 §14.2 allows, except a
//! well-formed range that starts past the end (`416`).

use std::ops::Range;

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole blob (no header, or one we ignore).
    Full,
    /// These bytes (`206`).
    Part(Range<u64>),
    /// Outside the blob (`416`).
    Unsatisfiable,
}

/// Reads a `Range` header value against a blob of `size` bytes.
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Full;
    };
    if spec.contains(',') {
        return Wanted::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Full;
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Full,
        },
        (false, true) => match number(first) {
            Some(a) if a < size => Wanted::Part(a..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Wanted::Full,
            (Some(a), Some(_)) if a >= size => Wanted::Unsatisfiable,
            (Some(a), Some(b)) => Wanted::Part(a..b.min(size - 1) + 1),
            _ => Wanted::Full,
        },
        (true, true) => Wanted::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(wanted(None, 10), Wanted::Full);
        assert_eq!(wanted(Some("bytes=0-3"), 10), Wanted::Part(0..4));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4..10));
        assert_eq!(wanted(Some("bytes=8-100"), 10), Wanted::Part(8..10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7..10));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=9-9"), 10), Wanted::Part(9..10));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=10-12"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        for bad in [
            "bytes=a-b",
            "bytes=5-2",
            "bytes=-",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=1",
            "bytes=-x",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(wanted(Some(bad), 10), Wanted::Full, "{bad}");
        }
    }
}
