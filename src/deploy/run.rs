//! One deploy or rollback, holding the lock: its stages in the order of the README's "How a
//! deploy goes", and the one undo path.
//!
//! Stages ([`Run::stages`]): pre-deploy hooks; without a registry, the image sent to the hosts
//! over SSH ([`crate::transfer`]); per host, start the new copy and gate it on its
//! health (each host on its own, meeting the others only at the switch); switch every host;
//! verify through nginx; smoke check and post-deploy hooks. Each stage records in [`Done`] what
//! it is about to change before it changes it, so that [`Run::undo`] undoes exactly that: it
//! switches back every host that may have switched and reads each one back, stops the new
//! copies on hosts that do not serve them, and records the outcome. What it prints and
//! returns is what it read back: a host it could not put back makes the outcome a fleet split.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{Instrument, info, info_span};

use super::plan::{Action, HostStep, Plan};
use super::{Kind, env};
use crate::config::{Config, KeepPrevious};
use crate::error::{Error, FleetSplit, HealthGateFailure, SplitHost};
use crate::fleet::{Fleet, each_bounded, first_line, parse_host_state};
use crate::lock::{self, Me};
use crate::probe::{self, Expect, Tunnel};
use crate::remote::scripts;
use crate::secret::Secrets;
use crate::signals::Cancel;
use crate::ssh::Host;
use crate::state::{self, Behind, FleetRecord, HistoryEntry, HostState, Outcome, PortOwner};
use crate::ui::{self, plural};

/// Hosts whose staged switch is committed at once (each a rename and a reload over its open
/// connection): the whole fleet in one wave up to this many.
const SWITCH_AT_ONCE: usize = 512;

/// One deploy or rollback in progress.
pub(super) struct Run<'a> {
    pub config: &'a Config,
    pub fleet: &'a Fleet,
    pub secrets: &'a Secrets,
    pub kind: Kind,
    pub cancel: Cancel,
    /// The lock's id: written in every history line of this run.
    pub run_id: String,
    pub plan: &'a Plan,
    pub states: &'a [(String, HostState)],
    /// Without a registry: the image to send to the hosts over SSH first.
    pub ship: Option<&'a crate::build::Image>,
    /// `deploy --skip-backup`: no backup before the release command (recorded in the history).
    pub skip_backup: bool,
    /// The backup this deploy took (its file), or why none was: for the history.
    pub backup_note: Mutex<Option<String>>,
    /// What each host got of it, and what each calls it.
    pub sent: Mutex<Vec<crate::transfer::Sent>>,
    /// Empty at the start.
    pub done: Mutex<Done>,
    /// How long the fleet served two releases at the switch (first host switched to last).
    pub window: Mutex<Option<Duration>>,
    /// `deploy --no-promote`: stop once every host is healthy, the release left waiting.
    pub no_promote: bool,
    /// `deploy --canary`: the new release's share of traffic at each step, in percent.
    pub canary: Option<&'a [u8]>,
    /// Each canary step that passed, with its figures: for the history and the report.
    pub canary_passed: Mutex<Vec<String>>,
}

/// How far the run got: what [`Run::undo`] must undo.
#[derive(Default)]
pub(super) struct Done {
    /// Hosts (by index) whose idle colour this run (re)started or began to.
    started: BTreeSet<usize>,
    /// Hosts whose upstream may point at the new colour (marked before the switch is sent).
    switched: BTreeSet<usize>,
    /// Hosts where this run (re)started the new colour's processes (beside the web one).
    processes: BTreeSet<usize>,
    /// Hosts where this run may have recorded its release as waiting for promotion.
    held: BTreeSet<usize>,
}

/// A host with its step and what it had before.
#[derive(Clone)]
struct Work<'a> {
    index: usize,
    host: Arc<Host>,
    step: &'a HostStep,
    state: &'a HostState,
}

/// A host put back, or not, after a failure; read back from the host itself.
struct Reverted<'a> {
    work: Work<'a>,
    /// Its upstream is again what it was before the run.
    back: bool,
    /// What it serves, as read back (or why it could not be read).
    serves: String,
    /// Whether the host answered at all (its lock can be released, its history written).
    reachable: bool,
}

impl<'a> Run<'a> {
    fn work(&self) -> Vec<Work<'a>> {
        self.fleet
            .hosts
            .iter()
            .zip(&self.plan.steps)
            .zip(self.states)
            .enumerate()
            .map(|(index, ((host, step), (_, state)))| Work {
                index,
                host: Arc::clone(host),
                step,
                state,
            })
            .collect()
    }

    fn changing(&self) -> Vec<Work<'a>> {
        self.work()
            .into_iter()
            .filter(|w| w.step.action != Action::AlreadyLive)
            .collect()
    }

    /// The image reference `w`'s host runs the target by: what its engine called it when the
    /// image was sent (or found there), else what the host recorded for the release, else the
    /// release's image (pulled from the registry by that reference).
    fn image_on(&self, w: &Work<'a>) -> String {
        let host = w.host.spec.to_string();
        self.sent
            .lock()
            .ok()
            .and_then(|sent| sent.iter().find(|s| s.host == host).map(|s| s.id.clone()))
            .unwrap_or_else(|| w.state.image_here(&self.plan.target))
    }

    fn mark(&self, f: impl FnOnce(&mut Done)) {
        if let Ok(mut done) = self.done.lock() {
            f(&mut done);
        }
    }

    /// Put the plan's target live on every host, or undo what was done and say what the hosts
    /// serve afterwards.
    pub async fn converge(&self) -> Result<(), Error> {
        for line in super::describe(self.plan) {
            info!("{line}");
        }
        self.say_why();
        if self.plan.is_noop() {
            ui::status(
                "Unchanged",
                &format!("{} already serves on every host", self.plan.target.release),
            );
            return Ok(());
        }
        // A deploy's images beyond `retain` go once the switch is done, while its checks, the
        // record and the rest run (docker's work beside nginx's, after the switch so that it
        // never slows it): pruning keeps every image a container uses and the releases the
        // history retains, the previous one included, so an undo still finds its image.
        let (switched, on_switch) = tokio::sync::oneshot::channel::<()>();
        let all = self.work();
        let prune = async {
            if self.kind == Kind::Deploy && on_switch.await.is_ok() {
                self.prune(&all).await;
            }
        };
        let run = async {
            match self.stages(switched).await {
                Ok(()) if self.no_promote => Ok(()),
                Ok(()) => {
                    self.finish().await;
                    Ok(())
                }
                Err(cause) => Err(self.undo(cause).await),
            }
        };
        let (result, ()) = tokio::join!(run, prune);
        result
    }

    /// Why hosts change beyond "a new release", grouped: what shipit saw (a live copy down,
    /// settings that changed, hosts that follow the others), before it acts on it.
    fn say_why(&self) {
        let target = &self.plan.target.release;
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |text: String, host: &str| match groups.iter_mut().find(|(t, _)| *t == text) {
            Some((_, hosts)) => hosts.push(format!("`{host}`")),
            None => groups.push((text, vec![format!("`{host}`")])),
        };
        for s in &self.plan.steps {
            if s.action == Action::AlreadyLive {
                continue;
            }
            if let Some(why) = &s.why {
                let what = match s.action {
                    Action::SwitchToWarm => {
                        format!("switching to {} where {target} runs warm", s.to)
                    }
                    _ => format!("starting {target} on {}", s.to),
                };
                add(format!("{what}: {why}"), &s.host);
            }
            if s.follows {
                add(
                    format!(
                        "{target} on hosts that have no history of it: they follow the other hosts"
                    ),
                    &s.host,
                );
            }
        }
        for (text, hosts) in groups {
            ui::status("Because", &format!("{} ({})", text, hosts.join(", ")));
        }
    }

    /// The stages, in order. A new stage is one line here and one function below.
    /// `switched` is told once every host switched.
    async fn stages(&self, switched: tokio::sync::oneshot::Sender<()>) -> Result<(), Error> {
        if self.kind == Kind::Deploy {
            self.cancel
                .guard(self.hooks(crate::hooks::Stage::PreDeploy))
                .await?;
        }
        if let Some(image) = self.ship {
            // Nothing serves differently for it: a failure here needs no undo but stopping.
            let sent = self
                .cancel
                .guard(crate::transfer::send(self.fleet, image))
                .await?;
            if let Ok(mut s) = self.sent.lock() {
                *s = sent;
            }
        }
        if self.kind == Kind::Deploy {
            self.release_phase().await?;
        }
        let direct = self.start_and_gate().await?;
        if self.no_promote {
            drop(direct);
            return self.hold().await;
        }
        if let Some(steps) = self.canary {
            self.canary(steps).await?;
        }
        // With no verification window, who answers on each new copy's port is read while the
        // switch commits (it waits on nginx's reload), not after it.
        let early = async {
            if self.verify_window().is_zero() {
                Some(self.owners().await)
            } else {
                None
            }
        };
        let (switch, owners) = tokio::join!(self.switch(), early);
        switch?;
        // Nobody waits for it but the pruning (gone with an error: nothing to tell).
        let _ = switched.send(());
        self.verify(&direct, owners).await?;
        if self.kind != Kind::Rollback {
            self.cancel.guard(self.smoke()).await?;
            self.cancel
                .guard(self.hooks(crate::hooks::Stage::PostDeploy))
                .await
                .map_err(|e| match e {
                    e @ Error::Interrupted { .. } => e,
                    e => Error::PostDeployFailed {
                        reason: e.to_string(),
                    },
                })?;
        }
        Ok(())
    }

    async fn hooks(&self, stage: crate::hooks::Stage) -> Result<(), Error> {
        let target = &self.plan.target;
        crate::hooks::run(self.config, stage, &target.release, &target.image).await
    }

    // --- the release phase: a backup, then the release command ----------------------------------

    /// On one host each, before any new copy starts: the backup (unless `--skip-backup`), then
    /// the release command, both in the new release's image with its environment. A failure
    /// stops the deploy with nothing switched.
    async fn release_phase(&self) -> Result<(), Error> {
        if let Some(backup) = &self.config.backup {
            if self.skip_backup {
                self.note_backup("skipped (--skip-backup)".into());
                ui::warn("no backup before this deploy (`--skip-backup`): the history says so");
            } else {
                self.backup(backup).await?;
            }
        }
        if let Some(command) = &self.config.deploy.release_command {
            let w = self.work_on(&self.config.deploy.release_host)?;
            let env = env::app_env(self.config, self.secrets, &self.plan.target, w.step.to)?;
            let image = self.image_on(&w);
            let oneoff = crate::oneoff::Oneoff {
                config: self.config,
                host: &w.host.spec,
                role: "release",
                name: crate::oneoff::name(self.config, "release"),
                image: &image,
                command,
                env: crate::oneoff::EnvFrom::Stdin,
                extra: Vec::new(),
                tty: false,
                interactive: false,
            };
            let docker = oneoff.docker_args();
            let cmd = scripts::Oneoff {
                label: "release command",
                name: &oneoff.name,
                pull: Some(&image),
                docker: &docker,
                env: Some(&env),
            }
            .command();
            self.release_step(&w, "release command", command, &oneoff.name, &cmd)
                .await?;
        }
        Ok(())
    }

    /// The backup, on its host: kept there at mode 0600 under a name the host's clock gives,
    /// the oldest beyond `keep` removed (never the one just taken).
    async fn backup(&self, backup: &crate::config::Backup) -> Result<(), Error> {
        let w = self.work_on(&backup.host)?;
        let env = env::app_env(self.config, self.secrets, &self.plan.target, w.step.to)?;
        let here = self.image_on(&w);
        let (name, cmd) = crate::backups::command(
            self.config,
            &w.host.spec,
            backup,
            &release_label(&self.plan.target.release),
            &here,
            &env,
        );
        let out = self
            .release_step(&w, "backup", &backup.command, &name, &cmd)
            .await?;
        let Some(taken) = crate::backups::taken(&out.stderr) else {
            return Err(w.host.failed(&cmd, &out));
        };
        crate::backups::say_taken(self.config, &w.host.spec, backup, &taken);
        self.note_backup(taken.file.clone());
        Ok(())
    }

    fn note_backup(&self, note: String) {
        if let Ok(mut n) = self.backup_note.lock() {
            *n = Some(note);
        }
    }

    /// The work of the host `spec` (a configured host, so one of the fleet's).
    fn work_on(&self, spec: &crate::config::HostSpec) -> Result<Work<'a>, Error> {
        self.work()
            .into_iter()
            .find(|w| w.host.spec == *spec)
            .ok_or_else(|| Error::Internal {
                context: "the release phase".into(),
                source: format!("`{spec}` is not among the environment's hosts").into(),
            })
    }

    /// Run one step of the release phase on `w`'s host, its output streamed with the host's
    /// name; interrupted, its container is removed before the deploy stops.
    async fn release_step(
        &self,
        w: &Work<'a>,
        what: &'static str,
        command: &[String],
        container: &str,
        cmd: &crate::remote::RemoteCommand,
    ) -> Result<crate::ssh::Output, Error> {
        let host = w.host.spec.to_string();
        let shown = command.join(" ");
        ui::status(
            if what == "backup" {
                "Backing up"
            } else {
                "Releasing"
            },
            &format!("`{shown}` on `{host}`, in {}", self.plan.target.release),
        );
        let t = Instant::now();
        let prefix = w.host.spec.host.clone();
        let ran = self
            .cancel
            .guard(w.host.run_streaming(cmd, |line| ui::output(&prefix, line)))
            .await;
        let out = match ran {
            Ok(out) => out,
            Err(e) => {
                // Cut short: the container would run on without us.
                let names = [container.to_owned()];
                let _ = w
                    .host
                    .check(&scripts::RemoveContainers { names: &names }.command())
                    .await;
                return Err(e);
            }
        };
        if out.code != Some(0) {
            return Err(Error::ReleasePhase {
                what,
                host,
                command: shown,
                code: out.code,
                tail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    out.stderr
                        .lines()
                        .filter(|l| !l.starts_with("shipit-"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            });
        }
        if what != "backup" {
            ui::status(
                "Released",
                &format!("`{shown}` on `{host}` in {:.2}s", t.elapsed().as_secs_f64()),
            );
        }
        Ok(out)
    }

    // --- start and gate, per host ------------------------------------------------------------

    /// Per host, on its own: open a tunnel to the new copy's port, (re)start it unless it runs
    /// warm, and poll it until it answers healthy and is proven to be this deploy's copy. The
    /// first failure stops the other hosts' waits. Returns the tunnels, by host index.
    async fn start_and_gate(&self) -> Result<Vec<(usize, Tunnel)>, Error> {
        let changing = self.changing();
        let target = &self.plan.target;
        let started_hosts: Vec<&Work<'a>> = changing
            .iter()
            .filter(|w| w.step.action == Action::StartAndSwitch)
            .collect();
        let starting = ui::Step::new(
            "Starting",
            started_hosts.iter().map(|w| &w.host.spec),
            &format!("pulling and starting {}", target.release),
        );
        let gating = ui::Step::new(
            "Checking",
            changing.iter().map(|w| &w.host.spec),
            &format!("waiting for {}", self.config.health.path),
        );
        let t = Instant::now();
        let started_count = std::sync::atomic::AtomicUsize::new(0);
        let announce_started = || {
            let n = started_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == started_hosts.len() {
                ui::status(
                    "Started",
                    &format!(
                        "{} on {n} host{} in {:.2}s",
                        target.release,
                        plural(n),
                        t.elapsed().as_secs_f64()
                    ),
                );
            }
        };
        let (abort, trigger) = Cancel::manual();
        let mut results = futures::stream::iter(changing.iter().cloned())
            .map(|w| {
                let start_line = starting.line(&w.host.spec);
                let gate_line = gating.line(&w.host.spec);
                let announce_started = &announce_started;
                let abort = &abort;
                async move {
                    let index = w.index;
                    let r = self
                        .start_and_gate_host(w, (&start_line, &gate_line), announce_started, abort)
                        .await;
                    (index, r)
                }
            })
            .buffer_unordered(self.fleet.max_parallel.max(1));
        let tunnels = first_failure(&mut results, &trigger).await;
        drop(results);
        drop(starting);
        drop(gating);
        self.cancel.check()?;
        let tunnels = tunnels?;
        let warm = if started_hosts.is_empty() {
            " (warm)"
        } else {
            ""
        };
        ui::status(
            "Healthy",
            &format!(
                "{} on {} host{} in {:.2}s{warm}",
                target.release,
                changing.len(),
                plural(changing.len()),
                t.elapsed().as_secs_f64(),
            ),
        );
        Ok(tunnels)
    }

    /// One host: start (unless warm), then gate. A start in flight is never abandoned (its
    /// remote command would go on and start the copy after the undo stopped it); a wait for
    /// health ends at once on a signal or when another host failed (`abort`).
    async fn start_and_gate_host(
        &self,
        w: Work<'a>,
        lines: (&ui::HostLine, &ui::HostLine),
        announce_started: &impl Fn(),
        abort: &Cancel,
    ) -> Result<Tunnel, Error> {
        let (start_line, gate_line) = lines;
        let tunnel = Tunnel::open(&w.host, w.step.port);
        let tunnel = if w.step.action == Action::StartAndSwitch {
            self.mark(|d| {
                d.started.insert(w.index);
            });
            let (tunnel, started) = tokio::join!(tunnel, self.prepare(&w));
            start_line.finish_with(&started, "started");
            if let Err(e) = &started {
                gate_line.failed(e);
            }
            started?;
            announce_started();
            tunnel?
        } else {
            tunnel.await?
        };
        // The first half of the switch while this host is gated: the new upstream staged and
        // validated beside the live one (nothing serves differently), so that the switch is
        // only a rename and a reload. A gate that fails leaves it staged, unused: every run
        // stages its own, under the lock, before it commits.
        let r = self
            .cancel
            .guard(abort.guard(async {
                let (gated, staged) =
                    tokio::join!(self.gate(&w, tunnel, gate_line), self.stage_switch(&w));
                let tunnel = gated?;
                staged.map(|()| tunnel)
            }))
            .await;
        // A release left waiting starts its processes when promoted: they would consume the
        // live release's queue meanwhile.
        let r = match r {
            Ok(tunnel) if self.no_promote => Ok(tunnel),
            Ok(tunnel) => self
                .cancel
                .guard(abort.guard(self.start_processes(&w, gate_line)))
                .await
                .map(|()| tunnel),
            Err(e) => Err(e),
        };
        gate_line.finish_with(&r, "healthy");
        r
    }

    /// The processes beside the web one that run on `w`'s host.
    fn processes_on(&self, w: &Work<'a>) -> Vec<&'a crate::config::Process> {
        self.config
            .processes
            .iter()
            .filter(|p| p.hosts.contains(&w.host.spec))
            .collect()
    }

    /// Start the new colour's processes on `w`'s host (a warm colour's too: they stop after
    /// each deploy), then wait until each is ready. A process that is not fails the deploy,
    /// which is undone like a failed health gate.
    async fn start_processes(&self, w: &Work<'a>, line: &ui::HostLine) -> Result<(), Error> {
        let processes = self.processes_on(w);
        if processes.is_empty() {
            return Ok(());
        }
        let site = self.config.site();
        let colour = w.step.to;
        let units: Vec<String> = processes
            .iter()
            .map(|p| site.process_instance(&p.name, colour))
            .collect();
        self.mark(|d| {
            d.processes.insert(w.index);
        });
        line.set(format!(
            "starting {}",
            processes
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        w.host
            .check(
                &scripts::StartUnits {
                    label: "start the processes",
                    units: &units,
                }
                .command(),
            )
            .await?;
        line.set("waiting for the processes to be ready");
        let checks = processes.iter().map(|p| {
            let unit = site.process_instance(&p.name, colour);
            let container = site.process_container(&p.name, colour);
            async move {
                let cmd = scripts::ProcessReady {
                    unit: &unit,
                    container: &container,
                    ready: &p.ready,
                    timeout: self.config.health.timeout,
                }
                .command();
                let out = w.host.run(&cmd).await?;
                if out.code == Some(0) {
                    return Ok(());
                }
                Err(Error::ProcessNotReady {
                    host: w.host.spec.to_string(),
                    process: p.name.clone(),
                    release: self.plan.target.release.clone(),
                    said: out.stderr.trim_end().to_owned(),
                    environment: self.config.environment.clone(),
                })
            }
        });
        // Bounded: each check is a session on the host's one SSH master.
        let checked: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(checks),
            crate::fleet::SESSIONS_PER_HOST,
        ))
        .await;
        for r in checked {
            r?;
        }
        Ok(())
    }

    async fn prepare(&self, w: &Work<'a>) -> Result<(), Error> {
        let site = self.config.site();
        let colour = w.step.to;
        let target = &self.plan.target;
        let image = self.image_on(w);
        let span = info_span!("prepare", host = %w.host.spec, colour = %colour);
        async {
            let env = env::app_env(self.config, self.secrets, target, colour)?;
            let cmd = scripts::Prepare {
                label: format!("start {} on {colour}", target.release),
                image: &image,
                unit: &site.unit(colour),
                unit_env_file: &site.unit_env(colour),
                app_env_file: &site.app_env(colour),
                container: &site.container(colour),
                port: w.step.port,
                upstream_include: &site.upstream_include(),
                legacy_unit: &site.legacy().unit(colour),
                unit_env_lines: state::unit_env(
                    target,
                    &image,
                    w.step.port,
                    colour,
                    &self.config.health.path,
                ),
                app_env: env,
            }
            .command();
            let t = Instant::now();
            let out = w.host.run(&cmd).await?;
            match out.code {
                Some(0) => {}
                Some(6) => return Err(port_held(self.config, &w.host, w.step.port, &out.stderr)),
                _ => return Err(w.host.failed(&cmd, &out)),
            }
            info!(elapsed_ms = t.elapsed().as_millis() as u64, "started");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Poll the new copy until it answers healthy, then prove the answer came from it: the
    /// container of this colour runs this release's image and publishes that port. A warm copy
    /// (a rollback's, already running) is asked who it is while it is polled, and again after
    /// only if that first answer was not this release's.
    async fn gate(
        &self,
        w: &Work<'a>,
        tunnel: Tunnel,
        line: &ui::HostLine,
    ) -> Result<Tunnel, Error> {
        let colour = w.step.to;
        let client = probe::client(false)?;
        let expect = self.expect();
        let seen = |attempt: u32, answer: &probe::Answer| {
            line.set(format!(
                "waiting for {}: {} (attempt {})",
                expect.path,
                answer.summary(),
                attempt + 1
            ));
        };
        let warm = w.step.action != Action::StartAndSwitch;
        let early_owner = async { if warm { self.owner(w).await.ok() } else { None } };
        let (health, early_owner) = tokio::join!(
            probe::wait_healthy(&client, &tunnel, &expect, self.config.health.timeout, seen),
            early_owner
        );
        let owner = async {
            match early_owner {
                Some(owner) if owner.serves(&self.image_on(w), w.step.port) => Ok(owner),
                _ => self.owner(w).await,
            }
        };
        let failure = match health {
            Ok(took) => match owner.await {
                Ok(owner) if owner.serves(&self.image_on(w), w.step.port) => {
                    info!(host = %w.host.spec, colour = %colour, elapsed_ms = took.as_millis() as u64, "healthy");
                    return Ok(tunnel);
                }
                Ok(owner) => format!(
                    "port {} answered healthy, but not from this deploy's copy: {}",
                    w.step.port,
                    owner.describe(&self.config.site().container(colour))
                ),
                Err(e) => format!("could not tell who answers on port {}: {e}", w.step.port),
            },
            Err((answer, checks)) => format!("{answer} (after {checks} checks)"),
        };
        Err(self.gate_failure(w, failure).await)
    }

    /// Who answers on the new copy's port.
    async fn owner(&self, w: &Work<'a>) -> Result<PortOwner, Error> {
        let cmd = scripts::WhoAnswers {
            container: &self.config.site().container(w.step.to),
            port: w.step.port,
            container_port: self.config.container.port,
        }
        .command();
        let out = w.host.check(&cmd).await?;
        Ok(PortOwner::parse(&String::from_utf8_lossy(&out)))
    }

    async fn gate_failure(&self, w: &Work<'a>, answer: String) -> Error {
        let unit = self.config.site().unit(w.step.to);
        let logs = w
            .host
            .run(
                &scripts::Logs {
                    unit: &unit,
                    lines: 50,
                    legacy_unit: None,
                    follow: false,
                }
                .command(),
            )
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(could not read the log: {e})"));
        Error::HealthGate(Box::new(HealthGateFailure {
            host: w.host.spec.to_string(),
            colour: w.step.to.to_string(),
            release: self.plan.target.release.clone(),
            timeout: humantime::format_duration(self.config.health.timeout).to_string(),
            answer,
            unit,
            logs: if logs.trim().is_empty() {
                "(empty)".into()
            } else {
                logs
            },
        }))
    }

    fn expect(&self) -> Expect<'a> {
        Expect {
            path: &self.config.health.path,
            json: self.config.health.expect_json.as_ref(),
        }
    }

    // --- switch --------------------------------------------------------------------------------

    /// Stage `w`'s switch: its new upstream beside the live one, validated by nginx.
    async fn stage_switch(&self, w: &Work<'a>) -> Result<(), Error> {
        let content = self.upstream_for(w);
        let cmd = scripts::StageUpstream {
            upstream_include: &self.config.site().upstream_include(),
            content: &content,
        }
        .command();
        w.host.check(&cmd).await.map(|_| ())
    }

    /// Every host to its new colour, or none: a failed switch anywhere is undone everywhere.
    /// The second half of a two-phase switch: every host staged its upstream while gated, so
    /// each commit is a rename and a reload, sent to every host at once (not `max_parallel`
    /// at a time): the fleet serves two releases only for the time between the first host's
    /// switch and the last's, which is measured and reported. A switch in flight is never
    /// abandoned: a signal is acted on when every switch returned.
    async fn switch(&self) -> Result<(), Error> {
        let changing = self.changing();
        self.mark(|d| d.switched.extend(changing.iter().map(|w| w.index)));
        let t = Instant::now();
        let progress = ui::Step::new(
            "Switching",
            changing.iter().map(|w| &w.host.spec),
            "rename, reload, waiting for the new workers",
        );
        let label = format!("switch to {}", self.plan.target.release);
        let at_once = crate::fleet::commands_within_open_files(SWITCH_AT_ONCE);
        if at_once < changing.len().min(SWITCH_AT_ONCE) {
            ui::warn(&format!(
                "the open files limit ({}) allows {at_once} switches at once, so {} hosts switch in {} waves and serve two releases longer: raise it (`ulimit -Hn`, `LimitNOFILE=`) for one wave",
                crate::fleet::open_files_soft_limit(),
                changing.len(),
                changing.len().div_ceil(at_once)
            ));
        }
        let results = each_bounded(changing.clone(), at_once, |w| {
            let line = progress.line(&w.host.spec);
            let label = &label;
            async move {
                let r = self.commit(&w, label).await;
                let done = t.elapsed();
                line.finish_with(&r, "switched");
                r.map(|()| done)
            }
        })
        .await;
        drop(progress);
        if let Some((host, e)) = changing
            .iter()
            .zip(&results)
            .find_map(|(w, r)| r.as_ref().err().map(|e| (w.host.spec.to_string(), e)))
        {
            return Err(Error::SwitchFailed {
                host,
                reason: e.to_string(),
            });
        }
        let ends: Vec<Duration> = results.into_iter().flatten().collect();
        let window = match (ends.iter().min(), ends.iter().max()) {
            (Some(first), Some(last)) => *last - *first,
            _ => Duration::ZERO,
        };
        if let Ok(mut w) = self.window.lock() {
            *w = Some(window);
        }
        self.cancel.check()?;
        ui::status(
            "Switched",
            &format!(
                "{} host{} to {} in {:.2}s (two releases served for {:.3}s, first host to last)",
                changing.len(),
                plural(changing.len()),
                self.plan.target.release,
                t.elapsed().as_secs_f64(),
                window.as_secs_f64()
            ),
        );
        Ok(())
    }

    /// Commit `w`'s staged upstream. When the master was lost (a deployer stalled past its
    /// keep-alives, a network blip), once more on a new connection, writing the whole upstream
    /// (validated, reloaded) rather than renaming the staged one: the lost commit may have
    /// renamed it already, and writing what it would have written is the same either way.
    async fn commit(&self, w: &Work<'a>, label: &str) -> Result<(), Error> {
        let staged = Arc::clone(&w.host);
        let attempt = |host: Arc<Host>| {
            let first = Arc::ptr_eq(&host, &staged);
            async move {
                if first {
                    let cmd = scripts::CommitUpstream {
                        label,
                        upstream_include: &self.config.site().upstream_include(),
                    }
                    .command();
                    host.check(&cmd).await.map(|_| ())
                } else {
                    self.write_upstream(&host, self.upstream_for(w), label)
                        .await
                }
            }
        };
        crate::fleet::on_fresh_connection_if_lost(&w.host, &self.config.ssh, attempt).await
    }

    /// The upstream a host gets: the new colour, and the one it leaves as backup while warm
    /// (on the port it actually runs on).
    fn upstream_for(&self, w: &Work<'a>) -> String {
        let backup = w
            .step
            .from
            .as_ref()
            .filter(|_| self.config.deploy.keep_previous == KeepPrevious::Warm)
            .filter(|from| from.port != w.step.port)
            .map(|from| from.port);
        state::upstream(Some(w.step.to), w.step.port, backup)
    }

    async fn write_upstream(&self, host: &Host, content: String, label: &str) -> Result<(), Error> {
        let cmd = scripts::Switch {
            label,
            upstream_include: &self.config.site().upstream_include(),
            content: &content,
        }
        .command();
        host.check(&cmd).await.map(|_| ())
    }

    // --- verify --------------------------------------------------------------------------------

    /// How long verification watches users get the new release: none in a rollback.
    fn verify_window(&self) -> Duration {
        match self.kind {
            Kind::Deploy | Kind::Promote => self.config.deploy.verify_window,
            Kind::Rollback => Duration::ZERO,
        }
    }

    /// Who answers on each new copy's port.
    async fn owners(&self) -> Vec<(Work<'a>, Result<PortOwner, Error>)> {
        each_bounded(self.changing(), self.fleet.max_parallel, |w| async move {
            let owner = self.owner(&w).await;
            (w, owner)
        })
        .await
    }

    /// Requests through every host's nginx for the verify window (at least one round): each
    /// must be healthy and answered by the new colour, not the backup; each new copy directly
    /// too; and at the end, each new copy is still the container this deploy started (read at
    /// the end of the window, or `owners`, read during the switch when there is no window).
    async fn verify(
        &self,
        direct: &[(usize, Tunnel)],
        owners: Option<Vec<(Work<'a>, Result<PortOwner, Error>)>>,
    ) -> Result<(), Error> {
        let window = self.verify_window();
        let t = Instant::now();
        let all = self.work();
        let progress = ui::Step::new(
            "Verifying",
            all.iter().map(|w| &w.host.spec),
            "through nginx",
        );
        let result = self
            .cancel
            .guard(async {
                // Every per-host step runs on all hosts at once (bounded like the others):
                // in a rollback, verification is a third of the time to live.
                let nginx = each_bounded(all.clone(), self.fleet.max_parallel, |w| async move {
                    Tunnel::open(&w.host, 80)
                        .await
                        .map(|t| t.with_token(w.state.verify_token.as_deref()))
                        .map_err(|e| verify_failed(&w.host.spec.to_string(), e.to_string()))
                })
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
                let rounds = async {
                    self.verify_rounds(&all, direct, &nginx, window, &progress)
                        .await?;
                    if self.config.tls.is_some() {
                        self.verify_over_tls(&all).await?;
                    }
                    Ok::<_, Error>(())
                };
                rounds.await?;
                let owners = match owners {
                    Some(owners) => owners,
                    None => self.owners().await,
                };
                for (w, owner) in owners {
                    let owner = owner
                        .map_err(|e| verify_failed(&w.host.spec.to_string(), e.to_string()))?;
                    if !owner.serves(&self.image_on(&w), w.step.port) {
                        return Err(verify_failed(
                            &w.host.spec.to_string(),
                            format!(
                                "the new copy is gone: {}",
                                owner.describe(&self.config.site().container(w.step.to))
                            ),
                        ));
                    }
                }
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => all.iter().for_each(|w| {
                progress
                    .line(&w.host.spec)
                    .finish(true, "healthy through nginx")
            }),
            Err(Error::VerifyFailed { host, reason }) => {
                progress.line(host).finish(false, reason.clone());
            }
            Err(_) => {}
        }
        drop(progress);
        result?;
        ui::status(
            "Verified",
            &format!(
                "through nginx on {} host{} in {:.2}s",
                all.len(),
                plural(all.len()),
                t.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }

    /// With `[tls]`: one request per host over HTTPS through nginx, with the domain as SNI, as
    /// a browser makes it: healthy, and answered by the new colour. A certificate this machine
    /// does not trust is a warning (it may be a private CA's), never a failure.
    async fn verify_over_tls(&self, all: &[Work<'a>]) -> Result<(), Error> {
        let domain = &self.config.domain;
        let expect = self.expect();
        let path = expect.path;
        let answers = each_bounded(all.to_vec(), self.fleet.max_parallel, |w| async move {
            let tunnel = Tunnel::open(&w.host, 443)
                .await
                .map_err(|e| verify_failed(&w.host.spec.to_string(), e.to_string()))?
                .with_token(w.state.verify_token.as_deref());
            Ok::<_, Error>(probe::get_over_tls(&tunnel, domain, path).await)
        })
        .await;
        for (w, seen) in all.iter().zip(answers) {
            let host = w.host.spec.to_string();
            let seen = seen?;
            if !expect.healthy(&seen.answer) {
                return Err(verify_failed(
                    &host,
                    format!("over HTTPS (SNI `{domain}`): {}", seen.answer),
                ));
            }
            if served_by(seen.answer.upstream.as_deref()) != Some(w.step.port) {
                return Err(verify_failed(
                    &host,
                    format!(
                        "over HTTPS (SNI `{domain}`), nginx answered from `{}`, not from the new copy on port {}",
                        seen.answer.upstream.as_deref().unwrap_or("-"),
                        w.step.port
                    ),
                ));
            }
            if let Some(warning) = seen
                .certificate
                .as_deref()
                .and_then(|der| crate::acme::expiry_warning(self.config, &host, der))
            {
                ui::warn(&warning);
            }
            if let Some(reason) = seen.untrusted {
                ui::warn(&format!(
                    "`{host}` serves `{domain}` over HTTPS with a certificate this machine does not trust ({reason}); if it is a private CA's, set SSL_CERT_FILE to a bundle that holds it"
                ));
            }
        }
        Ok(())
    }

    /// [`Self::verify`]'s checks, round after round until `window` has passed.
    async fn verify_rounds(
        &self,
        all: &[Work<'a>],
        direct: &[(usize, Tunnel)],
        nginx: &[Tunnel],
        window: Duration,
        progress: &ui::Step,
    ) -> Result<(), Error> {
        let expect = self.expect();
        let client = probe::client(true)?;
        let started = Instant::now();
        for round in 1.. {
            // Bounded like every fan-out: at most `max_parallel` requests (and sockets) at once.
            let limit = self.fleet.max_parallel.max(1);
            let through_nginx: Vec<probe::Answer> = futures::stream::iter(nginx)
                .map(|t| probe::get(&client, t, expect.path, Some(&self.config.domain)))
                .buffered(limit)
                .collect()
                .await;
            for (w, answer) in all.iter().zip(through_nginx) {
                let host = w.host.spec.to_string();
                if !expect.healthy(&answer) {
                    return Err(verify_failed(&host, format!("through nginx: {answer}")));
                }
                let want = w.step.port;
                if served_by(answer.upstream.as_deref()) != Some(want) {
                    return Err(verify_failed(
                        &host,
                        format!(
                            "nginx answered from `{}`, not from the new copy on port {want}",
                            answer.upstream.as_deref().unwrap_or(
                                "(no X-Shipit-Upstream header: run `shipit provision` to update the site)"
                            )
                        ),
                    ));
                }
            }
            let directly: Vec<probe::Answer> = futures::stream::iter(direct)
                .map(|(_, t)| probe::get(&client, t, expect.path, None))
                .buffered(limit)
                .collect()
                .await;
            for ((index, _), answer) in direct.iter().zip(directly) {
                if !expect.healthy(&answer) {
                    let host = all
                        .get(*index)
                        .map(|w| w.host.spec.to_string())
                        .unwrap_or_default();
                    return Err(verify_failed(
                        &host,
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

    // --- canary: weighted steps, each judged ---------------------------------------------------

    /// Before the switch: on every host at once, the new colour takes each step's share of the
    /// requests (weights in the upstream; the previous colour stays the live server); the step
    /// is held while nginx logs which copy answered, then judged fleet-wide against the
    /// previous colour over the same window. A breach fails the run, whose undo switches every
    /// host back; passing every step leaves the switch to 100% (staged again) to the deploy.
    async fn canary(&self, steps: &[u8]) -> Result<(), Error> {
        let Some(canary) = &self.config.canary else {
            return Ok(());
        };
        let changing = self.changing();
        self.mark(|d| d.switched.extend(changing.iter().map(|w| w.index)));
        let log = self.config.site().upstreams_log();
        for &percent in steps {
            let label = format!("canary {percent}%");
            // Where each host's log stands, then the weights: every answer of the new colour
            // at this step is counted.
            let offsets = each_bounded(changing.clone(), SWITCH_AT_ONCE, |w| {
                let label = &label;
                let log = &log;
                async move {
                    let from = w.step.from.as_ref().ok_or_else(|| Error::Internal {
                        context: "a canary step".into(),
                        source: format!("`{}` has no live copy", w.host.spec).into(),
                    })?;
                    let content = state::canary_upstream(
                        from.colour,
                        from.port,
                        w.step.to,
                        w.step.port,
                        percent,
                    );
                    let size = self.canary_read(&w, log, None).await?.size;
                    self.write_upstream(&w.host, content, label)
                        .await
                        .map_err(|e| Error::SwitchFailed {
                            host: w.host.spec.to_string(),
                            reason: e.to_string(),
                        })?;
                    Ok::<_, Error>(size)
                }
            })
            .await;
            let offsets = crate::fleet::collect(offsets)?;
            self.canary_step(canary, percent, &changing, &offsets)
                .await?;
        }
        // The switch commits the staged upstream: a canary step's write used it up.
        let staged = each_bounded(changing.clone(), self.fleet.max_parallel, |w| async move {
            self.stage_switch(&w).await
        })
        .await;
        crate::fleet::collect(staged).map(|_| ())
    }

    /// Hold one step (longer, up to three holds, while the new colour has too few requests to
    /// judge), then judge it; its figures go to the progress lines and a status line.
    async fn canary_step(
        &self,
        canary: &crate::config::Canary,
        percent: u8,
        changing: &[Work<'a>],
        offsets: &[u64],
    ) -> Result<(), Error> {
        use super::canary::{Verdict, judge, total};
        let t = Instant::now();
        let log = self.config.site().upstreams_log();
        let progress = ui::Step::new(
            "Canary",
            changing.iter().map(|w| &w.host.spec),
            &format!(
                "{percent}%: holding {} while nginx logs who answers",
                humantime::format_duration(canary.hold)
            ),
        );
        let mut holds = 0;
        loop {
            holds += 1;
            self.cancel
                .guard(async {
                    tokio::time::sleep(canary.hold).await;
                    Ok(())
                })
                .await?;
            let samples = each_bounded(
                changing
                    .iter()
                    .cloned()
                    .zip(offsets.iter().copied())
                    .collect(),
                self.fleet.max_parallel,
                |(w, from): (Work<'a>, u64)| {
                    let log = &log;
                    let progress = &progress;
                    async move {
                        let s = self.canary_read(&w, log, Some(from)).await?;
                        progress.line(&w.host.spec).set(format!(
                            "new {}; previous {}",
                            s.new.describe(),
                            s.old.describe()
                        ));
                        Ok::<_, Error>(s)
                    }
                },
            )
            .await;
            let samples = crate::fleet::collect(samples)?;
            let (new, old) = total(&samples);
            let seen = new.requests + old.requests;
            let split = if seen == 0 {
                0.0
            } else {
                new.requests as f64 * 100.0 / seen as f64
            };
            let figures = format!(
                "new {}; previous {}; {split:.1}% of {seen} requests went to the new release",
                new.describe(),
                old.describe()
            );
            match judge(canary, new, old) {
                Verdict::TooFew if holds < 3 => continue,
                Verdict::TooFew => {
                    drop(progress);
                    return Err(Error::CanaryFailed {
                        percent,
                        reason: format!(
                            "too few requests to judge: the new release answered {} in {:.1}s, `canary.min_requests` is {} ({figures})",
                            new.requests,
                            t.elapsed().as_secs_f64(),
                            canary.min_requests
                        ),
                    });
                }
                Verdict::Breach(reason) => {
                    for w in changing {
                        progress.line(&w.host.spec).failed(&"breach");
                    }
                    drop(progress);
                    let served = self.canary_back(changing, offsets).await;
                    return Err(Error::CanaryFailed {
                        percent,
                        reason: format!("{reason}{served}"),
                    });
                }
                Verdict::Pass => {
                    if let Ok(mut passed) = self.canary_passed.lock() {
                        passed.push(format!("{percent}% passed ({figures})"));
                    }
                    for w in changing {
                        progress
                            .line(&w.host.spec)
                            .finish_with(&Ok::<(), Error>(()), "passed");
                    }
                    drop(progress);
                    ui::status(
                        "Canary",
                        &format!(
                            "{percent}% on {} host{} for {:.1}s passed: {figures}",
                            changing.len(),
                            plural(changing.len()),
                            t.elapsed().as_secs_f64()
                        ),
                    );
                    return Ok(());
                }
            }
        }
    }

    /// After a breach, at once: every host's upstream as it was before the run (the undo
    /// writes it again and reads it back), then what the new release answered in all since
    /// the step began, for the message: what its users got.
    async fn canary_back(&self, changing: &[Work<'a>], offsets: &[u64]) -> String {
        let log = self.config.site().upstreams_log();
        let work: Vec<(Work<'a>, u64)> = changing
            .iter()
            .cloned()
            .zip(offsets.iter().copied())
            .collect();
        let read = each_bounded(work, SWITCH_AT_ONCE, |(w, from)| {
            let log = &log;
            async move {
                let previous = w.state.upstream.clone().unwrap_or_default();
                self.write_upstream(&w.host, previous, "canary: switch back")
                    .await?;
                self.canary_read(&w, log, Some(from)).await
            }
        })
        .await;
        match crate::fleet::collect(read) {
            Ok(samples) => {
                let (new, _) = super::canary::total(&samples);
                format!(
                    "; in all, the new release answered {} requests, {} of them with errors, before every host went back",
                    new.requests, new.errors
                )
            }
            Err(_) => String::new(),
        }
    }

    /// `w`'s log size, and with `from` its figures since then.
    async fn canary_read(
        &self,
        w: &Work<'a>,
        log: &str,
        from: Option<u64>,
    ) -> Result<super::canary::Sample, Error> {
        let old_port = w.step.from.as_ref().map_or(0, |f| f.port);
        let cmd = scripts::CanaryRead {
            log,
            from,
            new_port: w.step.port,
            old_port,
        }
        .command();
        let out = w.host.check(&cmd).await?;
        super::canary::parse(&String::from_utf8_lossy(&out), w.step.port, old_port).map_err(
            |message| Error::Protocol {
                host: w.host.spec.to_string(),
                command: cmd.label.clone(),
                message,
            },
        )
    }

    // --- hold: the release left waiting for promotion ----------------------------------------

    /// `deploy --no-promote`, once every host is healthy: on each, the live upstream loses its
    /// backup (the idle colour now runs the waiting release, which must never take users'
    /// traffic when the live copy fails), `[preview]`'s include points at the waiting copy, and
    /// the waiting record is written; then the preview is read back through each host's nginx.
    async fn hold(&self) -> Result<(), Error> {
        let changing = self.changing();
        if let Some(w) = changing.iter().find(|w| {
            w.step
                .from
                .as_ref()
                .is_some_and(|f| f.via == state::Via::Backup)
        }) {
            // The plan is refused before anything starts (`deploy::refuse_no_promote`); this is
            // the same rule, kept where the work is.
            return Err(Error::Internal {
                context: "holding a release".into(),
                source: format!("`{}` serves through its backup", w.host.spec).into(),
            });
        }
        self.mark(|d| d.held.extend(changing.iter().map(|w| w.index)));
        let progress = ui::Step::new(
            "Holding",
            changing.iter().map(|w| &w.host.spec),
            "the live release serves, the new one waits",
        );
        let site = self.config.site();
        let me: Me = lock::me();
        let target = &self.plan.target;
        let results = each_bounded(changing.clone(), self.fleet.max_parallel, |w| {
            let line = progress.line(&w.host.spec);
            let waiting = state::Waiting {
                release: target.release.clone(),
                image: target.image.clone(),
                runs: Some(self.image_on(&w)).filter(|i| *i != target.image),
                colour: w.step.to,
                port: w.step.port,
                run: self.run_id.clone(),
                user: me.user.clone(),
                machine: me.machine.clone(),
                time: 0,
            };
            let site = &site;
            async move {
                let upstream = match &w.step.from {
                    Some(f) => state::upstream(Some(f.colour), f.port, None),
                    None => w.state.upstream.clone().unwrap_or_default(),
                };
                let preview = state::preview_upstream(w.step.to, w.step.port, &target.release);
                let include = site.preview_include();
                let record = waiting.render();
                let cmd = scripts::Hold {
                    upstream_include: &site.upstream_include(),
                    upstream: &upstream,
                    preview: self
                        .config
                        .preview
                        .as_ref()
                        .map(|_| (include.as_str(), preview.as_str())),
                    record: &site.waiting_record(),
                    waiting: record.trim_end(),
                }
                .command();
                let mut r = w.host.check(&cmd).await.map(|_| ());
                if r.is_ok()
                    && let Some(p) = &self.config.preview
                {
                    line.set(format!(
                        "reading the preview back through nginx ({})",
                        p.host
                    ));
                    r = self.read_preview(&w, &p.host).await;
                }
                line.finish_with(&r, "waiting");
                r
            }
        })
        .await;
        drop(progress);
        crate::fleet::collect(results)?;
        let how = match &self.config.preview {
            Some(p) => format!(
                "; preview: http{}://{}/ or any request carrying `{}` (read back through nginx on each host)",
                if self.config.tls.is_some() { "s" } else { "" },
                p.host,
                p.header
            ),
            None => "; no `[preview]`: it is not reachable through nginx".to_owned(),
        };
        let live: BTreeSet<String> = changing
            .iter()
            .filter_map(|w| w.step.from.as_ref().map(|f| f.release.release.clone()))
            .collect();
        ui::status(
            "Waiting",
            &format!(
                "{} on {} host{} for promotion; users get {}{how}",
                target.release,
                changing.len(),
                plural(changing.len()),
                if live.is_empty() {
                    "nothing yet".to_owned()
                } else {
                    live.into_iter().collect::<Vec<_>>().join(", ")
                }
            ),
        );
        Ok(())
    }

    /// The waiting copy answers healthy through `w`'s nginx for the preview's host name.
    async fn read_preview(&self, w: &Work<'a>, host: &str) -> Result<(), Error> {
        let tunnel = Tunnel::open(&w.host, 80)
            .await?
            .with_token(w.state.verify_token.as_deref());
        let client = probe::client(true)?;
        let expected = format!("127.0.0.1:{}", w.step.port);
        let mut last = None;
        for _ in 0..20 {
            let answer = probe::get_within(
                &client,
                &tunnel,
                &self.config.health.path,
                Some(host),
                Some(Duration::from_secs(2)),
            )
            .await;
            if self.expect().healthy(&answer) && answer.upstream.as_deref() == Some(&expected) {
                return Ok(());
            }
            last = Some(answer);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = last.map(|a| {
            format!(
                "{a} (answered by {})",
                a.upstream.as_deref().unwrap_or("an unnamed upstream")
            )
        });
        Err(verify_failed(
            &w.host.spec.to_string(),
            format!(
                "the preview (`{host}`) does not reach the waiting copy on port {}: {}",
                w.step.port,
                answer.unwrap_or_default()
            ),
        ))
    }

    /// Nothing waits for promotion on `hosts` any more: `[preview]` answers 502 again, the
    /// record goes. A failure is a warning: the next run clears it again.
    async fn clear_waiting(&self, hosts: &[Work<'a>]) {
        if hosts.is_empty() {
            return;
        }
        let site = self.config.site();
        let results = each_bounded(hosts.to_vec(), self.fleet.max_parallel, |w| {
            let site = &site;
            async move {
                let include = site.preview_include();
                let content = state::preview_nothing_waits(self.config.ports.blue);
                let cmd = scripts::ClearWaiting {
                    preview: self
                        .config
                        .preview
                        .as_ref()
                        .map(|_| (include.as_str(), content.as_str())),
                    record: &site.waiting_record(),
                }
                .command();
                w.host
                    .check(&cmd)
                    .await
                    .map_err(|e| format!("`{}`: {}", w.host.spec, first_line(&e)))
            }
        })
        .await;
        for r in results {
            if let Err(e) = r {
                ui::warn(&format!(
                    "could not clear the release waiting for promotion on {e}"
                ));
            }
        }
    }

    // --- smoke -----------------------------------------------------------------------------------

    async fn smoke(&self) -> Result<(), Error> {
        let all = self.work();
        let hosts: Vec<(Arc<Host>, Option<String>)> = all
            .iter()
            .map(|w| (Arc::clone(&w.host), w.state.verify_token.clone()))
            .collect();
        super::smoke::burst(self.config, &hosts)
            .await
            .map_err(|reason| Error::SmokeFailed { reason })
    }

    // --- the end: record, stop the previous colour --------------------------------------

    async fn finish(&self) {
        let all = self.work();
        let outcome = match self.kind {
            Kind::Deploy | Kind::Promote => Outcome::Deployed,
            Kind::Rollback => Outcome::RolledBack,
        };
        // What waited for promotion went live, or was replaced: nothing waits now.
        let waited: Vec<Work<'a>> = all
            .iter()
            .filter(|w| w.state.waiting.is_some())
            .cloned()
            .collect();
        self.clear_waiting(&waited).await;
        let files = self.fleet_files();
        // A deploy's images beyond `retain` are pruned meanwhile (see `converge`); a rollback
        // pulls nothing new, at most a retained image.
        let canary = self
            .canary_passed
            .lock()
            .map(|steps| steps.join("; "))
            .unwrap_or_default();
        let note = (!canary.is_empty()).then(|| format!("canary: {canary}"));
        self.record(&all, outcome, note.as_deref(), &files).await;
        // The previous release's processes stop now that the switch is verified (they would
        // consume the same queue as the new ones).
        self.stop_previous_processes(&self.changing()).await;
        if self.config.deploy.keep_previous == KeepPrevious::Stop {
            self.stop_previous(&self.changing()).await;
        }
    }

    /// What a run that went live writes beside the history: the fleet it counted (the
    /// configured hosts, and those deployed to before that are no longer configured, until
    /// they are retired) and the hosts it left out, now behind.
    fn fleet_files(&self) -> Vec<(String, String)> {
        let site = self.config.site();
        let record = FleetRecord {
            hosts: self.config.hosts.iter().map(ToString::to_string).collect(),
            removed: crate::fleet::removed_hosts(self.config, self.states),
        };
        let behind: Vec<Behind> = self
            .fleet
            .skipped
            .iter()
            .map(|u| Behind {
                host: u.spec.to_string(),
                release: self.plan.target.release.clone(),
                command: self.kind.command().to_owned(),
                run: self.run_id.clone(),
            })
            .collect();
        vec![
            (site.fleet_record(), record.render()),
            (site.behind_record(), Behind::render_all(&behind)),
        ]
    }

    async fn stop_previous_processes(&self, changing: &[Work<'a>]) {
        let results = each_bounded(changing.to_vec(), self.fleet.max_parallel, |w| async move {
            let site = self.config.site();
            let previous = w.step.to.other();
            let units: Vec<String> = self
                .processes_on(&w)
                .iter()
                .map(|p| site.process_instance(&p.name, previous))
                .collect();
            if units.is_empty() {
                return Ok(());
            }
            w.host
                .check(
                    &scripts::StopUnits {
                        label: "stop the previous release's processes",
                        units: &units,
                    }
                    .command(),
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("`{}`: {}", w.host.spec, first_line(&e)))
        })
        .await;
        for r in results {
            if let Err(e) = r {
                ui::warn(&format!("could not stop the previous processes on {e}"));
            }
        }
    }

    /// Append the outcome to every host's history (the host's clock dates it), with `files`
    /// written beside it.
    async fn record(
        &self,
        hosts: &[Work<'a>],
        outcome: Outcome,
        reason: Option<&str>,
        files: &[(String, String)],
    ) {
        let me: Me = lock::me();
        let target = &self.plan.target;
        let results = each_bounded(hosts.to_vec(), self.fleet.max_parallel, |w| {
            let entry = HistoryEntry {
                // The host writes its own clock here.
                time: 0,
                release: target.release.clone(),
                image: target.image.clone(),
                runs: Some(self.image_on(&w)).filter(|i| *i != target.image),
                colour: w.step.to,
                user: me.user.clone(),
                machine: me.machine.clone(),
                outcome,
                reason: reason.map(str::to_owned),
                run: self.run_id.clone(),
                backup: self.backup_note.lock().ok().and_then(|n| n.clone()),
                window_ms: self
                    .window
                    .lock()
                    .ok()
                    .and_then(|w| *w)
                    .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            };
            async move {
                // A struct of strings and integers always serializes.
                let line = serde_json::to_string(&entry).unwrap_or_default();
                let cmd = scripts::Record {
                    history: &self.config.site().history(),
                    line: &line,
                    files,
                }
                .command();
                (w.host.spec.to_string(), w.host.check(&cmd).await)
            }
        })
        .await;
        for (host, r) in results {
            if let Err(e) = r {
                ui::warn(&format!(
                    "could not record the outcome on `{host}`: {}",
                    first_line(&e)
                ));
            }
        }
    }

    async fn prune(&self, all: &[Work<'a>]) {
        let results = each_bounded(all.to_vec(), self.fleet.max_parallel, |w| {
            let keep = super::plan::retained_images(
                self.config,
                w.state,
                &self.plan.target,
                &self.image_on(&w),
            );
            async move {
                let cmd = scripts::Prune {
                    repository: &self.config.image,
                    app: &self.config.app,
                    state_dir: &self.config.site().state_dir(),
                    keep: &keep,
                }
                .command();
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

    /// With `keep_previous = "stop"`: the previous colour left the upstream at the switch; let
    /// nginx's old workers drain, then stop it.
    async fn stop_previous(&self, changing: &[Work<'a>]) {
        let with_previous: Vec<Work<'a>> = changing
            .iter()
            .filter(|w| w.step.from.is_some())
            .cloned()
            .collect();
        let drain = self.config.deploy.drain;
        each_bounded(with_previous, self.fleet.max_parallel, |w| async move {
            let Some(from) = &w.step.from else {
                return;
            };
            tokio::time::sleep(drain).await;
            let site = self.config.site();
            let units = [site.unit(from.colour), site.legacy().unit(from.colour)];
            if let Err(e) = w
                .host
                .check(
                    &scripts::StopUnits {
                        label: "stop the previous colour",
                        units: &units,
                    }
                    .command(),
                )
                .await
            {
                ui::warn(&e.to_string());
            }
        })
        .await;
    }

    // --- undo ------------------------------------------------------------------------------------

    /// Undo exactly what the run did, after `cause`: switch back every host that may have
    /// switched (read back from each), stop the new copies where they do not serve, record
    /// the outcome; and return the error that says what the hosts serve now.
    async fn undo(&self, cause: Error) -> Error {
        let (started, switched) = match self.done.lock() {
            Ok(done) => (done.started.clone(), done.switched.clone()),
            Err(_) => (BTreeSet::new(), BTreeSet::new()),
        };
        let all = self.work();
        let to_revert: Vec<Work<'a>> = all
            .iter()
            .filter(|w| switched.contains(&w.index))
            .cloned()
            .collect();
        let reverted = self.revert(&to_revert).await;
        let split: Vec<&Reverted<'a>> = reverted.iter().filter(|r| !r.back).collect();
        // A new copy (and its processes) is stopped only where it does not serve.
        let processes = self
            .done
            .lock()
            .map(|d| d.processes.clone())
            .unwrap_or_default();
        let stop: Vec<Work<'a>> = all
            .iter()
            .filter(|w| started.contains(&w.index) || processes.contains(&w.index))
            .filter(|w| !split.iter().any(|r| r.work.index == w.index))
            .cloned()
            .collect();
        self.stop_new(&stop, &started).await;
        // A waiting record for a copy this run replaced or stopped, or wrote itself, goes.
        let held = self.done.lock().map(|d| d.held.clone()).unwrap_or_default();
        let stale: Vec<Work<'a>> = stop
            .iter()
            .filter(|w| {
                held.contains(&w.index) || (started.contains(&w.index) && w.state.waiting.is_some())
            })
            .cloned()
            .collect();
        self.clear_waiting(&stale).await;
        let reachable: Vec<Work<'a>> = all
            .iter()
            .filter(|w| {
                reverted
                    .iter()
                    .find(|r| r.work.index == w.index)
                    .is_none_or(|r| r.reachable)
            })
            .cloned()
            .collect();
        let reason = match &cause {
            Error::Interrupted { signal, .. } => format!("interrupted by {signal}"),
            e => first_line(e),
        };
        if split.is_empty() {
            let outcome = if switched.is_empty() {
                Outcome::Failed
            } else {
                Outcome::AutoRolledBack
            };
            self.record(&reachable, outcome, Some(&reason), &[]).await;
            return match cause {
                Error::Interrupted { signal, .. } => Error::Interrupted {
                    signal,
                    switched: !switched.is_empty(),
                },
                e => e,
            };
        }
        let names: Vec<String> = split.iter().map(|r| r.work.host.spec.to_string()).collect();
        self.record(
            &reachable,
            Outcome::FleetSplit,
            Some(&format!(
                "{reason}; not switched back: {}",
                names.join(", ")
            )),
            &[],
        )
        .await;
        self.fleet_split(reason, &reverted)
    }

    /// The error of a fleet split: each host that had switched, and what it serves now.
    fn fleet_split(&self, cause: String, reverted: &[Reverted<'a>]) -> Error {
        let hosts: Vec<SplitHost> = reverted
            .iter()
            .map(|r| SplitHost {
                host: r.work.host.spec.to_string(),
                back: r.back,
                serves: r.serves.clone(),
            })
            .collect();
        // The release the hosts that went back serve: the one to converge on.
        let previous = reverted
            .iter()
            .filter(|r| r.back)
            .find_map(|r| r.work.step.from.as_ref())
            .map(|f| f.release.release.clone());
        Error::FleetSplit(Box::new(FleetSplit {
            cause,
            environment: self.config.environment.clone(),
            hosts,
            previous,
            target: self.plan.target.release.clone(),
            lock_kept: Vec::new(),
        }))
    }

    /// Put each host's upstream back as it was before this run, and read it back. A host
    /// whose connection was lost gets one more try on a new connection.
    async fn revert(&self, hosts: &[Work<'a>]) -> Vec<Reverted<'a>> {
        let results = each_bounded(hosts.to_vec(), self.fleet.max_parallel, |w| async move {
            let previous = w.state.upstream.clone().unwrap_or_default();
            let attempt = |host: Arc<Host>| {
                let previous = previous.clone();
                async move {
                    self.write_upstream(&host, previous, "switch back").await?;
                    self.read_back(&host).await
                }
            };
            let result =
                crate::fleet::on_fresh_connection_if_lost(&w.host, &self.config.ssh, attempt).await;
            self.judge_revert(w, &previous, result)
        })
        .await;
        for r in &results {
            if r.back {
                ui::status(
                    "Reverted",
                    &format!("{} to its previous upstream (read back)", r.work.host.spec),
                );
            } else {
                ui::warn(&format!(
                    "`{}` was NOT switched back: {}",
                    r.work.host.spec, r.serves
                ));
            }
        }
        results
    }

    /// What a host serves after a revert attempt, from what was read back.
    fn judge_revert(
        &self,
        w: Work<'a>,
        previous: &str,
        result: Result<HostState, Error>,
    ) -> Reverted<'a> {
        let target = &self.plan.target;
        match result {
            Ok(state) => {
                let back = state.upstream.as_deref() == Some(previous);
                let serves = match state.live_release() {
                    Some(r) if *r == *target => {
                        format!("{} (the new release, unverified)", r.release)
                    }
                    Some(r) => r.release.clone(),
                    None => "no release of the app (nothing live)".to_owned(),
                };
                Reverted {
                    work: w,
                    back,
                    serves,
                    reachable: true,
                }
            }
            Err(e) => Reverted {
                serves: format!(
                    "unknown, last seen switched to {} (the new release, unverified); {}",
                    target.release,
                    first_line(&e)
                ),
                reachable: !matches!(e, Error::Transport { .. } | Error::Connect { .. }),
                work: w,
                back: false,
            },
        }
    }

    async fn read_back(&self, host: &Host) -> Result<HostState, Error> {
        let cmd = scripts::ReadState::of(&self.config.site(), None).command();
        let out = host.check(&cmd).await?;
        parse_host_state(
            self.config,
            host,
            &cmd.to_string(),
            &String::from_utf8_lossy(&out),
        )
        .map(|(_, s)| s)
    }

    /// Stop what this run started on `hosts`: the new copy where `web_started` has the host
    /// (a warm copy stays), and the new colour's processes.
    async fn stop_new(&self, hosts: &[Work<'a>], web_started: &BTreeSet<usize>) {
        let results = each_bounded(hosts.to_vec(), self.fleet.max_parallel, |w| async move {
            let site = self.config.site();
            let mut units = Vec::new();
            if web_started.contains(&w.index) {
                units.extend([site.unit(w.step.to), site.legacy().unit(w.step.to)]);
            }
            units.extend(
                self.processes_on(&w)
                    .iter()
                    .map(|p| site.process_instance(&p.name, w.step.to)),
            );
            let r = w
                .host
                .check(
                    &scripts::StopUnits {
                        label: "stop the new copy",
                        units: &units,
                    }
                    .command(),
                )
                .await;
            (w.host.spec.to_string(), r)
        })
        .await;
        for (host, r) in results {
            if let Err(e) = r {
                ui::warn(&format!(
                    "could not stop the new copy on `{host}`: {}",
                    first_line(&e)
                ));
            }
        }
    }
}

/// Every host's result, to its end: the first failure ends the others' waits for health (through
/// `abort`) and lets their starts in flight finish, so that the undo stops them. The tunnels, or
/// that first failure.
async fn first_failure(
    results: &mut (impl futures::Stream<Item = (usize, Result<Tunnel, Error>)> + Unpin),
    abort: &crate::signals::Trigger,
) -> Result<Vec<(usize, Tunnel)>, Error> {
    let mut tunnels = Vec::new();
    let mut failure = None;
    while let Some((index, r)) = results.next().await {
        match r {
            Ok(tunnel) => tunnels.push((index, tunnel)),
            Err(e) if failure.is_none() => {
                failure = Some(e);
                abort.fire("another host's failure");
            }
            Err(_) => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(tunnels),
    }
}

fn verify_failed(host: &str, reason: String) -> Error {
    Error::VerifyFailed {
        host: host.to_owned(),
        reason,
    }
}

/// The error for PREPARE's refusal to start on a port something else holds.
fn port_held(config: &Config, host: &Host, port: u16, stderr: &str) -> Error {
    let lines = stderr.replace("shipit-port-held ", "held ");
    let holder = state::ports_held(&lines)
        .into_iter()
        .next()
        .map_or_else(|| stderr.trim().to_owned(), |h| h.holder);
    Error::PortHeld {
        host: host.spec.to_string(),
        port,
        holder,
        environment: config.environment.clone(),
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

/// A release as it goes into a backup's file name: letters, digits, `.`, `+` and `_`.
pub(crate) fn release_label(release: &str) -> String {
    release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".+_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_release_goes_into_a_backup_name_as_plain_characters() {
        assert_eq!(release_label("1.4.2+3f9c2ab"), "1.4.2+3f9c2ab");
        assert_eq!(release_label("1.0.0+abc.dirty/x y"), "1.0.0+abc.dirty-x-y");
    }
}
