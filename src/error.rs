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

    #[error("`{}` line {line}: {message}\n  help: fix the pattern; Docker's syntax is `*`, `?`, `[a-z]`, `**` and `!` to re-include", path.display())]
    DockerIgnore {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("no Dockerfile at `{}`\n  help: create it, or set `dockerfile` in shipit.toml to the right path (relative to `context`)", path.display())]
    NoDockerfile { path: PathBuf },

    #[error("{}", if *not_a_repository {
        "the app directory is not in a git repository, so the release has no commit to name it\n  help: commit the app to git, or pass `--allow-dirty` to build it anyway (the tag is marked `nogit`)"
    } else {
        "the app's git working tree has uncommitted changes\n  help: commit them, or pass `--allow-dirty` to build anyway (the tag is marked `dirty`)"
    })]
    DirtyTree { not_a_repository: bool },

    #[error(
        "no `[registry]` in the configuration\n  help: add `[registry]` with `server`, `username` and `password_env` to shipit.toml"
    )]
    NoRegistry,

    #[error(
        "cannot reach the Docker engine at `{address}`: {message}\n  help: start it (`systemctl start docker`, or `dockerd &` where there is no systemd), or point DOCKER_HOST at it"
    )]
    EngineUnreachable { address: String, message: String },

    #[error("build failed at {step}{}\n{}", if output.trim().is_empty() { String::new() } else { format!("\n{}", indent(output)) }, indent(error))]
    BuildStep {
        step: String,
        output: String,
        error: String,
    },

    #[error(
        "registry `{registry}` refused the credentials of `{username}` (401): {message}\n  help: the password came from {source_used}; check it, and `registry.username`"
    )]
    RegistryUnauthorized {
        registry: String,
        username: String,
        source_used: String,
        message: String,
    },

    #[error(
        "registry `{registry}` is unreachable after {attempts} attempts: {message}\n  help: check that the registry is up and that `registry.server` is right"
    )]
    RegistryUnreachable {
        registry: String,
        attempts: usize,
        message: String,
    },

    #[error("push of `{reference}` failed: {message}")]
    Push { reference: String, message: String },

    #[error(
        "`{reference}` is not in the registry: --no-build deploys a release built and pushed before\n  help: build it first (`shipit build {environment}`, from the same commit and with the same --version), or deploy without --no-build"
    )]
    NotBuilt {
        reference: String,
        environment: String,
    },

    #[error(
        "the deploy lock of `{environment}` is held on `{host}` by {holder}\n  help: wait for it (`--lock-wait 5m`), or if that deploy is dead, run `shipit lock release {environment}`"
    )]
    LockHeld {
        host: String,
        holder: String,
        environment: String,
    },

    #[error(
        "`{host}` is not provisioned for this app (no upstream include)\n  help: run `shipit provision {environment}` first"
    )]
    NotProvisioned { host: String, environment: String },

    #[error("there is no earlier release to roll back to{}\n  help: `shipit releases {environment}` lists what the hosts have", current.as_ref().map(|c| format!(" (live: {c})")).unwrap_or_default())]
    NoPrevious {
        current: Option<String>,
        environment: String,
    },

    #[error("release `{wanted}` is not among the retained releases: {}\n  help: pick one of those, or raise `deploy.retain`", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    NotRetained {
        wanted: String,
        available: Vec<String>,
    },

    #[error("health gate failed on `{}`: {} ({}) did not become healthy within {}\n  last answer: {}\n  last {} log lines of {}:\n{}\n  no host was switched; the new copies were stopped",
        .0.host, .0.colour, .0.release, .0.timeout, .0.answer, .0.logs.lines().count(), .0.unit, indent(&.0.logs))]
    HealthGate(Box<HealthGateFailure>),

    #[error(
        "verification through nginx failed on `{host}`: {reason}\n  every host was switched back to the previous release"
    )]
    VerifyFailed { host: String, reason: String },

    #[error(
        "the switch failed on `{host}`: {reason}\n  every host that had switched was switched back"
    )]
    SwitchFailed { host: String, reason: String },

    #[error("interrupted: the lock was released{}", if *switched { "; some hosts may have switched: run the deploy or a rollback again to converge" } else { "; no host was switched" })]
    Interrupted { switched: bool },

    #[error(
        "refusing to {action} without confirmation: standard input is not a terminal\n  help: pass `--yes`"
    )]
    NeedsConfirmation { action: String },

    #[error("secret{} missing: {}\n  help: export each, or add it to `{}`", if names.len() == 1 { "" } else { "s" }, names.join(", "), dotenv.display())]
    MissingSecrets { names: Vec<String>, dotenv: PathBuf },

    #[error("refusing to overwrite {}\n  help: move them away, or edit them instead of running `shipit init`", files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))]
    InitExists { files: Vec<String> },

    #[error(
        "app name `{name}` is not valid\n  help: use a lowercase letter, then lowercase letters, digits or `-`, such as `web-shop`"
    )]
    InitName { name: String },

    #[error("secret{} missing: {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    SecretsMissing { names: Vec<String> },

    #[error("{stage} command `{command}` failed{}{}", code.map(|c| format!(" with exit code {c}")).unwrap_or_default(),
        if output.is_empty() { String::new() } else { format!("\n{}", indent(output)) })]
    Hook {
        stage: &'static str,
        command: String,
        code: Option<i32>,
        output: String,
    },

    #[error(
        "the smoke check through nginx failed: {reason}\n  every host was switched back to the previous release"
    )]
    SmokeFailed { reason: String },

    #[error(
        "a post-deploy hook failed: {reason}\n  every host was switched back to the previous release"
    )]
    PostDeployFailed { reason: String },

    #[error("{failed} check{} failed", if *failed == 1 { "" } else { "s" })]
    DoctorFailed { failed: usize },

    #[error("{context}: {message}")]
    Internal { context: String, message: String },

    #[error("failed to write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a failed health gate saw, for its message.
#[derive(Debug)]
pub struct HealthGateFailure {
    pub host: String,
    pub colour: String,
    pub release: String,
    pub timeout: String,
    pub answer: String,
    pub unit: String,
    pub logs: String,
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
            | Error::Template { .. }
            | Error::DockerIgnore { .. }
            | Error::NoDockerfile { .. }
            | Error::DirtyTree { .. }
            | Error::NoRegistry => 2,
            Error::EngineUnreachable { .. }
            | Error::BuildStep { .. }
            | Error::RegistryUnauthorized { .. }
            | Error::RegistryUnreachable { .. }
            | Error::Push { .. }
            | Error::NotBuilt { .. } => 5,
            Error::Connect { .. } | Error::Transport { .. } => 3,
            Error::Hosts { hosts } => hosts.iter().map(Error::exit_code).max().unwrap_or(1),
            Error::Validation { .. } => 4,
            Error::LockHeld { .. } => 6,
            Error::NotProvisioned { .. }
            | Error::NoPrevious { .. }
            | Error::NotRetained { .. }
            | Error::NeedsConfirmation { .. } => 2,
            Error::HealthGate(_) | Error::VerifyFailed { .. } | Error::SwitchFailed { .. } => 7,
            Error::Interrupted { .. } => 130,
            Error::Hook { .. } => 8,
            Error::Internal { .. } => 1,
            Error::DoctorFailed { .. } => 9,
            Error::SmokeFailed { .. } | Error::PostDeployFailed { .. } => 7,
            Error::MissingSecrets { .. }
            | Error::InitExists { .. }
            | Error::InitName { .. }
            | Error::SecretsMissing { .. } => 2,
            Error::Remote { .. }
            | Error::Protocol { .. }
            | Error::Read { .. }
            | Error::Write { .. } => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
