//! The fleet: every host of an environment, connected, and the work fanned out over them.
//!
//! Owns: connecting to the hosts of an environment (and which could not be reached), running
//! one future per host within a bound, collecting their answers into one result or every
//! error, and reading each host's deploy state ([`crate::state`] parses it). Every operation
//! that touches hosts goes through it. Must not: know what a deploy, a certificate or an image
//! is: the operations above decide what to run.

use std::sync::Arc;

use crate::config::{Config, HostSpec, Ssh};
use crate::error::Error;
use crate::remote::scripts;
use crate::ssh::Host;
use crate::state::{self, HostState};
use crate::ui;

/// Connect to every host of `config`'s environment, run `f`, and close the connections
/// whatever `f` returned.
pub async fn with_fleet<T>(
    config: &Config,
    f: impl AsyncFnOnce(&Fleet) -> Result<T, Error>,
) -> Result<T, Error> {
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = f(&fleet).await;
    fleet.close().await;
    result
}

/// Every host of an environment, connected (but those left out as unreachable, by choice).
pub struct Fleet {
    pub hosts: Vec<Arc<Host>>,
    pub max_parallel: usize,
    /// Hosts that could not be reached and were left out (`--skip-unreachable`), with why.
    pub skipped: Vec<Unreachable>,
}

/// A host left out of a run because it could not be reached.
#[derive(Debug)]
pub struct Unreachable {
    pub spec: HostSpec,
    /// Why, in one line.
    pub why: String,
}

/// How many unreachable hosts a run may leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerate {
    /// None: every host must be reached (the default).
    None,
    /// At most this many (`deploy.tolerate_unreachable`).
    AtMost(usize),
    /// Any number, as long as one is reached (`--skip-unreachable`).
    All,
}

impl Fleet {
    /// Connect to every host in parallel; fails, naming each host that could not be reached,
    /// before anything runs anywhere.
    pub async fn connect(hosts: &[HostSpec], ssh: &Ssh) -> Result<Fleet, Error> {
        Fleet::connect_tolerating(hosts, ssh, Tolerate::None).await
    }

    /// Connect to every host in parallel, leaving out hosts that cannot be reached as far as
    /// `tolerate` allows (named in [`Fleet::skipped`]); beyond that, or when no host can be
    /// reached, fails as [`Fleet::connect`] does. Only a failed connection is tolerated.
    pub async fn connect_tolerating(
        hosts: &[HostSpec],
        ssh: &Ssh,
        tolerate: Tolerate,
    ) -> Result<Fleet, Error> {
        if let Some(first) = hosts.first() {
            crate::ssh::sweep_persisted(first, ssh);
        }
        let vias = bastions(hosts, ssh).await;
        let progress = crate::ui::Step::new("Connecting", hosts, "SSH");
        // At most `max_starts` handshakes at once: a fleet behind one bastion (or one sshd's
        // `MaxStartups`) refuses more, at random.
        let work: Vec<(HostSpec, Via)> = hosts.iter().cloned().zip(vias).collect();
        let results = each_bounded(work, ssh.max_starts.max(1), |(spec, via)| {
            let line = progress.line(&spec);
            async move {
                let r = match via {
                    Via::Direct => Host::connect_through(&spec, ssh, None, 0).await,
                    Via::Bastion(bastion) => {
                        Host::connect_through(&spec, ssh, Some(bastion), 0).await
                    }
                    Via::Failed(e) => Err(e),
                };
                line.finish_with(&r, "connected");
                r
            }
        })
        .await;
        drop(progress);
        let mut connected = Vec::new();
        let mut errors = Vec::new();
        for (spec, r) in hosts.iter().zip(results) {
            match r {
                Ok(h) => connected.push(Arc::new(h)),
                Err(e) => errors.push((spec.clone(), e)),
            }
        }
        let allowed = match tolerate {
            Tolerate::None => 0,
            Tolerate::AtMost(n) => n,
            Tolerate::All => usize::MAX,
        };
        let tolerable = errors
            .iter()
            .all(|(_, e)| matches!(e, Error::Connect { .. }));
        if !errors.is_empty() && (errors.len() > allowed || !tolerable || connected.is_empty()) {
            close_all(connected).await;
            let mut errors: Vec<Error> = errors.into_iter().map(|(_, e)| e).collect();
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                Error::Hosts { hosts: errors }
            });
        }
        let skipped = errors
            .into_iter()
            .map(|(spec, e)| {
                crate::ui::warn(&format!(
                    "leaving out `{spec}`: it cannot be reached ({}); it keeps what it serves and is recorded as behind",
                    first_line(&e)
                ));
                Unreachable {
                    spec,
                    why: first_line(&e),
                }
            })
            .collect();
        Ok(Fleet {
            hosts: connected,
            max_parallel: ssh.max_parallel,
            skipped,
        })
    }

    /// Run `f` on every host, at most `max_parallel` at once; results in host order.
    pub async fn each<T, F, Fut>(&self, f: F) -> Vec<T>
    where
        F: Fn(Arc<Host>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        each_bounded(self.hosts.clone(), self.max_parallel, f).await
    }

    pub async fn close(self) {
        close_all(self.hosts).await;
    }
}

/// How one host is reached.
enum Via {
    Direct,
    /// Through this master to its bastion.
    Bastion(Arc<Host>),
    /// Through a bastion that could not be reached.
    Failed(Error),
}

/// Hosts a master to one bastion carries at most; beyond, another master to it.
const PER_BASTION_MASTER: usize = 200;

/// Commands one step runs at once over a host's single SSH master. sshd refuses sessions past
/// its `MaxSessions` (10 by default) per connection, and other work (the lock's lease renewal,
/// a log follow) shares the master: a site with TLS and a few jobs has more files than that.
pub const SESSIONS_PER_HOST: usize = 4;

/// A master to a bastion: the bastion and the shard's number (one master per
/// [`PER_BASTION_MASTER`] hosts behind it).
type BastionShard = (HostSpec, usize);

/// How each host is reached: directly, or through a master to its bastion (`ssh.bastion`, or
/// the `ProxyJump` ssh's configuration gives it), one master per bastion for up to
/// [`PER_BASTION_MASTER`] hosts, opened at most `max_starts` at once.
async fn bastions(hosts: &[HostSpec], ssh: &Ssh) -> Vec<Via> {
    // Only a configuration can name a bastion (`ssh -G` per host otherwise costs a process).
    let may_jump = ssh.bastion.is_some()
        || ssh.config_file.is_some()
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".ssh/config").is_file());
    if !may_jump {
        return hosts.iter().map(|_| Via::Direct).collect();
    }
    let jumps: Vec<Option<HostSpec>> = each_bounded(hosts.to_vec(), 16, |spec| async move {
        let ssh = ssh.clone();
        tokio::task::spawn_blocking(move || crate::ssh::jump_of(&spec, &ssh))
            .await
            .ok()
            .flatten()
    })
    .await;
    // Each host's (bastion, shard), and the masters to open.
    let mut counts: Vec<(HostSpec, usize)> = Vec::new();
    let mut placed: Vec<Option<(HostSpec, usize)>> = Vec::with_capacity(hosts.len());
    for jump in jumps {
        placed.push(jump.map(|b| {
            let seen = match counts.iter_mut().find(|(s, _)| *s == b) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    counts.push((b.clone(), 1));
                    0
                }
            };
            (b, seen / PER_BASTION_MASTER)
        }));
    }
    let mut shards: Vec<(HostSpec, usize)> = placed.iter().flatten().cloned().collect();
    shards.sort();
    shards.dedup();
    let opened = each_bounded(
        shards.clone(),
        ssh.max_starts.max(1),
        |(b, shard)| async move {
            Host::connect_through(&b, ssh, None, shard)
                .await
                .map(Arc::new)
        },
    )
    .await;
    // Each shard (bastion, shard number) with its master, or why it could not be opened.
    let masters: Vec<(BastionShard, Result<Arc<Host>, Error>)> =
        shards.into_iter().zip(opened).collect();
    placed
        .into_iter()
        .map(|p| match p {
            None => Via::Direct,
            Some(key) => match masters.iter().find(|(k, _)| *k == key) {
                Some((_, Ok(m))) => Via::Bastion(Arc::clone(m)),
                Some((_, Err(e))) => Via::Failed(Error::Connect {
                    host: key.0.to_string(),
                    message: format!("the bastion could not be reached: {}", first_line(e)),
                    help: Some("check the bastion first (`ssh -v` to it)".into()),
                }),
                None => Via::Direct,
            },
        })
        .collect()
}

/// Close every host's connection once nothing else holds it (a tunnel closing its forward
/// holds it for a moment; waited for up to a second).
pub async fn close_all(hosts: Vec<Arc<Host>>) {
    let closing = hosts.into_iter().map(|mut host| async move {
        for _ in 0..50 {
            match Arc::try_unwrap(host) {
                Ok(h) => return h.close().await,
                Err(still) => host = still,
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    futures::future::join_all(closing).await;
}

/// Raise this process's soft limit of open files to its hard limit (once, at start): each host
/// worked at once holds a few sockets and pipes, and the common soft limit (1024) is the hard
/// one's fraction. Returns the soft limit in force.
pub fn raise_open_file_limit() -> u64 {
    let Some(limit) = open_file_limit() else {
        return 0;
    };
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed to it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

fn open_file_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Descriptors one remote command holds while in flight: its connection to the host's SSH
/// master, its standard input and the two ends of its output and error pipes while they are
/// handed over (measured at 5-6; counted high).
const FDS_PER_COMMAND: u64 = 8;

/// Descriptors kept for everything else of a run (the masters' setup, tunnels, logs, the
/// Docker socket, the runtime's own).
const FDS_RESERVED: u64 = 128;

/// How many remote commands may be in flight at once, at most `wanted`, within this
/// process's open files limit (as raised at start): a wide fan-out (the switch) must never
/// meet "Too many open files" half way.
pub fn commands_within_open_files(wanted: usize) -> usize {
    commands_within(open_file_limit().map_or(1024, |l| l.rlim_cur), wanted)
}

fn commands_within(soft_limit: u64, wanted: usize) -> usize {
    let fit = soft_limit.saturating_sub(FDS_RESERVED) / FDS_PER_COMMAND;
    wanted
        .min(usize::try_from(fit).unwrap_or(usize::MAX))
        .max(1)
}

/// The open files limit in force (soft), for messages.
pub fn open_files_soft_limit() -> u64 {
    open_file_limit().map_or(0, |l| l.rlim_cur)
}

/// Run `attempt` on `host`; when it loses the connection (the master died: the deploying
/// machine stalled past the keep-alives, the host's sshd restarted), once more on a fresh
/// connection, closed after. For what must reach the host even then: an undo, the lock's
/// release. `attempt` must be safe to run twice.
pub async fn on_fresh_connection_if_lost<T, F, Fut>(
    host: &Arc<Host>,
    ssh: &Ssh,
    attempt: F,
) -> Result<T, Error>
where
    F: Fn(Arc<Host>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    match attempt(Arc::clone(host)).await {
        Err(Error::Transport { .. }) => {
            tracing::info!(host = %host.spec, "lost the connection: trying once more on a new one");
            let fresh = Arc::new(Host::connect(&host.spec, ssh).await?);
            let r = attempt(Arc::clone(&fresh)).await;
            if let Some(fresh) = Arc::into_inner(fresh) {
                fresh.close().await;
            }
            r
        }
        r => r,
    }
}

/// Map `f` over `items` with at most `limit` futures in flight, results in the input order.
pub async fn each_bounded<I, T, F, Fut>(items: Vec<I>, limit: usize, f: F) -> Vec<T>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures::StreamExt;
    futures::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// Parse a host's state; history lines it had to skip are warned about, naming the host.
pub fn parse_host_state(
    config: &Config,
    host: &Host,
    command: &str,
    text: &str,
) -> Result<(String, HostState), Error> {
    let state = state::parse_state(text).map_err(|message| Error::Protocol {
        host: host.spec.to_string(),
        command: command.to_owned(),
        message,
    })?;
    for s in &state.skipped {
        ui::warn(&format!(
            "`{}`: skipped line {} of its history (`{}`): {}",
            host.spec,
            s.line,
            config.site().history(),
            s.reason
        ));
    }
    Ok((host.spec.to_string(), state))
}

/// Read one host's deploy state.
pub async fn read_state(config: &Config, host: &Host) -> Result<HostState, Error> {
    let cmd = scripts::ReadState::of(&config.site(), None).command();
    let out = host.check(&cmd).await?;
    parse_host_state(
        config,
        host,
        &cmd.to_string(),
        &String::from_utf8_lossy(&out),
    )
    .map(|(_, state)| state)
}

/// Read every host's deploy state, in host order.
pub async fn observe(fleet: &Fleet, config: &Config) -> Result<Vec<(String, HostState)>, Error> {
    observe_with(fleet, config, None).await
}

/// Read every host's deploy state; with `settings`, each colour's are compared with them.
pub async fn observe_with(
    fleet: &Fleet,
    config: &Config,
    settings: Option<String>,
) -> Result<Vec<(String, HostState)>, Error> {
    let cmd = scripts::ReadState::of(&config.site(), settings).command();
    let results = fleet
        .each(|host| {
            let cmd = cmd.clone();
            async move {
                let out = host.check(&cmd).await?;
                parse_host_state(
                    config,
                    &host,
                    &cmd.to_string(),
                    &String::from_utf8_lossy(&out),
                )
            }
        })
        .await;
    collect(results)
}

/// All results, or every error (one error alone when there is one).
pub fn collect<T>(results: Vec<Result<T, Error>>) -> Result<Vec<T>, Error> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => ok.push(t),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(ok),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Hosts { hosts: errors }),
    }
}

pub fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// The hosts the fleet records name that the configuration does not have.
pub fn removed_hosts(config: &Config, states: &[(String, HostState)]) -> Vec<String> {
    let configured: Vec<String> = config.hosts.iter().map(ToString::to_string).collect();
    let mut removed: Vec<String> = Vec::new();
    for (_, state) in states {
        for h in state.fleet.hosts.iter().chain(&state.fleet.removed) {
            if !configured.contains(h) && !removed.contains(h) {
                removed.push(h.clone());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_in_flight_fit_the_open_files_limit() {
        // A login shell's common limit: 112 at once, never the 512 a switch would like.
        assert_eq!(commands_within(1024, 512), 112);
        const { assert!(112 * FDS_PER_COMMAND + FDS_RESERVED <= 1024) };
        // A raised limit: what is wanted.
        assert_eq!(commands_within(524_288, 512), 512);
        assert_eq!(commands_within(20_000, 3), 3);
        // A limit below the reserve still lets one through (it fails, saying why, if it must).
        assert_eq!(commands_within(64, 512), 1);
        assert_eq!(commands_within(0, 0), 1);
    }
}
