//! Configuration: loading, merging and validating `shipit.toml` with `environments/<env>.toml`.
//!
//! Owns: the validated [`Config`] every other module works from, and every message about a bad
//! configuration (file, line, column, what to fix). Must not: connect anywhere. Reading the two
//! files is the only I/O here; everything after that is pure and tested on strings.

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use raw::FileId;
pub use validate::{ConfigError, ConfigErrors, is_env_name, is_name, parse_host};

use crate::error::Error;

/// The file names, relative to the app directory.
pub const BASE_FILE: &str = "shipit.toml";
pub const ENV_DIR: &str = "environments";

/// A validated, merged configuration for one environment.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    #[serde(skip)]
    pub app_dir: PathBuf,
    pub environment: String,
    pub app: String,
    pub image: String,
    pub dockerfile: String,
    pub context: String,
    /// The platform to build the image for (`linux/amd64`), when it is not this machine's
    /// engine's own: an arm64 laptop building for amd64 servers.
    pub platform: Option<String>,
    pub version: semver::Version,
    pub build_args: BTreeMap<String, String>,
    pub domain: String,
    pub hosts: Vec<HostSpec>,
    /// The registry images go through; `None` when they go over SSH (`deploy.images`).
    pub registry: Option<Registry>,
    pub container: Container,
    pub ports: Ports,
    pub health: Health,
    pub env: Env,
    pub ssh: Ssh,
    pub tls: Option<Tls>,
    pub nginx: Nginx,
    pub deploy: Deploy,
    pub hooks: Hooks,
    pub smoke: Smoke,
    pub notify: Notify,
    /// Processes beside the web one, by name.
    pub processes: Vec<Process>,
    /// Scheduled jobs, by name.
    pub jobs: Vec<Job>,
    /// Services the app uses (a database, a cache), by name: provisioned, never restarted by
    /// a deploy.
    pub accessories: Vec<Accessory>,
    pub backup: Option<Backup>,
    /// `[preview]`: how a release waiting for promotion (`deploy --no-promote`) is reached
    /// through each host's nginx; `None` without the section.
    pub preview: Option<Preview>,
    /// `[canary]`: how `deploy --canary` moves traffic and judges the new release; `None`
    /// without the section (then nginx keeps no per-upstream log to judge from).
    pub canary: Option<Canary>,
}

/// A canary deploy: traffic to the new release in weighted steps, each held while the new
/// colour's answers are compared with the previous colour's over the same window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Canary {
    /// The new release's share of requests at each step, in percent (1 to 99), ascending.
    pub steps: Vec<u8>,
    /// How long each step is held and judged.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// The new colour's share of 5xx answers may not pass this (0.01: 1 %)...
    pub max_error_rate: f64,
    /// ...nor the previous colour's over the same window by more than this.
    pub max_error_increase: f64,
    /// Its p95 latency may not pass the previous colour's times this.
    pub max_p95_ratio: f64,
    /// The new colour's requests a step needs for a verdict (the hold is extended up to
    /// three times to get them).
    pub min_requests: usize,
}

/// Canary steps as written (`10%,50%` or `10,50`): percents from 1 to 99, ascending.
pub fn parse_canary_steps(text: &str) -> Result<Vec<u8>, String> {
    let steps = text
        .split(',')
        .map(|s| {
            let t = s.trim();
            t.strip_suffix('%')
                .unwrap_or(t)
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=99).contains(p))
                .ok_or_else(|| format!("`{t}` is not a share from 1% to 99%"))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "the steps `{text}` do not rise (such as `10%,50%`)"
        ));
    }
    Ok(steps)
}

/// Where a waiting release answers through nginx: requests for its host name, and requests
/// that carry its header (any value) on the site's own names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// `preview.<domain>` by default; lowercase.
    pub host: String,
    /// `X-Shipit-Preview` by default.
    pub header: String,
}

impl Preview {
    /// nginx's variable for the header (`$http_x_shipit_preview`), without the `$`.
    pub fn header_var(&self) -> String {
        format!(
            "http_{}",
            self.header.to_ascii_lowercase().replace('-', "_")
        )
    }
}

/// A process beside the web one (a queue worker, say): the release's image with another
/// command, one systemd unit instance per colour on each of its hosts.
#[derive(Clone, Debug, Serialize)]
pub struct Process {
    pub name: String,
    pub command: Vec<String>,
    /// The environment's hosts it runs on (all of them by default).
    pub hosts: Vec<HostSpec>,
    pub ready: Ready,
}

/// When a newly started process counts as ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    /// This command, run in its container, exits 0.
    Command(Vec<String>),
    /// It has run this long without exiting or restarting.
    #[serde(with = "humantime_serde")]
    After(Duration),
}

/// A scheduled job: a systemd timer running the live release's image with a command.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub name: String,
    /// systemd's `OnCalendar` (`daily`, `*-*-* 03:00:00`, `*:0/15`).
    pub schedule: String,
    pub command: Vec<String>,
    /// The one host it runs on (the first host by default).
    pub host: HostSpec,
    #[serde(with = "humantime_serde")]
    pub randomized_delay: Duration,
    /// Run at boot when a run was missed while the host was down (`Persistent=`).
    pub persistent: bool,
    /// Another image to run it in (an accessory's, for its clients): the live release's by
    /// default.
    pub image: Option<String>,
}

/// A service the app uses (`[accessories.<name>]`): a container on one host of the
/// environment, run by its own systemd unit, published on one address of that host.
#[derive(Clone, Debug, Serialize)]
pub struct Accessory {
    pub name: String,
    pub image: String,
    pub host: HostSpec,
    /// The port it listens on in its container, published on `bind` with the same number.
    pub port: u16,
    /// The host's address it is published on: loopback by default, never every address.
    pub bind: std::net::IpAddr,
    pub volumes: Vec<String>,
    pub env: Env,
    /// Run in its container (`docker exec`) until it exits 0: the accessory is ready.
    pub health: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    pub memory_max: String,
    pub cpu_quota: String,
    /// The variable that tells the app where it is.
    pub url: Option<AccessoryUrl>,
}

/// `url_env = url`: the variable the app gets, and its text with `{host}`, `{port}` and the
/// accessory's own variables in braces.
#[derive(Clone, Debug, Serialize)]
pub struct AccessoryUrl {
    pub env: String,
    pub template: String,
}

impl Accessory {
    /// `127.0.0.1:5432`, `[fd00::5]:5432`: where docker publishes it on its host.
    pub fn published(&self) -> String {
        match self.bind {
            std::net::IpAddr::V4(ip) => format!("{ip}:{}", self.port),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", self.port),
        }
    }

    /// The `docker run` options an app container on `host` needs to reach it by its name:
    /// on its own host, the environment's network (where its name is an alias); elsewhere,
    /// its name mapped to its published address.
    pub fn link_args(&self, site_key: &str, host: &HostSpec) -> Vec<String> {
        if *host == self.host {
            vec!["--network".into(), network_name(site_key)]
        } else if self.bind.is_loopback() {
            Vec::new()
        } else {
            vec!["--add-host".into(), format!("{}:{}", self.name, self.bind)]
        }
    }

    /// Its URL for the app, from the accessory's settings: `None` without `url`; `Err` with
    /// the names of missing secrets.
    pub fn url_value(
        &self,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Option<Result<(String, String), Vec<String>>> {
        let url = self.url.as_ref()?;
        let mut out = String::new();
        let mut missing = Vec::new();
        let mut rest = url.template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            let word = &after[..close];
            match word {
                "host" => out.push_str(&self.name),
                "port" => out.push_str(&self.port.to_string()),
                _ => match self.env.clear.get(word) {
                    Some(v) => out.push_str(&percent_encode_userinfo(v)),
                    None => match secret(word) {
                        Some(v) => out.push_str(&percent_encode_userinfo(&v)),
                        None => missing.push(word.to_owned()),
                    },
                },
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Some(if missing.is_empty() {
            Ok((url.env.clone(), out))
        } else {
            Err(missing)
        })
    }
}

/// A secret put in a URL: what would end its user information or path is percent-encoded.
fn percent_encode_userinfo(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The docker network of an environment's accessories on their host: `shipit_<app>_<env>`.
pub fn network_name(site_key: &str) -> String {
    format!("shipit_{site_key}")
}

/// The backup taken before every deploy, on one host, kept there.
#[derive(Clone, Debug, Serialize)]
pub struct Backup {
    /// Writes the file named by `SHIPIT_BACKUP_FILE`.
    pub command: Vec<String>,
    /// Reads it back (`shipit backups restore`).
    pub restore: Option<Vec<String>>,
    /// The image that runs them: the release's own by default.
    pub image: Option<String>,
    pub host: HostSpec,
    pub keep: usize,
}

/// Commands run on the deploying machine, with `sh -c`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hooks {
    /// Before anything changes on a host (holding the lock); a failure stops the deploy.
    pub pre_deploy: Vec<String>,
    /// After the switch and verification, still holding the lock; a failure rolls back.
    pub post_deploy: Vec<String>,
}

/// The built-in smoke check: a burst of requests through every host's nginx after the switch.
#[derive(Clone, Debug, Serialize)]
pub struct Smoke {
    /// Requests per host; 0 turns the check off.
    pub requests: usize,
    pub max_error_rate: f64,
    #[serde(with = "humantime_serde")]
    pub max_p95: Duration,
    pub path: String,
}

/// Where deploys, rollbacks and automatic rollbacks are announced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Notify {
    pub webhook: Option<WebhookUrl>,
    pub slack: Option<WebhookUrl>,
    pub discord: Option<WebhookUrl>,
}

/// A webhook URL: a credential (Slack's and Discord's carry their token in the path). It
/// prints, serializes and debugs as its scheme and host only; [`WebhookUrl::expose`] is for
/// the one place that sends to it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn new(url: impl Into<String>) -> WebhookUrl {
        WebhookUrl(url.into())
    }

    /// The whole URL, token included: only to send a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `https://hooks.slack.com/…`: the scheme and host of a URL, never its path or query.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials in the authority (`user:token@host`) go too.
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}{host}/…")
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", redact_url(&self.0))
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One SSH destination, `[user@]host[:port]`. What it leaves out, ssh decides from the user's
/// `~/.ssh/config` (`User`, `Port`, `HostName`, `ProxyJump` of a `Host` alias), as for
/// `ssh host`; without a config entry, ssh's own defaults (this machine's user name, port 22).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostSpec {
    pub user: Option<String>,
    /// A host name, an address, or an alias of `~/.ssh/config`.
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(port)) => write!(f, "{}:{port}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

impl Serialize for HostSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Registry {
    pub server: String,
    pub username: String,
    /// The name of the variable that holds the password, never the password.
    pub password_env: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Container {
    pub port: u16,
    /// systemd `MemoryMax` syntax, such as `2G`.
    pub memory_max: String,
    /// systemd `CPUQuota` syntax, such as `200%`.
    pub cpu_quota: String,
    /// Host directories mounted into every container of the app: `/srv/uploads:/uploads`
    /// (`:ro` for read only).
    pub volumes: Vec<String>,
}

/// The host loopback ports of the two colours.
#[derive(Clone, Debug, Serialize)]
pub struct Ports {
    pub blue: u16,
    pub green: u16,
}

#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub path: String,
    pub expect_json: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct Env {
    pub clear: BTreeMap<String, String>,
    /// Names of variables whose values come from the deployer's environment or `.env`.
    pub secret: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHostsPolicy {
    Strict,
    AcceptNew,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ssh {
    pub identity: Option<PathBuf>,
    pub known_hosts: KnownHostsPolicy,
    pub known_hosts_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub max_parallel: usize,
    /// Connections being set up at once (the SSH handshake and authentication), below sshd's
    /// `MaxStartups`.
    pub max_starts: usize,
    /// How long a master connection stays open after a run for the next one to reuse
    /// (like Ansible's ControlPersist); zero closes it at the end of each run.
    #[serde(with = "humantime_serde")]
    pub persist: Duration,
    /// The jump host every host is reached through (else what ssh's configuration says, its
    /// `ProxyJump`): one master to it carries the hosts' connections.
    pub bastion: Option<HostSpec>,
    /// ssh's configuration file (`-F`); ssh's own default (`~/.ssh/config`) when unset.
    pub config_file: Option<PathBuf>,
}

/// Where nginx's certificate comes from.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Tls {
    /// Files the team puts on every host itself.
    Files {
        certificate: String,
        certificate_key: String,
    },
    /// Issued and renewed by shipit from an ACME CA (Let's Encrypt by default), installed on
    /// every host.
    Acme(Acme),
}

/// Let's Encrypt's directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Clone, Debug, Serialize)]
pub struct Acme {
    /// The account's contact: the CA writes here about expiry and incidents.
    pub email: String,
    /// The CA's ACME directory URL.
    pub directory: String,
    /// Renew when the certificate expires within this long.
    #[serde(with = "humantime_serde")]
    pub renew_before: Duration,
}

/// The parts of the nginx site a team tunes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Nginx {
    /// A Content-Security-Policy, sent as `Content-Security-Policy-Report-Only` unless
    /// `csp_enforce`: setting one never breaks a working app until the team says so.
    pub csp: Option<String>,
    pub csp_enforce: bool,
    pub rate_limit: Option<RateLimit>,
    /// Addresses (or CIDR ranges) of load balancers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

/// Requests per client address, with a burst; over it, 429 with `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// nginx's syntax: `10r/s` or `300r/m`.
    pub rate: String,
    pub burst: u32,
    /// Seconds until one more request is allowed: what `Retry-After` says.
    pub retry_after: u64,
}

/// What happens to the previous colour after a successful deploy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepPrevious {
    /// Keep it running as nginx's backup until the next deploy (a rollback is a switch).
    Warm,
    /// Stop it after `drain`.
    Stop,
}

/// How a release's image reaches the hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Images {
    /// Pushed to `[registry]`, pulled by each host.
    Registry,
    /// Sent from this machine's engine over SSH, only the layers each host lacks.
    Ssh,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deploy {
    pub images: Images,
    /// Run once per deploy in the new release's image, before any host switches.
    pub release_command: Option<Vec<String>>,
    /// The host it runs on (the first host by default).
    pub release_host: HostSpec,
    pub retain: usize,
    pub keep_previous: KeepPrevious,
    #[serde(with = "humantime_serde")]
    pub verify_window: Duration,
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// Hosts a deploy or rollback may leave out when they cannot be reached at connect (named,
    /// recorded as behind, converged by the next run); 0: every host must be reached.
    pub tolerate_unreachable: usize,
    /// How long a lock may go without its holder renewing it (by the host's clock) before
    /// another shipit may take it over; the holder renews it every quarter of this.
    #[serde(with = "humantime_serde")]
    pub lock_lease: Duration,
}

mod humantime_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

/// The names of the environments an app directory defines, sorted.
pub fn environment_names(app_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app_dir.join(ENV_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Read, merge and validate the configuration of `environment` in `app_dir`.
pub fn load(app_dir: &Path, environment: &str) -> Result<Config, Error> {
    let base_path = app_dir.join(BASE_FILE);
    let base_text = std::fs::read_to_string(&base_path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NoConfig {
                dir: app_dir.to_path_buf(),
            }
        } else {
            Error::Read {
                path: base_path.clone(),
                source,
            }
        }
    })?;
    if !validate::is_name(environment) {
        return Err(Error::BadEnvironmentName {
            name: environment.to_owned(),
        });
    }
    let env_rel = format!("{ENV_DIR}/{environment}.toml");
    let env_path = app_dir.join(&env_rel);
    let env_text = match std::fs::read_to_string(&env_path) {
        Ok(text) => text,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            let known = environment_names(app_dir);
            return Err(Error::UnknownEnvironment {
                name: environment.to_owned(),
                suggestion: crate::suggest::closest(environment, known.iter().map(String::as_str))
                    .map(str::to_owned),
                known,
                path: env_path,
            });
        }
        Err(source) => {
            return Err(Error::Read {
                path: env_path,
                source,
            });
        }
    };
    let sources = validate::Sources {
        base_name: BASE_FILE.to_owned(),
        base_text: &base_text,
        env_name: env_rel,
        env_text: &env_text,
    };
    let mut config = validate::validate(&sources, environment).map_err(Error::Config)?;
    config.app_dir = app_dir.to_path_buf();
    Ok(config)
}

/// Validate configuration text directly (for tests of code that needs a `Config`).
#[doc(hidden)]
pub fn validate_for_tests(base: &str, env: &str) -> Result<Config, ConfigErrors> {
    validate::validate(
        &validate::Sources {
            base_name: BASE_FILE.to_owned(),
            base_text: base,
            env_name: "environments/test.toml".to_owned(),
            env_text: env,
        },
        "test",
    )
}

impl Config {
    /// Where this app's environment lives on a host: what every file, unit and container of
    /// it is named after.
    pub fn site(&self) -> crate::layout::Site {
        crate::layout::Site::new(&self.app, &self.environment)
    }

    /// The certificate and key nginx reads: the team's files, or where shipit installs the
    /// ACME certificate.
    pub fn tls_files(&self) -> Option<(String, String)> {
        match self.tls.as_ref()? {
            Tls::Files {
                certificate,
                certificate_key,
            } => Some((certificate.clone(), certificate_key.clone())),
            Tls::Acme(_) => {
                let site = self.site();
                Some((site.certificate(), site.certificate_key()))
            }
        }
    }

    /// The ACME settings, when shipit obtains the certificate.
    pub fn acme(&self) -> Option<&Acme> {
        match self.tls.as_ref()? {
            Tls::Acme(acme) => Some(acme),
            Tls::Files { .. } => None,
        }
    }

    /// The colours' ports, by colour.
    pub fn port_of(&self, colour: crate::model::Colour) -> u16 {
        match colour {
            crate::model::Colour::Blue => self.ports.blue,
            crate::model::Colour::Green => self.ports.green,
        }
    }
}
