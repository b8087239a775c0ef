//! `shipit deploy` and `shipit rollback`: build (or find) the release, take the lock, read the
//! hosts, plan, and converge; then announce what happened.
//!
//! - [`plan`] decides, purely, from what the hosts hold;
//! - `run` executes the stages of one deploy or rollback, and its one undo path;
//! - `env` renders the container's environment;
//! - [`status`] and [`history`] are the read-only commands beside them (`shipit status`,
//!   `shipit releases`); `smoke` is the burst through nginx after the switch;
//! - `promote`: `shipit promote` and `shipit discard`, for a release left waiting by
//!   `deploy --no-promote`; [`canary`] judges a `deploy --canary` step, purely.

pub mod canary;
mod env;
mod promote;
pub use env::app_env;
pub use promote::{Discarded, PromoteOptions, discard, promote};
pub(crate) use run::release_label;
pub mod history;
pub mod plan;
mod run;
mod smoke;
pub mod status;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::{Fleet, Tolerate, collect, first_line, observe_with, parse_host_state};
use crate::lock;
use crate::remote::scripts;
use crate::secret::Secrets;
use crate::state::{HostState, ReleaseRef};
use crate::ui::{self, plural};
use plan::{Action, HostChoice, Plan, PlanError};

#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    pub dry_run: bool,
    pub lock_wait: Option<Duration>,
    pub build: crate::build::Options,
    /// Deploy the release's image already in the registry instead of building it.
    pub no_build: bool,
    /// No backup before the release command (recorded in the history).
    pub skip_backup: bool,
    /// Leave out hosts that cannot be reached (named, recorded as behind).
    pub skip_unreachable: bool,
    /// Stop once every host is healthy: the release waits for `shipit promote`.
    pub no_promote: bool,
    /// `--canary [STEPS]`: the steps as written (empty: `[canary] steps`).
    pub canary: Option<String>,
}

/// What a run does beside the plan: the image a deploy brings (its platform is checked against
/// every host's before anything is sent or started), whether to send it over SSH first,
/// whether to skip the backup.
#[derive(Clone, Copy, Default)]
struct Extras<'a> {
    built: Option<&'a crate::build::Image>,
    ship: Option<&'a crate::build::Image>,
    skip_backup: bool,
    no_promote: bool,
    /// The canary's steps, in percent.
    canary: Option<&'a [u8]>,
}

#[derive(Clone, Debug, Default)]
pub struct RollbackOptions {
    pub to: Option<String>,
    pub dry_run: bool,
    pub lock_wait: Option<Duration>,
    /// Leave out hosts that cannot be reached (named, recorded as behind).
    pub skip_unreachable: bool,
}

/// How many unreachable hosts a deploy or rollback may leave out.
fn tolerate(config: &Config, skip_unreachable: bool) -> Tolerate {
    match (skip_unreachable, config.deploy.tolerate_unreachable) {
        (true, _) => Tolerate::All,
        (false, 0) => Tolerate::None,
        (false, n) => Tolerate::AtMost(n),
    }
}

/// What a deploy or rollback did, per host.
#[derive(Debug, Serialize)]
pub struct Report {
    pub release: String,
    pub image: String,
    pub steps: Vec<plan::HostStep>,
    /// Without a registry: what each host got of the image over SSH.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<crate::transfer::Sent>,
    /// Hosts left out as unreachable (`--skip-unreachable`): they are behind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<String>,
    /// How long the fleet served two releases at the switch: from the first host switched to
    /// the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_window_seconds: Option<f64>,
    /// `--canary`: each step that passed, with its figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// The run's verdict beside the report: hosts left behind make it exit with its own code.
    pub fn verdict(&self, environment: &str) -> Result<(), Error> {
        if self.behind.is_empty() {
            return Ok(());
        }
        Err(Error::LeftBehind {
            hosts: self.behind.clone(),
            release: self.release.clone(),
            environment: environment.to_owned(),
        })
    }
}

impl crate::ui::Render for Report {
    /// Nothing: a deploy's status lines said it all as it went.
    fn text(&self) -> String {
        String::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Deploy,
    Rollback,
    /// The release waiting for promotion, switched to (`shipit promote`).
    Promote,
}

impl Kind {
    pub(crate) fn command(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::Promote => "promote",
        }
    }
}

/// The states read under the lock, or read again when a host's is missing (a lock taken over).
async fn states_under_lock(
    fleet: &Fleet,
    config: &Config,
    held: &[Option<String>],
    settings: Option<String>,
) -> Result<Vec<(String, HostState)>, Error> {
    if held.len() != fleet.hosts.len() || held.iter().any(Option::is_none) {
        return observe_with(fleet, config, settings).await;
    }
    let parsed = fleet
        .hosts
        .iter()
        .zip(held.iter().flatten())
        .map(|(host, text)| parse_host_state(config, host, "take the lock", text))
        .collect();
    collect(parsed)
}

fn plan_error(config: &Config, e: PlanError) -> Error {
    let environment = config.environment.clone();
    match e {
        PlanError::NotProvisioned { host } => Error::NotProvisioned { host, environment },
        PlanError::NotMoved { host } => Error::NotMoved { host, environment },
        PlanError::NoPrevious { current } => Error::NoPrevious {
            current,
            environment,
        },
        PlanError::NotRetained { wanted, available } => Error::NotRetained { wanted, available },
        PlanError::HostsDisagree { wanted, choices } => Error::RollbackDisagree {
            wanted,
            choices: choices.iter().map(describe_choice).collect(),
            environment,
        },
    }
}

fn describe_choice(c: &HostChoice) -> String {
    match &c.release {
        Some(r) => format!("`{}` would go to {} (`{}`)", c.host, r.release, r.image),
        None => format!("`{}` has no such release in its history", c.host),
    }
}

/// Describe a plan, one line per host.
pub fn describe(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| {
            let from = s.from.as_ref().map_or("nothing answers".to_owned(), |f| {
                format!(
                    "{} serves {} on port {}{}",
                    f.colour,
                    f.release.release,
                    f.port,
                    if f.via == crate::state::Via::Backup {
                        " (as nginx's backup: the live copy does not answer)"
                    } else {
                        ""
                    }
                )
            });
            let what = match s.action {
                Action::AlreadyLive => format!(
                    "already serves {} on {}: nothing to do",
                    plan.target.release, s.to
                ),
                Action::SwitchToWarm => format!(
                    "{from}; switch to {} (port {}) where {} runs warm",
                    s.to, s.port, plan.target.release
                ),
                Action::StartAndSwitch => format!(
                    "{from}; start {} on {} (port {}), gate on health, switch",
                    plan.target.release, s.to, s.port
                ),
            };
            let mut line = format!("{}: {what}", s.host);
            if s.follows {
                line.push_str(" (it has no history of that release: it follows the other hosts)");
            }
            if let Some(why) = &s.why
                && s.action != Action::AlreadyLive
            {
                line.push_str(&format!(" ({why})"));
            }
            line
        })
        .collect()
}

fn print_plan(config: &Config, plan: &Plan, states: &[(String, HostState)]) {
    for line in describe(plan) {
        ui::out(&format!("{line}\n"));
    }
    warn_removed(config, states);
    for (host, state) in states {
        if let Some(holder) = &state.lock {
            ui::out(&format!("{host}: locked by {}\n", lock::describe(holder)));
        }
    }
}

pub async fn deploy(config: &Config, options: &DeployOptions) -> Result<Report, Error> {
    let started = Instant::now();
    let secrets = Secrets::load(&config.app_dir)?;
    // Missing secrets fail before anything else, dry runs included.
    let settings = env::settings_text(config, &secrets)?;
    let tolerate = tolerate(config, options.skip_unreachable);
    let canary = canary_steps(config, options.canary.as_deref())?;
    if options.dry_run {
        let (release, _) = crate::build::prepare(config, &options.build)?;
        let target = ReleaseRef {
            release: release.version.to_string(),
            image: format!("{}:{} (not built)", config.image, release.tag()),
        };
        let fleet = Fleet::connect_tolerating(&config.hosts, &config.ssh, tolerate).await?;
        let states = observe_with(&fleet, config, Some(settings)).await;
        let skipped = skipped_names(&fleet);
        fleet.close().await;
        let states = states?;
        let plan = plan::plan(config, &target, &states, &[]).map_err(|e| plan_error(config, e))?;
        print_plan(config, &plan, &states);
        return Ok(report(plan, Switched::default(), skipped, started));
    }

    let mut release = format!("{} (not built)", config.version);
    let result = async {
        // Build and push first (or find the pushed image): a failure here touches no host.
        let image = if options.no_build {
            crate::build::find_built(config, &options.build).await?
        } else {
            crate::build::build_and_push(config, &options.build).await?
        };
        release = image.release.clone();
        let target = ReleaseRef {
            release: image.release.clone(),
            image: image.target(),
        };
        let fleet = Fleet::connect_tolerating(&config.hosts, &config.ssh, tolerate).await?;
        let result = converge_locked(
            config,
            &fleet,
            &secrets,
            Kind::Deploy,
            &target.release,
            options.lock_wait,
            settings,
            Extras {
                built: Some(&image),
                ship: image.over_ssh().then_some(&image),
                skip_backup: options.skip_backup,
                no_promote: options.no_promote,
                canary: canary.as_deref(),
            },
            |_| Ok((target.clone(), Vec::new())),
        )
        .await;
        let skipped = skipped_names(&fleet);
        fleet.close().await;
        result.map(|(plan, switched)| (plan, switched, skipped))
    }
    .await;
    let label = match &result {
        Ok((plan, _, _)) => plan.target.release.clone(),
        Err(_) => release,
    };
    let kind = if options.no_promote {
        Held::Waiting
    } else {
        Held::No
    };
    announce(
        config,
        (Kind::Deploy, kind),
        &label,
        result
            .as_ref()
            .map(|(plan, _, skipped)| (plan, skipped.as_slice())),
    )
    .await;
    let (plan, switched, skipped) = result?;
    if options.no_promote && !plan.is_noop() {
        ui::status(
            "Next",
            &format!(
                "`shipit promote {env}` switches every host to {} (checked, verified, undone on failure); `shipit discard {env}` stops it",
                plan.target.release,
                env = config.environment
            ),
        );
        return Ok(report(plan, switched, skipped, started));
    }
    ui::status(
        "Deployed",
        &format!(
            "{} to {} host{} in {:.2}s{}",
            plan.target.release,
            plan.steps.len(),
            plural(plan.steps.len()),
            started.elapsed().as_secs_f64(),
            left_out(&skipped)
        ),
    );
    Ok(report(plan, switched, skipped, started))
}

/// The hosts a run left out, by name.
fn skipped_names(fleet: &Fleet) -> Vec<String> {
    fleet.skipped.iter().map(|u| u.spec.to_string()).collect()
}

/// `; left out: ...` for a status line.
fn left_out(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(
            "; left out (unreachable, now behind): {}",
            skipped
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Hosts an earlier run deployed to that are no longer configured: they may still serve the
/// app and run its jobs. Each is named with the command that retires it.
fn warn_removed(config: &Config, states: &[(String, HostState)]) {
    for host in crate::fleet::removed_hosts(config, states) {
        ui::warn(&format!(
            "`{host}` is no longer in `hosts` but was deployed to: it may still serve {} and run its jobs; retire it with `shipit retire {} {host}`",
            config.app, config.environment
        ));
    }
}

/// What a rollback's target needs beside the plan: the image, from this machine's engine when
/// images go over SSH and a host may lack it (a host that follows the fleet, say).
async fn rollback_image(
    config: &Config,
    target: &ReleaseRef,
) -> Result<Option<crate::build::Image>, Error> {
    if config.deploy.images != crate::config::Images::Ssh || !target.image.starts_with("sha256:") {
        return Ok(None);
    }
    crate::build::local_image(&target.image, &target.release).await
}

/// What a converged run measured beside its plan.
#[derive(Default)]
struct Switched {
    /// Without a registry: what each host got of the image over SSH.
    sent: Vec<crate::transfer::Sent>,
    /// How long the fleet served two releases at the switch.
    window: Option<Duration>,
    /// The canary steps that passed, with their figures.
    canary: Vec<String>,
}

/// Under the lock: read the hosts, choose the target, plan, and converge (sending `ship` to
/// the hosts over SSH first, without a registry). The plan, and what each host got.
#[allow(clippy::too_many_arguments)]
async fn converge_locked<F>(
    config: &Config,
    fleet: &Fleet,
    secrets: &Secrets,
    kind: Kind,
    label: &str,
    lock_wait: Option<Duration>,
    settings: String,
    extras: Extras<'_>,
    target_of: F,
) -> Result<(Plan, Switched), Error>
where
    F: FnOnce(&[(String, HostState)]) -> Result<(ReleaseRef, Vec<String>), Error>,
{
    let query = scripts::ReadState::of(&config.site(), Some(settings.clone()));
    lock::with_lock(
        fleet,
        config,
        kind.command(),
        label,
        lock_wait,
        Some(&query),
        |held, cancel| async move {
            let states = states_under_lock(fleet, config, &held.states, Some(settings)).await?;
            warn_removed(config, &states);
            let (target, followers) = target_of(&states)?;
            let plan = plan::plan(config, &target, &states, &followers)
                .map_err(|e| plan_error(config, e))?;
            if let Some(image) = extras.built {
                refuse_foreign(config, image, &states)?;
            }
            if extras.no_promote {
                promote::refuse_no_promote(config, &plan)?;
            }
            if extras.canary.is_some() {
                refuse_canary(&plan)?;
            }
            if kind != Kind::Promote {
                promote::warn_replaced_waiting(&plan, &states);
            }
            if kind == Kind::Promote {
                promote::refuse_changed_waiting(config, &plan, &states)?;
            }
            // A deploy that would change what serves never goes on with the provisioned files
            // behind the configuration (a host not provisioned at all, or in the earlier
            // layout, was refused by the plan already, saying so).
            if kind != Kind::Rollback {
                crate::provision::refuse_drift(config, fleet).await?;
            }
            let rollback_ship = match kind {
                Kind::Rollback if !plan.is_noop() => rollback_image(config, &target).await?,
                _ => None,
            };
            let run = run::Run {
                config,
                fleet,
                secrets,
                kind,
                cancel,
                run_id: held.id,
                plan: &plan,
                states: &states,
                ship: extras.ship.or(rollback_ship.as_ref()),
                skip_backup: extras.skip_backup,
                backup_note: Default::default(),
                sent: Default::default(),
                done: Default::default(),
                window: Default::default(),
                no_promote: extras.no_promote,
                canary: extras.canary,
                canary_passed: Default::default(),
            };
            run.converge().await?;
            let window = run.window.into_inner().ok().flatten();
            let sent = run.sent.into_inner().unwrap_or_default();
            let canary = run.canary_passed.into_inner().unwrap_or_default();
            Ok((
                plan,
                Switched {
                    sent,
                    window,
                    canary,
                },
            ))
        },
    )
    .await
}

/// `--canary [STEPS]`: the steps written, else `[canary] steps`; refused without `[canary]`
/// (nginx keeps no log of which copy answered to judge from).
fn canary_steps(config: &Config, written: Option<&str>) -> Result<Option<Vec<u8>>, Error> {
    let Some(written) = written else {
        return Ok(None);
    };
    let Some(canary) = &config.canary else {
        return Err(Error::CanaryUnavailable {
            reason: "there is no `[canary]` in the configuration".into(),
            help: format!(
                "add `[canary]` to shipit.toml (its steps, hold and thresholds; README: \"Canary\"), run `shipit provision {}` (nginx's log of which copy answered), then deploy again",
                config.environment
            ),
        });
    };
    if written.trim().is_empty() {
        return Ok(Some(canary.steps.clone()));
    }
    crate::config::parse_canary_steps(written)
        .map(Some)
        .map_err(|reason| Error::CanaryUnavailable {
            reason,
            help: "give rising shares, such as `--canary 10%,50%`".into(),
        })
}

/// A canary compares the new release with the live one on every host that changes: each
/// must have a live copy that answers (not a crashed one served through its backup).
fn refuse_canary(plan: &Plan) -> Result<(), Error> {
    let without: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.action != Action::AlreadyLive)
        .filter(|s| {
            s.from
                .as_ref()
                .is_none_or(|f| f.via == crate::state::Via::Backup)
        })
        .map(|s| format!("`{}`", s.host))
        .collect();
    if without.is_empty() {
        return Ok(());
    }
    Err(Error::CanaryUnavailable {
        reason: format!(
            "no live copy answers on {} to compare the new release with",
            without.join(", ")
        ),
        help: "deploy without `--canary` (the health gate and verification still apply)".into(),
    })
}

/// Refuse an image made for another architecture than some host's, naming them, before
/// anything is sent or started: it would fail with `exec format error`, or pass the gate
/// emulated (qemu's binfmt handlers) and serve several times slower.
fn refuse_foreign(
    config: &Config,
    image: &crate::build::Image,
    states: &[(String, crate::state::HostState)],
) -> Result<(), Error> {
    let Some(platform) = image.platform.as_deref() else {
        return Ok(());
    };
    let foreign = plan::foreign_hosts(platform, states);
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::ForeignArchitecture {
        image: image.reference.clone(),
        platform: platform.to_owned(),
        hosts: foreign
            .iter()
            .map(|(h, a)| format!("`{h}` ({a})"))
            .collect::<Vec<_>>()
            .join(", "),
        arch: foreign[0].1.to_owned(),
        environment: config.environment.clone(),
    })
}

pub async fn rollback(config: &Config, options: &RollbackOptions) -> Result<Report, Error> {
    let started = Instant::now();
    let secrets = Secrets::load(&config.app_dir)?;
    let settings = env::settings_text(config, &secrets)?;
    let fleet = Fleet::connect_tolerating(
        &config.hosts,
        &config.ssh,
        tolerate(config, options.skip_unreachable),
    )
    .await?;
    let skipped = skipped_names(&fleet);
    let target_of = |states: &[(String, HostState)]| -> Result<(ReleaseRef, Vec<String>), Error> {
        plan::rollback_target(config, states, options.to.as_deref())
            .map(|t| (t.release, t.followers))
            .map_err(|e| plan_error(config, e))
    };
    if options.dry_run {
        let result = async {
            let states = observe_with(&fleet, config, Some(settings)).await?;
            let (target, followers) = target_of(&states)?;
            let plan = plan::plan(config, &target, &states, &followers)
                .map_err(|e| plan_error(config, e))?;
            print_plan(config, &plan, &states);
            Ok(plan)
        }
        .await;
        fleet.close().await;
        return result.map(|plan| report(plan, Switched::default(), skipped, started));
    }
    let label = options.to.clone().unwrap_or_else(|| "previous".into());
    let result = converge_locked(
        config,
        &fleet,
        &secrets,
        Kind::Rollback,
        &label,
        options.lock_wait,
        settings,
        Extras::default(),
        target_of,
    )
    .await;
    fleet.close().await;
    let release = result
        .as_ref()
        .map_or(label.clone(), |(p, _)| p.target.release.clone());
    announce(
        config,
        (Kind::Rollback, Held::No),
        &release,
        result.as_ref().map(|(plan, _)| (plan, skipped.as_slice())),
    )
    .await;
    let (plan, switched) = result?;
    ui::status(
        "Rolled back",
        &format!(
            "to {} on {} host{} in {:.2}s{}",
            plan.target.release,
            plan.steps.len(),
            plural(plan.steps.len()),
            started.elapsed().as_secs_f64(),
            left_out(&skipped)
        ),
    );
    Ok(report(plan, switched, skipped, started))
}

/// Whether a deploy leaves its release waiting for promotion (`--no-promote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    No,
    Waiting,
}

/// The webhook event a deploy or rollback came to; `None` when nothing was to be done.
fn event_of(
    (kind, held): (Kind, Held),
    result: Result<(&Plan, &[String]), &Error>,
) -> Option<(&'static str, Option<String>)> {
    let behind = |skipped: &[String]| {
        (!skipped.is_empty())
            .then(|| format!("left out (unreachable, now behind): {}", skipped.join(", ")))
    };
    Some(match (result, kind) {
        (Ok((plan, skipped)), _) if plan.is_noop() && skipped.is_empty() => return None,
        (Ok((_, skipped)), Kind::Deploy) if held == Held::Waiting => {
            ("waiting-for-promotion", behind(skipped))
        }
        (Ok((_, skipped)), Kind::Deploy) => ("deployed", behind(skipped)),
        (Ok((_, skipped)), Kind::Promote) => ("promoted", behind(skipped)),
        (Ok((_, skipped)), Kind::Rollback) => ("rolled-back", behind(skipped)),
        (Err(e @ Error::FleetSplit(_)), _) => ("fleet-split", Some(first_line(e))),
        (
            Err(
                e @ (Error::VerifyFailed { .. }
                | Error::SwitchFailed { .. }
                | Error::SmokeFailed { .. }
                | Error::CanaryFailed { .. }
                | Error::PostDeployFailed { .. }
                | Error::Interrupted { switched: true, .. }),
            ),
            _,
        ) => ("auto-rolled-back", Some(first_line(e))),
        (Err(e), _) => ("failed", Some(first_line(e))),
    })
}

/// Tell the configured webhooks what a deploy or rollback came to, whatever its shape.
async fn announce(
    config: &Config,
    kind: (Kind, Held),
    release: &str,
    result: Result<(&Plan, &[String]), &Error>,
) {
    let Some((event, reason)) = event_of(kind, result) else {
        return;
    };
    let me = lock::me();
    let event = crate::notify::Event {
        event,
        app: &config.app,
        environment: &config.environment,
        release,
        hosts: config.hosts.iter().map(ToString::to_string).collect(),
        user: me.user,
        machine: me.machine,
        reason,
    };
    crate::notify::send(config, &event).await;
}

fn report(plan: Plan, switched: Switched, behind: Vec<String>, started: Instant) -> Report {
    Report {
        release: plan.target.release.clone(),
        image: plan.target.image.clone(),
        steps: plan.steps,
        sent: switched.sent,
        behind,
        switch_window_seconds: switched.window.map(|w| w.as_secs_f64()),
        canary: switched.canary,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Colour;

    fn plan() -> Plan {
        Plan {
            target: ReleaseRef {
                release: "2".into(),
                image: "i".into(),
            },
            steps: vec![plan::HostStep {
                host: "h".into(),
                from: None,
                to: Colour::Blue,
                port: 3001,
                action: Action::StartAndSwitch,
                why: None,
                follows: false,
            }],
        }
    }

    #[test]
    fn every_failure_is_announced_whatever_its_shape() {
        let hosts = Error::Hosts {
            hosts: vec![
                Error::Transport {
                    host: "a".into(),
                    command: "c".into(),
                    message: "m".into(),
                },
                Error::Transport {
                    host: "b".into(),
                    command: "c".into(),
                    message: "m".into(),
                },
            ],
        };
        assert_eq!(
            event_of((Kind::Deploy, Held::No), Err(&hosts)).unwrap().0,
            "failed"
        );
        let p = plan();
        assert_eq!(
            event_of((Kind::Deploy, Held::No), Ok((&p, &["h3".to_owned()][..]))).unwrap(),
            (
                "deployed",
                Some("left out (unreachable, now behind): h3".to_owned())
            )
        );
        let split = Error::FleetSplit(Box::new(crate::error::FleetSplit {
            cause: "verification failed".into(),
            environment: "production".into(),
            hosts: vec![],
            previous: None,
            target: "2".into(),
            lock_kept: vec![],
        }));
        assert_eq!(
            event_of((Kind::Deploy, Held::No), Err(&split)).unwrap().0,
            "fleet-split"
        );
        let hup = Error::Interrupted {
            signal: "SIGHUP",
            switched: true,
        };
        assert_eq!(
            event_of((Kind::Deploy, Held::No), Err(&hup)).unwrap().0,
            "auto-rolled-back"
        );
        assert_eq!(
            event_of((Kind::Deploy, Held::No), Ok((&plan(), &[][..])))
                .unwrap()
                .0,
            "deployed"
        );
        let mut noop = plan();
        noop.steps[0].action = Action::AlreadyLive;
        assert_eq!(
            event_of((Kind::Rollback, Held::No), Ok((&noop, &[][..]))),
            None
        );
    }
}
