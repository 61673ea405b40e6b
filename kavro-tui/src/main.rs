//! The `kavro` binary: everything lives in the library; see `kavro_tui::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kavro_tui::main()
}
