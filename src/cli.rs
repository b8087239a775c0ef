//! Command-line arguments, and the thin mapping from them to operations.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;

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
        environment: String,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Build the release image through the Docker API and push it to the registry
    #[command(
        after_help = "Examples:\n  shipit build production\n  shipit build production --version 1.5.0 --allow-dirty\n\nThe tag is the version plus the app's git commit: 1.4.2+3f9c2ab is tagged 1.4.2_3f9c2ab."
    )]
    Build {
        environment: String,
        /// Release version (semver), instead of `version` in shipit.toml
        #[arg(long, value_name = "SEMVER")]
        version: Option<semver::Version>,
        /// Build even with uncommitted changes (the tag is marked `dirty`)
        #[arg(long)]
        allow_dirty: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Render, validate and install nginx, systemd and logrotate configs on every host
    #[command(
        after_help = "Examples:\n  shipit provision production\n  shipit provision production --dry-run"
    )]
    Provision {
        environment: String,
        /// Show a diff of every file against each host and change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Config { environment, json } => {
            let config = crate::config::load(&cli.app_dir, &environment)?;
            crate::ui::out(&crate::show::config(&config, json)?);
            Ok(())
        }
        Command::Build {
            environment,
            version,
            allow_dirty,
            json,
        } => {
            let config = crate::config::load(&cli.app_dir, &environment)?;
            let options = crate::build::Options {
                version,
                allow_dirty,
                verbose: cli.verbose > 0,
            };
            let image = crate::build::build_and_push(&config, &options).await?;
            if json {
                crate::ui::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&image).unwrap_or_default()
                ));
            } else {
                crate::ui::out(&format!("{}@{}\n", image.reference, image.digest));
            }
            Ok(())
        }
        Command::Provision {
            environment,
            dry_run,
        } => {
            let config = crate::config::load(&cli.app_dir, &environment)?;
            crate::provision::provision(&config, crate::provision::Options { dry_run }).await?;
            Ok(())
        }
    }
}
