//! What the user reads: status lines on stderr (like cargo's), results on stdout.
//!
//! Logs (tracing) are separate and go to stderr only with `-v`. Long steps show a live line
//! per host on a terminal, and plain lines elsewhere ([`Step`]).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// `    Verb message`, the verb right-aligned and green (on a terminal, unless `NO_COLOR`).
pub fn status(verb: &str, message: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let green = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Green.into()));
    above_progress(|err| {
        let _ = writeln!(err, "{green}{verb:>12}{green:#} {message}");
    });
}

/// A line of a command's output, prefixed by where it ran: `  web1 | migrated 3 -> 4`.
pub fn output(prefix: &str, line: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let dim = anstyle::Style::new().dimmed();
    above_progress(|err| {
        let _ = writeln!(err, "{dim}{prefix:>12} |{dim:#} {line}");
    });
}

/// `s` for every count but one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A command's report: printed as text, or with `--json` as structured JSON (fields, never
/// prose: the text is made from the same fields).
pub trait Render: serde::Serialize {
    /// The text output, each line ending in a newline.
    fn text(&self) -> String;
}

impl<T: Render> Render for Vec<T> {
    fn text(&self) -> String {
        self.iter().map(Render::text).collect()
    }
}

/// Print a report on stdout: text, or pretty JSON.
pub fn print(report: &impl Render, json: bool) {
    if json {
        out(&serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .unwrap_or_default());
    } else {
        out(&report.text());
    }
}

/// A result on stdout.
pub fn out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

/// A warning line on stderr (even with `-q`: it says something was done on the user's behalf).
pub fn warn(message: &str) {
    let yellow = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
    above_progress(|err| {
        let _ = writeln!(err, "{yellow}warning{yellow:#}: {message}");
    });
}

/// Hosts named one by one in a warning about several; past that, a count.
const HOSTS_NAMED: usize = 5;

/// One warning for `what` that failed on several hosts, each `(host, why)`: a line each up to
/// [`HOSTS_NAMED`] hosts; past that one line that names the first few, counts the rest and
/// gives the first reason (the whole list goes to the debug log). A stalled machine that lost
/// its 500 connections says so in one line, not 500.
pub fn warn_hosts(what: &str, failures: &[(String, String)]) {
    if failures.len() > HOSTS_NAMED {
        for (host, why) in failures {
            tracing::debug!(host = %host, why = %first_line(why), "{what}");
        }
    }
    for line in hosts_warning(what, failures) {
        warn(&line);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The lines of [`warn_hosts`].
fn hosts_warning(what: &str, failures: &[(String, String)]) -> Vec<String> {
    if failures.len() <= HOSTS_NAMED {
        return failures
            .iter()
            .map(|(host, why)| format!("{what} on `{host}`: {}", first_line(why)))
            .collect();
    }
    let named: Vec<String> = failures
        .iter()
        .take(HOSTS_NAMED)
        .map(|(h, _)| format!("`{h}`"))
        .collect();
    vec![format!(
        "{what} on {} hosts ({} and {} more); on `{}`: {}",
        failures.len(),
        named.join(", "),
        failures.len() - HOSTS_NAMED,
        failures[0].0,
        first_line(&failures[0].1)
    )]
}

/// Whether stderr gets colours: a terminal, and neither `NO_COLOR` nor `CLICOLOR=0` set
/// (anstream's reading of the conventions).
pub fn colour() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

// --- progress per host ---------------------------------------------------------------------

/// How often a plain (non-terminal) run says a host is still busy with a step.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// With `-v`, log lines go to stderr: live progress lines would tear them, so plain lines.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Whether progress is drawn live (spinners redrawn in place): only on a terminal that can
/// move the cursor, and neither with `-q` nor with `-v`.
fn live() -> bool {
    !QUIET.load(Ordering::Relaxed)
        && !VERBOSE.load(Ordering::Relaxed)
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The live lines, drawn on stderr; every other line on stderr goes above them.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Writes `f` on stderr above the live lines (if any are drawn).
fn above_progress(f: impl FnOnce(&mut dyn Write)) {
    // Colour codes are stripped where they do not belong (not a terminal, `NO_COLOR`).
    let write = || f(&mut anstream::AutoStream::auto(std::io::stderr().lock()));
    if LIVE_STEPS.load(Ordering::Relaxed) > 0 {
        multi().suspend(write);
    } else {
        write();
    }
}

/// Where log lines (tracing) go: stderr, above the live lines, one whole event at a time.
pub fn log_writer() -> LogLine {
    LogLine(Vec::new())
}

/// One log event, written on stderr when it is dropped (the formatter drops it after the event).
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let bytes = std::mem::take(&mut self.0);
            above_progress(|err| {
                let _ = err.write_all(&bytes);
            });
        }
    }
}

static LIVE_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One step (starting, health gate, switch, ...) on several hosts at once. On a terminal each
/// host gets a line with a spinner and what it is doing, cleared when the step ends (the step's
/// summary line follows). Elsewhere nothing is drawn, but a host still busy after
/// [`HEARTBEAT`] gets a plain line saying what it waits for, every [`HEARTBEAT`].
pub struct Step {
    lines: Vec<HostLine>,
    live: bool,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

/// A host's line in a [`Step`]; cheap to clone into the host's task.
#[derive(Clone)]
pub struct HostLine(Arc<LineInner>);

struct LineInner {
    verb: &'static str,
    host: String,
    started: Instant,
    bar: Option<ProgressBar>,
    state: Mutex<LineState>,
}

struct LineState {
    message: String,
    finished: bool,
    said: Instant,
}

impl Step {
    /// A step named by `verb` ("Starting") on `hosts`, each waiting with `message`.
    pub fn new<I, H>(verb: &'static str, hosts: I, message: &str) -> Step
    where
        I: IntoIterator<Item = H>,
        H: std::fmt::Display,
    {
        let live = live();
        let now = Instant::now();
        let lines: Vec<HostLine> = hosts
            .into_iter()
            .map(|host| {
                let host = host.to_string();
                let bar = live.then(|| {
                    let bar = multi().add(
                        ProgressBar::new_spinner()
                            .with_style(running_style())
                            .with_prefix(verb)
                            .with_message(format!("{host}: {message}")),
                    );
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                HostLine(Arc::new(LineInner {
                    verb,
                    host,
                    started: now,
                    bar,
                    state: Mutex::new(LineState {
                        message: message.to_owned(),
                        finished: false,
                        said: now,
                    }),
                }))
            })
            .collect();
        if live {
            LIVE_STEPS.fetch_add(1, Ordering::Relaxed);
        }
        let heartbeat = (!live && !QUIET.load(Ordering::Relaxed) && !lines.is_empty())
            .then(|| tokio::runtime::Handle::try_current().ok())
            .flatten()
            .map(|rt| {
                let lines = lines.clone();
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        for line in &lines {
                            if let Some(text) = line.heartbeat(Instant::now()) {
                                status(line.0.verb, &text);
                            }
                        }
                    }
                })
            });
        Step {
            lines,
            live,
            heartbeat,
        }
    }

    /// The line of `host` (a detached one, drawn nowhere, for a host not in the step).
    pub fn line(&self, host: &impl std::fmt::Display) -> HostLine {
        let host = host.to_string();
        self.lines
            .iter()
            .find(|l| l.0.host == host)
            .cloned()
            .unwrap_or_else(|| {
                HostLine(Arc::new(LineInner {
                    verb: "",
                    host,
                    started: Instant::now(),
                    bar: None,
                    state: Mutex::new(LineState {
                        message: String::new(),
                        finished: true,
                        said: Instant::now(),
                    }),
                }))
            })
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        for line in &self.lines {
            if let Some(bar) = &line.0.bar {
                bar.finish_and_clear();
                multi().remove(bar);
            }
        }
        if self.live {
            LIVE_STEPS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl HostLine {
    /// What the host is doing now.
    pub fn set(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(bar) = &self.0.bar {
            bar.set_message(format!("{}: {message}", self.0.host));
        }
        if let Ok(mut s) = self.0.state.lock() {
            s.message = message;
        }
    }

    /// The host is done with the step: `ok` or not, with a last word.
    pub fn finish(&self, ok: bool, message: impl Into<String>) {
        let message = message.into();
        if let Some(bar) = &self.0.bar {
            bar.set_style(finished_style(ok));
            bar.finish_with_message(format!(
                "{} {}: {message} ({:.2}s)",
                if ok { "✓" } else { "✗" },
                self.0.host,
                self.0.started.elapsed().as_secs_f64()
            ));
        }
        if let Ok(mut s) = self.0.state.lock() {
            s.finished = true;
            s.message = message;
        }
    }

    /// The host failed the step: the error's first line.
    pub fn failed(&self, error: &impl std::fmt::Display) {
        let text = error.to_string();
        self.finish(false, text.lines().next().unwrap_or_default().to_owned());
    }

    /// Finishes the line from a result.
    pub fn finish_with<T, E: std::fmt::Display>(&self, result: &Result<T, E>, ok: &str) {
        match result {
            Ok(_) => self.finish(true, ok),
            Err(e) => self.failed(e),
        }
    }

    /// The plain line due at `now`, if the host has been busy for another [`HEARTBEAT`].
    fn heartbeat(&self, now: Instant) -> Option<String> {
        let mut s = self.0.state.lock().ok()?;
        if s.finished || now.duration_since(s.said) < HEARTBEAT {
            return None;
        }
        s.said = now;
        Some(heartbeat_text(
            &self.0.host,
            &s.message,
            now.duration_since(self.0.started),
        ))
    }
}

/// `web1: waiting for /health (12s so far)`.
pub fn heartbeat_text(host: &str, message: &str, busy: Duration) -> String {
    format!("{host}: {message} ({}s so far)", busy.as_secs())
}

fn running_style() -> ProgressStyle {
    // The template is a constant that parses (a unit test checks it).
    ProgressStyle::with_template("{prefix:>12.cyan.bold} {spinner:.cyan} {wide_msg} {elapsed:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn finished_style(ok: bool) -> ProgressStyle {
    let template = if ok {
        "{prefix:>12.green.bold} {wide_msg}"
    } else {
        "{prefix:>12.red.bold} {wide_msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_on_many_hosts_is_one_line_that_counts_them() {
        let f = |n: usize| -> Vec<(String, String)> {
            (1..=n)
                .map(|i| {
                    (
                        format!("h{i}"),
                        format!("lost the SSH connection\n  help: {i}"),
                    )
                })
                .collect()
        };
        assert_eq!(
            hosts_warning("could not release the lock", &f(2)),
            [
                "could not release the lock on `h1`: lost the SSH connection",
                "could not release the lock on `h2`: lost the SSH connection"
            ]
        );
        assert_eq!(
            hosts_warning("could not release the lock", &f(494)),
            [
                "could not release the lock on 494 hosts (`h1`, `h2`, `h3`, `h4`, `h5` and 489 more); on `h1`: lost the SSH connection"
            ]
        );
        assert!(hosts_warning("x", &[]).is_empty());
    }

    #[test]
    fn styles_parse() {
        for t in [
            "{prefix:>12.cyan.bold} {spinner:.cyan} {wide_msg} {elapsed:.dim}",
            "{prefix:>12.green.bold} {wide_msg}",
            "{prefix:>12.red.bold} {wide_msg}",
        ] {
            ProgressStyle::with_template(t).unwrap();
        }
    }

    #[test]
    fn plain_lines_come_every_heartbeat_while_busy() {
        let t0 = Instant::now();
        let line = HostLine(Arc::new(LineInner {
            verb: "Checking",
            host: "web1".into(),
            started: t0,
            bar: None,
            state: Mutex::new(LineState {
                message: "waiting for /health".into(),
                finished: false,
                said: t0,
            }),
        }));
        assert_eq!(line.heartbeat(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            line.heartbeat(t0 + HEARTBEAT).as_deref(),
            Some("web1: waiting for /health (5s so far)")
        );
        // Not again until another heartbeat has passed.
        assert_eq!(
            line.heartbeat(t0 + HEARTBEAT + Duration::from_secs(1)),
            None
        );
        line.set("waiting for /health: HTTP 503 (attempt 40)");
        assert_eq!(
            line.heartbeat(t0 + HEARTBEAT * 2).as_deref(),
            Some("web1: waiting for /health: HTTP 503 (attempt 40) (10s so far)")
        );
        line.finish(true, "healthy");
        assert_eq!(line.heartbeat(t0 + HEARTBEAT * 4), None);
    }
}
