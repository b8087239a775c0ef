//! The one error type, with all user-facing wording in one place.
//!
//! Variants hold data only; `Display` says what went wrong, where, and, when the fix is known,
//! what to do. Values go in backticks, lowercase, no trailing period.

use std::path::PathBuf;

use crate::config::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the configuration changed since the last `shipit provision`: {}; nothing was started\n  help: run `shipit provision {environment}` first (`--dry-run` shows the diff), then deploy again",
        hosts.iter().map(|(h, files)| format!("on `{h}` {}", files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join("; ")
    )]
    ProvisionDrift {
        /// Per host, the files (and units) provision would change.
        hosts: Vec<(String, Vec<String>)>,
        environment: String,
    },

    #[error(
        "{release} went live on every host but {}, left out because they could not be reached: they still serve what they served, and are recorded as behind\n  help: when they are back, `shipit status {environment}` shows them; the next `shipit deploy {environment}` (or `shipit rollback {environment} --to {release}`) brings them to the fleet's release",
        hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
    )]
    LeftBehind {
        hosts: Vec<String>,
        release: String,
        environment: String,
    },

    #[error("`--canary`: {reason}\n  help: {help}")]
    CanaryUnavailable { reason: String, help: String },

    #[error(
        "the canary at {percent}% failed: {reason}\n  every host was switched back to the previous release"
    )]
    CanaryFailed { percent: u8, reason: String },

    #[error(
        "nothing waits for promotion in `{environment}`\n  help: `shipit deploy {environment} --no-promote` starts a release that waits; `shipit status {environment}` shows what each host runs"
    )]
    NothingWaits { environment: String },

    #[error(
        "what waits for promotion is not what was previewed: {}; nothing was switched\n  help: `shipit status {environment}` shows each host; `shipit deploy {environment} --no-promote` starts it again everywhere (or `shipit discard {environment}`)",
        details.join("; ")
    )]
    WaitingChanged {
        details: Vec<String>,
        environment: String,
    },

    #[error(
        "the live copy does not answer on {}: nginx serves the previous colour, which a release left waiting would replace; nothing was started\n  help: `shipit deploy {environment}` (without `--no-promote`) replaces the crashed copy, or `shipit rollback {environment}` makes the previous release live",
        hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
    )]
    NoPromoteOnIncident {
        hosts: Vec<String>,
        environment: String,
    },

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
        "on `{host}`: `{user}` may not run shipit's commands as root: {said}\n  help: shipit runs every command on a host as root, with `sudo -n` for a user that is not root; give `{user}` passwordless sudo (`{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/shipit), or log in as root; `shipit doctor` checks it"
    )]
    Sudo {
        host: String,
        user: String,
        said: String,
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
        "on `{host}`: the candidate `{file}`{} was refused by `{validator}`; the installed file is unchanged and nothing was reloaded\n{}",
        template.as_ref().map(|t| format!(" (from `{t}`)")).unwrap_or_default(),
        indent(output)
    )]
    Validation {
        host: String,
        file: String,
        /// The template it was rendered from.
        template: Option<String>,
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
        "`{reference}` already names another image in the registry ({registry_digest}) than this build (`{id}`): the same release, other content\n  help: deploy what the registry holds with `--no-build`, give this build another version (`--version`), or replace the tag with `--force-push` (a rollback to the release then gets the new content)"
    )]
    TagTaken {
        reference: String,
        registry_digest: String,
        id: String,
    },

    #[error(
        "`{reference}` is not in the local engine: --no-build deploys a release built before (without `[registry]`, images stay in this machine's engine)\n  help: build it first (`shipit build {environment}`, from the same commit and with the same --version), or deploy without --no-build"
    )]
    NotBuiltLocally {
        reference: String,
        environment: String,
    },

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
        "`{image}` is built for {platform}, but {hosts} run another architecture: it would fail there with `exec format error`, or run emulated and several times slower where qemu's handlers are installed; nothing was sent or started\n  help: build it for linux/{arch}: set `platform = \"linux/{arch}\"` in shipit.toml (enough for images whose steps run nothing, such as `FROM scratch` with a static binary; `RUN` steps of another architecture need qemu's binfmt handlers on this machine), or build on such a machine, or with `docker buildx build --platform linux/{arch}` and a push, then `shipit deploy {environment} --no-build`; a fleet of two architectures needs an image for each (a multi-platform index)"
    )]
    ForeignArchitecture {
        image: String,
        platform: String,
        hosts: String,
        arch: String,
        environment: String,
    },

    #[error(
        "the deploy lock of `{environment}` is no longer this shipit's on {host}: {why}; it could not renew its lease ({lease}) in time (it was stopped, suspended or cut off), so it stopped at once and changed nothing more; what it had already changed stays as it is\n  help: see what the fleet runs with `shipit status {environment}`; the next deploy or rollback converges it"
    )]
    LockLost {
        host: String,
        why: String,
        lease: String,
        environment: String,
    },

    #[error(
        "`{host}` is not provisioned for this app (no upstream include)\n  help: run `shipit provision {environment}` first"
    )]
    NotProvisioned { host: String, environment: String },

    #[error(
        "`{host}` runs this app in shipit's earlier layout (one environment per app and host), not yet moved to the layout keyed by app and environment\n  help: run `shipit provision {environment}`: it moves the host without stopping what serves"
    )]
    NotMoved { host: String, environment: String },

    #[error(
        "on `{host}`: cannot move the app off shipit's earlier layout: {message}; nothing was changed\n  help: wait for it, then run `shipit provision {environment}` again"
    )]
    LegacyBusy {
        host: String,
        message: String,
        environment: String,
    },

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

    #[error("interrupted by {signal}: {}", if *switched {
        "every host that had switched was switched back (read back from each host), the new copies were stopped and the lock was released"
    } else {
        "no host was switched; the new copies were stopped and the lock was released"
    })]
    Interrupted {
        signal: &'static str,
        /// Whether some hosts had switched (and were switched back) before it.
        switched: bool,
    },

    #[error("{0}")]
    FleetSplit(Box<FleetSplit>),

    #[error(
        "on `{host}`: port {port} is already held by {holder}; nothing was changed\n  help: give this app (and environment) ports of its own in `[ports]`; `shipit doctor {environment}` lists what holds each port"
    )]
    PortHeld {
        host: String,
        port: u16,
        holder: String,
        environment: String,
    },

    #[error("the hosts do not agree on the release to roll back to{}:\n{}\n  help: pick a release every host has (`shipit releases {environment}` lists them) and pass `--to`", wanted.as_ref().map(|w| format!(" (`--to {w}`)")).unwrap_or_default(), choices.iter().map(|c| format!("    {c}")).collect::<Vec<_>>().join("\n"))]
    RollbackDisagree {
        wanted: Option<String>,
        choices: Vec<String>,
        environment: String,
    },

    #[error(
        "refusing to {action} without confirmation: standard input is not a terminal\n  help: pass `--yes`"
    )]
    NeedsConfirmation { action: String },

    #[error("secret{} missing: {}{}", if names.len() == 1 { "" } else { "s" }, names.join(", "),
        dotenv.as_ref().map(|d| format!("\n  help: export each, or add it to `{}`", d.display())).unwrap_or_default())]
    MissingSecrets {
        names: Vec<String>,
        /// Where to add them, when the message should say so.
        dotenv: Option<PathBuf>,
    },

    #[error("refusing to overwrite {}\n  help: move them away, or edit them instead of running `shipit init`", files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))]
    InitExists { files: Vec<String> },

    #[error(
        "app name `{name}` is not valid\n  help: use a lowercase letter, then lowercase letters, digits or `-`, such as `web-shop`"
    )]
    InitName { name: String },

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

    #[error("the ACME CA at `{directory}` refused to {step}: {said}{}", help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    Acme {
        directory: String,
        step: String,
        said: String,
        help: Option<String>,
    },

    #[error(
        "`{host}` does not serve the ACME challenge for `{domain}`: {observed}; nothing was asked of the CA and nothing changed\n  help: run `shipit provision {environment}` to install the site with its challenge location, then `shipit tls renew {environment}`"
    )]
    ChallengeNotServed {
        host: String,
        domain: String,
        observed: String,
        environment: String,
    },

    #[error(
        "`{host}` has {free_mib} MiB free for Docker, and the image's layers it lacks take {needed_mib} MiB: nothing was sent to any host, nothing changed\n  help: free space on `{host}` (`docker image prune`, or a larger disk), then deploy again"
    )]
    ImageNoSpace {
        host: String,
        needed_mib: u64,
        free_mib: u64,
    },

    #[error(
        "`{host}` loaded the image, but what its engine holds under that name (`{id}`) is not the one built (`{built}`): {why}; no host switched\n  help: deploy again; if it persists, look at `docker image ls` on `{host}` (another tool may load images under this name)"
    )]
    ImageMismatch {
        host: String,
        id: String,
        built: String,
        why: String,
    },

    #[error(
        "`{host}`: {message}\n  help: `shipit tls status` shows what each host holds and serves; `shipit tls renew --force` installs a certificate again"
    )]
    TlsReadBack { host: String, message: String },

    #[error(
        "the CA already issued a certificate for `{names}` {ago} ago (by `{host}`'s clock, recorded in {log}), and it is not what the hosts serve; shipit orders at most one a day per name set, so that a run failing after the order cannot spend the CA's duplicate-certificate limit (5 a week at Let's Encrypt); nothing was asked of the CA and nothing changed\n  help: see what each host serves with `shipit tls status {environment}` and fix what failed last time; to order anyway, run `shipit tls renew {environment} --force`"
    )]
    OrderedToday {
        names: String,
        host: String,
        ago: String,
        log: String,
        environment: String,
    },

    #[error(
        "`{environment}` has no `[tls] acme`: shipit renews only the certificates it obtains\n  help: add `acme = {{ email = \"ops@example.com\" }}` under `[tls]` (and run `shipit provision {environment}`)"
    )]
    NoAcme { environment: String },

    #[error(
        "`{environment}` serves no HTTPS: it has no `[tls]`\n  help: add `[tls]` with `acme = {{ email = \"...\" }}`, or `certificate` and `certificate_key`"
    )]
    NoTls { environment: String },

    #[error("the {what} `{command}` failed on `{host}` {}; no host switched, users kept the previous release{}\n  help: its output is above; fix the cause and deploy again{}", code.map_or("(no exit code: the connection was lost)".to_owned(), |c| format!("with exit code {c}")),
        if tail.trim().is_empty() { String::new() } else { format!("\n  its last lines:\n{}", indent(tail)) },
        if *what == "backup" { " (or `--skip-backup`, recorded in the history)" } else { "" })]
    ReleasePhase {
        /// `backup` or `release command`.
        what: &'static str,
        host: String,
        command: String,
        code: Option<i32>,
        tail: String,
    },

    #[error(
        "the process `{process}` of {release} is not ready on `{host}`: {said}\n  help: `shipit logs {environment} --process {process}` shows its output; the deploy was undone"
    )]
    ProcessNotReady {
        host: String,
        process: String,
        release: String,
        said: String,
        environment: String,
    },

    #[error("no process `{name}` in the configuration{}", if known.is_empty() { "\n  help: add one under `[processes.<name>]`".to_owned() } else { format!("\n  help: the processes are {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")) })]
    UnknownProcess { name: String, known: Vec<String> },

    #[error(
        "`{environment}` has no accessory `{name}`{}\n  help: name one of `[accessories.*]`",
        if known.is_empty() { " (it has none)".to_owned() } else { format!(" (it has {})", known.join(", ")) }
    )]
    UnknownAccessory {
        environment: String,
        name: String,
        known: Vec<String>,
    },

    /// An accessory that did not come up healthy, or that a command could not bring back.
    #[error("accessory `{name}` on `{host}`: {message}\n  help: {next}")]
    AccessoryFailed {
        name: String,
        host: String,
        message: String,
        next: String,
    },

    #[error(
        "`{environment}` has no `[backup]`\n  help: add `[backup]` with `command` (and `restore`) to take a backup before every deploy"
    )]
    NoBackup { environment: String },

    #[error(
        "`[backup]` of `{environment}` has no `restore` command\n  help: add `restore = [...]`: it reads the file named by SHIPIT_BACKUP_FILE"
    )]
    NoRestore { environment: String },

    #[error("no backup `{id}` on `{host}`{}\n  help: `shipit backups {environment}` lists them", if kept.is_empty() { String::new() } else { format!("; the newest are {}", kept.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")) })]
    NoSuchBackup {
        id: String,
        host: String,
        environment: String,
        kept: Vec<String>,
    },

    #[error("the restore of `{id}` failed on `{host}` {}{}\n  help: its output is above; the backup is still there", code.map_or("(no exit code: the connection was lost)".to_owned(), |c| format!("with exit code {c}")), if said.is_empty() { String::new() } else { format!(": {said}") })]
    RestoreFailed {
        id: String,
        host: String,
        code: Option<i32>,
        said: String,
    },

    #[error(
        "`{host}` is not a host: {message}\n  help: write it as in `hosts`: `user@host:port`, `user@host` or `host`"
    )]
    BadHost { host: String, message: String },

    #[error(
        "not starting {}: {} no longer in `hosts` but an earlier deploy went there, and a job could run on both; nothing changed\n  help: retire {}: {}",
        timers.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
        if hosts.len() == 1 { format!("`{}` is", hosts[0]) } else { format!("{} are", hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")) },
        if hosts.len() == 1 { "it" } else { "them" },
        hosts.iter().map(|h| format!("`shipit retire {environment} {h}`")).collect::<Vec<_>>().join(", ")
    )]
    JobsElsewhere {
        timers: Vec<String>,
        hosts: Vec<String>,
        environment: String,
    },

    #[error(
        "`{host}` is one of `{environment}`'s hosts: only a host taken out of `hosts` is retired\n  help: remove it from `hosts` in environments/{environment}.toml first"
    )]
    RetireConfigured { host: String, environment: String },

    #[error("host `{host}` is not one of the environment's hosts\n  help: name one of {}", hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "))]
    UnknownHost { host: String, hosts: Vec<String> },

    #[error(
        "nothing is live on `{host}`: `shipit exec` runs the live release's image\n  help: deploy first (`shipit deploy {environment}`)"
    )]
    NothingLive { host: String, environment: String },

    /// A command run for the user (`shipit exec`) exited with this code: nothing to say, the
    /// code is shipit's.
    #[error("")]
    CommandExit { code: i32 },

    #[error("{failed} check{} failed", if *failed == 1 { "" } else { "s" })]
    DoctorFailed { failed: usize },

    #[error("{context}: {source}")]
    Internal {
        context: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("failed to write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A deploy that failed and could not be undone on every host.
#[derive(Debug)]
pub struct FleetSplit {
    /// The first line of what failed.
    pub cause: String,
    pub environment: String,
    /// Every host that had switched, and what it serves now, as read back.
    pub hosts: Vec<SplitHost>,
    /// The release the hosts that went back serve.
    pub previous: Option<String>,
    pub target: String,
    /// Hosts where the lock could not be released.
    pub lock_kept: Vec<String>,
}

impl std::fmt::Display for FleetSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let environment = &self.environment;
        let target = &self.target;
        write!(
            f,
            "the fleet is split: {} could not be switched back after `{}`",
            split_names(&self.hosts),
            self.cause
        )?;
        if !self.lock_kept.is_empty() {
            write!(
                f,
                "; the lock is still held on {}",
                self.lock_kept
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        for h in &self.hosts {
            let what = if h.back {
                "switched back, serves"
            } else {
                "NOT switched back, serves"
            };
            write!(f, "\n    `{}`: {what} {}", h.host, h.serves)?;
        }
        match &self.previous {
            Some(p) => write!(
                f,
                "\n  help: when every host is reachable, run `shipit rollback {environment} --to {p}` to put them all back on {p} (or `shipit deploy {environment}` again to move them all to {target})"
            )?,
            None => write!(
                f,
                "\n  help: when every host is reachable, run `shipit deploy {environment}` again to converge them on {target}"
            )?,
        }
        if !self.lock_kept.is_empty() {
            write!(
                f,
                "; the next shipit run on this machine takes the lock over, elsewhere run `shipit lock release {environment}` first"
            )?;
        }
        Ok(())
    }
}

/// A host that had switched, after a failed deploy tried to put it back.
#[derive(Debug, Clone)]
pub struct SplitHost {
    pub host: String,
    /// Its upstream is again what it was before the deploy (read back).
    pub back: bool,
    /// What it serves, as read back, or why that is unknown.
    pub serves: String,
}

fn split_names(hosts: &[SplitHost]) -> String {
    hosts
        .iter()
        .filter(|h| !h.back)
        .map(|h| format!("`{}`", h.host))
        .collect::<Vec<_>>()
        .join(", ")
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
            | Error::DirtyTree { .. } => 2,
            Error::TagTaken { .. } => 5,
            Error::EngineUnreachable { .. }
            | Error::BuildStep { .. }
            | Error::RegistryUnauthorized { .. }
            | Error::RegistryUnreachable { .. }
            | Error::Push { .. }
            | Error::NotBuilt { .. }
            | Error::NotBuiltLocally { .. } => 5,
            Error::Connect { .. } | Error::Transport { .. } => 3,
            Error::ProvisionDrift { .. }
            | Error::NothingWaits { .. }
            | Error::WaitingChanged { .. }
            | Error::NoPromoteOnIncident { .. }
            | Error::CanaryUnavailable { .. } => 2,
            Error::CanaryFailed { .. } => 7,
            Error::LeftBehind { .. } => 13,
            Error::Hosts { hosts } => hosts.iter().map(Error::exit_code).max().unwrap_or(1),
            Error::Validation { .. } => 4,
            Error::LockHeld { .. } | Error::LockLost { .. } | Error::LegacyBusy { .. } => 6,
            Error::NotProvisioned { .. }
            | Error::NotMoved { .. }
            | Error::NoPrevious { .. }
            | Error::NotRetained { .. }
            | Error::NeedsConfirmation { .. } => 2,
            Error::HealthGate(_) | Error::VerifyFailed { .. } | Error::SwitchFailed { .. } => 7,
            Error::Interrupted { .. } => 130,
            Error::FleetSplit(_) => 10,
            Error::PortHeld { .. }
            | Error::RollbackDisagree { .. }
            | Error::ForeignArchitecture { .. } => 2,
            Error::Hook { .. } => 8,
            Error::Internal { .. } => 1,
            Error::Acme { .. }
            | Error::ChallengeNotServed { .. }
            | Error::TlsReadBack { .. }
            | Error::OrderedToday { .. } => 11,
            Error::NoAcme { .. } | Error::NoTls { .. } => 2,
            Error::ImageNoSpace { .. } | Error::ImageMismatch { .. } => 1,
            Error::ReleasePhase { .. } => 12,
            Error::UnknownHost { .. }
            | Error::BadHost { .. }
            | Error::RetireConfigured { .. }
            | Error::JobsElsewhere { .. }
            | Error::NothingLive { .. }
            | Error::NoBackup { .. }
            | Error::NoRestore { .. }
            | Error::NoSuchBackup { .. }
            | Error::UnknownProcess { .. }
            | Error::UnknownAccessory { .. } => 2,
            Error::AccessoryFailed { .. } => 1,
            Error::RestoreFailed { .. } => 12,
            Error::CommandExit { code } => *code,
            Error::ProcessNotReady { .. } => 7,
            Error::DoctorFailed { .. } => 9,
            Error::SmokeFailed { .. } | Error::PostDeployFailed { .. } => 7,
            Error::MissingSecrets { .. } | Error::InitExists { .. } | Error::InitName { .. } => 2,
            Error::Remote { .. }
            | Error::Sudo { .. }
            | Error::Protocol { .. }
            | Error::Read { .. }
            | Error::Write { .. } => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
