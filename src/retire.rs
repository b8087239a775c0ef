//! `shipit retire <env> HOST...`: take hosts that are no longer in `hosts` out of the
//! environment for good. An earlier deploy left the app on them (its copies, processes and
//! job timers, its nginx site); each run records the hosts it deployed to, so `deploy`,
//! `status` and `doctor` name such hosts, and this command retires them: units stopped and
//! removed, containers removed, the site taken out of nginx (validated first), the
//! configuration and its secrets removed; the history and the backups stay on the host. The
//! configured hosts then forget them. Holds the environment's lock on every host it reaches.

use serde::Serialize;

use crate::config::{Config, HostSpec};
use crate::error::Error;
use crate::fleet::{Fleet, Tolerate};
use crate::remote::scripts;
use crate::ui;

/// What was taken off one host, as the host said.
#[derive(Debug, Serialize)]
pub struct Retired {
    pub host: String,
    pub stopped: Vec<String>,
    pub removed_containers: Vec<String>,
    pub site_removed: bool,
    /// Units still running afterwards (with their state): retiring did not finish.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still: Vec<String>,
}

impl ui::Render for Retired {
    fn text(&self) -> String {
        String::new()
    }
}

impl Retired {
    fn parse(host: &str, text: &str) -> Retired {
        let mut r = Retired {
            host: host.to_owned(),
            stopped: Vec::new(),
            removed_containers: Vec::new(),
            site_removed: false,
            still: Vec::new(),
        };
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("stopped", u)) => r.stopped.push(u.to_owned()),
                Some(("removed", c)) => r.removed_containers.push(c.to_owned()),
                Some(("still", u)) => r.still.push(u.to_owned()),
                _ if line == "site removed" => r.site_removed = true,
                _ => {}
            }
        }
        r
    }
}

/// Retire `hosts` (as written in an earlier `hosts`, or as `shipit status` names them); with
/// `forget_only`, a host gone for good (its disk with it) is only forgotten by the others.
pub async fn retire(
    config: &Config,
    hosts: &[String],
    forget_only: bool,
    lock_wait: Option<std::time::Duration>,
) -> Result<Vec<Retired>, Error> {
    let mut specs: Vec<HostSpec> = Vec::new();
    for h in hosts {
        let spec = crate::config::parse_host(h).map_err(|message| Error::BadHost {
            host: h.clone(),
            message,
        })?;
        if config.hosts.contains(&spec) {
            return Err(Error::RetireConfigured {
                host: spec.to_string(),
                environment: config.environment.clone(),
            });
        }
        specs.push(spec);
    }
    // The hosts to retire must be reached; the configured ones are told to forget them when
    // they can be.
    let mut all = if forget_only {
        Vec::new()
    } else {
        specs.clone()
    };
    all.extend(config.hosts.iter().cloned());
    let fleet = Fleet::connect_tolerating(&all, &config.ssh, Tolerate::All).await?;
    if let Some(u) = fleet.skipped.iter().find(|u| specs.contains(&u.spec)) {
        let e = Error::Connect {
            host: u.spec.to_string(),
            message: u.why.clone(),
            help: Some(format!(
                "it must be reachable to be retired; when it is gone for good, its disk with it, forget it with `shipit retire {} {} --forget`",
                config.environment, u.spec
            )),
        };
        fleet.close().await;
        return Err(e);
    }
    let result = crate::lock::with_lock(
        &fleet,
        config,
        "retire",
        "-",
        lock_wait,
        None,
        |_, _cancel| retire_locked(config, &fleet, &specs),
    )
    .await;
    fleet.close().await;
    result
}

async fn retire_locked(
    config: &Config,
    fleet: &Fleet,
    specs: &[HostSpec],
) -> Result<Vec<Retired>, Error> {
    let site = config.site();
    let retiring: Vec<_> = fleet
        .hosts
        .iter()
        .filter(|h| specs.contains(&h.spec))
        .cloned()
        .collect();
    let results = crate::fleet::each_bounded(retiring, fleet.max_parallel, |host| {
        let site = &site;
        async move {
            let out = host.check(&scripts::RetireSite { site }.command()).await?;
            let r = Retired::parse(&host.spec.to_string(), &String::from_utf8_lossy(&out));
            ui::status(
                "Retired",
                &format!(
                    "{} {} from `{}`: {} unit{} stopped, {} container{} removed, {}",
                    config.app,
                    config.environment,
                    host.spec,
                    r.stopped.len(),
                    ui::plural(r.stopped.len()),
                    r.removed_containers.len(),
                    ui::plural(r.removed_containers.len()),
                    if r.site_removed {
                        "its nginx site removed"
                    } else {
                        "no nginx site was there"
                    }
                ),
            );
            if !r.still.is_empty() {
                ui::warn(&format!(
                    "`{}`: still running after retiring: {}",
                    host.spec,
                    r.still.join(", ")
                ));
            }
            Ok::<_, Error>(r)
        }
    })
    .await;
    let retired = crate::fleet::collect(results)?;
    forget(config, fleet, specs).await;
    Ok(retired)
}

/// The configured hosts forget `specs` (their fleet and behind records).
async fn forget(config: &Config, fleet: &Fleet, specs: &[HostSpec]) {
    let site = config.site();
    let names: Vec<String> = specs.iter().map(ToString::to_string).collect();
    let results = fleet
        .each(|host| {
            let cmd = scripts::ForgetHosts {
                site: &site,
                hosts: &names,
            }
            .command();
            async move { (host.spec.to_string(), host.check(&cmd).await) }
        })
        .await;
    for (host, r) in results {
        if let Err(e) = r {
            ui::warn(&format!(
                "`{host}` could not forget the retired hosts: {}",
                crate::fleet::first_line(&e)
            ));
        }
    }
}
