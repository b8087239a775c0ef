//! `shipit exec <env> [--host H] -- CMD...`: a one-off command in a fresh container of the live
//! release's image, with the app's environment and secrets.
//!
//! On a terminal it is interactive: the system `ssh` runs it through shipit's own master
//! connection with a terminal (`-t`), so keys, Ctrl-C and window size pass through as in any
//! SSH session. Elsewhere its output streams and its exit code is shipit's. The container is
//! removed afterwards whatever happened (`--rm`, then `docker rm -f` by its name), and each run
//! is audited in the host's `audit.jsonl`: who, from where, when, which release, the command's
//! words and its exit code (never a value of the environment).

use std::io::IsTerminal;

use serde::Serialize;

use crate::config::{Config, HostSpec};
use crate::error::Error;
use crate::remote::scripts;
use crate::ssh::Host;
use crate::ui;

/// One line of a host's audit log.
#[derive(Debug, Serialize)]
struct AuditEntry<'a> {
    time: u64,
    event: &'a str,
    user: &'a str,
    machine: &'a str,
    release: &'a str,
    command: &'a [String],
    tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<i32>,
}

/// Which host to run on: the one named, or the first.
fn pick_host(config: &Config, wanted: Option<&str>) -> Result<HostSpec, Error> {
    let Some(wanted) = wanted else {
        return config.hosts.first().cloned().ok_or(Error::Internal {
            context: "shipit exec".into(),
            source: "the environment has no host".into(),
        });
    };
    config
        .hosts
        .iter()
        .find(|h| {
            h.to_string() == wanted
                || h.host == wanted
                || crate::config::parse_host(wanted).is_ok_and(|p| p == **h)
        })
        .cloned()
        .ok_or_else(|| Error::UnknownHost {
            host: wanted.to_owned(),
            hosts: config.hosts.iter().map(ToString::to_string).collect(),
        })
}

/// Run `command` on a host of `config`'s environment; its exit code.
pub async fn exec(config: &Config, host: Option<&str>, command: &[String]) -> Result<i32, Error> {
    let spec = pick_host(config, host)?;
    let host = Host::connect(&spec, &config.ssh).await?;
    let result = run(config, &host, command).await;
    host.close().await;
    result
}

async fn run(config: &Config, host: &Host, command: &[String]) -> Result<i32, Error> {
    let site = config.site();
    let state = crate::fleet::read_state(config, host).await?;
    let (Some(live), Some(release)) = (state.live(), state.live_release().cloned()) else {
        return Err(Error::NothingLive {
            host: host.spec.to_string(),
            environment: config.environment.clone(),
        });
    };
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // Unique on the host: several people may exec at once (exec takes no lock).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("{}_exec-{}-{nanos}", site.key(), std::process::id());
    let oneoff = crate::oneoff::Oneoff {
        config,
        role: "exec",
        name: name.clone(),
        image: &release.image,
        command,
        env: crate::oneoff::EnvFrom::File(site.app_env(live.colour)),
        extra: Vec::new(),
        tty,
        interactive: !tty,
    };
    let docker = oneoff.docker_args();
    let remote = scripts::Oneoff {
        label: "exec",
        name: &name,
        pull: None,
        docker: &docker,
        env: None,
    }
    .command();
    let me = crate::lock::me();
    let audit = |event: &str, exit: Option<i32>| {
        let entry = AuditEntry {
            time: crate::lock::now(),
            event,
            user: &me.user,
            machine: &me.machine,
            release: &release.release,
            command,
            tty,
            exit,
        };
        serde_json::to_string(&entry).unwrap_or_default()
    };
    // Written before the command runs: a run cut short is on record too.
    host.check(
        &scripts::Record {
            history: &site.audit_log(),
            line: &audit("exec", None),
            files: &[],
        }
        .command(),
    )
    .await?;
    ui::status(
        "Running",
        &format!(
            "`{}` on `{}` in {} ({})",
            command.join(" "),
            host.spec,
            release.release,
            if tty {
                "interactive"
            } else {
                "output streamed"
            }
        ),
    );
    // Ctrl-C reaches the remote command (through ssh and the terminal); shipit waits for it to
    // end, then cleans up.
    let interrupted = tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let status = host
        .interactive(&remote, tty)
        .status()
        .await
        .map_err(|e| Error::Transport {
            host: host.spec.to_string(),
            command: remote.to_string(),
            message: format!("running ssh: {e}"),
        });
    interrupted.abort();
    // The container goes whatever happened (a dropped connection leaves it running).
    let names = [name];
    let removed = host
        .check(&scripts::RemoveContainers { names: &names }.command())
        .await;
    let status = status?;
    let code = status.code().unwrap_or(130);
    if let Err(e) = host
        .check(
            &scripts::Record {
                history: &site.audit_log(),
                line: &audit("exec-exit", Some(code)),
                files: &[],
            }
            .command(),
        )
        .await
    {
        ui::warn(&format!(
            "could not record the exit code in the audit log: {e}"
        ));
    }
    removed?;
    Ok(code)
}
