//! `shipit doctor`: is everything a deploy needs in place, locally and on every host? One line
//! per check, with the fix when something is wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::remote::scripts;
use crate::ssh::Host;

#[derive(Debug, Serialize)]
pub struct Check {
    /// `local` or the host.
    pub place: String,
    pub what: &'static str,
    pub ok: bool,
    /// Passed, but something wants attention soon (a certificate near its expiry).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(
    place: &str,
    what: &'static str,
    ok: bool,
    detail: impl Into<String>,
    fix: impl FnOnce() -> String,
) -> Check {
    Check {
        place: place.to_owned(),
        what,
        ok,
        warning: false,
        detail: detail.into(),
        fix: (!ok).then(fix),
    }
}

/// Run every check; never fails itself (a failing check is a line).
pub async fn doctor(config: &Config) -> Vec<Check> {
    let mut checks = local_checks(config).await;
    let image_bytes = local_image_bytes(config).await;
    let hosts = crate::fleet::each_bounded(config.hosts.clone(), config.ssh.max_parallel, |spec| {
        host_checks(config, spec, image_bytes)
    })
    .await;
    let mut states = Vec::new();
    for (host_checks, state) in hosts {
        checks.extend(host_checks);
        states.extend(state);
    }
    checks.extend(fleet_check(config, &states));
    checks
}

/// Hosts an earlier run deployed to that are no longer in `hosts`: they may still serve the
/// app and run its jobs.
fn fleet_check(config: &Config, states: &[(String, crate::state::HostState)]) -> Vec<Check> {
    crate::fleet::removed_hosts(config, states)
        .into_iter()
        .map(|host| {
            check(
                &host,
                "fleet membership",
                false,
                "no longer in `hosts`, but an earlier deploy went to it: it may still serve the app and run its jobs",
                || format!("retire it: `shipit retire {} {host}`", config.environment),
            )
        })
        .collect()
}

/// Without a registry: the size of the release's image in the local engine (every host must
/// have room for it), when it is built.
async fn local_image_bytes(config: &Config) -> Option<u64> {
    if config.registry.is_some() {
        return None;
    }
    let options = crate::build::Options {
        allow_dirty: true,
        ..Default::default()
    };
    let (release, _) = crate::build::prepare(config, &options).ok()?;
    let engine = crate::docker::Engine::connect().await.ok()?;
    let reference = format!("{}:{}", config.image, release.tag());
    engine
        .image_facts(&reference)
        .await
        .ok()
        .flatten()
        .map(|f| f.size)
}

/// What this machine needs: ssh, a Docker engine, the registry password.
async fn local_checks(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let ssh = std::process::Command::new("ssh").arg("-V").output();
    checks.push(match ssh {
        Ok(out) => check(
            "local",
            "ssh client",
            true,
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            String::new,
        ),
        Err(e) => check("local", "ssh client", false, e.to_string(), || {
            "install OpenSSH's client (`apt-get install openssh-client`)".into()
        }),
    });
    let engine = crate::docker::Engine::connect().await;
    checks.push(check(
        "local",
        "docker engine",
        engine.is_ok(),
        engine.as_ref().err().map_or("reachable".to_owned(), |e| {
            e.to_string().lines().next().unwrap_or_default().to_owned()
        }),
        || "start it (`systemctl start docker`, or `dockerd &`), or set DOCKER_HOST".into(),
    ));
    if let Some(r) = &config.registry {
        let secrets = crate::secret::Secrets::load(&config.app_dir);
        let source = secrets
            .ok()
            .and_then(|s| s.get(&r.password_env).map(|(_, src)| src.to_string()));
        checks.push(check(
            "local",
            "registry password",
            source.is_some(),
            source.clone().unwrap_or_else(|| "missing".into()),
            || {
                format!(
                    "export {}=... or add it to .env beside shipit.toml",
                    r.password_env
                )
            },
        ));
    }
    checks
}

/// What one host needs: SSH, root or sudo, then (asked in a few round trips) Docker, the
/// registry login, nginx, systemd, disk, clock, the colour ports, and the TLS certificate.
async fn host_checks(
    config: &Config,
    spec: crate::config::HostSpec,
    image_bytes: Option<u64>,
) -> (Vec<Check>, Option<(String, crate::state::HostState)>) {
    let place = spec.to_string();
    let host = match Host::connect(&spec, &config.ssh).await {
        Ok(h) => std::sync::Arc::new(h),
        Err(e) => {
            let text = e.to_string();
            let (detail, fix) = text
                .split_once("\n  help: ")
                .map_or((text.clone(), None), |(d, f)| {
                    (d.to_owned(), Some(f.to_owned()))
                });
            return (
                vec![Check {
                    place,
                    what: "ssh and host key",
                    ok: false,
                    warning: false,
                    detail,
                    fix: fix.or(Some("check the host and `ssh.*`".into())),
                }],
                None,
            );
        }
    };
    let connected = check(&place, "ssh and host key", true, "connected", String::new);
    // What sudo allows, asked as the login user itself.
    let probe = match host.run_as_login_user(&scripts::SudoProbe.command()).await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => {
            close(host).await;
            return (vec![remote_failed(&place, &e)], None);
        }
    };
    let shell = login_shell_check(&place, &probe, host.login_noise().await);
    if let Some(c) = sudo_check(&place, &probe) {
        close(host).await;
        return (vec![connected, shell, c], None);
    }
    let registry = config.registry.as_ref().map_or("", |r| r.server.as_str());
    let sent = SystemTime::now();
    let out = host.check(&scripts::Doctor { registry }.command()).await;
    let received = SystemTime::now();
    let (ports, state) = tokio::join!(
        ports_check(config, &place, &host),
        crate::fleet::read_state(config, &host)
    );
    let state = state.ok().map(|s| (place.clone(), s));
    let tls = match &config.tls {
        Some(_) => Some(tls_check(&place, &host, config).await),
        None => None,
    };
    close(host).await;
    let text = match out {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => return (vec![connected, remote_failed(&place, &e)], state),
    };
    let as_user = probe
        .lines()
        .find_map(|l| l.strip_prefix("user "))
        .unwrap_or("?");
    let mut c = vec![connected, shell];
    c.extend(doctor_answer(
        &place,
        &text,
        as_user,
        registry,
        image_bytes,
        (sent, received),
    ));
    c.push(ports);
    c.extend(tls);
    (c, state)
}

/// Close a host's connection (once its tunnels have closed).
async fn close(host: std::sync::Arc<Host>) {
    crate::fleet::close_all(vec![host]).await;
}

fn remote_failed(place: &str, e: &Error) -> Check {
    check(place, "remote checks", false, e.to_string(), || {
        "see the error above".into()
    })
}

/// The checks in [`scripts::Doctor`]'s answer; `sent` and `received` bound the host's clock.
fn doctor_answer(
    place: &str,
    text: &str,
    as_user: &str,
    registry: &str,
    image_bytes: Option<u64>,
    (sent, received): (SystemTime, SystemTime),
) -> Vec<Check> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let who = if as_user == "root" {
        "root".to_owned()
    } else {
        format!("`{as_user}` with passwordless sudo")
    };
    let mut c = vec![check(
        place,
        "root or sudo",
        get("root") == "yes",
        who,
        || "log in as root, or give the user passwordless sudo".into(),
    )];
    let docker = get("docker");
    c.push(check(
        place,
        "docker engine",
        !docker.is_empty() && docker != "-",
        format!(
            "version {docker}, {} (images must be built for linux/{})",
            get("arch"),
            crate::state::image_arch(&get("arch"))
        ),
        || "install docker.io and start it: `systemctl enable --now docker`".into(),
    ));
    if !registry.is_empty() {
        c.push(check(
            place,
            "registry login",
            get("login") == "yes",
            format!("for `{registry}`"),
            || "run `shipit provision` (it logs the host in)".into(),
        ));
    }
    let nginx = get("nginx");
    let nginx_active = get("nginx-active");
    c.push(check(
        place,
        "nginx",
        !nginx.is_empty() && nginx_active == "active",
        format!("{nginx}, {nginx_active}"),
        || {
            "install nginx and start it: `apt-get install nginx && systemctl enable --now nginx`"
                .into()
        },
    ));
    c.push(check(
        place,
        "systemd",
        !get("systemd").is_empty(),
        format!("version {}", get("systemd")),
        || "shipit runs the app under systemd".into(),
    ));
    let free_kb: u64 = get("disk").parse().unwrap_or(0);
    // At least 1 GiB, and without a registry room for the whole image (a host that has none
    // of its layers gets all of them).
    let image_kb = image_bytes.map_or(0, |b| b.div_ceil(1024));
    c.push(check(
        place,
        "disk space",
        free_kb >= 1_048_576.max(image_kb),
        match image_bytes {
            Some(_) => format!(
                "{} MB free for Docker; the release's image takes {} MB",
                free_kb / 1024,
                image_kb / 1024
            ),
            None => format!("{} MB free for Docker", free_kb / 1024),
        },
        || {
            format!(
                "free at least {} MB under /var/lib/docker (`docker image prune`)",
                1024.max(image_kb / 1024)
            )
        },
    ));
    let remote_ns: u128 = get("clock").parse().unwrap_or(0);
    let local = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let middle = (local(sent) + local(received)) / 2;
    let skew = Duration::from_nanos(u64::try_from(remote_ns.abs_diff(middle)).unwrap_or(u64::MAX));
    c.push(check(place, "clock", skew < Duration::from_secs(2), format!("{} ms from this machine", skew.as_millis()), || {
        "run NTP on the host (`timedatectl set-ntp true`): lock ages and history times depend on it".into()
    }));
    c
}

/// Whether another app or process holds a colour port (this app's own containers may, in the
/// earlier layout too).
async fn ports_check(config: &Config, place: &str, host: &Host) -> Check {
    let site = config.site();
    let cmd = scripts::PortsHeld {
        ports: &[config.ports.blue, config.ports.green],
        ours: &[
            site.container(crate::model::Colour::Blue),
            site.container(crate::model::Colour::Green),
            format!("{}-blue", config.app),
            format!("{}-green", config.app),
        ],
    }
    .command();
    match host.check(&cmd).await {
        Ok(out) => {
            let held = crate::state::ports_held(&String::from_utf8_lossy(&out));
            let ports = format!("{} and {}", config.ports.blue, config.ports.green);
            match held.first() {
                None => check(
                    place,
                    "colour ports",
                    true,
                    format!("{ports} free (or this app's)"),
                    String::new,
                ),
                Some(h) => check(
                    place,
                    "colour ports",
                    false,
                    format!("port {} is held by {}", h.port, h.holder),
                    || "give this app and environment ports of their own in `[ports]`".into(),
                ),
            }
        }
        Err(e) => check(place, "colour ports", false, e.to_string(), || {
            "see the error above".into()
        }),
    }
}

/// The login shell, and what it (its rc files) prints before a command runs. shipit's commands
/// reach `/bin/sh` unchanged whatever the shell, and their answers are framed, so that output
/// breaks nothing; it is named all the same (earlier versions of shipit, and other tools,
/// misread it).
fn login_shell_check(place: &str, probe: &str, noise: Result<(String, String), Error>) -> Check {
    let shell = probe
        .lines()
        .find_map(|l| l.strip_prefix("shell "))
        .unwrap_or("?")
        .trim()
        .to_owned();
    match noise {
        Ok((out, err)) if out.is_empty() && err.is_empty() => check(
            place,
            "login shell",
            true,
            format!("`{shell}`, quiet"),
            String::new,
        ),
        Ok((out, err)) => {
            let sample: String = format!("{out}{err}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(80)
                .collect();
            Check {
                place: place.to_owned(),
                what: "login shell",
                ok: true,
                warning: true,
                detail: format!(
                    "`{shell}` prints {} byte{} before every command (`{sample}`); shipit leaves it out of what it reads",
                    out.len() + err.len(),
                    crate::ui::plural(out.len() + err.len())
                ),
                fix: Some(
                    "print only in interactive shells: in ~/.bashrc after Debian's `case $- in *i*)` test, in ~/.tcshrc under `if ($?prompt)`, in fish's config under `status is-interactive`"
                        .into(),
                ),
            }
        }
        Err(e) => check(place, "login shell", false, e.to_string(), || {
            "see the error above".into()
        }),
    }
}

/// The sudo check from [`scripts::SudoProbe`]'s answer, when it fails: exactly what is
/// missing, and the line that gives it.
fn sudo_check(place: &str, probe: &str) -> Option<Check> {
    let get = |k: &str| {
        probe
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let user = get("user");
    let sudo = get("sudo");
    if get("root") == "yes" || sudo == "yes" {
        return None;
    }
    let sudoers = format!(
        "as root on the host: `echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/shipit && chmod 440 /etc/sudoers.d/shipit` (check it with `visudo -cf /etc/sudoers.d/shipit`), or log in as root"
    );
    let detail = if sudo == "missing" {
        format!("`{user}` is not root and sudo is not installed")
    } else {
        let said = sudo.strip_prefix("no").unwrap_or(&sudo).trim().to_owned();
        if said.contains("password") {
            format!(
                "`{user}` is not root and sudo wants a password (sudo said: {said}); shipit runs every command with `sudo -n`"
            )
        } else {
            format!("`{user}` is not root and may not use sudo (sudo said: {said})")
        }
    };
    Some(Check {
        place: place.to_owned(),
        what: "root or sudo",
        ok: false,
        warning: false,
        detail,
        fix: Some(if sudo == "missing" {
            format!("install sudo (`apt-get install sudo`), then {sudoers}")
        } else {
            sudoers
        }),
    })
}

/// Under this many days before it expires, the served certificate is a warning.
pub const CERTIFICATE_WARNING_DAYS: i64 = 14;

/// The certificate a host serves for the domain (over the SSH tunnel, with the domain as SNI):
/// its expiry (a warning under [`CERTIFICATE_WARNING_DAYS`]), issuer, and whether this machine
/// trusts it. With `[tls] acme`, the fix is `shipit tls renew`.
async fn tls_check(place: &str, host: &std::sync::Arc<Host>, config: &Config) -> Check {
    let what = "tls certificate";
    let domain = &config.domain;
    let tunnel = match crate::probe::Tunnel::open(host, 443).await {
        Ok(t) => t,
        Err(e) => {
            return check(place, what, false, e.to_string(), || {
                "check that nginx listens on 443 (`shipit provision`)".into()
            });
        }
    };
    let seen = crate::probe::get_over_tls(&tunnel, domain, "/").await;
    let Some(facts) = seen
        .certificate
        .as_deref()
        .and_then(|der| crate::acme::plan::CertFacts::from_der(der).ok())
    else {
        return check(
            place,
            what,
            false,
            format!("no certificate read for `{domain}`: {}", seen.answer),
            || "check `[tls]` and run `shipit provision`".into(),
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days = facts.days_left(now);
    let expiry = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(facts.not_after.max(0).unsigned_abs()),
    );
    let trust = match &seen.untrusted {
        None => "trusted here".to_owned(),
        Some(reason) => format!("not trusted by this machine: {reason}"),
    };
    let detail = format!(
        "`{domain}` expires {expiry} (in {days} days), issued by {}; {trust}",
        facts.issuer
    );
    let renew = match config.acme() {
        Some(_) => format!("run `shipit tls renew {}`", config.environment),
        None => "renew it and install it on every host".to_owned(),
    };
    if facts.not_after <= now {
        return check(place, what, false, detail, || renew.clone());
    }
    let placeholder = facts.placeholder && config.acme().is_some();
    let warning = days < CERTIFICATE_WARNING_DAYS || placeholder;
    Check {
        place: place.to_owned(),
        what,
        ok: true,
        warning,
        detail: if placeholder {
            format!(
                "`{domain}` is served with the temporary self-signed certificate `shipit provision` installs until the first one is issued; {trust}"
            )
        } else {
            detail
        },
        fix: warning.then(|| format!("{renew} (within {days} days)")),
    }
}

impl crate::ui::Render for Check {
    /// One line, the fix indented below.
    fn text(&self) -> String {
        let mut s = format!(
            "{} {}: {}: {}\n",
            match (self.ok, self.warning) {
                (false, _) => "FAIL",
                (true, true) => "WARN",
                (true, false) => "ok  ",
            },
            self.place,
            self.what,
            self.detail
        );
        if let Some(fix) = &self.fix {
            s.push_str(&format!("       fix: {fix}\n"));
        }
        s
    }
}

/// The error when any check failed.
pub fn verdict(checks: &[Check]) -> Result<(), Error> {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::DoctorFailed { failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host's answer with `disk` KiB free for Docker, its clock read at `now`.
    fn answer(disk_kb: u64, image_bytes: Option<u64>) -> Vec<Check> {
        let now = SystemTime::now();
        let clock = now.duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let text = format!(
            "root yes\ndocker 20.10.24\nnginx 1.22.1\nsystemd 252\ndisk {disk_kb}\nclock {clock}\n"
        );
        doctor_answer("root@web1", &text, "root", "", image_bytes, (now, now))
    }

    fn disk(checks: &[Check]) -> &Check {
        checks.iter().find(|c| c.what == "disk space").unwrap()
    }

    #[test]
    fn disk_space_wants_a_gib_and_without_a_registry_room_for_the_whole_image() {
        // With a registry (no image size): 1 GiB is enough, less is not.
        let ok = answer(2 * 1_048_576, None);
        assert!(disk(&ok).ok, "{:?}", disk(&ok));
        assert_eq!(disk(&ok).detail, "2048 MB free for Docker");
        let low = answer(512 * 1024, None);
        assert!(!disk(&low).ok);
        assert_eq!(
            disk(&low).fix.as_deref(),
            Some("free at least 1024 MB under /var/lib/docker (`docker image prune`)")
        );
        // Without a registry, a 3 GiB image needs 3 GiB free: 2 GiB fails, naming both sizes.
        let image = 3 * 1024 * 1024 * 1024;
        let short = answer(2 * 1_048_576, Some(image));
        assert!(!disk(&short).ok);
        assert_eq!(
            disk(&short).detail,
            "2048 MB free for Docker; the release's image takes 3072 MB"
        );
        assert_eq!(
            disk(&short).fix.as_deref(),
            Some("free at least 3072 MB under /var/lib/docker (`docker image prune`)")
        );
        assert!(disk(&answer(4 * 1_048_576, Some(image))).ok);
        // An answer without the line (an unreadable `df`) is no room, never a panic.
        let text = "root yes\n";
        let now = SystemTime::now();
        let checks = doctor_answer("h", text, "root", "", Some(image), (now, now));
        assert!(!disk(&checks).ok);
    }
}
