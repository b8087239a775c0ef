//! Day-to-day operations on a running environment: `shipit logs` and `shipit maintenance`.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::remote::scripts;
use crate::ssh::Host;
use crate::ui;

/// The default maintenance page; a `templates/maintenance.html` in the app overrides it.
pub const MAINTENANCE_PAGE: &str = include_str!("../templates/maintenance.html");

/// One log line as `shipit logs --json` prints it: a JSON object per line (NDJSON).
#[derive(serde::Serialize)]
struct LogLine<'a> {
    host: &'a str,
    unit: Option<&'a str>,
    line: &'a str,
}

/// How `shipit logs` prints: `host | line`, or a JSON object per line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn log_line(format: LogFormat, width: usize, host: &str, unit: Option<&str>, line: &str) -> String {
    match format {
        LogFormat::Text => format!("{host:<width$} | {line}\n"),
        LogFormat::Json => {
            let record = LogLine { host, unit, line };
            // A struct of strings always serializes.
            serde_json::to_string(&record).unwrap_or_default() + "\n"
        }
    }
}

/// Print the live colour's logs of every host, each line prefixed by its host; with `follow`,
/// keep printing until interrupted.
pub async fn logs(
    config: &Config,
    lines: u32,
    follow: bool,
    format: LogFormat,
    process: Option<&str>,
) -> Result<(), Error> {
    // `--process`: a process beside the web one, on its hosts.
    let process = match process {
        None => None,
        Some(name) => Some(
            config
                .processes
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| Error::UnknownProcess {
                    name: name.to_owned(),
                    known: config.processes.iter().map(|p| p.name.clone()).collect(),
                })?,
        ),
    };
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let result = async {
        let states = crate::fleet::observe(&fleet, config).await?;
        let width = fleet
            .hosts
            .iter()
            .map(|h| h.spec.to_string().len())
            .max()
            .unwrap_or(0);
        let streams = fleet.hosts.iter().zip(&states).map(|(host, (_, state))| {
            let host: Arc<Host> = Arc::clone(host);
            let live = state.live().map(|l| l.colour);
            async move {
                let name = host.spec.to_string();
                let Some(colour) = live else {
                    ui::out(&log_line(
                        format,
                        width,
                        &name,
                        None,
                        "(no live colour: nothing deployed yet)",
                    ));
                    return Ok(());
                };
                let site = config.site();
                if process.is_some_and(|p| !p.hosts.contains(&host.spec)) {
                    return Ok(());
                }
                let unit = match process {
                    Some(p) => site.process_instance(&p.name, colour),
                    None => site.unit(colour),
                };
                // The colour may still run under the earlier layout's unit (a moved host).
                let legacy = site.legacy().unit(colour);
                let cmd = scripts::Logs {
                    unit: &unit,
                    lines,
                    legacy_unit: (process.is_none() && !state.colour(colour).running_here())
                        .then_some(legacy.as_str()),
                    follow,
                }
                .command();
                host.stream_lines(&cmd, |line| {
                    ui::out(&log_line(format, width, &name, Some(&unit), line))
                })
                .await
            }
        });
        let results = futures::future::join_all(streams).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, Error>>()
            .map(|_| ())
    }
    .await;
    fleet.close().await;
    result
}

/// Serve the maintenance page from every host's nginx (`on`), or the app again (`off`).
/// Switching is a file that nginx tests per request: no reload, no dropped connection.
pub async fn maintenance(
    config: &Config,
    on: bool,
    lock_wait: Option<std::time::Duration>,
) -> Result<(), Error> {
    let page = match std::fs::read_to_string(config.app_dir.join("templates/maintenance.html")) {
        Ok(page) => page,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => MAINTENANCE_PAGE.to_owned(),
        Err(source) => {
            return Err(Error::Read {
                path: config.app_dir.join("templates/maintenance.html"),
                source,
            });
        }
    };
    let dir = config.site().config_dir();
    let flag = format!("{dir}/maintenance.on");
    let fleet = Fleet::connect(&config.hosts, &config.ssh).await?;
    let command = if on {
        "maintenance on"
    } else {
        "maintenance off"
    };
    let result = crate::lock::with_lock(&fleet, config, command, "-", lock_wait, None, |_, _| {
        switch_maintenance(&fleet, on, &dir, &flag, &page)
    })
    .await;
    fleet.close().await;
    result?;
    ui::status(
        if on { "Maintenance" } else { "Serving" },
        &format!(
            "{} on {} host{}",
            if on { "page served" } else { "the app again" },
            config.hosts.len(),
            ui::plural(config.hosts.len())
        ),
    );
    Ok(())
}

async fn switch_maintenance(
    fleet: &Fleet,
    on: bool,
    dir: &str,
    flag: &str,
    page: &str,
) -> Result<(), Error> {
    let results = fleet
        .each(|host| {
            let page_file = format!("{dir}/maintenance.html");
            let cmd = if on {
                scripts::Maintenance::On {
                    page_file: &page_file,
                    flag_file: flag,
                    page,
                }
                .command()
            } else {
                scripts::Maintenance::Off { flag_file: flag }.command()
            };
            async move { host.check(&cmd).await }
        })
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, Error>>()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_as_text_and_as_json() {
        assert_eq!(
            log_line(LogFormat::Text, 8, "web1", Some("app@blue"), "GET / 200"),
            "web1     | GET / 200\n"
        );
        let json = log_line(
            LogFormat::Json,
            8,
            "web1",
            Some("app@blue"),
            "say \"hi\"\t\\",
        );
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(v["host"], "web1");
        assert_eq!(v["unit"], "app@blue");
        assert_eq!(v["line"], "say \"hi\"\t\\");
        assert!(json.ends_with('\n') && json.matches('\n').count() == 1);
        let none = log_line(LogFormat::Json, 0, "web1", None, "x");
        assert!(none.contains("\"unit\":null"), "{none}");
    }
}
