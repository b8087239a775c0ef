//! Deciding a deploy or a rollback from what the hosts hold. Pure: `plan(&Config, target,
//! &observed) -> Plan`, tested over a table of host states.
//!
//! Per host the target release goes to the idle colour (the one nginx does not serve), unless
//! it already runs there (a warm colour: just switch) or is already live (nothing to do).
//! Hosts are planned independently, so a fleet left half-switched by a killed deploy converges.

use serde::Serialize;

use crate::config::Config;
use crate::model::Colour;
use crate::state::{HostState, ReleaseRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The target release already serves on this host.
    AlreadyLive,
    /// The target release runs, warm, in the idle colour: health-check it and switch.
    SwitchToWarm,
    /// Pull, write the colour's env, (re)start it, health-check it, switch.
    StartAndSwitch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStep {
    pub host: String,
    /// The colour serving now, with its release, if any runs.
    pub from: Option<(Colour, ReleaseRef)>,
    pub to: Colour,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub target: ReleaseRef,
    pub steps: Vec<HostStep>,
}

impl Plan {
    /// Whether any host changes.
    pub fn is_noop(&self) -> bool {
        self.steps.iter().all(|s| s.action == Action::AlreadyLive)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    NotProvisioned {
        host: String,
    },
    NoPrevious {
        current: Option<String>,
    },
    NotRetained {
        wanted: String,
        available: Vec<String>,
    },
}

/// Plan putting `target` live on every host.
pub fn plan(
    config: &Config,
    target: &ReleaseRef,
    hosts: &[(String, HostState)],
) -> Result<Plan, PlanError> {
    let mut steps = Vec::with_capacity(hosts.len());
    for (host, state) in hosts {
        if state.upstream.is_none() {
            return Err(PlanError::NotProvisioned { host: host.clone() });
        }
        let live = state.live(config);
        let from = live.and_then(|c| state.live_release(config).map(|r| (c, r.clone())));
        let (to, action) = match (&from, live) {
            (Some((c, r)), _) if r == target => (*c, Action::AlreadyLive),
            (_, live) => {
                let to = live.map_or(Colour::Blue, Colour::other);
                let idle = state.colour(to);
                if idle.running() && idle.release.as_ref() == Some(target) {
                    (to, Action::SwitchToWarm)
                } else {
                    (to, Action::StartAndSwitch)
                }
            }
        };
        steps.push(HostStep {
            host: host.clone(),
            from,
            to,
            action,
        });
    }
    Ok(Plan {
        target: target.clone(),
        steps,
    })
}

/// The releases that went live, newest first, one entry per release, from all hosts.
pub fn live_history(hosts: &[(String, HostState)]) -> Vec<ReleaseRef> {
    let mut entries: Vec<_> = hosts
        .iter()
        .flat_map(|(_, s)| s.history.iter())
        .filter(|e| e.went_live())
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.time));
    let mut out: Vec<ReleaseRef> = Vec::new();
    for e in entries {
        if !out.iter().any(|r| r.release == e.release) {
            out.push(ReleaseRef {
                release: e.release.clone(),
                image: e.image.clone(),
                config: String::new(),
            });
        }
    }
    out
}

/// The release a rollback goes to: `to` (a release, or a version naming its newest build), or
/// else the newest release that is not the one serving now. Only the last `retain` releases.
pub fn rollback_target(
    config: &Config,
    hosts: &[(String, HostState)],
    to: Option<&str>,
) -> Result<ReleaseRef, PlanError> {
    let current = hosts
        .iter()
        .find_map(|(_, s)| s.live_release(config))
        .map(|r| r.release.clone());
    let retained: Vec<ReleaseRef> = live_history(hosts)
        .into_iter()
        .take(config.deploy.retain)
        .collect();
    match to {
        Some(wanted) => retained
            .iter()
            .find(|r| r.release == wanted || r.release.split('+').next() == Some(wanted))
            .cloned()
            .ok_or_else(|| PlanError::NotRetained {
                wanted: wanted.to_owned(),
                available: retained.iter().map(|r| r.release.clone()).collect(),
            }),
        None => retained
            .iter()
            .find(|r| Some(&r.release) != current.as_ref())
            .cloned()
            .ok_or(PlanError::NoPrevious { current }),
    }
}

/// Image references to keep on a host after `target` went live: `retain` releases counting
/// `target` (the newest of the history before it fill the rest), and the release that served
/// before it (the warm colour, the first rollback target).
pub fn retained_images(
    config: &Config,
    hosts: &[(String, HostState)],
    state: &HostState,
    target: &ReleaseRef,
) -> Vec<String> {
    let mut keep: Vec<String> = vec![target.image.clone()];
    keep.extend(
        live_history(hosts)
            .into_iter()
            .filter(|r| r.release != target.release)
            .take(config.deploy.retain.saturating_sub(1))
            .map(|r| r.image),
    );
    keep.extend(config_live_image(config, state));
    // Images are pulled by digest: `docker image ls --digests` names them `repo@digest`.
    let mut refs: Vec<String> = keep.iter().filter_map(|i| by_digest(i)).collect();
    refs.sort();
    refs.dedup();
    refs
}

fn config_live_image(config: &Config, state: &HostState) -> Option<String> {
    state.live_release(config).map(|r| r.image.clone())
}

/// `registry:5000/app:tag@sha256:x` as `registry:5000/app@sha256:x`.
fn by_digest(image: &str) -> Option<String> {
    let (name, digest) = image.split_once('@')?;
    let slash = name.rfind('/').unwrap_or(0);
    let repo = match name[slash..].rfind(':') {
        Some(colon) => &name[..slash + colon],
        None => name,
    };
    Some(format!("{repo}@{digest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ColourState, HistoryEntry, Outcome};

    fn config() -> Config {
        let sources = crate::config::validate_for_tests(
            "app = \"a\"\nimage = \"r/a\"\nversion = \"1.0.0\"\n",
            "domain = \"a.test\"\nhosts = [\"h1\", \"h2\"]\n",
        );
        sources.unwrap()
    }

    fn rel(v: &str) -> ReleaseRef {
        ReleaseRef {
            release: v.into(),
            image: format!("r/a:{v}@sha256:{v}"),
            config: String::new(),
        }
    }

    fn colour(release: Option<&str>, unit: &str) -> ColourState {
        ColourState {
            release: release.map(rel),
            unit: unit.into(),
        }
    }

    fn host(live_port: Option<u16>, blue: ColourState, green: ColourState) -> HostState {
        HostState {
            upstream: live_port.map(|p| crate::templates::upstream(p, None)),
            blue,
            green,
            ..HostState::default()
        }
    }

    fn entry(time: u64, release: &str, outcome: Outcome) -> HistoryEntry {
        HistoryEntry {
            time,
            release: release.into(),
            image: rel(release).image,
            colour: Colour::Blue,
            user: "u".into(),
            machine: "m".into(),
            outcome,
            reason: None,
        }
    }

    fn one(state: HostState, target: &str) -> Result<HostStep, PlanError> {
        plan(&config(), &rel(target), &[("h1".into(), state)]).map(|p| p.steps[0].clone())
    }

    type Case = (
        &'static str,
        HostState,
        &'static str,
        Result<(Option<Colour>, Colour, Action), PlanError>,
    );

    #[test]
    fn table_of_observed_states() {
        let none = || colour(None, "inactive");
        let cases: Vec<Case> = vec![
            (
                "first deploy after provision",
                host(Some(3001), none(), none()),
                "1",
                Ok((None, Colour::Green, Action::StartAndSwitch)),
            ),
            (
                "blue live, deploy v2",
                host(Some(3001), colour(Some("1"), "active"), none()),
                "2",
                Ok((Some(Colour::Blue), Colour::Green, Action::StartAndSwitch)),
            ),
            (
                "green live, old blue warm",
                host(
                    Some(3002),
                    colour(Some("1"), "active"),
                    colour(Some("2"), "active"),
                ),
                "3",
                Ok((Some(Colour::Green), Colour::Blue, Action::StartAndSwitch)),
            ),
            (
                "rollback to the warm colour",
                host(
                    Some(3002),
                    colour(Some("1"), "active"),
                    colour(Some("2"), "active"),
                ),
                "1",
                Ok((Some(Colour::Green), Colour::Blue, Action::SwitchToWarm)),
            ),
            (
                "rollback to a stopped colour",
                host(
                    Some(3002),
                    colour(Some("1"), "inactive"),
                    colour(Some("2"), "active"),
                ),
                "1",
                Ok((Some(Colour::Green), Colour::Blue, Action::StartAndSwitch)),
            ),
            (
                "already live: nothing to do",
                host(Some(3002), none(), colour(Some("2"), "active")),
                "2",
                Ok((Some(Colour::Green), Colour::Green, Action::AlreadyLive)),
            ),
            (
                "live colour crashed",
                host(Some(3001), colour(Some("1"), "failed"), none()),
                "1",
                Ok((None, Colour::Green, Action::StartAndSwitch)),
            ),
            (
                "upstream on an unknown port",
                host(Some(9999), none(), none()),
                "1",
                Ok((None, Colour::Blue, Action::StartAndSwitch)),
            ),
            (
                "never provisioned",
                host(None, none(), none()),
                "1",
                Err(PlanError::NotProvisioned { host: "h1".into() }),
            ),
        ];
        for (name, state, target, want) in cases {
            let got = one(state, target).map(|s| (s.from.map(|f| f.0), s.to, s.action));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_changed_setting_restarts_even_the_same_release() {
        let state = host(
            Some(3001),
            colour(Some("1"), "active"),
            colour(Some("2"), "active"),
        );
        let mut target = rel("1");
        target.config = "new-settings".into();
        let p = plan(&config(), &target, &[("h1".into(), state.clone())]).unwrap();
        assert_eq!(
            (p.steps[0].to, p.steps[0].action),
            (Colour::Green, Action::StartAndSwitch)
        );
        let mut target = rel("2");
        target.config = "new-settings".into();
        let p = plan(&config(), &target, &[("h1".into(), state)]).unwrap();
        assert_eq!(
            p.steps[0].action,
            Action::StartAndSwitch,
            "a warm copy with old settings is not reused"
        );
    }

    #[test]
    fn a_half_switched_fleet_converges() {
        // Killed mid-switch: h1 serves v2 on green, h2 still serves v1 on blue with v2 warm.
        let h1 = host(
            Some(3002),
            colour(Some("1"), "active"),
            colour(Some("2"), "active"),
        );
        let h2 = host(
            Some(3001),
            colour(Some("1"), "active"),
            colour(Some("2"), "active"),
        );
        let p = plan(
            &config(),
            &rel("2"),
            &[("h1".into(), h1), ("h2".into(), h2)],
        )
        .unwrap();
        assert_eq!(p.steps[0].action, Action::AlreadyLive);
        assert_eq!(
            (p.steps[1].to, p.steps[1].action),
            (Colour::Green, Action::SwitchToWarm)
        );
        assert!(!p.is_noop());
    }

    #[test]
    fn rollback_goes_to_the_previous_release_and_a_rollback_of_it_goes_forward() {
        let mut s = host(
            Some(3002),
            colour(Some("1"), "active"),
            colour(Some("2"), "active"),
        );
        s.history = vec![
            entry(1, "1", Outcome::Deployed),
            entry(2, "2", Outcome::Deployed),
        ];
        let hosts = vec![("h1".to_owned(), s.clone())];
        assert_eq!(
            rollback_target(&config(), &hosts, None).unwrap().release,
            "1"
        );
        // After the rollback: blue (v1) is live and the history says so.
        s.upstream = Some(crate::templates::upstream(3001, Some(3002)));
        s.history.push(entry(3, "1", Outcome::RolledBack));
        let hosts = vec![("h1".to_owned(), s.clone())];
        assert_eq!(
            rollback_target(&config(), &hosts, None).unwrap().release,
            "2"
        );
        // Failed deploys never count as releases to go back to.
        s.history.push(entry(4, "3", Outcome::AutoRolledBack));
        let hosts = vec![("h1".to_owned(), s)];
        assert_eq!(
            rollback_target(&config(), &hosts, None).unwrap().release,
            "2"
        );
    }

    #[test]
    fn rollback_to_a_named_release() {
        let mut s = host(Some(3001), colour(Some("3.0.0+c"), "active"), none_green());
        s.history = vec![
            entry(1, "1.0.0+a", Outcome::Deployed),
            entry(2, "2.0.0+b", Outcome::Deployed),
            entry(3, "3.0.0+c", Outcome::Deployed),
        ];
        let hosts = vec![("h1".to_owned(), s)];
        assert_eq!(
            rollback_target(&config(), &hosts, Some("1.0.0"))
                .unwrap()
                .release,
            "1.0.0+a"
        );
        assert_eq!(
            rollback_target(&config(), &hosts, Some("2.0.0+b"))
                .unwrap()
                .release,
            "2.0.0+b"
        );
        assert_eq!(
            rollback_target(&config(), &hosts, Some("9.9.9")),
            Err(PlanError::NotRetained {
                wanted: "9.9.9".into(),
                available: vec!["3.0.0+c".into(), "2.0.0+b".into(), "1.0.0+a".into()]
            })
        );
    }

    fn none_green() -> ColourState {
        colour(None, "inactive")
    }

    #[test]
    fn nothing_to_roll_back_to() {
        let mut s = host(Some(3001), colour(Some("1"), "active"), none_green());
        s.history = vec![entry(1, "1", Outcome::Deployed)];
        assert_eq!(
            rollback_target(&config(), &[("h1".to_owned(), s)], None),
            Err(PlanError::NoPrevious {
                current: Some("1".into())
            })
        );
    }

    #[test]
    fn pruning_keeps_retained_and_running_images() {
        let mut s = host(
            Some(3001),
            colour(Some("7"), "active"),
            colour(Some("6"), "active"),
        );
        s.history = (1..=7)
            .map(|i| entry(i, &i.to_string(), Outcome::Deployed))
            .collect();
        let hosts = vec![("h1".to_owned(), s.clone())];
        let keep = retained_images(&config(), &hosts, &s, &rel("8"));
        assert_eq!(
            keep,
            [
                "r/a@sha256:4",
                "r/a@sha256:5",
                "r/a@sha256:6",
                "r/a@sha256:7",
                "r/a@sha256:8"
            ]
        );
        assert_eq!(
            by_digest("reg.test:5000/x/app:1.0.0_ab@sha256:12").as_deref(),
            Some("reg.test:5000/x/app@sha256:12")
        );
        assert_eq!(by_digest("app@sha256:12").as_deref(), Some("app@sha256:12"));
        assert_eq!(by_digest("app:1"), None);
    }
}
