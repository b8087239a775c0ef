//! `shipit deploy --no-promote`'s other half: `shipit promote` switches to the release waiting
//! for promotion with a deploy's run ([`super::converge_locked`], `Kind::Promote`), `shipit
//! discard` stops it; and the rules a deploy, rollback or promotion follows about what waits
//! (refused where the live copy crashed, refused unless it is what was previewed, a warning
//! when a run replaces it).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Extras, Held, Kind, Report, announce, converge_locked, env, plan, report};
use crate::config::Config;
use crate::error::Error;
use crate::fleet::{Fleet, observe_with};
use crate::lock;
use crate::remote::scripts;
use crate::secret::Secrets;
use crate::state::{HostState, ReleaseRef};
use crate::ui::{self, plural};
use plan::Plan;

/// `shipit promote` and `shipit discard`.
#[derive(Clone, Debug, Default)]
pub struct PromoteOptions {
    pub lock_wait: Option<Duration>,
}

/// `deploy --no-promote` is refused where the live copy has crashed: the idle colour it would
/// start in is what users get meanwhile.
pub(super) fn refuse_no_promote(config: &Config, plan: &Plan) -> Result<(), Error> {
    let hosts = plan::serving_through_backup(plan);
    if hosts.is_empty() {
        return Ok(());
    }
    Err(Error::NoPromoteOnIncident {
        hosts,
        environment: config.environment.clone(),
    })
}

/// A deploy or rollback over a release waiting for promotion: say what becomes of it.
pub(super) fn warn_replaced_waiting(plan: &Plan, states: &[(String, HostState)]) {
    let Ok(waiting) = plan::waiting_target(states) else {
        return;
    };
    if plan.is_noop() {
        return;
    }
    if waiting == plan.target {
        ui::status(
            "Promoting",
            &format!(
                "{} waited for promotion: this run switches to it where it runs warm",
                waiting.release
            ),
        );
    } else {
        ui::warn(&format!(
            "{} waited for promotion (`deploy --no-promote`): this run replaces it with {}",
            waiting.release, plan.target.release
        ));
    }
}

/// `promote` switches to exactly the copies that were previewed, or to none.
pub(super) fn refuse_changed_waiting(
    config: &Config,
    plan: &Plan,
    states: &[(String, HostState)],
) -> Result<(), Error> {
    let details = plan::changed_waiting(plan, states);
    if details.is_empty() {
        return Ok(());
    }
    Err(Error::WaitingChanged {
        details,
        environment: config.environment.clone(),
    })
}

/// The release waiting for promotion, as every host that holds one agrees.
fn waiting_target(
    config: &Config,
    states: &[(String, HostState)],
) -> Result<(ReleaseRef, Vec<String>), Error> {
    let environment = config.environment.clone();
    plan::waiting_target(states)
        .map(|t| (t, Vec::new()))
        .map_err(|e| match e {
            plan::WaitingError::Nothing => Error::NothingWaits { environment },
            plan::WaitingError::Differs(details) => Error::WaitingChanged {
                details,
                environment,
            },
        })
}

/// `shipit promote`: the release waiting for promotion goes live with the switch of a deploy
/// (gate again, fleet-atomic switch, verification, smoke check, post-deploy hooks, undone on
/// failure), provided every host still runs the copy that was previewed.
pub async fn promote(config: &Config, options: &PromoteOptions) -> Result<Report, Error> {
    let started = Instant::now();
    let secrets = Secrets::load(&config.app_dir)?;
    let settings = env::settings_text(config, &secrets)?;
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = converge_locked(
        config,
        &fleet,
        &secrets,
        Kind::Promote,
        "waiting release",
        options.lock_wait,
        settings,
        Extras::default(),
        |states| waiting_target(config, states),
    )
    .await;
    fleet.close().await;
    let release = result.as_ref().map_or_else(
        |_| "waiting release".to_owned(),
        |(p, _)| p.target.release.clone(),
    );
    announce(
        config,
        (Kind::Promote, Held::No),
        &release,
        result.as_ref().map(|(plan, _)| (plan, &[][..])),
    )
    .await;
    let (plan, switched) = result?;
    ui::status(
        "Promoted",
        &format!(
            "{} on {} host{} in {:.2}s",
            plan.target.release,
            plan.steps.len(),
            plural(plan.steps.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(report(plan, switched, Vec::new(), started))
}

/// What `shipit discard` did.
#[derive(Debug, Serialize)]
pub struct Discarded {
    pub release: String,
    pub hosts: Vec<String>,
}

impl crate::ui::Render for Discarded {
    fn text(&self) -> String {
        String::new()
    }
}

/// `shipit discard`: the release waiting for promotion is stopped on every host (its web copy
/// and processes), `[preview]` answers 502 again, and the record goes; read back after. The
/// live release is never touched: a host where the waiting colour serves is refused.
pub async fn discard(config: &Config, options: &PromoteOptions) -> Result<Discarded, Error> {
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = lock::with_lock(
        &fleet,
        config,
        "discard",
        "waiting release",
        options.lock_wait,
        None,
        |_held, _cancel| async {
            let states = observe_with(&fleet, config, None).await?;
            let (target, _) = waiting_target(config, &states)?;
            discard_locked(config, &fleet, &states, &target).await
        },
    )
    .await;
    fleet.close().await;
    result
}

async fn discard_locked(
    config: &Config,
    fleet: &Fleet,
    states: &[(String, HostState)],
    target: &ReleaseRef,
) -> Result<Discarded, Error> {
    let site = config.site();
    // Never the colour users get.
    let serving: Vec<String> = states
        .iter()
        .filter(|(_, s)| {
            s.waiting
                .as_ref()
                .is_some_and(|w| s.serving().is_some_and(|(live, _)| live.colour == w.colour))
        })
        .map(|(h, s)| {
            format!(
                "`{h}`: users get {} from the colour it waits in",
                s.waiting.as_ref().map_or("", |w| w.release.as_str())
            )
        })
        .collect();
    if !serving.is_empty() {
        return Err(Error::WaitingChanged {
            details: serving,
            environment: config.environment.clone(),
        });
    }
    let work: Vec<(std::sync::Arc<crate::ssh::Host>, crate::state::Waiting)> = fleet
        .hosts
        .iter()
        .zip(states)
        .filter_map(|(h, (_, s))| s.waiting.clone().map(|w| (std::sync::Arc::clone(h), w)))
        .collect();
    let progress = ui::Step::new(
        "Discarding",
        work.iter().map(|(h, _)| &h.spec),
        &format!("stopping {}", target.release),
    );
    let include = site.preview_include();
    let nothing = crate::state::preview_nothing_waits(config.ports.blue);
    let results = crate::fleet::each_bounded(work.clone(), fleet.max_parallel, |(host, w)| {
        let line = progress.line(&host.spec);
        let site = &site;
        let (include, nothing) = (&include, &nothing);
        async move {
            let clear = scripts::ClearWaiting {
                preview: config
                    .preview
                    .as_ref()
                    .map(|_| (include.as_str(), nothing.as_str())),
                record: &site.waiting_record(),
            }
            .command();
            let mut units = vec![site.unit(w.colour)];
            units.extend(
                config
                    .processes
                    .iter()
                    .filter(|p| p.hosts.contains(&host.spec))
                    .map(|p| site.process_instance(&p.name, w.colour)),
            );
            let stop = scripts::StopUnits {
                label: "stop the waiting release",
                units: &units,
            }
            .command();
            let r = async {
                host.check(&clear).await?;
                host.check(&stop).await
            }
            .await
            .map(|_| ());
            line.finish_with(&r, "stopped");
            r
        }
    })
    .await;
    drop(progress);
    crate::fleet::collect(results)?;
    // Read back: nothing waits anywhere, and no waiting colour answers.
    let after = observe_with(fleet, config, None).await?;
    let left: Vec<String> = after
        .iter()
        .zip(&work)
        .filter_map(|((h, s), (_, w))| {
            let c = s.colour(w.colour);
            if s.waiting.is_some() {
                Some(format!("`{h}` still records a waiting release"))
            } else if c.running() {
                Some(format!("`{h}`: {} still runs ({})", w.colour, c.unit))
            } else {
                None
            }
        })
        .collect();
    if !left.is_empty() {
        return Err(Error::WaitingChanged {
            details: left,
            environment: config.environment.clone(),
        });
    }
    ui::status(
        "Discarded",
        &format!(
            "{} on {} host{} (read back: stopped, nothing waits; users never left {})",
            target.release,
            work.len(),
            plural(work.len()),
            live_releases(&after)
        ),
    );
    Ok(Discarded {
        release: target.release.clone(),
        hosts: work.iter().map(|(h, _)| h.spec.to_string()).collect(),
    })
}

/// The releases users get, as the hosts say.
fn live_releases(states: &[(String, HostState)]) -> String {
    let live: std::collections::BTreeSet<String> = states
        .iter()
        .filter_map(|(_, s)| {
            let (live, _) = s.serving()?;
            Some(s.colour(live.colour).release.clone()?.release)
        })
        .collect();
    if live.is_empty() {
        "nothing".to_owned()
    } else {
        live.into_iter().collect::<Vec<_>>().join(", ")
    }
}
