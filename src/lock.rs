//! The environment lock: a directory on every host, taken with `mkdir` (atomic), holding who
//! took it, when, from which machine and process, for which command and version.
//!
//! A deploy holds it on every host or on none. A lock left by a shipit that provably died (same
//! machine and running kernel, same PID namespace, its process gone) is taken over with a
//! warning that names it. So is a lock whose lease expired: its holder renews it (the host's
//! clock in `renewed`) every fifth of `deploy.lock_lease` while it lives, so a lock nobody
//! renewed for a whole lease on every host that holds it belongs to a shipit that died
//! elsewhere (a killed CI container) or stopped. The holder checks itself too: when it went a
//! half lease without renewing (stopped, suspended, cut off), its work waits until a renewal
//! proves the lock is still its own; a lock taken over meanwhile stops it at once, changing
//! nothing more. Any other held lock is refused with its holder's details, or waited for with
//! `--lock-wait`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::remote::scripts;
use crate::signals::Cancel;
use crate::state::LockInfo;
use crate::ui;

mod lease;

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
    pub boot_id: String,
    pub pid_ns: String,
    pub pid: u32,
    pub start_time: u64,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn me() -> Me {
    let user = std::env::var("SHIPIT_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            user_from_uid(
                &read_trimmed("/proc/self/status"),
                &read_trimmed("/etc/passwd"),
            )
        });
    let machine = Some(read_trimmed("/proc/sys/kernel/hostname"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Me {
        user,
        machine,
        machine_id: read_trimmed("/etc/machine-id"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        pid_ns: std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid: std::process::id(),
        start_time: start_time(&read_trimmed("/proc/self/stat")).unwrap_or(0),
    }
}

/// The start time (field 22, clock ticks after boot) in a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses itself.
fn start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
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

/// Whether process `pid` exists in our PID namespace, asked with `kill(pid, 0)`: unlike
/// `/proc/PID`, which `hidepid` hides, it tells a process of another user from none.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl Me {
    pub fn lock_info(&self, command: &str, version: &str, lease: Duration) -> LockInfo {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        LockInfo {
            id: format!("{}-{}-{nanos}", self.machine, self.pid),
            user: self.user.clone(),
            machine: self.machine.clone(),
            machine_id: self.machine_id.clone(),
            boot_id: self.boot_id.clone(),
            pid_ns: self.pid_ns.clone(),
            pid: self.pid,
            start_time: self.start_time,
            since: now(),
            command: command.to_owned(),
            version: version.to_owned(),
            lease: lease.as_secs(),
        }
    }

    /// Whether the holder is provably gone: a shipit of this machine's running kernel, in our
    /// PID namespace, whose process no longer exists (or whose pid now belongs to a process
    /// started at another time). Anything we cannot prove (another machine, a container with
    /// a copied machine id, another PID namespace, a lock from an older shipit without these
    /// details) is not gone.
    pub fn holder_is_gone(&self, holder: &LockInfo) -> bool {
        self.holder_is_gone_with(holder, process_exists, |pid| {
            start_time(&read_trimmed(&format!("/proc/{pid}/stat")))
        })
    }

    fn holder_is_gone_with(
        &self,
        holder: &LockInfo,
        exists: impl Fn(u32) -> bool,
        started: impl Fn(u32) -> Option<u64>,
    ) -> bool {
        let same = |a: &str, b: &str| !a.is_empty() && a == b;
        if !same(&holder.machine_id, &self.machine_id)
            || !same(&holder.boot_id, &self.boot_id)
            || !same(&holder.pid_ns, &self.pid_ns)
            || holder.pid == self.pid
            || holder.start_time == 0
        {
            return false;
        }
        if !exists(holder.pid) {
            return true;
        }
        // The pid exists: it is another process only if it provably started at another time.
        started(holder.pid).is_some_and(|t| t != holder.start_time)
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

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// What a held lock's lease says, by the host's clock: when it was last renewed and when it may
/// be taken over (empty for a lock of an older shipit, which has no lease).
pub fn lease_note(holder: &LockInfo, renewed_ago: Option<u64>) -> String {
    match (holder.lease, renewed_ago) {
        (0, _) => String::new(),
        (lease, Some(ago)) if ago < lease => format!(
            "; its lease ({}) was renewed {} ago by the host's clock: if it is dead, the lock can be taken over in {}",
            secs(lease),
            secs(ago),
            secs(lease - ago)
        ),
        (lease, Some(ago)) => format!(
            "; its lease ({}) expired {} ago by the host's clock",
            secs(lease),
            secs(ago - lease)
        ),
        (lease, None) => format!("; its lease ({}) was never renewed", secs(lease)),
    }
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
    /// Held by someone else: the holder's details, and how long ago it renewed its lease by
    /// the host's clock.
    Held(Option<Box<LockInfo>>, Option<u64>),
}

/// Why a held lock may be taken over: its holder is provably gone (0), or its lease (seconds)
/// expired by the host's clock.
fn takeover_lease(me: &Me, holder: &LockInfo, renewed_ago: Option<u64>) -> Option<u64> {
    if me.holder_is_gone(holder) {
        return Some(0);
    }
    match (holder.lease, renewed_ago) {
        (lease, Some(ago)) if lease > 0 && ago >= lease => Some(lease),
        _ => None,
    }
}

/// Take the lock on every host, or on none. With a `query`, each host answers with its state
/// too, read under the lock.
pub async fn acquire(
    fleet: &Fleet,
    config: &Config,
    info: &LockInfo,
    wait: Option<Duration>,
    query: Option<&scripts::ReadState>,
) -> Result<Held, Error> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let (states, refused, first_error) = take_round(fleet, config, info, query).await;
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
        let (host, holder, renewed_ago) = refused.unwrap_or_default();
        let said = holder.as_ref().map_or(
            "an unknown holder (the details file is missing)".into(),
            |h| format!("{}{}", describe(h), lease_note(h, renewed_ago)),
        );
        match wait {
            Some(w) if started.elapsed() < w => {
                if !announced {
                    ui::status("Waiting", &format!("for the lock, held by {said}"));
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => {
                return Err(Error::LockHeld {
                    host,
                    holder: said,
                    environment: config.environment.clone(),
                });
            }
        }
    }
}

/// What one try at the lock on every host came to: each host's state read under it (`None`
/// where a lock was taken over), the first host that refused with its holder and how long ago
/// that holder renewed, and the first error.
type Round = (
    Vec<Option<String>>,
    Option<(String, Option<Box<LockInfo>>, Option<u64>)>,
    Option<Error>,
);

/// Try to take the lock on every host once. Locks whose holder is provably gone or whose
/// lease expired are taken over, but only when every host's lock is ours or may be taken over:
/// a holder that still renews its lock somewhere keeps it everywhere.
async fn take_round(
    fleet: &Fleet,
    config: &Config,
    info: &LockInfo,
    query: Option<&scripts::ReadState>,
) -> Round {
    let me = me();
    let dir = config.site().lock_dir();
    let results = fleet
        .each(|host| {
            let cmd = scripts::TakeLock {
                lock_dir: &dir,
                holder: &info.to_json(),
                state: query,
            }
            .command();
            async move {
                let out = host.check(&cmd).await?;
                let text = String::from_utf8_lossy(&out);
                if let Some(rest) = text.strip_prefix("acquired\n") {
                    let state = (!rest.is_empty()).then(|| rest.to_owned());
                    return Ok::<_, Error>(Outcome::Acquired(state));
                }
                let text = text.trim();
                let rest = text.strip_prefix("held").map(str::trim).unwrap_or_default();
                let (details, ago) = rest.split_once(' ').unwrap_or((rest, "-"));
                let holder =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, details)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok())
                        .map(Box::new);
                // A negative age (the host's clock went back) is no proof of anything.
                Ok(Outcome::Held(holder, ago.trim().parse().ok()))
            }
        })
        .await;
    let mut refused = None;
    let mut first_error = None;
    let mut states = Vec::with_capacity(results.len());
    let mut takeovers = Vec::new();
    for (i, (host, r)) in fleet.hosts.iter().zip(results).enumerate() {
        match r {
            Ok(Outcome::Acquired(state)) => states.push(state),
            Ok(Outcome::Held(holder, ago)) => {
                match holder
                    .as_ref()
                    .and_then(|h| Some((h, takeover_lease(&me, h, ago)?)))
                {
                    Some((h, lease)) => takeovers.push((i, h.clone(), ago, lease)),
                    None => {
                        refused.get_or_insert((host.spec.to_string(), holder, ago));
                    }
                }
                states.push(None);
            }
            Err(e) => {
                first_error.get_or_insert(e);
                states.push(None);
            }
        }
    }
    if refused.is_some() || first_error.is_some() {
        return (states, refused, first_error);
    }
    for (i, holder, ago, lease) in takeovers {
        let host = &fleet.hosts[i];
        let why = if lease == 0 {
            "left by a shipit that is no longer running".to_owned()
        } else {
            format!(
                "whose lease expired (not renewed for {} by the host's clock, its lease is {})",
                secs(ago.unwrap_or(lease)),
                secs(lease)
            )
        };
        ui::warn(&format!(
            "{}: taking over the lock {why}: {}",
            host.spec,
            describe(&holder)
        ));
        let cmd = scripts::TakeOverLock {
            lock_dir: &dir,
            expected_id: &holder.id,
            holder: &info.to_json(),
            lease,
        }
        .command();
        if let Err(e) = host.check(&cmd).await {
            first_error.get_or_insert(e);
        }
    }
    (states, refused, first_error)
}

/// Run `f` holding the environment lock on every host, listening for SIGINT, SIGTERM and
/// SIGHUP (`f` is told through its [`Cancel`] and decides how to stop), and renewing the lock's
/// lease while it runs. The lock is released on every exit path; hosts where it could not be
/// are named, and listed in a fleet split.
pub async fn with_lock<T, F, Fut>(
    fleet: &Fleet,
    config: &Config,
    command: &str,
    version: &str,
    wait: Option<Duration>,
    query: Option<&scripts::ReadState>,
    f: F,
) -> Result<T, Error>
where
    F: FnOnce(Held, Cancel) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let (cancel, _listener) = Cancel::listen();
    let lease = config.deploy.lock_lease;
    let info = me().lock_info(command, version, lease);
    let held = match cancel
        .guard(acquire(fleet, config, &info, wait, query))
        .await
    {
        Ok(held) => held,
        Err(e) => {
            // Interrupted while taking it: some hosts may have it already.
            if matches!(e, Error::Interrupted { .. }) {
                release(fleet, config, &info.id).await;
            }
            return Err(e);
        }
    };
    let result = lease::keep_renewed(fleet, config, &info.id, lease, f(held, cancel)).await;
    // Where the lock was taken over this frees nothing (it is released only by our id).
    let kept = release(fleet, config, &info.id).await;
    match result {
        Err(Error::FleetSplit(mut split)) => {
            split.lock_kept = kept.into_iter().map(|(host, _)| host).collect();
            Err(Error::FleetSplit(split))
        }
        other => other,
    }
}

/// Release our lock on every host (a lock someone else holds is left alone). Returns the hosts
/// where it could not be released, each with why; each is also warned about by name.
pub async fn release(fleet: &Fleet, config: &Config, id: &str) -> Vec<(String, String)> {
    let dir = config.site().lock_dir();
    let results = fleet
        .each(|host| {
            let cmd = scripts::ReleaseLock {
                lock_dir: &dir,
                id: Some(id),
            }
            .command();
            // A master lost during the run (a stalled machine) leaves no lock behind.
            async move {
                crate::fleet::on_fresh_connection_if_lost(&host, &config.ssh, |h| {
                    let cmd = cmd.clone();
                    async move { h.check(&cmd).await }
                })
                .await
            }
        })
        .await;
    let kept: Vec<(String, String)> = fleet
        .hosts
        .iter()
        .zip(results)
        .filter_map(|(host, r)| r.err().map(|e| (host.spec.to_string(), e.to_string())))
        .collect();
    ui::warn_hosts("could not release the lock", &kept);
    kept
}

/// One host's lock, for `shipit lock status`.
#[derive(Debug, serde::Serialize)]
pub struct LockRow {
    pub host: String,
    pub lock: Option<LockInfo>,
    /// Seconds since the holder last renewed its lease, by the host's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewed_ago: Option<u64>,
}

impl crate::ui::Render for LockRow {
    fn text(&self) -> String {
        match &self.lock {
            None => format!("{}: free\n", self.host),
            Some(l) => format!(
                "{}: held by {}{}\n",
                self.host,
                describe(l),
                lease_note(l, self.renewed_ago)
            ),
        }
    }
}

/// Who holds the lock on each host.
pub async fn status(config: &Config) -> Result<Vec<LockRow>, Error> {
    let states = crate::fleet::with_fleet(config, async |fleet| {
        crate::fleet::observe(fleet, config).await
    })
    .await?;
    Ok(states
        .into_iter()
        .map(|(host, s)| LockRow {
            host,
            renewed_ago: s
                .lock_renewed
                .zip(s.clock)
                .and_then(|(renewed, clock)| clock.checked_sub(renewed)),
            lock: s.lock,
        })
        .collect())
}

/// `shipit lock release`: break the lock whoever holds it, once `confirm` agrees to the
/// question naming each holder (or at once with `yes`).
pub async fn break_lock(
    config: &Config,
    yes: bool,
    confirm: impl FnOnce(&str) -> Result<bool, Error>,
) -> Result<(), Error> {
    let environment = &config.environment;
    crate::fleet::with_fleet(config, async |fleet| {
        let states = crate::fleet::observe(fleet, config).await?;
        let holders: Vec<String> = states
            .iter()
            .filter_map(|(h, s)| s.lock.as_ref().map(|l| format!("{h}: {}", describe(l))))
            .collect();
        if holders.is_empty() {
            ui::status("Unlocked", &format!("`{environment}` was not locked"));
            return Ok(());
        }
        let question = format!(
            "Break the lock of `{environment}`?\n  {}\n[y/N] ",
            holders.join("\n  ")
        );
        if !yes && !confirm(&question)? {
            return Ok(());
        }
        force_release(fleet, config).await?;
        ui::status(
            "Released",
            &format!("the lock of `{environment}` ({})", holders.join("; ")),
        );
        Ok(())
    })
    .await
}

/// Break the lock whoever holds it (`shipit lock release`).
pub async fn force_release(fleet: &Fleet, config: &Config) -> Result<(), Error> {
    let dir = config.site().lock_dir();
    let results = fleet
        .each(|host| {
            let cmd = scripts::ReleaseLock {
                lock_dir: &dir,
                id: None,
            }
            .command();
            async move { host.check(&cmd).await }
        })
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Me {
        Me {
            user: "ci".into(),
            machine: "runner".into(),
            machine_id: "m1".into(),
            boot_id: "b1".into(),
            pid_ns: "pid:[4026531836]".into(),
            pid: 100,
            start_time: 5000,
        }
    }

    fn holder(change: impl FnOnce(&mut LockInfo)) -> LockInfo {
        let mut h = Me {
            pid: 42,
            start_time: 777,
            ..me()
        }
        .lock_info("deploy", "1.0.0", Duration::from_secs(600));
        change(&mut h);
        h
    }

    #[test]
    fn a_holder_is_gone_only_when_that_is_provable() {
        let me = me();
        let absent = |_| false;
        let present = |_| true;
        let started_at = |t: u64| move |_| Some(t);
        let unreadable = |_| None;
        // Same machine, kernel and PID namespace, process absent: gone.
        assert!(me.holder_is_gone_with(&holder(|_| {}), absent, unreadable));
        // The pid now belongs to a process started at another time: gone.
        assert!(me.holder_is_gone_with(&holder(|_| {}), present, started_at(900)));
        // The same process (same start time), or one we cannot read (hidepid): alive.
        assert!(!me.holder_is_gone_with(&holder(|_| {}), present, started_at(777)));
        assert!(!me.holder_is_gone_with(&holder(|_| {}), present, unreadable));
        // Another PID namespace (a CI container, `unshare`): its pids mean nothing here.
        let other_ns = holder(|h| h.pid_ns = "pid:[4026532179]".into());
        assert!(!me.holder_is_gone_with(&other_ns, absent, unreadable));
        // A machine id copied into another machine's image: another kernel, not provable.
        let other_kernel = holder(|h| h.boot_id = "b2".into());
        assert!(!me.holder_is_gone_with(&other_kernel, absent, unreadable));
        let other_machine = holder(|h| h.machine_id = "m2".into());
        assert!(!me.holder_is_gone_with(&other_machine, absent, unreadable));
        // A lock written by an older shipit, without these details: never taken over.
        let old = holder(|h| {
            h.pid_ns = String::new();
            h.boot_id = String::new();
            h.start_time = 0;
        });
        assert!(!me.holder_is_gone_with(&old, absent, unreadable));
        // Our own pid is never "gone".
        assert!(!me.holder_is_gone_with(&holder(|h| h.pid = 100), absent, unreadable));
    }

    #[test]
    fn a_lock_is_taken_over_for_its_age_only_when_its_lease_expired_by_the_hosts_clock() {
        let me = me();
        // Another machine: its process cannot be checked, only its lease.
        let elsewhere = |lease| {
            holder(|h| {
                h.machine_id = "m-ci".into();
                h.lease = lease;
            })
        };
        assert_eq!(takeover_lease(&me, &elsewhere(600), Some(599)), None);
        assert_eq!(takeover_lease(&me, &elsewhere(600), Some(600)), Some(600));
        assert_eq!(
            takeover_lease(&me, &elsewhere(600), Some(86_400)),
            Some(600)
        );
        // No renewal time on the host, or a clock that went back: no proof.
        assert_eq!(takeover_lease(&me, &elsewhere(600), None), None);
        // A lock of an older shipit has no lease: never taken over for its age.
        assert_eq!(takeover_lease(&me, &elsewhere(0), Some(86_400)), None);
        // What the refusal and `lock status` say about it.
        assert_eq!(
            lease_note(&elsewhere(600), Some(30)),
            "; its lease (10m) was renewed 30s ago by the host's clock: if it is dead, the lock can be taken over in 9m 30s"
        );
        assert_eq!(
            lease_note(&elsewhere(600), Some(660)),
            "; its lease (10m) expired 1m ago by the host's clock"
        );
        assert_eq!(lease_note(&elsewhere(0), Some(660)), "");
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time(stat), Some(987_654));
        assert_eq!(start_time("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(start_time(&own).is_some_and(|t| t > 0));
    }
}
