//! The command line, as clap definitions: global flags (usable before or
//! after the subcommand), the subcommands, and the help texts.

use clap::{Args, Parser, Subcommand};

use crate::config::{ENV_PROFILE, ENV_SERVER};

const ABOUT: &str = "End-to-end encrypted messages through a Kavro relay";

const LONG_ABOUT: &str = "\
End-to-end encrypted messages through a Kavro relay.

Messages are encrypted on this device to the recipient's identity key; the relay only ever \
stores ciphertext. Contacts' keys are pinned on first use: if the relay later shows another \
key, `send` refuses and reads warn until you compare safety numbers and run `kavro trust`.

Quick start:
  kavro                           the chat app (log in or register there)
  kavro register alice            create an account and an identity key
  kavro send bob 'hello'          encrypt and send (or pipe the text in)
  kavro inbox                     fetch, verify, decrypt, store and print
  kavro fingerprint bob           the safety number to compare with bob's

Environment:
  KAVRO_SERVER       relay URL (default: the profile's, else http://127.0.0.1:8000)
  KAVRO_CA_CERT      PEM file of a certificate authority to trust besides the system's
  KAVRO_PROFILE      profile name (default: default)
  KAVRO_CONFIG_DIR   config directory (profiles/<profile>.toml)
  KAVRO_DATA_DIR     data directory (profiles/<profile>/: history, key file)
  KAVRO_KEY_STORE    keyring | file: where new identity keys and tokens are kept
  KAVRO_PASSWORD     the password, for scripts (or use --password-stdin)
  NO_COLOR           kavro prints no colour in any case";

/// Documented in `kavro --help`; kept in step with `cli::exit`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error
  2  usage error (bad arguments or input)
  3  not logged in, or the relay refused the password or session
  4  a contact's key changed (compare safety numbers, then `kavro trust`) or has no usable key
  5  relay unreachable or rate limiting (the message says how long to wait)
  6  no such user, or no such conversation (#GROUP)
  7  the relay's TLS certificate is not trusted (a relay with its own CA: --ca-cert)";

/// `kavro`: see the long help.
#[derive(Debug, Parser)]
#[command(
    name = "kavro",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    max_term_width = 100,
    propagate_version = true,
)]
pub struct Cli {
    #[arg(
        long,
        help = "Relay URL, e.g. https://relay.example.org",
        global = true,
        env = ENV_SERVER,
        hide_env_values = true,
        value_name = "URL",
        display_order = 900
    )]
    pub server: Option<String>,

    /// Profile: one account with its own keys and history
    #[arg(
        long,
        global = true,
        env = ENV_PROFILE,
        hide_env_values = true,
        default_value = crate::paths::ProfileName::DEFAULT,
        value_name = "NAME",
        display_order = 901
    )]
    pub profile: String,

    /// Print one JSON object per line instead of text
    #[arg(long, global = true, display_order = 902)]
    pub json: bool,

    /// Also trust this certificate authority (PEM) for the relay's TLS certificate
    #[arg(
        long,
        global = true,
        env = "KAVRO_CA_CERT",
        hide_env_values = true,
        value_name = "FILE",
        display_order = 904
    )]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Seconds between inbox polls (chat app, inbox --watch) when the relay has no long-poll
    #[arg(
        long,
        global = true,
        env = "KAVRO_POLL_INTERVAL",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        value_name = "SECS",
        display_order = 903
    )]
    pub poll_interval: u64,

    /// Without a command, kavro opens the chat app
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account, generate an identity key and publish it
    Register(RegisterArgs),
    /// Log in; on a device without a key for the account, generate and publish a new one
    Login(Credentials),
    /// Revoke the session token on the relay and forget it here (the key stays)
    Logout {
        /// Revoke every session of the account, on every device
        #[arg(long)]
        everywhere: bool,
    },
    /// Change the password; every other session of the account is logged out
    #[command(
        long_about = "Change the account's password. The relay logs out every other \
                      session of the account (other devices log in again with the new \
                      password); this one gets a new token.\n\n\
                      Prompts for the current password and the new one (twice), or reads both \
                      from standard input with --password-stdin: the current password on the \
                      first line, the new one on the second."
    )]
    Password {
        /// Read the current and the new password from the first two lines of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List your keys on the relay (the one this device holds is marked), or retire one
    Keys {
        #[command(subcommand)]
        action: Option<KeysCommand>,
    },
    /// Delete the account on the relay and this profile's secrets
    #[command(
        long_about = "Delete the account on the relay: its keys, the messages queued \
                      for it and its sessions go, and the name stays reserved for a while. \
                      Then this profile's identity key, token and account record are removed \
                      here; the local history stays.\n\n\
                      Asks you to type the username, then the password. For scripts: --yes \
                      and the password from --password-stdin or KAVRO_PASSWORD."
    )]
    DeleteAccount {
        /// Do not ask to type the username (scripts)
        #[arg(long)]
        yes: bool,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show the account, the relay and your key's fingerprint
    Whoami,
    /// Kavro v2 devices of your account: link this installation, approve, list, revoke
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Kavro v2 group conversations (MLS): create, add, remove, leave, rename, list, members
    #[command(subcommand)]
    Group(GroupCommand),
    /// Encrypt a message and send it
    #[command(
        long_about = "Encrypt a message and hand it to the relay. Exits 0 once the relay stored it.\n\n\
                      When this installation and USER both have Kavro v2 devices, the message goes \
                      to the 1:1 MLS conversation of all their devices; a device that does not chain \
                      to USER's pinned root device is refused (exit 4). Otherwise (or with --v1) it \
                      goes in the v1 box to USER's identity key: the first time, the key is pinned \
                      (trust on first use); if the relay later shows another key, nothing is sent \
                      and kavro exits with 4: compare safety numbers (`kavro fingerprint USER`), \
                      then `kavro trust USER`."
    )]
    Send(SendArgs),
    /// Fetch, verify, decrypt, store, acknowledge and print new messages
    #[command(
        long_about = "Fetch new messages, open and verify them, store them in the local \
                      history, acknowledge them on the relay (after they are stored) and print \
                      them, oldest first.\n\n\
                      A message is `verified` only if it was made with the key pinned for its \
                      sender, names you as recipient, and comes from the account the relay says \
                      sent it. Others are printed with their state (unverified, key_mismatch, \
                      undecryptable) and an explanation; none is dropped."
    )]
    Inbox(InboxArgs),
    /// Show the messages exchanged with a contact (from the local history)
    History(HistoryArgs),
    /// List contacts and the state of their keys (pinned, verified, CHANGED)
    Contacts,
    /// List the files received and sent in Kavro v2 conversations (saved where, or why not)
    Attachments,
    /// Show the safety number with a contact, or your own key's fingerprint
    #[command(
        long_about = "With a username: the safety number of your key and theirs, the same on \
                      both sides. Compare it with theirs in person or over another channel; if \
                      it matches, run `kavro trust USER`.\n\n\
                      Without: your own key's fingerprint."
    )]
    Fingerprint {
        /// The contact (omit for your own key)
        username: Option<String>,
    },
    /// Accept a contact's key after comparing safety numbers: only the key you compared
    #[command(
        long_about = "Mark a contact's key verified (or accept their new key) after comparing \
                      safety numbers. Pass the safety number or the key fingerprint that \
                      `kavro fingerprint USER` showed and you compared: if the relay has shown \
                      another key since, nothing is trusted and kavro exits with 4."
    )]
    Trust {
        /// The contact
        username: String,
        /// The safety number (60 digits) or key fingerprint (32 hex digits) you compared,
        /// spaces allowed
        #[arg(value_name = "SAFETY-NUMBER|KEY-FINGERPRINT", num_args = 0..)]
        compared: Vec<String>,
    },
    /// Settings of this profile
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script
    #[command(long_about = "Print a shell completion script, e.g.\n  \
                      kavro completions bash > ~/.local/share/bash-completion/completions/kavro\n  \
                      kavro completions zsh > ~/.zfunc/_kavro")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `kavro keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Retire one of your keys (not the one this device uses): contacts see a key change
    Retire {
        /// The key's id, as `kavro keys` lists it
        key_id: i64,
    },
}

/// `kavro device`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Link this installation to your account: prints a code to approve on one of your devices
    Link {
        /// Seconds to wait for the approval
        #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Approve a code shown by `kavro device link`: signs the link, adds the device to every conversation
    Approve {
        /// The code the new installation shows
        code: String,
    },
    /// List the devices of your account (or of USER), with their key fingerprints
    List {
        /// Another account
        username: Option<String>,
    },
    /// Revoke a device of your account: it is removed from every conversation
    Revoke {
        /// The device's id, as `kavro device list` shows it
        device_id: i64,
    },
}

/// `kavro group`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group with the given members (and all your devices)
    Create {
        /// The group's name (1 to 40 characters, no spaces)
        name: String,
        /// A member's username (repeat for more)
        #[arg(long = "member", value_name = "USER", required = true)]
        members: Vec<String>,
        /// Post-quantum hybrid key exchange (X-Wing: ML-KEM-768 + X25519; a draft
        /// MLS ciphersuite): every member's devices need a recent kavro
        #[arg(long)]
        pq: bool,
    },
    /// Add people (all their devices) to a group
    Add {
        /// The group (NAME or #NAME)
        group: String,
        #[arg(required = true, value_name = "USER")]
        members: Vec<String>,
    },
    /// Remove people (all their devices) from a group
    Remove {
        /// The group (NAME or #NAME)
        group: String,
        #[arg(required = true, value_name = "USER")]
        members: Vec<String>,
    },
    /// Leave a group (the next member to sync commits it)
    Leave {
        /// The group (NAME or #NAME)
        group: String,
    },
    /// Rename a group, for every member
    Rename {
        /// The group (NAME or #NAME)
        group: String,
        /// The new name
        name: String,
    },
    /// Replace this device's keys in a group (one commit): a copy of its old state reads nothing after
    Update {
        /// The group (NAME or #NAME)
        group: String,
    },
    /// List conversations with their member counts
    List,
    /// List the members of a group
    Members {
        /// The group (NAME or #NAME)
        group: String,
    },
}

/// `kavro config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show or refuse legacy (unauthenticated) messages, per contact or by default
    #[command(
        long_about = "Legacy messages come from old clients without sender authentication: \
                      only the relay says who sent them. By default they are shown, marked as \
                      legacy. Refused ones are stored with their ciphertext but no text.\n\n\
                      Examples:\n  kavro config legacy bob refuse\n  \
                      kavro config legacy --default refuse\n  kavro config legacy"
    )]
    Legacy(LegacyArgs),
}

/// `kavro config legacy`.
#[derive(Debug, Args)]
pub struct LegacyArgs {
    /// The setting for everyone without one of their own
    #[arg(long, value_name = "allow|refuse", conflicts_with_all = ["username", "policy"])]
    pub default: Option<crate::history::LegacyPolicy>,
    /// The contact (omit to list the settings)
    pub username: Option<String>,
    /// allow or refuse
    #[arg(value_name = "allow|refuse", requires = "username")]
    pub policy: Option<crate::history::LegacyPolicy>,
}

/// Username and how to get the password.
#[derive(Debug, Args)]
pub struct Credentials {
    /// 3 to 30 characters of A-Z, a-z, 0-9, '_' and '-'
    pub username: String,

    /// Read the password from the first line of standard input (else
    /// KAVRO_PASSWORD, else a prompt)
    #[arg(long)]
    pub password_stdin: bool,
}

/// `kavro register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub credentials: Credentials,

    /// The invite code a relay that registers by invitation asks for
    #[arg(long, value_name = "CODE")]
    pub invite: Option<String>,
}

/// `kavro send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The recipient, or #GROUP for a Kavro v2 group
    pub username: String,

    /// The message; without it, or with '-', it is read from standard input
    #[arg(value_name = "TEXT|-", conflicts_with = "file")]
    pub text: Option<String>,

    /// Send this file (encrypted on this device; over Kavro v2 when the
    /// recipient has v2 devices, else in a v1 envelope to a Kavro client that
    /// has sent you a message; files over the relay's cap are refused before
    /// upload)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["v1", "wait_delivered"])]
    pub file: Option<std::path::PathBuf>,

    /// A text sent with --file
    #[arg(long, value_name = "TEXT", requires = "file")]
    pub caption: Option<String>,

    /// After sending, wait until the recipient has fetched the message (v1)
    #[arg(long)]
    pub wait_delivered: bool,

    /// Send over the v1 box even if the recipient has Kavro v2 devices
    /// (--wait-delivered implies it: v2 has no per-message delivery status)
    #[arg(long)]
    pub v1: bool,

    /// Seconds to wait with --wait-delivered (exit 1 if not delivered by then)
    #[arg(
        long,
        requires = "wait_delivered",
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub timeout: u64,
}

/// `kavro inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Store and print, but leave the messages on the relay (not acknowledged)
    #[arg(long, conflicts_with = "watch")]
    pub no_ack: bool,

    /// Keep waiting for new messages and print them as they arrive (Ctrl-C stops)
    #[arg(long)]
    pub watch: bool,

    /// Where received files are saved (never over an existing file: `name (1).pdf`);
    /// default: your Downloads folder, else `downloads` in Kavro's data directory
    #[arg(long, value_name = "DIR", env = "KAVRO_DOWNLOAD_DIR")]
    pub download_dir: Option<std::path::PathBuf>,

    /// Process at most N messages (default: all that are waiting)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `kavro history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The contact, or #GROUP for a Kavro v2 group
    pub username: String,

    /// Show the last N messages
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kavro").chain(args.iter().copied()))
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        let before = parse(&["--json", "--profile", "work", "inbox"]).unwrap();
        let after = parse(&["inbox", "--json", "--profile", "work"]).unwrap();
        for cli in [before, after] {
            assert!(cli.json);
            assert_eq!(cli.profile, "work");
            assert!(matches!(cli.command, Some(Command::Inbox(_))));
        }
        let cli = parse(&["send", "bob", "hi", "--server", "http://x:1"]).unwrap();
        assert_eq!(cli.server.as_deref(), Some("http://x:1"));
    }

    #[test]
    fn send_arguments() {
        let cli = parse(&["send", "bob"]).unwrap();
        let Some(Command::Send(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.text, None);
        assert!(!args.wait_delivered);
        let cli = parse(&["send", "bob", "-", "--wait-delivered", "--timeout", "5"]).unwrap();
        let Some(Command::Send(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.text.as_deref(), Some("-"));
        assert_eq!(args.timeout, 5);
        let err = parse(&["send", "bob", "hi", "--timeout", "5"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["frobnicate"][..],
            &["send"],
            &["inbox", "--limit", "0"],
            &["inbox", "--watch", "--no-ack"],
            &["completions", "tcsh"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        // No command: the chat app.
        assert!(parse(&[]).unwrap().command.is_none());
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn every_command_has_help() {
        let mut command = Cli::command();
        command.build(); // propagates the global flags
        for sub in command
            .get_subcommands_mut()
            .filter(|sub| sub.get_name() != "help")
        {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("--json"),
                "{}: global flags in help",
                sub.get_name()
            );
        }
    }

    /// What `kavro ARGS --help` prints, at a fixed width.
    fn help(args: &[&str]) -> String {
        let err = Cli::command()
            .term_width(100)
            .try_get_matches_from(std::iter::once("kavro").chain(args.iter().copied()))
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        err.render().to_string()
    }

    #[test]
    fn golden_help() {
        let main = help(&["--help"]);
        assert!(main.contains("Exit codes:"), "{main}");
        insta::assert_snapshot!("help", main);
        insta::assert_snapshot!("help_send", help(&["send", "--help"]));
        insta::assert_snapshot!("help_inbox", help(&["inbox", "--help"]));
    }
}
