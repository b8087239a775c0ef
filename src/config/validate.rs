//! Turning the merged raw layers into a [`Config`], collecting every problem at once.
//!
//! Owns: the rules for each key and the wording of configuration errors. Must not: read files
//! (it is handed their text) or do any other I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{self, FileId, Merge, RawConfig, Val};
use super::{
    Config, Container, Deploy, Env, Health, Hooks, HostSpec, Images, KeepPrevious,
    KnownHostsPolicy, Nginx, Notify, Ports, RateLimit, Registry, Smoke, Ssh, Tls,
};

/// How long a lock may go unrenewed before another shipit may take it over: long enough for a
/// laptop lid closed a moment or a slow host, short enough that a CI job killed mid-deploy does
/// not block the next one for long.
const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(600);

/// The two files' names (as shown to the user) and their text.
pub struct Sources<'a> {
    pub base_name: String,
    pub base_text: &'a str,
    pub env_name: String,
    pub env_text: &'a str,
}

impl Sources<'_> {
    fn name(&self, file: FileId) -> &str {
        match file {
            FileId::Base => &self.base_name,
            FileId::Environment => &self.env_name,
        }
    }

    fn text(&self, file: FileId) -> &str {
        match file {
            FileId::Base => self.base_text,
            FileId::Environment => self.env_text,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, file: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(file);
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, col)
    }
}

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Line and column, when the problem is at a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct Checker<'a> {
    sources: &'a Sources<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at<T>(&mut self, val: &Val<T>, message: impl Into<String>, help: Option<String>) {
        let position = self.sources.position(val.file, val.span.start);
        self.errors.push(ConfigError {
            file: self.sources.name(val.file).to_owned(),
            position: Some(position),
            message: message.into(),
            help,
        });
    }

    /// A value that must be present; the error names the key and where to add it.
    fn required<'v, T>(
        &mut self,
        val: &'v Option<Val<T>>,
        key: &str,
        example: &str,
    ) -> Option<&'v Val<T>> {
        if val.is_none() {
            self.errors.push(ConfigError {
                file: self.sources.env_name.clone(),
                position: None,
                message: format!("missing key `{key}`"),
                help: Some(format!(
                    "add `{example}` to {} or to {}",
                    self.sources.base_name, self.sources.env_name
                )),
            });
        }
        val.as_ref()
    }

    fn string(
        &mut self,
        val: &Val<String>,
        key: &str,
        rule: fn(&str) -> bool,
        what: &str,
    ) -> Option<String> {
        if rule(&val.value) {
            Some(val.value.clone())
        } else {
            self.at(
                val,
                format!("`{key}` = {:?} is not {what}", val.value),
                None,
            );
            None
        }
    }

    fn port(&mut self, val: &Option<Val<i64>>, key: &str, default: u16) -> u16 {
        match val {
            None => default,
            Some(v) => match u16::try_from(v.value) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.at(
                        v,
                        format!(
                            "`{key}` must be a port between 1 and 65535, got {}",
                            v.value
                        ),
                        None,
                    );
                    default
                }
            },
        }
    }

    fn count(
        &mut self,
        val: &Option<Val<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: usize,
    ) -> usize {
        match val {
            None => default,
            Some(v) if range.contains(&v.value) => usize::try_from(v.value).unwrap_or(default),
            Some(v) => {
                self.at(
                    v,
                    format!(
                        "`{key}` must be between {} and {}, got {}",
                        range.start(),
                        range.end(),
                        v.value
                    ),
                    None,
                );
                default
            }
        }
    }

    fn duration(&mut self, val: &Option<Val<String>>, key: &str, default: Duration) -> Duration {
        self.duration_from(val, key, default, Duration::from_millis(1))
    }

    /// A duration of at least `min` (zero allowed when `min` is zero).
    fn duration_from(
        &mut self,
        val: &Option<Val<String>>,
        key: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = val else { return default };
        match humantime::parse_duration(&v.value) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                self.at(
                    v,
                    format!(
                        "`{key}` = {:?} is shorter than {}",
                        v.value,
                        humantime::format_duration(min)
                    ),
                    Some(format!("write {} or more", humantime::format_duration(min))),
                );
                default
            }
            _ => {
                self.at(
                    v,
                    format!("`{key}` = {:?} is not a duration", v.value),
                    Some("write a number with a unit, such as \"500ms\", \"30s\" or \"2m\"".into()),
                );
                default
            }
        }
    }
}

/// Validate the two files' text into a configuration for `environment`.
pub fn validate(sources: &Sources<'_>, environment: &str) -> Result<Config, ConfigErrors> {
    let parse = |file: FileId| {
        raw::parse(sources.text(file), file).map_err(|e| toml_error(sources, file, &e))
    };
    let (base, env) = match (parse(FileId::Base), parse(FileId::Environment)) {
        (Ok(base), Ok(env)) => (base, env),
        (base, env) => {
            let errors = [base.err(), env.err()].into_iter().flatten().collect();
            return Err(ConfigErrors(errors));
        }
    };
    let merged = base.merge(env);
    let mut c = Checker {
        sources,
        errors: Vec::new(),
    };
    let config = check(&mut c, merged, environment);
    if let (true, Some(config)) = (c.errors.is_empty(), config) {
        return Ok(config);
    }
    Err(ConfigErrors(c.errors))
}

/// Every key's rule, in the order of the README's table. Long because it is that one table:
/// each key a few lines, all errors collected before any is returned.
fn check(c: &mut Checker<'_>, raw: RawConfig, environment: &str) -> Option<Config> {
    let app = c
        .required(&raw.app, "app", "app = \"hello\"")
        .and_then(|v| c.string(v, "app", is_app_name, "a valid app name (lowercase letter, then lowercase letters, digits or `-`, at most 40)"));
    let image = c
        .required(
            &raw.image,
            "image",
            "image = \"registry.example.com/acme/hello\"",
        )
        .and_then(|v| {
            c.string(
                v,
                "image",
                is_image_name,
                "an image name without tag (lowercase `registry/path/name`)",
            )
        });
    let version = c
        .required(&raw.version, "version", "version = \"1.0.0\"")
        .and_then(|v| match semver::Version::parse(&v.value) {
            Ok(version) => Some(version),
            Err(e) => {
                c.at(
                    v,
                    format!("`version` = {:?} is not a semantic version: {e}", v.value),
                    Some("write it as MAJOR.MINOR.PATCH, such as \"1.4.2\"".into()),
                );
                None
            }
        });
    let domain = c
        .required(&raw.domain, "domain", "domain = \"app.example.com\"")
        .and_then(|v| {
            c.string(
                v,
                "domain",
                is_domain,
                "a domain name (letters, digits, `-` and `.`)",
            )
        });
    let dockerfile =
        raw.dockerfile
            .as_ref()
            .map_or(Some("Dockerfile.production".to_owned()), |v| {
                c.string(
                    v,
                    "dockerfile",
                    is_relative_path,
                    "a relative path inside the app directory",
                )
            });
    let context = raw.context.as_ref().map_or(Some(".".to_owned()), |v| {
        c.string(
            v,
            "context",
            is_relative_path,
            "a relative path inside the app directory",
        )
    });
    let platform = raw.platform.as_ref().and_then(|v| {
        c.string(
            v,
            "platform",
            is_platform,
            "a platform such as \"linux/amd64\" or \"linux/arm64\"",
        )
    });
    let mut build_args = BTreeMap::new();
    for (k, v) in raw.build_args.iter().flatten() {
        if !is_env_name(k) {
            c.at(
                v,
                format!("build argument name `{k}` is not valid"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
        } else {
            build_args.insert(k.clone(), v.value.clone());
        }
    }

    let hosts = check_hosts(c, raw.hosts.as_ref());
    let processes = check_processes(
        c,
        raw.processes.as_ref().unwrap_or(&BTreeMap::new()),
        hosts.as_deref(),
    );
    let jobs = check_jobs(
        c,
        raw.jobs.as_ref().unwrap_or(&BTreeMap::new()),
        hosts.as_deref(),
    );
    let taken: Vec<&str> = raw
        .processes
        .iter()
        .flat_map(|p| p.keys())
        .chain(raw.jobs.iter().flat_map(|j| j.keys()))
        .map(String::as_str)
        .collect();
    let app_env: Vec<&str> = raw
        .env
        .iter()
        .flat_map(|e| {
            e.clear
                .iter()
                .flat_map(|c| c.keys().map(String::as_str))
                .chain(
                    e.secret
                        .iter()
                        .flat_map(|l| l.value.iter().map(|v| v.value.as_str())),
                )
        })
        .collect();
    let accessories = check_accessories(
        c,
        raw.accessories.as_ref().unwrap_or(&BTreeMap::new()),
        hosts.as_deref(),
        &taken,
        &app_env,
    );
    let backup = check_backup(c, raw.backup.clone().unwrap_or_default(), hosts.as_deref());
    let preview = raw
        .preview
        .clone()
        .map(|p| check_preview(c, p, domain.as_deref()));
    let canary = raw.canary.clone().map(|r| check_canary(c, r));
    let has_registry = raw.registry.is_some();
    let registry = raw
        .registry
        .map(|r| check_registry(c, r))
        .unwrap_or(Some(None));
    let container = check_container(c, raw.container.unwrap_or_default());
    let ports = {
        let p = raw.ports.unwrap_or_default();
        let ports = Ports {
            blue: c.port(&p.blue, "ports.blue", 3001),
            green: c.port(&p.green, "ports.green", 3002),
        };
        if let (true, Some(v)) = (
            ports.blue == ports.green,
            p.green.as_ref().or(p.blue.as_ref()),
        ) {
            c.at(
                v,
                format!("`ports.blue` and `ports.green` are both {}", ports.blue),
                Some("give the two colours different ports".into()),
            );
        }
        ports
    };
    // An accessory published where the app's colours or another accessory already are would
    // fail at its start: refused here, naming both.
    if let (Some(list), Some(table)) = (&accessories, &raw.accessories) {
        for (i, a) in list.iter().enumerate() {
            let clash = if a.bind == std::net::IpAddr::from([127, 0, 0, 1])
                && [ports.blue, ports.green].contains(&a.port)
            {
                Some(format!("the app's colour port {}", a.port))
            } else {
                list[..i]
                    .iter()
                    .find(|b| b.host == a.host && b.port == a.port && b.bind == a.bind)
                    .map(|b| format!("accessory `{}`", b.name))
            };
            if let (Some(what), Some(v)) = (clash, table.get(&a.name)) {
                c.at(
                    v,
                    format!(
                        "`accessories.{}` would be published on {} of {}, where {what} is",
                        a.name,
                        a.published(),
                        a.host
                    ),
                    Some("give it another `port`, or another `bind` address".into()),
                );
            }
        }
    }
    let health = check_health(c, raw.health.unwrap_or_default());
    let env = check_env(c, raw.env.unwrap_or_default());
    let ssh = check_ssh(c, raw.ssh.unwrap_or_default());
    let tls = check_tls(c, raw.tls.unwrap_or_default());
    let nginx = check_nginx(c, raw.nginx.unwrap_or_default());
    let deploy = {
        let d = raw.deploy.unwrap_or_default();
        Deploy {
            images: match &d.images {
                None if has_registry => Images::Registry,
                None => Images::Ssh,
                Some(v) if v.value == "ssh" => Images::Ssh,
                Some(v) if v.value == "registry" && has_registry => Images::Registry,
                Some(v) if v.value == "registry" => {
                    c.at(
                        v,
                        "`deploy.images` = \"registry\" needs a `[registry]`",
                        Some("add `[registry]` with `server` and `username`, or send images over SSH with `images = \"ssh\"`".into()),
                    );
                    Images::Registry
                }
                Some(v) => {
                    c.at(
                        v,
                        format!(
                            "`deploy.images` = {:?} is not \"registry\" or \"ssh\"",
                            v.value
                        ),
                        None,
                    );
                    Images::Registry
                }
            },
            release_command: match &d.release_command {
                None => None,
                Some(v) => check_command(c, v, "deploy.release_command"),
            },
            release_host: match &d.release_host {
                Some(h) => host_of(c, h, "deploy.release_host", hosts.as_deref()),
                None => hosts.as_deref().and_then(|h| h.first().cloned()),
            }
            .unwrap_or_else(|| HostSpec {
                user: None,
                host: String::new(),
                port: None,
            }),
            retain: c.count(&d.retain, "deploy.retain", 2..=100, 5),
            keep_previous: match &d.keep_previous {
                None => KeepPrevious::Warm,
                Some(v) if v.value == "warm" => KeepPrevious::Warm,
                Some(v) if v.value == "stop" => KeepPrevious::Stop,
                Some(v) => {
                    c.at(
                        v,
                        format!(
                            "`deploy.keep_previous` = {:?} is not \"warm\" or \"stop\"",
                            v.value
                        ),
                        None,
                    );
                    KeepPrevious::Warm
                }
            },
            verify_window: c.duration_from(
                &d.verify_window,
                "deploy.verify_window",
                Duration::from_secs(5),
                Duration::ZERO,
            ),
            drain: c.duration_from(
                &d.drain,
                "deploy.drain",
                Duration::from_secs(2),
                Duration::ZERO,
            ),
            tolerate_unreachable: c.count(
                &d.tolerate_unreachable,
                "deploy.tolerate_unreachable",
                0..=1000,
                0,
            ),
            lock_lease: c.duration_from(
                &d.lock_lease,
                "deploy.lock_lease",
                DEFAULT_LOCK_LEASE,
                Duration::from_secs(10),
            ),
        }
    };
    let hooks = {
        let h = raw.hooks.unwrap_or_default();
        let mut list = |v: &Option<Val<Vec<Val<String>>>>, key: &str| -> Vec<String> {
            v.iter()
                .flat_map(|l| l.value.iter())
                .filter_map(|cmd| {
                    c.string(
                        cmd,
                        key,
                        |s| !s.trim().is_empty() && !s.contains('\0'),
                        "a command",
                    )
                })
                .collect()
        };
        Hooks {
            pre_deploy: list(&h.pre_deploy, "hooks.pre_deploy"),
            post_deploy: list(&h.post_deploy, "hooks.post_deploy"),
        }
    };
    let smoke = {
        let s = raw.smoke.unwrap_or_default();
        let max_error_rate = match &s.max_error_rate {
            None => 0.01,
            Some(v) if (0.0..=1.0).contains(&v.value) => v.value,
            Some(v) => {
                c.at(
                    v,
                    format!(
                        "`smoke.max_error_rate` must be between 0 and 1, got {}",
                        v.value
                    ),
                    Some("0.01 means 1 %".into()),
                );
                0.01
            }
        };
        Smoke {
            requests: c.count(&s.requests, "smoke.requests", 0..=10_000, 20),
            max_error_rate,
            max_p95: c.duration(&s.max_p95, "smoke.max_p95", Duration::from_millis(400)),
            path: s
                .path
                .as_ref()
                .and_then(|v| {
                    c.string(v, "smoke.path", is_url_path, "a URL path starting with `/`")
                })
                .unwrap_or_else(|| "/".to_owned()),
        }
    };
    let notify = {
        let n = raw.notify.unwrap_or_default();
        // Webhook URLs are credentials: an error shows only their scheme and host.
        let mut url = |v: &Option<Val<String>>, key: &str| {
            let v = v.as_ref()?;
            if is_http_url(&v.value) {
                Some(super::WebhookUrl::new(v.value.clone()))
            } else {
                c.at(
                    v,
                    format!(
                        "`{key}` = \"{}\" is not an http:// or https:// URL",
                        super::redact_url(&v.value)
                    ),
                    None,
                );
                None
            }
        };
        Notify {
            webhook: url(&n.webhook, "notify.webhook"),
            slack: url(&n.slack, "notify.slack"),
            discord: url(&n.discord, "notify.discord"),
        }
    };

    // Images over SSH: no registry is used, whatever `[registry]` says (an environment may send
    // over SSH where the others push).
    let registry = match deploy.images {
        Images::Ssh => Some(None),
        Images::Registry => registry,
    };
    Some(Config {
        app_dir: PathBuf::new(),
        environment: environment.to_owned(),
        app: app?,
        image: image?,
        dockerfile: dockerfile?,
        context: context?,
        platform,
        version: version?,
        build_args,
        domain: domain?,
        hosts: hosts?,
        registry: registry?,
        container: container?,
        ports,
        health: health?,
        env: env?,
        ssh: ssh?,
        tls: tls?,
        nginx: nginx?,
        deploy,
        hooks,
        smoke,
        notify,
        processes: processes?,
        jobs: jobs?,
        accessories: accessories?,
        backup: backup?,
        preview: match preview {
            Some(p) => Some(p?),
            None => None,
        },
        canary: match canary {
            Some(p) => Some(p?),
            None => None,
        },
    })
}

/// `[canary]`: its steps (ascending percents), hold, thresholds and the requests it needs.
fn check_canary(c: &mut Checker<'_>, r: raw::RawCanary) -> Option<super::Canary> {
    let steps = match &r.steps {
        None => Some(vec![10, 50]),
        Some(v) => {
            let text = v
                .value
                .iter()
                .map(|s| s.value.clone())
                .collect::<Vec<_>>()
                .join(",");
            match super::parse_canary_steps(&text) {
                Ok(steps) if !steps.is_empty() => Some(steps),
                Ok(_) => None,
                Err(e) => {
                    c.at(
                        v,
                        format!("`canary.steps`: {e}"),
                        Some("such as `steps = [\"10%\", \"50%\"]`".into()),
                    );
                    None
                }
            }
        }
    };
    let mut fraction = |v: &Option<Val<f64>>, key: &str, max: f64, default: f64| match v {
        None => default,
        Some(v) if v.value >= 0.0 && v.value <= max => v.value,
        Some(v) => {
            c.at(
                v,
                format!("`{key}` must be between 0 and {max}, got {}", v.value),
                Some("0.01 means 1 %".into()),
            );
            default
        }
    };
    let max_error_rate = fraction(&r.max_error_rate, "canary.max_error_rate", 1.0, 0.01);
    let max_error_increase = fraction(
        &r.max_error_increase,
        "canary.max_error_increase",
        1.0,
        0.01,
    );
    let max_p95_ratio = match &r.max_p95_ratio {
        None => 2.0,
        Some(v) if v.value >= 1.0 => v.value,
        Some(v) => {
            c.at(
                v,
                format!("`canary.max_p95_ratio` must be at least 1, got {}", v.value),
                Some("2.0: the new release may be up to twice as slow (p95)".into()),
            );
            2.0
        }
    };
    Some(super::Canary {
        steps: steps?,
        hold: c.duration(&r.hold, "canary.hold", Duration::from_secs(30)),
        max_error_rate,
        max_error_increase,
        max_p95_ratio,
        min_requests: c.count(&r.min_requests, "canary.min_requests", 1..=1_000_000, 50),
    })
}

/// `[preview]`: its host name (a domain, lowercased; `preview.<domain>` by default) and its
/// header (a token nginx can name as `$http_...`).
fn check_preview(
    c: &mut Checker<'_>,
    r: raw::RawPreview,
    domain: Option<&str>,
) -> Option<super::Preview> {
    let host = match &r.host {
        Some(v) => c
            .string(
                v,
                "preview.host",
                is_domain,
                "a domain name (letters, digits, `-` and `.`)",
            )
            .map(|h| h.to_ascii_lowercase()),
        None => domain.map(|d| format!("preview.{d}").to_ascii_lowercase()),
    };
    if let (Some(h), Some(d), Some(v)) = (&host, domain, &r.host)
        && h.eq_ignore_ascii_case(d)
    {
        c.at(
            v,
            format!("`preview.host` is the site's own domain `{d}`"),
            Some("give the preview its own name, such as `preview.{d}`".replace("{d}", d)),
        );
        return None;
    }
    let header = match &r.header {
        Some(v) => c.string(
            v,
            "preview.header",
            |s| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            },
            "a header name (letters, digits and `-`)",
        ),
        None => Some("X-Shipit-Preview".to_owned()),
    };
    Some(super::Preview {
        host: host?,
        header: header?,
    })
}

fn check_hosts(
    c: &mut Checker<'_>,
    hosts: Option<&Val<Vec<Val<String>>>>,
) -> Option<Vec<HostSpec>> {
    let list = c
        .required(
            &hosts.cloned(),
            "hosts",
            "hosts = [\"deploy@203.0.113.10\"]",
        )?
        .clone();
    if list.value.is_empty() {
        c.at(
            &list,
            "`hosts` is empty",
            Some("list at least one host, such as `hosts = [\"deploy@203.0.113.10\"]`".into()),
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut ok = true;
    for h in &list.value {
        match parse_host(&h.value) {
            Ok(spec) => {
                if !seen.insert((spec.host.clone(), spec.port)) {
                    c.at(
                        h,
                        format!("host `{}` is listed twice", h.value),
                        Some("remove the duplicate from `hosts`".into()),
                    );
                    ok = false;
                }
                out.push(spec);
            }
            Err(why) => {
                c.at(
                    h,
                    format!("host {:?} is not valid: {why}", h.value),
                    Some("write it as `host`, `user@host` or `user@host:port` (what it leaves out, `~/.ssh/config` decides)".into()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Parse `[user@]host[:port]`; IPv6 addresses go in brackets. The host may be an alias of
/// `~/.ssh/config` (`_` allowed); what is left out, ssh's configuration decides.
pub fn parse_host(s: &str) -> Result<HostSpec, String> {
    let (user, rest) = match s.split_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, s),
    };
    if let Some(user) = user
        && !is_user_name(user)
    {
        return Err(format!("user `{user}` is not a valid user name"));
    }
    let (host, port, bracketed) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or("missing `]` after an IPv6 address")?;
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (addr, Some(port), true),
            None if after.is_empty() => (addr, None, true),
            None => return Err(format!("unexpected `{after}` after the address")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (rest, None, false),
        }
    };
    if !bracketed && !is_host_or_alias(host) {
        return Err(format!(
            "`{host}` is not a host name, address or ssh_config alias"
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("port `{p}` is not between 1 and 65535")),
        },
    };
    Ok(HostSpec {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
    })
}

fn check_registry(c: &mut Checker<'_>, r: raw::RawRegistry) -> Option<Option<Registry>> {
    let server = c
        .required(
            &r.server,
            "registry.server",
            "server = \"registry.example.com\"",
        )
        .and_then(|v| {
            c.string(
                v,
                "registry.server",
                is_registry_server,
                "a registry address (`host` or `host:port`)",
            )
        });
    let username = c
        .required(&r.username, "registry.username", "username = \"deploy\"")
        .and_then(|v| {
            c.string(
                v,
                "registry.username",
                |s| !s.is_empty() && !s.contains([':', '\n', '\r', '\0']),
                "a user name (no `:` or newline)",
            )
        });
    let password_env = match &r.password_env {
        None => Some("SHIPIT_REGISTRY_PASSWORD".to_owned()),
        Some(v) => c.string(
            v,
            "registry.password_env",
            is_env_name,
            "the name of an environment variable (the password itself never goes in a file)",
        ),
    };
    Some(Some(Registry {
        server: server?,
        username: username?,
        password_env: password_env?,
    }))
}

fn check_container(c: &mut Checker<'_>, r: raw::RawContainer) -> Option<Container> {
    let port = c.port(&r.port, "container.port", 3000);
    let (memory_max, cpu_quota, volumes) =
        check_limits(c, "container", &r.memory_max, &r.cpu_quota, &r.volumes)?;
    Some(Container {
        port,
        memory_max,
        cpu_quota,
        volumes,
    })
}

/// A container's memory and CPU limits (1G and 100 % unless given) and its volumes, under
/// `table` (`container`, `accessories.<name>`).
fn check_limits(
    c: &mut Checker<'_>,
    table: &str,
    memory_max: &Option<Val<String>>,
    cpu_quota: &Option<Val<String>>,
    volume_list: &Option<Val<Vec<Val<String>>>>,
) -> Option<(String, String, Vec<String>)> {
    let memory_max = match memory_max {
        None => Some("1G".to_owned()),
        Some(v) => c.string(
            v,
            &format!("{table}.memory_max"),
            is_memory_size,
            "a memory size such as \"512M\" or \"2G\"",
        ),
    };
    let cpu_quota = match cpu_quota {
        None => Some("100%".to_owned()),
        Some(v) => c.string(
            v,
            &format!("{table}.cpu_quota"),
            is_cpu_quota,
            "a CPU quota such as \"50%\" or \"200%\"",
        ),
    };
    let mut volumes = Vec::new();
    let mut volumes_ok = true;
    for v in volume_list.iter().flat_map(|l| l.value.iter()) {
        match c.string(
            v,
            &format!("{table}.volumes"),
            is_volume,
            "`/host/path:/container/path` (absolute paths, `:ro` for read only)",
        ) {
            Some(volume) => volumes.push(volume),
            None => volumes_ok = false,
        }
    }
    Some((memory_max?, cpu_quota?, volumes_ok.then_some(volumes)?))
}

/// A command: a non-empty list of arguments without control characters (they reach `docker
/// run` and systemd's `ExecStart` as they are).
fn check_command(c: &mut Checker<'_>, v: &Val<Vec<Val<String>>>, key: &str) -> Option<Vec<String>> {
    if v.value.is_empty() {
        c.at(
            v,
            format!("`{key}` is empty"),
            Some(
                "give the program and its arguments, such as `[\"./bin/migrate\", \"--yes\"]`"
                    .into(),
            ),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for arg in &v.value {
        match c.string(
            arg,
            key,
            |s| !s.chars().any(char::is_control),
            "an argument without line breaks or control characters",
        ) {
            Some(a) => out.push(a),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A host named in another key: it must be one of `hosts`.
fn host_of(
    c: &mut Checker<'_>,
    v: &Val<String>,
    key: &str,
    hosts: Option<&[HostSpec]>,
) -> Option<HostSpec> {
    let spec = match parse_host(&v.value) {
        Ok(spec) => spec,
        Err(why) => {
            c.at(
                v,
                format!("`{key}` = {:?} is not valid: {why}", v.value),
                None,
            );
            return None;
        }
    };
    let hosts = hosts?;
    if hosts.contains(&spec) {
        Some(spec)
    } else {
        c.at(
            v,
            format!("`{key}` = {:?} is not one of `hosts`", v.value),
            Some(format!(
                "name one of {}",
                hosts
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
        None
    }
}

/// A name of a process or job: it names units and containers.
fn part_name(c: &mut Checker<'_>, name: &str, v: &Val<impl Clone>, table: &str) -> bool {
    if is_app_name(name) && name != "web" {
        return true;
    }
    c.at(
        v,
        format!("`{table}.{name}`: the name is not valid"),
        Some("use a lowercase letter, then lowercase letters, digits or `-` (not `web`, the app's own)".into()),
    );
    false
}

fn check_processes(
    c: &mut Checker<'_>,
    raw: &BTreeMap<String, Val<raw::RawProcess>>,
    hosts: Option<&[HostSpec]>,
) -> Option<Vec<super::Process>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, v) in raw {
        if !part_name(c, name, v, "processes") {
            ok = false;
            continue;
        }
        let key = |k: &str| format!("processes.{name}.{k}");
        let r = &v.value;
        let command = match &r.command {
            Some(cmd) => check_command(c, cmd, &key("command")),
            None => {
                c.at(
                    v,
                    format!("`processes.{name}` has no `command`"),
                    Some("add `command = [\"./bin/worker\"]`".into()),
                );
                None
            }
        };
        let process_hosts = match (&r.hosts, hosts) {
            (None, Some(all)) => Some(all.to_vec()),
            (None, None) => None,
            (Some(list), _) => {
                let picked: Vec<Option<HostSpec>> = list
                    .value
                    .iter()
                    .map(|h| host_of(c, h, &key("hosts"), hosts))
                    .collect();
                if list.value.is_empty() {
                    c.at(
                        list,
                        format!("`{}` is empty", key("hosts")),
                        Some("leave it out to run the process on every host".into()),
                    );
                    None
                } else {
                    picked.into_iter().collect()
                }
            }
        };
        let ready = match (&r.ready_command, &r.ready_after) {
            (Some(_), Some(after)) => {
                c.at(
                    after,
                    format!("`processes.{name}` has both `ready_command` and `ready_after`"),
                    Some("keep one".into()),
                );
                None
            }
            (Some(cmd), None) => {
                check_command(c, cmd, &key("ready_command")).map(super::Ready::Command)
            }
            (None, after) => Some(super::Ready::After(c.duration_from(
                after,
                &key("ready_after"),
                Duration::from_secs(5),
                Duration::from_secs(1),
            ))),
        };
        match (command, process_hosts, ready) {
            (Some(command), Some(hosts), Some(ready)) => out.push(super::Process {
                name: name.clone(),
                command,
                hosts,
                ready,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn check_jobs(
    c: &mut Checker<'_>,
    raw: &BTreeMap<String, Val<raw::RawJob>>,
    hosts: Option<&[HostSpec]>,
) -> Option<Vec<super::Job>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, v) in raw {
        if !part_name(c, name, v, "jobs") {
            ok = false;
            continue;
        }
        let key = |k: &str| format!("jobs.{name}.{k}");
        let r = &v.value;
        let schedule = match &r.schedule {
            Some(s) => c.string(
                s,
                &key("schedule"),
                is_calendar,
                "a systemd calendar (`OnCalendar`) such as \"daily\", \"Mon *-*-* 03:00\" or \"*:0/15\"",
            ),
            None => {
                c.at(v, format!("`jobs.{name}` has no `schedule`"), Some("add `schedule = \"daily\"` (systemd's OnCalendar syntax)".into()));
                None
            }
        };
        let command = match &r.command {
            Some(cmd) => check_command(c, cmd, &key("command")),
            None => {
                c.at(
                    v,
                    format!("`jobs.{name}` has no `command`"),
                    Some("add `command = [\"./bin/cleanup\"]`".into()),
                );
                None
            }
        };
        let host = match &r.host {
            Some(h) => host_of(c, h, &key("host"), hosts),
            None => hosts.and_then(|h| h.first().cloned()),
        };
        let randomized_delay = c.duration_from(
            &r.randomized_delay,
            &key("randomized_delay"),
            Duration::ZERO,
            Duration::ZERO,
        );
        let image = match &r.image {
            None => Some(None),
            Some(i) => c
                .string(
                    i,
                    &key("image"),
                    |s| !s.is_empty() && !s.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
                    "an image reference such as \"registry.example.com/redis:7\"",
                )
                .map(Some),
        };
        match (schedule, command, host, image) {
            (Some(schedule), Some(command), Some(host), Some(image)) => out.push(super::Job {
                name: name.clone(),
                schedule,
                command,
                host,
                randomized_delay,
                persistent: r.persistent.as_ref().is_none_or(|p| p.value),
                image,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `[accessories.<name>]`: services the app uses (a database, a cache), each a container on
/// one host of the environment, and how the app finds it.
fn check_accessories(
    c: &mut Checker<'_>,
    raw: &BTreeMap<String, Val<raw::RawAccessory>>,
    hosts: Option<&[HostSpec]>,
    taken: &[&str],
    app_env: &[&str],
) -> Option<Vec<super::Accessory>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, v) in raw {
        if !part_name(c, name, v, "accessories") {
            ok = false;
            continue;
        }
        if taken.contains(&name.as_str()) {
            c.at(
                v,
                format!("`accessories.{name}`: a process or job has that name"),
                Some(
                    "give the accessory a name of its own (it names a unit and a container)".into(),
                ),
            );
            ok = false;
            continue;
        }
        let key = |k: &str| format!("accessories.{name}.{k}");
        let r = &v.value;
        let image = match &r.image {
            Some(i) => c.string(
                i,
                &key("image"),
                |s| !s.is_empty() && !s.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
                "an image reference such as \"registry.example.com/postgres:15\"",
            ),
            None => {
                c.at(
                    v,
                    format!("`accessories.{name}` has no `image`"),
                    Some("add `image = \"registry.example.com/postgres:15\"`".into()),
                );
                None
            }
        };
        let host = match &r.host {
            Some(h) => host_of(c, h, &key("host"), hosts),
            None => hosts.and_then(|h| h.first().cloned()),
        };
        let port = match &r.port {
            Some(_) => Some(c.port(&r.port, &key("port"), 1)),
            None => {
                c.at(
                    v,
                    format!("`accessories.{name}` has no `port`"),
                    Some(
                        "add the port it listens on in its container, such as `port = 5432`".into(),
                    ),
                );
                None
            }
        };
        let bind = match &r.bind {
            None => Some(std::net::IpAddr::from([127, 0, 0, 1])),
            Some(b) => match b.value.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_unspecified() => {
                    c.at(
                        b,
                        format!("`{}` = {:?} would publish it on every address of the host", key("bind"), b.value),
                        Some("name the host's loopback or private address the other hosts reach it on".into()),
                    );
                    None
                }
                Ok(ip) => Some(ip),
                Err(_) => {
                    c.at(
                        b,
                        format!("`{}` = {:?} is not an IP address", key("bind"), b.value),
                        Some("such as \"127.0.0.1\" (the default) or a private address such as \"10.0.0.5\"".into()),
                    );
                    None
                }
            },
        };
        let limits = check_limits(
            c,
            &format!("accessories.{name}"),
            &r.memory_max,
            &r.cpu_quota,
            &r.volumes,
        );
        let env = check_env(c, r.env.clone().unwrap_or_default());
        let health = match &r.health {
            Some(cmd) => check_command(c, cmd, &key("health")).map(Some),
            None => Some(None),
        };
        let health_timeout = c.duration_from(
            &r.health_timeout,
            &key("health_timeout"),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let url_env = match &r.url_env {
            None => Some(format!(
                "{}_URL",
                name.to_ascii_uppercase().replace('-', "_")
            )),
            Some(e) => c.string(
                e,
                &key("url_env"),
                |s| is_env_name(s) && !s.starts_with("SHIPIT_"),
                "an environment variable name such as \"DATABASE_URL\"",
            ),
        };
        if let (Some(Some(_)), Some(var)) = (&r.url.as_ref().map(Some), &url_env)
            && app_env.contains(&var.as_str())
        {
            let message =
                format!("`accessories.{name}` gives the app `{var}`, which `env` sets too");
            let help = Some(format!(
                "take `{var}` out of `env`, or name another variable with `{}`",
                key("url_env")
            ));
            match &r.url_env {
                Some(e) => c.at(e, message, help),
                None => c.at(v, message, help),
            }
            ok = false;
        }
        let url = match (&r.url, &env) {
            (None, _) => Some(None),
            (Some(u), Some(env)) => match check_url_template(&u.value, env) {
                Ok(()) => Some(Some(u.value.clone())),
                Err(why) => {
                    c.at(u, format!("`{}`: {why}", key("url")), Some("use `{host}`, `{port}` and the names of the accessory's `env` (clear or secret), such as \"postgres://app:{POSTGRES_PASSWORD}@{host}:{port}/app\"".into()));
                    None
                }
            },
            (Some(_), None) => None,
        };
        // Another host of the app reaches the accessory on its published address: never on
        // the accessory host's loopback.
        if let (Some(Some(_)), Some(ip), Some(host), Some(all)) = (&url, &bind, &host, hosts)
            && ip.is_loopback()
            && let Some(other) = all.iter().find(|h| *h != host)
        {
            let message = format!(
                "`accessories.{name}` is published on {host}'s loopback ({ip}), which the app on {other} cannot reach"
            );
            let help = Some(format!(
                "set `{}` to a private address of {host} that the other hosts reach",
                key("bind")
            ));
            match &r.bind {
                Some(b) => c.at(b, message, help),
                None => c.at(v, message, help),
            }
            ok = false;
        }
        match (image, host, port, bind, limits, env, health, url_env, url) {
            (
                Some(image),
                Some(host),
                Some(port),
                Some(bind),
                Some((memory_max, cpu_quota, volumes)),
                Some(env),
                Some(health),
                Some(url_env),
                Some(url),
            ) => out.push(super::Accessory {
                name: name.clone(),
                image,
                host,
                port,
                bind,
                volumes,
                env,
                health,
                health_timeout,
                memory_max,
                cpu_quota,
                url: url.map(|template| super::AccessoryUrl {
                    env: url_env,
                    template,
                }),
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// An accessory's URL: `{host}`, `{port}` and the names of its environment, nothing else.
fn check_url_template(template: &str, env: &Env) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            format!(
                "a `{{` at byte {} is never closed",
                template.len() - rest.len() + open
            )
        })?;
        let word = &after[..close];
        if word != "host"
            && word != "port"
            && !env.clear.contains_key(word)
            && !env.secret.iter().any(|s| s == word)
        {
            return Err(format!(
                "`{{{word}}}` is neither `{{host}}`, `{{port}}` nor a name of its `env`"
            ));
        }
        rest = &after[close + 1..];
    }
    if template.contains(['\n', '\r', '\0']) {
        return Err("it contains a line break".into());
    }
    Ok(())
}

fn check_backup(
    c: &mut Checker<'_>,
    r: raw::RawBackup,
    hosts: Option<&[HostSpec]>,
) -> Option<Option<super::Backup>> {
    let Some(cmd) = &r.command else {
        if let Some(v) = r.restore.as_ref() {
            c.at(
                v,
                "`backup` has a `restore` but no `command`",
                Some("add `command`: what writes the file named by SHIPIT_BACKUP_FILE".into()),
            );
            return None;
        }
        return Some(None);
    };
    let command = check_command(c, cmd, "backup.command");
    let restore = match &r.restore {
        None => Some(None),
        Some(v) => check_command(c, v, "backup.restore").map(Some),
    };
    let image = match &r.image {
        None => Some(None),
        Some(v) => c
            .string(
                v,
                "backup.image",
                |s| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()),
                "an image reference",
            )
            .map(Some),
    };
    let host = match &r.host {
        Some(h) => host_of(c, h, "backup.host", hosts),
        None => hosts.and_then(|h| h.first().cloned()),
    };
    Some(Some(super::Backup {
        command: command?,
        restore: restore?,
        image: image?,
        host: host?,
        keep: c.count(&r.keep, "backup.keep", 1..=1000, 10),
    }))
}

fn check_health(c: &mut Checker<'_>, r: raw::RawHealth) -> Option<Health> {
    let path = match &r.path {
        None => Some("/health".to_owned()),
        Some(v) => c.string(
            v,
            "health.path",
            is_url_path,
            "a URL path starting with `/` (no spaces or quotes)",
        ),
    };
    let expect_json = match &r.expect_json {
        None => Some(None),
        Some(v) => match serde_json::to_value(&v.value) {
            Ok(serde_json::Value::Object(map)) if !map.is_empty() => Some(Some(map)),
            _ => {
                c.at(
                    v,
                    "`health.expect_json` must be a non-empty table of fields to match",
                    Some("write it as `expect_json = { status = \"healthy\" }`".into()),
                );
                None
            }
        },
    };
    let timeout = c.duration(&r.timeout, "health.timeout", Duration::from_secs(30));
    Some(Health {
        path: path?,
        expect_json: expect_json?,
        timeout,
    })
}

fn check_env(c: &mut Checker<'_>, r: raw::RawEnv) -> Option<Env> {
    let mut ok = true;
    let mut clear = BTreeMap::new();
    for (k, v) in r.clear.iter().flatten() {
        if !is_env_name(k) || k.starts_with("SHIPIT_") {
            c.at(
                v,
                format!("environment variable name `{k}` is not valid"),
                Some("use letters, digits and `_`, not starting with a digit or `SHIPIT_`".into()),
            );
            ok = false;
        } else if v.value.contains(['\n', '\r', '\0']) {
            c.at(v, format!("the value of `{k}` contains a newline"), Some("environment values are passed to the container one per line; remove the line break".into()));
            ok = false;
        } else {
            clear.insert(k.clone(), v.value.clone());
        }
    }
    let mut secret = Vec::new();
    for v in r.secret.iter().flat_map(|l| l.value.iter()) {
        if !is_env_name(&v.value) || v.value.starts_with("SHIPIT_") {
            c.at(
                v,
                format!("secret name {:?} is not a valid variable name", v.value),
                Some("use letters, digits and `_`, not starting with a digit or `SHIPIT_`".into()),
            );
            ok = false;
        } else if clear.contains_key(&v.value) {
            c.at(
                v,
                format!("`{}` is both in `env.clear` and in `env.secret`", v.value),
                Some("keep it in one of the two".into()),
            );
            ok = false;
        } else if secret.contains(&v.value) {
            c.at(v, format!("secret `{}` is listed twice", v.value), None);
            ok = false;
        } else {
            secret.push(v.value.clone());
        }
    }
    ok.then_some(Env { clear, secret })
}

fn check_ssh(c: &mut Checker<'_>, r: raw::RawSsh) -> Option<Ssh> {
    let identity = match &r.identity {
        None => Some(None),
        Some(v) => c
            .string(
                v,
                "ssh.identity",
                |s| !s.is_empty() && !s.contains('\n'),
                "a path",
            )
            .map(|s| Some(expand_home(&s))),
    };
    let known_hosts = match &r.known_hosts {
        None => Some(KnownHostsPolicy::Strict),
        Some(v) => match v.value.as_str() {
            "strict" => Some(KnownHostsPolicy::Strict),
            "accept-new" => Some(KnownHostsPolicy::AcceptNew),
            other => {
                let hint = crate::suggest::closest(other, ["strict", "accept-new"].into_iter());
                c.at(v, format!("`ssh.known_hosts` = {other:?} is not a policy"), Some(match hint {
                    Some(h) => format!("did you mean {h:?}? The policies are \"strict\" (the default) and \"accept-new\""),
                    None => "the policies are \"strict\" (the default) and \"accept-new\"".into(),
                }));
                None
            }
        },
    };
    let known_hosts_file = match &r.known_hosts_file {
        None => Some(None),
        Some(v) => c
            .string(
                v,
                "ssh.known_hosts_file",
                |s| !s.is_empty() && !s.contains('\n'),
                "a path",
            )
            .map(|s| Some(expand_home(&s))),
    };
    let connect_timeout = c.duration(
        &r.connect_timeout,
        "ssh.connect_timeout",
        Duration::from_secs(10),
    );
    let max_parallel = c.count(&r.max_parallel, "ssh.max_parallel", 1..=256, 10);
    // Below sshd's `MaxStartups` (10:30:100): more unauthenticated connections at once to one
    // sshd (a bastion's) are refused at random.
    let max_starts = c.count(&r.max_starts, "ssh.max_starts", 1..=100, 10);
    let persist = c.duration_from(
        &r.persist,
        "ssh.persist",
        Duration::from_secs(60),
        Duration::ZERO,
    );
    let bastion = match &r.bastion {
        None => Some(None),
        Some(v) => match parse_host(&v.value) {
            Ok(spec) => Some(Some(spec)),
            Err(message) => {
                c.at(
                    v,
                    format!("`ssh.bastion` = {:?} is not valid: {message}", v.value),
                    Some("write it as `host`, `user@host` or `user@host:port`".into()),
                );
                None
            }
        },
    };
    let config_file = match &r.config_file {
        None => Some(None),
        Some(v) => c
            .string(
                v,
                "ssh.config_file",
                |s| !s.is_empty() && !s.contains('\n'),
                "a path",
            )
            .map(|s| Some(expand_home(&s))),
    };
    Some(Ssh {
        identity: identity?,
        known_hosts: known_hosts?,
        known_hosts_file: known_hosts_file?,
        connect_timeout,
        max_parallel,
        max_starts,
        persist,
        bastion: bastion?,
        config_file: config_file?,
    })
}

fn check_tls(c: &mut Checker<'_>, r: raw::RawTls) -> Option<Option<Tls>> {
    if let Some(acme) = r.acme {
        if let Some(v) = r.certificate.as_ref().or(r.certificate_key.as_ref()) {
            c.at(
                v,
                "`tls` has both certificate files and `acme`",
                Some("keep `acme` for shipit to obtain and renew the certificate, or the two files for your own".into()),
            );
            return None;
        }
        return check_acme(c, acme).map(|a| Some(Tls::Acme(a)));
    }
    match (&r.certificate, &r.certificate_key) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => {
            let rule = "an absolute path without spaces, quotes, `;`, `{`, `}` or `$`";
            let cert = c.string(cert, "tls.certificate", is_safe_abs_path, rule);
            let key = c.string(key, "tls.certificate_key", is_safe_abs_path, rule);
            Some(Some(Tls::Files {
                certificate: cert?,
                certificate_key: key?,
            }))
        }
        (Some(v), None) | (None, Some(v)) => {
            c.at(
                v,
                "`tls` needs both `certificate` and `certificate_key`",
                Some("set both paths, or neither to serve plain HTTP (or `acme = { email = \"...\" }` for shipit to obtain one)".into()),
            );
            None
        }
    }
}

fn check_acme(c: &mut Checker<'_>, r: raw::RawAcme) -> Option<super::Acme> {
    let email = c
        .required(
            &r.email,
            "tls.acme.email",
            "acme = { email = \"ops@example.com\" }",
        )
        .and_then(|v| {
            c.string(
                v,
                "tls.acme.email",
                is_email,
                "an email address (the CA writes to it about expiring certificates)",
            )
        });
    let directory = match &r.directory {
        None => Some(super::LETS_ENCRYPT.to_owned()),
        Some(v) => c.string(
            v,
            "tls.acme.directory",
            |s| s.starts_with("https://") && is_http_url(s),
            "an https:// URL of an ACME directory",
        ),
    };
    let renew_before = c.duration_from(
        &r.renew_before,
        "tls.acme.renew_before",
        Duration::from_secs(30 * 86_400),
        Duration::from_secs(86_400),
    );
    Some(super::Acme {
        email: email?,
        directory: directory?,
        renew_before,
    })
}

fn check_nginx(c: &mut Checker<'_>, r: raw::RawNginx) -> Option<Nginx> {
    let csp = match &r.csp {
        None => Some(None),
        Some(v) => c
            .string(
                v,
                "nginx.csp",
                is_header_value,
                "a header value (no double quotes, `\\`, `$` or line breaks)",
            )
            .map(Some),
    };
    let rate_limit = match r.rate_limit {
        None => Some(None),
        Some(rl) => check_rate_limit(c, rl).map(Some),
    };
    let mut trusted_proxies = Vec::new();
    let mut proxies_ok = true;
    for v in r.trusted_proxies.iter().flat_map(|l| l.value.iter()) {
        match c.string(
            v,
            "nginx.trusted_proxies",
            is_address_or_range,
            "an IP address or CIDR range, such as \"10.0.0.0/8\"",
        ) {
            Some(p) => trusted_proxies.push(p),
            None => proxies_ok = false,
        }
    }
    Some(Nginx {
        csp: csp?,
        csp_enforce: r.csp_enforce.is_some_and(|v| v.value),
        rate_limit: rate_limit?,
        trusted_proxies: proxies_ok.then_some(trusted_proxies)?,
    })
}

fn check_rate_limit(c: &mut Checker<'_>, r: raw::RawRateLimit) -> Option<RateLimit> {
    let rate = c
        .required(
            &r.rate,
            "nginx.rate_limit.rate",
            "rate_limit = { rate = \"10r/s\", burst = 20 }",
        )
        .and_then(|v| match parse_rate(&v.value) {
            Some(per_second) => Some((v.value.clone(), per_second)),
            None => {
                c.at(
                    v,
                    format!("`nginx.rate_limit.rate` = {:?} is not a rate", v.value),
                    Some(
                        "write requests per second or per minute, such as \"10r/s\" or \"300r/m\""
                            .into(),
                    ),
                );
                None
            }
        });
    let burst = c.count(&r.burst, "nginx.rate_limit.burst", 0..=100_000, 20);
    let (rate, per_second) = rate?;
    Some(RateLimit {
        rate,
        burst: u32::try_from(burst).unwrap_or(20),
        retry_after: retry_after(per_second),
    })
}

/// `10r/s` or `300r/m` as requests per second.
fn parse_rate(s: &str) -> Option<f64> {
    let (n, unit) = s.split_once("r/")?;
    let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
    match unit {
        "s" => Some(f64::from(n)),
        "m" => Some(f64::from(n) / 60.0),
        _ => None,
    }
}

/// Whole seconds until the limit lets one more request through (at least 1).
fn retry_after(per_second: f64) -> u64 {
    // At most 60 (one request a minute is the slowest rate): the cast cannot overflow.
    (1.0 / per_second).ceil().max(1.0) as u64
}

/// Rewrite toml's parse errors into ours, with "did you mean" for unknown keys.
fn toml_error(sources: &Sources<'_>, file: FileId, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|s| sources.position(file, s.start));
    let message = e.message().trim_end();
    let (message, help) = match unknown_field(message) {
        Some((key, expected)) => {
            let help = match crate::suggest::closest(&key, expected.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if expected.is_empty() => "this table takes no keys".to_owned(),
                None => format!(
                    "the keys here are {}",
                    expected
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            (format!("unknown key `{key}`"), Some(help))
        }
        // serde's type names, as a user would say them.
        None => (
            message
                .replace("expected i64", "expected a whole number")
                .replace("expected u64", "expected a whole number")
                .replace("expected f64", "expected a number")
                .replace("expected a sequence", "expected a list")
                .replace("expected a map", "expected a table"),
            None,
        ),
    };
    ConfigError {
        file: sources.name(file).to_owned(),
        position,
        message,
        help,
    }
}

/// Read serde's `unknown field `x`, expected one of `a`, `b`` wording.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((key.to_owned(), expected))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// An environment or app name: lowercase letter first, then lowercase letters, digits, `-`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
        && s.len() <= 40
}

fn is_app_name(s: &str) -> bool {
    is_name(s) && !s.ends_with('-')
}

fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 32
}

/// A host name or address (`is_domain`), or an alias of `~/.ssh/config` as people write them
/// (`web_1`, `prod-web1`): letters, digits, `.`, `-` and `_`, not starting with `-`.
fn is_host_or_alias(s: &str) -> bool {
    is_domain(s)
        || (!s.is_empty()
            && s.len() <= 253
            && !s.starts_with(['-', '.'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_registry_server(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => is_domain(host) && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => is_domain(s),
    }
}

fn is_image_name(s: &str) -> bool {
    let mut parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        if !is_registry_server(parts[0]) {
            return false;
        }
        parts.remove(0);
    }
    !parts.is_empty()
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
                && p.starts_with(|c: char| c.is_ascii_alphanumeric())
                && p.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

/// `os/architecture[/variant]`, each part lowercase letters and digits.
fn is_platform(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn is_relative_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains('\0')
        && std::path::Path::new(s)
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir))
}

fn is_safe_abs_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "'\";{}$#\\`".contains(c))
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !user
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
                && is_domain(domain)
                && domain.contains('.')
        }
        None => false,
    }
}

/// A value nginx's `add_header` takes in double quotes, unchanged: no quote, backslash,
/// variable or line break.
fn is_header_value(s: &str) -> bool {
    !s.trim().is_empty() && !s.chars().any(|c| c.is_control() || "\"\\$".contains(c))
}

fn is_address_or_range(s: &str) -> bool {
    let (addr, bits) = match s.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (s, None),
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|b| b <= max))
}

/// `HOST:CONTAINER[:ro|:rw]`, both absolute paths nginx and systemd take as they are.
fn is_volume(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [host, container] => is_safe_abs_path(host) && is_safe_abs_path(container),
        [host, container, mode] => {
            is_safe_abs_path(host) && is_safe_abs_path(container) && matches!(*mode, "ro" | "rw")
        }
        _ => false,
    }
}

/// A plausible systemd calendar expression: what systemd itself accepts is checked on the
/// hosts (`systemd-analyze calendar`) when the timer is provisioned.
fn is_calendar(s: &str) -> bool {
    !s.trim().is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " *-:/.,~_".contains(c))
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > 8
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_url_path(s: &str) -> bool {
    s.starts_with('/')
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"'\"\\<>`{}".contains(c))
}

pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_memory_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    s.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits != "0"
}

fn is_cpu_quota(s: &str) -> bool {
    s.strip_suffix('%').is_some_and(|d| {
        !d.is_empty()
            && d.chars().all(|c| c.is_ascii_digit())
            && d.parse::<u32>().is_ok_and(|n| (1..=100_000).contains(&n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"app = "hello"
image = "registry.test:5000/acme/hello"
version = "1.4.2"
[registry]
server = "registry.test:5000"
username = "deploy"
[container]
port = 3000
[health]
expect_json = { status = "healthy" }
[env]
clear = { RUST_LOG = "info" }
secret = ["DATABASE_URL"]
"#;

    const ENV: &str = r#"domain = "hello.example.com"
hosts = ["deploy@203.0.113.10", "deploy@203.0.113.11:2222"]
"#;

    fn check(base: &str, env: &str) -> Result<Config, ConfigErrors> {
        let sources = Sources {
            base_name: "shipit.toml".into(),
            base_text: base,
            env_name: "environments/production.toml".into(),
            env_text: env,
        };
        validate(&sources, "production")
    }

    fn errors(base: &str, env: &str) -> Vec<String> {
        check(base, env)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_config_gets_defaults() {
        let c = check(BASE, ENV).unwrap();
        assert_eq!(c.app, "hello");
        assert_eq!(c.version, semver::Version::new(1, 4, 2));
        assert_eq!(c.hosts[1].to_string(), "deploy@203.0.113.11:2222");
        // What a host leaves out, ssh's configuration decides.
        assert_eq!(c.hosts[0].port, None);
        assert_eq!(
            parse_host("web_1").unwrap(),
            HostSpec {
                user: None,
                host: "web_1".into(),
                port: None
            },
            "an ssh_config alias, `_` and all"
        );
        assert_eq!(
            parse_host("deploy@web_1").unwrap().to_string(),
            "deploy@web_1"
        );
        assert!(parse_host("-oProxyCommand=x").is_err());
        assert_eq!(c.dockerfile, "Dockerfile.production");
        assert_eq!(c.ports.blue, 3001);
        assert_eq!(c.health.timeout, Duration::from_secs(30));
        assert_eq!(c.ssh.known_hosts, KnownHostsPolicy::Strict);
        assert_eq!(c.registry.unwrap().password_env, "SHIPIT_REGISTRY_PASSWORD");
        assert_eq!(c.health.expect_json.unwrap()["status"], "healthy");
    }

    #[test]
    fn environment_overrides_any_base_key() {
        let c = check(
            BASE,
            &format!("{ENV}version = \"2.0.0\"\n[container]\nport = 8080\n"),
        )
        .unwrap();
        assert_eq!(c.version.major, 2);
        assert_eq!(c.container.port, 8080);
        assert_eq!(c.container.memory_max, "1G");
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let base = BASE.replace("port = 3000", "prot = 3000");
        assert_eq!(
            errors(&base, ENV),
            ["shipit.toml:8:1: unknown key `prot`\n  help: did you mean `port`?"]
        );
    }

    #[test]
    fn unknown_key_without_a_close_match_lists_the_keys() {
        let env = format!("{ENV}[ssh]\nbanana = 1\n");
        assert_eq!(
            errors(BASE, &env),
            [
                "environments/production.toml:4:1: unknown key `banana`\n  help: the keys here are `identity`, `known_hosts`, `known_hosts_file`, `connect_timeout`, `max_parallel`, `max_starts`, `persist`, `bastion`, `config_file`"
            ]
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_position() {
        let base = BASE
            .replace("app = \"hello\"", "app = \"Hello World\"")
            .replace("version = \"1.4.2\"", "version = \"1.4\"")
            .replace("port = 3000", "port = 0");
        let env = "domain = \"hello.example.com\"\nhosts = [\"a@h1\", \"b@h1\"]\n";
        assert_eq!(
            errors(&base, env),
            [
                "shipit.toml:1:7: `app` = \"Hello World\" is not a valid app name (lowercase letter, then lowercase letters, digits or `-`, at most 40)",
                "shipit.toml:3:11: `version` = \"1.4\" is not a semantic version: unexpected end of input while parsing minor version number\n  help: write it as MAJOR.MINOR.PATCH, such as \"1.4.2\"",
                "environments/production.toml:2:18: host `b@h1` is listed twice\n  help: remove the duplicate from `hosts`",
                "shipit.toml:8:8: `container.port` must be a port between 1 and 65535, got 0",
            ]
        );
    }

    #[test]
    fn missing_required_keys_say_where_to_add_them() {
        assert_eq!(
            errors(BASE, "hosts = [\"h\"]\n"),
            [
                "environments/production.toml: missing key `domain`\n  help: add `domain = \"app.example.com\"` to shipit.toml or to environments/production.toml"
            ]
        );
    }

    #[test]
    fn empty_hosts_and_bad_hosts() {
        assert_eq!(
            errors(BASE, "domain = \"a.b\"\nhosts = []\n"),
            [
                "environments/production.toml:2:9: `hosts` is empty\n  help: list at least one host, such as `hosts = [\"deploy@203.0.113.10\"]`"
            ]
        );
        assert_eq!(
            errors(
                BASE,
                "domain = \"a.b\"\nhosts = [\"h;rm -rf /\", \"h:99999\"]\n"
            ),
            [
                "environments/production.toml:2:10: host \"h;rm -rf /\" is not valid: `h;rm -rf /` is not a host name, address or ssh_config alias\n  help: write it as `host`, `user@host` or `user@host:port` (what it leaves out, `~/.ssh/config` decides)",
                "environments/production.toml:2:24: host \"h:99999\" is not valid: port `99999` is not between 1 and 65535\n  help: write it as `host`, `user@host` or `user@host:port` (what it leaves out, `~/.ssh/config` decides)",
            ]
        );
    }

    #[test]
    fn toml_syntax_errors_keep_their_position() {
        let e = errors(BASE, "domain = \"a.b\nhosts = []\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("environments/production.toml:1:"), "{e:?}");
    }

    #[test]
    fn wrong_types_are_reported() {
        let e = errors(BASE, "domain = 5\nhosts = [\"h\"]\n");
        assert_eq!(
            e,
            ["environments/production.toml:1:10: invalid type: integer `5`, expected a string"]
        );
    }

    #[test]
    fn a_platform_is_os_and_architecture() {
        for ok in ["linux/amd64", "linux/arm64/v8", "linux/386"] {
            assert!(is_platform(ok), "{ok}");
        }
        for bad in [
            "amd64",
            "linux/",
            "Linux/AMD64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(!is_platform(bad), "{bad}");
        }
        let c = check(&format!("platform = \"linux/arm64\"\n{BASE}"), ENV).unwrap();
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(check(BASE, ENV).unwrap().platform, None);
    }

    #[test]
    fn hostile_values_are_refused() {
        let env = "domain = \"x.com; include /etc/passwd\"\nhosts = [\"h\"]\n[env.clear]\nA = \"line\\nbreak\"\n[tls]\ncertificate = \"/a b\"\ncertificate_key = \"/k\"\n";
        assert_eq!(
            errors(BASE, env),
            [
                "environments/production.toml:1:10: `domain` = \"x.com; include /etc/passwd\" is not a domain name (letters, digits, `-` and `.`)",
                "environments/production.toml:4:5: the value of `A` contains a newline\n  help: environment values are passed to the container one per line; remove the line break",
                "environments/production.toml:6:15: `tls.certificate` = \"/a b\" is not an absolute path without spaces, quotes, `;`, `{`, `}` or `$`",
            ]
        );
    }

    #[test]
    fn acme_and_nginx_settings_get_defaults_and_bad_ones_are_named() {
        let c = check(
            BASE,
            &format!("{ENV}[tls]\nacme = {{ email = \"ops@example.com\" }}\n[nginx]\nrate_limit = {{ rate = \"300r/m\" }}\n"),
        )
        .unwrap();
        let acme = c.acme().unwrap();
        assert_eq!(acme.directory, crate::config::LETS_ENCRYPT);
        assert_eq!(acme.renew_before, Duration::from_secs(30 * 86_400));
        assert_eq!(
            c.tls_files().unwrap(),
            (
                "/etc/shipit/hello/production/tls/fullchain.pem".to_owned(),
                "/etc/shipit/hello/production/tls/privkey.pem".to_owned()
            )
        );
        assert_eq!(
            c.nginx.rate_limit,
            Some(RateLimit {
                rate: "300r/m".into(),
                burst: 20,
                retry_after: 1
            })
        );
        assert_eq!(c.nginx.csp, None);
        assert!(!c.nginx.csp_enforce);
        assert_eq!(retry_after(parse_rate("1r/m").unwrap()), 60);
        assert_eq!(retry_after(parse_rate("7r/m").unwrap()), 9);
        assert_eq!(retry_after(parse_rate("100r/s").unwrap()), 1);

        let env = format!(
            "{ENV}[tls]\ncertificate = \"/c\"\nacme = {{ email = \"ops\", directory = \"http://ca.test/dir\", renew_before = \"2h\" }}\n"
        );
        assert_eq!(
            errors(BASE, &env),
            [
                "environments/production.toml:4:15: `tls` has both certificate files and `acme`\n  help: keep `acme` for shipit to obtain and renew the certificate, or the two files for your own"
            ]
        );
        let env = format!(
            "{ENV}[tls]\nacme = {{ email = \"ops\", directory = \"http://ca.test/dir\", renew_before = \"2h\" }}\n[nginx]\ncsp = \"script-src $x\"\nrate_limit = {{ rate = \"10r/h\", burst = -1 }}\ntrusted_proxies = [\"10.0.0.0/33\", \"lb.example.com\"]\n"
        );
        assert_eq!(
            errors(BASE, &env),
            [
                "environments/production.toml:4:18: `tls.acme.email` = \"ops\" is not an email address (the CA writes to it about expiring certificates)",
                "environments/production.toml:4:37: `tls.acme.directory` = \"http://ca.test/dir\" is not an https:// URL of an ACME directory",
                "environments/production.toml:4:74: `tls.acme.renew_before` = \"2h\" is shorter than 1day\n  help: write 1day or more",
                "environments/production.toml:6:7: `nginx.csp` = \"script-src $x\" is not a header value (no double quotes, `\\`, `$` or line breaks)",
                "environments/production.toml:7:23: `nginx.rate_limit.rate` = \"10r/h\" is not a rate\n  help: write requests per second or per minute, such as \"10r/s\" or \"300r/m\"",
                "environments/production.toml:7:40: `nginx.rate_limit.burst` must be between 0 and 100000, got -1",
                "environments/production.toml:8:20: `nginx.trusted_proxies` = \"10.0.0.0/33\" is not an IP address or CIDR range, such as \"10.0.0.0/8\"",
                "environments/production.toml:8:35: `nginx.trusted_proxies` = \"lb.example.com\" is not an IP address or CIDR range, such as \"10.0.0.0/8\"",
            ]
        );
        let env = format!("{ENV}[tls]\nacme = {{ directory = \"https://ca.test/dir\" }}\n");
        assert_eq!(
            errors(BASE, &env),
            [
                "environments/production.toml: missing key `tls.acme.email`\n  help: add `acme = { email = \"ops@example.com\" }` to shipit.toml or to environments/production.toml"
            ]
        );
    }

    #[test]
    fn images_go_through_the_registry_when_there_is_one_else_over_ssh() {
        let c = check(BASE, ENV).unwrap();
        assert_eq!(c.deploy.images, Images::Registry);
        assert!(c.registry.is_some());
        // One environment sends over SSH: the registry is not used there.
        let c = check(BASE, &format!("{ENV}[deploy]\nimages = \"ssh\"\n")).unwrap();
        assert_eq!(c.deploy.images, Images::Ssh);
        assert!(c.registry.is_none());
        let no_registry = BASE.replace(
            "[registry]\nserver = \"registry.test:5000\"\nusername = \"deploy\"\n",
            "",
        );
        let c = check(&no_registry, ENV).unwrap();
        assert_eq!(c.deploy.images, Images::Ssh);
        assert_eq!(
            errors(
                &no_registry,
                &format!("{ENV}[deploy]\nimages = \"registry\"\n")
            ),
            [
                "environments/production.toml:4:10: `deploy.images` = \"registry\" needs a `[registry]`\n  help: add `[registry]` with `server` and `username`, or send images over SSH with `images = \"ssh\"`"
            ]
        );
        assert_eq!(
            errors(BASE, &format!("{ENV}[deploy]\nimages = \"scp\"\n")),
            [
                "environments/production.toml:4:10: `deploy.images` = \"scp\" is not \"registry\" or \"ssh\""
            ]
        );
    }

    #[test]
    fn known_hosts_policy_suggests() {
        let e = errors(BASE, &format!("{ENV}[ssh]\nknown_hosts = \"strcit\"\n"));
        assert_eq!(
            e,
            [
                "environments/production.toml:4:15: `ssh.known_hosts` = \"strcit\" is not a policy\n  help: did you mean \"strict\"? The policies are \"strict\" (the default) and \"accept-new\""
            ]
        );
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(parse_host("h").unwrap().to_string(), "h");
        assert_eq!(parse_host("root@h:22").unwrap().to_string(), "root@h:22");
        assert_eq!(
            parse_host("u@[::1]:2222").unwrap().to_string(),
            "u@[::1]:2222"
        );
        assert!(parse_host("u@").is_err());
        assert!(parse_host("bad user@h").is_err());
        assert!(parse_host("u@h:0").is_err());
    }

    #[test]
    fn accessories_get_defaults_and_the_app_its_url_by_name() {
        let base = BASE.replace("secret = [\"DATABASE_URL\"]", "secret = [\"API_KEY\"]")
            + "[accessories.db]\nimage = \"r.test/postgres:15\"\nport = 5432\nbind = \"10.0.0.5\"\nurl = \"postgres://app:{POSTGRES_PASSWORD}@{host}:{port}/{POSTGRES_DB}\"\nurl_env = \"DATABASE_URL\"\nenv.clear = { POSTGRES_DB = \"app\" }\nenv.secret = [\"POSTGRES_PASSWORD\"]\n[accessories.cache]\nimage = \"r.test/redis:7\"\nport = 6379\nhost = \"deploy@203.0.113.11:2222\"\n";
        let c = check(&base, ENV).unwrap();
        let db = &c.accessories[1];
        assert_eq!(db.name, "db");
        assert_eq!(db.host, c.hosts[0]);
        assert_eq!(db.published(), "10.0.0.5:5432");
        assert_eq!(
            (db.memory_max.as_str(), db.cpu_quota.as_str()),
            ("1G", "100%")
        );
        assert_eq!(db.health_timeout, Duration::from_secs(60));
        let (var, url) = db
            .url_value(|n| (n == "POSTGRES_PASSWORD").then(|| "p@ss w/rd".to_owned()))
            .unwrap()
            .unwrap();
        assert_eq!(var, "DATABASE_URL");
        assert_eq!(url, "postgres://app:p%40ss%20w%2Frd@db:5432/app");
        assert_eq!(
            db.url_value(|_| None).unwrap().unwrap_err(),
            ["POSTGRES_PASSWORD"]
        );
        // By name on its own host (the network), by its address elsewhere.
        assert_eq!(
            db.link_args("hello_production", &c.hosts[0]),
            ["--network", "shipit_hello_production"]
        );
        assert_eq!(
            db.link_args("hello_production", &c.hosts[1]),
            ["--add-host", "db:10.0.0.5"]
        );
        // Without `url`, the loopback default is fine: nothing on another host needs it.
        let cache = &c.accessories[0];
        assert_eq!(cache.published(), "127.0.0.1:6379");
        assert!(cache.url_value(|_| None).is_none());
        assert!(cache.link_args("k", &c.hosts[0]).is_empty());
    }

    #[test]
    fn accessories_that_cannot_work_are_refused_naming_the_key() {
        let with = |table: &str| format!("{BASE}[accessories.db]\n{table}\n");
        assert_eq!(
            errors(&with("port = 5432"), ENV),
            [
                "shipit.toml:14:1: `accessories.db` has no `image`\n  help: add `image = \"registry.example.com/postgres:15\"`"
            ]
        );
        let e = errors(
            &with("image = \"p\"\nport = 5432\nurl = \"postgres://{host}:{port}/app\""),
            ENV,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("published on deploy@203.0.113.10's loopback (127.0.0.1), which the app on deploy@203.0.113.11:2222 cannot reach"),
            "{e:?}"
        );
        let e = errors(&with("image = \"p\"\nport = 5432\nbind = \"0.0.0.0\""), ENV);
        assert!(e[0].contains("every address of the host"), "{e:?}");
        let e = errors(
            &with(
                "image = \"p\"\nport = 5432\nbind = \"10.0.0.5\"\nurl = \"x://{PASSWORD}@{host}\"",
            ),
            ENV,
        );
        assert!(e[0].contains("`{PASSWORD}` is neither"), "{e:?}");
        let e = errors(
            &with(
                "image = \"p\"\nport = 5432\nbind = \"10.0.0.5\"\nurl = \"x://{host}\"\nurl_env = \"DATABASE_URL\"",
            ),
            ENV,
        );
        assert!(
            e[0].contains("gives the app `DATABASE_URL`, which `env` sets too"),
            "{e:?}"
        );
        let e = errors(
            &format!(
                "{BASE}[processes.db]\ncommand = [\"w\"]\n[accessories.db]\nimage = \"p\"\nport = 1\n"
            ),
            ENV,
        );
        assert!(e[0].contains("a process or job has that name"), "{e:?}");
        let e = errors(&with("image = \"p\"\nport = 3001"), ENV);
        assert!(
            e[0].contains("would be published on 127.0.0.1:3001 of deploy@203.0.113.10, where the app's colour port 3001 is"),
            "{e:?}"
        );
        let e = errors(
            &format!(
                "{BASE}[accessories.a]\nimage = \"p\"\nport = 6379\n[accessories.b]\nimage = \"q\"\nport = 6379\n"
            ),
            ENV,
        );
        assert!(e[0].contains("where accessory `a` is"), "{e:?}");
    }

    #[test]
    fn secrets_and_clear_must_not_overlap() {
        let base = BASE.replace("secret = [\"DATABASE_URL\"]", "secret = [\"RUST_LOG\"]");
        assert_eq!(
            errors(&base, ENV),
            [
                "shipit.toml:13:11: `RUST_LOG` is both in `env.clear` and in `env.secret`\n  help: keep it in one of the two"
            ]
        );
    }
}
