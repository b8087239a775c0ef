//! What provisioning must do on one host, decided from what the host has. Pure.
//!
//! Owns: reading the host's answer to `OBSERVE`, comparing it with the rendered files, and the
//! resulting [`HostPlan`]: files to write, validators to run, services to reload, whether to log
//! in to the registry. Must not: do I/O.

use base64::Engine;
use serde::Serialize;

use crate::layout;
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

/// Parse the framed output of [`crate::remote::scripts::OBSERVE`] for `files` then `dirs`.
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
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.mkdirs.is_empty() && self.changes.is_empty() && !self.login
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
        self.touches(FileKind::Nginx)
    }

    pub fn daemon_reload(&self) -> bool {
        self.touches(FileKind::Systemd)
    }

    /// The `KIND STAGED FINAL` validator arguments for the validate script.
    pub fn validations(&self) -> Vec<String> {
        self.validated()
            .filter_map(|c| {
                let kind = match c.file.kind {
                    FileKind::Nginx => "nginx",
                    FileKind::Systemd => "systemd",
                    FileKind::Logrotate => "logrotate",
                    FileKind::Upstream => return None,
                };
                Some([
                    kind.to_owned(),
                    layout::staged(&c.file.path),
                    c.file.path.clone(),
                ])
            })
            .flatten()
            .collect()
    }
}

/// Directories every host needs, `(mode, path)`.
pub fn directories(app: &str) -> Vec<(&'static str, String)> {
    vec![
        ("755", layout::config_dir(app)),
        ("755", layout::log_dir(app)),
        ("755", layout::state_dir(app)),
    ]
}

/// Compare the desired files with what the host has.
pub fn plan_host(
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    observed: &Observed,
    login: Option<&Login<'_>>,
) -> HostPlan {
    let mut changes = Vec::new();
    for (file, have) in desired.iter().zip(&observed.files) {
        let reason = match have {
            None => Some(Reason::Created),
            Some(_) if file.create_only => None,
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
    HostPlan {
        mkdirs,
        changes,
        login: login.is_some_and(|l| !logged_in(observed.docker_config.as_ref(), l)),
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
        let p = plan_host(&desired(), &dirs, &obs, None);
        assert_eq!(p.changes.len(), 4);
        assert!(p.changes.iter().all(|c| c.reason == Reason::Created));
        assert_eq!(p.mkdirs, dirs);
        assert!(p.reload_nginx() && p.daemon_reload());
        assert_eq!(p.created_once().count(), 1);
        assert_eq!(
            p.validations(),
            vec![
                "nginx",
                "/etc/nginx/conf.d/.shipit-a.conf.shipit-new~",
                "/etc/nginx/conf.d/shipit-a.conf",
                "systemd",
                "/etc/systemd/system/.a@.service.shipit-new~",
                "/etc/systemd/system/a@.service",
                "logrotate",
                "/etc/logrotate.d/.shipit-a.shipit-new~",
                "/etc/logrotate.d/shipit-a",
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
        let p = plan_host(&desired(), &[("755", "/etc/shipit/a".into())], &obs, None);
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
        let p = plan_host(&desired(), &[], &obs, None);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].reason, Reason::Content);
        assert!(p.daemon_reload() && !p.reload_nginx());
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
        let p = plan_host(&desired(), &[], &obs, None);
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
        assert!(!plan_host(&[], &[], &obs, Some(&login)).login);
        let other = Login {
            password: "new",
            ..login.clone()
        };
        assert!(plan_host(&[], &[], &obs, Some(&other)).login);
        obs.docker_config = None;
        assert!(plan_host(&[], &[], &obs, Some(&login)).login);
        assert!(!plan_host(&[], &[], &obs, None).login);
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
}
