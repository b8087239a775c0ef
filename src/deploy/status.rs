//! `shipit status`: per host, what serves (colour, port, release) and whether it is healthy,
//! each colour's unit, release and port, and the lock; all read from the hosts.

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::lock;
use crate::model::Colour;
use crate::probe::{self, Expect, Tunnel};
use crate::ssh::{each_bounded, with_fleet};
use crate::state::{ColourState, HostState};

/// One colour on a host.
#[derive(Debug, Serialize)]
pub struct ColourStatus {
    /// `systemctl is-active`.
    pub unit: String,
    pub release: Option<String>,
    pub port: Option<u16>,
}

/// The live copy's health, checked directly on its port.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Health {
    Healthy,
    Unhealthy(String),
    /// The live colour's unit is not running.
    Down,
    /// It could not be checked (the tunnel failed).
    Unknown(String),
    /// Nothing is live.
    None,
}

/// One host's line in `shipit status`.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub live: Option<Colour>,
    pub port: Option<u16>,
    pub release: Option<String>,
    pub health: Health,
    pub blue: ColourStatus,
    pub green: ColourStatus,
    pub lock: Option<crate::state::LockInfo>,
}

impl crate::ui::Render for HostStatus {
    /// The line `shipit status` prints for the host.
    fn text(&self) -> String {
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
        format!(
            "{}: live {} {} ({}); blue {}, green {}; lock {}\n",
            self.host,
            self.live.map_or("-".to_owned(), |c| c.to_string()),
            self.release.as_deref().unwrap_or("(no release)"),
            health,
            colour(&self.blue),
            colour(&self.green),
            self.lock.as_ref().map_or("free".to_owned(), lock::describe),
        )
    }
}

fn colour_status(c: &ColourState) -> ColourStatus {
    ColourStatus {
        unit: c.unit.clone(),
        release: c.release.as_ref().map(|r| r.release.clone()),
        port: c.port,
    }
}

pub async fn status(config: &Config) -> Result<Vec<HostStatus>, Error> {
    with_fleet(config, async |fleet| {
        let states = super::observe(fleet, config).await?;
        let client = probe::client(true)?;
        let rows = each_bounded(
            fleet.hosts.iter().cloned().zip(states).collect(),
            fleet.max_parallel,
            |(host, (name, state)): (_, (String, HostState))| {
                let client = client.clone();
                async move {
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
                            match Tunnel::open(&host, l.port).await {
                                Ok(t) => {
                                    let a = probe::get(&client, &t, expect.path, None).await;
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
                    HostStatus {
                        host: name,
                        live: live.map(|l| l.colour),
                        port: live.map(|l| l.port),
                        release: state.live_release().map(|r| r.release.clone()),
                        health,
                        blue: colour_status(&state.blue),
                        green: colour_status(&state.green),
                        lock: state.lock.clone(),
                    }
                }
            },
        )
        .await;
        Ok(rows)
    })
    .await
}
