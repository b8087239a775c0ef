//! One accessory on its host: its environment file, the command that brings it up, restarts,
//! reads or removes it, and the parse of what the host says. Used by `shipit provision`,
//! `shipit status` and the `shipit accessory` commands above.
//!
//! Must not: know of deploys or backups (the layer above uses this one).

use serde::Serialize;

use crate::config::{Accessory, Config};
use crate::error::Error;
use crate::fleet::Fleet;
use crate::remote::scripts::{self, AccessoryMode};
use crate::secret::Secrets;
use crate::ssh::Host;
use crate::templates::{FileKind, ManagedFile};
use crate::ui;

/// An accessory as its host says it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct State {
    pub name: String,
    pub host: String,
    /// systemd's `ActiveState` of its unit.
    pub active: String,
    /// Its container's ID (`None` when there is none).
    pub container: Option<String>,
    /// The container's main process, on the host.
    pub pid: Option<u32>,
    /// The image the running container was started from.
    pub image: Option<String>,
    pub started: Option<String>,
    /// `healthy`, `unhealthy`, `none` (no health command) or `down`.
    pub health: String,
    /// With `unhealthy`: what its health command said last.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub said: String,
}

/// Parse `accessory ACTIVE MAINPID ID PID IMAGE STARTED HEALTH` and what follows it.
pub fn parse_state(name: &str, host: &str, stdout: &str) -> Result<State, String> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("accessory "));
    let line = lines
        .next()
        .ok_or_else(|| format!("no `accessory` line in {stdout:?}"))?;
    let words: Vec<&str> = line.split(' ').collect();
    let [_, active, _mainpid, id, pid, image, started, health] = words.as_slice() else {
        return Err(format!("unexpected line {line:?}"));
    };
    let some = |w: &str| (w != "-" && !w.is_empty()).then(|| w.to_owned());
    Ok(State {
        name: name.to_owned(),
        host: host.to_owned(),
        active: (*active).to_owned(),
        container: some(id).map(|id| id.chars().take(12).collect()),
        pid: pid.parse().ok().filter(|p| *p > 0),
        image: some(image),
        started: some(started),
        health: (*health).to_owned(),
        said: lines.collect::<Vec<_>>().join("\n"),
    })
}

impl State {
    /// `active (healthy), container ID pid N, image I`: what its host says, in one phrase.
    fn summary(&self) -> String {
        format!(
            "{} ({}), container {} pid {}, image {}",
            self.active,
            self.health,
            self.container.as_deref().unwrap_or("-"),
            self.pid.map_or("-".to_owned(), |p| p.to_string()),
            self.image.as_deref().unwrap_or("-"),
        )
    }
}

impl ui::Render for State {
    fn text(&self) -> String {
        let mut text = format!(
            "{} on {}: {}, started {}\n",
            self.name,
            self.host,
            self.summary(),
            self.started.as_deref().unwrap_or("-"),
        );
        if !self.said.is_empty() {
            text.push_str(&format!("  its health command said: {}\n", self.said));
        }
        text
    }
}

/// The host directories of an accessory's volumes.
pub fn volume_dirs(a: &Accessory) -> Vec<String> {
    a.volumes
        .iter()
        .filter_map(|v| v.split(':').next())
        .map(str::to_owned)
        .collect()
}

pub fn command(
    config: &Config,
    a: &Accessory,
    mode: AccessoryMode,
) -> crate::remote::RemoteCommand {
    let site = config.site();
    scripts::Accessory {
        mode,
        unit: &site.accessory_unit(&a.name),
        container: &site.accessory_container(&a.name),
        network: &crate::config::network_name(&site.key()),
        image: &a.image,
        env_file: &site.accessory_env(&a.name),
        health_timeout_secs: a.health_timeout.as_secs().max(1),
        dirs: volume_dirs(a),
        health: a.health.as_deref().unwrap_or_default(),
    }
    .command()
}

/// Each configured accessory of `host`, as the host says (its health command run once); an
/// accessory the host could not say is `unknown`, with why.
pub async fn on_host(config: &Config, host: &crate::ssh::Host) -> Vec<State> {
    let mut states = Vec::new();
    for a in config.accessories.iter().filter(|a| a.host == host.spec) {
        let name = host.spec.to_string();
        let read = host.run(&command(config, a, AccessoryMode::Status)).await;
        states.push(
            match read
                .map_err(|e| e.to_string())
                .and_then(|out| parse_state(&a.name, &name, &String::from_utf8_lossy(&out.stdout)))
            {
                Ok(state) => state,
                Err(why) => State {
                    name: a.name.clone(),
                    host: name,
                    active: "unknown".into(),
                    container: None,
                    pid: None,
                    image: None,
                    started: None,
                    health: "unknown".into(),
                    said: why,
                },
            },
        );
    }
    states
}

/// Each accessory's environment file, on its host: its clear settings and its secrets.
pub fn files(config: &Config, secrets: &Secrets) -> Result<Vec<ManagedFile>, Error> {
    let site = config.site();
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for a in &config.accessories {
        let mut text = String::new();
        for (k, v) in &a.env.clear {
            text.push_str(&format!("{k}={v}\n"));
        }
        for name in &a.env.secret {
            match secrets.get(name) {
                Some((value, _)) if !value.expose().contains(['\n', '\r', '\0']) => {
                    text.push_str(&format!("{name}={}\n", value.expose()));
                }
                Some(_) => missing.push(format!("{name} (contains a line break)")),
                None => missing.push(format!("{name} (for accessories.{})", a.name)),
            }
        }
        files.push(ManagedFile {
            path: site.accessory_env(&a.name),
            content: text,
            mode: "600",
            owner: "root:root",
            kind: FileKind::Secret,
            create_only: false,
            template: None,
            hosts: Some(vec![a.host.clone()]),
        });
    }
    if missing.is_empty() {
        Ok(files)
    } else {
        Err(Error::MissingSecrets {
            names: missing,
            dotenv: Some(config.app_dir.join(".env")),
        })
    }
}

/// Run `mode` for `a` on its host and read its state back; a failure names what the host said
/// and the command to look further.
pub async fn act(
    config: &Config,
    host: &Host,
    a: &Accessory,
    mode: AccessoryMode,
) -> Result<State, Error> {
    let cmd = command(config, a, mode);
    let out = host.run(&cmd).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let host_name = host.spec.to_string();
    if out.code != Some(0) {
        let said = parse_state(&a.name, &host_name, &stdout).ok();
        let mut message = match out.code {
            Some(3) => format!(
                "not healthy within {}s{}",
                a.health_timeout.as_secs(),
                said.as_ref()
                    .map(|s| format!(" (unit {}, container {})", s.active, s.health))
                    .unwrap_or_default()
            ),
            Some(125) => format!("its image `{}` could not be pulled", a.image),
            code => format!(
                "`{}` exited with {}",
                cmd.label,
                code.map_or("a signal".to_owned(), |c| c.to_string())
            ),
        };
        let stderr = &out.stderr;
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        if !tail.is_empty() {
            message.push_str(":\n    ");
            message.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n    "));
        }
        if let Some(s) = said.filter(|s| !s.said.is_empty()) {
            message.push_str(&format!("\n  its health command said: {}", s.said));
        }
        return Err(Error::AccessoryFailed {
            name: a.name.clone(),
            host: host_name,
            message,
            next: format!(
                "`shipit accessory logs {} {}` shows what it logged",
                config.environment, a.name
            ),
        });
    }
    parse_state(&a.name, &host_name, &stdout).map_err(|why| Error::Protocol {
        host: host_name,
        command: cmd.label.clone(),
        message: why,
    })
}

/// After `shipit provision` installed the files: every accessory's network and volume
/// directories made, its unit enabled and started when it is not running (a running one is
/// never restarted: `changed` names the files this run changed, and an accessory whose unit or
/// environment changed is told to be restarted), then waited for until healthy.
pub async fn after_provision(
    config: &Config,
    fleet: &Fleet,
    changed: &[(String, Vec<String>)],
) -> Result<(), Error> {
    let site = config.site();
    for a in &config.accessories {
        let Some(host) = fleet.hosts.iter().find(|h| h.spec == a.host) else {
            continue;
        };
        let before = act(config, host, a, AccessoryMode::Status).await?;
        let state = act(config, host, a, AccessoryMode::Up).await?;
        say(
            &state,
            if before.active == "active" {
                "Running"
            } else {
                "Started"
            },
        );
        let files = [
            site.accessory_unit_file(&a.name),
            site.accessory_env(&a.name),
        ];
        let touched = changed
            .iter()
            .filter(|(h, _)| *h == host.spec.to_string())
            .flat_map(|(_, f)| f.iter())
            .any(|f| files.contains(f));
        if before.active == "active" && before.container == state.container {
            if state.image.as_deref() != Some(a.image.as_str()) {
                ui::warn(&format!(
                    "accessory `{}` on `{}` runs {}, the configuration names {}: `shipit accessory upgrade {} {}` moves it (backup first, when configured)",
                    a.name,
                    host.spec,
                    state.image.as_deref().unwrap_or("-"),
                    a.image,
                    config.environment,
                    a.name
                ));
            } else if touched {
                ui::warn(&format!(
                    "accessory `{}` on `{}` still runs with its previous settings (provisioning never restarts it): `shipit accessory restart {} {}` applies them",
                    a.name, host.spec, config.environment, a.name
                ));
            }
        }
    }
    Ok(())
}

pub fn say(s: &State, verb: &str) {
    ui::status(
        verb,
        &format!("accessory `{}` on `{}`: {}", s.name, s.host, s.summary()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_answer_is_read_with_its_health_and_what_the_check_said() {
        let s = parse_state(
            "db",
            "h1",
            "noise\naccessory active 812 0123456789abcdef0123 901 r/pg:15 2026-12-07T21:00:00Z unhealthy\nno response\n",
        )
        .unwrap();
        assert_eq!(s.active, "active");
        assert_eq!(s.container.as_deref(), Some("0123456789ab"));
        assert_eq!(s.pid, Some(901));
        assert_eq!(s.image.as_deref(), Some("r/pg:15"));
        assert_eq!(s.health, "unhealthy");
        assert_eq!(s.said, "no response");
        let gone = parse_state("db", "h1", "accessory inactive 0 - - - - down\n").unwrap();
        assert_eq!((gone.container, gone.pid, gone.image), (None, None, None));
        assert!(parse_state("db", "h1", "accessory active\n").is_err());
        assert!(parse_state("db", "h1", "").is_err());
    }
}
