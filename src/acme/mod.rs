//! `shipit tls`: certificates from an ACME CA (Let's Encrypt by default) for a whole fleet.
//!
//! shipit is the ACME client. It answers the CA's HTTP-01 challenge on *every* host of the
//! environment (nginx serves `/.well-known/acme-challenge/` from a directory shipit writes to
//! on all of them), so whichever host the CA reaches (directly or through a load balancer)
//! answers; then it installs one certificate and key on every host (staged everywhere first,
//! then renamed into place, `nginx -t`, reload) and reads back what each host serves.
//!
//! The ACME account lives on the hosts (`/var/lib/shipit/<app>/<env>/acme-account.json`, 0600,
//! the same on each): shipit keeps no state on the machine it runs from, so a renewal from CI,
//! from cron on another machine or from a laptop uses the same account, and nothing is lost
//! with a laptop. The hosts hold the certificate's own key already; the account key adds no
//! new place to protect.
//!
//! Owns: reading what the hosts hold, deciding ([`plan`]), the challenge files, installing and
//! reading back. The protocol itself is in [`ca`].

pub mod ca;
pub mod plan;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{Acme, Config};
use crate::error::Error;
use crate::fleet::Fleet;
use crate::layout::{self, Site};
use crate::remote::scripts;
use crate::ssh::Host;
use crate::templates::{FileKind, ManagedFile};
use crate::ui::{self, plural};
use plan::{CertFacts, Decision, HostCert, Issued};

/// Options of `shipit tls renew`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenewOptions {
    /// Renew even when the certificate is not due.
    pub force: bool,
    pub lock_wait: Option<Duration>,
    /// Leave out the hosts that cannot be reached (named; the next run gives them the
    /// certificate the others hold).
    pub skip_unreachable: bool,
}

/// What `shipit tls renew` did, as read back from the hosts.
#[derive(Debug, Serialize)]
pub struct RenewReport {
    pub domain: String,
    pub renewed: bool,
    /// Hosts given the certificate the others held (no new order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copied_to: Vec<String>,
    /// Why it renewed or copied, or why it did not need to.
    pub reason: String,
    pub certificate: CertSummary,
    /// When the next renewal is due (RFC 3339).
    pub due: String,
    pub hosts: Vec<String>,
    /// Hosts left out as unreachable (`--skip-unreachable`): they keep what they had.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl ui::Render for RenewReport {
    fn text(&self) -> String {
        let c = &self.certificate;
        let done = if self.renewed {
            "renewed".to_owned()
        } else if !self.copied_to.is_empty() {
            format!("copied to {}", self.copied_to.join(", "))
        } else {
            "current".to_owned()
        };
        let skipped = if self.skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; left out (unreachable, not changed): {}",
                self.skipped.join(", ")
            )
        };
        format!(
            "{}: {done} (sha256 {}), issued by {}, expires {} (in {} days), on {} host{}; renewal due from {}{skipped}\n",
            self.domain,
            c.sha256.get(..16).unwrap_or(&c.sha256),
            c.issuer,
            c.expires,
            c.days_left,
            self.hosts.len(),
            plural(self.hosts.len()),
            self.due,
        )
    }
}

/// A certificate, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct CertSummary {
    pub names: Vec<String>,
    pub issuer: String,
    /// RFC 3339.
    pub expires: String,
    pub days_left: i64,
    pub sha256: String,
    pub placeholder: bool,
}

impl CertSummary {
    fn of(facts: &CertFacts, now: i64) -> CertSummary {
        CertSummary {
            names: facts.names.clone(),
            issuer: facts.issuer.clone(),
            expires: rfc3339(facts.not_after),
            days_left: facts.days_left(now),
            sha256: facts.sha256.clone(),
            placeholder: facts.placeholder,
        }
    }

    fn line(&self) -> String {
        format!(
            "{}, issued by {}{}, expires {} (in {} days), sha256 {}",
            self.names.join(" "),
            self.issuer,
            if self.placeholder {
                " (temporary, self-signed)"
            } else {
                ""
            },
            self.expires,
            self.days_left,
            self.sha256.get(..16).unwrap_or(&self.sha256)
        )
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0).unsigned_abs()))
        .to_string()
}

fn acme_of(config: &Config) -> Result<&Acme, Error> {
    config.acme().ok_or_else(|| Error::NoAcme {
        environment: config.environment.clone(),
    })
}

/// `shipit tls renew <env>`: obtain a certificate when one is due (or `force`), install it on
/// every host, read it back. Safe to run daily from cron or CI: when nothing is due it changes
/// nothing. With `skip_unreachable`, the hosts that answer are renewed (or given the
/// certificate the others hold) and the others are named; the next run brings them level.
pub async fn renew(config: &Config, options: RenewOptions) -> Result<RenewReport, Error> {
    let acme = acme_of(config)?;
    let tolerate = if options.skip_unreachable {
        crate::fleet::Tolerate::All
    } else {
        crate::fleet::Tolerate::None
    };
    let fleet = Fleet::connect_tolerating(&config.hosts, &config.ssh, tolerate).await?;
    for u in &fleet.skipped {
        ui::warn(&format!(
            "`{}` is left out (unreachable: {}): it keeps the certificate it has; run `shipit tls renew {}` once it answers: it is given the certificate the other hosts hold, without a new order",
            u.spec, u.why, config.environment
        ));
    }
    let result = crate::lock::with_lock(
        &fleet,
        config,
        "tls renew",
        "-",
        options.lock_wait,
        None,
        |_, _cancel| renew_locked(config, acme, &fleet, options.force),
    )
    .await;
    let skipped = fleet.skipped.iter().map(|u| u.spec.to_string()).collect();
    fleet.close().await;
    result.map(|report| RenewReport { skipped, ..report })
}

/// After `shipit provision` installed the site, under its lock: obtain the first certificate
/// (or a new one when the domain or the CA changed); a real one that is merely getting old is
/// left to `shipit tls renew`, with a warning.
pub async fn after_provision(config: &Config, fleet: &Fleet) -> Result<(), Error> {
    let Some(acme) = config.acme() else {
        return Ok(());
    };
    let held = read_fleet(config, fleet).await?;
    match decide(config, acme, &held.certs, false) {
        Decision::Renew(reason) if reason.is_expiry() => {
            ui::warn(&format!(
                "the certificate for `{}` is due for renewal: {reason}; run `shipit tls renew {}` (safe to run daily from cron)",
                config.domain, config.environment
            ));
            Ok(())
        }
        Decision::Renew(reason) => {
            obtain_and_install(config, acme, fleet, held, &reason, false).await?;
            Ok(())
        }
        Decision::Copy {
            from,
            cert,
            to,
            reason,
            ..
        } => copy_certificate(config, fleet, &from, &cert, &to, &reason).await,
        Decision::Current { .. } => Ok(()),
    }
}

fn decide(config: &Config, acme: &Acme, certs: &[HostCert], force: bool) -> Decision {
    plan::decide(
        &config.domain,
        &acme.directory,
        certs,
        now(),
        acme.renew_before,
        force,
    )
}

async fn renew_locked(
    config: &Config,
    acme: &Acme,
    fleet: &Fleet,
    force: bool,
) -> Result<RenewReport, Error> {
    let held = read_fleet(config, fleet).await?;
    let hosts: Vec<String> = fleet.hosts.iter().map(|h| h.spec.to_string()).collect();
    // What every outcome reports: the certificate the hosts now hold and when it is due.
    let report = |cert: &CertFacts, due_at: i64, reason: String| RenewReport {
        domain: config.domain.clone(),
        renewed: false,
        copied_to: Vec::new(),
        reason,
        certificate: CertSummary::of(cert, now()),
        due: rfc3339(due_at),
        hosts: hosts.clone(),
        skipped: Vec::new(),
    };
    match decide(config, acme, &held.certs, force) {
        Decision::Current { cert, due_at } => {
            let days = (due_at - now()).div_euclid(86_400);
            ui::status(
                "Current",
                &format!(
                    "certificate for `{}` on {} host{}: expires {} (in {} days); nothing to do for {days} more days",
                    config.domain,
                    hosts.len(),
                    plural(hosts.len()),
                    rfc3339(cert.not_after),
                    cert.days_left(now()),
                ),
            );
            Ok(report(
                &cert,
                due_at,
                format!("not due until {}", rfc3339(due_at)),
            ))
        }
        Decision::Copy {
            from,
            cert,
            to,
            reason,
            due_at,
        } => {
            copy_certificate(config, fleet, &from, &cert, &to, &reason).await?;
            Ok(RenewReport {
                copied_to: to,
                ..report(&cert, due_at, reason.to_string())
            })
        }
        Decision::Renew(reason) => {
            let facts = obtain_and_install(config, acme, fleet, held, &reason, force).await?;
            let margin = i64::try_from(acme.renew_before.as_secs()).unwrap_or(0);
            Ok(RenewReport {
                renewed: true,
                ..report(&facts, facts.not_after - margin, reason.to_string())
            })
        }
    }
}

/// What the hosts hold, in configuration order.
struct FleetTls {
    certs: Vec<HostCert>,
    accounts: Vec<Option<Vec<u8>>>,
    /// Whether each host has the challenge directory (made by `shipit provision`).
    challenge_dirs: Vec<bool>,
}

async fn read_fleet(config: &Config, fleet: &Fleet) -> Result<FleetTls, Error> {
    let site = config.site();
    let (certificate, _) = config.tls_files().unwrap_or_default();
    let cmd = scripts::Observe {
        files: vec![certificate, site.certificate_record(), site.acme_account()],
        dirs: vec![site.acme_challenges()],
    }
    .command();
    let results = fleet
        .each(|host| {
            let cmd = cmd.clone();
            async move {
                let out = host.check(&cmd).await?;
                let observed =
                    crate::provision::plan::parse_observed(&out, 3, 1).map_err(|message| {
                        Error::Protocol {
                            host: host.spec.to_string(),
                            command: cmd.to_string(),
                            message,
                        }
                    })?;
                let mut files = observed.files.into_iter();
                let cert = files.next().flatten();
                let record = files.next().flatten();
                let account = files.next().flatten();
                Ok::<_, Error>((
                    HostCert {
                        host: host.spec.to_string(),
                        cert: cert.map(|f| CertFacts::from_pem(&f.content)).transpose(),
                        issued: record.and_then(|f| serde_json::from_slice(&f.content).ok()),
                    },
                    account.map(|f| f.content),
                    observed.dirs.first().copied().unwrap_or(false),
                ))
            }
        })
        .await;
    let mut held = FleetTls {
        certs: Vec::new(),
        accounts: Vec::new(),
        challenge_dirs: Vec::new(),
    };
    for (cert, account, dir) in crate::fleet::collect(results)? {
        held.certs.push(cert);
        held.accounts.push(account);
        held.challenge_dirs.push(dir);
    }
    Ok(held)
}

/// Refuse a second certificate for the same names from the same CA within a day (by each
/// host's clock): a run that keeps failing after the CA issued (a host refusing the commit, a
/// read-back that fails) would otherwise spend the CA's duplicate-certificate limit.
async fn refuse_a_second_order_today(
    config: &Config,
    fleet: &Fleet,
    want: &plan::Ordered,
) -> Result<(), Error> {
    let log = config.site().acme_orders();
    let cmd = scripts::AcmeOrders {
        log: &log,
        record: None,
    }
    .command();
    let results = fleet
        .each(|host| {
            let cmd = &cmd;
            async move { host.check(cmd).await }
        })
        .await;
    let mut hosts = Vec::new();
    for (host, out) in fleet.hosts.iter().zip(crate::fleet::collect(results)?) {
        let (clock, orders) = plan::parse_orders(&String::from_utf8_lossy(&out));
        hosts.push((host.spec.to_string(), clock, orders));
    }
    match plan::issued_today(want, &hosts) {
        None => Ok(()),
        Some((host, ago)) => Err(Error::OrderedToday {
            names: want.names.join(", "),
            host: host.to_owned(),
            ago: humantime::format_duration(Duration::from_secs(ago.unsigned_abs())).to_string(),
            log,
            environment: config.environment.clone(),
        }),
    }
}

/// Record a certificate the CA just issued on every host, before it is installed anywhere
/// (a host that cannot be written is warned about: the others' records still count).
async fn record_order(config: &Config, fleet: &Fleet, ordered: &plan::Ordered) {
    let log = config.site().acme_orders();
    // A struct of strings always serializes.
    let record = serde_json::to_string(ordered).unwrap_or_default();
    let cmd = scripts::AcmeOrders {
        log: &log,
        record: Some(&record),
    }
    .command();
    let results = fleet
        .each(|host| {
            let cmd = &cmd;
            async move { host.check(cmd).await }
        })
        .await;
    for (host, r) in fleet.hosts.iter().zip(results) {
        if let Err(e) = r {
            ui::warn(&format!(
                "{}: could not record the certificate just issued in {log}: {}",
                host.spec,
                e.to_string().lines().next().unwrap_or_default()
            ));
        }
    }
}

/// Obtain a certificate, install it on every host, and read it back: the new certificate's
/// facts. Unless `force`, refused when the CA issued one for the same names less than a day ago.
async fn obtain_and_install(
    config: &Config,
    acme: &Acme,
    fleet: &Fleet,
    held: FleetTls,
    reason: &plan::Reason,
    force: bool,
) -> Result<CertFacts, Error> {
    let started = Instant::now();
    let ordered = plan::Ordered {
        directory: acme.directory.clone(),
        names: vec![config.domain.clone()],
    };
    if !force {
        refuse_a_second_order_today(config, fleet, &ordered).await?;
    }
    // Without the challenge directory, nginx has no place to serve answers from: the CA would
    // be asked for nothing (and a failed validation counts against the CA's limits).
    if let Some(host) = fleet
        .hosts
        .iter()
        .zip(&held.challenge_dirs)
        .find_map(|(h, has)| (!has).then_some(h))
    {
        return Err(Error::ChallengeNotServed {
            host: host.spec.to_string(),
            domain: config.domain.clone(),
            observed: format!(
                "it has no `{}` (the site was provisioned without `[tls] acme`)",
                config.site().acme_challenges()
            ),
            environment: config.environment.clone(),
        });
    }
    ui::status(
        "Obtaining",
        &format!(
            "a certificate for `{}` from {}: {reason}",
            config.domain, acme.directory
        ),
    );
    let choice = plan::choose_account(&acme.directory, &held.accounts);
    let ready = ca::account(acme, choice.account.clone()).await?;
    // The account is kept on every host before anything is ordered with it: a failure later
    // does not make the next run create another one.
    let (account, write_to) = match &ready.store {
        Some(changed) => (Some(changed), (0..fleet.hosts.len()).collect()),
        None => (choice.account.as_ref(), choice.write_to),
    };
    if let Some(account) = account.filter(|_| !write_to.is_empty()) {
        store_account(config, fleet, account, &write_to).await?;
    }
    let responder = Challenges {
        fleet,
        site: config.site(),
        domain: &config.domain,
        environment: &config.environment,
        written: Mutex::new(Vec::new()),
    };
    let obtained = ca::obtain(acme, &ready.account, &config.domain, &responder).await;
    responder.withdraw().await;
    let obtained = obtained?;
    record_order(config, fleet, &ordered).await;
    ui::status(
        "Issued",
        &format!(
            "certificate for `{}` by {}, expires {} (in {} days), sha256 {}",
            config.domain,
            obtained.facts.issuer,
            rfc3339(obtained.facts.not_after),
            obtained.facts.days_left(now()),
            obtained.facts.short_sha256()
        ),
    );
    install(config, acme, fleet, &obtained).await?;
    read_back(config, fleet, &obtained.facts).await?;
    ui::status(
        "Installed",
        &format!(
            "on {} host{} in {:.1}s: every host serves it (read back over HTTPS)",
            fleet.hosts.len(),
            plural(fleet.hosts.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(obtained.facts)
}

/// Write the account file (0600) to the hosts at `indices`, atomically.
async fn store_account(
    config: &Config,
    fleet: &Fleet,
    account: &plan::StoredAccount,
    indices: &[usize],
) -> Result<(), Error> {
    let content = serde_json::to_string(account).map_err(|e| Error::Internal {
        context: "serializing the ACME account".into(),
        source: e.into(),
    })?;
    let path = config.site().acme_account();
    let hosts: Vec<Arc<Host>> = indices
        .iter()
        .filter_map(|i| fleet.hosts.get(*i).cloned())
        .collect();
    let results = crate::fleet::each_bounded(hosts, fleet.max_parallel, |host| {
        let files = [(path.as_str(), "600", content.as_str())];
        async move {
            stage(&host, &files).await?;
            commit(&host, &files, "keep the ACME account", false).await
        }
    })
    .await;
    crate::fleet::collect(results).map(|_| ())
}

/// Stage files beside their targets (the content goes on stdin).
async fn stage(host: &Host, files: &[(&str, &str, &str)]) -> Result<(), Error> {
    for (path, mode, content) in files {
        host.check(
            &scripts::Stage {
                staged: &layout::staged(path),
                mode,
                owner: "root:root",
                content,
                target: path,
            }
            .command(),
        )
        .await?;
    }
    Ok(())
}

/// Rename staged files into place (the previous ones kept as backups), with a full `nginx -t`
/// and a reload when `nginx`; on a refusal the previous files are put back.
async fn commit(
    host: &Host,
    files: &[(&str, &str, &str)],
    label: &str,
    nginx: bool,
) -> Result<(), Error> {
    let installs: Vec<scripts::Install> = files
        .iter()
        .map(|(path, _, _)| scripts::Install {
            staged: Some(layout::staged(path)),
            target: (*path).to_owned(),
            backup: layout::backup(path),
        })
        .collect();
    let cmd = scripts::Commit {
        label,
        check_nginx: nginx,
        daemon_reload: false,
        reload_nginx: nginx,
        installs: &installs,
    }
    .command();
    let out = host.run(&cmd).await?;
    match out.code {
        Some(0) => Ok(()),
        Some(3) => Err(Error::Validation {
            host: host.spec.to_string(),
            file: files
                .first()
                .map(|(p, _, _)| (*p).to_owned())
                .unwrap_or_default(),
            template: None,
            validator: "nginx -t".into(),
            output: out.stderr.trim_end().to_owned(),
        }),
        _ => Err(host.failed(&cmd, &out)),
    }
}

/// Install the certificate on every host.
async fn install(
    config: &Config,
    acme: &Acme,
    fleet: &Fleet,
    obtained: &ca::Obtained,
) -> Result<(), Error> {
    let site = config.site();
    let record = serde_json::to_string(&Issued {
        directory: acme.directory.clone(),
        names: obtained.facts.names.clone(),
        issued_at: now(),
    })
    .map_err(|e| Error::Internal {
        context: "serializing the certificate's record".into(),
        source: e.into(),
    })?;
    let (certificate, key, record_path) = (
        site.certificate(),
        site.certificate_key(),
        site.certificate_record(),
    );
    let files = [
        (certificate.as_str(), "644", obtained.chain.as_str()),
        (key.as_str(), "600", obtained.key.expose()),
        (record_path.as_str(), "644", record.as_str()),
    ];
    put_certificate(fleet, fleet.hosts.clone(), &files).await
}

/// Put a certificate's files on `hosts`: staged on all of them first (any failure removes
/// what was staged everywhere and changes nothing), then renamed into place and nginx
/// reloaded.
async fn put_certificate(
    fleet: &Fleet,
    hosts: Vec<Arc<Host>>,
    files: &[(&str, &str, &str)],
) -> Result<(), Error> {
    let staged = crate::fleet::each_bounded(hosts.clone(), fleet.max_parallel, |host| async move {
        stage(&host, files).await
    })
    .await;
    if staged.iter().any(Result::is_err) {
        let names: Vec<String> = files.iter().map(|(p, _, _)| layout::staged(p)).collect();
        crate::fleet::each_bounded(hosts, fleet.max_parallel, |host| {
            let names = names.clone();
            async move {
                let _ = host
                    .check(&scripts::Discard { staged: &names }.command())
                    .await;
            }
        })
        .await;
        return crate::fleet::collect(staged).map(|_| ());
    }
    let results = crate::fleet::each_bounded(hosts, fleet.max_parallel, |host| async move {
        commit(
            &host,
            files,
            "install the certificate and reload nginx",
            true,
        )
        .await
    })
    .await;
    crate::fleet::collect(results).map(|_| ())
}

/// Give the hosts `to` the certificate `from` holds (its key and its record with it), then
/// read it back from every host, as after a renewal. The CA is not asked for anything.
async fn copy_certificate(
    config: &Config,
    fleet: &Fleet,
    from: &str,
    cert: &CertFacts,
    to: &[String],
    reason: &plan::Reason,
) -> Result<(), Error> {
    let started = Instant::now();
    ui::status(
        "Copying",
        &format!(
            "the certificate for `{}` that `{from}` holds (sha256 {}, expires {}, in {} days) to {}: {reason}; nothing is asked of the CA",
            config.domain,
            cert.short_sha256(),
            rfc3339(cert.not_after),
            cert.days_left(now()),
            to.iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let source = fleet
        .hosts
        .iter()
        .find(|h| h.spec.to_string() == from)
        .ok_or_else(|| Error::Internal {
            context: format!("copying the certificate: `{from}` is not among the connected hosts"),
            source: "no such host".into(),
        })?;
    let site = config.site();
    let paths = [
        site.certificate(),
        site.certificate_key(),
        site.certificate_record(),
    ];
    let cmd = scripts::Observe {
        files: paths.to_vec(),
        dirs: Vec::new(),
    }
    .command();
    let out = source.check(&cmd).await?;
    let protocol = |message: String| Error::Protocol {
        host: from.to_owned(),
        command: cmd.to_string(),
        message,
    };
    let observed =
        crate::provision::plan::parse_observed(&out, paths.len(), 0).map_err(protocol)?;
    let mut contents = Vec::with_capacity(paths.len());
    for (file, path) in observed.files.into_iter().zip(&paths) {
        let file = file.ok_or_else(|| protocol(format!("`{path}` is gone")))?;
        contents.push(
            String::from_utf8(file.content)
                .map_err(|_| protocol(format!("`{path}` is not text (PEM or JSON)")))?,
        );
    }
    let [chain, key, record]: [String; 3] = contents
        .try_into()
        .map_err(|_| protocol("fewer files than asked for".into()))?;
    // Under the lock nothing else writes these files; still, what is copied is what was
    // judged.
    let read = CertFacts::from_pem(chain.as_bytes()).map_err(protocol)?;
    if read.sha256 != cert.sha256 {
        return Err(protocol(format!(
            "its certificate changed while it was read: sha256 {}, not {}",
            read.short_sha256(),
            cert.short_sha256()
        )));
    }
    let files = [
        (paths[0].as_str(), "644", chain.as_str()),
        (paths[1].as_str(), "600", key.as_str()),
        (paths[2].as_str(), "644", record.as_str()),
    ];
    let targets: Vec<Arc<Host>> = fleet
        .hosts
        .iter()
        .filter(|h| to.contains(&h.spec.to_string()))
        .cloned()
        .collect();
    put_certificate(fleet, targets, &files).await?;
    read_back(config, fleet, cert).await?;
    ui::status(
        "Copied",
        &format!(
            "to {} host{} in {:.1}s: every host serves it (read back over HTTPS)",
            to.len(),
            plural(to.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Every host holds the new certificate and serves it over HTTPS (nginx's new workers take a
/// moment after the reload: a few seconds are allowed).
async fn read_back(config: &Config, fleet: &Fleet, want: &CertFacts) -> Result<(), Error> {
    let held = read_fleet(config, fleet).await?;
    for h in &held.certs {
        match &h.cert {
            Ok(Some(c)) if c.sha256 == want.sha256 => {}
            other => {
                return Err(Error::TlsReadBack {
                    host: h.host.clone(),
                    message: format!(
                        "its certificate file is {} after the install, not the new sha256 {}",
                        describe(other),
                        want.short_sha256()
                    ),
                });
            }
        }
    }
    let results = fleet
        .each(|host| async move {
            let mut last = String::new();
            for _ in 0..10 {
                match served(&host, &config.domain).await {
                    Ok(c) if c.sha256 == want.sha256 => return Ok(()),
                    Ok(c) => last = format!("sha256 {}", c.short_sha256()),
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Error::TlsReadBack {
                host: host.spec.to_string(),
                message: format!(
                    "nginx serves {last} over HTTPS for `{}`, not the new certificate (sha256 {})",
                    config.domain,
                    want.short_sha256()
                ),
            })
        })
        .await;
    crate::fleet::collect(results).map(|_| ())
}

fn describe(cert: &Result<Option<CertFacts>, String>) -> String {
    match cert {
        Ok(Some(c)) => format!("sha256 {}", c.short_sha256()),
        Ok(None) => "missing".into(),
        Err(why) => format!("unreadable ({why})"),
    }
}

/// The certificate a host's nginx serves for `domain` on 443, through the SSH tunnel.
async fn served(host: &std::sync::Arc<Host>, domain: &str) -> Result<CertFacts, String> {
    let tunnel = crate::probe::Tunnel::open(host, 443)
        .await
        .map_err(|e| e.to_string())?;
    let seen = crate::probe::get_over_tls(&tunnel, domain, "/").await;
    match seen.certificate {
        Some(der) => CertFacts::from_der(&der),
        None => Err(format!("no certificate ({})", seen.answer)),
    }
}

/// The HTTP-01 answers on every host: written, checked through each host's nginx, and removed
/// at the end whatever happened.
struct Challenges<'a> {
    fleet: &'a Fleet,
    site: Site,
    domain: &'a str,
    environment: &'a str,
    written: Mutex<Vec<String>>,
}

impl ca::Responder for Challenges<'_> {
    async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), Error> {
        let path = format!("{}/{token}", self.site.acme_challenges());
        if let Ok(mut written) = self.written.lock() {
            written.push(path.clone());
        }
        let url_path = format!("/.well-known/acme-challenge/{token}");
        let results = self
            .fleet
            .each(|host| {
                let (path, url_path) = (&path, &url_path);
                async move {
                    host.check(
                        &scripts::Stage {
                            staged: path,
                            mode: "644",
                            owner: "root:root",
                            content: key_authorization,
                            target: path,
                        }
                        .command(),
                    )
                    .await?;
                    // As the CA will ask: through nginx on port 80, with the domain as Host.
                    // A reload just done (by provisioning) takes a moment to reach every
                    // worker: a few seconds are allowed.
                    let tunnel = crate::probe::Tunnel::open(&host, 80).await?;
                    let client = crate::probe::client(true)?;
                    let mut answer =
                        crate::probe::get(&client, &tunnel, url_path, Some(self.domain)).await;
                    for _ in 0..20 {
                        if answer.status == Some(200) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        answer =
                            crate::probe::get(&client, &tunnel, url_path, Some(self.domain)).await;
                    }
                    if answer.status == Some(200) && answer.body.trim_end() == key_authorization {
                        Ok(())
                    } else {
                        Err(Error::ChallengeNotServed {
                            host: host.spec.to_string(),
                            domain: self.domain.to_owned(),
                            observed: format!("GET {url_path} answered {answer}"),
                            environment: self.environment.to_owned(),
                        })
                    }
                }
            })
            .await;
        crate::fleet::collect(results).map(|_| ())
    }
}

impl Challenges<'_> {
    /// Remove every answer written, on every host (a failure is a warning: the files are
    /// inert, and the next run's are new).
    async fn withdraw(&self) {
        let written = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        if written.is_empty() {
            return;
        }
        let results = self
            .fleet
            .each(|host| {
                let written = &written;
                async move {
                    host.check(&scripts::Discard { staged: written }.command())
                        .await
                        .map(|_| ())
                }
            })
            .await;
        for e in results.into_iter().filter_map(Result::err) {
            ui::warn(&format!("could not remove the ACME challenge answers: {e}"));
        }
    }
}

/// With `[tls] acme`: the stand-in certificate and key `shipit provision` creates when a host
/// has none, so that nginx starts (and serves the challenges) before the first certificate is
/// issued. Self-signed, for the domain, marked as shipit's.
pub fn placeholder_files(config: &Config) -> Result<Vec<ManagedFile>, Error> {
    if config.acme().is_none() {
        return Ok(Vec::new());
    }
    let failed = |e: rcgen::Error| Error::Internal {
        context: "making the temporary certificate".into(),
        source: e.into(),
    };
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(vec![config.domain.clone()]).map_err(failed)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{} for {}", plan::PLACEHOLDER_ISSUER, config.domain),
    );
    let cert = params.self_signed(&key).map_err(failed)?;
    let site = config.site();
    let file = |path: String, content: String, mode: &'static str| ManagedFile {
        path,
        content,
        mode,
        owner: "root:root",
        kind: FileKind::Certificate,
        create_only: true,
        template: None,
        hosts: None,
    };
    Ok(vec![
        file(site.certificate(), cert.pem(), "644"),
        file(site.certificate_key(), key.serialize_pem(), "600"),
    ])
}

/// One host's certificate in `shipit tls status`: the file and what nginx serves.
#[derive(Debug, Serialize)]
pub struct HostTls {
    pub host: String,
    /// The file nginx is configured with.
    pub path: String,
    pub certificate: Option<CertSummary>,
    /// Why the file could not be read, when it could not.
    pub file_error: Option<String>,
    /// What nginx serves on 443 for the domain.
    pub served: Option<CertSummary>,
    pub served_error: Option<String>,
    /// It serves a certificate other than the one most hosts serve.
    pub differs: bool,
}

impl ui::Render for HostTls {
    fn text(&self) -> String {
        let file = match (&self.certificate, &self.file_error) {
            (Some(c), _) => c.line(),
            (None, Some(e)) => format!("unreadable: {e}"),
            (None, None) => format!("no certificate at {}", self.path),
        };
        let served = match (&self.served, &self.served_error) {
            (Some(s), _) if Some(&s.sha256) == self.certificate.as_ref().map(|c| &c.sha256) => {
                "serves it on 443".to_owned()
            }
            (Some(s), _) => format!("serves another on 443: {}", s.line()),
            (None, Some(e)) => format!("serves nothing on 443: {e}"),
            (None, None) => "serves nothing on 443".to_owned(),
        };
        format!(
            "{}: {file}\n    {served}{}\n",
            self.host,
            if self.differs {
                " (a different certificate from the other hosts)"
            } else {
                ""
            }
        )
    }
}

/// `shipit tls status <env>`: per host, the certificate file, what nginx serves, and any host
/// serving a different certificate from the rest.
pub async fn status(config: &Config) -> Result<Vec<HostTls>, Error> {
    let Some((path, _)) = config.tls_files() else {
        return Err(Error::NoTls {
            environment: config.environment.clone(),
        });
    };
    crate::fleet::with_fleet(config, async |fleet| {
        let held = read_fleet(config, fleet).await?;
        let served = fleet
            .each(|host| async move { served(&host, &config.domain).await })
            .await;
        let now = now();
        let mut out: Vec<HostTls> = held
            .certs
            .into_iter()
            .zip(served)
            .map(|(h, served)| HostTls {
                host: h.host,
                path: path.clone(),
                certificate: h
                    .cert
                    .as_ref()
                    .ok()
                    .and_then(Option::as_ref)
                    .map(|c| CertSummary::of(c, now)),
                file_error: h.cert.err(),
                served: served.as_ref().ok().map(|c| CertSummary::of(c, now)),
                served_error: served.err(),
                differs: false,
            })
            .collect();
        mark_odd_ones(&mut out);
        Ok(out)
    })
    .await
}

/// Mark the hosts that serve something other than what most hosts serve.
fn mark_odd_ones(hosts: &mut [HostTls]) {
    let key = |h: &HostTls| h.served.as_ref().map(|s| s.sha256.clone());
    let mut counts: Vec<(Option<String>, usize)> = Vec::new();
    for h in hosts.iter() {
        let k = key(h);
        match counts.iter_mut().find(|(c, _)| *c == k) {
            Some((_, n)) => *n += 1,
            None => counts.push((k, 1)),
        }
    }
    if counts.len() < 2 {
        return;
    }
    let most = counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| k.clone())
        .unwrap_or_default();
    for h in hosts.iter_mut() {
        h.differs = key(h) != most;
    }
}

/// The number of days before expiry under which deploys and provisioning warn: the renewal
/// margin with ACME, two weeks for the team's own files.
pub fn warning_days(config: &Config) -> i64 {
    match config.acme() {
        Some(acme) => i64::try_from(acme.renew_before.as_secs() / 86_400).unwrap_or(30),
        None => crate::doctor::CERTIFICATE_WARNING_DAYS,
    }
}

/// The warning for a served certificate close to expiry, if it is.
pub fn expiry_warning(config: &Config, host: &str, der: &[u8]) -> Option<String> {
    let facts = CertFacts::from_der(der).ok()?;
    let days = facts.days_left(now());
    if days >= warning_days(config) {
        return None;
    }
    Some(match config.acme() {
        Some(_) if facts.placeholder => format!(
            "`{host}` serves the temporary self-signed certificate for `{}`: run `shipit tls renew {}`",
            config.domain, config.environment
        ),
        Some(_) => format!(
            "the certificate for `{}` on `{host}` expires in {days} days: run `shipit tls renew {}` (safe to run daily from cron)",
            config.domain, config.environment
        ),
        None => format!(
            "the certificate for `{}` on `{host}` expires in {days} days: renew it and install it on every host",
            config.domain
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sha: &str) -> CertSummary {
        CertSummary {
            names: vec!["a.test".into()],
            issuer: "CA".into(),
            expires: "2030-01-01T00:00:00Z".into(),
            days_left: 90,
            sha256: sha.into(),
            placeholder: false,
        }
    }

    fn host(name: &str, served: Option<&str>) -> HostTls {
        HostTls {
            host: name.into(),
            path: "/p".into(),
            certificate: served.map(summary),
            file_error: None,
            served: served.map(summary),
            served_error: served.is_none().then(|| "refused".into()),
            differs: false,
        }
    }

    #[test]
    fn the_host_serving_something_else_is_marked() {
        let mut hosts = [
            host("a", Some("11")),
            host("b", Some("22")),
            host("c", Some("11")),
        ];
        mark_odd_ones(&mut hosts);
        assert_eq!(
            hosts.iter().map(|h| h.differs).collect::<Vec<_>>(),
            [false, true, false]
        );
        let mut same = [host("a", Some("11")), host("b", Some("11"))];
        mark_odd_ones(&mut same);
        assert!(same.iter().all(|h| !h.differs));
        let mut down = [
            host("a", Some("11")),
            host("b", None),
            host("c", Some("11")),
        ];
        mark_odd_ones(&mut down);
        assert!(down[1].differs);
        let text = ui::Render::text(&down[1]);
        assert!(text.contains("serves nothing on 443: refused"), "{text}");
        assert!(ui::Render::text(&down[0]).contains("serves it on 443"));
    }
}
