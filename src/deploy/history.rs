//! `shipit releases`: the hosts' histories merged into one, newest first.
//!
//! Entries of one run carry its id on every host and merge on it (older entries, without one,
//! merge on release, outcome, user and a time within 2 s). Order comes from the hosts' files,
//! not only from the time a line claims: two lines of the same second keep the order the hosts
//! wrote them in.

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::fleet::with_fleet;
use crate::state::{HistoryEntry, HostState, Outcome};

/// One event in `shipit releases`, merged across hosts.
#[derive(Debug, Serialize)]
pub struct ReleaseLine {
    pub time: u64,
    pub release: String,
    pub outcome: Outcome,
    pub user: String,
    pub machine: String,
    pub reason: Option<String>,
    pub hosts: Vec<String>,
    /// Hosts that do not have this entry.
    pub missing_on: Vec<String>,
}

impl ReleaseLine {
    fn same_event(&self, host: &str, e: &HistoryEntry, run: &str) -> bool {
        if self.hosts.iter().any(|h| h == host) {
            return false;
        }
        if !run.is_empty() || !e.run.is_empty() {
            return run == e.run;
        }
        self.time.abs_diff(e.time) <= 2
            && self.release == e.release
            && self.outcome == e.outcome
            && self.user == e.user
    }
}

impl crate::ui::Render for ReleaseLine {
    /// One line of `shipit releases`.
    fn text(&self) -> String {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.time),
        );
        let mut line = format!(
            "{when}  {:<28} {:<17} {}@{}",
            self.release,
            self.outcome.as_str(),
            self.user,
            self.machine
        );
        if !self.missing_on.is_empty() {
            line.push_str(&format!(
                "  [hosts disagree: missing on {}]",
                self.missing_on.join(", ")
            ));
        }
        if let Some(reason) = &self.reason {
            line.push_str(&format!("  ({reason})"));
        }
        line + "\n"
    }
}

/// Merge the hosts' histories, newest first; an entry some hosts lack is flagged.
pub fn merge_history(states: &[(String, HostState)]) -> Vec<(ReleaseLine, String)> {
    let mut merged: Vec<(ReleaseLine, String)> = Vec::new();
    for (host, state) in states {
        // Newest first, so that a stable sort by time keeps the file's order within a second.
        for e in state.history.iter().rev() {
            match merged
                .iter_mut()
                .find(|(l, run)| l.same_event(host, e, run))
            {
                Some((l, _)) => l.hosts.push(host.clone()),
                None => merged.push((
                    ReleaseLine {
                        time: e.time,
                        release: e.release.clone(),
                        outcome: e.outcome,
                        user: e.user.clone(),
                        machine: e.machine.clone(),
                        reason: e.reason.clone(),
                        hosts: vec![host.clone()],
                        missing_on: Vec::new(),
                    },
                    e.run.clone(),
                )),
            }
        }
    }
    for (l, _) in &mut merged {
        l.missing_on = states
            .iter()
            .map(|(h, _)| h.clone())
            .filter(|h| !l.hosts.contains(h))
            .collect();
    }
    merged.sort_by_key(|(l, _)| std::cmp::Reverse(l.time));
    merged
}

pub async fn releases(config: &Config) -> Result<Vec<ReleaseLine>, Error> {
    let states = with_fleet(config, async |fleet| {
        crate::fleet::observe(fleet, config).await
    })
    .await?;
    Ok(merge_history(&states)
        .into_iter()
        .map(|(line, _)| line)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Colour;

    fn e(time: u64, release: &str, run: &str) -> HistoryEntry {
        HistoryEntry {
            time,
            release: release.into(),
            image: "i".into(),
            runs: None,
            colour: Colour::Blue,
            user: "u".into(),
            machine: "m".into(),
            outcome: Outcome::Deployed,
            reason: None,
            run: run.into(),
            backup: None,
            window_ms: None,
        }
    }

    fn merged(states: &[(String, HostState)]) -> Vec<ReleaseLine> {
        merge_history(states).into_iter().map(|(l, _)| l).collect()
    }

    fn host(history: Vec<HistoryEntry>) -> HostState {
        HostState {
            history,
            ..HostState::default()
        }
    }

    #[test]
    fn history_merges_across_hosts_and_flags_disagreement() {
        let lines = merged(&[
            ("h1".into(), host(vec![e(10, "1", ""), e(20, "2", "")])),
            ("h2".into(), host(vec![e(11, "1", "")])),
        ]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].release, "2");
        assert_eq!(lines[0].missing_on, ["h2"]);
        assert_eq!(lines[1].hosts, ["h1", "h2"]);
        assert!(lines[1].missing_on.is_empty());
    }

    #[test]
    fn a_run_merges_on_its_id_and_the_same_second_keeps_the_files_order() {
        // A deploy and its rollback in the same second, on two hosts whose clocks differ by 5 s.
        let h1 = vec![
            e(100, "1", "run-a"),
            e(200, "2", "run-b"),
            e(200, "1", "run-c"),
        ];
        let h2 = vec![
            e(105, "1", "run-a"),
            e(205, "2", "run-b"),
            e(205, "1", "run-c"),
        ];
        let lines = merged(&[("h1".into(), host(h1)), ("h2".into(), host(h2))]);
        let order: Vec<&str> = lines.iter().map(|l| l.release.as_str()).collect();
        assert_eq!(
            order,
            ["1", "2", "1"],
            "the rollback lists above its deploy"
        );
        assert!(
            lines.iter().all(|l| l.hosts.len() == 2),
            "merged on the run id"
        );
    }

    #[test]
    fn any_time_a_host_claims_renders_without_panicking() {
        let mut line = merged(&[("h".into(), host(vec![e(crate::state::MAX_TIME, "1", "")]))]);
        use crate::ui::Render;
        assert!(line.remove(0).text().starts_with("9999-12-31T23:59:59Z"));
    }
}
