//! What provisioning must do on one host, decided from what the host has. Pure.
//!
//! Owns: reading the host's answer to `OBSERVE`, comparing it with the rendered files, and the
//! resulting [`HostPlan`]: files to write, validators to run, services to reload, whether to log
//! in to the registry. Must not: do I/O.

use base64::Engine;
use serde::Serialize;

use crate::layout::{self, Site};
use crate::model::Colour;
use crate::remote::scripts::{Candidate, Validator};
use crate::templates::{FileKind, ManagedFile};

/// A file as it is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub mode: String,
    pub owner: String,
    pub content: Vec<u8>,
}

/// A host's answer to the observe command, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub files: Vec<Option<RemoteFile>>,
    pub dirs: Vec<bool>,
    pub docker_config: Option<RemoteFile>,
}

/// Parse the framed output of [`crate::remote::scripts::Observe`] for `files` then `dirs`.
pub fn parse_observed(stdout: &[u8], files: usize, dirs: usize) -> Result<Observed, String> {
    let mut rest = stdout;
    let next_file = |rest: &mut &[u8]| -> Result<Option<RemoteFile>, String> {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("truncated header")?;
        let header = std::str::from_utf8(&rest[..nl]).map_err(|_| "header is not UTF-8")?;
        *rest = &rest[nl + 1..];
        if header == "N" {
            return Ok(None);
        }
        let mut words = header.split(' ');
        let (Some("F"), Some(mode), Some(owner), Some(size), None) = (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) else {
            return Err(format!("unexpected header `{header}`"));
        };
        let size: usize = size
            .parse()
            .map_err(|_| format!("bad size in `{header}`"))?;
        if rest.len() < size {
            return Err(format!("expected {size} bytes, got {}", rest.len()));
        }
        let content = rest[..size].to_vec();
        *rest = &rest[size..];
        Ok(Some(RemoteFile {
            mode: mode.to_owned(),
            owner: owner.to_owned(),
            content,
        }))
    };
    let mut observed_files = Vec::with_capacity(files);
    for _ in 0..files {
        observed_files.push(next_file(&mut rest)?);
    }
    let mut observed_dirs = Vec::with_capacity(dirs);
    for _ in 0..dirs {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("truncated directory line")?;
        observed_dirs.push(match &rest[..nl] {
            b"D" => true,
            b"N" => false,
            other => {
                return Err(format!(
                    "unexpected directory line `{}`",
                    String::from_utf8_lossy(other)
                ));
            }
        });
        rest = &rest[nl + 1..];
    }
    let docker_config = next_file(&mut rest)?;
    if !rest.is_empty() {
        return Err(format!("{} unexpected trailing bytes", rest.len()));
    }
    Ok(Observed {
        files: observed_files,
        dirs: observed_dirs,
        docker_config,
    })
}

/// Why a file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Created,
    Content,
    /// Same content, but the mode or owner drifted.
    Permissions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub file: ManagedFile,
    pub before: Option<String>,
    pub reason: Reason,
}

/// The login provisioning wants on each host.
#[derive(Clone, Debug)]
pub struct Login<'a> {
    pub server: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPlan {
    /// Directories to create, as `(mode, path)`.
    pub mkdirs: Vec<(&'static str, String)>,
    pub changes: Vec<Change>,
    pub login: bool,
    /// Moving this environment off the earlier layout, when the host has it there.
    pub legacy: Option<LegacyMove>,
    /// Process and job units the configuration no longer has (paths): stopped and removed.
    pub retire: Vec<String>,
    /// Job timers to enable and start (unit names): new ones, or ones found stopped.
    pub enable_timers: Vec<String>,
}

/// A site's process and job units on a host, from [`crate::remote::scripts::SiteUnits`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteUnits {
    pub files: Vec<String>,
    /// `(unit, enabled, active)` as `systemctl is-enabled` and `is-active` say.
    pub timers: Vec<(String, String, String)>,
}

impl SiteUnits {
    pub fn parse(text: &str) -> Result<SiteUnits, String> {
        let mut u = SiteUnits::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            match line.split_once(' ') {
                Some(("file", path)) => u.files.push(path.to_owned()),
                Some(("timer", rest)) => {
                    let mut w = rest.split(' ');
                    let name = w.next().unwrap_or_default().to_owned();
                    let enabled = w.next().unwrap_or_default().to_owned();
                    let active = w.next().unwrap_or_default().to_owned();
                    u.timers.push((name, enabled, active));
                }
                _ => return Err(format!("unexpected line `{line}`")),
            }
        }
        Ok(u)
    }
}

/// The timers among the files a host should have (unit names).
pub fn timers(desired: &[ManagedFile]) -> Vec<String> {
    desired
        .iter()
        .filter(|f| f.path.ends_with(".timer"))
        .filter_map(|f| f.path.rsplit('/').next().map(str::to_owned))
        .collect()
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.mkdirs.is_empty()
            && self.changes.is_empty()
            && !self.login
            && self.legacy.as_ref().is_none_or(LegacyMove::is_empty)
            && self.retire.is_empty()
            && self.enable_timers.is_empty()
    }

    /// Files written once and owned by deploys afterwards; installed without a reload.
    pub fn created_once(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.file.create_only)
    }

    /// Files that go through validation and the all-or-nothing install.
    pub fn validated(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| !c.file.create_only)
    }

    fn touches(&self, kind: FileKind) -> bool {
        self.validated().any(|c| c.file.kind == kind)
    }

    pub fn reload_nginx(&self) -> bool {
        self.touches(FileKind::Nginx) || self.touches(FileKind::NginxHttp)
    }

    pub fn daemon_reload(&self) -> bool {
        self.touches(FileKind::Systemd)
    }

    /// The staged candidates to validate, each with its validator.
    pub fn validations(&self) -> Vec<Candidate> {
        self.validated()
            .filter_map(|c| {
                let validator = match c.file.kind {
                    FileKind::Nginx | FileKind::NginxHttp => Validator::Nginx,
                    FileKind::Systemd => Validator::Systemd,
                    FileKind::Logrotate => Validator::Logrotate,
                    FileKind::Upstream
                    | FileKind::Preview
                    | FileKind::Certificate
                    | FileKind::Token
                    | FileKind::Private
                    | FileKind::Secret
                    | FileKind::Settings => return None,
                };
                Some(Candidate {
                    validator,
                    staged: layout::staged(&c.file.path),
                    target: c.file.path.clone(),
                })
            })
            .collect()
    }
}

/// Directories every host needs, `(mode, path)`.
pub fn directories(site: &crate::layout::Site, acme: bool) -> Vec<(&'static str, String)> {
    let mut dirs = vec![
        ("755", site.config_dir()),
        ("755", site.log_dir()),
        ("755", site.state_dir()),
    ];
    if acme {
        // nginx's workers read the challenge answers; only root reads the key.
        dirs.push(("755", site.acme_challenges()));
        dirs.push(("700", site.tls_dir()));
    }
    dirs
}

/// What a host holds of the app in the earlier layout, from [`crate::remote::scripts::ReadLegacy`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyState {
    pub upstream: Option<String>,
    /// `SHIPIT_ENVIRONMENT` of its colours' env files: the environment it belongs to.
    pub environment: Option<String>,
    /// Its nginx site's `server_name`.
    pub domain: Option<String>,
    /// Per colour (blue, green): `systemctl is-active` and `is-enabled`.
    pub units: Vec<(String, String)>,
    pub lock_held: bool,
    /// The new layout's upstream include exists already.
    pub moved: bool,
}

impl LegacyState {
    pub fn parse(text: &str) -> Result<LegacyState, String> {
        let mut s = LegacyState::default();
        let value = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_owned());
        for line in text.lines() {
            let (key, v) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "upstream" => {
                    s.upstream = value(v)
                        .map(|b| {
                            base64::engine::general_purpose::STANDARD
                                .decode(b)
                                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                                .map_err(|e| format!("bad base64: {e}"))
                        })
                        .transpose()?;
                }
                "environment" => s.environment = value(v),
                "domain" => s.domain = value(v),
                "unit" => {
                    let (active, enabled) = v.split_once(' ').unwrap_or((v, ""));
                    s.units.push((active.to_owned(), enabled.to_owned()));
                }
                "lock" => s.lock_held = v == "held",
                "moved" => s.moved = v == "yes",
                _ => return Err(format!("unexpected line `{line}`")),
            }
        }
        if s.units.len() != 2 {
            return Err(format!("expected 2 unit lines, got {}", s.units.len()));
        }
        Ok(s)
    }

    /// Whether a unit of the earlier layout still runs, or would start at boot.
    fn in_use(&self) -> bool {
        self.units.iter().any(|(active, enabled)| {
            active == "active" || active == "activating" || enabled.starts_with("enabled")
        })
    }
}

/// Moving an environment off the earlier layout: its state is copied to the new paths, its
/// nginx site and logrotate rule are replaced by the new ones in the same install (the units
/// it started keep serving until deploys replace them), and what is left is removed once no
/// unit of it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyMove {
    /// The earlier upstream include's text, for the new one (the live copy keeps serving).
    pub upstream: Option<String>,
    /// `(from, to)`: state copied where the new layout has none yet.
    pub copies: Vec<(String, String)>,
    /// Removed in the same install as the new files.
    pub removals: Vec<String>,
    /// Removed after the install: nothing of the earlier layout runs any more.
    pub cleanup: Vec<String>,
}

impl LegacyMove {
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty() && self.removals.is_empty() && self.cleanup.is_empty()
    }
}

/// What to do about the earlier layout on a host, for `site` serving `domain`. `None` when the
/// host has none, or it belongs to another environment of the app.
pub fn legacy_move(
    site: &Site,
    domain: &str,
    legacy: &LegacyState,
) -> Result<Option<LegacyMove>, String> {
    let Some(upstream) = &legacy.upstream else {
        return Ok(None);
    };
    let ours = match &legacy.environment {
        Some(env) => *env == site.env,
        None => legacy.domain.as_deref() == Some(domain),
    };
    if !ours {
        return Ok(None);
    }
    if legacy.lock_held {
        return Err(format!(
            "the earlier layout's lock (`{}`) is held: a deploy by an earlier shipit may be running",
            site.legacy().lock_dir()
        ));
    }
    let old = site.legacy();
    let mut m = LegacyMove::default();
    if !legacy.moved {
        m.upstream = Some(upstream.clone());
        for colour in [Colour::Blue, Colour::Green] {
            m.copies.push((old.unit_env(colour), site.unit_env(colour)));
            m.copies.push((old.app_env(colour), site.app_env(colour)));
        }
        m.copies.push((old.history(), site.history()));
        m.removals = vec![old.nginx_site(), old.logrotate()];
    }
    if !legacy.in_use() {
        m.cleanup = vec![old.systemd_unit(), old.upstream_include(), old.history()];
        for colour in [Colour::Blue, Colour::Green] {
            m.cleanup.push(old.unit_env(colour));
            m.cleanup.push(old.app_env(colour));
        }
        m.cleanup.push(old.lock_dir());
        m.cleanup
            .push(format!("{}/maintenance.on", old.config_dir()));
        m.cleanup
            .push(format!("{}/maintenance.html", old.config_dir()));
    }
    Ok(Some(m))
}

/// Compare the desired files with what the host has.
pub fn plan_host(
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    observed: &Observed,
    login: Option<&Login<'_>>,
    legacy: Option<LegacyMove>,
    units: &SiteUnits,
) -> HostPlan {
    let mut changes = Vec::new();
    for (file, have) in desired.iter().zip(&observed.files) {
        // A moved host's upstream include starts as the earlier one: what serves goes on.
        let moved_upstream = legacy.as_ref().and_then(|m| m.upstream.as_ref());
        let file = &match (file.kind, moved_upstream) {
            (FileKind::Upstream, Some(text)) => ManagedFile {
                content: text.clone(),
                ..file.clone()
            },
            _ => file.clone(),
        };
        let reason = match have {
            None => Some(Reason::Created),
            Some(_) if file.create_only || file.kind == FileKind::NginxHttp => None,
            Some(have) if have.content != file.content.as_bytes() => Some(Reason::Content),
            Some(have) if have.mode != file.mode || have.owner != file.owner => {
                Some(Reason::Permissions)
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            changes.push(Change {
                file: file.clone(),
                before: have
                    .as_ref()
                    .map(|h| String::from_utf8_lossy(&h.content).into_owned()),
                reason,
            });
        }
    }
    let mkdirs = dirs
        .iter()
        .zip(&observed.dirs)
        .filter(|(_, exists)| !**exists)
        .map(|(d, _)| d.clone())
        .collect();
    let retire = units
        .files
        .iter()
        .filter(|f| !desired.iter().any(|d| d.path == **f))
        .cloned()
        .collect();
    let enable_timers = timers(desired)
        .into_iter()
        .filter(|t| {
            !units.timers.iter().any(|(name, enabled, active)| {
                name == t && enabled == "enabled" && active == "active"
            })
        })
        .collect();
    HostPlan {
        mkdirs,
        changes,
        login: login.is_some_and(|l| !logged_in(observed.docker_config.as_ref(), l)),
        legacy,
        retire,
        enable_timers,
    }
}

/// Whether the host's docker client config already holds exactly these credentials.
fn logged_in(config: Option<&RemoteFile>, login: &Login<'_>) -> bool {
    let Some(config) = config else { return false };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&config.content) else {
        return false;
    };
    let want = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", login.username, login.password));
    json.pointer(&format!(
        "/auths/{}/auth",
        login.server.replace('~', "~0").replace('/', "~1")
    ))
    .and_then(|v| v.as_str())
        == Some(want.as_str())
}

/// A unified diff of one change, for `--dry-run`.
pub fn diff(host: &str, change: &Change) -> String {
    if change.file.kind == FileKind::Token {
        return format!(
            "{host}:{}: would create the site's check token (mode {}), never shown\n",
            change.file.path, change.file.mode
        );
    }
    let hidden = match change.file.kind {
        FileKind::Secret => {
            Some("an accessory's environment (mode {mode}), never shown: it holds its secrets")
        }
        FileKind::Private => Some(
            "the certificate check's script (mode {mode}), never shown: it holds the webhook addresses",
        ),
        _ => None,
    };
    if let Some(what) = hidden {
        return format!(
            "{host}:{}: would {} {}\n",
            change.file.path,
            if change.before.is_some() {
                "change"
            } else {
                "create"
            },
            what.replace("{mode}", change.file.mode)
        );
    }
    if change.file.kind == FileKind::Certificate {
        return format!(
            "{host}:{}: would create a temporary self-signed certificate (mode {}), until `shipit tls renew` installs the CA's\n",
            change.file.path, change.file.mode
        );
    }
    let before = change.before.as_deref().unwrap_or("");
    let old_name = if change.before.is_some() {
        format!("{host}:{}", change.file.path)
    } else {
        "/dev/null".to_owned()
    };
    let text = similar::TextDiff::from_lines(before, change.file.content.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("{host}:{} (new)", change.file.path))
        .to_string();
    if text.is_empty() {
        format!(
            "{host}:{}: mode or owner set to {} {}\n",
            change.file.path, change.file.mode, change.file.owner
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, kind: FileKind, create_only: bool) -> ManagedFile {
        ManagedFile {
            path: path.into(),
            content: content.into(),
            mode: "644",
            owner: "root:root",
            kind,
            create_only,
            template: None,
            hosts: None,
        }
    }

    fn have(content: &str) -> Option<RemoteFile> {
        Some(RemoteFile {
            mode: "644".into(),
            owner: "root:root".into(),
            content: content.as_bytes().to_vec(),
        })
    }

    fn desired() -> Vec<ManagedFile> {
        vec![
            file(
                "/etc/shipit/a/upstream.conf",
                "up\n",
                FileKind::Upstream,
                true,
            ),
            file(
                "/etc/nginx/conf.d/shipit-a.conf",
                "site\n",
                FileKind::Nginx,
                false,
            ),
            file(
                "/etc/systemd/system/a@.service",
                "unit\n",
                FileKind::Systemd,
                false,
            ),
            file(
                "/etc/logrotate.d/shipit-a",
                "rot\n",
                FileKind::Logrotate,
                false,
            ),
        ]
    }

    #[test]
    fn parses_framed_output() {
        let out = b"F 644 root:root 3\nabcN\nF 600 a:b 0\nD\nN\nF 600 root:root 2\n{}";
        let o = parse_observed(out, 3, 2).unwrap();
        assert_eq!(o.files[0].as_ref().unwrap().content, b"abc");
        assert!(o.files[1].is_none());
        assert_eq!(o.files[2].as_ref().unwrap().owner, "a:b");
        assert_eq!(o.dirs, vec![true, false]);
        assert_eq!(o.docker_config.unwrap().content, b"{}");
        assert!(parse_observed(b"F 644 root:root 9\nabc", 1, 0).is_err());
        assert!(parse_observed(b"N\nN\nextra", 1, 0).is_err());
    }

    #[test]
    fn fresh_host_gets_everything_and_reloads() {
        let obs = Observed {
            files: vec![None; 4],
            dirs: vec![false],
            docker_config: None,
        };
        let dirs = vec![("755", "/etc/shipit/a".to_owned())];
        let p = plan_host(&desired(), &dirs, &obs, None, None, &SiteUnits::default());
        assert_eq!(p.changes.len(), 4);
        assert!(p.changes.iter().all(|c| c.reason == Reason::Created));
        assert_eq!(p.mkdirs, dirs);
        assert!(p.reload_nginx() && p.daemon_reload());
        assert_eq!(p.created_once().count(), 1);
        let validations: Vec<(Validator, String, String)> = p
            .validations()
            .into_iter()
            .map(|c| (c.validator, c.staged, c.target))
            .collect();
        let v = |k, a: &str, b: &str| (k, a.to_owned(), b.to_owned());
        assert_eq!(
            validations,
            [
                v(
                    Validator::Nginx,
                    "/etc/nginx/conf.d/.shipit-a.conf.shipit-new~",
                    "/etc/nginx/conf.d/shipit-a.conf"
                ),
                v(
                    Validator::Systemd,
                    "/etc/systemd/system/.a@.service.shipit-new~",
                    "/etc/systemd/system/a@.service"
                ),
                v(
                    Validator::Logrotate,
                    "/etc/logrotate.d/.shipit-a.shipit-new~",
                    "/etc/logrotate.d/shipit-a"
                ),
            ]
        );
    }

    #[test]
    fn converged_host_has_an_empty_plan() {
        let obs = Observed {
            files: vec![
                have("deployed by a deploy\n"),
                have("site\n"),
                have("unit\n"),
                have("rot\n"),
            ],
            dirs: vec![true],
            docker_config: None,
        };
        let p = plan_host(
            &desired(),
            &[("755", "/etc/shipit/a".into())],
            &obs,
            None,
            None,
            &SiteUnits::default(),
        );
        assert!(p.is_empty(), "{p:?}");
        assert!(!p.reload_nginx() && !p.daemon_reload());
    }

    #[test]
    fn only_what_changed_is_reloaded() {
        let obs = Observed {
            files: vec![
                have("up\n"),
                have("site\n"),
                have("old unit\n"),
                have("rot\n"),
            ],
            dirs: vec![],
            docker_config: None,
        };
        let p = plan_host(&desired(), &[], &obs, None, None, &SiteUnits::default());
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].reason, Reason::Content);
        assert!(p.daemon_reload() && !p.reload_nginx());
    }

    #[test]
    fn the_shared_nginx_settings_are_validated_when_absent_and_left_as_the_host_has_them() {
        let shared = file(
            crate::templates::NGINX_HTTP_CONF,
            &crate::templates::nginx_http_conf(),
            FileKind::NginxHttp,
            false,
        );
        let absent = Observed {
            files: vec![None],
            dirs: vec![],
            docker_config: None,
        };
        let p = plan_host(
            std::slice::from_ref(&shared),
            &[],
            &absent,
            None,
            None,
            &SiteUnits::default(),
        );
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.validations()[0].validator, Validator::Nginx);
        assert!(p.reload_nginx() && p.created_once().next().is_none());
        // Another site wrote it, or the operator emptied it: left alone, nothing reloaded.
        for content in [crate::templates::nginx_http_conf(), String::new()] {
            let present = Observed {
                files: vec![have(&content)],
                ..absent.clone()
            };
            let p = plan_host(
                std::slice::from_ref(&shared),
                &[],
                &present,
                None,
                None,
                &SiteUnits::default(),
            );
            assert!(p.is_empty() && !p.reload_nginx(), "{p:?}");
        }
    }

    #[test]
    fn drifted_mode_is_a_change() {
        let mut drifted = have("rot\n");
        drifted.as_mut().unwrap().mode = "666".into();
        let obs = Observed {
            files: vec![have("up\n"), have("site\n"), have("unit\n"), drifted],
            dirs: vec![],
            docker_config: None,
        };
        let p = plan_host(&desired(), &[], &obs, None, None, &SiteUnits::default());
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].reason, Reason::Permissions);
        assert!(diff("h", &p.changes[0]).contains("mode or owner"));
    }

    #[test]
    fn login_only_when_credentials_differ() {
        let login = Login {
            server: "registry.test:5000",
            username: "u",
            password: "p",
        };
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let config = format!(r#"{{"auths":{{"registry.test:5000":{{"auth":"{auth}"}}}}}}"#);
        let mut obs = Observed {
            files: vec![],
            dirs: vec![],
            docker_config: have(&config),
        };
        assert!(!plan_host(&[], &[], &obs, Some(&login), None, &SiteUnits::default()).login);
        let other = Login {
            password: "new",
            ..login.clone()
        };
        assert!(plan_host(&[], &[], &obs, Some(&other), None, &SiteUnits::default()).login);
        obs.docker_config = None;
        assert!(plan_host(&[], &[], &obs, Some(&login), None, &SiteUnits::default()).login);
        assert!(!plan_host(&[], &[], &obs, None, None, &SiteUnits::default()).login);
    }

    #[test]
    fn diff_shows_old_and_new() {
        let c = Change {
            file: file("/etc/x", "a\nB\n", FileKind::Nginx, false),
            before: Some("a\nb\n".into()),
            reason: Reason::Content,
        };
        let d = diff("th1", &c);
        assert!(d.contains("--- th1:/etc/x"));
        assert!(d.contains("-b\n+B\n"));
    }

    fn legacy_state(env: Option<&str>, units: [(&str, &str); 2]) -> LegacyState {
        LegacyState {
            upstream: Some("server 127.0.0.1:3001 max_fails=1 fail_timeout=2s;\n".into()),
            environment: env.map(str::to_owned),
            domain: Some("web.example.com".into()),
            units: units
                .iter()
                .map(|(a, e)| ((*a).to_owned(), (*e).to_owned()))
                .collect(),
            lock_held: false,
            moved: false,
        }
    }

    #[test]
    fn the_earlier_layout_is_moved_by_the_environment_it_belongs_to() {
        let site = Site::new("web", "production");
        let running = [("active", "enabled"), ("active", "enabled")];
        let state = legacy_state(Some("production"), running);
        let m = legacy_move(&site, "web.example.com", &state)
            .unwrap()
            .unwrap();
        assert_eq!(m.upstream, state.upstream, "what serves goes on serving");
        assert!(m.copies.contains(&(
            "/var/lib/shipit/web/history.jsonl".into(),
            "/var/lib/shipit/web/production/history.jsonl".into()
        )));
        assert!(m.copies.contains(&(
            "/etc/shipit/web/blue.app.env".into(),
            "/etc/shipit/web/production/blue.app.env".into()
        )));
        assert_eq!(
            m.removals,
            [
                "/etc/nginx/conf.d/shipit-web.conf",
                "/etc/logrotate.d/shipit-web"
            ]
        );
        assert!(m.cleanup.is_empty(), "its units still run");
        // Another environment's: left alone; by domain when no env file says.
        let staging = Site::new("web", "staging");
        assert_eq!(
            legacy_move(&staging, "staging.example.com", &state).unwrap(),
            None
        );
        let undeployed = legacy_state(None, running);
        assert!(
            legacy_move(&staging, "web.example.com", &undeployed)
                .unwrap()
                .is_some()
        );
        // Moved, and nothing of it runs any more: what is left is removed.
        let mut done = legacy_state(
            Some("production"),
            [("inactive", "disabled"), ("failed", "not-found")],
        );
        done.moved = true;
        let m = legacy_move(&site, "web.example.com", &done)
            .unwrap()
            .unwrap();
        assert!(m.copies.is_empty() && m.removals.is_empty() && m.upstream.is_none());
        assert!(
            m.cleanup
                .contains(&"/etc/systemd/system/web@.service".to_owned())
        );
        assert!(m.cleanup.contains(&"/var/lib/shipit/web/lock".to_owned()));
        // An earlier shipit deploying: refused.
        let mut locked = legacy_state(Some("production"), running);
        locked.lock_held = true;
        assert!(legacy_move(&site, "web.example.com", &locked).is_err());
        assert_eq!(
            LegacyState::parse(
                "upstream -\nenvironment -\ndomain -\nunit inactive absent\nunit inactive absent\nlock free\nmoved no\n"
            )
            .unwrap()
            .upstream,
            None
        );
    }
}
