//! What a host holds about an app's releases, and how it is read. Pure.
//!
//! The hosts hold the truth, and nothing here consults the configuration being deployed: the
//! upstream include says which port nginx serves (and, in a comment written with it, which
//! colour); each colour's unit env file says which release runs there, on which port, checked
//! on which health path; the host itself says whether a colour's settings (its environment and
//! secrets) equal the deploy's, without any value derived from a secret leaving it; the lock
//! directory says who is deploying, and the append-only history says what happened.
//! Owns: parsing the answer to [`crate::remote::scripts::ReadState`], the lock details and
//! the history line formats.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::Colour;

/// A release: its version and the image it runs, pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// Semver with build metadata, such as `1.4.2+3f9c2ab`.
    pub release: String,
    /// Image reference pinned by digest, `registry/app:tag@sha256:...`, or without a registry
    /// the ID the deploying engine gave the image (`sha256:...`): the same on every host.
    /// A host may run it by another ID (see [`ColourState::runs`]).
    pub image: String,
}

/// Whether a colour's settings (the container's environment, secrets included) are the ones
/// the deploy would give it. The host compares; only this verdict comes back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Settings {
    Same,
    Differs,
    /// Not compared (a read-only command), or the colour has no env file.
    #[default]
    Unknown,
}

/// One colour on a host, as its unit env file and systemd say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColourState {
    pub release: Option<ReleaseRef>,
    /// What this host's engine runs the colour's image by (`SHIPIT_IMAGE`), when it differs
    /// from the release's image: an engine with containerd's store names an image sent over
    /// SSH by its own manifest.
    pub runs: Option<String>,
    /// `systemctl is-active`: `active`, `inactive`, `failed`, `activating`...
    pub unit: String,
    /// The same of the colour's unit in the earlier layout (keyed by the app alone), which
    /// runs on after `shipit provision` moved the host until a deploy replaces it.
    pub legacy_unit: String,
    /// The loopback port this colour was started on (`SHIPIT_PORT`).
    pub port: Option<u16>,
    /// The health path it was started with (`SHIPIT_HEALTH_PATH`; older hosts lack it).
    pub health_path: Option<String>,
    pub settings: Settings,
    /// What differs when `settings` does: the names of the settings (never a value), and
    /// `units` when the units it started with were changed since (volumes, limits, processes).
    pub changed: Vec<String>,
    /// The HTTP status its copy gave on its health path when the state was read (`Some(0)`:
    /// no answer); `None` when it was not asked (not running, or no `curl` on the host).
    pub answers: Option<u16>,
}

impl ColourState {
    /// The image reference this host's engine runs the colour by.
    pub fn image_here(&self) -> Option<&str> {
        self.runs
            .as_deref()
            .or(self.release.as_ref().map(|r| r.image.as_str()))
    }

    /// Whether a copy runs in this colour (under its unit, or the earlier layout's).
    pub fn running(&self) -> bool {
        self.unit == "active" || self.legacy_unit == "active"
    }

    /// Whether it runs under this layout's unit (a warm copy shipit can switch to and check).
    pub fn running_here(&self) -> bool {
        self.unit == "active"
    }

    /// Whether nginx, routing to it, would pass its answers on to users: it answered (with a
    /// status other than 502, 503 or 504, which make nginx try the next server). When it could
    /// not be asked, whether it runs.
    pub fn answers_users(&self) -> bool {
        match self.answers {
            Some(code) => code != 0 && !matches!(code, 502..=504),
            None => self.running(),
        }
    }
}

/// A machine's architecture (`uname -m`) as image platforms name it (`GOARCH`).
pub fn image_arch(machine: &str) -> String {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" | "armv8l" => "arm64",
        "armv7l" | "armv6l" | "arm" => "arm",
        "i386" | "i486" | "i586" | "i686" => "386",
        other => other,
    }
    .to_owned()
}

/// Who holds the environment lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique per shipit run.
    pub id: String,
    pub user: String,
    pub machine: String,
    /// Identifies the machine beyond its name (`/etc/machine-id`).
    #[serde(default)]
    pub machine_id: String,
    /// The running kernel (`/proc/sys/kernel/random/boot_id`): machine ids are copied into
    /// container images, boot ids are not.
    #[serde(default)]
    pub boot_id: String,
    /// The holder's PID namespace (`/proc/self/ns/pid`): a pid means something only there.
    #[serde(default)]
    pub pid_ns: String,
    pub pid: u32,
    /// The holder's start time in clock ticks after boot (`/proc/PID/stat`), so that a
    /// recycled pid is not taken for the holder.
    #[serde(default)]
    pub start_time: u64,
    /// Unix seconds.
    pub since: u64,
    pub command: String,
    pub version: String,
    /// The holder's lease in seconds: it renews the lock's `renewed` time (by the host's clock)
    /// while it lives, and a lock not renewed for this long may be taken over. 0 (a lock of an
    /// older shipit): no lease, never taken over for its age.
    #[serde(default)]
    pub lease: u64,
}

impl LockInfo {
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a history line says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A deploy that switched traffic and passed verification.
    Deployed,
    /// `shipit rollback` switched traffic to an earlier release.
    RolledBack,
    /// A deploy that failed and was undone by shipit (reason says why).
    AutoRolledBack,
    /// A deploy that failed before any switch: nothing changed for users.
    Failed,
    /// A deploy that failed and could not be undone on every host: the fleet serves two
    /// releases (reason names the hosts).
    FleetSplit,
}

impl Outcome {
    /// The word used in history, `--json` and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack => "rolled-back",
            Outcome::AutoRolledBack => "auto-rolled-back",
            Outcome::Failed => "failed",
            Outcome::FleetSplit => "fleet-split",
        }
    }
}

/// The latest time a history line may carry (9999-12-31): beyond it, it is garbage.
pub const MAX_TIME: u64 = 253_402_300_799;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix seconds.
    pub time: u64,
    pub release: String,
    pub image: String,
    /// What this host's engine ran the image by, when it differs from `image` (see
    /// [`ColourState::runs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<String>,
    pub colour: Colour,
    pub user: String,
    pub machine: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The shipit run that wrote it (its lock id): the same on every host of a run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// The backup taken before the release command (its file), or why there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// How long the fleet served two releases at the switch (first host switched to last),
    /// in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
}

impl HistoryEntry {
    /// Whether traffic ended on this release.
    pub fn went_live(&self) -> bool {
        matches!(self.outcome, Outcome::Deployed | Outcome::RolledBack)
    }
}

/// A history line that was skipped, with why (for a warning naming the host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The line's number in the history file, from 1.
    pub line: usize,
    pub reason: String,
}

/// Everything read from one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// The upstream include's text; `None` when the host was never provisioned.
    pub upstream: Option<String>,
    pub blue: ColourState,
    pub green: ColourState,
    pub lock: Option<LockInfo>,
    /// Oldest first, in the file's order (which is the order they happened on this host).
    pub history: Vec<HistoryEntry>,
    /// History lines that could not be used.
    pub skipped: Vec<Skipped>,
    pub nginx_active: bool,
    /// The earlier layout's upstream include exists (a host `shipit provision` has not moved).
    pub legacy_layout: bool,
    /// The hosts the last deploy or rollback counted as the environment, as this host recorded.
    pub fleet: FleetRecord,
    /// Hosts a run skipped as unreachable, as this host recorded: they missed a release.
    pub behind: Vec<Behind>,
    /// The host's own clock (unix seconds) when it answered.
    pub clock: Option<u64>,
    /// When the lock's holder last renewed its lease, by the host's clock (unix seconds).
    pub lock_renewed: Option<u64>,
    /// The host's CPU architecture, as images name it (`amd64`, `arm64`, ...).
    pub arch: Option<String>,
    /// The site's check token (`verify.conf`): what proves shipit's checks to its nginx.
    pub verify_token: Option<String>,
    /// The release waiting for promotion here, as recorded.
    pub waiting: Option<Waiting>,
}

/// The environment's hosts as a run recorded them on each host it reached: what it deployed to,
/// and hosts deployed to earlier that are no longer configured and not yet retired (they may
/// still run the app).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetRecord {
    pub hosts: Vec<String>,
    pub removed: Vec<String>,
}

impl FleetRecord {
    pub fn parse(text: &str) -> FleetRecord {
        let mut r = FleetRecord::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("host", h)) if !h.trim().is_empty() => r.hosts.push(h.trim().to_owned()),
                Some(("removed", h)) if !h.trim().is_empty() => {
                    r.removed.push(h.trim().to_owned());
                }
                _ => {}
            }
        }
        r
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            s.push_str(&format!("host {h}\n"));
        }
        for h in &self.removed {
            s.push_str(&format!("removed {h}\n"));
        }
        s
    }
}

/// A host a deploy or rollback skipped as unreachable (`--skip-unreachable`): it still serves
/// what it served before, and the next run converges it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behind {
    pub host: String,
    /// What the rest of the fleet went to.
    pub release: String,
    /// `deploy` or `rollback`.
    pub command: String,
    /// The run that skipped it (its lock id).
    pub run: String,
}

impl Behind {
    /// One JSON object a line; lines that are not are skipped.
    pub fn parse_all(text: &str) -> Vec<Behind> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn render_all(all: &[Behind]) -> String {
        all.iter()
            // A struct of strings always serializes.
            .map(|b| serde_json::to_string(b).unwrap_or_default() + "\n")
            .collect()
    }
}

/// A release waiting for promotion on a host (`deploy --no-promote`): started in the idle
/// colour, gated, reachable through `[preview]`, not switched to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub release: String,
    /// The release's image, as the history names it.
    pub image: String,
    /// What the host's engine runs it by, when not `image` (an image sent over SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<String>,
    pub colour: Colour,
    pub port: u16,
    /// The run that started it (its lock id), and who ran it.
    pub run: String,
    pub user: String,
    pub machine: String,
    /// By the host's clock (unix seconds); 0 until the host writes it.
    #[serde(default)]
    pub time: u64,
}

impl Waiting {
    /// The record's text: one JSON object (empty: nothing waits).
    pub fn render(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }

    /// The record read back; an empty or unreadable one is "nothing waits".
    pub fn parse(text: &str) -> Option<Waiting> {
        serde_json::from_str(text.trim()).ok()
    }

    /// Whether `other` is the same release with the same image.
    pub fn same_release(&self, other: &Waiting) -> bool {
        self.release == other.release && self.image == other.image
    }
}

/// Which of the upstream's servers users get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The first server: the live colour, answering.
    Primary,
    /// nginx's `backup`: the live colour does not answer, the previous one does.
    Backup,
}

/// What nginx serves on a host, read back from the upstream include and the colours' records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub colour: Colour,
    pub port: u16,
}

impl HostState {
    pub fn colour(&self, c: Colour) -> &ColourState {
        match c {
            Colour::Blue => &self.blue,
            Colour::Green => &self.green,
        }
    }

    /// The port nginx sends traffic to (the upstream's first server that is not a backup).
    pub fn live_port(&self) -> Option<u16> {
        upstream_live_port(self.upstream.as_deref()?)
    }

    /// The colour nginx sends traffic to: the colour recorded as started on the upstream's live
    /// port (the include's own comment breaks a tie). Never the configuration's ports: they may
    /// have changed since that colour started.
    pub fn live(&self) -> Option<Live> {
        let text = self.upstream.as_deref()?;
        let port = upstream_live_port(text)?;
        let on_port: Vec<Colour> = [Colour::Blue, Colour::Green]
            .into_iter()
            .filter(|c| self.colour(*c).port == Some(port))
            .collect();
        let colour = match on_port.as_slice() {
            [one] => *one,
            [_, _] => upstream_live_colour(text)
                .or_else(|| {
                    [Colour::Blue, Colour::Green]
                        .into_iter()
                        .find(|c| self.colour(*c).running())
                })
                .unwrap_or(Colour::Blue),
            _ => return None,
        };
        Some(Live { colour, port })
    }

    /// The release users get: the live colour's while it answers, else the backup's while it
    /// does (see [`HostState::serving`]).
    pub fn live_release(&self) -> Option<&ReleaseRef> {
        let (l, _) = self.serving()?;
        self.colour(l.colour).release.as_ref()
    }

    /// The image reference this host's engine runs `release` by: as a colour or the history
    /// recorded it (newest first), else the release's image itself.
    pub fn image_here(&self, release: &ReleaseRef) -> String {
        [&self.blue, &self.green]
            .into_iter()
            .filter(|c| c.release.as_ref() == Some(release))
            .find_map(|c| c.runs.clone())
            .or_else(|| {
                self.history
                    .iter()
                    .rev()
                    .filter(|e| e.release == release.release && e.image == release.image)
                    .find_map(|e| e.runs.clone())
            })
            .unwrap_or_else(|| release.image.clone())
    }

    /// The release recorded for the live colour (the upstream's first server), whether or not
    /// its copy runs: the release a rollback goes back from.
    pub fn primary_release(&self) -> Option<&ReleaseRef> {
        self.colour(self.live()?.colour).release.as_ref()
    }

    /// The colour on the upstream's `backup` server, when one is recorded there (never the live
    /// colour).
    pub fn fallback(&self) -> Option<Live> {
        let port = upstream_backup_port(self.upstream.as_deref()?)?;
        let live = self.live().map(|l| l.colour);
        let colour = [Colour::Blue, Colour::Green]
            .into_iter()
            .find(|c| Some(*c) != live && self.colour(*c).port == Some(port))?;
        Some(Live { colour, port })
    }

    /// The copy users get, read from nginx's upstream and the copies themselves: the live
    /// colour while it answers, else the backup while it answers, else none. Serving is a fact
    /// about what answers, not what a unit says.
    pub fn serving(&self) -> Option<(Live, Via)> {
        if let Some(l) = self.live()
            && self.colour(l.colour).answers_users()
        {
            return Some((l, Via::Primary));
        }
        let b = self.fallback()?;
        self.colour(b.colour)
            .answers_users()
            .then_some((b, Via::Backup))
    }
}

/// The upstream include: the live colour's port, and the previous colour's as nginx's `backup`
/// while it is still warm (nginx then retries a refused request there). A comment records the
/// live colour, written in the same atomic rename as the switch itself.
pub fn upstream(live: Option<Colour>, live_port: u16, warm_backup_port: Option<u16>) -> String {
    let mut s = String::from("# Managed by shipit deploy.\n");
    if let Some(colour) = live {
        s.push_str(&format!("# live: {colour}\n"));
    }
    s.push_str(&format!(
        "server 127.0.0.1:{live_port} max_fails=1 fail_timeout=2s;\n"
    ));
    if let Some(port) = warm_backup_port {
        s.push_str(&format!("server 127.0.0.1:{port} backup;\n"));
    }
    s
}

/// The upstream include provisioning creates, before any deploy: its one server is marked
/// `down`, so the site answers 502 rather than proxy to whatever holds that port.
pub fn upstream_not_deployed(port: u16) -> String {
    format!(
        "# Managed by shipit deploy.\n# Nothing deployed yet: nginx answers 502.\nserver 127.0.0.1:{port} down;\n"
    )
}

/// The upstream of a canary step: the previous colour stays live (the first server, which a
/// reader takes for the live one) and the new one takes `percent` of the requests.
pub fn canary_upstream(
    live: Colour,
    live_port: u16,
    new: Colour,
    new_port: u16,
    percent: u8,
) -> String {
    format!(
        "# Managed by shipit deploy.\n# live: {live}\n# canary: {new} {percent}%\nserver 127.0.0.1:{live_port} weight={} max_fails=1 fail_timeout=2s;\nserver 127.0.0.1:{new_port} weight={percent} max_fails=1 fail_timeout=2s;\n",
        100 - u16::from(percent)
    )
}

/// `[preview]`'s upstream include when nothing waits for promotion: its one server is `down`,
/// so a preview request gets 502 rather than whatever holds that port.
pub fn preview_nothing_waits(port: u16) -> String {
    format!(
        "# Managed by shipit deploy.\n# Nothing waits for promotion: nginx answers 502.\nserver 127.0.0.1:{port} down;\n"
    )
}

/// `[preview]`'s upstream include while `release` waits in `colour` on `port`.
pub fn preview_upstream(colour: Colour, port: u16, release: &str) -> String {
    format!(
        "# Managed by shipit deploy.\n# waiting: {colour} {release}\nserver 127.0.0.1:{port} max_fails=1 fail_timeout=2s;\n"
    )
}

/// The port an upstream include sends traffic to, read back from its text.
pub fn upstream_live_port(text: &str) -> Option<u16> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server ") && !l.contains(" backup") && !l.contains(" down"))
        .find_map(|l| {
            l.strip_prefix("server 127.0.0.1:")?
                .split([' ', ';'])
                .next()?
                .parse()
                .ok()
        })
}

/// The port of the upstream's `backup` server.
pub fn upstream_backup_port(text: &str) -> Option<u16> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server ") && l.contains(" backup"))
        .find_map(|l| {
            l.strip_prefix("server 127.0.0.1:")?
                .split([' ', ';'])
                .next()?
                .parse()
                .ok()
        })
}

/// The colour an upstream include's comment names.
fn upstream_live_colour(text: &str) -> Option<Colour> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("# live: "))
        .and_then(|c| Colour::parse(c.trim()))
}

/// How many lines a host's deploy state has.
const STATE_LINES: usize = 22;

/// Parse the answer to `DEPLOY_STATE`.
pub fn parse_state(stdout: &str) -> Result<HostState, String> {
    let mut state = HostState::default();
    let decode = |v: &str| -> Result<Option<String>, String> {
        if v == "-" {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| format!("bad base64: {e}"))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let settings = |colour: &mut ColourState, v: &str| {
        let mut words = v.split_whitespace();
        colour.settings = match words.next() {
            Some("same") => Settings::Same,
            Some("differs") => Settings::Differs,
            Some("-") => Settings::Unknown,
            _ => return Err(format!("unexpected settings verdict `{v}`")),
        };
        colour.changed = words.map(str::to_owned).collect();
        Ok(())
    };
    let answers = |v: &str| match v.trim() {
        "-" | "" => Ok(None),
        code => code
            .parse::<u16>()
            .map(Some)
            .map_err(|_| format!("unexpected answer `{code}`")),
    };
    let mut seen = 0;
    for line in stdout.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        seen += 1;
        match key {
            "upstream" => state.upstream = decode(value)?,
            "env-blue" => parse_unit_env(&mut state.blue, decode(value)?.as_deref()),
            "env-green" => parse_unit_env(&mut state.green, decode(value)?.as_deref()),
            "active-blue" => state.blue.unit = value.to_owned(),
            "active-green" => state.green.unit = value.to_owned(),
            "legacy-blue" => state.blue.legacy_unit = value.to_owned(),
            "legacy-green" => state.green.legacy_unit = value.to_owned(),
            "legacy-upstream" => state.legacy_layout = value == "yes",
            "settings-blue" => settings(&mut state.blue, value)?,
            "settings-green" => settings(&mut state.green, value)?,
            "answers-blue" => state.blue.answers = answers(value)?,
            "answers-green" => state.green.answers = answers(value)?,
            "fleet" => state.fleet = FleetRecord::parse(&decode(value)?.unwrap_or_default()),
            "behind" => state.behind = Behind::parse_all(&decode(value)?.unwrap_or_default()),
            "waiting" => state.waiting = Waiting::parse(&decode(value)?.unwrap_or_default()),
            "clock" => state.clock = value.trim().parse().ok(),
            "lock-renewed" => state.lock_renewed = value.trim().parse().ok(),
            "arch" => state.arch = Some(image_arch(value.trim())).filter(|a| !a.is_empty()),
            "token" => {
                state.verify_token = Some(value.trim())
                    .filter(|t| *t != "-" && !t.is_empty())
                    .map(str::to_owned);
            }
            "lock" => {
                state.lock = decode(value)?.and_then(|t| serde_json::from_str(t.trim()).ok());
            }
            "history" => {
                let (first, data) = match value.split_once(' ') {
                    Some((first, data)) => (
                        first
                            .parse::<usize>()
                            .map_err(|_| format!("bad history line number `{first}`"))?,
                        data,
                    ),
                    None => (1, value),
                };
                let text = decode(data)?.unwrap_or_default();
                let (history, skipped) = parse_history(&text, first);
                state.history = history;
                state.skipped = skipped;
            }
            "nginx" => state.nginx_active = value == "active",
            _ => return Err(format!("unexpected line `{line}`")),
        }
    }
    if seen != STATE_LINES {
        return Err(format!("expected {STATE_LINES} lines, got {seen}"));
    }
    Ok(state)
}

/// The history lines of a host, from line number `first`; lines that are not history entries
/// (garbage, a time beyond [`MAX_TIME`], an empty release) are skipped and listed.
pub fn parse_history(text: &str, first: usize) -> (Vec<HistoryEntry>, Vec<Skipped>) {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = first.saturating_add(i);
        if line.trim().is_empty() {
            continue;
        }
        let reason = match serde_json::from_str::<HistoryEntry>(line) {
            Err(e) => format!("not a history entry ({e})"),
            Ok(e) if e.time > MAX_TIME => format!("time {} is out of range", e.time),
            Ok(e) if e.release.trim().is_empty() => "empty release".to_owned(),
            Ok(e) => {
                entries.push(e);
                continue;
            }
        };
        skipped.push(Skipped {
            line: number,
            reason,
        });
    }
    (entries, skipped)
}

/// The unit env file of a colour: the image this host runs it by (`runs`), release, port,
/// colour and health path; and the release's image when the host runs it by another ID.
pub fn unit_env(
    release: &ReleaseRef,
    runs: &str,
    port: u16,
    colour: Colour,
    health_path: &str,
) -> Vec<String> {
    let mut lines = vec![
        format!("SHIPIT_IMAGE={runs}"),
        format!("SHIPIT_RELEASE={}", release.release),
        format!("SHIPIT_PORT={port}"),
        format!("SHIPIT_COLOUR={colour}"),
        format!("SHIPIT_HEALTH_PATH={health_path}"),
    ];
    if runs != release.image {
        lines.push(format!("SHIPIT_RELEASE_IMAGE={}", release.image));
    }
    lines
}

fn parse_unit_env(colour: &mut ColourState, text: Option<&str>) {
    let Some(text) = text else {
        return;
    };
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let runs = get("SHIPIT_IMAGE");
    let image = get("SHIPIT_RELEASE_IMAGE").or_else(|| runs.clone());
    colour.release = get("SHIPIT_RELEASE")
        .zip(image)
        .map(|(release, image)| ReleaseRef { release, image });
    colour.runs = runs.filter(|r| colour.release.as_ref().is_some_and(|rel| rel.image != *r));
    colour.port = get("SHIPIT_PORT").and_then(|p| p.parse().ok());
    colour.health_path = get("SHIPIT_HEALTH_PATH").filter(|p| p.starts_with('/'));
}

/// Who answers on a host port, from [`crate::remote::scripts::WhoAnswers`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortOwner {
    /// `true`, `false`, or `absent` (no such container).
    pub running: String,
    /// The image reference the container was started from.
    pub image: String,
    /// Where the container publishes its port, such as `127.0.0.1:3001`.
    pub published: Option<String>,
    /// Containers publishing the port.
    pub holders: Vec<String>,
    /// The process listening on the port (`docker-proxy (pid 12)`), when one does.
    pub process: Option<String>,
}

impl PortOwner {
    pub fn parse(text: &str) -> PortOwner {
        let mut o = PortOwner::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            let some = |v: &str| (!v.is_empty() && v != "-").then(|| v.to_owned());
            match key {
                "container" => {
                    let (running, image) = value.split_once(' ').unwrap_or((value, ""));
                    o.running = running.to_owned();
                    o.image = image.to_owned();
                }
                "published" => o.published = some(value),
                "holders" => o.holders = value.split_whitespace().map(str::to_owned).collect(),
                "process" => o.process = some(value),
                _ => {}
            }
        }
        o
    }

    /// Whether the answer on `port` comes from the container that should give it: running,
    /// from `image`, publishing `port`.
    pub fn serves(&self, image: &str, port: u16) -> bool {
        self.running == "true"
            && self.image == image
            && self
                .published
                .as_deref()
                .is_some_and(|p| p.rsplit(':').next() == Some(port.to_string().as_str()))
    }

    /// What answers instead of `container`, for a message.
    pub fn describe(&self, container: &str) -> String {
        let mine = match self.running.as_str() {
            "true" if !self.image.is_empty() => {
                format!("`{container}` runs `{}`", self.image)
            }
            "true" => format!("`{container}` runs"),
            "absent" | "" => format!("`{container}` does not exist"),
            _ => format!("`{container}` is not running"),
        };
        let others: Vec<&String> = self.holders.iter().filter(|h| *h != container).collect();
        let holder = match (others.as_slice(), &self.process) {
            ([], None) => "nothing listens on the port".to_owned(),
            ([], Some(p)) => format!("the port is held by process `{p}`"),
            (names, _) => format!(
                "the port is held by container {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!("{mine}; {holder}")
    }
}

/// A port something else holds, from [`crate::remote::scripts::PortsHeld`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPort {
    pub port: u16,
    /// ``container `name` `` or ``process `name (pid N)` ``.
    pub holder: String,
}

/// Parse `held PORT KIND NAME...` lines.
pub fn ports_held(text: &str) -> Vec<HeldPort> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("held ")?;
            let (port, rest) = rest.split_once(' ')?;
            let (kind, name) = rest.split_once(' ')?;
            let names: Vec<String> = match kind {
                "container" => name.split_whitespace().map(|n| format!("`{n}`")).collect(),
                _ => vec![format!("`{}`", name.trim())],
            };
            Some(HeldPort {
                port: port.parse().ok()?,
                holder: format!("{kind} {}", names.join(", ")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn answer(upstream: &str, env_blue: &str, hist: &str) -> String {
        let lock = r#"{"id":"x","user":"alice","machine":"laptop","pid":1,"since":5,"command":"deploy","version":"1.0.0"}"#;
        format!(
            "upstream {}\nenv-blue {}\nenv-green -\nactive-blue active\nactive-green inactive\nlegacy-blue inactive\nlegacy-green active\nanswers-blue 200\nanswers-green -\nsettings-blue same\nsettings-green differs DATABASE_URL units\nlock {}\nlock-renewed 1796153390\nhistory 41 {}\nlegacy-upstream no\nnginx active\nfleet {}\nbehind -\nwaiting {}\nclock 1796153400\narch x86_64\ntoken 0123456789abcdef0123\n",
            b64(upstream),
            b64(env_blue),
            b64(lock),
            b64(hist),
            b64("host root@a:22\nremoved root@old:22\n"),
            b64(
                r#"{"release":"2.0.0+abc","image":"r/a:2","colour":"green","port":3002,"run":"r1","user":"alice","machine":"laptop","time":1796153300}"#
            ),
        )
    }

    #[test]
    fn parses_a_host_answer() {
        let env = "SHIPIT_IMAGE=r/a:1.0.0_abc@sha256:00\nSHIPIT_RELEASE=1.0.0+abc\nSHIPIT_PORT=3001\nSHIPIT_HEALTH_PATH=/up\n";
        let hist = r#"{"time":1,"release":"1.0.0+abc","image":"r/a:1","colour":"blue","user":"a","machine":"m","outcome":"deployed"}"#;
        let out = answer(
            "server 127.0.0.1:3001 max_fails=1 fail_timeout=2s;\n",
            env,
            &format!("{hist}\nnot json\n"),
        );
        let s = parse_state(&out).unwrap();
        assert_eq!(s.blue.release.as_ref().unwrap().release, "1.0.0+abc");
        assert_eq!(s.blue.port, Some(3001));
        assert_eq!(s.blue.health_path.as_deref(), Some("/up"));
        assert_eq!(s.blue.settings, Settings::Same);
        assert_eq!(s.green.settings, Settings::Differs);
        assert_eq!(s.green.changed, ["DATABASE_URL", "units"]);
        assert_eq!(s.blue.answers, Some(200));
        assert_eq!(s.green.answers, None);
        assert_eq!(s.fleet.hosts, ["root@a:22"]);
        assert_eq!(s.fleet.removed, ["root@old:22"]);
        assert_eq!(s.clock, Some(1_796_153_400));
        assert_eq!(s.lock_renewed, Some(1_796_153_390));
        assert_eq!(s.arch.as_deref(), Some("amd64"));
        assert_eq!(s.verify_token.as_deref(), Some("0123456789abcdef0123"));
        assert!(s.blue.running() && s.blue.running_here());
        assert!(
            s.green.running() && !s.green.running_here(),
            "its earlier unit runs"
        );
        assert!(!s.legacy_layout);
        assert_eq!(s.green.release, None);
        assert_eq!(s.lock.unwrap().user, "alice");
        assert_eq!(s.history.len(), 1, "a corrupt line is skipped, not fatal");
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.skipped[0].line, 42, "numbered as in the file");
        assert!(s.nginx_active);
        let waiting = s.waiting.unwrap();
        assert_eq!(
            (waiting.release.as_str(), waiting.colour, waiting.port),
            ("2.0.0+abc", Colour::Green, 3002)
        );
        assert!(parse_state("upstream -\n").is_err());
    }

    #[test]
    fn forged_history_lines_are_skipped_with_their_line_number() {
        let good = r#"{"time":5,"release":"1","image":"i","colour":"blue","user":"u","machine":"m","outcome":"deployed"}"#;
        let huge = r#"{"time":18446744073709551615,"release":"9","image":"i","colour":"blue","user":"u","machine":"m","outcome":"deployed"}"#;
        let empty = r#"{"time":5,"release":" ","image":"i","colour":"blue","user":"u","machine":"m","outcome":"deployed"}"#;
        let text = format!("{good}\n{huge}\n\n{empty}\n{{\"time\":\n");
        let (entries, skipped) = parse_history(&text, 1);
        assert_eq!(entries.len(), 1);
        let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert!(skipped[0].reason.contains("out of range"), "{skipped:?}");
    }

    #[test]
    fn the_live_colour_comes_from_what_the_host_recorded_not_the_configuration() {
        let colour = |port: u16, unit: &str| ColourState {
            release: Some(ReleaseRef {
                release: format!("r{port}"),
                image: "i".into(),
            }),
            unit: unit.into(),
            port: Some(port),
            ..ColourState::default()
        };
        // Green started on 4002 (before `[ports]` changed): it is live, whatever ports say now.
        let s = HostState {
            upstream: Some(upstream(Some(Colour::Green), 4002, Some(3001))),
            blue: colour(3001, "active"),
            green: colour(4002, "active"),
            ..HostState::default()
        };
        assert_eq!(
            s.live(),
            Some(Live {
                colour: Colour::Green,
                port: 4002
            })
        );
        assert_eq!(s.live_release().unwrap().release, "r4002");
        // Both recorded on the same port: the include's comment decides.
        let s = HostState {
            upstream: Some(upstream(Some(Colour::Blue), 3001, None)),
            blue: colour(3001, "inactive"),
            green: colour(3001, "active"),
            ..HostState::default()
        };
        assert_eq!(s.live().unwrap().colour, Colour::Blue);
        assert_eq!(s.live_release(), None, "blue is not running");
        // No colour on the upstream's port: nothing is live.
        let s = HostState {
            upstream: Some(upstream(None, 3001, None)),
            ..HostState::default()
        };
        assert_eq!(s.live(), None);
    }

    #[test]
    fn unit_env_round_trips() {
        let r = ReleaseRef {
            release: "2.0.0+x".into(),
            image: "i@sha256:1".into(),
        };
        let text = unit_env(&r, "i@sha256:1", 3002, Colour::Green, "/health").join("\n");
        assert!(!text.contains("SHIPIT_RELEASE_IMAGE"), "{text}");
        let mut c = ColourState::default();
        parse_unit_env(&mut c, Some(&text));
        assert_eq!(c.release, Some(r.clone()));
        assert_eq!(c.runs, None);
        assert_eq!(c.image_here(), Some("i@sha256:1"));
        assert_eq!(c.port, Some(3002));
        assert_eq!(c.health_path.as_deref(), Some("/health"));
    }

    #[test]
    fn a_host_that_runs_the_image_by_its_own_id_records_both() {
        // Sent over SSH to an engine with containerd's store: it runs its manifest's digest.
        let r = ReleaseRef {
            release: "2.0.0+x".into(),
            image: "sha256:c0".into(),
        };
        let text = unit_env(&r, "sha256:m0", 3002, Colour::Green, "/health").join("\n");
        assert!(text.starts_with("SHIPIT_IMAGE=sha256:m0\n"), "{text}");
        let mut c = ColourState::default();
        parse_unit_env(&mut c, Some(&text));
        assert_eq!(c.release, Some(r.clone()));
        assert_eq!(c.runs.as_deref(), Some("sha256:m0"));
        assert_eq!(c.image_here(), Some("sha256:m0"));
        let s = HostState {
            green: c,
            ..HostState::default()
        };
        assert_eq!(s.image_here(&r), "sha256:m0");
        // Only in its history (the colour was replaced since).
        let entry = |release: &str, runs: Option<&str>| HistoryEntry {
            time: 1,
            release: release.into(),
            image: "sha256:c0".into(),
            runs: runs.map(str::to_owned),
            colour: Colour::Blue,
            user: "u".into(),
            machine: "m".into(),
            outcome: Outcome::Deployed,
            reason: None,
            run: String::new(),
            backup: None,
            window_ms: None,
        };
        let s = HostState {
            history: vec![entry("2.0.0+x", Some("sha256:m0")), entry("2.0.0+x", None)],
            ..HostState::default()
        };
        assert_eq!(s.image_here(&r), "sha256:m0");
        // Nothing recorded: the release's image.
        assert_eq!(HostState::default().image_here(&r), "sha256:c0");
    }

    #[test]
    fn upstream_round_trips_its_live_port_and_colour() {
        let text = upstream(Some(Colour::Green), 3002, Some(3001));
        assert_eq!(upstream_live_port(&text), Some(3002));
        assert_eq!(upstream_live_colour(&text), Some(Colour::Green));
        assert_eq!(upstream_live_port(&upstream(None, 3002, None)), Some(3002));
        assert_eq!(upstream_live_port("# nothing\n"), None);
        assert_eq!(upstream_live_port(&upstream_not_deployed(3001)), None);
    }

    #[test]
    fn who_answers_on_a_port() {
        let mine = PortOwner::parse(
            "container true r/a@sha256:1\npublished 127.0.0.1:3001\nholders a-blue \nprocess docker-proxy (pid 9)\n",
        );
        assert!(mine.serves("r/a@sha256:1", 3001));
        assert!(!mine.serves("r/a@sha256:2", 3001), "another release");
        assert!(!mine.serves("r/a@sha256:1", 3002), "another port");
        let squatted = PortOwner::parse(
            "container absent -\npublished -\nholders other-blue \nprocess docker-proxy (pid 7)\n",
        );
        assert!(!squatted.serves("r/a@sha256:1", 3001));
        assert_eq!(
            squatted.describe("a-blue"),
            "`a-blue` does not exist; the port is held by container `other-blue`"
        );
        let process = PortOwner::parse(
            "container false r/a@sha256:1\npublished -\nholders \nprocess busybox (pid 77)\n",
        );
        assert_eq!(
            process.describe("a-blue"),
            "`a-blue` is not running; the port is held by process `busybox (pid 77)`"
        );
    }

    #[test]
    fn held_ports_name_their_holders() {
        let held = ports_held(
            "held 3001 container other_production-blue \nheld 3002 process busybox (pid 42)\nnoise\n",
        );
        assert_eq!(
            held,
            [
                HeldPort {
                    port: 3001,
                    holder: "container `other_production-blue`".into()
                },
                HeldPort {
                    port: 3002,
                    holder: "process `busybox (pid 42)`".into()
                }
            ]
        );
    }
}
