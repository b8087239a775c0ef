//! The smoke check after the switch: a bounded burst of requests through every host's nginx,
//! judged on its error rate and its 95th percentile latency (`[smoke]`).
//!
//! What counts as failed is what a healthy app never answers: a 5xx, a timeout, a refused or
//! reset connection. A 4xx is the app's own answer (an API whose `/` is 404 is healthy): it is
//! reported, not counted. Every verdict says what was seen: the answers by status, a sample of
//! a failed one, and the time taken.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::info;

use crate::config::Config;
use crate::probe::{self, Answer, Tunnel};
use crate::ssh::Host;
use crate::ui;

/// One request of the burst.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `HTTP 200`, `HTTP 502`, or the kind of error (`timeout`, `connection refused`...).
    pub answer: String,
    pub failed: bool,
    pub latency: Duration,
    /// The first line of a failed answer's body, or the error.
    pub sample: Option<String>,
}

impl Seen {
    fn from_answer(answer: &Answer, latency: Duration) -> Seen {
        let (label, failed) = match (answer.status, &answer.error) {
            (Some(s), _) => (format!("HTTP {s}"), s >= 500),
            (None, Some(e)) => (error_kind(e), true),
            (None, None) => ("no answer".to_owned(), true),
        };
        let sample = failed.then(|| match &answer.error {
            Some(e) => e.clone(),
            None => answer
                .body
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(empty body)")
                .chars()
                .take(120)
                .collect(),
        });
        Seen {
            answer: label,
            failed,
            latency,
            sample,
        }
    }
}

/// A short name for a request error: what a reader acts on.
fn error_kind(e: &str) -> String {
    let lower = e.to_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        "timeout".into()
    } else if lower.contains("refused") {
        "connection refused".into()
    } else if lower.contains("reset") {
        "connection reset".into()
    } else {
        "request error".into()
    }
}

/// What a burst saw.
#[derive(Debug, PartialEq)]
pub struct Stats {
    pub total: usize,
    pub failed: usize,
    pub p95: Duration,
    /// How many answers of each kind, such as `HTTP 200` → 58.
    pub answers: BTreeMap<String, usize>,
    /// A failed answer's first line, with its kind.
    pub sample: Option<(String, String)>,
}

impl Stats {
    /// `58 × HTTP 200, 2 × HTTP 502`.
    pub fn answers(&self) -> String {
        let mut by_count: Vec<(&String, &usize)> = self.answers.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        by_count
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The statistics of a burst.
pub fn stats(results: &[Seen]) -> Stats {
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.latency).collect();
    latencies.sort();
    let total = latencies.len();
    let p95 = latencies
        .get((total.max(1) * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let mut answers = BTreeMap::new();
    for r in results {
        *answers.entry(r.answer.clone()).or_insert(0) += 1;
    }
    Stats {
        total,
        failed: results.iter().filter(|r| r.failed).count(),
        p95,
        answers,
        sample: results
            .iter()
            .find_map(|r| r.sample.clone().map(|s| (r.answer.clone(), s))),
    }
}

/// The verdict on a burst, against `[smoke]`'s thresholds: `Err` says what was seen.
pub fn judge(
    stats: &Stats,
    max_error_rate: f64,
    max_p95: Duration,
    took: Duration,
) -> Result<(), String> {
    let seen = format!(
        "answers: {}; p95 {} ms; {:.2}s",
        stats.answers(),
        stats.p95.as_millis(),
        took.as_secs_f64()
    );
    let sample = stats
        .sample
        .as_ref()
        .map(|(kind, line)| format!("; a failed answer ({kind}): {line}"))
        .unwrap_or_default();
    let rate = stats.failed as f64 / stats.total.max(1) as f64;
    if rate > max_error_rate {
        return Err(format!(
            "{} of {} requests failed ({:.1} %, more than {:.1} %; 5xx, timeouts and refused connections count, 4xx do not): {seen}{sample}",
            stats.failed,
            stats.total,
            rate * 100.0,
            max_error_rate * 100.0
        ));
    }
    if stats.p95 > max_p95 {
        return Err(format!(
            "p95 latency {} ms is over {} ms: {seen}{sample}",
            stats.p95.as_millis(),
            max_p95.as_millis()
        ));
    }
    Ok(())
}

/// Run the burst on `hosts`; `Err` says which threshold was crossed and what was seen.
/// Each host comes with its site's check token (the burst is shipit's own: never limited).
pub async fn burst(config: &Config, hosts: &[(Arc<Host>, Option<String>)]) -> Result<(), String> {
    let smoke = &config.smoke;
    if smoke.requests == 0 {
        return Ok(());
    }
    let t = Instant::now();
    let client = probe::client(false).map_err(|e| e.to_string())?;
    // Hosts at most `max_parallel` at once (4 requests each), each through a tunnel opened
    // for it and closed (with its pooled connections) as soon as its requests are done: the
    // burst's sockets and forwards are bounded like every other fan-out, at 3 hosts or 500.
    let limit = config.ssh.max_parallel.max(1);
    let progress = ui::Step::new(
        "Testing",
        hosts.iter().map(|(h, _)| &h.spec),
        &format!("smoke burst of {} requests through nginx", smoke.requests),
    );
    let results: Vec<Result<Vec<Seen>, String>> = futures::stream::iter(hosts)
        .map(|(host, token)| {
            let line = progress.line(&host.spec);
            async move {
                let tunnel = match Tunnel::open(host, 80).await {
                    Ok(t) => t.with_token(token.as_deref()),
                    Err(e) => {
                        line.finish(false, "no tunnel to nginx".to_owned());
                        return Err(e.to_string());
                    }
                };
                let tunnel = &tunnel;
                let results = futures::stream::iter(0..smoke.requests)
                    .map(|_| async move {
                        let started = Instant::now();
                        let answer =
                            probe::get(&client, tunnel, &smoke.path, Some(&config.domain)).await;
                        Seen::from_answer(&answer, started.elapsed())
                    })
                    .buffer_unordered(4)
                    .collect::<Vec<_>>()
                    .await;
                let host_stats = stats(&results);
                line.finish(
                    host_stats.failed == 0,
                    format!(
                        "{} of {} requests failed ({})",
                        host_stats.failed,
                        host_stats.total,
                        host_stats.answers()
                    ),
                );
                Ok(results)
            }
        })
        .buffered(limit)
        .collect()
        .await;
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    drop(progress);
    let all: Vec<Seen> = results.into_iter().flatten().collect();
    let stats = stats(&all);
    info!(
        failed = stats.failed,
        total = stats.total,
        p95_ms = stats.p95.as_millis() as u64,
        "smoke check"
    );
    judge(&stats, smoke.max_error_rate, smoke.max_p95, t.elapsed())?;
    ui::status(
        "Smoke",
        &format!(
            "{} requests to {} through nginx in {:.2}s: {} failed, p95 {} ms ({})",
            stats.total,
            smoke.path,
            t.elapsed().as_secs_f64(),
            stats.failed,
            stats.p95.as_millis(),
            stats.answers()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: Option<u16>, error: Option<&str>, body: &str, ms: u64) -> Seen {
        Seen::from_answer(
            &Answer {
                status,
                body: body.into(),
                upstream: None,
                error: error.map(str::to_owned),
            },
            Duration::from_millis(ms),
        )
    }

    #[test]
    fn only_5xx_timeouts_and_refusals_fail_and_the_verdict_says_what_was_seen() {
        let mut results: Vec<Seen> = (1..=18)
            .map(|i| seen(Some(404), None, "{\"error\":\"not found\"}", i * 10))
            .collect();
        results.push(seen(Some(502), None, "\n<html>Bad Gateway</html>\n", 190));
        results.push(seen(None, Some("operation timed out"), "", 200));
        let s = stats(&results);
        assert_eq!((s.total, s.failed), (20, 2));
        assert_eq!(s.p95, Duration::from_millis(190));
        assert_eq!(s.answers(), "18 × HTTP 404, 1 × HTTP 502, 1 × timeout");
        let err = judge(
            &s,
            0.01,
            Duration::from_millis(400),
            Duration::from_millis(1500),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "2 of 20 requests failed (10.0 %, more than 1.0 %; 5xx, timeouts and refused connections count, 4xx do not): answers: 18 × HTTP 404, 1 × HTTP 502, 1 × timeout; p95 190 ms; 1.50s; a failed answer (HTTP 502): <html>Bad Gateway</html>"
        );
        // An API whose `/` is 404 passes.
        let api: Vec<Seen> = (0..20).map(|_| seen(Some(404), None, "nope", 5)).collect();
        assert!(
            judge(
                &stats(&api),
                0.01,
                Duration::from_millis(400),
                Duration::ZERO
            )
            .is_ok()
        );
        assert_eq!(stats(&[]).total, 0);
    }
}
