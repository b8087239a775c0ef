//! Command-line arguments, and the thin mapping from them to operations.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::ui;

#[derive(Debug, Parser)]
#[command(
    name = "shipit",
    version,
    about = "Blue/green deploys of containers to your own servers, behind nginx"
)]
pub struct Cli {
    /// The app directory (holding shipit.toml and environments/)
    #[arg(
        short = 'C',
        long = "app-dir",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub app_dir: PathBuf,

    /// More output: -v for steps per host, -vv for every remote command
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the merged configuration of an environment, secrets redacted
    #[command(after_help = "Example:\n  shipit config production\n  shipit config staging --json")]
    Config {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Build the release image through the Docker API and push it to the registry
    #[command(
        after_help = "Examples:\n  shipit build production\n  shipit build production --version 1.5.0 --allow-dirty\n\nThe tag is the version plus the app's git commit: 1.4.2+3f9c2ab is tagged 1.4.2_3f9c2ab."
    )]
    Build {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        #[command(flatten)]
        release: ReleaseArgs,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Build, push and deploy blue/green to every host, rolling back by itself on failure
    #[command(
        after_help = "Examples:\n  shipit deploy production\n  shipit deploy production --dry-run\n  shipit deploy staging --version 1.5.0-rc.1 --lock-wait 5m\n\nBuild once, then promote the same image (a CI pipeline):\n  shipit build staging && shipit deploy staging --no-build\n  shipit deploy production --no-build"
    )]
    Deploy {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        #[command(flatten)]
        release: ReleaseArgs,
        /// Deploy the release's image already in the registry (from `shipit build` or an
        /// earlier deploy of this commit) instead of building: one image, every environment
        #[arg(long)]
        no_build: bool,
        /// No backup before the release command (`[backup]`); the history records it
        #[arg(long)]
        skip_backup: bool,
        /// Stop once every host is healthy: users keep the live release, the new one waits
        /// (reachable through `[preview]`) for `shipit promote` or `shipit discard`
        #[arg(long)]
        no_promote: bool,
        /// Move traffic to the new release in weighted steps (`10%,50%`; alone: `[canary]
        /// steps`), each held and judged against the previous release from nginx's log; a
        /// breach switches every host back
        #[arg(long, value_name = "STEPS", num_args = 0..=1, default_missing_value = "", conflicts_with = "no_promote")]
        canary: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Switch every host to the release waiting for promotion (`deploy --no-promote`), with a
    /// deploy's checks, verification and automatic undo
    #[command(
        after_help = "Example:\n  shipit deploy production --no-promote   # look at preview.<domain> first\n  shipit promote production"
    )]
    Promote {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        #[command(flatten)]
        lock: LockWaitArg,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop the release waiting for promotion on every host; users keep the live one
    #[command(after_help = "Example:\n  shipit discard production")]
    Discard {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        #[command(flatten)]
        lock: LockWaitArg,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Put traffic back on the previous release at once (or on `--to VERSION`)
    #[command(
        after_help = "Examples:\n  shipit rollback production\n  shipit rollback production --to 1.4.1"
    )]
    Rollback {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// A retained release, such as `1.4.1` or `1.4.1+3f9c2ab`
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Take hosts that are no longer in `hosts` out of the environment for good: the app's
    /// units, containers, nginx site and configuration go (history and backups stay)
    #[command(
        after_help = "Examples:\n  shipit retire production deploy@203.0.113.12\n  shipit retire production deploy@203.0.113.12 --forget   # the host is gone for good\n\n`shipit status`, `deploy` and `doctor` name the hosts to retire."
    )]
    Retire {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The hosts, as they were written in `hosts`
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<String>,
        /// Do not connect to them: only make the configured hosts forget them (a host that
        /// is gone for good)
        #[arg(long)]
        forget: bool,
        #[command(flatten)]
        lock: LockWaitArg,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Per host: live colour, release, health, unit states, lock holder
    #[command(after_help = "Example:\n  shipit status production --json")]
    Status {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Release history merged from all hosts, newest first
    #[command(after_help = "Example:\n  shipit releases production")]
    Releases {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show or break the deploy lock of an environment
    #[command(
        after_help = "Examples:\n  shipit lock status production\n  shipit lock release production --yes"
    )]
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Create shipit.toml, environments/production.toml and staging.toml, a Dockerfile.production
    /// (unless there is one) and a .dockerignore, with comments; never overwrites
    #[command(after_help = "Example:\n  shipit init --app web-shop")]
    Init {
        /// The app's name (default: the directory's name)
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
    },
    /// Which secrets an environment needs and whether each is set (values are never shown)
    #[command(after_help = "Example:\n  shipit secrets check production")]
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Check, locally and on every host, what a deploy needs: SSH and host key, root or sudo,
    /// Docker and the registry login, nginx, systemd, disk space, clock skew
    #[command(after_help = "Example:\n  shipit doctor production")]
    Doctor {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Stream the live colour's logs from every host, prefixed by host
    #[command(
        after_help = "Examples:\n  shipit logs production\n  shipit logs production --follow --lines 20\n  shipit logs production --json | jq -r 'select(.host | test(\"web1\")) | .line'"
    )]
    Logs {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Keep printing new lines until interrupted
        #[arg(short, long)]
        follow: bool,
        /// How many past lines per host
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        /// A JSON object per line: {"host", "unit", "line"}
        #[arg(long)]
        json: bool,
        /// A process beside the web one (`[processes.<NAME>]`) instead of the web process
        #[arg(long, value_name = "NAME")]
        process: Option<String>,
    },
    /// Run a one-off command in a fresh container of the live release, with the app's
    /// environment and secrets: interactive on a terminal, else output streamed; its exit
    /// code is shipit's. Audited on the host.
    #[command(
        after_help = "Examples:\n  shipit exec production -- ./bin/console\n  shipit exec production --host deploy@web2 -- ./bin/report --since yesterday\n  echo 'SELECT 1' | shipit exec production -- ./bin/psql"
    )]
    Exec {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The host to run on (default: the first)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// The services the app uses (`[accessories.*]`): a database, a cache, each on one host
    #[command(
        after_help = "Examples:\n  shipit accessory status production\n  shipit accessory logs production db -f\n  shipit accessory exec production db -- psql -U app -c 'select 1'\n  shipit accessory upgrade production db\n\n`shipit provision` starts them; deploys and rollbacks never restart them."
    )]
    Accessory {
        #[command(subcommand)]
        action: AccessoryAction,
    },
    /// The backups taken before deploys (`[backup]`), or `restore` one
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  shipit backups production\n  shipit backups restore production 20261201T193000Z_1.4.2+3f9c2ab.backup\n  shipit backups pull production 20261201T193000Z_1.4.2+3f9c2ab.backup --to ~/backups"
    )]
    Backups {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        #[arg(required = true)]
        environment: Option<String>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<BackupsAction>,
    },
    /// Serve a maintenance page from nginx (`on`), or the app again (`off`)
    #[command(
        after_help = "Examples:\n  shipit maintenance on production\n  shipit maintenance off production\n\nA templates/maintenance.html in the app replaces the default page."
    )]
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        #[command(flatten)]
        lock: LockWaitArg,
    },
    /// Certificates from an ACME CA (`[tls] acme`): renew when due, or show what each host serves
    #[command(
        after_help = "Examples:\n  shipit tls status production\n  shipit tls renew production\n  shipit tls renew production --force\n\nFrom cron, daily (it changes nothing until the certificate is due):\n  17 3 * * * cd /srv/app && shipit -q tls renew production"
    )]
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
    /// Print a shell completion script
    #[command(after_help = "Example:\n  shipit completions bash > /etc/bash_completion.d/shipit")]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    #[command(after_help = "Example:\n  shipit man > /usr/local/share/man/man1/shipit.1")]
    Man,
    /// Render, validate and install nginx, systemd and logrotate configs on every host
    #[command(
        after_help = "Examples:\n  shipit provision production\n  shipit provision production --dry-run"
    )]
    Provision {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Show a diff of every file against each host and change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lock: LockWaitArg,
    },
}

/// Waiting for the environment's lock.
#[derive(Debug, clap::Args)]
pub struct LockWaitArg {
    /// Wait this long for a held deploy lock instead of failing (such as `30s`, `5m`)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    lock_wait: Option<std::time::Duration>,
}

/// What release a build makes.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// Release version (semver), instead of `version` in shipit.toml
    #[arg(long, value_name = "SEMVER")]
    version: Option<semver::Version>,
    /// Build even with uncommitted changes (the tag is marked `dirty`)
    #[arg(long)]
    allow_dirty: bool,
    /// Push even when the registry's tag for this release names another image (replacing it)
    #[arg(long)]
    force_push: bool,
}

impl ReleaseArgs {
    fn options(self, verbose: u8) -> crate::build::Options {
        crate::build::Options {
            version: self.version,
            allow_dirty: self.allow_dirty,
            verbose: verbose > 0,
            force_push: self.force_push,
        }
    }
}

/// Options of the commands that change what serves.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Print the plan per host and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Wait this long for a held deploy lock instead of failing (such as `30s`, `5m`)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    lock_wait: Option<std::time::Duration>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Leave out hosts that cannot be reached: the others proceed with every check; the ones
    /// left out keep what they serve, are named and recorded as behind, and the next run
    /// converges them (exit code 13)
    #[arg(long)]
    skip_unreachable: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Say which secrets are missing, without printing any value
    Check {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessoryAction {
    /// Each accessory (or one) as its host says: unit, container, pid, image, health
    Status {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// One accessory (all by default)
        name: Option<String>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Its last log lines, and with `-f` what it logs next
    Logs {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The accessory (`[accessories.<NAME>]`)
        name: String,
        /// Keep printing new lines until interrupted
        #[arg(short, long)]
        follow: bool,
        /// How many past lines
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
    },
    /// Run a command in its running container (`docker exec`); its exit code is shipit's
    Exec {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The accessory (`[accessories.<NAME>]`)
        name: String,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Restart it (a new container of its configured image) and wait until it is healthy
    Restart {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The accessory (`[accessories.<NAME>]`)
        name: String,
    },
    /// Move it to the image the configuration names: a backup first (with `[backup]`), the
    /// image pulled, restarted, waited for
    Upgrade {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The accessory (`[accessories.<NAME>]`)
        name: String,
    },
    /// Stop it and remove its unit; its data stays unless `--delete-data` (asks first)
    Remove {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The accessory (`[accessories.<NAME>]`)
        name: String,
        /// Delete its volumes' directories on the host too
        #[arg(long)]
        delete_data: bool,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupsAction {
    /// Copy a backup from its host to this machine (checked by its SHA-256), so that losing
    /// the backup host does not lose it
    Pull {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The backup, as `shipit backups` lists it
        id: String,
        /// The directory to write it in
        #[arg(long, value_name = "DIR", default_value = ".")]
        to: std::path::PathBuf,
    },
    /// Restore a backup with `[backup] restore`, under the deploy lock (asks first)
    Restore {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// The backup, as `shipit backups` lists it
        id: String,
        /// Do not ask
        #[arg(long)]
        yes: bool,
        /// Take the lock on the hosts that answer, leaving out those that cannot be reached
        /// (the backup host must answer)
        #[arg(long)]
        skip_unreachable: bool,
        #[command(flatten)]
        lock: LockWaitArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Obtain and install a new certificate on every host when it expires within
    /// `renew_before` (30 days), the hosts disagree, or there is none yet; else do nothing
    Renew {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Renew now, even when not due
        #[arg(long)]
        force: bool,
        /// Go on with the hosts that answer, leaving out (and naming) those that cannot be
        /// reached; the next run gives them the certificate the others hold
        #[arg(long)]
        skip_unreachable: bool,
        #[command(flatten)]
        lock: LockWaitArg,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Per host: the certificate file (names, issuer, expiry) and what nginx serves on 443
    Status {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Who holds the lock on each host, since when
    Status {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Break the lock, whoever holds it (asks for confirmation)
    Release {
        /// The environment: `environments/<ENVIRONMENT>.toml` beside shipit.toml
        environment: String,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

/// Run the command: each arm maps its arguments to one operation and prints its report.
/// Longer than most functions here because it is the one table of commands, each arm a few
/// lines; the work is in the operations it calls.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let load = |environment: &str| crate::config::load(&cli.app_dir, environment);
    match cli.command {
        Command::Config { environment, json } => {
            ui::out(&crate::show::config(&load(&environment)?, json)?);
            Ok(())
        }
        Command::Build {
            environment,
            release,
            json,
        } => {
            let options = release.options(cli.verbose);
            let image = crate::build::build_and_push(&load(&environment)?, &options).await?;
            ui::print(&image, json);
            Ok(())
        }
        Command::Deploy {
            environment,
            release,
            no_build,
            skip_backup,
            no_promote,
            canary,
            change,
        } => {
            let options = crate::deploy::DeployOptions {
                dry_run: change.dry_run,
                lock_wait: change.lock_wait,
                build: release.options(cli.verbose),
                no_build,
                skip_backup,
                skip_unreachable: change.skip_unreachable,
                no_promote,
                canary,
            };
            let report = crate::deploy::deploy(&load(&environment)?, &options).await?;
            ui::print(&report, change.json);
            report.verdict(&environment)
        }
        Command::Promote {
            environment,
            lock,
            json,
        } => {
            let options = crate::deploy::PromoteOptions {
                lock_wait: lock.lock_wait,
            };
            let report = crate::deploy::promote(&load(&environment)?, &options).await?;
            ui::print(&report, json);
            Ok(())
        }
        Command::Discard {
            environment,
            lock,
            json,
        } => {
            let options = crate::deploy::PromoteOptions {
                lock_wait: lock.lock_wait,
            };
            let discarded = crate::deploy::discard(&load(&environment)?, &options).await?;
            ui::print(&discarded, json);
            Ok(())
        }
        Command::Rollback {
            environment,
            to,
            change,
        } => {
            let options = crate::deploy::RollbackOptions {
                to,
                dry_run: change.dry_run,
                lock_wait: change.lock_wait,
                skip_unreachable: change.skip_unreachable,
            };
            let report = crate::deploy::rollback(&load(&environment)?, &options).await?;
            ui::print(&report, change.json);
            report.verdict(&environment)
        }
        Command::Retire {
            environment,
            hosts,
            forget,
            lock,
            json,
        } => {
            let retired =
                crate::retire::retire(&load(&environment)?, &hosts, forget, lock.lock_wait).await?;
            ui::print(&retired, json);
            Ok(())
        }
        Command::Status { environment, json } => {
            ui::print(
                &crate::deploy::status::status(&load(&environment)?).await?,
                json,
            );
            Ok(())
        }
        Command::Releases { environment, json } => {
            let lines = crate::deploy::history::releases(&load(&environment)?).await?;
            ui::print(&lines, json);
            Ok(())
        }
        Command::Lock {
            action: LockAction::Status { environment, json },
        } => {
            ui::print(&crate::lock::status(&load(&environment)?).await?, json);
            Ok(())
        }
        Command::Lock {
            action: LockAction::Release { environment, yes },
        } => {
            crate::lock::break_lock(&load(&environment)?, yes, |q| confirm(q, "break the lock"))
                .await
        }
        Command::Init { app } => init(&cli.app_dir, app),
        Command::Secrets {
            action: SecretsAction::Check { environment, json },
        } => {
            let states = crate::show::secrets(&load(&environment)?)?;
            ui::print(&states, json);
            crate::show::secrets_verdict(&states)
        }
        Command::Doctor { environment, json } => {
            let checks = crate::doctor::doctor(&load(&environment)?).await;
            ui::print(&checks, json);
            crate::doctor::verdict(&checks)
        }
        Command::Exec {
            environment,
            host,
            command,
        } => {
            let code = crate::exec::exec(&load(&environment)?, host.as_deref(), &command).await?;
            if code == 0 {
                Ok(())
            } else {
                Err(Error::CommandExit { code })
            }
        }
        Command::Accessory { action } => accessory(action, load).await,
        Command::Backups {
            action:
                Some(BackupsAction::Pull {
                    environment,
                    id,
                    to,
                }),
            ..
        } => {
            let path = crate::backups::pull(&load(&environment)?, &id, &to).await?;
            ui::out(&format!("{}\n", path.display()));
            Ok(())
        }
        Command::Backups {
            action:
                Some(BackupsAction::Restore {
                    environment,
                    id,
                    yes,
                    skip_unreachable,
                    lock,
                }),
            ..
        } => {
            crate::backups::restore(
                &load(&environment)?,
                &id,
                yes,
                skip_unreachable,
                lock.lock_wait,
                |q| confirm(q, "restore a backup"),
            )
            .await
        }
        Command::Backups {
            environment, json, ..
        } => {
            let environment = environment.unwrap_or_default();
            ui::print(&crate::backups::list(&load(&environment)?).await?, json);
            Ok(())
        }
        Command::Logs {
            environment,
            follow,
            lines,
            json,
            process,
        } => {
            let format = if json {
                crate::operate::LogFormat::Json
            } else {
                crate::operate::LogFormat::Text
            };
            crate::operate::logs(
                &load(&environment)?,
                lines,
                follow,
                format,
                process.as_deref(),
            )
            .await
        }
        Command::Maintenance {
            state,
            environment,
            lock,
        } => crate::operate::maintenance(&load(&environment)?, state == "on", lock.lock_wait).await,
        Command::Provision {
            environment,
            dry_run,
            lock,
        } => {
            let options = crate::provision::Options {
                dry_run,
                lock_wait: lock.lock_wait,
            };
            crate::provision::provision(&load(&environment)?, options).await?;
            Ok(())
        }
        Command::Tls {
            action:
                TlsAction::Renew {
                    environment,
                    force,
                    skip_unreachable,
                    lock,
                    json,
                },
        } => {
            let options = crate::acme::RenewOptions {
                force,
                lock_wait: lock.lock_wait,
                skip_unreachable,
            };
            let report = crate::acme::renew(&load(&environment)?, options).await?;
            ui::print(&report, json);
            Ok(())
        }
        Command::Tls {
            action: TlsAction::Status { environment, json },
        } => {
            ui::print(&crate::acme::status(&load(&environment)?).await?, json);
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "shipit", &mut out);
            ui::out(&String::from_utf8_lossy(&out));
            Ok(())
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut out)
                .map_err(|source| Error::Write {
                    path: "stdout".into(),
                    source,
                })?;
            ui::out(&String::from_utf8_lossy(&out));
            Ok(())
        }
    }
}

/// `shipit init`: the app's name given, or made from the directory's.
fn init(dir: &std::path::Path, app: Option<String>) -> Result<(), Error> {
    let name = match app {
        Some(name) => name,
        None => {
            let dir_name = std::fs::canonicalize(dir)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let name = crate::init::derive_name(&dir_name);
            if name != dir_name {
                ui::status(
                    "Naming",
                    &format!(
                        "the app `{name}` (from the directory `{dir_name}`; pass `--app NAME` to choose)"
                    ),
                );
            }
            name
        }
    };
    crate::init::init(dir, &name)
}

/// Ask on the terminal; refuses when stdin is not one.
async fn accessory(
    action: AccessoryAction,
    load: impl Fn(&str) -> Result<crate::config::Config, Error>,
) -> Result<(), Error> {
    match action {
        AccessoryAction::Status {
            environment,
            name,
            json,
        } => {
            let states = crate::accessory::status(&load(&environment)?, name.as_deref()).await?;
            ui::print(&states, json);
            Ok(())
        }
        AccessoryAction::Logs {
            environment,
            name,
            follow,
            lines,
        } => crate::accessory::logs(&load(&environment)?, &name, lines, follow).await,
        AccessoryAction::Exec {
            environment,
            name,
            command,
        } => match crate::accessory::exec(&load(&environment)?, &name, &command).await? {
            0 => Ok(()),
            code => Err(Error::CommandExit { code }),
        },
        AccessoryAction::Restart { environment, name } => {
            crate::accessory::restart(&load(&environment)?, &name).await?;
            Ok(())
        }
        AccessoryAction::Upgrade { environment, name } => {
            crate::accessory::upgrade(&load(&environment)?, &name).await?;
            Ok(())
        }
        AccessoryAction::Remove {
            environment,
            name,
            delete_data,
            yes,
        } => {
            crate::accessory::remove(&load(&environment)?, &name, delete_data, yes, |q| {
                confirm(q, "remove an accessory")
            })
            .await?;
            Ok(())
        }
    }
}

fn confirm(question: &str, action: &str) -> Result<bool, Error> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Error::NeedsConfirmation {
            action: action.into(),
        });
    }
    let _ = write!(std::io::stderr(), "{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
