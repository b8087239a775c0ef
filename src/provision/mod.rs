//! `shipit provision`: render, validate and install the server configuration on every host.
//!
//! Two phases across the fleet, so that no host installs a file another host refused:
//! 1. on every host: observe, plan, stage the candidates beside their targets, validate them;
//! 2. only when every host passed: install all at once per host (atomic renames, full
//!    `nginx -t`, restore on failure), reload what changed, log the host's Docker in.
//!
//! If phase 1 fails anywhere, the staged candidates are removed everywhere and nothing changed.

pub mod plan;

use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::layout;
use crate::model::Colour;
use crate::remote::scripts;
use crate::secret::Secrets;
use crate::signals::Cancel;
use crate::ssh::Host;
use crate::templates::{ManagedFile, Templates};
use crate::ui::{self, plural};
use plan::{HostPlan, Login};

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    /// How long to wait for the environment's lock (held by a deploy, say) instead of failing.
    pub lock_wait: Option<std::time::Duration>,
}

/// What happened on one host.
#[derive(Debug, serde::Serialize)]
pub struct HostReport {
    pub host: String,
    pub changed: Vec<String>,
    pub reloaded: Vec<&'static str>,
    pub logged_in: bool,
}

/// Provision every host of `config`'s environment.
pub async fn provision(config: &Config, options: Options) -> Result<Vec<HostReport>, Error> {
    let started = Instant::now();
    let desired = desired(config)?;
    let dirs = plan::directories(&config.site(), config.acme().is_some());
    let password = registry_password(config)?;
    let login = match (&config.registry, &password) {
        (Some(r), Some(p)) => Some(Login {
            server: &r.server,
            username: &r.username,
            password: p.expose(),
        }),
        _ => None,
    };

    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let unchanged = if options.dry_run {
        Ok(None)
    } else {
        unchanged(config, &fleet, &desired, &dirs, login.as_ref(), started).await
    };
    let result = if let Some(done) = unchanged.transpose() {
        done
    } else if options.dry_run {
        run(
            started,
            config,
            &fleet,
            &desired,
            &dirs,
            login.as_ref(),
            options,
            &Cancel::never(),
        )
        .await
    } else {
        // Under the environment's lock: never a reload or a daemon-reload in the middle of
        // someone else's switch.
        crate::lock::with_lock(
            &fleet,
            config,
            "provision",
            "-",
            options.lock_wait,
            None,
            |_, cancel| {
                let fleet = &fleet;
                let desired = &desired;
                let dirs = &dirs;
                let login = login.as_ref();
                async move {
                    run(
                        started, config, fleet, desired, dirs, login, options, &cancel,
                    )
                    .await
                }
            },
        )
        .await
    };
    fleet.close().await;
    result
}

/// Every file provisioning manages: the rendered templates, the stand-in certificate (with
/// `[tls] acme`) and each accessory's environment (with its secrets).
fn desired(config: &Config) -> Result<Vec<ManagedFile>, Error> {
    let templates = Templates::load(&config.app_dir)?;
    let mut desired = templates.render_all(config)?;
    desired.extend(crate::acme::placeholder_files(config)?);
    if !config.accessories.is_empty() {
        desired.extend(crate::accessory::unit::files(
            config,
            &Secrets::load(&config.app_dir)?,
        )?);
    }
    Ok(desired)
}

/// The managed files of `host`: a process's units go to its hosts only, a job's to its host.
fn desired_on(desired: &[ManagedFile], host: &crate::config::HostSpec) -> Vec<ManagedFile> {
    desired
        .iter()
        .filter(|f| f.goes_to(host))
        .cloned()
        .collect()
}

/// A run that changes nothing needs no lock: every host read (as `--dry-run` reads it), and
/// when none has anything to change, what each has, said as the locked run says it. `None` when
/// some host has something to change, or with `[tls] acme` (its first certificate is ordered
/// after the install): the run takes the lock and reads again under it.
async fn unchanged(
    config: &Config,
    fleet: &Fleet,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    login: Option<&Login<'_>>,
    started: Instant,
) -> Result<Option<Vec<HostReport>>, Error> {
    if config.acme().is_some() {
        return Ok(None);
    }
    let progress = ui::Step::new(
        "Checking",
        fleet.hosts.iter().map(|h| &h.spec),
        "reading the managed files",
    );
    let plans = fleet
        .each(|host| {
            let line = progress.line(&host.spec);
            let desired = desired_on(desired, &host.spec);
            async move {
                let plan = observe_and_plan(config, &host, &desired, dirs, login)
                    .await
                    .map_err(|(e, _)| e);
                match &plan {
                    Ok(plan) if plan.is_empty() => line.finish(true, "up to date"),
                    Ok(_) => line.finish(true, "changes to make: taking the lock"),
                    Err(e) => line.failed(e),
                }
                plan.map(|plan| (host, plan))
            }
        })
        .await;
    drop(progress);
    let plans = crate::fleet::collect(plans)?;
    if plans.iter().any(|(_, plan)| !plan.is_empty()) {
        return Ok(None);
    }
    let reports: Vec<HostReport> = plans
        .iter()
        .map(|(host, plan)| {
            let report = HostReport {
                host: host.spec.to_string(),
                changed: Vec::new(),
                reloaded: Vec::new(),
                logged_in: false,
            };
            say_provisioned(host, plan, &report);
            report
        })
        .collect();
    say_done(&reports, started);
    // Nothing to change in the files, but an accessory that is not running is started (and
    // every one waited for until healthy): a provision after an outage brings it back.
    crate::accessory::unit::after_provision(config, fleet, &[]).await?;
    Ok(Some(reports))
}

/// The files and units `shipit provision` would change on each host, before a deploy starts
/// anything: the configuration changed since the last provision (the domain, nginx settings,
/// limits, volumes, processes, jobs). A deploy refuses to go on, naming them and the command
/// to run: what they carry would otherwise reach users half, or not at all.
pub async fn refuse_drift(config: &Config, fleet: &Fleet) -> Result<(), Error> {
    let desired = desired(config)?;
    let dirs = plan::directories(&config.site(), config.acme().is_some());
    let results = fleet
        .each(|host| {
            let desired = desired_on(&desired, &host.spec);
            let dirs = &dirs;
            async move {
                let (observed, units) = read_managed(config, &host, &desired, dirs).await?;
                let plan = plan::plan_host(&desired, dirs, &observed, None, None, &units);
                let mut files: Vec<String> =
                    plan.changes.iter().map(|c| c.file.path.clone()).collect();
                files.extend(plan.retire.iter().cloned());
                files.extend(plan.enable_timers.iter().cloned());
                Ok::<_, Error>((host.spec.to_string(), files))
            }
        })
        .await;
    let drift: Vec<(String, Vec<String>)> = crate::fleet::collect(results)?
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .collect();
    if drift.is_empty() {
        return Ok(());
    }
    Err(Error::ProvisionDrift {
        hosts: drift,
        environment: config.environment.clone(),
    })
}

/// `Provisioned 3 hosts in 1.2s: 4 changes, 3 reloads`.
fn say_done(reports: &[HostReport], started: Instant) {
    let changes: usize = reports.iter().map(|r| r.changed.len()).sum();
    let reloads: usize = reports.iter().map(|r| r.reloaded.len()).sum();
    ui::status(
        "Provisioned",
        &format!(
            "{} host{} in {:.2}s: {changes} change{}, {}",
            reports.len(),
            plural(reports.len()),
            started.elapsed().as_secs_f64(),
            plural(changes),
            if reloads == 0 {
                "nothing reloaded".to_owned()
            } else {
                format!("{reloads} reload{}", plural(reloads))
            },
        ),
    );
}

fn registry_password(config: &Config) -> Result<Option<crate::secret::Secret>, Error> {
    let Some(registry) = &config.registry else {
        return Ok(None);
    };
    let secrets = Secrets::load(&config.app_dir)?;
    match secrets.get(&registry.password_env) {
        Some((secret, _)) => Ok(Some(secret)),
        None => Err(Error::MissingRegistryPassword {
            var: registry.password_env.clone(),
            dotenv: config.app_dir.join(".env"),
        }),
    }
}

/// One host's phase 1: its plan, its candidates staged and validated; on failure, the plan as
/// far as it got (its staged candidates are discarded).
type Checked = Result<(Arc<Host>, HostPlan), (Error, Option<HostPlan>)>;

#[allow(clippy::too_many_arguments)]
async fn run(
    started: Instant,
    config: &Config,
    fleet: &Fleet,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    login: Option<&Login<'_>>,
    options: Options,
    cancel: &Cancel,
) -> Result<Vec<HostReport>, Error> {
    // Phase 1: observe, plan, stage, validate. A signal is acted on when it ends (staged
    // candidates are hidden files no service reads, and the next run replaces them); phase 2
    // is never cut short.
    let (checked, elsewhere) = tokio::join!(
        check_all(config, fleet, desired, dirs, login, options.dry_run),
        jobs_elsewhere(config, fleet)
    );
    cancel.check()?;
    if checked.iter().any(Result::is_err) {
        return Err(discard_all(fleet, checked).await);
    }
    // A job timer started here while a host taken out of `hosts` (and not retired) may still
    // run it would run the job twice.
    let starting: Vec<String> = checked
        .iter()
        .flatten()
        .flat_map(|(_, plan)| plan.enable_timers.iter().cloned())
        .collect();
    if let Some(removed) = elsewhere?.filter(|_| !starting.is_empty()) {
        let error = Error::JobsElsewhere {
            timers: starting,
            hosts: removed,
            environment: config.environment.clone(),
        };
        discard_all(fleet, checked).await;
        return Err(error);
    }
    let prepared: Vec<(Arc<Host>, HostPlan)> = checked.into_iter().flatten().collect();
    if options.dry_run {
        for (host, plan) in &prepared {
            print_dry_run(&host.spec.to_string(), plan);
        }
        return Ok(prepared
            .iter()
            .map(|(host, plan)| HostReport {
                host: host.spec.to_string(),
                changed: plan.changes.iter().map(|c| c.file.path.clone()).collect(),
                reloaded: Vec::new(),
                logged_in: false,
            })
            .collect());
    }
    // Phase 2: every host validated its candidates; install and reload.
    let reports = install_all(fleet, prepared, login).await?;
    say_done(&reports, started);
    // Accessories: started when not running (never restarted), waited for until healthy.
    let changed: Vec<(String, Vec<String>)> = reports
        .iter()
        .map(|r| (r.host.clone(), r.changed.clone()))
        .collect();
    crate::accessory::unit::after_provision(config, fleet, &changed).await?;
    // With `[tls] acme`: the first certificate, now that every host serves the challenges.
    crate::acme::after_provision(config, fleet).await?;
    Ok(reports)
}

/// With jobs configured: the hosts an earlier run deployed to that are no longer in `hosts`
/// (they may still run the jobs' timers), when there are any.
async fn jobs_elsewhere(config: &Config, fleet: &Fleet) -> Result<Option<Vec<String>>, Error> {
    if config.jobs.is_empty() {
        return Ok(None);
    }
    let states = crate::fleet::observe(fleet, config).await?;
    let removed = crate::fleet::removed_hosts(config, &states);
    Ok((!removed.is_empty()).then_some(removed))
}

/// Phase 1 on every host, with a progress line each.
async fn check_all(
    config: &Config,
    fleet: &Fleet,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    login: Option<&Login<'_>>,
    dry_run: bool,
) -> Vec<Checked> {
    let progress = ui::Step::new(
        "Checking",
        fleet.hosts.iter().map(|h| &h.spec),
        "reading the managed files",
    );
    fleet
        .each(|host| {
            let line = progress.line(&host.spec);
            let desired = desired_on(desired, &host.spec);
            async move {
                let result = async {
                    let plan = observe_and_plan(config, &host, &desired, dirs, login).await?;
                    if !dry_run && !plan.is_empty() {
                        line.set(format!(
                            "staging and validating {} changed file{}",
                            plan.changes.len(),
                            plural(plan.changes.len())
                        ));
                        stage_and_validate(&host, &plan)
                            .await
                            .map_err(|e| (e, Some(plan.clone())))?;
                    }
                    Ok::<_, (Error, Option<HostPlan>)>(plan)
                }
                .await;
                match &result {
                    Ok(plan) if plan.is_empty() => line.finish(true, "up to date"),
                    Ok(plan) => line.finish(
                        true,
                        format!(
                            "{} change{} validated",
                            plan.changes.len(),
                            plural(plan.changes.len())
                        ),
                    ),
                    Err((e, _)) => line.failed(e),
                }
                result.map(|plan| (host, plan))
            }
        })
        .await
}

/// After a failed phase 1 somewhere: every staged candidate removed, every error returned.
async fn discard_all(fleet: &Fleet, checked: Vec<Checked>) -> Error {
    let mut errors = Vec::new();
    let mut to_discard = Vec::new();
    for (host, result) in fleet.hosts.iter().zip(checked) {
        match result {
            Ok((host, plan)) => to_discard.push((host, plan)),
            Err((e, plan)) => {
                errors.push(Err::<(), _>(e));
                if let Some(plan) = plan {
                    to_discard.push((Arc::clone(host), plan));
                }
            }
        }
    }
    futures::future::join_all(to_discard.iter().map(|(h, p)| discard(h, p))).await;
    match crate::fleet::collect(errors) {
        Err(e) => e,
        Ok(_) => Error::Internal {
            context: "provision".into(),
            source: "a host failed without an error".into(),
        },
    }
}

/// Phase 2 on every host with changes: install and reload, log in.
async fn install_all(
    fleet: &Fleet,
    prepared: Vec<(Arc<Host>, HostPlan)>,
    login: Option<&Login<'_>>,
) -> Result<Vec<HostReport>, Error> {
    let progress = ui::Step::new(
        "Installing",
        prepared
            .iter()
            .filter(|(_, plan)| !plan.is_empty())
            .map(|(h, _)| &h.spec),
        "installing the validated files and reloading what changed",
    );
    let results = crate::fleet::each_bounded(prepared, fleet.max_parallel, |(host, plan)| {
        let line = progress.line(&host.spec);
        async move {
            let result = commit(&host, &plan, login).await;
            line.finish_with(&result, "installed");
            result
        }
    })
    .await;
    drop(progress);
    crate::fleet::collect(results)
}

async fn observe_and_plan(
    config: &Config,
    host: &Host,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
    login: Option<&Login<'_>>,
) -> Result<HostPlan, (Error, Option<HostPlan>)> {
    let site = config.site();
    let (observed, legacy_state, held, units) = read_host(config, host, desired, dirs)
        .await
        .map_err(|e| (e, None))?;
    let legacy = plan::legacy_move(&site, &config.domain, &legacy_state).map_err(|message| {
        (
            Error::LegacyBusy {
                host: host.spec.to_string(),
                message,
                environment: config.environment.clone(),
            },
            None,
        )
    })?;
    // A colour port another app or process holds: refused before anything changes. The
    // containers of this environment (in the earlier layout too, when it is this one's) may.
    let legacy_names = [
        format!("container `{}-blue`", config.app),
        format!("container `{}-green`", config.app),
    ];
    if let Some(h) = held
        .into_iter()
        .find(|h| legacy.is_none() || !legacy_names.contains(&h.holder))
    {
        return Err((
            Error::PortHeld {
                host: host.spec.to_string(),
                port: h.port,
                holder: h.holder,
                environment: config.environment.clone(),
            },
            None,
        ));
    }
    let plan = plan::plan_host(desired, dirs, &observed, login, legacy, &units);
    info!(host = %host.spec, changes = plan.changes.len(), login = plan.login, "planned");
    Ok(plan)
}

/// What a host holds, read in one round trip (four commands at once).
type HostReading = (
    plan::Observed,
    plan::LegacyState,
    Vec<crate::state::HeldPort>,
    plan::SiteUnits,
);

/// One round trip's worth of reads: the managed files, the earlier layout, who holds the
/// colour ports, and the site's process and job units.
async fn read_host(
    config: &Config,
    host: &Host,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
) -> Result<HostReading, Error> {
    let (managed, (legacy_state, held)) = tokio::join!(
        read_managed(config, host, desired, dirs),
        read_layout_and_ports(config, host)
    );
    let (observed, site_units) = managed?;
    let (legacy_state, held) = (legacy_state?, held?);
    Ok((observed, legacy_state, held, site_units))
}

/// The managed files and the site's process and job units (two commands at once): what a
/// deploy's drift check needs.
async fn read_managed(
    config: &Config,
    host: &Host,
    desired: &[ManagedFile],
    dirs: &[(&'static str, String)],
) -> Result<(plan::Observed, plan::SiteUnits), Error> {
    let site = config.site();
    let observe = scripts::Observe {
        files: desired.iter().map(|f| f.path.clone()).collect(),
        dirs: dirs.iter().map(|(_, d)| d.clone()).collect(),
    }
    .command();
    let timers = plan::timers(desired);
    let units = scripts::SiteUnits {
        key: &site.key(),
        timers: &timers,
    }
    .command();
    let (files, units_out) = tokio::join!(host.check(&observe), host.check(&units));
    let observed = plan::parse_observed(&files?, desired.len(), dirs.len())
        .map_err(|m| protocol(host, &observe, m))?;
    let site_units = plan::SiteUnits::parse(&String::from_utf8_lossy(&units_out?))
        .map_err(|m| protocol(host, &units, m))?;
    Ok((observed, site_units))
}

/// The site in shipit's earlier layout, and who holds the colour ports (two commands at once).
async fn read_layout_and_ports(
    config: &Config,
    host: &Host,
) -> (
    Result<plan::LegacyState, Error>,
    Result<Vec<crate::state::HeldPort>, Error>,
) {
    let site = config.site();
    let old = site.legacy();
    let legacy = scripts::ReadLegacy {
        upstream_include: old.upstream_include(),
        nginx_site: old.nginx_site(),
        app_envs: [old.app_env(Colour::Blue), old.app_env(Colour::Green)],
        units: [old.unit(Colour::Blue), old.unit(Colour::Green)],
        lock_dir: old.lock_dir(),
        new_upstream_include: site.upstream_include(),
    }
    .command();
    let ports = scripts::PortsHeld {
        ports: &[config.ports.blue, config.ports.green],
        ours: &[site.container(Colour::Blue), site.container(Colour::Green)],
    }
    .command();
    let (legacy_out, ports_out) = tokio::join!(host.check(&legacy), host.check(&ports));
    let legacy_state = legacy_out.and_then(|out| {
        plan::LegacyState::parse(&String::from_utf8_lossy(&out))
            .map_err(|m| protocol(host, &legacy, m))
    });
    let held = ports_out.map(|out| crate::state::ports_held(&String::from_utf8_lossy(&out)));
    (legacy_state, held)
}

/// A host's answer shipit cannot read.
fn protocol(host: &Host, cmd: &crate::remote::RemoteCommand, message: String) -> Error {
    Error::Protocol {
        host: host.spec.to_string(),
        command: cmd.to_string(),
        message,
    }
}

async fn stage_and_validate(host: &Host, plan: &HostPlan) -> Result<(), Error> {
    if !plan.mkdirs.is_empty() {
        host.check(&scripts::Mkdirs { dirs: &plan.mkdirs }.command())
            .await?;
    }
    let staging = plan.changes.iter().map(|c| {
        let cmd = scripts::Stage {
            staged: &layout::staged(&c.file.path),
            mode: c.file.mode,
            owner: c.file.owner,
            content: &c.file.content,
            target: &c.file.path,
        }
        .command();
        async move { host.check(&cmd).await }
    });
    let staged: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
        futures::stream::iter(staging),
        crate::fleet::SESSIONS_PER_HOST,
    ))
    .await;
    for r in staged {
        r?;
    }
    // Files created once (the upstream include) are inert until the site that includes it is
    // installed, and the site's validation needs them in place.
    let once: Vec<scripts::Install> = plan.created_once().map(|c| install(&c.file.path)).collect();
    if !once.is_empty() {
        host.check(
            &scripts::Commit {
                label: "install created-once files",
                check_nginx: false,
                daemon_reload: false,
                reload_nginx: false,
                installs: &once,
            }
            .command(),
        )
        .await?;
    }
    let validations = plan.validations();
    if validations.is_empty() {
        return Ok(());
    }
    let cmd = scripts::Validate {
        candidates: &validations,
    }
    .command();
    let out = host.run(&cmd).await?;
    match out.code {
        Some(0) => Ok(()),
        Some(3) => Err(refused(host, plan, &out.stderr)),
        _ => Err(host.failed(&cmd, &out)),
    }
}

/// The error for a validator's refusal, naming the template the file came from.
fn refused(host: &Host, plan: &HostPlan, stderr: &str) -> Error {
    let (first, output) = stderr.split_once('\n').unwrap_or((stderr, ""));
    let rest = first.strip_prefix("shipit-refused ").unwrap_or(first);
    let (file, validator) = rest.split_once(' ').unwrap_or((rest, "validator"));
    let template = plan
        .changes
        .iter()
        .find(|c| c.file.path == file)
        .and_then(|c| c.file.template.clone());
    Error::Validation {
        host: host.spec.to_string(),
        file: file.to_owned(),
        template,
        validator: validator.to_owned(),
        output: output.trim_end().to_owned(),
    }
}

/// Putting `path`'s validated candidate in place, its previous version kept as a backup.
fn install(path: &str) -> scripts::Install {
    scripts::Install {
        staged: Some(layout::staged(path)),
        target: path.to_owned(),
        backup: layout::backup(path),
    }
}

async fn discard(host: &Host, plan: &HostPlan) {
    let staged: Vec<String> = plan
        .validated()
        .map(|c| layout::staged(&c.file.path))
        .collect();
    if staged.is_empty() {
        return;
    }
    if let Err(e) = host
        .check(&scripts::Discard { staged: &staged }.command())
        .await
    {
        tracing::warn!(host = %host.spec, error = %e, "could not remove staged candidates");
    }
}

/// Install a host's validated files (and move it off the earlier layout): the names of what
/// was reloaded.
async fn install_changes(host: &Host, plan: &HostPlan) -> Result<Vec<&'static str>, Error> {
    let legacy = plan.legacy.clone().unwrap_or_default();
    // The earlier layout's state first: deploys read it at the new paths.
    if !legacy.copies.is_empty() {
        host.check(
            &scripts::CopyMissing {
                pairs: &legacy.copies,
            }
            .command(),
        )
        .await?;
    }
    let mut installs: Vec<scripts::Install> =
        plan.validated().map(|c| install(&c.file.path)).collect();
    // Its site and logrotate rule go in the same install as the new ones.
    installs.extend(legacy.removals.iter().map(|path| scripts::Install {
        staged: None,
        target: path.clone(),
        backup: layout::backup(path),
    }));
    let nginx = plan.reload_nginx() || !legacy.removals.is_empty();
    let mut reloaded = Vec::new();
    if !installs.is_empty() {
        let cmd = scripts::Commit {
            label: "install and reload",
            check_nginx: nginx,
            daemon_reload: plan.daemon_reload(),
            reload_nginx: nginx,
            installs: &installs,
        }
        .command();
        let out = host.run(&cmd).await?;
        match out.code {
            Some(0) => {}
            Some(3) => return Err(refused(host, plan, &out.stderr)),
            _ => return Err(host.failed(&cmd, &out)),
        }
        if plan.daemon_reload() {
            reloaded.push("systemd");
        }
        if nginx {
            reloaded.push("nginx");
        }
    }
    if !plan.retire.is_empty() {
        host.check(
            &scripts::RetireUnits {
                paths: &plan.retire,
            }
            .command(),
        )
        .await?;
        reloaded.push("systemd");
    }
    if !plan.enable_timers.is_empty() {
        host.check(
            &scripts::EnableTimers {
                timers: &plan.enable_timers,
            }
            .command(),
        )
        .await?;
    }
    if !legacy.cleanup.is_empty() {
        let unit_removed = legacy.cleanup.iter().any(|p| p.ends_with("@.service"));
        host.check(
            &scripts::RemoveLegacy {
                daemon_reload: unit_removed,
                paths: &legacy.cleanup,
            }
            .command(),
        )
        .await?;
    }
    Ok(reloaded)
}

async fn commit(
    host: &Host,
    plan: &HostPlan,
    login: Option<&Login<'_>>,
) -> Result<HostReport, Error> {
    // The install and the registry login are independent: both go at once.
    let install = install_changes(host, plan);
    let login = async {
        match (plan.login, login) {
            (true, Some(login)) => {
                let cmd = scripts::DockerLogin {
                    username: login.username,
                    registry: login.server,
                    password: login.password,
                }
                .command();
                host.check(&cmd).await.map(|_| ())
            }
            _ => Ok(()),
        }
    };
    let (installed, logged_in) = tokio::join!(install, login);
    let reloaded = installed?;
    logged_in?;
    let report = HostReport {
        host: host.spec.to_string(),
        changed: plan.changes.iter().map(|c| c.file.path.clone()).collect(),
        reloaded,
        logged_in: plan.login,
    };
    say_provisioned(host, plan, &report);
    Ok(report)
}

/// `Provisioned web1: 2 files changed, reloaded nginx, ...`
fn say_provisioned(host: &Host, plan: &HostPlan, report: &HostReport) {
    let mut summary = format!(
        "{} file{} changed",
        report.changed.len(),
        if report.changed.len() == 1 { "" } else { "s" }
    );
    if !report.reloaded.is_empty() {
        summary.push_str(&format!(", reloaded {}", report.reloaded.join(" and ")));
    }
    if let Some(legacy) = plan.legacy.as_ref().filter(|m| !m.is_empty()) {
        if !legacy.removals.is_empty() {
            summary.push_str(
                ", moved off the earlier layout (its running copies serve on until deploys replace them)",
            );
        }
        if !legacy.cleanup.is_empty() {
            summary.push_str(", removed what was left of the earlier layout");
        }
    }
    if !plan.retire.is_empty() {
        summary.push_str(&format!(
            ", removed {} unit{} no longer configured",
            plan.retire.len(),
            plural(plan.retire.len())
        ));
    }
    if !plan.enable_timers.is_empty() {
        summary.push_str(&format!(
            ", started {} job timer{}",
            plan.enable_timers.len(),
            plural(plan.enable_timers.len())
        ));
    }
    if report.logged_in {
        summary.push_str(", logged in to the registry");
    }
    ui::status("Provisioned", &format!("{}: {summary}", host.spec));
}

fn print_dry_run(host: &str, plan: &HostPlan) {
    if plan.is_empty() {
        ui::status("Unchanged", host);
        return;
    }
    for (_, dir) in &plan.mkdirs {
        ui::out(&format!("{host}: would create directory {dir}\n"));
    }
    if let Some(legacy) = &plan.legacy {
        for (from, to) in &legacy.copies {
            ui::out(&format!("{host}: would copy {from} to {to} (if absent)\n"));
        }
        for path in &legacy.removals {
            ui::out(&format!(
                "{host}: would remove {path} (the earlier layout's)\n"
            ));
        }
        for path in &legacy.cleanup {
            ui::out(&format!(
                "{host}: would remove {path} (nothing of the earlier layout runs)\n"
            ));
        }
    }
    for change in &plan.changes {
        ui::out(&plan::diff(host, change));
    }
    for path in &plan.retire {
        ui::out(&format!(
            "{host}: would stop and remove {path} (no longer in the configuration)\n"
        ));
    }
    for timer in &plan.enable_timers {
        ui::out(&format!("{host}: would enable and start {timer}\n"));
    }
    if plan.login {
        ui::out(&format!("{host}: would log Docker in to the registry\n"));
    }
    let reloads: Vec<&str> = [
        (plan.daemon_reload(), "systemd"),
        (plan.reload_nginx(), "nginx"),
    ]
    .into_iter()
    .filter_map(|(b, n)| b.then_some(n))
    .collect();
    ui::status(
        "Would change",
        &format!(
            "{host}: {} file{}{}",
            plan.changes.len(),
            if plan.changes.len() == 1 { "" } else { "s" },
            if reloads.is_empty() {
                String::new()
            } else {
                format!(", reload {}", reloads.join(" and "))
            }
        ),
    );
}
