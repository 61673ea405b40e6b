//! The relay's allocator settings. mimalloc reads its options from the
//! environment once, when the process starts; by default it keeps freed
//! memory (the 19 MiB of an Argon2 hash, the buffers of a burst of
//! connections) until its thread next allocates, and commits arena memory
//! ahead of use, so an idle relay never gave that memory back. The relay
//! therefore starts itself once more (`exec`, same process id) with
//! [`SETTINGS`] in its environment, unless they are there already; an
//! operator's own value of any of them wins. Figures: docs/BENCHMARKS.md
//! "Memory (RSS)".

use std::ffi::OsString;

/// Return freed memory to the system at once; commit arena memory only as used.
pub const SETTINGS: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// The settings still missing from an environment read through `var`.
pub fn missing(var: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, &'static str)> {
    SETTINGS
        .into_iter()
        .filter(|(name, _)| var(name).is_none())
        .collect()
}

/// Re-executes this program with the missing settings, or returns when
/// none is missing or the exec fails (the relay then runs with mimalloc's
/// defaults: more memory, same behaviour). Unix only (`exec`).
#[cfg(unix)]
pub fn apply() {
    use std::os::unix::process::CommandExt as _;

    let missing = missing(|name| std::env::var_os(name));
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args).envs(missing);
    // Returns only on failure.
    let err = command.exec();
    eprintln!("kavro-server: running with the allocator's default settings ({err})");
}

#[cfg(not(unix))]
pub fn apply() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unset_settings_are_added() {
        assert_eq!(missing(|_| None), SETTINGS.to_vec());
        let operator = |name: &str| (name == "MIMALLOC_PURGE_DELAY").then(|| OsString::from("50"));
        assert_eq!(
            missing(operator),
            vec![("MIMALLOC_ARENA_EAGER_COMMIT", "0")],
            "the operator's value stays"
        );
        assert!(
            missing(|_| Some(OsString::from("1"))).is_empty(),
            "no second exec"
        );
    }
}
