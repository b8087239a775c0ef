//! The environment lock: a directory on every host, taken with `mkdir` (atomic), holding who
//! took it, when, from which machine and process, for which command and version.
//!
//! A deploy holds it on every host or on none. A lock left by a shipit that died on this same
//! machine (its process is gone) is taken over with a warning that names it; any other held
//! lock is refused with its holder's details, or waited for with `--lock-wait`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::Error;
use crate::layout;
use crate::remote::{RemoteCommand, scripts};
use crate::ssh::Fleet;
use crate::state::LockInfo;
use crate::ui;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who we are, for lock details and history lines.
#[derive(Clone, Debug)]
pub struct Me {
    pub user: String,
    pub machine: String,
    pub machine_id: String,
    pub pid: u32,
}

pub fn me() -> Me {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let user = std::env::var("SHIPIT_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| user_from_uid(&read("/proc/self/status"), &read("/etc/passwd")));
    let machine = Some(read("/proc/sys/kernel/hostname"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Me {
        user,
        machine,
        machine_id: read("/etc/machine-id"),
        pid: std::process::id(),
    }
}

/// The login name of this process's uid, from `/proc/self/status` and `/etc/passwd`.
fn user_from_uid(status: &str, passwd: &str) -> String {
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

impl Me {
    pub fn lock_info(&self, command: &str, version: &str) -> LockInfo {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        LockInfo {
            id: format!("{}-{}-{nanos}", self.machine, self.pid),
            user: self.user.clone(),
            machine: self.machine.clone(),
            machine_id: self.machine_id.clone(),
            pid: self.pid,
            since: now(),
            command: command.to_owned(),
            version: version.to_owned(),
        }
    }

    /// A holder that was a shipit process on this machine which no longer runs.
    pub fn is_dead_local_holder(&self, holder: &LockInfo) -> bool {
        if holder.machine_id.is_empty()
            || holder.machine_id != self.machine_id
            || holder.pid == self.pid
        {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/comm", holder.pid)) {
            Err(_) => true,
            Ok(comm) => comm.trim() != "shipit",
        }
    }
}

/// Human age of a unix time, such as `3m 12s`.
pub fn age(since: u64) -> String {
    humantime::format_duration(Duration::from_secs(now().saturating_sub(since))).to_string()
}

pub fn describe(holder: &LockInfo) -> String {
    format!(
        "`{}` on `{}` (pid {}) since {} ago, for `{} {}`",
        holder.user,
        holder.machine,
        holder.pid,
        age(holder.since),
        holder.command,
        holder.version
    )
}

/// A lock held on every host of the fleet.
pub struct Held {
    pub id: String,
    /// Each host's deploy state, read under the lock in the same round trip (when asked for);
    /// `None` for a host whose lock was taken over.
    pub states: Vec<Option<String>>,
}

enum Outcome {
    Acquired(Option<String>),
    Held(Option<LockInfo>),
}

/// Take the lock on every host, or on none. `state_args`, when given, are the arguments of
/// [`scripts::DEPLOY_STATE`]: each host then answers with its state too.
pub async fn acquire(
    fleet: &Fleet,
    config: &Config,
    info: &LockInfo,
    wait: Option<Duration>,
    state_args: &[String],
) -> Result<Held, Error> {
    let me = me();
    let dir = layout::lock_dir(&config.app);
    let started = Instant::now();
    let mut announced = false;
    loop {
        let results = fleet
            .each(|host| {
                let cmd = RemoteCommand::new("take the lock", scripts::LOCK)
                    .arg(dir.clone())
                    .arg(info.to_json())
                    .args(state_args.iter().cloned());
                async move {
                    let out = host.check(&cmd).await?;
                    let text = String::from_utf8_lossy(&out);
                    if let Some(rest) = text.strip_prefix("acquired\n") {
                        let state = (!rest.is_empty()).then(|| rest.to_owned());
                        return Ok::<_, Error>(Outcome::Acquired(state));
                    }
                    let text = text.trim();
                    let details = text.strip_prefix("held").map(str::trim).unwrap_or_default();
                    let holder =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, details)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
                    Ok(Outcome::Held(holder))
                }
            })
            .await;
        let mut refused: Option<(String, Option<LockInfo>)> = None;
        let mut first_error = None;
        let mut states = Vec::with_capacity(results.len());
        for (host, r) in fleet.hosts.iter().zip(results) {
            match r {
                Ok(Outcome::Acquired(state)) => states.push(state),
                Ok(Outcome::Held(Some(holder))) if me.is_dead_local_holder(&holder) => {
                    ui::warn(&format!(
                        "{}: taking over the lock left by a shipit that is no longer running: {}",
                        host.spec,
                        describe(&holder)
                    ));
                    let cmd = RemoteCommand::new(
                        "take over a dead holder's lock",
                        scripts::LOCK_TAKEOVER,
                    )
                    .arg(dir.clone())
                    .arg(holder.id.clone())
                    .arg(info.to_json());
                    if let Err(e) = host.check(&cmd).await {
                        first_error.get_or_insert(e);
                    }
                    states.push(None);
                }
                Ok(Outcome::Held(holder)) => {
                    refused.get_or_insert((host.spec.to_string(), holder));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if refused.is_none() && first_error.is_none() {
            return Ok(Held {
                id: info.id.clone(),
                states,
            });
        }
        release(fleet, config, &info.id).await;
        if let Some(e) = first_error {
            return Err(e);
        }
        let (host, holder) = refused.unwrap_or_default();
        match wait {
            Some(w) if started.elapsed() < w => {
                if !announced {
                    ui::status(
                        "Waiting",
                        &format!(
                            "for the lock, held by {}",
                            holder.as_ref().map_or("an unknown holder".into(), describe)
                        ),
                    );
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => {
                return Err(Error::LockHeld {
                    host,
                    holder: holder.as_ref().map_or(
                        "an unknown holder (the details file is missing)".into(),
                        describe,
                    ),
                    environment: config.environment.clone(),
                });
            }
        }
    }
}

/// Release our lock on every host (a lock someone else holds is left alone).
pub async fn release(fleet: &Fleet, config: &Config, id: &str) {
    let dir = layout::lock_dir(&config.app);
    let results = fleet
        .each(|host| {
            let cmd = RemoteCommand::new("release the lock", scripts::UNLOCK)
                .arg(dir.clone())
                .arg(id.to_owned());
            async move { host.check(&cmd).await }
        })
        .await;
    for r in results {
        if let Err(e) = r {
            ui::warn(&format!("could not release the lock: {e}"));
        }
    }
}

/// Break the lock whoever holds it (`shipit lock release`).
pub async fn force_release(fleet: &Fleet, config: &Config) -> Result<(), Error> {
    let dir = layout::lock_dir(&config.app);
    let results = fleet
        .each(|host| {
            let cmd = RemoteCommand::new("break the lock", scripts::UNLOCK)
                .arg(dir.clone())
                .arg("");
            async move { host.check(&cmd).await }
        })
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(|_| ())
}
