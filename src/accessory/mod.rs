//! Accessories: the services the app uses (a database, a cache), each a container on one host
//! of the environment run by its own systemd unit (`<app>_<env>_<name>.service`).
//!
//! Owns: `shipit accessory status|logs|exec|restart|upgrade|remove` (an upgrade takes a backup
//! first, through [`crate::backups`]). Below it, [`unit`]: one accessory on its host (its
//! environment file, bringing it up after `shipit provision`, reading it for `shipit status`).
//! Deploys and rollbacks never touch them: the app reaches them through `links.env` and its URL
//! variables (`crate::templates::link_args`, `crate::deploy::env`).

use std::io::IsTerminal;

pub mod unit;

pub use unit::State;

use crate::config::{Accessory, Config};
use crate::error::Error;
use crate::remote::scripts::{self, AccessoryMode};
use crate::ssh::Host;
use crate::ui;
use unit::{act, say, volume_dirs};

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a Accessory, Error> {
    config
        .accessories
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::UnknownAccessory {
            environment: config.environment.clone(),
            name: name.to_owned(),
            known: config.accessories.iter().map(|a| a.name.clone()).collect(),
        })
}

/// Whether the unit of `a` on `host` is the one this configuration's provision writes (so it
/// names the configured image).
async fn unit_names(config: &Config, host: &Host, a: &Accessory) -> Result<bool, Error> {
    let path = config.site().accessory_unit_file(&a.name);
    let want = crate::templates::Templates::load(&config.app_dir)?
        .render_all(config)?
        .into_iter()
        .find(|f| f.path == path)
        .map(|f| f.content);
    let cmd = scripts::Observe {
        files: vec![path],
        dirs: Vec::new(),
    }
    .command();
    let out = host.check(&cmd).await?;
    let observed =
        crate::provision::plan::parse_observed(&out, 1, 0).map_err(|why| Error::Protocol {
            host: host.spec.to_string(),
            command: cmd.label.clone(),
            message: why,
        })?;
    Ok(matches!(
        (observed.files.first(), want),
        (Some(Some(have)), Some(want)) if have.content == want.as_bytes()
    ))
}

/// `f` on the accessory's host, under the environment's deploy lock: never a restart in the
/// middle of a deploy's backup or migration (a lock held is said with its holder, exit 6).
async fn under_lock<T, F, Fut>(
    config: &Config,
    a: &Accessory,
    command: &str,
    f: F,
) -> Result<T, Error>
where
    F: FnOnce(std::sync::Arc<Host>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let fleet = crate::fleet::Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = match fleet.hosts.iter().find(|h| h.spec == a.host).cloned() {
        Some(host) => {
            crate::lock::with_lock(&fleet, config, command, "-", None, None, |_, _| f(host)).await
        }
        None => Err(Error::UnknownHost {
            host: a.host.to_string(),
            hosts: config.hosts.iter().map(ToString::to_string).collect(),
        }),
    };
    fleet.close().await;
    result
}

/// Connect to the accessory's host.
async fn connect(config: &Config, a: &Accessory) -> Result<Host, Error> {
    Host::connect(&a.host, &config.ssh).await
}

/// `shipit accessory status ENV [NAME]`: each accessory as its host says it is.
pub async fn status(config: &Config, name: Option<&str>) -> Result<Vec<State>, Error> {
    let chosen: Vec<&Accessory> = match name {
        Some(n) => vec![find(config, n)?],
        None => config.accessories.iter().collect(),
    };
    let mut states = Vec::new();
    for a in chosen {
        let host = connect(config, a).await?;
        let state = act(config, &host, a, AccessoryMode::Status).await;
        host.close().await;
        states.push(state?);
    }
    Ok(states)
}

/// `shipit accessory logs ENV NAME`: its unit's last lines, and with `follow` what it logs next.
pub async fn logs(config: &Config, name: &str, lines: u32, follow: bool) -> Result<(), Error> {
    let a = find(config, name)?;
    let host = connect(config, a).await?;
    let unit = config.site().accessory_unit(&a.name);
    let cmd = scripts::Logs {
        unit: &unit,
        lines,
        legacy_unit: None,
        follow,
    }
    .command();
    let result = host
        .stream_lines(&cmd, |line| ui::out(&format!("{line}\n")))
        .await;
    host.close().await;
    result
}

/// `shipit accessory exec ENV NAME -- COMMAND...`: the command in its running container,
/// interactive on a terminal, else stdin passed on and output streamed; its exit code.
pub async fn exec(config: &Config, name: &str, command: &[String]) -> Result<i32, Error> {
    let a = find(config, name)?;
    let host = connect(config, a).await?;
    let container = config.site().accessory_container(&a.name);
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let remote = scripts::AccessoryExec {
        container: &container,
        tty,
        command,
    }
    .command();
    let (mut ssh, marker) = host.interactive(&remote, tty);
    let status = match &marker {
        Some(marker) => Host::stream_out(ssh, marker).await,
        None => ssh.status().await,
    }
    .map_err(|e| Error::Transport {
        host: host.spec.to_string(),
        command: remote.to_string(),
        message: format!("running ssh: {e}"),
    });
    host.close().await;
    Ok(status?.code().unwrap_or(130))
}

/// `shipit accessory restart ENV NAME`: restarted (its configured image pulled first), waited
/// for until healthy, and read back: a new container.
pub async fn restart(config: &Config, name: &str) -> Result<State, Error> {
    let a = find(config, name)?;
    under_lock(config, a, "accessory restart", |host| async move {
        let before = act(config, &host, a, AccessoryMode::Status).await?;
        let after = act(config, &host, a, AccessoryMode::Restart).await?;
        if after.container.is_some() && after.container == before.container {
            return Err(Error::AccessoryFailed {
                name: a.name.clone(),
                host: host.spec.to_string(),
                message: "the same container still runs after the restart".into(),
                next: format!("`shipit accessory logs {} {}`", config.environment, a.name),
            });
        }
        say(&after, "Restarted");
        Ok(after)
    })
    .await
}

/// `shipit accessory upgrade ENV NAME`: to the image the configuration names. The unit must
/// name it already (`shipit provision` writes it); with `[backup]`, a backup is taken first
/// and an upgrade without one is refused. Then the image is pulled, the accessory restarted
/// and waited for; a failure says what to do.
pub async fn upgrade(config: &Config, name: &str) -> Result<State, Error> {
    let a = find(config, name)?;
    under_lock(config, a, "accessory upgrade", |host| async move {
        let before = act(config, &host, a, AccessoryMode::Status).await?;
        if before.image.as_deref() == Some(a.image.as_str()) && before.health != "down" {
            ui::status(
                "Unchanged",
                &format!(
                    "accessory `{}` on `{}` runs {} already",
                    a.name, host.spec, a.image
                ),
            );
            return Ok(before);
        }
        if !unit_names(config, &host, a).await? {
            return Err(Error::AccessoryFailed {
                name: a.name.clone(),
                host: host.spec.to_string(),
                message: format!("its unit on the host does not name {} yet", a.image),
                next: format!(
                    "run `shipit provision {}` first (it writes the unit, never restarts it), then this command",
                    config.environment
                ),
            });
        }
        if config.backup.is_some() {
            let id = crate::backups::take(config, "upgrade").await?;
            ui::status("Backed up", &format!("before the upgrade: {id}"));
        }
        match act(config, &host, a, AccessoryMode::Restart).await {
            Ok(after) => {
                say(&after, "Upgraded");
                Ok(after)
            }
            Err(e) => Err(Error::AccessoryFailed {
                name: a.name.clone(),
                host: host.spec.to_string(),
                message: format!(
                    "the upgrade from {} to {} failed: {e}",
                    before.image.as_deref().unwrap_or("-"),
                    a.image
                ),
                next: format!(
                    "put `image = {:?}` back in `[accessories.{}]`, then `shipit provision {env}` and `shipit accessory upgrade {env} {}`{}",
                    before.image.as_deref().unwrap_or("-"),
                    a.name,
                    a.name,
                    if config.backup.is_some() {
                        format!("; the backup taken before is in `shipit backups {}`", config.environment)
                    } else {
                        String::new()
                    },
                    env = config.environment,
                ),
            }),
        }
    })
    .await
}

/// `shipit accessory remove ENV NAME`: stopped, its unit and environment removed; its volumes
/// kept unless `delete_data`. Asks first.
pub async fn remove(
    config: &Config,
    name: &str,
    delete_data: bool,
    yes: bool,
    confirm: impl FnOnce(&str) -> Result<bool, Error>,
) -> Result<Option<State>, Error> {
    let a = find(config, name)?;
    let dirs = volume_dirs(a);
    let question = format!(
        "Remove accessory `{}` from `{}`{}?",
        a.name,
        a.host,
        if delete_data && !dirs.is_empty() {
            format!(" AND DELETE ITS DATA ({})", dirs.join(", "))
        } else if dirs.is_empty() {
            String::new()
        } else {
            format!(" (its data stays in {})", dirs.join(", "))
        }
    );
    if !yes && !confirm(&question)? {
        ui::status(
            "Kept",
            &format!("accessory `{}`: nothing was removed", a.name),
        );
        return Ok(None);
    }
    let state = under_lock(config, a, "accessory remove", |host| async move {
        act(config, &host, a, AccessoryMode::Remove(delete_data)).await
    })
    .await?;
    if state.container.is_some() || state.active == "active" {
        return Err(Error::AccessoryFailed {
            name: a.name.clone(),
            host: a.host.to_string(),
            message: format!(
                "still there after its removal (unit {}, container {})",
                state.active,
                state.container.as_deref().unwrap_or("-")
            ),
            next: format!(
                "`shipit accessory status {} {}`",
                config.environment, a.name
            ),
        });
    }
    ui::status(
        "Removed",
        &format!(
            "accessory `{}` from `{}`{}; take it out of the configuration too",
            a.name,
            a.host,
            if delete_data || dirs.is_empty() {
                String::new()
            } else {
                format!(", its data kept in {}", dirs.join(", "))
            }
        ),
    );
    Ok(Some(state))
}
