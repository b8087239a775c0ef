//! Deciding a deploy or a rollback from what the hosts hold. Pure: `plan(&Config, target,
//! &observed) -> Plan`, tested over a table of host states.
//!
//! What users get is a fact read from the hosts, not from unit states or the configuration: the
//! live colour (the upstream's first server) while its copy answers, else the previous colour
//! nginx falls back to (`backup`) while it answers ([`HostState::serving`]). Per host the target
//! release goes to a colour that does not serve: it only switches when the target already runs
//! warm and answers there (with the same settings), and nothing happens when it already serves
//! as the live colour. So when the live copy has crashed and the previous one serves through
//! `backup`, a deploy starts in the crashed colour and a rollback makes the previous one live
//! without touching it. After a change of `[ports]` the serving copy keeps its port until it is
//! idle. Hosts are planned independently, so a fleet left half-switched converges.

use serde::Serialize;

use crate::config::Config;
use crate::model::Colour;
use crate::state::{ColourState, HostState, ReleaseRef, Settings, Via};

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

/// What users get on a host before the run: a colour, its port and its release, and whether
/// nginx reaches it as its live server or falls back to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Serving {
    pub colour: Colour,
    pub port: u16,
    #[serde(flatten)]
    pub release: ReleaseRef,
    pub via: Via,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStep {
    pub host: String,
    /// What users get now, if a copy of the app answers.
    pub from: Option<Serving>,
    /// The colour that serves the target afterwards.
    pub to: Colour,
    /// The port that colour listens on.
    pub port: u16,
    pub action: Action,
    /// Why the host changes beyond "a new release": the settings that changed (names only),
    /// the live copy that does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The host has no opinion on a rollback's target (new, rebuilt, or behind): it follows
    /// the release the other hosts agree on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub follows: bool,
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

/// Where one host would take a rollback, for a refusal naming each host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostChoice {
    pub host: String,
    pub release: Option<ReleaseRef>,
}

/// A rollback's target, and the hosts that follow it without an opinion of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackTarget {
    pub release: ReleaseRef,
    pub followers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    NotProvisioned {
        host: String,
    },
    /// The host has the app in the earlier layout (keyed by the app alone), not yet moved.
    NotMoved {
        host: String,
    },
    NoPrevious {
        current: Option<String>,
    },
    NotRetained {
        wanted: String,
        available: Vec<String>,
    },
    /// The hosts' histories do not name one release (with one image) to roll back to.
    HostsDisagree {
        wanted: Option<String>,
        choices: Vec<HostChoice>,
    },
}

/// Plan putting `target` live on every host; `followers` name the hosts that follow a
/// rollback's target without a history of it.
/// The hosts whose architecture is not the one of an image for `platform`
/// (`os/architecture[/variant]`), with theirs. A host that did not say is not judged.
pub fn foreign_hosts<'a>(
    platform: &str,
    hosts: &'a [(String, HostState)],
) -> Vec<(&'a str, &'a str)> {
    let Some(arch) = platform.split('/').nth(1) else {
        return Vec::new();
    };
    hosts
        .iter()
        .filter_map(|(h, s)| {
            s.arch
                .as_deref()
                .filter(|a| *a != arch)
                .map(|a| (h.as_str(), a))
        })
        .collect()
}

pub fn plan(
    config: &Config,
    target: &ReleaseRef,
    hosts: &[(String, HostState)],
    followers: &[String],
) -> Result<Plan, PlanError> {
    let steps = hosts
        .iter()
        .map(|(host, state)| {
            plan_host(config, target, host, state).map(|mut step| {
                step.follows = followers.contains(host);
                step
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Plan {
        target: target.clone(),
        steps,
    })
}

/// Why the release waiting for promotion cannot be promoted as it was previewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitingError {
    /// No host has a release waiting.
    Nothing,
    /// The hosts' waiting records name different releases (or images): one line per host.
    Differs(Vec<String>),
}

/// The release waiting for promotion (`deploy --no-promote`), which every host that records
/// one agrees on.
pub fn waiting_target(hosts: &[(String, HostState)]) -> Result<ReleaseRef, WaitingError> {
    let waiting: Vec<(&str, &crate::state::Waiting)> = hosts
        .iter()
        .filter_map(|(h, s)| s.waiting.as_ref().map(|w| (h.as_str(), w)))
        .collect();
    let Some((_, first)) = waiting.first() else {
        return Err(WaitingError::Nothing);
    };
    if waiting.iter().any(|(_, w)| !w.same_release(first)) {
        return Err(WaitingError::Differs(
            waiting
                .iter()
                .map(|(h, w)| format!("`{h}` holds {} (`{}`)", w.release, w.image))
                .collect(),
        ));
    }
    Ok(ReleaseRef {
        release: first.release.clone(),
        image: first.image.clone(),
    })
}

/// The hosts where promoting `plan` would not be a switch to the very copy that waits (its
/// release, its image, its colour, still answering with the same settings), with why: those
/// must be refused, since what would go live is not what was previewed.
pub fn changed_waiting(plan: &Plan, hosts: &[(String, HostState)]) -> Vec<String> {
    plan.steps
        .iter()
        .zip(hosts)
        .filter_map(|(step, (host, state))| {
            let why = match (step.action, &state.waiting) {
                (Action::AlreadyLive, _) => return None,
                (_, None) => "nothing waits there".to_owned(),
                (Action::StartAndSwitch, Some(w)) => format!(
                    "the copy of {} waiting in {} would have to be started again{}",
                    w.release,
                    w.colour,
                    step.why
                        .as_ref()
                        .map(|why| format!(" ({why})"))
                        .unwrap_or_default()
                ),
                (Action::SwitchToWarm, Some(w)) if w.colour != step.to => {
                    format!("it waits in {} but {} runs it", w.colour, step.to)
                }
                (Action::SwitchToWarm, Some(_)) => return None,
            };
            Some(format!("`{host}`: {why}"))
        })
        .collect()
}

/// The hosts whose live copy does not answer (nginx falls back to the previous colour): a
/// release left waiting there would leave users on the fallback, which the waiting copy
/// replaces.
pub fn serving_through_backup(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|s| s.action != Action::AlreadyLive)
        .filter(|s| s.from.as_ref().is_some_and(|f| f.via == Via::Backup))
        .map(|s| s.host.clone())
        .collect()
}

/// What users get on a host, with its release.
fn serving(state: &HostState) -> Option<Serving> {
    let (live, via) = state.serving()?;
    let release = state.colour(live.colour).release.clone()?;
    Some(Serving {
        colour: live.colour,
        port: live.port,
        release,
        via,
    })
}

/// The names of what changed in a colour's settings, for a message (never a value).
pub fn describe_changed(c: &ColourState) -> String {
    let names: Vec<String> = c
        .changed
        .iter()
        .map(|n| {
            if n == "units" {
                "the units (volumes, limits or processes)".to_owned()
            } else {
                format!("`{n}`")
            }
        })
        .collect();
    if names.is_empty() {
        "settings changed".to_owned()
    } else {
        format!("settings changed: {}", names.join(", "))
    }
}

fn plan_host(
    config: &Config,
    target: &ReleaseRef,
    host: &str,
    state: &HostState,
) -> Result<HostStep, PlanError> {
    if state.upstream.is_none() {
        return Err(if state.legacy_layout {
            PlanError::NotMoved {
                host: host.to_owned(),
            }
        } else {
            PlanError::NotProvisioned {
                host: host.to_owned(),
            }
        });
    }
    let from = serving(state);
    let live = state.live();
    let step = |to, port, action, why: Option<String>| HostStep {
        host: host.to_owned(),
        from: from.clone(),
        to,
        port,
        action,
        why,
        follows: false,
    };
    // Why a copy starts beside what serves, when the reason is not only a new release.
    let why = match (&from, live) {
        (Some(s), _) if s.via == Via::Backup => Some(format!(
            "the live copy ({} on port {}) does not answer; users get {} ({}) through nginx's backup",
            live.map_or("-".to_owned(), |l| l.colour.to_string()),
            live.map_or("-".to_owned(), |l| l.port.to_string()),
            s.release.release,
            s.colour
        )),
        (Some(s), _) if s.release == *target => Some(describe_changed(state.colour(s.colour))),
        (None, Some(l)) => Some(format!(
            "nothing answers: the live copy ({} on port {}) is down",
            l.colour, l.port
        )),
        _ => None,
    };
    if let Some(s) = &from
        && s.via == Via::Primary
        && s.release == *target
        && state.colour(s.colour).settings == Settings::Same
    {
        return Ok(step(s.colour, s.port, Action::AlreadyLive, None));
    }
    // The target running warm, answering, with the same settings, in a colour that is not the
    // live one serving: a switch, nothing restarted (the backup that serves comes first).
    let warm = [
        from.as_ref().map(|s| s.colour),
        Some(Colour::Green),
        Some(Colour::Blue),
    ]
    .into_iter()
    .flatten()
    .filter(|c| {
        !(from
            .as_ref()
            .is_some_and(|s| s.via == Via::Primary && s.colour == *c))
    })
    .find_map(|c| {
        let col = state.colour(c);
        let port = col.port?;
        let other = state.colour(c.other());
        (col.running_here()
            && col.answers_users()
            && col.release.as_ref() == Some(target)
            && col.settings == Settings::Same
            && !(other.running() && other.port == Some(port)))
        .then_some((c, port))
    });
    if let Some((to, port)) = warm {
        return Ok(step(to, port, Action::SwitchToWarm, why));
    }
    // A colour that does not serve: the other one than what users get (so a crashed live
    // colour is the one restarted), else the other one than the live colour, else green unless
    // only green runs.
    let to = match (&from, live) {
        (Some(s), _) => s.colour.other(),
        (None, Some(l)) => l.colour.other(),
        (None, None) if state.green.running() && !state.blue.running() => Colour::Blue,
        (None, None) => Colour::Green,
    };
    // The colour's configured port, unless the other colour's running copy (or the copy users
    // get) holds it (the ports were changed, or swapped): then the other configured port.
    let other = state.colour(to.other());
    let taken = |p: u16| {
        (other.running() && other.port == Some(p)) || from.as_ref().is_some_and(|s| s.port == p)
    };
    let port = match config.port_of(to) {
        p if taken(p) => config.port_of(to.other()),
        p => p,
    };
    // The target already runs there, warm, but with other settings: why it starts again.
    let idle = state.colour(to);
    let why = why.or_else(|| {
        (idle.running()
            && idle.release.as_ref() == Some(target)
            && idle.settings == Settings::Differs)
            .then(|| format!("its warm copy there: {}", describe_changed(idle)))
    });
    Ok(step(to, port, Action::StartAndSwitch, why))
}

/// The releases that went live on one host, newest first, one entry per release, in the
/// order the host's history file has them (not by the time a line claims).
pub fn went_live(state: &HostState) -> Vec<ReleaseRef> {
    let mut out: Vec<ReleaseRef> = Vec::new();
    for e in state.history.iter().rev().filter(|e| e.went_live()) {
        if !out.iter().any(|r| r.release == e.release) {
            out.push(ReleaseRef {
                release: e.release.clone(),
                image: e.image.clone(),
            });
        }
    }
    out
}

/// Whether `state`'s host joined the environment after `release` went live on `witness`: the
/// oldest run in its history is recorded on `witness` after that release's last went-live line.
fn joined_after(state: &HostState, witness: &HostState, release: &str) -> bool {
    let Some(first_run) = state
        .history
        .first()
        .map(|e| e.run.as_str())
        .filter(|r| !r.is_empty())
    else {
        return false;
    };
    let Some(went) = witness
        .history
        .iter()
        .rposition(|e| e.release == release && e.went_live())
    else {
        return false;
    };
    witness
        .history
        .iter()
        .position(|e| e.run == first_run)
        .is_some_and(|joined| joined > went)
}

/// The release a rollback goes to: `to` (a release, or a version naming its newest build), or
/// else the release before the one the live colour runs (read from its record even when its
/// copy is down); only among each host's last `retain` releases. Every host with an opinion
/// must name the same release with the same image: one host's history never chooses against
/// another's. A host without one follows: one whose history has no release but the current
/// (new, rebuilt, or its state lost), one the others record as behind, and with `to`, one that
/// joined after that release went live.
pub fn rollback_target(
    config: &Config,
    hosts: &[(String, HostState)],
    to: Option<&str>,
) -> Result<RollbackTarget, PlanError> {
    let behind: Vec<&str> = hosts
        .iter()
        .flat_map(|(_, s)| s.behind.iter().map(|b| b.host.as_str()))
        .collect();
    let choices: Vec<HostChoice> = hosts
        .iter()
        .map(|(host, state)| HostChoice {
            host: host.clone(),
            release: choice(config, state, to),
        })
        .collect();
    let opinions: Vec<&HostChoice> = choices
        .iter()
        .filter(|c| c.release.is_some() && !behind.contains(&c.host.as_str()))
        .collect();
    let Some(first) = opinions.first().and_then(|c| c.release.clone()) else {
        return Err(none_to_roll_back_to(config, hosts, to));
    };
    let followers: Vec<String> = hosts
        .iter()
        .zip(&choices)
        .filter(|(_, c)| c.release.is_none() || behind.contains(&c.host.as_str()))
        .filter(|((host, state), _)| {
            behind.contains(&host.as_str())
                || went_live(state)
                    .iter()
                    .all(|r| Some(r) == state.primary_release())
                || (to.is_some()
                    && hosts
                        .iter()
                        .zip(&choices)
                        .filter(|(_, c)| c.release.is_some())
                        .all(|((_, witness), _)| joined_after(state, witness, &first.release)))
        })
        .map(|((host, _), _)| host.clone())
        .collect();
    let agreed = opinions.iter().all(|c| c.release.as_ref() == Some(&first));
    let everyone = choices
        .iter()
        .all(|c| c.release.is_some() || followers.contains(&c.host));
    if agreed && everyone {
        return Ok(RollbackTarget {
            release: first,
            followers,
        });
    }
    Err(PlanError::HostsDisagree {
        wanted: to.map(str::to_owned),
        choices,
    })
}

/// Where one host would take a rollback, from its own history.
fn choice(config: &Config, state: &HostState, to: Option<&str>) -> Option<ReleaseRef> {
    let mut retained = went_live(state).into_iter().take(config.deploy.retain);
    match to {
        Some(wanted) => {
            retained.find(|r| r.release == wanted || r.release.split('+').next() == Some(wanted))
        }
        // The release that served before the live colour's, as this host recorded it; when
        // that one is not in its history, the newest other.
        None => {
            let current = state.primary_release().map(|r| r.release.clone());
            let list: Vec<ReleaseRef> = retained.collect();
            match list
                .iter()
                .position(|r| Some(&r.release) == current.as_ref())
            {
                Some(i) => list.get(i + 1).cloned(),
                None => list
                    .into_iter()
                    .find(|r| Some(&r.release) != current.as_ref()),
            }
        }
    }
}

/// The refusal when no host has a release to go back to.
fn none_to_roll_back_to(
    config: &Config,
    hosts: &[(String, HostState)],
    to: Option<&str>,
) -> PlanError {
    match to {
        Some(wanted) => {
            let mut available: Vec<String> = Vec::new();
            for (_, state) in hosts {
                for r in went_live(state).into_iter().take(config.deploy.retain) {
                    if !available.contains(&r.release) {
                        available.push(r.release);
                    }
                }
            }
            PlanError::NotRetained {
                wanted: wanted.to_owned(),
                available,
            }
        }
        None => PlanError::NoPrevious {
            current: hosts
                .iter()
                .find_map(|(_, s)| s.primary_release())
                .map(|r| r.release.clone()),
        },
    }
}

/// Image references to keep on a host after `target` went live: `retain` releases counting
/// `target` (the newest of the host's history before it fill the rest), the release users got
/// before it (the warm colour, the first rollback target) and the live colour's own. Each by
/// the release's image and by what this host runs it by (`runs`, for the target), which an
/// engine with containerd's store names otherwise.
pub fn retained_images(
    config: &Config,
    state: &HostState,
    target: &ReleaseRef,
    runs: &str,
) -> Vec<String> {
    let mut releases: Vec<ReleaseRef> = vec![target.clone()];
    releases.extend(
        went_live(state)
            .into_iter()
            .filter(|r| r.release != target.release)
            .take(config.deploy.retain.saturating_sub(1)),
    );
    releases.extend(state.live_release().cloned());
    releases.extend(state.primary_release().cloned());
    let mut keep: Vec<String> = vec![runs.to_owned()];
    for r in &releases {
        keep.push(state.image_here(r));
        keep.push(r.image.clone());
    }
    // Images pulled from a registry by digest are `repo@digest` in `docker image ls
    // --digests`; images sent over SSH are named by their ID, as they are kept.
    let mut refs: Vec<String> = keep
        .iter()
        .filter_map(|i| {
            if i.starts_with("sha256:") {
                Some(i.clone())
            } else {
                by_digest(i)
            }
        })
        .collect();
    refs.sort();
    refs.dedup();
    refs
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

    #[test]
    fn an_image_for_another_architecture_names_each_host_that_differs() {
        let host = |arch: Option<&str>| HostState {
            arch: arch.map(str::to_owned),
            ..HostState::default()
        };
        let hosts = vec![
            ("a".to_owned(), host(Some("amd64"))),
            ("b".to_owned(), host(Some("arm64"))),
            ("c".to_owned(), host(None)),
        ];
        assert_eq!(foreign_hosts("linux/amd64", &hosts), [("b", "arm64")]);
        assert_eq!(foreign_hosts("linux/arm64/v8", &hosts), [("a", "amd64")]);
        // A platform without an architecture judges nobody.
        assert!(foreign_hosts("linux", &hosts).is_empty());
    }
    use crate::state::{ColourState, HistoryEntry, Outcome, upstream};

    fn config() -> Config {
        crate::config::validate_for_tests(
            "app = \"a\"\nimage = \"r/a\"\nversion = \"1.0.0\"\n",
            "domain = \"a.test\"\nhosts = [\"h1\", \"h2\"]\n",
        )
        .unwrap()
    }

    fn ported(blue: u16, green: u16) -> Config {
        let mut c = config();
        c.ports.blue = blue;
        c.ports.green = green;
        c
    }

    fn rel(v: &str) -> ReleaseRef {
        ReleaseRef {
            release: v.into(),
            image: format!("r/a:{v}@sha256:{v}"),
        }
    }

    /// A colour running `release` (or none) on `port`, with settings equal to the deploy's.
    fn colour(release: Option<&str>, unit: &str, port: u16) -> ColourState {
        ColourState {
            release: release.map(rel),
            runs: None,
            unit: unit.into(),
            port: release.map(|_| port),
            health_path: Some("/health".into()),
            settings: if release.is_some() {
                Settings::Same
            } else {
                Settings::Unknown
            },
            legacy_unit: String::new(),
            changed: Vec::new(),
            answers: None,
        }
    }

    fn none() -> ColourState {
        ColourState {
            unit: "inactive".into(),
            ..ColourState::default()
        }
    }

    /// A host whose upstream serves `live_port` (as `live`, when known).
    fn host(live_port: Option<u16>, blue: ColourState, green: ColourState) -> HostState {
        HostState {
            upstream: live_port.map(|p| upstream(None, p, None)),
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
            runs: None,
            colour: Colour::Blue,
            user: "u".into(),
            machine: "m".into(),
            outcome,
            reason: None,
            run: String::new(),
            backup: None,
            window_ms: None,
        }
    }

    fn one(config: &Config, state: HostState, target: &str) -> Result<HostStep, PlanError> {
        plan(config, &rel(target), &[("h1".into(), state)], &[]).map(|p| p.steps[0].clone())
    }

    type Want = Result<(Option<Colour>, Colour, u16, Action), PlanError>;

    /// v1 on blue (3001, its unit `blue_unit`) and v2 on green (3002), nginx on `live_port`.
    fn one_and_two(live_port: u16, blue_unit: &str) -> HostState {
        host(
            Some(live_port),
            colour(Some("1"), blue_unit, 3001),
            colour(Some("2"), "active", 3002),
        )
    }

    fn want(from: Option<Colour>, to: Colour, port: u16, action: Action) -> Want {
        Ok((from, to, port, action))
    }

    fn waiting(release: &str, colour: Colour, port: u16) -> crate::state::Waiting {
        crate::state::Waiting {
            release: release.into(),
            image: rel(release).image,
            runs: None,
            colour,
            port,
            run: "r".into(),
            user: "u".into(),
            machine: "m".into(),
            time: 1,
        }
    }

    #[test]
    fn the_release_waiting_for_promotion_is_the_one_every_host_agrees_on() {
        let with = |w: Option<crate::state::Waiting>| HostState {
            waiting: w,
            ..one_and_two(3001, "active")
        };
        let c = config();
        assert_eq!(
            waiting_target(&[("h1".into(), with(None))]),
            Err(WaitingError::Nothing)
        );
        let both = vec![
            (
                "h1".to_owned(),
                with(Some(waiting("2", Colour::Green, 3002))),
            ),
            (
                "h2".to_owned(),
                with(Some(waiting("2", Colour::Green, 3002))),
            ),
        ];
        let target = waiting_target(&both).unwrap();
        assert_eq!(target, rel("2"));
        // Blue serves 1, green runs 2 warm where it waits: a switch to it on both.
        let p = plan(&c, &target, &both, &[]).unwrap();
        assert!(changed_waiting(&p, &both).is_empty(), "{p:?}");
        // Hosts holding different releases are named, each with its own.
        let mut differ = both.clone();
        differ[1].1.waiting = Some(waiting("3", Colour::Green, 3002));
        match waiting_target(&differ) {
            Err(WaitingError::Differs(lines)) => {
                assert_eq!(lines.len(), 2);
                assert!(lines[1].contains("`h2` holds 3"), "{lines:?}");
            }
            other => panic!("{other:?}"),
        }
        // A host where nothing waits, or whose waiting copy no longer runs as previewed
        // (stopped, or its settings changed since), refuses the promotion, saying why.
        let mut gone = both.clone();
        gone[0].1.waiting = None;
        gone[1].1.green = none();
        let p = plan(&c, &target, &gone, &[]).unwrap();
        let why = changed_waiting(&p, &gone);
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("`h1`: nothing waits there"), "{why:?}");
        assert!(why[1].contains("would have to be started again"), "{why:?}");
        let mut changed = both.clone();
        changed[0].1.green.settings = Settings::Differs;
        changed[0].1.green.changed = vec!["DATABASE_URL".into()];
        let p = plan(&c, &target, &changed, &[]).unwrap();
        let why = changed_waiting(&p, &changed);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("`DATABASE_URL`"), "{why:?}");
        // Where it already serves (promoted there by an earlier run), nothing is refused.
        let mut live = both.clone();
        live[0].1.upstream = Some(upstream(None, 3002, None));
        let p = plan(&c, &target, &live, &[]).unwrap();
        assert_eq!(p.steps[0].action, Action::AlreadyLive);
        assert!(changed_waiting(&p, &live).is_empty());
    }

    #[test]
    fn a_release_cannot_be_left_waiting_where_users_get_the_backup() {
        let c = config();
        // Blue (live) does not answer; green answers as nginx's backup.
        let mut crashed = host(
            Some(3001),
            colour(Some("1"), "failed", 3001),
            colour(Some("2"), "active", 3002),
        );
        crashed.upstream = Some(upstream(Some(Colour::Blue), 3001, Some(3002)));
        crashed.green.answers = Some(200);
        let healthy = one_and_two(3001, "active");
        let hosts = vec![("h1".to_owned(), crashed), ("h2".to_owned(), healthy)];
        let p = plan(&c, &rel("3"), &hosts, &[]).unwrap();
        assert_eq!(serving_through_backup(&p), ["h1"]);
    }

    #[test]
    fn table_of_observed_states() {
        use Action::{AlreadyLive, StartAndSwitch, SwitchToWarm};
        use Colour::{Blue, Green};
        let cases: Vec<(&str, HostState, &str, Want)> = vec![
            (
                "first deploy after provision",
                host(Some(3001), none(), none()),
                "1",
                want(None, Green, 3002, StartAndSwitch),
            ),
            (
                "blue live, deploy v2",
                host(Some(3001), colour(Some("1"), "active", 3001), none()),
                "2",
                want(Some(Blue), Green, 3002, StartAndSwitch),
            ),
            (
                "green live, old blue warm",
                one_and_two(3002, "active"),
                "3",
                want(Some(Green), Blue, 3001, StartAndSwitch),
            ),
            (
                "rollback to the warm colour",
                one_and_two(3002, "active"),
                "1",
                want(Some(Green), Blue, 3001, SwitchToWarm),
            ),
            (
                "rollback to a stopped colour",
                one_and_two(3002, "inactive"),
                "1",
                want(Some(Green), Blue, 3001, StartAndSwitch),
            ),
            (
                "already live: nothing to do",
                host(Some(3002), none(), colour(Some("2"), "active", 3002)),
                "2",
                want(Some(Green), Green, 3002, AlreadyLive),
            ),
            (
                "live colour crashed",
                host(Some(3001), colour(Some("1"), "failed", 3001), none()),
                "1",
                want(None, Green, 3002, StartAndSwitch),
            ),
            (
                "upstream on a port no colour recorded",
                host(Some(9999), none(), none()),
                "1",
                want(None, Green, 3002, StartAndSwitch),
            ),
            (
                "nothing live, green runs (not served): blue is started",
                host(Some(9999), none(), colour(Some("1"), "active", 3002)),
                "2",
                want(None, Blue, 3001, StartAndSwitch),
            ),
            (
                "never provisioned",
                host(None, none(), none()),
                "1",
                Err(PlanError::NotProvisioned { host: "h1".into() }),
            ),
        ];
        for (name, state, target, want) in cases {
            let got = one(&config(), state, target)
                .map(|s| (s.from.map(|f| f.colour), s.to, s.port, s.action));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_port_change_never_restarts_the_colour_that_serves() {
        // Blue serves on 3001; `[ports]` now says blue = 3002, green = 3001 (swapped).
        let state = host(Some(3001), colour(Some("1"), "active", 3001), none());
        let step = one(&ported(3002, 3001), state.clone(), "2").unwrap();
        assert_eq!(step.from.as_ref().unwrap().colour, Colour::Blue);
        assert_eq!(step.from.as_ref().unwrap().port, 3001);
        assert_eq!(
            (step.to, step.port, step.action),
            (Colour::Green, 3002, Action::StartAndSwitch),
            "green starts on the port the live copy does not hold"
        );
        // Moved to new ports altogether: green starts on its new one; blue keeps 3001.
        let step = one(&ported(4001, 4002), state.clone(), "2").unwrap();
        assert_eq!((step.to, step.port), (Colour::Green, 4002));
        assert_eq!(step.from.unwrap().port, 3001);
        // Green serves on its old 3002 and blue's new port is 3002: blue takes green's new one.
        let state = host(
            Some(3002),
            colour(Some("1"), "active", 3001),
            colour(Some("2"), "active", 3002),
        );
        let step = one(&ported(3002, 3003), state, "3").unwrap();
        assert_eq!((step.to, step.port), (Colour::Blue, 3003));
    }

    #[test]
    fn a_host_in_the_earlier_layout_is_moved_first_and_its_copies_are_replaced() {
        // Not moved yet: refused, the error says how to move it.
        let unmoved = HostState {
            legacy_layout: true,
            ..HostState::default()
        };
        assert_eq!(
            one(&config(), unmoved, "1"),
            Err(PlanError::NotMoved { host: "h1".into() })
        );
        // Moved: blue serves under its earlier unit, green is warm under its earlier unit.
        let legacy = |release, port| ColourState {
            unit: "inactive".into(),
            legacy_unit: "active".into(),
            ..colour(Some(release), "inactive", port)
        };
        let moved = host(Some(3001), legacy("1", 3001), legacy("2", 3002));
        let step = one(&config(), moved.clone(), "1").unwrap();
        assert_eq!(
            step.action,
            Action::AlreadyLive,
            "what serves is still seen"
        );
        let step = one(&config(), moved, "2").unwrap();
        assert_eq!(
            (step.to, step.action),
            (Colour::Green, Action::StartAndSwitch),
            "an earlier unit is never switched to as a warm copy: it is started anew"
        );
    }

    #[test]
    fn a_warm_copy_is_switched_to_on_the_port_it_runs_on() {
        // Blue (v1) is warm on its old port 3001; the ports changed since.
        let step = one(&ported(5001, 5002), one_and_two(3002, "active"), "1").unwrap();
        assert_eq!(
            (step.to, step.port, step.action),
            (Colour::Blue, 3001, Action::SwitchToWarm)
        );
    }

    #[test]
    fn changed_settings_restart_even_the_same_release() {
        let mut state = host(
            Some(3001),
            colour(Some("1"), "active", 3001),
            colour(Some("2"), "active", 3002),
        );
        state.blue.settings = Settings::Differs;
        state.green.settings = Settings::Differs;
        let step = one(&config(), state.clone(), "1").unwrap();
        assert_eq!(
            (step.to, step.action),
            (Colour::Green, Action::StartAndSwitch)
        );
        let step = one(&config(), state, "2").unwrap();
        assert_eq!(
            step.action,
            Action::StartAndSwitch,
            "a warm copy with old settings is not reused"
        );
        assert_eq!(
            step.why.as_deref(),
            Some("its warm copy there: settings changed")
        );
    }

    #[test]
    fn a_half_switched_fleet_converges() {
        // Killed mid-switch: h1 serves v2 on green, h2 still serves v1 on blue with v2 warm.
        let h1 = host(
            Some(3002),
            colour(Some("1"), "active", 3001),
            colour(Some("2"), "active", 3002),
        );
        let h2 = host(
            Some(3001),
            colour(Some("1"), "active", 3001),
            colour(Some("2"), "active", 3002),
        );
        let p = plan(
            &config(),
            &rel("2"),
            &[("h1".into(), h1), ("h2".into(), h2)],
            &[],
        )
        .unwrap();
        assert_eq!(p.steps[0].action, Action::AlreadyLive);
        assert_eq!(
            (p.steps[1].to, p.steps[1].action),
            (Colour::Green, Action::SwitchToWarm)
        );
        assert!(!p.is_noop());
    }

    fn with_history(mut s: HostState, entries: Vec<HistoryEntry>) -> HostState {
        s.history = entries;
        s
    }

    #[test]
    fn rollback_goes_to_the_previous_release_and_a_rollback_of_it_goes_forward() {
        let base = host(
            Some(3002),
            colour(Some("1"), "active", 3001),
            colour(Some("2"), "active", 3002),
        );
        let mut entries = vec![
            entry(1, "1", Outcome::Deployed),
            entry(2, "2", Outcome::Deployed),
        ];
        let hosts = vec![("h1".to_owned(), with_history(base.clone(), entries.clone()))];
        assert_eq!(
            rollback_target(&config(), &hosts, None)
                .unwrap()
                .release
                .release,
            "1"
        );
        // After the rollback, in the same second: blue (v1) is live and the history says so.
        let mut after = base.clone();
        after.upstream = Some(upstream(Some(Colour::Blue), 3001, Some(3002)));
        entries.push(entry(2, "1", Outcome::RolledBack));
        let hosts = vec![(
            "h1".to_owned(),
            with_history(after.clone(), entries.clone()),
        )];
        assert_eq!(
            rollback_target(&config(), &hosts, None)
                .unwrap()
                .release
                .release,
            "2",
            "a line of the same second sorts after the one before it"
        );
        // Failed deploys never count as releases to go back to.
        entries.push(entry(4, "3", Outcome::AutoRolledBack));
        entries.push(entry(5, "3", Outcome::FleetSplit));
        let hosts = vec![("h1".to_owned(), with_history(after, entries))];
        assert_eq!(
            rollback_target(&config(), &hosts, None)
                .unwrap()
                .release
                .release,
            "2"
        );
    }

    #[test]
    fn one_hosts_history_never_chooses_the_rollback_target() {
        let live = || {
            host(
                Some(3002),
                colour(Some("1"), "active", 3001),
                colour(Some("2"), "active", 3002),
            )
        };
        let honest = vec![
            entry(1, "1", Outcome::Deployed),
            entry(2, "2", Outcome::Deployed),
        ];
        // A forged line far in the future naming a release only this host has.
        let mut forged = honest.clone();
        forged.insert(0, entry(u64::MAX / 2, "6.6.6", Outcome::Deployed));
        let hosts = vec![
            ("h1".to_owned(), with_history(live(), honest.clone())),
            ("h2".to_owned(), with_history(live(), forged)),
        ];
        assert_eq!(
            rollback_target(&config(), &hosts, None)
                .unwrap()
                .release
                .release,
            "1",
            "file order, not a claimed time"
        );
        // Appended last, claiming to have gone live after what the host serves: the release
        // before the serving one is still the one that served before it.
        let mut appended = honest.clone();
        appended.push(entry(3, "6.6.6", Outcome::Deployed));
        let hosts = vec![
            ("h1".to_owned(), with_history(live(), honest.clone())),
            ("h2".to_owned(), with_history(live(), appended)),
        ];
        assert_eq!(
            rollback_target(&config(), &hosts, None)
                .unwrap()
                .release
                .release,
            "1"
        );
        assert!(matches!(
            rollback_target(&config(), &hosts, Some("6.6.6")),
            Err(PlanError::HostsDisagree { .. })
        ));
        // Same release name, another image on one host: refused, naming both.
        let mut other_image = honest.clone();
        other_image[0].image = "evil/a@sha256:666".into();
        let hosts = vec![
            ("h1".to_owned(), with_history(live(), honest)),
            ("h2".to_owned(), with_history(live(), other_image)),
        ];
        let Err(PlanError::HostsDisagree { choices, .. }) =
            rollback_target(&config(), &hosts, None)
        else {
            panic!("hosts that disagree must be refused");
        };
        assert_eq!(choices[0].release.as_ref().unwrap().image, "r/a:1@sha256:1");
        assert_eq!(
            choices[1].release.as_ref().unwrap().image,
            "evil/a@sha256:666"
        );
    }

    #[test]
    fn rollback_to_a_named_release() {
        let s = with_history(
            host(Some(3001), colour(Some("3.0.0+c"), "active", 3001), none()),
            vec![
                entry(1, "1.0.0+a", Outcome::Deployed),
                entry(2, "2.0.0+b", Outcome::Deployed),
                entry(3, "3.0.0+c", Outcome::Deployed),
            ],
        );
        let hosts = vec![("h1".to_owned(), s)];
        assert_eq!(
            rollback_target(&config(), &hosts, Some("1.0.0"))
                .unwrap()
                .release
                .release,
            "1.0.0+a"
        );
        assert_eq!(
            rollback_target(&config(), &hosts, Some("2.0.0+b"))
                .unwrap()
                .release
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

    /// v1 on blue (3001) warm as nginx's backup, v2 on green (3002) live; each colour answers
    /// with `blue`/`green` (`Some(0)`: no answer) and its unit is as given.
    fn backup_pair(blue: (&str, Option<u16>), green: (&str, Option<u16>)) -> HostState {
        let mut b = colour(Some("1"), blue.0, 3001);
        b.answers = blue.1;
        let mut g = colour(Some("2"), green.0, 3002);
        g.answers = green.1;
        HostState {
            upstream: Some(upstream(Some(Colour::Green), 3002, Some(3001))),
            blue: b,
            green: g,
            history: vec![
                entry(1, "1", Outcome::Deployed),
                entry(2, "2", Outcome::Deployed),
            ],
            ..HostState::default()
        }
    }

    #[test]
    fn users_get_the_backup_when_the_live_copy_does_not_answer() {
        use crate::state::Via;
        let healthy = backup_pair(("active", Some(200)), ("active", Some(200)));
        assert_eq!(healthy.serving().unwrap().1, Via::Primary);
        // Crashed (its unit failed), hung (running, no answer) or failing with 502: the
        // previous colour serves through nginx's backup.
        for green in [("failed", None), ("active", Some(0)), ("active", Some(502))] {
            let s = backup_pair(("active", Some(200)), green);
            let (live, via) = s.serving().unwrap();
            assert_eq!(
                (live.colour, live.port, via),
                (Colour::Blue, 3001, Via::Backup)
            );
            assert_eq!(s.live_release().unwrap().release, "1");
            assert_eq!(s.primary_release().unwrap().release, "2", "{green:?}");
        }
        // An app error (500) is still what users get from the live copy.
        let s = backup_pair(("active", Some(200)), ("active", Some(500)));
        assert_eq!(s.serving().unwrap().1, Via::Primary);
        // Neither answers: nothing serves.
        assert_eq!(
            backup_pair(("failed", None), ("active", Some(0))).serving(),
            None
        );
    }

    #[test]
    fn a_deploy_while_the_live_copy_is_down_starts_in_its_colour_never_the_serving_backup() {
        let s = backup_pair(("active", Some(200)), ("failed", None));
        let step = one(&config(), s, "3").unwrap();
        assert_eq!(
            (step.to, step.port, step.action),
            (Colour::Green, 3002, Action::StartAndSwitch),
            "blue serves through the backup line: untouched"
        );
        let from = step.from.unwrap();
        assert_eq!(
            (from.colour, from.via),
            (Colour::Blue, crate::state::Via::Backup)
        );
        assert!(step.why.unwrap().contains("does not answer"));
    }

    #[test]
    fn a_rollback_while_the_live_copy_is_down_makes_the_serving_backup_live_without_a_restart() {
        let s = backup_pair(("active", Some(200)), ("failed", None));
        let hosts = vec![("h1".to_owned(), s.clone())];
        let target = rollback_target(&config(), &hosts, None).unwrap();
        assert_eq!(
            target.release.release, "1",
            "the release before the live colour's, though its copy is down"
        );
        let p = plan(&config(), &target.release, &hosts, &[]).unwrap();
        assert_eq!(
            (p.steps[0].to, p.steps[0].port, p.steps[0].action),
            (Colour::Blue, 3001, Action::SwitchToWarm)
        );
        // The same when the live copy hangs instead.
        let s = backup_pair(("active", Some(200)), ("active", Some(0)));
        let p = plan(&config(), &rel("1"), &[("h1".to_owned(), s)], &[]).unwrap();
        assert_eq!(p.steps[0].action, Action::SwitchToWarm);
    }

    #[test]
    fn a_warm_copy_that_does_not_answer_is_started_again_not_switched_to() {
        let s = backup_pair(("active", Some(0)), ("active", Some(200)));
        let step = one(&config(), s, "1").unwrap();
        assert_eq!(
            (step.to, step.action),
            (Colour::Blue, Action::StartAndSwitch)
        );
    }

    #[test]
    fn changed_settings_name_what_changed_never_a_value() {
        let mut s = host(Some(3001), colour(Some("1"), "active", 3001), none());
        s.blue.settings = Settings::Differs;
        s.blue.changed = vec!["DATABASE_PASSWORD".into(), "units".into()];
        let step = one(&config(), s, "1").unwrap();
        assert_eq!(step.action, Action::StartAndSwitch);
        assert_eq!(
            step.why.as_deref(),
            Some("settings changed: `DATABASE_PASSWORD`, the units (volumes, limits or processes)")
        );
    }

    fn ran(mut e: HistoryEntry, run: &str) -> HistoryEntry {
        e.run = run.into();
        e
    }

    #[test]
    fn a_host_without_an_opinion_follows_the_fleet() {
        let old = || {
            with_history(
                host(
                    Some(3002),
                    colour(Some("2"), "active", 3001),
                    colour(Some("3"), "active", 3002),
                ),
                vec![
                    ran(entry(1, "1", Outcome::Deployed), "r1"),
                    ran(entry(2, "2", Outcome::Deployed), "r2"),
                    ran(entry(3, "3", Outcome::Deployed), "r3"),
                ],
            )
        };
        // Added (or rebuilt) for the last deploy: only the current release in its history.
        let new = with_history(
            host(Some(3002), none(), colour(Some("3"), "active", 3002)),
            vec![ran(entry(3, "3", Outcome::Deployed), "r3")],
        );
        let hosts = vec![
            ("h1".to_owned(), old()),
            ("h2".to_owned(), old()),
            ("h3".to_owned(), new.clone()),
        ];
        let t = rollback_target(&config(), &hosts, None).unwrap();
        assert_eq!(
            (t.release.release.as_str(), t.followers.as_slice()),
            ("2", &["h3".to_owned()][..])
        );
        let p = plan(&config(), &t.release, &hosts, &t.followers).unwrap();
        assert!(p.steps[2].follows);
        assert_eq!(p.steps[2].action, Action::StartAndSwitch);
        // With `--to`, any release some host retains: h3 joined after 1 went live.
        let t = rollback_target(&config(), &hosts, Some("1")).unwrap();
        assert_eq!(t.followers, ["h3"]);
        // Lost its state altogether: the same.
        let blank = host(Some(3002), none(), colour(Some("3"), "active", 3002));
        let hosts = vec![("h1".to_owned(), old()), ("h2".to_owned(), blank)];
        assert_eq!(
            rollback_target(&config(), &hosts, None).unwrap().followers,
            ["h2"]
        );
        // Nobody has an opinion: nothing to roll back to.
        let hosts = vec![("h3".to_owned(), new)];
        assert!(matches!(
            rollback_target(&config(), &hosts, None),
            Err(PlanError::NoPrevious { .. })
        ));
    }

    #[test]
    fn a_host_the_others_record_as_behind_follows_them() {
        let mut ahead = with_history(
            host(
                Some(3001),
                colour(Some("1"), "active", 3001),
                colour(Some("2"), "active", 3002),
            ),
            vec![
                ran(entry(1, "1", Outcome::Deployed), "r1"),
                ran(entry(2, "2", Outcome::Deployed), "r2"),
                ran(entry(3, "1", Outcome::RolledBack), "r3"),
            ],
        );
        ahead.behind = vec![crate::state::Behind {
            host: "h3".into(),
            release: "1".into(),
            command: "rollback".into(),
            run: "r3".into(),
        }];
        // h3 was down during the rollback: it still serves 2 and its history ends there.
        let behind = with_history(
            host(
                Some(3002),
                colour(Some("1"), "active", 3001),
                colour(Some("2"), "active", 3002),
            ),
            vec![
                ran(entry(1, "1", Outcome::Deployed), "r1"),
                ran(entry(2, "2", Outcome::Deployed), "r2"),
            ],
        );
        let hosts = vec![
            ("h1".to_owned(), ahead.clone()),
            ("h2".to_owned(), ahead),
            ("h3".to_owned(), behind),
        ];
        let t = rollback_target(&config(), &hosts, Some("1")).unwrap();
        assert_eq!(t.followers, ["h3"]);
        let p = plan(&config(), &t.release, &hosts, &t.followers).unwrap();
        assert_eq!(
            p.steps.iter().map(|s| s.action).collect::<Vec<_>>(),
            [
                Action::AlreadyLive,
                Action::AlreadyLive,
                Action::SwitchToWarm
            ]
        );
    }

    #[test]
    fn a_host_that_was_there_and_remembers_otherwise_is_not_a_follower() {
        // h2 was part of run r1 and r2 but has no 6.6.6: it disagrees, it does not follow.
        let live = || {
            host(
                Some(3002),
                colour(Some("1"), "active", 3001),
                colour(Some("2"), "active", 3002),
            )
        };
        let honest = vec![
            ran(entry(1, "1", Outcome::Deployed), "r1"),
            ran(entry(2, "2", Outcome::Deployed), "r2"),
        ];
        let mut forged = honest.clone();
        forged.push(ran(entry(3, "6.6.6", Outcome::Deployed), "rX"));
        let hosts = vec![
            ("h1".to_owned(), with_history(live(), honest)),
            ("h2".to_owned(), with_history(live(), forged)),
        ];
        assert!(matches!(
            rollback_target(&config(), &hosts, Some("6.6.6")),
            Err(PlanError::HostsDisagree { .. })
        ));
    }

    #[test]
    fn nothing_to_roll_back_to() {
        let s = with_history(
            host(Some(3001), colour(Some("1"), "active", 3001), none()),
            vec![entry(1, "1", Outcome::Deployed)],
        );
        assert_eq!(
            rollback_target(&config(), &[("h1".to_owned(), s)], None),
            Err(PlanError::NoPrevious {
                current: Some("1".into())
            })
        );
    }

    #[test]
    fn pruning_keeps_retained_and_running_images() {
        let s = with_history(
            host(
                Some(3001),
                colour(Some("7"), "active", 3001),
                colour(Some("6"), "active", 3002),
            ),
            (1..=7)
                .map(|i| entry(i, &i.to_string(), Outcome::Deployed))
                .collect(),
        );
        let keep = retained_images(&config(), &s, &rel("8"), &rel("8").image);
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
        // Sent over SSH to an engine with containerd's store: each release also by the ID the
        // host runs it by, as its history and its colours recorded it.
        let mut s = s;
        for e in &mut s.history {
            e.image = format!("sha256:c{}", e.release);
            e.runs = Some(format!("sha256:m{}", e.release));
        }
        for c in [&mut s.blue, &mut s.green] {
            let r = c.release.as_mut().unwrap();
            r.image = format!("sha256:c{}", r.release);
            c.runs = Some(format!("sha256:m{}", r.release));
        }
        let target = ReleaseRef {
            release: "8".into(),
            image: "sha256:c8".into(),
        };
        let keep = retained_images(&config(), &s, &target, "sha256:m8");
        let mut want: Vec<String> = (4..=8)
            .flat_map(|i| [format!("sha256:c{i}"), format!("sha256:m{i}")])
            .collect();
        want.sort();
        assert_eq!(keep, want);
        assert_eq!(
            by_digest("reg.test:5000/x/app:1.0.0_ab@sha256:12").as_deref(),
            Some("reg.test:5000/x/app@sha256:12")
        );
        assert_eq!(by_digest("app@sha256:12").as_deref(), Some("app@sha256:12"));
        assert_eq!(by_digest("app:1"), None);
    }
}
