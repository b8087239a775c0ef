//! `shipit exec <env> [--host H] -- CMD...`: a one-off command in a fresh container of the live
//! release's image, with the app's environment and secrets.
//!
//! On a terminal it is interactive: the system `ssh` runs it through shipit's own master
//! connection with a terminal (`-t`), so keys, Ctrl-C and window size pass through as in any
//! SSH session. Elsewhere its output streams and its exit code is shipit's. The container is
//! removed afterwards whatever happened (`--rm`, then `docker rm -f` by its name), and each run
//! is audited in the host's `audit.jsonl` (root's alone, written from stdin, rotated with the
//! logs): who, from where, when (the host's clock), which release, the command's words with
//! credentials masked ([`masked`]), and its exit code; never a value of the environment.

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
    /// 0: the host writes its own clock here.
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

/// The words of a command as the audit keeps them, credentials masked (`***`): a URL's password
/// (`postgres://u:***@db/app`), the value of a flag that names one (`--password=***`,
/// `--token ***`), `NAME=***` for a configured secret, and any configured secret's value
/// wherever it appears.
pub fn masked(
    words: &[String],
    secret_names: &[String],
    secrets: &[(String, String)],
) -> Vec<String> {
    const SENSITIVE: [&str; 6] = ["pass", "secret", "token", "key", "auth", "credential"];
    let sensitive_flag = |flag: &str| {
        let f = flag.trim_start_matches('-').to_ascii_lowercase();
        flag.starts_with('-') && SENSITIVE.iter().any(|s| f.contains(s))
    };
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut mask_next = false;
    for word in words {
        if std::mem::take(&mut mask_next) {
            out.push("***".into());
            continue;
        }
        let mut w = word.clone();
        // The values of configured secrets, wherever they appear (long enough to be one).
        for (_, value) in secrets.iter().filter(|(_, v)| v.len() >= 4) {
            w = w.replace(value.as_str(), "***");
        }
        if let Some((flag, _)) = w.split_once('=')
            && sensitive_flag(flag)
        {
            w = format!("{flag}=***");
        } else if sensitive_flag(&w) && !w.contains('=') {
            mask_next = true;
        } else if let Some((name, _)) = w.split_once('=')
            && secret_names.iter().any(|n| n == name)
        {
            w = format!("{name}=***");
        }
        out.push(mask_url_password(&w));
    }
    out
}

/// `scheme://user:password@host...` with the password masked, wherever in the word.
fn mask_url_password(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_owned();
    };
    let rest = &word[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return word.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return word.to_owned();
    };
    format!(
        "{}{}:***{}",
        &word[..scheme_end + 3],
        &authority[..colon],
        &rest[at..]
    )
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
    // The release users get: the live colour's, or the backup's while the live copy is down.
    let (Some((live, _)), Some(release)) = (state.serving(), state.live_release().cloned()) else {
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
    // What this host runs the release by (its engine may name it otherwise than the release).
    let image = state.image_here(&release);
    let oneoff = crate::oneoff::Oneoff {
        config,
        host: &host.spec,
        role: "exec",
        name: name.clone(),
        image: &image,
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
    let secrets = crate::secret::Secrets::load(&config.app_dir).ok();
    let secret_values: Vec<(String, String)> = config
        .env
        .secret
        .iter()
        .filter_map(|name| {
            let (value, _) = secrets.as_ref()?.get(name)?;
            Some((name.clone(), value.expose().to_owned()))
        })
        .collect();
    let words = masked(command, &config.env.secret, &secret_values);
    let audit = |event: &str, exit: Option<i32>| {
        let entry = AuditEntry {
            time: 0,
            event,
            user: &me.user,
            machine: &me.machine,
            release: &release.release,
            command: &words,
            tty,
            exit,
        };
        serde_json::to_string(&entry).unwrap_or_default()
    };
    // Written before the command runs: a run cut short is on record too.
    host.check(
        &scripts::Audit {
            file: &site.audit_log(),
            line: &audit("exec", None),
        }
        .command(),
    )
    .await?;
    ui::status(
        "Running",
        &format!(
            "`{}` on `{}` in {} ({})",
            words.join(" "),
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
    let (mut ssh, marker) = host.interactive(&remote, tty);
    let status = match &marker {
        // Without a terminal, what the login shell prints before the command is left out.
        Some(marker) => crate::ssh::Host::stream_out(ssh, marker).await,
        None => ssh.status().await,
    }
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
            &scripts::Audit {
                file: &site.audit_log(),
                line: &audit("exec-exit", Some(code)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn credentials_in_the_words_are_masked_and_nothing_else() {
        let names = words(&["DATABASE_PASSWORD"]);
        let secrets = vec![("DATABASE_PASSWORD".to_owned(), "s3cret-Pw".to_owned())];
        let got = masked(
            &words(&[
                "psql",
                "postgres://app:hunter2@db.internal:5432/app?sslmode=require",
                "--password=hunter2",
                "--api-token",
                "abc123",
                "DATABASE_PASSWORD=anything",
                "-c",
                "select 's3cret-Pw'",
                "--verbose",
                "http://example.com/path",
                "plain",
            ]),
            &names,
            &secrets,
        );
        assert_eq!(
            got,
            words(&[
                "psql",
                "postgres://app:***@db.internal:5432/app?sslmode=require",
                "--password=***",
                "--api-token",
                "***",
                "DATABASE_PASSWORD=***",
                "-c",
                "select '***'",
                "--verbose",
                "http://example.com/path",
                "plain",
            ])
        );
    }
}
