//! The one error type, with all user-facing wording in one place.
//!
//! Variants hold data only; `Display` says what went wrong, where, and, when the fix is known,
//! what to do. Values go in backticks, lowercase, no trailing period.

use std::path::PathBuf;

use crate::config::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no `shipit.toml` in `{}`\n  help: run shipit from the app directory, pass `-C DIR`, or create one with `shipit init`", dir.display())]
    NoConfig { dir: PathBuf },

    #[error("failed to read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "environment name `{name}` is not valid\n  help: environment names are lowercase letters, digits and `-`, such as `production`"
    )]
    BadEnvironmentName { name: String },

    #[error("unknown environment `{name}`: `{}` does not exist{}{}", path.display(),
        suggestion.as_ref().map(|s| format!("\n  help: did you mean `{s}`?")).unwrap_or_default(),
        if known.is_empty() { "\n  help: create it, with at least `domain` and `hosts`".to_owned() }
        else { format!("\n  help: the environments are {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")) })]
    UnknownEnvironment {
        name: String,
        path: PathBuf,
        known: Vec<String>,
        suggestion: Option<String>,
    },

    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),

    #[error("`{}` line {line}: {message}", path.display())]
    DotEnv {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("registry password missing: neither environment variable `{var}` nor `{var}` in `{}` is set\n  help: export {var}=... or add it to .env beside shipit.toml", dotenv.display())]
    MissingRegistryPassword { var: String, dotenv: PathBuf },

    #[error("template `{name}`: {message}")]
    Template { name: String, message: String },

    #[error("cannot connect to `{host}`: {message}{}", help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    Connect {
        host: String,
        message: String,
        help: Option<String>,
    },

    #[error("{}", hosts.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Hosts { hosts: Vec<Error> },

    #[error("on `{host}`: `{command}` failed{}{}", code.map(|c| format!(" with exit code {c}")).unwrap_or_else(|| " (killed by a signal)".into()),
        if stderr.is_empty() { String::new() } else { format!("\n{}", indent(stderr)) })]
    Remote {
        host: String,
        command: String,
        code: Option<i32>,
        stderr: String,
    },

    #[error(
        "on `{host}`: lost the SSH connection while running `{command}`: {message}\n  help: check that the host is up and sshd is running, then run the command again"
    )]
    Transport {
        host: String,
        command: String,
        message: String,
    },

    #[error(
        "on `{host}`: the candidate `{file}` was refused by `{validator}`; the installed file is unchanged and nothing was reloaded\n{}",
        indent(output)
    )]
    Validation {
        host: String,
        file: String,
        validator: String,
        output: String,
    },

    #[error("on `{host}`: unexpected answer from `{command}`: {message}")]
    Protocol {
        host: String,
        command: String,
        message: String,
    },

    #[error("failed to write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn indent(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoConfig { .. }
            | Error::BadEnvironmentName { .. }
            | Error::UnknownEnvironment { .. }
            | Error::Config(_)
            | Error::DotEnv { .. }
            | Error::MissingRegistryPassword { .. }
            | Error::Template { .. } => 2,
            Error::Connect { .. } | Error::Transport { .. } => 3,
            Error::Hosts { hosts } => hosts.iter().map(Error::exit_code).max().unwrap_or(1),
            Error::Validation { .. } => 4,
            Error::Remote { .. }
            | Error::Protocol { .. }
            | Error::Read { .. }
            | Error::Write { .. } => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
