//! Judging a canary step from nginx's own per-upstream log. Pure: what each host's log said
//! (`canary_read.sh`'s answer, parsed) in, a verdict with its figures out; tested over a table.
//!
//! The new colour is judged against the previous one over the same window, fleet-wide: its
//! share of 5xx answers (absolute, and over the previous colour's), and its p95 latency
//! against the previous colour's. A step with too few of the new colour's requests has no
//! verdict yet: the caller holds it longer, then gives up (never a pass without figures).

use crate::config::Canary;

/// One colour's answers over a step's window, on one host or summed over the fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// The 95th percentile of the upstream's response time, in milliseconds.
    pub p95_ms: u64,
}

impl Figures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// `1.2% (3 of 250), p95 12 ms`.
    pub fn describe(&self) -> String {
        format!(
            "{:.1}% errors ({} of {}), p95 {} ms",
            self.error_rate() * 100.0,
            self.errors,
            self.requests,
            self.p95_ms
        )
    }

    /// Requests and errors summed; the slowest host's p95.
    fn add(self, other: Figures) -> Figures {
        Figures {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
            p95_ms: self.p95_ms.max(other.p95_ms),
        }
    }
}

/// A host's answer: its log's size, and the two colours' figures since the step's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub size: u64,
    pub new: Figures,
    pub old: Figures,
}

/// Parse `canary_read.sh`'s answer for the copies on `new_port` and `old_port`.
pub fn parse(text: &str, new_port: u16, old_port: u16) -> Result<Sample, String> {
    let mut sample = Sample::default();
    let mut sized = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("unexpected line `{line}`"))
        };
        match words.first() {
            Some(&"size") => {
                sample.size = number(1)?;
                sized = true;
            }
            Some(&"port") => {
                let figures = Figures {
                    requests: number(2)?,
                    errors: number(3)?,
                    p95_ms: number(4)?,
                };
                match words
                    .get(1)
                    .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok())
                {
                    Some(p) if p == new_port => sample.new = figures,
                    Some(p) if p == old_port => sample.old = figures,
                    _ => return Err(format!("unexpected line `{line}`")),
                }
            }
            None => {}
            Some(_) => return Err(format!("unexpected line `{line}`")),
        }
    }
    if sized {
        Ok(sample)
    } else {
        Err("no `size` line".to_owned())
    }
}

/// What a step came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// A threshold was crossed: why, with the figures.
    Breach(String),
    /// Fewer of the new colour's requests than `min_requests`.
    TooFew,
}

/// The fleet's figures for a step: the new colour's and the previous one's, summed.
pub fn total(samples: &[Sample]) -> (Figures, Figures) {
    samples
        .iter()
        .fold((Figures::default(), Figures::default()), |(new, old), s| {
            (new.add(s.new), old.add(s.old))
        })
}

/// A latency difference under this never fails a step: at a few milliseconds, a ratio
/// measures noise.
const P95_FLOOR_MS: u64 = 50;

/// Judge a step from the fleet's figures.
pub fn judge(canary: &Canary, new: Figures, old: Figures) -> Verdict {
    if new.requests < canary.min_requests as u64 {
        return Verdict::TooFew;
    }
    let (rate, before) = (new.error_rate(), old.error_rate());
    let previous = format!("the previous release: {}", old.describe());
    if rate > canary.max_error_rate {
        return Verdict::Breach(format!(
            "error rate {:.1}% ({} of {} requests) above `canary.max_error_rate` {}% ({previous})",
            rate * 100.0,
            new.errors,
            new.requests,
            canary.max_error_rate * 100.0
        ));
    }
    if old.requests > 0 && rate > before + canary.max_error_increase {
        return Verdict::Breach(format!(
            "error rate {:.1}% ({} of {} requests), more than `canary.max_error_increase` {} points over {previous}",
            rate * 100.0,
            new.errors,
            new.requests,
            canary.max_error_increase * 100.0
        ));
    }
    let limit = (old.p95_ms as f64 * canary.max_p95_ratio) as u64;
    if old.requests >= canary.min_requests as u64
        && new.p95_ms > limit
        && new.p95_ms >= old.p95_ms + P95_FLOOR_MS
    {
        return Verdict::Breach(format!(
            "p95 latency {} ms over {} requests, above `canary.max_p95_ratio` {} times the previous release's {} ms",
            new.p95_ms, new.requests, canary.max_p95_ratio, old.p95_ms
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn canary() -> Canary {
        Canary {
            steps: vec![10, 50],
            hold: Duration::from_secs(2),
            max_error_rate: 0.01,
            max_error_increase: 0.005,
            max_p95_ratio: 2.0,
            min_requests: 50,
        }
    }

    fn f(requests: u64, errors: u64, p95_ms: u64) -> Figures {
        Figures {
            requests,
            errors,
            p95_ms,
        }
    }

    #[test]
    fn a_hosts_answer_is_parsed_by_port() {
        let text = "size 4096\nport 127.0.0.1:3002 120 6 14\nport 127.0.0.1:3001 980 1 9\n";
        assert_eq!(
            parse(text, 3002, 3001).unwrap(),
            Sample {
                size: 4096,
                new: f(120, 6, 14),
                old: f(980, 1, 9)
            }
        );
        assert_eq!(parse("size 0\n", 3002, 3001).unwrap().new, f(0, 0, 0));
        assert!(parse("port 127.0.0.1:3002 1 0 1\n", 3002, 3001).is_err());
        assert!(parse("size 1\nport 127.0.0.1:9 1 0 1\n", 3002, 3001).is_err());
        assert!(parse("size x\n", 3002, 3001).is_err());
    }

    #[test]
    fn verdicts() {
        let c = canary();
        let cases = [
            ("healthy", f(300, 0, 12), f(2700, 1, 10), "pass"),
            ("too few", f(49, 0, 1), f(2700, 0, 1), "too few"),
            (
                "5% errors",
                f(300, 15, 12),
                f(2700, 0, 10),
                "error rate 5.0% (15 of 300",
            ),
            (
                "under the absolute limit, well over the previous one",
                f(1000, 9, 10),
                f(1000, 0, 10),
                "points over the previous release",
            ),
            (
                "both equally sick: not the release's doing",
                f(1000, 8, 10),
                f(1000, 7, 10),
                "pass",
            ),
            ("slow", f(300, 0, 400), f(2700, 0, 20), "p95 latency 400 ms"),
            (
                "a few ms, doubled: noise",
                f(300, 0, 9),
                f(2700, 0, 3),
                "pass",
            ),
        ];
        for (name, new, old, want) in cases {
            let got = match judge(&c, new, old) {
                Verdict::Pass => "pass".to_owned(),
                Verdict::TooFew => "too few".to_owned(),
                Verdict::Breach(why) => why,
            };
            assert!(got.contains(want), "{name}: {got}");
        }
    }

    #[test]
    fn the_fleet_sums_requests_and_keeps_the_slowest_p95() {
        let samples = [
            Sample {
                size: 1,
                new: f(10, 1, 5),
                old: f(90, 0, 4),
            },
            Sample {
                size: 2,
                new: f(20, 0, 9),
                old: f(80, 1, 3),
            },
        ];
        assert_eq!(total(&samples), (f(30, 1, 9), f(170, 1, 4)));
    }
}
