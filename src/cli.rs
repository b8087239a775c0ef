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
