//! `shipit doctor`: is everything a deploy needs in place, locally and on every host? One line
//! per check, with the fix when something is wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::remote::{RemoteCommand, scripts};
use crate::ssh::Host;

#[derive(Debug, Serialize)]
pub struct Check {
    /// `local` or the host.
    pub place: String,
    pub what: &'static str,
    pub ok: bool,
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
        detail: detail.into(),
        fix: (!ok).then(fix),
    }
}

/// Run every check; never fails itself (a failing check is a line).
pub async fn doctor(config: &Config) -> Vec<Check> {
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
    let registry = config
        .registry
        .as_ref()
        .map(|r| r.server.clone())
        .unwrap_or_default();
    let hosts = crate::ssh::each_bounded(config.hosts.clone(), config.ssh.max_parallel, |spec| {
        let registry = registry.clone();
        async move {
            let place = spec.to_string();
            let host = match Host::connect(&spec, &config.ssh).await {
                Ok(h) => h,
                Err(e) => {
                    let text = e.to_string();
                    let (detail, fix) = text.split_once("\n  help: ").map_or((text.clone(), None), |(d, f)| (d.to_owned(), Some(f.to_owned())));
                    return vec![Check { place, what: "ssh and host key", ok: false, detail, fix: fix.or(Some("check the host and `ssh.*`".into())) }];
                }
            };
            let sent = SystemTime::now();
            let out = host.check(&RemoteCommand::new("doctor", scripts::DOCTOR).arg(registry.clone())).await;
            let received = SystemTime::now();
            host.close().await;
            let text = match out {
                Ok(out) => String::from_utf8_lossy(&out).into_owned(),
                Err(e) => return vec![check(&place, "remote checks", false, e.to_string(), || "see the error above".into())],
            };
            let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')).unwrap_or("").trim().to_owned();
            let mut c = vec![check(&place, "ssh and host key", true, "connected", String::new)];
            c.push(check(&place, "root or sudo", get("root") == "yes", format!("uid {}", get("uid")), || "log in as root, or give the user passwordless sudo".into()));
            let docker = get("docker");
            c.push(check(&place, "docker engine", !docker.is_empty() && docker != "-", format!("version {docker}"), || "install docker.io and start it: `systemctl enable --now docker`".into()));
            if !registry.is_empty() {
                c.push(check(&place, "registry login", get("login") == "yes", format!("for `{registry}`"), || "run `shipit provision` (it logs the host in)".into()));
            }
            let nginx = get("nginx");
            c.push(check(&place, "nginx", !nginx.is_empty() && get("nginx-active") == "active", format!("{nginx}, {}", get("nginx-active")), || "install nginx and start it: `apt-get install nginx && systemctl enable --now nginx`".into()));
            c.push(check(&place, "systemd", !get("systemd").is_empty(), format!("version {}", get("systemd")), || "shipit runs the app under systemd".into()));
            let free_kb: u64 = get("disk").parse().unwrap_or(0);
            c.push(check(&place, "disk space", free_kb >= 1_048_576, format!("{} MB free for Docker", free_kb / 1024), || "free at least 1 GB under /var/lib/docker (`docker image prune`)".into()));
            let remote_ns: u128 = get("clock").parse().unwrap_or(0);
            let local = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let middle = (local(sent) + local(received)) / 2;
            let skew = Duration::from_nanos(u64::try_from(remote_ns.abs_diff(middle)).unwrap_or(u64::MAX));
            c.push(check(&place, "clock", skew < Duration::from_secs(2), format!("{} ms from this machine", skew.as_millis()), || "run NTP on the host (`timedatectl set-ntp true`): lock ages and history times depend on it".into()));
            c
        }
    })
    .await;
    checks.extend(hosts.into_iter().flatten());
    checks
}

/// The text of the checks, one line each, fixes indented below.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{} {}: {}: {}\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.place,
            c.what,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            s.push_str(&format!("       fix: {fix}\n"));
        }
    }
    s
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
