//! The smoke check after the switch: a bounded burst of requests through every host's nginx,
//! judged on its error rate and its 95th percentile latency (`[smoke]`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::info;

use crate::config::Config;
use crate::probe::{self, Tunnel};
use crate::ssh::Host;
use crate::ui;

/// What a burst saw.
#[derive(Debug, PartialEq)]
pub struct Stats {
    pub total: usize,
    pub failed: usize,
    pub p95: Duration,
}

/// The statistics of a burst's results: (answered 2xx or 3xx, latency) per request.
pub fn stats(results: &[(bool, Duration)]) -> Stats {
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let total = latencies.len();
    let p95 = latencies
        .get((total.max(1) * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    Stats {
        total,
        failed: results.iter().filter(|(ok, _)| !ok).count(),
        p95,
    }
}

/// Run the burst on `hosts`; `Err` says which threshold was crossed.
pub async fn burst(config: &Config, hosts: &[Arc<Host>]) -> Result<(), String> {
    let smoke = &config.smoke;
    if smoke.requests == 0 {
        return Ok(());
    }
    let t = Instant::now();
    let client = probe::client(false).map_err(|e| e.to_string())?;
    let opened = futures::future::join_all(hosts.iter().map(|h| Tunnel::open(h, 80))).await;
    let tunnels = opened
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let progress = ui::Step::new(
        "Testing",
        hosts.iter().map(|h| &h.spec),
        &format!("smoke burst of {} requests through nginx", smoke.requests),
    );
    let results = futures::future::join_all(hosts.iter().zip(&tunnels).map(|(host, tunnel)| {
        let client = client.clone();
        let line = progress.line(&host.spec);
        async move {
            let results = futures::stream::iter(0..smoke.requests)
                .map(|_| {
                    let client = client.clone();
                    async move {
                        let started = Instant::now();
                        let answer =
                            probe::get(&client, tunnel, &smoke.path, Some(&config.domain)).await;
                        (
                            answer.status.is_some_and(|s| (200..400).contains(&s)),
                            started.elapsed(),
                        )
                    }
                })
                .buffer_unordered(4)
                .collect::<Vec<_>>()
                .await;
            let failed = results.iter().filter(|(ok, _)| !ok).count();
            line.finish(
                failed == 0,
                format!("{failed} of {} requests failed", results.len()),
            );
            results
        }
    }))
    .await;
    drop(progress);
    let all: Vec<(bool, Duration)> = results.into_iter().flatten().collect();
    let Stats { total, failed, p95 } = stats(&all);
    info!(
        failed,
        total,
        p95_ms = p95.as_millis() as u64,
        "smoke check"
    );
    let rate = failed as f64 / total.max(1) as f64;
    if rate > smoke.max_error_rate {
        return Err(format!(
            "{failed} of {total} requests failed ({:.1} %, more than {:.1} %)",
            rate * 100.0,
            smoke.max_error_rate * 100.0
        ));
    }
    if p95 > smoke.max_p95 {
        return Err(format!(
            "p95 latency {} ms is over {} ms",
            p95.as_millis(),
            smoke.max_p95.as_millis()
        ));
    }
    ui::status(
        "Smoke",
        &format!(
            "{total} requests through nginx in {:.2}s: {failed} failed, p95 {} ms",
            t.elapsed().as_secs_f64(),
            p95.as_millis()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_and_failures() {
        let ms = Duration::from_millis;
        let results: Vec<(bool, Duration)> = (1..=20).map(|i| (i != 7, ms(i * 10))).collect();
        assert_eq!(
            stats(&results),
            Stats {
                total: 20,
                failed: 1,
                p95: ms(190)
            }
        );
        assert_eq!(stats(&[]).total, 0);
    }
}
