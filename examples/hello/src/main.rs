//! `hello`: the example app that shipit deploys in its demo and tests, as a team's app would
//! look. Its image is `FROM scratch` around this one static binary, so each of the app's
//! processes is a subcommand of it:
//!
//! - `hello` or `hello serve`: the HTTP service ([`serve`]);
//! - `hello migrate`: the release command that migrates the store ([`migrate`]);
//! - `hello worker`: the queue consumer; `hello worker --check`, its readiness check ([`worker`]);
//! - `hello job <name>`: a scheduled job ([`job`]);
//! - `hello backup`, `hello restore`: the store to and from a file ([`backup`]);
//! - `hello store`: the store's summary as JSON, as `GET /store` answers it.
//!
//! All but the server's `/`, `/health` and `/version` work on the store ([`store`]), a
//! directory that every container of the app mounts. Settings come from the environment ([`env`]); every failure is
//! a [`Failure`], which owns the wording and the exit code. Output is one line per action on
//! stdout (shipit streams it into a deploy's output); errors are one line on stderr.

mod backup;
mod env;
mod failure;
mod job;
mod migrate;
mod serve;
mod store;
mod worker;

use std::process::ExitCode;

use env::Env;
use failure::Failure;
use store::Store;

const USAGE: &str =
    "usage: hello [serve | migrate | worker [--check] | job <name> | backup | restore | store]";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve,
    Migrate,
    Worker { check: bool },
    Job(String),
    Backup,
    Restore,
    Store,
    Help,
}

impl Command {
    fn parse(args: &[&str]) -> Result<Command, Failure> {
        let command = match args {
            [] | ["serve"] => Command::Serve,
            ["migrate"] => Command::Migrate,
            ["worker"] => Command::Worker { check: false },
            ["worker", "--check"] => Command::Worker { check: true },
            ["job", name] => {
                job::check_name(name).map_err(Failure::Usage)?;
                Command::Job((*name).to_owned())
            }
            ["backup"] => Command::Backup,
            ["restore"] => Command::Restore,
            ["store"] => Command::Store,
            ["help" | "--help" | "-h"] => Command::Help,
            _ => {
                return Err(Failure::Usage(format!(
                    "unexpected arguments {args:?}: {USAGE}"
                )));
            }
        };
        Ok(command)
    }

    fn run(self, env: &Env) -> Result<(), Failure> {
        let store = || Store::open(env.data_dir());
        match self {
            Command::Serve => serve::run(env),
            Command::Migrate => migrate::run(env),
            Command::Worker { check: false } => worker::run(env),
            Command::Worker { check: true } => worker::check(env),
            Command::Job(name) => {
                let line = job::run(&store()?, &name, &env.release(), store::unix_time())?;
                println!("{line}");
                Ok(())
            }
            Command::Backup => {
                let fail = env.flag("HELLO_BACKUP_FAIL")?;
                let file = backup::backup_file(env)?;
                println!("{}", backup::backup(&store()?, &file, fail)?);
                Ok(())
            }
            Command::Restore => {
                let file = backup::backup_file(env)?;
                println!("{}", backup::restore(&store()?, &file)?);
                Ok(())
            }
            Command::Store => {
                println!("{}", store()?.summary()?);
                Ok(())
            }
            Command::Help => {
                println!("{USAGE} (README.md: the environment each reads, exit codes)");
                Ok(())
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect()
    {
        Ok(args) => args,
        Err(arg) => {
            return failed(
                "hello",
                Failure::Usage(format!("argument {arg:?} is not UTF-8")),
            );
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match Command::parse(&args).and_then(|command| command.run(&Env::process())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failed(
            &format!("hello {}", args.first().unwrap_or(&"serve")),
            failure,
        ),
    }
}

/// `failure` on stderr as one line, after `who` ("hello migrate"); its exit code.
fn failed(who: &str, failure: Failure) -> ExitCode {
    eprintln!("{who}: {failure}");
    ExitCode::from(failure.exit_code())
}

/// The runtime for the subcommands that wait: the server, the worker, `migrate`'s sleep.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)
}

/// Catches SIGTERM (`docker stop`, systemd) and SIGINT (Ctrl-C) from the call on; the future
/// resolves at the first, with its name and number. Call it inside the runtime, before saying
/// "started": as PID 1 of a container, hello gets no default action for either signal, and
/// unless it handles them, `docker stop` waits out its timeout and kills it. If the handlers
/// cannot be installed, the future never resolves.
fn stop_signal() -> impl Future<Output = (&'static str, u8)> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => ("SIGTERM", 15),
            _ = int.recv() => ("SIGINT", 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_a_command() {
        assert_eq!(Command::parse(&[]).unwrap(), Command::Serve);
        assert_eq!(Command::parse(&["serve"]).unwrap(), Command::Serve);
        assert_eq!(
            Command::parse(&["worker", "--check"]).unwrap(),
            Command::Worker { check: true }
        );
        assert_eq!(
            Command::parse(&["job", "nightly"]).unwrap(),
            Command::Job("nightly".into())
        );
        for bad in [
            &["job"][..],
            &["job", "a b"],
            &["migrate", "now"],
            &["worker", "--chek"],
            &["nope"],
        ] {
            let e = Command::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let e = Command::parse(&["nope"]).unwrap_err().to_string();
        assert!(
            e.starts_with("unexpected arguments [\"nope\"]: usage: hello [serve |"),
            "{e}"
        );
    }
}
