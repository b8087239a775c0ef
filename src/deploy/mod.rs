//! `shipit deploy`, `shipit rollback`, `shipit status` and `shipit releases`.
//!
//! The eight steps of a deploy: plan (pure, from what the hosts hold), lock, build and push,
//! prepare the idle colour on every host, health-gate every new copy, switch every host only
//! when all passed, verify through nginx, record. A failure before the switch stops the new
//! copies and changes nothing for users; a failure at or after the switch puts every host back
//! on the upstream it had. A rollback is the same machinery aimed at an earlier release.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{Instrument, info, info_span};

use crate::config::{Config, KeepPrevious};
use crate::error::{Error, HealthGateFailure};
use crate::layout;
use crate::lock::{self, Me};
use crate::model::Colour;
use crate::probe::{self, Expect, Tunnel};
use crate::remote::{RemoteCommand, scripts};
use crate::secret::Secrets;
use crate::ssh::{Fleet, Host, each_bounded};
use crate::state::{self, HistoryEntry, HostState, Outcome, ReleaseRef};
use crate::templates;
use crate::ui::{self, plural};
use plan::{Action, HostStep, Plan, PlanError};

#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    pub dry_run: bool,
    pub lock_wait: Option<Duration>,
    pub build: crate::build::Options,
    /// Deploy the release's image already in the registry instead of building it.
    pub no_build: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RollbackOptions {
    pub to: Option<String>,
    pub dry_run: bool,
    pub lock_wait: Option<Duration>,
}

/// What a deploy or rollback did, per host.
#[derive(Debug, Serialize)]
pub struct Report {
    pub release: String,
    pub image: String,
    pub steps: Vec<HostStep>,
    pub seconds: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deploy,
    Rollback,
}

/// The arguments of the state scripts for `config`'s app.
fn state_args(config: &Config) -> Vec<String> {
    let app = &config.app;
    vec![
        layout::upstream_include(app),
        layout::unit_env(app, Colour::Blue),
        layout::unit_env(app, Colour::Green),
        templates::unit_instance(app, Colour::Blue),
        templates::unit_instance(app, Colour::Green),
        layout::lock_dir(app),
        layout::history(app),
    ]
}

fn parse_host_state(host: &Host, command: &str, text: &str) -> Result<(String, HostState), Error> {
    let state = state::parse_state(text).map_err(|message| Error::Protocol {
        host: host.spec.to_string(),
        command: command.to_owned(),
        message,
    })?;
    Ok((host.spec.to_string(), state))
}

/// Read every host's deploy state, in host order.
pub async fn observe(fleet: &Fleet, config: &Config) -> Result<Vec<(String, HostState)>, Error> {
    let args = state_args(config);
    let results = fleet
        .each(|host| {
            let cmd =
                RemoteCommand::new("read deploy state", scripts::DEPLOY_STATE).args(args.clone());
            async move {
                let out = host.check(&cmd).await?;
                parse_host_state(&host, &cmd.to_string(), &String::from_utf8_lossy(&out))
            }
        })
        .await;
    collect(results)
}

/// The states read under the lock, or read again when a host's is missing (a lock taken over).
async fn states_under_lock(
    fleet: &Fleet,
    config: &Config,
    held: &[Option<String>],
) -> Result<Vec<(String, HostState)>, Error> {
    if held.len() != fleet.hosts.len() || held.iter().any(Option::is_none) {
        return observe(fleet, config).await;
    }
    let parsed = fleet
        .hosts
        .iter()
        .zip(held.iter().flatten())
        .map(|(host, text)| parse_host_state(host, "take the lock", text))
        .collect();
    collect(parsed)
}

/// All results, or every error (one error alone when there is one).
fn collect<T>(results: Vec<Result<T, Error>>) -> Result<Vec<T>, Error> {
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

fn plan_error(config: &Config, e: PlanError) -> Error {
    match e {
        PlanError::NotProvisioned { host } => Error::NotProvisioned {
            host,
            environment: config.environment.clone(),
        },
        PlanError::NoPrevious { current } => Error::NoPrevious {
            current,
            environment: config.environment.clone(),
        },
        PlanError::NotRetained { wanted, available } => Error::NotRetained { wanted, available },
    }
}

/// The container's environment for one colour: the clear values, the secrets, and what
/// shipit tells the app about itself. Fails, naming them, if secrets are missing.
fn app_env(
    config: &Config,
    secrets: &Secrets,
    release: &ReleaseRef,
    colour: Colour,
) -> Result<String, Error> {
    let mut lines = BTreeMap::new();
    for (k, v) in &config.env.clear {
        lines.insert(k.clone(), v.clone());
    }
    let mut missing = Vec::new();
    for name in &config.env.secret {
        match secrets.get(name) {
            Some((value, _)) if !value.expose().contains(['\n', '\r', '\0']) => {
                lines.insert(name.clone(), value.expose().to_owned());
            }
            Some(_) => missing.push(format!("{name} (contains a line break)")),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::MissingSecrets {
            names: missing,
            dotenv: config.app_dir.join(".env"),
        });
    }
    lines.insert("SHIPIT_RELEASE".into(), release.release.clone());
    lines.insert("SHIPIT_COLOUR".into(), colour.to_string());
    lines.insert("SHIPIT_ENVIRONMENT".into(), config.environment.clone());
    Ok(lines
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect())
}

/// A short hash of everything the container is given but its colour, so a changed setting or
/// secret makes the next deploy start a new copy even of the same release.
fn config_hash(config: &Config, secrets: &Secrets, release: &ReleaseRef) -> Result<String, Error> {
    use sha2::Digest;
    let env = app_env(config, secrets, release, Colour::Blue)?;
    let stable: String = env
        .lines()
        .filter(|l| !l.starts_with("SHIPIT_COLOUR="))
        .map(|l| format!("{l}\n"))
        .collect();
    let digest = sha2::Sha256::digest(format!("{}\n{stable}", release.image));
    Ok(hex::encode(&digest[..8]))
}

/// Describe a plan, one line per host.
pub fn describe(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| {
            let from = s.from.as_ref().map_or("nothing live".to_owned(), |(c, r)| {
                format!("{c} serves {}", r.release)
            });
            let what = match s.action {
                Action::AlreadyLive => format!(
                    "already serves {} on {}: nothing to do",
                    plan.target.release, s.to
                ),
                Action::SwitchToWarm => format!(
                    "{from}; switch to {} where {} runs warm",
                    s.to, plan.target.release
                ),
                Action::StartAndSwitch => format!(
                    "{from}; start {} on {}, gate on health, switch",
                    plan.target.release, s.to
                ),
            };
            format!("{}: {what}", s.host)
        })
        .collect()
}

fn print_plan(plan: &Plan, states: &[(String, HostState)]) {
    for line in describe(plan) {
        ui::out(&format!("{line}\n"));
    }
    for (host, state) in states {
        if let Some(holder) = &state.lock {
            ui::out(&format!("{host}: locked by {}\n", lock::describe(holder)));
        }
    }
}

pub async fn deploy(config: &Config, options: &DeployOptions) -> Result<Report, Error> {
    let started = Instant::now();
    let secrets = Secrets::load(&config.app_dir)?;
    if options.dry_run {
        let (release, _) = crate::build::prepare(config, &options.build)?;
        let mut target = ReleaseRef {
            release: release.version.to_string(),
            image: format!("{}:{} (not built)", config.image, release.tag()),
            config: String::new(),
        };
        // Missing secrets fail a dry run as they would fail the deploy.
        target.config = config_hash(config, &secrets, &target)?;
        let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
        let states = observe(&fleet, config).await;
        fleet.close().await;
        let states = states?;
        let plan = plan::plan(config, &target, &states).map_err(|e| plan_error(config, e))?;
        print_plan(&plan, &states);
        return Ok(report(plan, started));
    }

    // Build and push first (or find the pushed image): a failure here touches no host.
    let image = if options.no_build {
        crate::build::find_pushed(config, &options.build).await?
    } else {
        crate::build::build_and_push(config, &options.build).await?
    };
    let mut target = ReleaseRef {
        release: image.release.clone(),
        image: format!("{}@{}", image.reference, image.digest),
        config: String::new(),
    };
    target.config = config_hash(config, &secrets, &target)?;
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = converge_locked(
        config,
        &fleet,
        &secrets,
        Kind::Deploy,
        &target.release,
        options.lock_wait,
        |_| Ok(target.clone()),
    )
    .await;
    fleet.close().await;
    announce(config, Kind::Deploy, &target.release, &result).await;
    let plan = result?;
    ui::status(
        "Deployed",
        &format!(
            "{} to {} host{} in {:.2}s",
            target.release,
            plan.steps.len(),
            plural(plan.steps.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(report(plan, started))
}

/// Under the lock: read the hosts, choose the target, plan, and converge.
async fn converge_locked<F>(
    config: &Config,
    fleet: &Fleet,
    secrets: &Secrets,
    kind: Kind,
    label: &str,
    lock_wait: Option<Duration>,
    target_of: F,
) -> Result<Plan, Error>
where
    F: FnOnce(&[(String, HostState)]) -> Result<ReleaseRef, Error>,
{
    let command = match kind {
        Kind::Deploy => "deploy",
        Kind::Rollback => "rollback",
    };
    locked(
        fleet,
        config,
        command,
        label,
        lock_wait,
        |held, switched| async move {
            let states = states_under_lock(fleet, config, &held).await?;
            let target = target_of(&states)?;
            let plan = plan::plan(config, &target, &states).map_err(|e| plan_error(config, e))?;
            Run {
                config,
                fleet,
                states: &states,
                secrets,
                switched,
                kind,
            }
            .converge(&plan)
            .await?;
            Ok(plan)
        },
    )
    .await
}

pub async fn rollback(config: &Config, options: &RollbackOptions) -> Result<Report, Error> {
    let started = Instant::now();
    let secrets = Secrets::load(&config.app_dir)?;
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let target_of = |states: &[(String, HostState)]| -> Result<ReleaseRef, Error> {
        let mut target = plan::rollback_target(config, states, options.to.as_deref())
            .map_err(|e| plan_error(config, e))?;
        target.config = config_hash(config, &secrets, &target)?;
        Ok(target)
    };
    if options.dry_run {
        let result = async {
            let states = observe(&fleet, config).await?;
            let target = target_of(&states)?;
            let plan = plan::plan(config, &target, &states).map_err(|e| plan_error(config, e))?;
            print_plan(&plan, &states);
            Ok(plan)
        }
        .await;
        fleet.close().await;
        return result.map(|plan| report(plan, started));
    }
    let label = options.to.clone().unwrap_or_else(|| "previous".into());
    let result = converge_locked(
        config,
        &fleet,
        &secrets,
        Kind::Rollback,
        &label,
        options.lock_wait,
        target_of,
    )
    .await;
    fleet.close().await;
    let release = result
        .as_ref()
        .map_or(label.clone(), |p| p.target.release.clone());
    announce(config, Kind::Rollback, &release, &result).await;
    let plan = result?;
    ui::status(
        "Rolled back",
        &format!(
            "to {} on {} host{} in {:.2}s",
            plan.target.release,
            plan.steps.len(),
            plural(plan.steps.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(report(plan, started))
}

/// Tell the configured webhooks what a deploy or rollback came to. Errors before the hosts
/// were touched (a held lock, a plan that cannot be made) are not announced.
async fn announce(config: &Config, kind: Kind, release: &str, result: &Result<Plan, Error>) {
    let (event, reason) = match (result, kind) {
        (Ok(plan), _) if plan.is_noop() => return,
        (Ok(_), Kind::Deploy) => ("deployed", None),
        (Ok(_), Kind::Rollback) => ("rolled-back", None),
        (
            Err(
                e @ (Error::VerifyFailed { .. }
                | Error::SwitchFailed { .. }
                | Error::SmokeFailed { .. }
                | Error::PostDeployFailed { .. }),
            ),
            _,
        ) => ("auto-rolled-back", Some(first_line(e))),
        (
            Err(
                e @ (Error::HealthGate(_)
                | Error::Remote { .. }
                | Error::Transport { .. }
                | Error::Hook { .. }
                | Error::Interrupted { .. }),
            ),
            _,
        ) => ("failed", Some(first_line(e))),
        (Err(_), _) => return,
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

fn report(plan: Plan, started: Instant) -> Report {
    Report {
        release: plan.target.release.clone(),
        image: plan.target.image.clone(),
        steps: plan.steps,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Run `f` holding the environment lock on every host; the lock is released on every exit
/// path, Ctrl-C and SIGTERM included.
async fn locked<T, F, Fut>(
    fleet: &Fleet,
    config: &Config,
    command: &str,
    version: &str,
    wait: Option<Duration>,
    f: F,
) -> Result<T, Error>
where
    F: FnOnce(Vec<Option<String>>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let info = lock::me().lock_info(command, version);
    let mut held = lock::acquire(fleet, config, &info, wait, &state_args(config)).await?;
    let states = std::mem::take(&mut held.states);
    let switched = Arc::new(AtomicBool::new(false));
    let result = tokio::select! {
        r = f(states, Arc::clone(&switched)) => r,
        () = interrupted() => Err(Error::Interrupted { switched: switched.load(Ordering::SeqCst) }),
    };
    lock::release(fleet, config, &held.id).await;
    result
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

/// One deploy or rollback in progress.
struct Run<'a> {
    config: &'a Config,
    fleet: &'a Fleet,
    states: &'a [(String, HostState)],
    secrets: &'a Secrets,
    switched: Arc<AtomicBool>,
    kind: Kind,
}

/// A host with its step and what it had before.
#[derive(Clone)]
struct Work<'a> {
    host: Arc<Host>,
    step: &'a HostStep,
    state: &'a HostState,
}

impl<'a> Run<'a> {
    fn work(&self, plan: &'a Plan) -> Vec<Work<'a>> {
        self.fleet
            .hosts
            .iter()
            .zip(&plan.steps)
            .zip(self.states)
            .map(|((host, step), (_, state))| Work {
                host: Arc::clone(host),
                step,
                state,
            })
            .collect()
    }

    async fn converge(&self, plan: &'a Plan) -> Result<(), Error> {
        let all = self.work(plan);
        for line in describe(plan) {
            info!("{line}");
        }
        if plan.is_noop() {
            ui::status(
                "Unchanged",
                &format!("{} already serves on every host", plan.target.release),
            );
            return Ok(());
        }
        if self.kind == Kind::Deploy {
            // Before anything changes on a host; a failure stops here.
            crate::hooks::run(
                self.config,
                crate::hooks::Stage::PreDeploy,
                &plan.target.release,
                &plan.target.image,
            )
            .await?;
        }
        let changing: Vec<Work<'a>> = all
            .iter()
            .filter(|w| w.step.action != Action::AlreadyLive)
            .cloned()
            .collect();
        let started: Vec<Work<'a>> = changing
            .iter()
            .filter(|w| w.step.action == Action::StartAndSwitch)
            .cloned()
            .collect();
        let target = &plan.target;

        // Prepare the idle colour on every host that needs it; meanwhile open the tunnels the
        // health gate polls through.
        let t = Instant::now();
        let tunnels = each_bounded(changing.clone(), self.fleet.max_parallel, |w| async move {
            Tunnel::open(&w.host, self.config.port_of(w.step.to)).await
        });
        let progress = ui::Step::new(
            "Starting",
            started.iter().map(|w| &w.host.spec),
            &format!("pulling and starting {}", target.release),
        );
        let prepared = each_bounded(started.clone(), self.fleet.max_parallel, |w| {
            let line = progress.line(&w.host.spec);
            async move {
                let r = self.prepare(w, target).await;
                line.finish_with(&r, "started");
                r
            }
        });
        let (tunnels, prepared) = tokio::join!(tunnels, prepared);
        drop(progress);
        let tunnels = match collect(tunnels) {
            Ok(t) => t,
            Err(e) => {
                self.stop_new(&started).await;
                return Err(e);
            }
        };
        if let Err(e) = collect(prepared) {
            self.stop_new(&started).await;
            self.record(&all, target, Outcome::Failed, Some(&first_line(&e)))
                .await;
            return Err(e);
        }
        if !started.is_empty() {
            ui::status(
                "Started",
                &format!(
                    "{} on {} host{} in {:.2}s",
                    target.release,
                    started.len(),
                    plural(started.len()),
                    t.elapsed().as_secs_f64()
                ),
            );
        }

        // Health gate: every new copy, directly on its own port.
        let t = Instant::now();
        let progress = ui::Step::new(
            "Checking",
            changing.iter().map(|w| &w.host.spec),
            &format!("waiting for {}", self.config.health.path),
        );
        let gated = each_bounded(
            changing.clone().into_iter().zip(tunnels).collect(),
            self.fleet.max_parallel,
            |(w, t)| {
                let line = progress.line(&w.host.spec);
                async move {
                    let r = self.gate(w, t, target, &line).await;
                    line.finish_with(&r, "healthy");
                    r
                }
            },
        )
        .await;
        drop(progress);
        let direct: Vec<Tunnel> = match collect(gated) {
            Ok(tunnels) => tunnels,
            Err(e) => {
                self.stop_new(&started).await;
                self.record(&all, target, Outcome::Failed, Some(&first_line(&e)))
                    .await;
                return Err(e);
            }
        };
        ui::status(
            "Healthy",
            &format!(
                "{} on {} host{} in {:.2}s",
                target.release,
                changing.len(),
                plural(changing.len()),
                t.elapsed().as_secs_f64()
            ),
        );

        // Switch every host, or none.
        let t = Instant::now();
        self.switched.store(true, Ordering::SeqCst);
        let progress = ui::Step::new(
            "Switching",
            changing.iter().map(|w| &w.host.spec),
            "nginx -t, reload, waiting for the new workers",
        );
        let switches = each_bounded(changing.clone(), self.fleet.max_parallel, |w| {
            let line = progress.line(&w.host.spec);
            async move {
                let r = self.switch(w).await;
                line.finish_with(&r, "switched");
                r
            }
        })
        .await;
        drop(progress);
        let failure = changing
            .iter()
            .zip(switches)
            .find_map(|(w, r)| r.err().map(|e| (w.host.spec.to_string(), e)));
        if let Some((host, e)) = failure {
            // Every host goes back, the failed one too: a switch that lost its connection may
            // have happened before the answer was lost.
            self.revert(&changing).await;
            self.stop_new(&started).await;
            let reason = format!("switch failed on {host}: {}", first_line(&e));
            self.record(&all, target, Outcome::AutoRolledBack, Some(&reason))
                .await;
            return Err(Error::SwitchFailed {
                host,
                reason: e.to_string(),
            });
        }
        ui::status(
            "Switched",
            &format!(
                "{} host{} to {} in {:.2}s",
                changing.len(),
                plural(changing.len()),
                target.release,
                t.elapsed().as_secs_f64()
            ),
        );

        // Verify through nginx (and the new copies directly).
        let window = match self.kind {
            Kind::Deploy => self.config.deploy.verify_window,
            Kind::Rollback => Duration::ZERO,
        };
        let t = Instant::now();
        if let Err((host, reason)) = self.verify(&all, &changing, &direct, window).await {
            self.revert(&changing).await;
            self.stop_new(&started).await;
            let why = format!("verification failed on {host}: {reason}");
            self.record(&all, target, Outcome::AutoRolledBack, Some(&why))
                .await;
            return Err(Error::VerifyFailed { host, reason });
        }
        ui::status(
            "Verified",
            &format!(
                "through nginx on {} host{} in {:.2}s",
                all.len(),
                plural(all.len()),
                t.elapsed().as_secs_f64()
            ),
        );

        if self.kind == Kind::Deploy {
            // Still holding the lock: the smoke check and the post-deploy hooks can undo it all.
            let after = async {
                if let Err(reason) = self.smoke(&all).await {
                    return Err(Error::SmokeFailed { reason });
                }
                crate::hooks::run(
                    self.config,
                    crate::hooks::Stage::PostDeploy,
                    &target.release,
                    &target.image,
                )
                .await
                .map_err(|e| Error::PostDeployFailed {
                    reason: e.to_string(),
                })
            };
            if let Err(e) = after.await {
                self.revert(&changing).await;
                self.stop_new(&started).await;
                self.record(&all, target, Outcome::AutoRolledBack, Some(&first_line(&e)))
                    .await;
                return Err(e);
            }
        }

        let outcome = match self.kind {
            Kind::Deploy => Outcome::Deployed,
            Kind::Rollback => Outcome::RolledBack,
        };
        match self.kind {
            // A deploy may have pulled an image: drop those beyond `retain`.
            Kind::Deploy => {
                tokio::join!(
                    self.record(&all, target, outcome, None),
                    self.prune(&all, target)
                );
            }
            // A rollback pulls nothing new, at most a retained image.
            Kind::Rollback => self.record(&all, target, outcome, None).await,
        }
        if self.config.deploy.keep_previous == KeepPrevious::Stop {
            self.stop_previous(&changing).await;
        }
        Ok(())
    }

    async fn prepare(&self, w: Work<'a>, target: &ReleaseRef) -> Result<(), Error> {
        let app = &self.config.app;
        let colour = w.step.to;
        let span = info_span!("prepare", host = %w.host.spec, colour = %colour);
        async {
            let env = app_env(self.config, self.secrets, target, colour)?;
            let cmd = RemoteCommand::new(
                format!("start {} on {colour}", target.release),
                scripts::PREPARE,
            )
            .arg(target.image.clone())
            .arg(templates::unit_instance(app, colour))
            .arg(layout::unit_env(app, colour))
            .arg(layout::app_env(app, colour))
            .args(state::unit_env(target, self.config.port_of(colour), colour))
            .stdin(env);
            let t = Instant::now();
            w.host.check(&cmd).await?;
            info!(elapsed_ms = t.elapsed().as_millis() as u64, "started");
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn gate(
        &self,
        w: Work<'a>,
        tunnel: Tunnel,
        target: &ReleaseRef,
        line: &ui::HostLine,
    ) -> Result<Tunnel, Error> {
        let colour = w.step.to;
        let client = probe::client(false)?;
        let expect = Expect {
            path: &self.config.health.path,
            json: self.config.health.expect_json.as_ref(),
        };
        let seen = |attempt: u32, answer: &probe::Answer| {
            line.set(format!(
                "waiting for {}: {} (attempt {})",
                expect.path,
                answer.summary(),
                attempt + 1
            ));
        };
        match probe::wait_healthy(&client, &tunnel, &expect, self.config.health.timeout, seen).await
        {
            Ok(took) => {
                info!(host = %w.host.spec, colour = %colour, elapsed_ms = took.as_millis() as u64, "healthy");
                Ok(tunnel)
            }
            Err(answer) => {
                let unit = templates::unit_instance(&self.config.app, colour);
                let logs = w
                    .host
                    .run(
                        &RemoteCommand::new("read the unit's log", scripts::LOGS)
                            .arg(unit.clone())
                            .arg("50"),
                    )
                    .await
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|e| format!("(could not read the log: {e})"));
                Err(Error::HealthGate(Box::new(HealthGateFailure {
                    host: w.host.spec.to_string(),
                    colour: colour.to_string(),
                    release: target.release.clone(),
                    timeout: humantime::format_duration(self.config.health.timeout).to_string(),
                    answer: answer.to_string(),
                    unit,
                    logs: if logs.trim().is_empty() {
                        "(empty)".into()
                    } else {
                        logs
                    },
                })))
            }
        }
    }

    /// The upstream a host gets: the new colour, and the one it leaves as backup while warm.
    fn upstream_for(&self, w: &Work<'a>) -> String {
        let backup = w
            .step
            .from
            .as_ref()
            .filter(|_| self.config.deploy.keep_previous == KeepPrevious::Warm)
            .map(|(c, _)| self.config.port_of(*c));
        templates::upstream(self.config.port_of(w.step.to), backup)
    }

    async fn switch(&self, w: Work<'a>) -> Result<(), Error> {
        let content = self.upstream_for(&w);
        self.write_upstream(&w.host, content, &format!("switch to {}", w.step.to))
            .await
    }

    async fn write_upstream(&self, host: &Host, content: String, label: &str) -> Result<(), Error> {
        let cmd = RemoteCommand::new(label.to_owned(), scripts::SWITCH)
            .arg(layout::upstream_include(&self.config.app))
            .arg(content);
        host.check(&cmd).await.map(|_| ())
    }

    /// Put each host's upstream back as it was before this run. A host whose connection was
    /// lost gets one more try on a new connection, so that no host is left switched alone.
    async fn revert(&self, hosts: &[Work<'a>]) {
        let results = each_bounded(hosts.to_vec(), self.fleet.max_parallel, |w| async move {
            let previous = w.state.upstream.clone().unwrap_or_default();
            let mut result = self
                .write_upstream(&w.host, previous.clone(), "switch back")
                .await;
            if matches!(result, Err(Error::Transport { .. })) {
                result = match Host::connect(&w.host.spec, &self.config.ssh).await {
                    Ok(fresh) => {
                        let r = self.write_upstream(&fresh, previous, "switch back").await;
                        fresh.close().await;
                        r
                    }
                    Err(e) => Err(e),
                };
            }
            (w.host.spec.to_string(), result)
        })
        .await;
        for (host, r) in results {
            match r {
                Ok(()) => ui::status("Reverted", &format!("{host} to its previous upstream")),
                Err(e) => ui::warn(&format!("could not switch {host} back: {e}")),
            }
        }
    }

    async fn stop_new(&self, started: &[Work<'a>]) {
        let results = each_bounded(started.to_vec(), self.fleet.max_parallel, |w| async move {
            let unit = templates::unit_instance(&self.config.app, w.step.to);
            w.host
                .check(&RemoteCommand::new("stop the new copy", scripts::STOP).arg(unit))
                .await
        })
        .await;
        for r in results {
            if let Err(e) = r {
                ui::warn(&format!("could not stop a new copy: {e}"));
            }
        }
    }

    /// With `keep_previous = "stop"`: take the previous colour out of the upstream, let nginx's
    /// old workers drain, then stop it.
    async fn stop_previous(&self, changing: &[Work<'a>]) {
        let with_previous: Vec<Work<'a>> = changing
            .iter()
            .filter(|w| w.step.from.is_some())
            .cloned()
            .collect();
        let drain = self.config.deploy.drain;
        each_bounded(with_previous, self.fleet.max_parallel, |w| async move {
            let Some((from, _)) = &w.step.from else {
                return;
            };
            tokio::time::sleep(drain).await;
            let unit = templates::unit_instance(&self.config.app, *from);
            if let Err(e) = w
                .host
                .check(&RemoteCommand::new("stop the previous colour", scripts::STOP).arg(unit))
                .await
            {
                ui::warn(&e.to_string());
            }
        })
        .await;
    }

    /// Requests through every host's nginx for `window` (at least one round): each must be
    /// healthy and answered by the new colour, not the backup; and each new copy directly.
    async fn verify(
        &self,
        all: &[Work<'a>],
        changing: &[Work<'a>],
        direct: &[Tunnel],
        window: Duration,
    ) -> Result<(), (String, String)> {
        let mut nginx = Vec::new();
        for w in all {
            let t = Tunnel::open(&w.host, 80)
                .await
                .map_err(|e| (w.host.spec.to_string(), e.to_string()))?;
            nginx.push(t);
        }
        let progress = ui::Step::new(
            "Verifying",
            all.iter().map(|w| &w.host.spec),
            "through nginx",
        );
        let result = self
            .verify_rounds(all, changing, direct, &nginx, window, &progress)
            .await;
        match &result {
            Ok(()) => all.iter().for_each(|w| {
                progress
                    .line(&w.host.spec)
                    .finish(true, "healthy through nginx")
            }),
            Err((host, reason)) => progress.line(host).finish(false, reason.clone()),
        }
        result
    }

    /// [`Self::verify`]'s checks, round after round until `window` has passed.
    async fn verify_rounds(
        &self,
        all: &[Work<'a>],
        changing: &[Work<'a>],
        direct: &[Tunnel],
        nginx: &[Tunnel],
        window: Duration,
        progress: &ui::Step,
    ) -> Result<(), (String, String)> {
        let expect = Expect {
            path: &self.config.health.path,
            json: self.config.health.expect_json.as_ref(),
        };
        let client = probe::client(true).map_err(|e| (String::new(), e.to_string()))?;
        let started = Instant::now();
        for round in 1.. {
            let through_nginx = futures::future::join_all(
                nginx
                    .iter()
                    .map(|t| probe::get(&client, t, expect.path, Some(&self.config.domain))),
            )
            .await;
            for (w, answer) in all.iter().zip(through_nginx) {
                if !expect.healthy(&answer) {
                    return Err((w.host.spec.to_string(), format!("through nginx: {answer}")));
                }
                let want = self.config.port_of(w.step.to);
                if served_by(answer.upstream.as_deref()) != Some(want) {
                    return Err((
                        w.host.spec.to_string(),
                        format!(
                            "nginx answered from `{}`, not from the new copy on port {want}",
                            answer
                                .upstream
                                .as_deref()
                                .unwrap_or("(no X-Shipit-Upstream header: run `shipit provision` to update the site)")
                        ),
                    ));
                }
            }
            let directly = futures::future::join_all(
                direct
                    .iter()
                    .map(|t| probe::get(&client, t, expect.path, None)),
            )
            .await;
            for (w, answer) in changing.iter().zip(directly) {
                if !expect.healthy(&answer) {
                    return Err((
                        w.host.spec.to_string(),
                        format!("the new copy itself: {answer}"),
                    ));
                }
            }
            if started.elapsed() >= window {
                return Ok(());
            }
            let left = window.saturating_sub(started.elapsed()).as_secs_f64();
            for w in all {
                progress
                    .line(&w.host.spec)
                    .set(format!("healthy through nginx {round}x, {left:.1}s to go"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// A bounded burst through every host's nginx: the error rate and the 95th percentile
    /// latency must stay within `[smoke]`'s thresholds.
    async fn smoke(&self, all: &[Work<'a>]) -> Result<(), String> {
        let smoke = &self.config.smoke;
        if smoke.requests == 0 {
            return Ok(());
        }
        let t = Instant::now();
        let client = probe::client(false).map_err(|e| e.to_string())?;
        let opened = futures::future::join_all(all.iter().map(|w| Tunnel::open(&w.host, 80))).await;
        let tunnels = opened
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let progress = ui::Step::new(
            "Testing",
            all.iter().map(|w| &w.host.spec),
            &format!("smoke burst of {} requests through nginx", smoke.requests),
        );
        let results = futures::future::join_all(all.iter().zip(&tunnels).map(|(w, tunnel)| {
            let client = client.clone();
            let line = progress.line(&w.host.spec);
            async move {
                use futures::StreamExt;
                let results = futures::stream::iter(0..smoke.requests)
                    .map(|_| {
                        let client = client.clone();
                        async move {
                            let started = Instant::now();
                            let answer =
                                probe::get(&client, tunnel, &smoke.path, Some(&self.config.domain))
                                    .await;
                            (
                                answer.status.is_some_and(|s| (200..400).contains(&s)),
                                started.elapsed(),
                            )
                        }
                    })
                    .buffer_unordered(4)
                    .collect::<Vec<_>>()
                    .await;
                let failed = results.iter().filter(|(ok, _)| !ok).count();
                line.finish(
                    failed == 0,
                    format!("{failed} of {} requests failed", results.len()),
                );
                results
            }
        }))
        .await;
        drop(progress);
        let mut latencies: Vec<Duration> = results.iter().flatten().map(|(_, d)| *d).collect();
        let failed = results.iter().flatten().filter(|(ok, _)| !ok).count();
        let total = latencies.len().max(1);
        latencies.sort();
        let p95 = latencies
            .get((total * 95).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default();
        let rate = failed as f64 / total as f64;
        info!(
            failed,
            total,
            p95_ms = p95.as_millis() as u64,
            "smoke check"
        );
        if rate > smoke.max_error_rate {
            return Err(format!(
                "{failed} of {total} requests failed ({:.1} %, more than {:.1} %)",
                rate * 100.0,
                smoke.max_error_rate * 100.0
            ));
        }
        if p95 > smoke.max_p95 {
            return Err(format!(
                "p95 latency {} ms is over {} ms",
                p95.as_millis(),
                smoke.max_p95.as_millis()
            ));
        }
        ui::status(
            "Smoke",
            &format!(
                "{total} requests through nginx in {:.2}s: {failed} failed, p95 {} ms",
                t.elapsed().as_secs_f64(),
                p95.as_millis()
            ),
        );
        Ok(())
    }

    async fn record(
        &self,
        all: &[Work<'a>],
        target: &ReleaseRef,
        outcome: Outcome,
        reason: Option<&str>,
    ) {
        let me: Me = lock::me();
        let time = lock::now();
        let results = each_bounded(all.to_vec(), self.fleet.max_parallel, |w| {
            let entry = HistoryEntry {
                time,
                release: target.release.clone(),
                image: target.image.clone(),
                colour: w.step.to,
                user: me.user.clone(),
                machine: me.machine.clone(),
                outcome,
                reason: reason.map(str::to_owned),
            };
            async move {
                let line = serde_json::to_string(&entry).unwrap_or_default();
                let cmd = RemoteCommand::new("record the release", scripts::RECORD)
                    .arg(layout::history(&self.config.app))
                    .arg(line);
                w.host.check(&cmd).await
            }
        })
        .await;
        for r in results {
            if let Err(e) = r {
                ui::warn(&format!("could not record the release: {e}"));
            }
        }
    }

    async fn prune(&self, all: &[Work<'a>], target: &ReleaseRef) {
        let results = each_bounded(all.to_vec(), self.fleet.max_parallel, |w| {
            let keep = plan::retained_images(self.config, self.states, w.state, target);
            async move {
                let cmd = RemoteCommand::new("prune old images", scripts::PRUNE)
                    .arg(self.config.image.clone())
                    .args(keep);
                let out = w.host.check(&cmd).await?;
                let removed = String::from_utf8_lossy(&out).lines().count();
                if removed > 0 {
                    info!(host = %w.host.spec, removed, "pruned images");
                }
                Ok::<_, Error>(())
            }
        })
        .await;
        for r in results {
            if let Err(e) = r {
                ui::warn(&format!("could not prune old images: {e}"));
            }
        }
    }
}

/// The port of the server that finally answered, from nginx's `$upstream_addr`
/// (`127.0.0.1:3002` or, after a retry on the backup, `127.0.0.1:3002, 127.0.0.1:3001`).
fn served_by(upstream_addr: Option<&str>) -> Option<u16> {
    upstream_addr?
        .rsplit(", ")
        .next()?
        .rsplit(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// One host's line in `shipit status`.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub live: Option<Colour>,
    pub release: Option<String>,
    pub health: String,
    pub blue: String,
    pub green: String,
    pub lock: Option<String>,
}

pub async fn status(config: &Config) -> Result<Vec<HostStatus>, Error> {
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = async {
        let states = observe(&fleet, config).await?;
        let client = probe::client(true)?;
        let expect = Expect {
            path: &config.health.path,
            json: config.health.expect_json.as_ref(),
        };
        let rows = each_bounded(
            fleet.hosts.iter().cloned().zip(states).collect(),
            fleet.max_parallel,
            |(host, (name, state))| {
                let client = client.clone();
                let expect = expect.clone();
                async move {
                    let live = state.live(config);
                    let health = match live {
                        Some(c) if state.colour(c).running() => {
                            match Tunnel::open(&host, config.port_of(c)).await {
                                Ok(t) => {
                                    let a = probe::get(&client, &t, expect.path, None).await;
                                    if expect.healthy(&a) {
                                        "healthy".to_owned()
                                    } else {
                                        format!("unhealthy: {a}")
                                    }
                                }
                                Err(e) => format!("unknown: {e}"),
                            }
                        }
                        Some(_) => "down".to_owned(),
                        None => "-".to_owned(),
                    };
                    HostStatus {
                        host: name,
                        live,
                        release: state.live_release(config).map(|r| r.release.clone()),
                        health,
                        blue: describe_colour(&state.blue),
                        green: describe_colour(&state.green),
                        lock: state.lock.as_ref().map(lock::describe),
                    }
                }
            },
        )
        .await;
        Ok::<_, Error>(rows)
    }
    .await;
    fleet.close().await;
    result
}

fn describe_colour(c: &state::ColourState) -> String {
    match &c.release {
        Some(r) => format!("{} ({})", c.unit, r.release),
        None => c.unit.clone(),
    }
}

/// One event in `shipit releases`, merged across hosts.
#[derive(Debug, Serialize)]
pub struct ReleaseLine {
    pub time: u64,
    pub release: String,
    pub outcome: Outcome,
    pub user: String,
    pub machine: String,
    pub reason: Option<String>,
    pub hosts: Vec<String>,
    /// Hosts that do not have this entry.
    pub missing_on: Vec<String>,
}

/// Merge the hosts' histories, newest first; an entry some hosts lack is flagged.
pub fn merge_history(states: &[(String, HostState)]) -> Vec<ReleaseLine> {
    let mut merged: Vec<ReleaseLine> = Vec::new();
    for (host, state) in states {
        for e in &state.history {
            let same = |l: &&mut ReleaseLine| {
                l.time.abs_diff(e.time) <= 2
                    && l.release == e.release
                    && l.outcome == e.outcome
                    && l.user == e.user
                    && !l.hosts.contains(host)
            };
            match merged.iter_mut().find(same) {
                Some(l) => l.hosts.push(host.clone()),
                None => merged.push(ReleaseLine {
                    time: e.time,
                    release: e.release.clone(),
                    outcome: e.outcome,
                    user: e.user.clone(),
                    machine: e.machine.clone(),
                    reason: e.reason.clone(),
                    hosts: vec![host.clone()],
                    missing_on: Vec::new(),
                }),
            }
        }
    }
    for l in &mut merged {
        l.missing_on = states
            .iter()
            .map(|(h, _)| h.clone())
            .filter(|h| !l.hosts.contains(h))
            .collect();
    }
    merged.sort_by_key(|l| std::cmp::Reverse(l.time));
    merged
}

pub async fn releases(config: &Config) -> Result<Vec<ReleaseLine>, Error> {
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let states = observe(&fleet, config).await;
    fleet.close().await;
    Ok(merge_history(&states?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HistoryEntry;

    #[test]
    fn served_by_reads_the_last_upstream() {
        assert_eq!(served_by(Some("127.0.0.1:3002")), Some(3002));
        assert_eq!(
            served_by(Some("127.0.0.1:3002, 127.0.0.1:3001")),
            Some(3001)
        );
        assert_eq!(served_by(Some("")), None);
        assert_eq!(served_by(None), None);
    }

    #[test]
    fn history_merges_across_hosts_and_flags_disagreement() {
        let e = |time, release: &str| HistoryEntry {
            time,
            release: release.into(),
            image: "i".into(),
            colour: Colour::Blue,
            user: "u".into(),
            machine: "m".into(),
            outcome: Outcome::Deployed,
            reason: None,
        };
        let h1 = HostState {
            history: vec![e(10, "1"), e(20, "2")],
            ..HostState::default()
        };
        let h2 = HostState {
            history: vec![e(11, "1")],
            ..HostState::default()
        };
        let lines = merge_history(&[("h1".into(), h1), ("h2".into(), h2)]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].release, "2");
        assert_eq!(lines[0].missing_on, ["h2"]);
        assert_eq!(lines[1].hosts, ["h1", "h2"]);
        assert!(lines[1].missing_on.is_empty());
    }
}
