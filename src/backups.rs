//! `shipit backups <env>` and `shipit backups restore <env> ID`: the backups taken before
//! deploys (`[backup]`), kept on the backup host, and putting one back.
//!
//! A backup's ID is its file name: when (UTC) and which release, such as
//! `20261201T193000Z_1.4.2+3f9c2ab.backup`. A restore runs the configured `restore` command
//! with `SHIPIT_BACKUP_FILE` naming the file (mounted read only), in the configured image or
//! the live release's, under the environment's deploy lock.

use serde::Serialize;

use crate::config::{Backup, Config};
use crate::error::Error;
use crate::remote::scripts;
use crate::ssh::Host;
use crate::ui;

/// One backup kept on the host.
#[derive(Debug, Serialize)]
pub struct BackupInfo {
    pub id: String,
    pub host: String,
    pub bytes: u64,
    /// Unix seconds.
    pub time: u64,
    pub release: String,
    pub age: String,
}

impl ui::Render for BackupInfo {
    fn text(&self) -> String {
        format!(
            "{}  {:>10}  {:>8} ago  {}  ({})\n",
            self.id,
            format!("{} KiB", self.bytes.div_ceil(1024)),
            self.age,
            self.release,
            self.host
        )
    }
}

/// Parse the answer of [`scripts::Backups`]: the host's clock, then `NAME BYTES MTIME` lines,
/// newest first. Ages are counted on the host's clock (`now` when it gave none).
pub fn parse(host: &str, text: &str, now: u64) -> Vec<BackupInfo> {
    let now = text
        .lines()
        .find_map(|l| l.strip_prefix("clock ")?.trim().parse().ok())
        .unwrap_or(now);
    text.lines()
        .filter(|l| !l.starts_with("clock "))
        .filter_map(|line| {
            let mut w = line.split(' ');
            let id = w.next()?.to_owned();
            let bytes = w.next()?.parse().ok()?;
            let time = w.next()?.split('.').next()?.parse().ok()?;
            let release = id
                .strip_suffix(".backup")
                .and_then(|s| s.split_once('_'))
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            Some(BackupInfo {
                host: host.to_owned(),
                bytes,
                time,
                release,
                age: humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(time),
                ))
                .to_string(),
                id,
            })
        })
        .collect()
}

fn configured(config: &Config) -> Result<&Backup, Error> {
    config.backup.as_ref().ok_or_else(|| Error::NoBackup {
        environment: config.environment.clone(),
    })
}

/// The backups kept on the backup host, newest first.
pub async fn list(config: &Config) -> Result<Vec<BackupInfo>, Error> {
    let backup = configured(config)?;
    let host = Host::connect(&backup.host, &config.ssh).await?;
    let result = list_on(config, &host).await;
    host.close().await;
    result
}

async fn list_on(config: &Config, host: &Host) -> Result<Vec<BackupInfo>, Error> {
    let out = host
        .check(
            &scripts::Backups {
                dir: &config.site().backups_dir(),
            }
            .command(),
        )
        .await?;
    Ok(parse(
        &host.spec.to_string(),
        &String::from_utf8_lossy(&out),
        crate::lock::now(),
    ))
}

/// Put backup `id` back with the `restore` command, under the deploy lock; asks first unless
/// `yes` (it overwrites what the app has now). With `skip_unreachable`, the lock is taken on
/// the hosts that answer (the backup host must be one of them).
pub async fn restore(
    config: &Config,
    id: &str,
    yes: bool,
    skip_unreachable: bool,
    lock_wait: Option<std::time::Duration>,
    confirm: impl FnOnce(&str) -> Result<bool, Error>,
) -> Result<(), Error> {
    let backup = configured(config)?;
    let Some(restore) = &backup.restore else {
        return Err(Error::NoRestore {
            environment: config.environment.clone(),
        });
    };
    let secrets = crate::secret::Secrets::load(&config.app_dir)?;
    let tolerate = if skip_unreachable {
        crate::fleet::Tolerate::All
    } else {
        crate::fleet::Tolerate::None
    };
    let fleet =
        crate::fleet::Fleet::connect_tolerating(&config.hosts, &config.ssh, tolerate).await?;
    let result = restore_on(
        config, &fleet, backup, restore, id, yes, lock_wait, &secrets, confirm,
    )
    .await;
    fleet.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn restore_on(
    config: &Config,
    fleet: &crate::fleet::Fleet,
    backup: &Backup,
    restore: &[String],
    id: &str,
    yes: bool,
    lock_wait: Option<std::time::Duration>,
    secrets: &crate::secret::Secrets,
    confirm: impl FnOnce(&str) -> Result<bool, Error>,
) -> Result<(), Error> {
    {
        let Some(host) = fleet.hosts.iter().find(|h| h.spec == backup.host).cloned() else {
            if let Some(u) = fleet.skipped.iter().find(|u| u.spec == backup.host) {
                return Err(Error::Connect {
                    host: u.spec.to_string(),
                    message: u.why.clone(),
                    help: Some(
                        "the backups are kept on this host: it must answer for a restore".into(),
                    ),
                });
            }
            return Err(Error::UnknownHost {
                host: backup.host.to_string(),
                hosts: config.hosts.iter().map(ToString::to_string).collect(),
            });
        };
        let kept = list_on(config, &host).await?;
        let Some(found) = kept.iter().find(|b| b.id == id) else {
            return Err(Error::NoSuchBackup {
                id: id.to_owned(),
                host: host.spec.to_string(),
                environment: config.environment.clone(),
                kept: kept.iter().take(5).map(|b| b.id.clone()).collect(),
            });
        };
        let question = format!(
            "Restore `{id}` ({} KiB, taken before {} was deployed, {} ago) with `{}` on `{}`? It replaces what `{}` has now.\n[y/N] ",
            found.bytes.div_ceil(1024),
            found.release,
            found.age,
            restore.join(" "),
            host.spec,
            config.environment
        );
        if !yes && !confirm(&question)? {
            ui::status("Kept", "nothing was restored");
            return Ok(());
        }
        crate::lock::with_lock(
            fleet,
            config,
            "backups restore",
            id,
            lock_wait,
            None,
            |_, cancel| {
                let host = &host;
                async move {
                    cancel
                        .guard(run_restore(config, backup, restore, host, id, secrets))
                        .await
                }
            },
        )
        .await
    }
}

async fn run_restore(
    config: &Config,
    backup: &Backup,
    restore: &[String],
    host: &Host,
    id: &str,
    secrets: &crate::secret::Secrets,
) -> Result<(), Error> {
    let site = config.site();
    let state = crate::fleet::read_state(config, host).await?;
    let live = state.serving().map(|(l, _)| l);
    let release = state.live_release().cloned();
    let image = match (&backup.image, &release) {
        (Some(image), _) => image.clone(),
        (None, Some(r)) => state.image_here(r),
        (None, None) => {
            return Err(Error::NothingLive {
                host: host.spec.to_string(),
                environment: config.environment.clone(),
            });
        }
    };
    let target = release.unwrap_or(crate::state::ReleaseRef {
        release: "-".into(),
        image: image.clone(),
    });
    let colour = live.map_or(crate::model::Colour::Blue, |l| l.colour);
    let env = crate::deploy::app_env(config, secrets, &target, colour)?;
    let file = format!("{}/{id}", site.backups_dir());
    let oneoff = crate::oneoff::Oneoff {
        config,
        host: &host.spec,
        role: "restore",
        name: crate::oneoff::name(config, "restore"),
        image: &image,
        command: restore,
        env: crate::oneoff::EnvFrom::Stdin,
        extra: vec![
            "--volume".into(),
            format!(
                "{}/.restore/{id}:/shipit-backup/{id}:ro",
                site.backups_dir()
            ),
            "--env".into(),
            format!("SHIPIT_BACKUP_FILE=/shipit-backup/{id}"),
        ],
        tty: false,
        interactive: false,
    };
    let docker = oneoff.docker_args();
    let cmd = scripts::Restore {
        file: &file,
        name: &oneoff.name,
        image: &image,
        docker: &docker,
        env: &env,
    }
    .command();
    ui::status(
        "Restoring",
        &format!("`{id}` with `{}` on `{}`", restore.join(" "), host.spec),
    );
    let prefix = host.spec.host.clone();
    let out = host
        .run_streaming(&cmd, |line| ui::output(&prefix, line))
        .await?;
    if out.code != Some(0) {
        return Err(Error::RestoreFailed {
            id: id.to_owned(),
            host: host.spec.to_string(),
            code: out.code,
            said: out.stderr.trim_end().to_owned(),
        });
    }
    ui::status("Restored", &format!("`{id}` on `{}`", host.spec));
    Ok(())
}

/// `shipit backups pull ENV ID`: the backup copied from its host into `dir` (mode 0600,
/// written beside its name and renamed when whole), its size and SHA-256 compared with what the
/// host computes. An existing file of that name is kept when it is the same backup, else the
/// pull is refused. The file's path.
pub async fn pull(
    config: &Config,
    id: &str,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, Error> {
    let backup = configured(config)?;
    let host = Host::connect(&backup.host, &config.ssh).await?;
    let result = pull_from(config, &host, id, dir).await;
    host.close().await;
    result
}

async fn pull_from(
    config: &Config,
    host: &Host,
    id: &str,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, Error> {
    use sha2::Digest;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let kept = list_on(config, host).await?;
    if !kept.iter().any(|b| b.id == id) {
        return Err(Error::NoSuchBackup {
            id: id.to_owned(),
            host: host.spec.to_string(),
            environment: config.environment.clone(),
            kept: kept.iter().take(5).map(|b| b.id.clone()).collect(),
        });
    }
    let file = format!("{}/{id}", config.site().backups_dir());
    let sum = scripts::BackupRead {
        file: &file,
        bytes: false,
    }
    .command();
    let said = String::from_utf8_lossy(&host.check(&sum).await?).into_owned();
    let protocol = |message: String| Error::Protocol {
        host: host.spec.to_string(),
        command: sum.label.clone(),
        message,
    };
    let (size, digest) = said
        .trim()
        .split_once(' ')
        .and_then(|(s, d)| Some((s.parse::<u64>().ok()?, d.to_owned())))
        .ok_or_else(|| protocol(format!("expected `SIZE SHA256`, got {said:?}")))?;
    let target = dir.join(id);
    let write_error = |path: &std::path::Path, source: std::io::Error| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Ok(existing) = std::fs::read(&target) {
        if hex::encode(sha2::Sha256::digest(&existing)) == digest {
            ui::status(
                "Unchanged",
                &format!(
                    "{} is that backup already ({size} bytes, sha256 {digest})",
                    target.display()
                ),
            );
            return Ok(target);
        }
        return Err(write_error(
            &target,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a different file has that name: move it away first",
            ),
        ));
    }
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{id}."))
        .tempfile_in(dir)
        .map_err(|e| write_error(dir, e))?;
    let cat = scripts::BackupRead {
        file: &file,
        bytes: true,
    }
    .command();
    ui::status(
        "Pulling",
        &format!("`{id}` ({} KiB) from `{}`", size.div_ceil(1024), host.spec),
    );
    let (mut ssh, marker) = host.interactive(&cat, false);
    let transport = |e: &dyn std::fmt::Display| Error::Transport {
        host: host.spec.to_string(),
        command: cat.to_string(),
        message: format!("reading the backup: {e}"),
    };
    let mut child = ssh
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| transport(&e))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(transport(&"no output to read"));
    };
    let copy = async {
        let mut reader = tokio::io::BufReader::new(stdout);
        // What the login shell printed before the marker is not the backup.
        if let Some(marker) = &marker {
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    return Ok::<_, std::io::Error>((0u64, String::new()));
                }
                if line.strip_suffix(b"\n") == Some(marker.as_bytes()) {
                    break;
                }
            }
        }
        let mut out = tokio::fs::File::from_std(partial.reopen()?);
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await?;
            total += n as u64;
        }
        out.sync_all().await?;
        Ok((total, hex::encode(hasher.finalize())))
    };
    let mut errors = String::new();
    let (copied, _, status) = tokio::join!(copy, stderr.read_to_string(&mut errors), child.wait());
    let status = status.map_err(|e| transport(&e))?;
    let (total, got) = copied.map_err(|e| write_error(partial.path(), e))?;
    if !status.success() {
        return Err(Error::Remote {
            host: host.spec.to_string(),
            command: cat.label.clone(),
            code: status.code(),
            stderr: match &marker {
                Some(m) => String::from_utf8_lossy(crate::remote::unframe(errors.as_bytes(), m))
                    .trim_end()
                    .to_owned(),
                None => errors.trim_end().to_owned(),
            },
        });
    }
    if (total, got.as_str()) != (size, digest.as_str()) {
        return Err(protocol(format!(
            "the copy has {total} bytes and sha256 {got}; the host has {size} bytes and sha256 {digest} (nothing was kept: pull again)"
        )));
    }
    std::fs::set_permissions(
        partial.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(|e| write_error(partial.path(), e))?;
    partial
        .persist_noclobber(&target)
        .map_err(|e| write_error(&target, e.error))?;
    ui::status(
        "Pulled",
        &format!(
            "`{id}` to {} ({total} bytes, sha256 {got}, the same as on `{}`)",
            target.display(),
            host.spec
        ),
    );
    Ok(target)
}

/// A backup just taken, as its host said.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken {
    pub file: String,
    pub bytes: u64,
    /// How many older ones were removed.
    pub pruned: usize,
}

/// The backup command on `host` (the backup host), in `image_here` unless `[backup] image`
/// names one, with the app's environment `env` on stdin: its container's name, and the command.
pub fn command(
    config: &Config,
    host: &crate::config::HostSpec,
    backup: &Backup,
    release: &str,
    image_here: &str,
    env: &str,
) -> (String, crate::remote::RemoteCommand) {
    let dir = config.site().backups_dir();
    let image = backup.image.as_deref().unwrap_or(image_here);
    let oneoff = crate::oneoff::Oneoff {
        config,
        host,
        role: "backup",
        name: crate::oneoff::name(config, "backup"),
        image,
        command: &backup.command,
        env: crate::oneoff::EnvFrom::Stdin,
        extra: vec![
            "--volume".into(),
            format!("{dir}/.incoming:/shipit-backup"),
            "--env".into(),
            "SHIPIT_BACKUP_FILE=/shipit-backup/backup".into(),
        ],
        tty: false,
        interactive: false,
    };
    let docker = oneoff.docker_args();
    let cmd = scripts::Backup {
        dir: &dir,
        release,
        keep: backup.keep,
        name: &oneoff.name,
        image,
        docker: &docker,
        env,
    }
    .command();
    (oneoff.name, cmd)
}

/// What the backup script said it kept (`shipit-backup FILE BYTES`) and pruned.
pub fn taken(stderr: &str) -> Option<Taken> {
    let (file, bytes) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("shipit-backup "))
        .and_then(|l| l.split_once(' '))?;
    Some(Taken {
        file: file.to_owned(),
        bytes: bytes.trim().parse::<u64>().unwrap_or(0),
        pruned: stderr
            .lines()
            .filter(|l| l.starts_with("shipit-pruned "))
            .count(),
    })
}

/// `Backed up to DIR/FILE on HOST (N KiB); M older backups removed (keep = K)`.
pub fn say_taken(config: &Config, host: &crate::config::HostSpec, backup: &Backup, taken: &Taken) {
    ui::status(
        "Backed up",
        &format!(
            "to `{}/{}` on `{host}` ({} KiB){}",
            config.site().backups_dir(),
            taken.file,
            taken.bytes.div_ceil(1024),
            if taken.pruned > 0 {
                format!(
                    "; {} older backup{} removed (keep = {})",
                    taken.pruned,
                    ui::plural(taken.pruned),
                    backup.keep
                )
            } else {
                String::new()
            }
        ),
    );
}

/// A backup now, outside a deploy (before `shipit accessory upgrade`): on the backup host,
/// with the live release's environment and image (or `[backup] image`). Its ID.
pub async fn take(config: &Config, reason: &str) -> Result<String, Error> {
    let Some(backup) = &config.backup else {
        return Err(Error::NoBackup {
            environment: config.environment.clone(),
        });
    };
    let secrets = crate::secret::Secrets::load(&config.app_dir)?;
    let host = Host::connect(&backup.host, &config.ssh).await?;
    let result = async {
        let state = crate::fleet::read_state(config, &host).await?;
        let live = state.serving().map(|(l, _)| l.colour);
        let release = state.live_release().cloned();
        let (image_here, target) = match &release {
            Some(r) => (state.image_here(r), r.clone()),
            None if backup.image.is_some() => (
                String::new(),
                crate::state::ReleaseRef {
                    release: "-".into(),
                    image: String::new(),
                },
            ),
            None => {
                return Err(Error::NothingLive {
                    host: host.spec.to_string(),
                    environment: config.environment.clone(),
                });
            }
        };
        let env = crate::deploy::app_env(
            config,
            &secrets,
            &target,
            live.unwrap_or(crate::model::Colour::Blue),
        )?;
        let label = crate::deploy::release_label(&format!("{reason}-{}", target.release));
        let (_, cmd) = command(config, &host.spec, backup, &label, &image_here, &env);
        ui::status(
            "Backing up",
            &format!(
                "`{}` on `{}` ({reason})",
                backup.command.join(" "),
                host.spec
            ),
        );
        let prefix = host.spec.host.clone();
        let out = host
            .run_streaming(&cmd, |line| ui::output(&prefix, line))
            .await?;
        if out.code != Some(0) {
            return Err(Error::ReleasePhase {
                what: "backup",
                host: host.spec.to_string(),
                command: backup.command.join(" "),
                code: out.code,
                tail: out
                    .stderr
                    .lines()
                    .filter(|l| !l.starts_with("shipit-"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        let taken = taken(&out.stderr).ok_or_else(|| host.failed(&cmd, &out))?;
        say_taken(config, &host.spec, backup, &taken);
        Ok(taken.file)
    }
    .await;
    host.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_listed_with_their_release_size_and_age() {
        let text = "20261201T193000Z_1.4.2+3f9c2ab.backup 2048 1796153400.5\nbad line\n20261130T080000Z_1.4.1+aaaaaaa.backup 10 1796025600\n";
        let list = parse("root@h:22", text, 1_796_157_000);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].release, "1.4.2+3f9c2ab");
        assert_eq!(list[0].bytes, 2048);
        assert_eq!(list[0].time, 1_796_153_400);
        assert_eq!(list[1].release, "1.4.1+aaaaaaa");
        let text = ui::Render::text(&list[0]);
        assert!(
            text.starts_with("20261201T193000Z_1.4.2+3f9c2ab.backup"),
            "{text}"
        );
        assert!(text.contains("2 KiB"), "{text}");
        assert!(text.contains("1.4.2+3f9c2ab"), "{text}");
    }
}
