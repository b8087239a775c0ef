//! `shipit status`: per host, what serves (colour, port, release) and whether it is healthy,
//! each colour's unit, release and port, and the lock; all read from the hosts.

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::{Fleet, Tolerate, each_bounded};
use crate::lock;
use crate::model::Colour;
use crate::probe::{self, Expect, Tunnel};
use crate::state::{ColourState, HostState};

/// One colour on a host.
#[derive(Debug, Default, Serialize)]
pub struct ColourStatus {
    /// `systemctl is-active`.
    pub unit: String,
    pub release: Option<String>,
    pub port: Option<u16>,
}

/// The live copy's health, checked directly on its port.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Health {
    Healthy,
    Unhealthy(String),
    /// The live colour's unit is not running.
    Down,
    /// It could not be checked (the tunnel failed).
    Unknown(String),
    /// Nothing is live.
    #[default]
    None,
}

/// One host's line in `shipit status`.
#[derive(Debug, Default, Serialize)]
pub struct HostStatus {
    pub host: String,
    /// The live colour: the upstream's first server.
    pub live: Option<Colour>,
    pub port: Option<u16>,
    /// The release users get (the live colour's, or the backup's while the live one is down).
    pub release: Option<String>,
    /// The live copy's health, checked directly.
    pub health: Health,
    /// Users get the previous colour through nginx's `backup`: the live copy does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through_backup: Option<Colour>,
    /// Another run left this host out as unreachable: what it missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// The release waiting for promotion here (`deploy --no-promote`), as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::state::Waiting>,
    /// Not in `hosts`, but an earlier run deployed to it (it may still serve the app): the
    /// command that retires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire: Option<String>,
    /// It could not be reached now, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    pub blue: ColourStatus,
    pub green: ColourStatus,
    pub lock: Option<crate::state::LockInfo>,
    /// The processes beside the web one that run on this host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessStatus>,
    /// The jobs scheduled on this host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobStatus>,
    /// The accessories that run on this host, as it says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accessories: Vec<crate::accessory::unit::State>,
}

/// A process's units on a host, per colour (`systemctl is-active`).
#[derive(Debug, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    pub blue: String,
    pub green: String,
}

/// A job's timer on a host: its last run and how it ended, its next run.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub last_run: String,
    /// systemd's result of the last run (`success`, `exit-code`, ...), and its exit status.
    pub result: String,
    pub exit_status: String,
    pub next_run: String,
}

/// The processes and jobs of a host from [`crate::remote::scripts::PartsStatus`]'s answer.
fn parts(
    config: &Config,
    host: &crate::config::HostSpec,
    text: &str,
) -> (Vec<ProcessStatus>, Vec<JobStatus>) {
    let site = config.site();
    let unit = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("unit ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .unwrap_or("unknown")
            .to_owned()
    };
    let processes = config
        .processes
        .iter()
        .filter(|p| p.hosts.contains(host))
        .map(|p| ProcessStatus {
            name: p.name.clone(),
            blue: unit(&site.process_instance(&p.name, Colour::Blue)),
            green: unit(&site.process_instance(&p.name, Colour::Green)),
        })
        .collect();
    let jobs = config
        .jobs
        .iter()
        .filter(|j| j.host == *host)
        .map(|j| {
            let timer = site.job_timer_unit(&j.name);
            let fields: Vec<&str> = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("job ")?
                        .strip_prefix(timer.as_str())?
                        .strip_prefix('|')
                })
                .map(|rest| rest.split('|').collect())
                .unwrap_or_default();
            let field = |i: usize| {
                fields
                    .get(i)
                    .filter(|f| !f.is_empty())
                    .map_or("n/a".to_owned(), |f| (*f).to_owned())
            };
            JobStatus {
                name: j.name.clone(),
                last_run: field(0),
                next_run: field(1),
                result: field(2),
                exit_status: field(3),
            }
        })
        .collect();
    (processes, jobs)
}

impl crate::ui::Render for HostStatus {
    /// The line `shipit status` prints for the host.
    fn text(&self) -> String {
        if let Some(why) = &self.unreachable {
            return format!("{}: unreachable ({why})\n", self.host);
        }
        if let Some(retire) = &self.retire {
            return format!(
                "{}: no longer in `hosts`, but an earlier run deployed to it: it may still serve the app and run its jobs; retire it with `{retire}`\n",
                self.host
            );
        }
        let health = match &self.health {
            Health::Healthy => "healthy".to_owned(),
            Health::Unhealthy(a) => format!("unhealthy: {a}"),
            Health::Down => "down".to_owned(),
            Health::Unknown(e) => format!("unknown: {e}"),
            Health::None => "-".to_owned(),
        };
        let colour = |c: &ColourStatus| {
            let mut s = c.unit.clone();
            if let Some(r) = &c.release {
                s.push_str(&format!(" ({r}"));
                if let Some(p) = c.port {
                    s.push_str(&format!(", port {p}"));
                }
                s.push(')');
            }
            s
        };
        let users = match self.through_backup {
            Some(c) => format!(
                "; users get {c} {} through nginx's backup",
                self.release.as_deref().unwrap_or("(no release)")
            ),
            None => String::new(),
        };
        let live_release = match (self.live, self.through_backup) {
            (Some(l), Some(_)) => match l {
                Colour::Blue => self.blue.release.as_deref(),
                Colour::Green => self.green.release.as_deref(),
            },
            _ => self.release.as_deref(),
        };
        let mut text = format!(
            "{}: live {} {} ({health}{users}); blue {}, green {}; lock {}\n",
            self.host,
            self.live.map_or("-".to_owned(), |c| c.to_string()),
            live_release.unwrap_or("(no release)"),
            colour(&self.blue),
            colour(&self.green),
            self.lock.as_ref().map_or("free".to_owned(), lock::describe),
        );
        if let Some(b) = &self.behind {
            text.push_str(&format!("    behind: {b}\n"));
        }
        if let Some(w) = &self.waiting {
            let state = match w.colour {
                Colour::Blue => &self.blue.unit,
                Colour::Green => &self.green.unit,
            };
            text.push_str(&format!(
                "    waiting for promotion: {} in {} (port {}, {state}), by {}@{}: `shipit promote` or `shipit discard`\n",
                w.release, w.colour, w.port, w.user, w.machine
            ));
        }
        for p in &self.processes {
            text.push_str(&format!(
                "    process {}: blue {}, green {}\n",
                p.name, p.blue, p.green
            ));
        }
        for j in &self.jobs {
            // systemd says `n/a` for a timer that never fired, with a default result.
            let last = match j.last_run.as_str() {
                "" | "n/a" | "0" => "not run yet".to_owned(),
                when => format!(
                    "last run {when} ({}, exit status {})",
                    j.result, j.exit_status
                ),
            };
            text.push_str(&format!(
                "    job {}: {last}, next run {}\n",
                j.name, j.next_run
            ));
        }
        for a in &self.accessories {
            text.push_str(&format!("    accessory {}", crate::ui::Render::text(a)));
        }
        text
    }
}

fn colour_status(c: &ColourState) -> ColourStatus {
    ColourStatus {
        unit: c.unit.clone(),
        release: c.release.as_ref().map(|r| r.release.clone()),
        port: c.port,
    }
}

/// Every host's line, unreachable ones included (named, with why), then the hosts an earlier
/// run deployed to that are no longer configured.
pub async fn status(config: &Config) -> Result<Vec<HostStatus>, Error> {
    let fleet = Fleet::connect_tolerating(&config.hosts, &config.ssh, Tolerate::All).await?;
    let result = rows(config, &fleet).await;
    fleet.close().await;
    result
}

async fn rows(config: &Config, fleet: &Fleet) -> Result<Vec<HostStatus>, Error> {
    let states = crate::fleet::observe(fleet, config).await?;
    let behind: Vec<crate::state::Behind> = states
        .iter()
        .flat_map(|(_, s)| s.behind.iter().cloned())
        .collect();
    let removed = crate::fleet::removed_hosts(config, &states);
    let client = probe::client(true)?;
    let mut rows = each_bounded(
        fleet.hosts.iter().cloned().zip(states).collect(),
        fleet.max_parallel,
        |(host, (name, state)): (_, (String, HostState))| {
            let behind = behind.iter().find(|b| b.host == name).map(|b| {
                format!(
                    "missed the {} to {} (it could not be reached then)",
                    b.command, b.release
                )
            });
            async move {
                let ((processes, jobs), accessories) = tokio::join!(
                    parts_of(config, &host),
                    crate::accessory::unit::on_host(config, &host)
                );
                HostStatus {
                    processes,
                    jobs,
                    accessories,
                    behind,
                    waiting: state.waiting.clone(),
                    ..host_row(config, &client, &host, name, &state).await
                }
            }
        },
    )
    .await;
    for (spec, row) in config.hosts.iter().zip(0..) {
        if let Some(u) = fleet.skipped.iter().find(|u| u.spec == *spec) {
            rows.insert(
                row.min(rows.len()),
                HostStatus {
                    host: spec.to_string(),
                    unreachable: Some(u.why.clone()),
                    ..HostStatus::default()
                },
            );
        }
    }
    rows.extend(removed.into_iter().map(|host| HostStatus {
        retire: Some(format!("shipit retire {} {host}", config.environment)),
        host,
        ..HostStatus::default()
    }));
    Ok(rows)
}

/// One reachable host's line: the live colour and its health (checked directly), what users
/// get, each colour, the lock.
async fn host_row(
    config: &Config,
    client: &probe::Client,
    host: &std::sync::Arc<crate::ssh::Host>,
    name: String,
    state: &HostState,
) -> HostStatus {
    let live = state.live();
    let health = match live {
        Some(l) if state.colour(l.colour).running() => {
            // Checked on the path the live copy was started with.
            let path = state
                .colour(l.colour)
                .health_path
                .clone()
                .unwrap_or_else(|| config.health.path.clone());
            let expect = Expect {
                path: &path,
                json: config.health.expect_json.as_ref(),
            };
            match Tunnel::open(host, l.port).await {
                Ok(t) => {
                    let a = probe::get(client, &t, expect.path, None).await;
                    if expect.healthy(&a) {
                        Health::Healthy
                    } else {
                        Health::Unhealthy(a.to_string())
                    }
                }
                Err(e) => Health::Unknown(e.to_string()),
            }
        }
        Some(_) => Health::Down,
        None => Health::None,
    };
    let through_backup = state
        .serving()
        .filter(|(_, via)| *via == crate::state::Via::Backup)
        .map(|(l, _)| l.colour);
    HostStatus {
        host: name,
        live: live.map(|l| l.colour),
        port: live.map(|l| l.port),
        release: state.live_release().map(|r| r.release.clone()),
        health,
        through_backup,
        blue: colour_status(&state.blue),
        green: colour_status(&state.green),
        lock: state.lock.clone(),
        ..HostStatus::default()
    }
}

/// A host's processes and jobs; nothing when it has none (or could not say: then each reads
/// `unknown`).
async fn parts_of(
    config: &Config,
    host: &crate::ssh::Host,
) -> (Vec<ProcessStatus>, Vec<JobStatus>) {
    let site = config.site();
    let units: Vec<String> = config
        .processes
        .iter()
        .filter(|p| p.hosts.contains(&host.spec))
        .flat_map(|p| [Colour::Blue, Colour::Green].map(|c| site.process_instance(&p.name, c)))
        .collect();
    let jobs: Vec<(String, String)> = config
        .jobs
        .iter()
        .filter(|j| j.host == host.spec)
        .map(|j| (site.job_timer_unit(&j.name), site.job_service_unit(&j.name)))
        .collect();
    if units.is_empty() && jobs.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let cmd = crate::remote::scripts::PartsStatus {
        units: &units,
        jobs: &jobs,
    }
    .command();
    let text = host
        .check(&cmd)
        .await
        .map(|out| String::from_utf8_lossy(&out).into_owned())
        .unwrap_or_default();
    parts(config, &host.spec, &text)
}
