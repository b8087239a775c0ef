//! The shell scripts shipit runs on hosts, and a typed builder for each.
//!
//! Each script is a POSIX `sh` file beside this one (checked by `shellcheck` in the test
//! command), embedded in the binary; it exits non-zero on failure with the reason on stderr, and
//! leaves no half-written file behind: files are written beside their target and renamed. Its
//! positional arguments are filled by the builder of the same name, whose named fields say what
//! each one is, so that a swapped pair does not compile (or reads wrong in review): values reach
//! a script only as `"$1"`, `"$2"`, ..., each quoted, or on stdin. A snapshot of each rendered
//! command line (`tests` below) makes a change of the contract a reviewed diff.

use super::RemoteCommand;

/// A script file beside this one, its header comment left out.
macro_rules! script {
    ($file:literal) => {
        body(include_str!(concat!("scripts/", $file)))
    };
}

/// A script after the shared functions it calls (each `*_FN`'s body), joined once, on first
/// use.
macro_rules! composed {
    ($($part:expr),+ ; $file:literal) => {{
        static SCRIPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SCRIPT
            .get_or_init(|| [$(body($part)),+, script!($file)].concat())
            .as_str()
    }};
}

/// The functions that print a host's deploy state, shared by two scripts.
const STATE_FN: &str = include_str!("scripts/state_fn.sh");

/// `nobody_listens`, shared by the two scripts that ask who holds a port.
const PORTS_FN: &str = include_str!("scripts/ports_fn.sh");

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// Print each file framed for `crate::provision::plan::parse_observed`, then each directory's
/// existence, then the docker client config.
pub struct Observe {
    pub files: Vec<String>,
    pub dirs: Vec<String>,
}

impl Observe {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("read managed files", script!("observe.sh"))
            .args(self.files.iter().cloned())
            .args(self.dirs.iter().map(|d| format!("dir:{d}")))
    }
}

/// Read (`record: None`) or append to the site's record of issued certificates.
pub struct AcmeOrders<'a> {
    pub log: &'a str,
    /// The JSON of a certificate just issued.
    pub record: Option<&'a str>,
}

impl AcmeOrders<'_> {
    pub fn command(&self) -> RemoteCommand {
        let label = if self.record.is_some() {
            "record an issued certificate"
        } else {
            "read the issued certificates"
        };
        let cmd = RemoteCommand::new(label, script!("acme_orders.sh")).arg(self.log);
        match self.record {
            Some(r) => cmd.arg(r),
            None => cmd,
        }
    }
}

/// Write `content` to a staging path with a mode and an owner, checking every byte arrived.
pub struct Stage<'a> {
    /// The staging path beside the target ([`crate::layout::staged`]).
    pub staged: &'a str,
    /// Octal, as `stat -c %a` prints it.
    pub mode: &'a str,
    /// `user:group`.
    pub owner: &'a str,
    pub content: &'a str,
    /// The target, for the label.
    pub target: &'a str,
}

impl Stage<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(format!("stage {}", self.target), script!("stage.sh"))
            .arg(self.staged)
            .arg(self.mode)
            .arg(self.owner)
            .arg(self.content.len().to_string())
            .stdin(self.content)
    }
}

/// Create directories, each with its mode.
pub struct Mkdirs<'a> {
    /// `(mode, path)`.
    pub dirs: &'a [(&'static str, String)],
}

impl Mkdirs<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("create directories", script!("mkdirs.sh")).args(
            self.dirs
                .iter()
                .flat_map(|(mode, path)| [(*mode).to_owned(), path.clone()]),
        )
    }
}

/// What validates a staged candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    Nginx,
    Systemd,
    Logrotate,
}

/// A staged candidate and the file it will become.
pub struct Candidate {
    pub validator: Validator,
    pub staged: String,
    pub target: String,
}

/// Validate staged candidates, none installed.
pub struct Validate<'a> {
    pub candidates: &'a [Candidate],
}

impl Validate<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("validate candidates", script!("validate.sh")).args(
            self.candidates.iter().flat_map(|c| {
                let kind = match c.validator {
                    Validator::Nginx => "nginx",
                    Validator::Systemd => "systemd",
                    Validator::Logrotate => "logrotate",
                };
                [kind.to_owned(), c.staged.clone(), c.target.clone()]
            }),
        )
    }
}

/// Remove staged candidates.
pub struct Discard<'a> {
    pub staged: &'a [String],
}

impl Discard<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("discard candidates", script!("discard.sh"))
            .args(self.staged.iter().cloned())
    }
}

/// One file an install puts in place (or removes), keeping the previous one as a backup.
pub struct Install {
    /// The validated candidate; `None` removes the target.
    pub staged: Option<String>,
    pub target: String,
    pub backup: String,
}

/// Install validated candidates and reload what changed, all or nothing.
pub struct Commit<'a> {
    pub label: &'a str,
    /// A full `nginx -t` after the swap (the previous files are put back if it fails).
    pub check_nginx: bool,
    pub daemon_reload: bool,
    pub reload_nginx: bool,
    pub installs: &'a [Install],
}

impl Commit<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label, commit_script())
            .arg(flag(self.check_nginx))
            .arg(flag(self.daemon_reload))
            .arg(flag(self.reload_nginx))
            .args(self.installs.iter().flat_map(|i| {
                [
                    i.staged.clone().unwrap_or_else(|| "-".to_owned()),
                    i.target.clone(),
                    i.backup.clone(),
                ]
            }))
    }
}

/// What a host holds of an app in the earlier layout (keyed by the app alone).
pub struct ReadLegacy {
    pub upstream_include: String,
    pub nginx_site: String,
    /// Blue's and green's.
    pub app_envs: [String; 2],
    pub units: [String; 2],
    pub lock_dir: String,
    /// The new layout's upstream include (the host was moved when it exists).
    pub new_upstream_include: String,
}

impl ReadLegacy {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("read the earlier layout", script!("legacy_state.sh"))
            .arg(&self.upstream_include)
            .arg(&self.nginx_site)
            .args(self.app_envs.iter().cloned())
            .args(self.units.iter().cloned())
            .arg(&self.lock_dir)
            .arg(&self.new_upstream_include)
    }
}

/// Copy files where their copy does not exist yet: `(from, to)` pairs.
pub struct CopyMissing<'a> {
    pub pairs: &'a [(String, String)],
}

impl CopyMissing<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(
            "copy the earlier layout's state",
            script!("copy_missing.sh"),
        )
        .args(
            self.pairs
                .iter()
                .flat_map(|(from, to)| [from.clone(), to.clone()]),
        )
    }
}

/// Remove what is left of the earlier layout.
pub struct RemoveLegacy<'a> {
    pub daemon_reload: bool,
    pub paths: &'a [String],
}

impl RemoveLegacy<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("remove the earlier layout", script!("remove_legacy.sh"))
            .arg(flag(self.daemon_reload))
            .args(self.paths.iter().cloned())
    }
}

/// `docker login`, the password on stdin.
pub struct DockerLogin<'a> {
    pub username: &'a str,
    pub registry: &'a str,
    pub password: &'a str,
}

impl DockerLogin<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("docker login", script!("docker_login.sh"))
            .arg(self.username)
            .arg(self.registry)
            .stdin(format!("{}\n", self.password))
    }
}

/// Print each word back (proves quoting over SSH).
pub struct EchoArgs<'a> {
    pub words: &'a [&'a str],
}

impl EchoArgs<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("echo", script!("echo_args.sh")).args(self.words.iter().copied())
    }
}

/// What a deploy reads of one site on a host.
#[derive(Clone, Debug)]
pub struct ReadState {
    pub upstream_include: String,
    /// Blue's and green's, in that order, for each of the four.
    pub unit_envs: [String; 2],
    pub units: [String; 2],
    pub app_envs: [String; 2],
    pub lock_dir: String,
    pub history: String,
    /// The settings each colour's app env file is compared with, on the host (sent on stdin).
    pub settings: Option<String>,
    pub legacy_units: [String; 2],
    pub legacy_upstream_include: String,
}

impl ReadState {
    /// The site's state read, and with `settings`, the comparison.
    pub fn of(site: &crate::layout::Site, settings: Option<String>) -> ReadState {
        use crate::model::Colour::{Blue, Green};
        let legacy = site.legacy();
        ReadState {
            upstream_include: site.upstream_include(),
            unit_envs: [site.unit_env(Blue), site.unit_env(Green)],
            units: [site.unit(Blue), site.unit(Green)],
            app_envs: [site.app_env(Blue), site.app_env(Green)],
            lock_dir: site.lock_dir(),
            history: site.history(),
            settings,
            legacy_units: [legacy.unit(Blue), legacy.unit(Green)],
            legacy_upstream_include: legacy.upstream_include(),
        }
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![self.upstream_include.clone()];
        a.extend(self.unit_envs.iter().cloned());
        a.extend(self.units.iter().cloned());
        a.extend(self.app_envs.iter().cloned());
        a.push(self.lock_dir.clone());
        a.push(self.history.clone());
        a.push(flag(self.settings.is_some()).to_owned());
        a.extend(self.legacy_units.iter().cloned());
        a.push(self.legacy_upstream_include.clone());
        a
    }

    pub fn command(&self) -> RemoteCommand {
        let cmd = RemoteCommand::new("read deploy state", deploy_state_script()).args(self.args());
        match &self.settings {
            Some(s) => cmd.stdin(s.clone()),
            None => cmd,
        }
    }
}

/// `deploy_state.sh` after the state functions, made once.
fn deploy_state_script() -> &'static str {
    composed!(STATE_FN; "deploy_state.sh")
}

/// `reload_nginx`, shared by the scripts that reload nginx.
const RELOAD_FN: &str = include_str!("scripts/reload_fn.sh");

/// `commit.sh` after `reload_nginx`, made once.
fn commit_script() -> &'static str {
    composed!(RELOAD_FN; "commit.sh")
}

/// The two halves of a switch, shared by three scripts.
const UPSTREAM_FN: &str = include_str!("scripts/upstream_fn.sh");

/// `switch.sh` after `reload_nginx` and the switch's halves, made once.
fn switch_script() -> &'static str {
    composed!(RELOAD_FN, UPSTREAM_FN; "switch.sh")
}

/// `stage_upstream.sh` after the switch's halves, made once.
fn stage_upstream_script() -> &'static str {
    composed!(UPSTREAM_FN; "stage_upstream.sh")
}

/// `commit_upstream.sh` after `reload_nginx` and the switch's halves, made once.
fn commit_upstream_script() -> &'static str {
    composed!(RELOAD_FN, UPSTREAM_FN; "commit_upstream.sh")
}

/// `hold.sh` after `reload_nginx` and the switch's halves, made once.
fn hold_script() -> &'static str {
    composed!(RELOAD_FN, UPSTREAM_FN; "hold.sh")
}

/// `clear_waiting.sh` after `reload_nginx`, made once.
fn clear_waiting_script() -> &'static str {
    composed!(RELOAD_FN; "clear_waiting.sh")
}

/// `prepare.sh` after the state and ports functions, made once.
fn prepare_script() -> &'static str {
    composed!(STATE_FN, PORTS_FN; "prepare.sh")
}

/// `ports_held.sh` after the ports functions, made once.
fn ports_held_script() -> &'static str {
    composed!(PORTS_FN; "ports_held.sh")
}

/// `retire_site.sh` after `reload_nginx`, made once.
fn retire_script() -> &'static str {
    composed!(RELOAD_FN; "retire_site.sh")
}

/// Take a site off a host that is no longer its environment's: units, containers, nginx site,
/// unit files, logrotate rule and configuration (history and backups stay).
pub struct RetireSite<'a> {
    pub site: &'a crate::layout::Site,
}

impl RetireSite<'_> {
    pub fn command(&self) -> RemoteCommand {
        let site = self.site;
        RemoteCommand::new(format!("retire {} {}", site.app, site.env), retire_script())
            .arg(site.key())
            .arg(site.nginx_site())
            .arg(site.config_dir())
            .arg(site.logrotate())
            .arg(&site.app)
            .arg(&site.env)
    }
}

/// Drop retired hosts from a site's fleet record and its record of hosts left behind.
pub struct ForgetHosts<'a> {
    pub site: &'a crate::layout::Site,
    pub hosts: &'a [String],
}

impl ForgetHosts<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("forget retired hosts", script!("forget_hosts.sh"))
            .arg(self.site.fleet_record())
            .arg(self.site.behind_record())
            .args(self.hosts.iter().cloned())
    }
}

/// `lock.sh` after the state functions, made once.
fn lock_script() -> &'static str {
    composed!(STATE_FN; "lock.sh")
}

/// A script without its header comment (what it is for and its arguments, for the reader of
/// the file), which would only lengthen every command line sent.
pub fn body(script: &'static str) -> &'static str {
    let mut rest = script;
    while rest.starts_with('#') || rest.starts_with('\n') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// Take the environment lock, reading the state under it in the same round trip.
pub struct TakeLock<'a> {
    pub lock_dir: &'a str,
    /// The holder's details (JSON).
    pub holder: &'a str,
    pub state: Option<&'a ReadState>,
}

impl TakeLock<'_> {
    pub fn command(&self) -> RemoteCommand {
        let mut cmd = RemoteCommand::new("take the lock", lock_script())
            .arg(self.lock_dir)
            .arg(self.holder);
        if let Some(state) = self.state {
            cmd = cmd.args(state.args());
            if let Some(s) = &state.settings {
                cmd = cmd.stdin(s.clone());
            }
        }
        cmd
    }
}

/// Replace the holder of a lock left by a holder that is gone, or whose lease expired, if it
/// still holds it.
pub struct TakeOverLock<'a> {
    pub lock_dir: &'a str,
    /// The id the current holder must have (a lock taken meanwhile is never overwritten).
    pub expected_id: &'a str,
    pub holder: &'a str,
    /// The holder's lease (seconds) when it is taken over because the lease expired: the host
    /// checks again, under the lock's `flock`, that it was not renewed meanwhile. 0: the holder
    /// is provably gone, its lease does not matter.
    pub lease: u64,
}

impl TakeOverLock<'_> {
    pub fn command(&self) -> RemoteCommand {
        let label = if self.lease > 0 {
            "take over a lock whose lease expired"
        } else {
            "take over a dead holder's lock"
        };
        RemoteCommand::new(label, script!("lock_takeover.sh"))
            .arg(self.lock_dir)
            .arg(self.expected_id)
            .arg(self.holder)
            .arg(self.lease.to_string())
    }
}

/// Renew our lock's lease: prints `renewed`, or `lost DETAILS` when another holder has it.
pub struct RenewLock<'a> {
    pub lock_dir: &'a str,
    pub id: &'a str,
}

impl RenewLock<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("renew the lock's lease", script!("lock_renew.sh"))
            .arg(self.lock_dir)
            .arg(self.id)
    }
}

/// Release a lock: ours (by id), or whoever's (`id: None`, `shipit lock release`).
pub struct ReleaseLock<'a> {
    pub lock_dir: &'a str,
    pub id: Option<&'a str>,
}

impl ReleaseLock<'_> {
    pub fn command(&self) -> RemoteCommand {
        let label = if self.id.is_some() {
            "release the lock"
        } else {
            "break the lock"
        };
        RemoteCommand::new(label, script!("unlock.sh"))
            .arg(self.lock_dir)
            .arg(self.id.unwrap_or(""))
    }
}

/// Start a release in a colour: its env files written (the app's on stdin), its unit
/// restarted; refused when nginx serves that colour or another holds its port.
pub struct Prepare<'a> {
    pub label: String,
    pub image: &'a str,
    pub unit: &'a str,
    /// The unit's env file: image, release, port (no secret).
    pub unit_env_file: &'a str,
    /// The container's env file: the app's settings and secrets (mode 0600).
    pub app_env_file: &'a str,
    pub container: &'a str,
    pub port: u16,
    pub upstream_include: &'a str,
    /// The colour's unit in the earlier layout, stopped for good first.
    pub legacy_unit: &'a str,
    pub unit_env_lines: Vec<String>,
    /// The app env file's content: sent on stdin, never in an argument.
    pub app_env: String,
}

impl Prepare<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label.clone(), prepare_script())
            .arg(self.image)
            .arg(self.unit)
            .arg(self.unit_env_file)
            .arg(self.app_env_file)
            .arg(self.container)
            .arg(self.port.to_string())
            .arg(self.upstream_include)
            .arg(self.legacy_unit)
            .args(self.unit_env_lines.iter().cloned())
            .stdin(self.app_env.clone())
    }
}

/// Which of `ports` something holds other than the containers `ours`.
pub struct PortsHeld<'a> {
    pub ports: &'a [u16],
    pub ours: &'a [String],
}

impl PortsHeld<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("check the colour ports", ports_held_script())
            .args(self.ports.iter().map(u16::to_string))
            .arg("--")
            .args(self.ours.iter().cloned())
    }
}

/// Who answers on a host port: the container that should, and any other holder.
pub struct WhoAnswers<'a> {
    pub container: &'a str,
    pub port: u16,
    pub container_port: u16,
}

impl WhoAnswers<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("check who answers on the port", script!("port_owner.sh"))
            .arg(self.container)
            .arg(self.port.to_string())
            .arg(self.container_port.to_string())
    }
}

/// Point nginx at a colour: the upstream include replaced, `nginx -t`, reload, new workers.
pub struct Switch<'a> {
    pub label: &'a str,
    pub upstream_include: &'a str,
    pub content: &'a str,
}

impl Switch<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label, switch_script())
            .arg(self.upstream_include)
            .arg(self.content)
    }
}

/// The first half of a switch: the new upstream staged beside the live one and validated.
pub struct StageUpstream<'a> {
    pub upstream_include: &'a str,
    pub content: &'a str,
}

impl StageUpstream<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("stage the switch", stage_upstream_script())
            .arg(self.upstream_include)
            .arg(self.content)
    }
}

/// The second half: the staged upstream put in place, nginx reloaded, its new workers waited for.
pub struct CommitUpstream<'a> {
    pub label: &'a str,
    pub upstream_include: &'a str,
}

impl CommitUpstream<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label, commit_upstream_script()).arg(self.upstream_include)
    }
}

/// A release left waiting for promotion: the live upstream without a backup, `[preview]`'s
/// include pointing at the waiting copy, one reload, and the waiting record.
pub struct Hold<'a> {
    pub upstream_include: &'a str,
    /// The live colour alone.
    pub upstream: &'a str,
    /// `[preview]`'s include and its content, when the site has one.
    pub preview: Option<(&'a str, &'a str)>,
    pub record: &'a str,
    /// The record's JSON line.
    pub waiting: &'a str,
}

impl Hold<'_> {
    pub fn command(&self) -> RemoteCommand {
        let (include, content) = self.preview.unwrap_or(("-", ""));
        RemoteCommand::new("hold the release for promotion", hold_script())
            .arg(self.upstream_include)
            .arg(self.upstream)
            .arg(include)
            .arg(content)
            .arg(self.record)
            .arg(self.waiting)
    }
}

/// A canary step's figures from `[canary]`'s log since `from` (`None`: only its size).
pub struct CanaryRead<'a> {
    pub log: &'a str,
    pub from: Option<u64>,
    pub new_port: u16,
    pub old_port: u16,
}

impl CanaryRead<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("read the canary's figures", script!("canary_read.sh"))
            .arg(self.log)
            .arg(self.from.map_or("-".to_owned(), |f| f.to_string()))
            .arg(self.new_port.to_string())
            .arg(self.old_port.to_string())
    }
}

/// Nothing waits for promotion: `[preview]`'s include back to "nothing waits" (reloaded), the
/// waiting record removed.
pub struct ClearWaiting<'a> {
    /// `[preview]`'s include and its content when nothing waits, when the site has one.
    pub preview: Option<(&'a str, &'a str)>,
    pub record: &'a str,
}

impl ClearWaiting<'_> {
    pub fn command(&self) -> RemoteCommand {
        let (include, content) = self.preview.unwrap_or(("-", ""));
        RemoteCommand::new("clear the waiting release", clear_waiting_script())
            .arg(include)
            .arg(content)
            .arg(self.record)
    }
}

/// Stop units for good (not started at boot); a unit whose file is gone is skipped.
pub struct StopUnits<'a> {
    pub label: &'a str,
    pub units: &'a [String],
}

impl StopUnits<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label, script!("stop.sh")).args(self.units.iter().cloned())
    }
}

/// The last lines a unit logged (with those of the colour's earlier unit), and with `follow`
/// what it logs from now on.
pub struct Logs<'a> {
    pub unit: &'a str,
    pub lines: u32,
    pub legacy_unit: Option<&'a str>,
    pub follow: bool,
}

impl Logs<'_> {
    pub fn command(&self) -> RemoteCommand {
        let script = if self.follow {
            script!("follow_logs.sh")
        } else {
            script!("logs.sh")
        };
        RemoteCommand::new(format!("logs of {}", self.unit), script)
            .arg(self.unit)
            .arg(self.lines.to_string())
            .arg(self.legacy_unit.unwrap_or(""))
    }
}

/// The maintenance page on (written, then the flag nginx tests), or off (the flag removed).
pub enum Maintenance<'a> {
    On {
        page_file: &'a str,
        flag_file: &'a str,
        page: &'a str,
    },
    Off {
        flag_file: &'a str,
    },
}

impl Maintenance<'_> {
    pub fn command(&self) -> RemoteCommand {
        match self {
            Maintenance::On {
                page_file,
                flag_file,
                page,
            } => RemoteCommand::new("maintenance on", script!("maintenance_on.sh"))
                .arg(*page_file)
                .arg(*flag_file)
                .stdin(*page),
            Maintenance::Off { flag_file } => {
                RemoteCommand::new("maintenance off", script!("maintenance_off.sh")).arg(*flag_file)
            }
        }
    }
}

/// Append a line to the history.
/// Append a line to the history (its `"time":0` becomes the host's clock), and write files
/// beside it (the fleet, who is behind; empty content removes one).
pub struct Record<'a> {
    pub history: &'a str,
    pub line: &'a str,
    /// `(path, content)`.
    pub files: &'a [(String, String)],
}

impl Record<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("record the release", script!("record.sh"))
            .arg(self.history)
            .arg(self.line)
            .args(
                self.files
                    .iter()
                    .flat_map(|(path, content)| [path.clone(), content.clone()]),
            )
    }
}

/// Append a line to `shipit exec`'s audit log (root's alone), the line on stdin.
pub struct Audit<'a> {
    pub file: &'a str,
    pub line: &'a str,
}

impl Audit<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("audit", script!("audit.sh"))
            .arg(self.file)
            .stdin(format!("{}\n", self.line))
    }
}

/// Remove a repository's images but the ones kept (`repo@digest`), here or by any other site
/// on the host.
pub struct Prune<'a> {
    pub repository: &'a str,
    /// The app, whose label (`shipit.app`) marks its images.
    pub app: &'a str,
    /// This site's state directory: its `retained` list is written there.
    pub state_dir: &'a str,
    /// `repo@digest` of images pulled from a registry, `sha256:...` IDs of images sent over SSH.
    pub keep: &'a [String],
}

impl Prune<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("prune old images", script!("prune.sh"))
            .arg(self.repository)
            .arg(self.app)
            .arg(self.state_dir)
            .args(self.keep.iter().cloned())
    }
}

/// A site's process and job units installed, and the state of the timers it should have.
pub struct SiteUnits<'a> {
    pub key: &'a str,
    /// Unit names, such as `web_production_job_cleanup.timer`.
    pub timers: &'a [String],
}

impl SiteUnits<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("read the site's units", script!("site_units.sh"))
            .arg(self.key)
            .args(self.timers.iter().cloned())
    }
}

/// Stop and remove units the configuration no longer has.
pub struct RetireUnits<'a> {
    /// Their paths.
    pub paths: &'a [String],
}

impl RetireUnits<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(
            "remove units no longer configured",
            script!("retire_units.sh"),
        )
        .args(self.paths.iter().cloned())
    }
}

/// Enable and start timers.
pub struct EnableTimers<'a> {
    pub timers: &'a [String],
}

impl EnableTimers<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("enable the jobs' timers", script!("enable_timers.sh"))
            .args(self.timers.iter().cloned())
    }
}

/// Run a one-off container (release command, `shipit exec`) and wait for it.
pub struct Oneoff<'a> {
    pub label: &'a str,
    /// The container's name; a leftover of that name is removed first.
    pub name: &'a str,
    /// An image to pull first when the engine lacks it (`None`: the image is there).
    pub pull: Option<&'a str>,
    /// docker's arguments, `run` first ([`crate::oneoff`]).
    pub docker: &'a [String],
    /// The app env, when the arguments read it from `/dev/stdin`.
    pub env: Option<&'a str>,
}

impl Oneoff<'_> {
    pub fn command(&self) -> RemoteCommand {
        let cmd = RemoteCommand::new(self.label, script!("oneoff.sh"))
            .arg(self.name)
            .arg(self.pull.unwrap_or("-"))
            .args(self.docker.iter().cloned());
        match self.env {
            Some(env) => cmd.stdin(env),
            None => cmd,
        }
    }
}

/// Remove containers, running or not.
pub struct RemoveContainers<'a> {
    pub names: &'a [String],
}

impl RemoveContainers<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("remove one-off containers", script!("remove_containers.sh"))
            .args(self.names.iter().cloned())
    }
}

/// Take a backup into the backups directory, keeping the newest `keep`.
pub struct Backup<'a> {
    pub dir: &'a str,
    /// The release, as it goes in the file's name (the host's clock gives the rest).
    pub release: &'a str,
    pub keep: usize,
    pub name: &'a str,
    pub image: &'a str,
    pub docker: &'a [String],
    pub env: &'a str,
}

impl Backup<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("back up", script!("backup.sh"))
            .arg(self.dir)
            .arg(self.release)
            .arg(self.keep.to_string())
            .arg(self.name)
            .arg(self.image)
            .args(self.docker.iter().cloned())
            .stdin(self.env)
    }
}

/// The backups kept in a directory.
pub struct Backups<'a> {
    pub dir: &'a str,
}

impl Backups<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("list backups", script!("backups.sh")).arg(self.dir)
    }
}

/// Restore a backup with the configured command.
pub struct Restore<'a> {
    pub file: &'a str,
    pub name: &'a str,
    pub image: &'a str,
    pub docker: &'a [String],
    pub env: &'a str,
}

impl Restore<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("restore", script!("restore.sh"))
            .arg(self.file)
            .arg(self.name)
            .arg(self.image)
            .args(self.docker.iter().cloned())
            .stdin(self.env)
    }
}

/// Start units afresh (processes of a colour).
pub struct StartUnits<'a> {
    pub label: &'a str,
    pub units: &'a [String],
}

impl StartUnits<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(self.label, script!("start_units.sh")).args(self.units.iter().cloned())
    }
}

/// Whether a newly started process is ready.
pub struct ProcessReady<'a> {
    pub unit: &'a str,
    pub container: &'a str,
    pub ready: &'a crate::config::Ready,
    /// How long a readiness command may take to succeed.
    pub timeout: std::time::Duration,
}

impl ProcessReady<'_> {
    pub fn command(&self) -> RemoteCommand {
        let cmd = RemoteCommand::new(format!("check {}", self.unit), script!("process_ready.sh"))
            .arg(self.unit)
            .arg(self.container);
        match self.ready {
            crate::config::Ready::After(d) => cmd.arg("after").arg(d.as_secs().max(1).to_string()),
            crate::config::Ready::Command(args) => cmd
                .arg("command")
                .arg(self.timeout.as_secs().max(1).to_string())
                .args(args.iter().cloned()),
        }
    }
}

/// The state of process units and job timers.
pub struct PartsStatus<'a> {
    pub units: &'a [String],
    /// `(timer, service)` unit names.
    pub jobs: &'a [(String, String)],
}

impl PartsStatus<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("read the processes and jobs", script!("parts_status.sh"))
            .args(self.units.iter().cloned())
            .arg("--")
            .args(self.jobs.iter().flat_map(|(t, s)| [t.clone(), s.clone()]))
    }
}

/// The functions naming a host's images, shared by two scripts.
const IMAGE_FN: &str = include_str!("scripts/image_fn.sh");

/// What a host's engine holds, for sending it an image over SSH.
pub struct HostImages;

impl HostImages {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(
            "read the engine's images",
            composed!(IMAGE_FN; "host_images.sh"),
        )
    }
}

/// Load an image from stdin and say what the engine then holds under the name it loaded
/// (`crate::transfer` checks it against the build).
pub struct LoadImage {
    /// What the load needs, checked on the host right before it, under a host-wide lock.
    pub room: crate::transfer::plan::LoadRoom,
}

impl LoadImage {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("load the image", composed!(IMAGE_FN; "load_image.sh"))
            .arg(self.room.staged.to_string())
            .arg(self.room.unpacked.to_string())
            .arg(crate::transfer::plan::KEEP_FREE.to_string())
    }
}

/// Who the login user is and what sudo allows it (run without sudo).
pub struct SudoProbe;

impl SudoProbe {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("check sudo", script!("sudo_probe.sh"))
    }
}

/// What `shipit doctor` checks on a host.
pub struct Doctor<'a> {
    /// The registry whose login to look for (empty: none).
    pub registry: &'a str,
}

impl Doctor<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new("doctor", script!("doctor.sh")).arg(self.registry)
    }
}

/// A kept backup read for `shipit backups pull`: its size and SHA-256, or its bytes.
pub struct BackupRead<'a> {
    pub file: &'a str,
    /// Its bytes (`cat`) rather than its size and digest.
    pub bytes: bool,
}

impl BackupRead<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(
            format!("read backup {}", self.file),
            script!("backup_read.sh"),
        )
        .arg(if self.bytes { "cat" } else { "sum" })
        .arg(self.file)
    }
}

/// What [`Accessory`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessoryMode {
    /// Started when not running (never restarted), then waited for.
    Up,
    /// Its image pulled first, restarted, waited for.
    Restart,
    /// Read, its health command run once.
    Status,
    /// Stopped, disabled, unit and environment file removed; with `true`, its volumes too.
    Remove(bool),
}

/// One accessory on its host (`accessory.sh`): brought up, restarted, read or removed, and
/// its state said back as one `accessory ...` line.
pub struct Accessory<'a> {
    pub mode: AccessoryMode,
    pub unit: &'a str,
    pub container: &'a str,
    pub network: &'a str,
    pub image: &'a str,
    pub env_file: &'a str,
    pub health_timeout_secs: u64,
    /// The host directories of its volumes.
    pub dirs: Vec<String>,
    pub health: &'a [String],
}

impl Accessory<'_> {
    pub fn command(&self) -> RemoteCommand {
        let mode = match self.mode {
            AccessoryMode::Up => "up",
            AccessoryMode::Restart => "restart",
            AccessoryMode::Status => "status",
            AccessoryMode::Remove(false) => "remove",
            AccessoryMode::Remove(true) => "remove-data",
        };
        RemoteCommand::new(
            format!("accessory {mode} {}", self.unit),
            script!("accessory.sh"),
        )
        .arg(mode)
        .arg(self.unit)
        .arg(self.container)
        .arg(self.network)
        .arg(self.image)
        .arg(self.env_file)
        .arg(self.health_timeout_secs.to_string())
        .arg(self.dirs.len().to_string())
        .args(self.dirs.iter().cloned())
        .args(self.health.iter().cloned())
    }
}

/// `docker exec` in an accessory's container (`shipit accessory exec`).
pub struct AccessoryExec<'a> {
    pub container: &'a str,
    pub tty: bool,
    pub command: &'a [String],
}

impl AccessoryExec<'_> {
    pub fn command(&self) -> RemoteCommand {
        RemoteCommand::new(
            format!("exec in {}", self.container),
            "exec docker exec \"$@\"\n",
        )
        .args(if self.tty {
            vec!["--interactive", "--tty"]
        } else {
            vec!["--interactive"]
        })
        .arg("--")
        .arg(self.container)
        .args(self.command.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Site;

    /// Every script's command line, rendered from fixed inputs: a change of what a script is
    /// given is a reviewed snapshot diff. The script bodies are left out (they are the files).
    fn rendered(cmd: &RemoteCommand) -> String {
        let mut s = format!("{cmd}");
        if let Some(stdin) = &cmd.stdin {
            s.push_str(&format!("\n  stdin: {} bytes", stdin.len()));
        }
        s
    }

    #[test]
    fn every_script_s_command_line() {
        let site = Site::new("web", "production");
        let state = ReadState::of(&site, Some("A=1\n".into()));
        let installs = [
            Install {
                staged: Some("/etc/x/.a.shipit-new~".into()),
                target: "/etc/x/a".into(),
                backup: "/etc/x/.a.shipit-prev~".into(),
            },
            Install {
                staged: None,
                target: "/etc/x/old".into(),
                backup: "/etc/x/.old.shipit-prev~".into(),
            },
        ];
        let candidates = [Candidate {
            validator: Validator::Nginx,
            staged: "/etc/nginx/conf.d/.s.conf.shipit-new~".into(),
            target: "/etc/nginx/conf.d/s.conf".into(),
        }];
        let commands = [
            Observe {
                files: vec!["/etc/a".into()],
                dirs: vec!["/etc/d".into()],
            }
            .command(),
            Stage {
                staged: "/etc/.a.shipit-new~",
                mode: "644",
                owner: "root:root",
                content: "x = 1\n",
                target: "/etc/a",
            }
            .command(),
            Mkdirs {
                dirs: &[("755", "/etc/shipit/web/production".into())],
            }
            .command(),
            Validate {
                candidates: &candidates,
            }
            .command(),
            Discard {
                staged: &["/etc/.a.shipit-new~".into()],
            }
            .command(),
            Commit {
                label: "install and reload",
                check_nginx: true,
                daemon_reload: false,
                reload_nginx: true,
                installs: &installs,
            }
            .command(),
            ReadLegacy {
                upstream_include: "/etc/shipit/web/upstream.conf".into(),
                nginx_site: "/etc/nginx/conf.d/shipit-web.conf".into(),
                app_envs: [
                    "/etc/shipit/web/blue.app.env".into(),
                    "/etc/shipit/web/green.app.env".into(),
                ],
                units: ["web@blue.service".into(), "web@green.service".into()],
                lock_dir: "/var/lib/shipit/web/lock".into(),
                new_upstream_include: site.upstream_include(),
            }
            .command(),
            CopyMissing {
                pairs: &[("/a".into(), "/b".into())],
            }
            .command(),
            RemoveLegacy {
                daemon_reload: true,
                paths: &["/etc/systemd/system/web@.service".into()],
            }
            .command(),
            DockerLogin {
                username: "ci",
                registry: "registry.example.com",
                password: "hunter2",
            }
            .command(),
            EchoArgs {
                words: &["it's", "$HOME"],
            }
            .command(),
            state.command(),
            TakeLock {
                lock_dir: &site.lock_dir(),
                holder: r#"{"id":"x"}"#,
                state: Some(&state),
            }
            .command(),
            TakeOverLock {
                lock_dir: &site.lock_dir(),
                expected_id: "old",
                holder: r#"{"id":"new"}"#,
                lease: 600,
            }
            .command(),
            RenewLock {
                lock_dir: &site.lock_dir(),
                id: "x",
            }
            .command(),
            ReleaseLock {
                lock_dir: &site.lock_dir(),
                id: Some("x"),
            }
            .command(),
            ReleaseLock {
                lock_dir: &site.lock_dir(),
                id: None,
            }
            .command(),
            Prepare {
                label: "start 1.0.0+abc on green".into(),
                image: "registry.example.com/web@sha256:00",
                unit: &site.unit(crate::model::Colour::Green),
                unit_env_file: &site.unit_env(crate::model::Colour::Green),
                app_env_file: &site.app_env(crate::model::Colour::Green),
                container: &site.container(crate::model::Colour::Green),
                port: 3002,
                upstream_include: &site.upstream_include(),
                legacy_unit: "web@green.service",
                unit_env_lines: vec!["SHIPIT_PORT=3002".into()],
                app_env: "SECRET=never-in-argv\n".into(),
            }
            .command(),
            PortsHeld {
                ports: &[3001, 3002],
                ours: &[site.container(crate::model::Colour::Blue)],
            }
            .command(),
            WhoAnswers {
                container: &site.container(crate::model::Colour::Blue),
                port: 3001,
                container_port: 3000,
            }
            .command(),
            Switch {
                label: "switch back",
                upstream_include: &site.upstream_include(),
                content: "server 127.0.0.1:3002;\n",
            }
            .command(),
            StageUpstream {
                upstream_include: &site.upstream_include(),
                content: "server 127.0.0.1:3002;\n",
            }
            .command(),
            CommitUpstream {
                label: "switch to green",
                upstream_include: &site.upstream_include(),
            }
            .command(),
            StopUnits {
                label: "stop the new copy",
                units: &[site.unit(crate::model::Colour::Blue)],
            }
            .command(),
            Logs {
                unit: &site.unit(crate::model::Colour::Blue),
                lines: 50,
                legacy_unit: None,
                follow: false,
            }
            .command(),
            Logs {
                unit: &site.unit(crate::model::Colour::Blue),
                lines: 5,
                legacy_unit: Some("web@blue.service"),
                follow: true,
            }
            .command(),
            Maintenance::On {
                page_file: "/etc/shipit/web/production/maintenance.html",
                flag_file: "/etc/shipit/web/production/maintenance.on",
                page: "<h1>back soon</h1>",
            }
            .command(),
            Maintenance::Off {
                flag_file: "/etc/shipit/web/production/maintenance.on",
            }
            .command(),
            Record {
                history: &site.history(),
                line: r#"{"time":0}"#,
                files: &[(
                    format!("{}/fleet", site.state_dir()),
                    "host root@h1:22\n".into(),
                )],
            }
            .command(),
            Audit {
                file: &site.audit_log(),
                line: r#"{"time":0,"event":"exec"}"#,
            }
            .command(),
            Prune {
                repository: "registry.example.com/web",
                app: "web",
                state_dir: &site.state_dir(),
                keep: &[
                    "registry.example.com/web@sha256:00".into(),
                    "sha256:11".into(),
                ],
            }
            .command(),
            HostImages.command(),
            PartsStatus {
                units: &["web_production_worker@blue.service".into()],
                jobs: &[(
                    "web_production_job_tick.timer".into(),
                    "web_production_job_tick.service".into(),
                )],
            }
            .command(),
            Oneoff {
                label: "release command",
                name: "web_production_release",
                pull: Some("registry.example.com/web@sha256:00"),
                docker: &[
                    "run".into(),
                    "--rm".into(),
                    "image".into(),
                    "./migrate".into(),
                ],
                env: Some("A=1\n"),
            }
            .command(),
            Backup {
                dir: "/var/lib/shipit/web/production/backups",
                release: "1.0.0",
                keep: 10,
                name: "web_production_backup",
                image: "registry.example.com/web@sha256:00",
                docker: &["run".into(), "image".into()],
                env: "A=1\n",
            }
            .command(),
            Backups {
                dir: "/var/lib/shipit/web/production/backups",
            }
            .command(),
            Restore {
                file: "/var/lib/shipit/web/production/backups/x.backup",
                name: "web_production_restore",
                image: "registry.example.com/web@sha256:00",
                docker: &["run".into(), "image".into()],
                env: "A=1\n",
            }
            .command(),
            RemoveContainers {
                names: &["web_production_release".into()],
            }
            .command(),
            StartUnits {
                label: "start processes",
                units: &["web_production_worker@blue.service".into()],
            }
            .command(),
            ProcessReady {
                unit: "web_production_worker@blue.service",
                container: "web_production_worker-blue",
                ready: &crate::config::Ready::Command(vec!["./check".into()]),
                timeout: std::time::Duration::from_secs(20),
            }
            .command(),
            SiteUnits {
                key: &site.key(),
                timers: &["web_production_job_cleanup.timer".into()],
            }
            .command(),
            RetireUnits {
                paths: &["/etc/systemd/system/web_production_worker@.service".into()],
            }
            .command(),
            EnableTimers {
                timers: &["web_production_job_cleanup.timer".into()],
            }
            .command(),
            LoadImage {
                room: crate::transfer::plan::LoadRoom {
                    staged: 1 << 20,
                    unpacked: 3 << 20,
                },
            }
            .command(),
            SudoProbe.command(),
            Doctor {
                registry: "registry.example.com",
            }
            .command(),
        ];
        let all: Vec<String> = commands.iter().map(rendered).collect();
        insta::assert_snapshot!(all.join("\n"));
        // Secrets travel on stdin only.
        assert!(
            !all.iter()
                .any(|c| c.contains("hunter2") || c.contains("never-in-argv"))
        );
    }

    #[test]
    fn headers_are_left_out_and_the_state_functions_come_first() {
        assert_eq!(body("# a\n# b\n\nset -e\n# kept\n"), "set -e\n# kept\n");
        assert!(
            ReadState::of(&Site::new("a", "b"), None)
                .command()
                .script
                .contains("dump_state() {")
        );
        assert!(
            TakeLock {
                lock_dir: "/l",
                holder: "{}",
                state: None,
            }
            .command()
            .script
            .ends_with("fi\n")
        );
    }
}
