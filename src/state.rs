//! What a host holds about an app's releases, and how it is read. Pure.
//!
//! The hosts hold the truth: the upstream include says which colour nginx serves, each
//! colour's unit env file says which release that colour runs, the lock directory says who is
//! deploying, and the append-only history says what happened. Owns: parsing the answer to
//! [`crate::remote::scripts::DEPLOY_STATE`], the lock details and history line formats.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::Colour;

/// A release as it runs in a colour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// Semver with build metadata, such as `1.4.2+3f9c2ab`.
    pub release: String,
    /// Image reference pinned by digest, `registry/app:tag@sha256:...`.
    pub image: String,
    /// A hash of the container's environment (values included, so a changed setting or secret
    /// makes a new copy); empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

/// One colour on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColourState {
    pub release: Option<ReleaseRef>,
    /// `systemctl is-active`: `active`, `inactive`, `failed`, `activating`...
    pub unit: String,
}

impl ColourState {
    pub fn running(&self) -> bool {
        self.unit == "active"
    }
}

/// Who holds the environment lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique per shipit run.
    pub id: String,
    pub user: String,
    pub machine: String,
    /// Identifies the machine beyond its name (`/etc/machine-id`), to tell a dead local holder.
    #[serde(default)]
    pub machine_id: String,
    pub pid: u32,
    /// Unix seconds.
    pub since: u64,
    pub command: String,
    pub version: String,
}

impl LockInfo {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a history line says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A deploy that switched traffic and passed verification.
    Deployed,
    /// `shipit rollback` switched traffic to an earlier release.
    RolledBack,
    /// A deploy that failed and was undone by shipit (reason says why).
    AutoRolledBack,
    /// A deploy that failed before any switch: nothing changed for users.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix seconds.
    pub time: u64,
    pub release: String,
    pub image: String,
    pub colour: Colour,
    pub user: String,
    pub machine: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HistoryEntry {
    /// Whether traffic ended on this release.
    pub fn went_live(&self) -> bool {
        matches!(self.outcome, Outcome::Deployed | Outcome::RolledBack)
    }
}

/// Everything read from one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// The upstream include's text; `None` when the host was never provisioned.
    pub upstream: Option<String>,
    pub blue: ColourState,
    pub green: ColourState,
    pub lock: Option<LockInfo>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    pub nginx_active: bool,
}

impl HostState {
    pub fn colour(&self, c: Colour) -> &ColourState {
        match c {
            Colour::Blue => &self.blue,
            Colour::Green => &self.green,
        }
    }

    /// The colour nginx sends traffic to, from the upstream include and the colours' ports.
    pub fn live(&self, config: &Config) -> Option<Colour> {
        let port = crate::templates::upstream_live_port(self.upstream.as_deref()?)?;
        [Colour::Blue, Colour::Green]
            .into_iter()
            .find(|c| config.port_of(*c) == port)
    }

    /// The release nginx serves, if its colour runs one.
    pub fn live_release(&self, config: &Config) -> Option<&ReleaseRef> {
        let live = self.live(config)?;
        let c = self.colour(live);
        if c.running() {
            c.release.as_ref()
        } else {
            None
        }
    }
}

/// Parse the answer to `DEPLOY_STATE`.
pub fn parse_state(stdout: &str) -> Result<HostState, String> {
    let mut state = HostState::default();
    let decode = |v: &str| -> Result<Option<String>, String> {
        if v == "-" {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| format!("bad base64: {e}"))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let mut seen = 0;
    for line in stdout.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        seen += 1;
        match key {
            "upstream" => state.upstream = decode(value)?,
            "env-blue" => state.blue.release = decode(value)?.and_then(|t| parse_unit_env(&t)),
            "env-green" => state.green.release = decode(value)?.and_then(|t| parse_unit_env(&t)),
            "active-blue" => state.blue.unit = value.to_owned(),
            "active-green" => state.green.unit = value.to_owned(),
            "lock" => {
                state.lock = decode(value)?.and_then(|t| serde_json::from_str(t.trim()).ok());
            }
            "history" => {
                state.history = decode(value)?
                    .map(|t| {
                        t.lines()
                            .filter_map(|l| serde_json::from_str(l).ok())
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "nginx" => state.nginx_active = value == "active",
            _ => return Err(format!("unexpected line `{line}`")),
        }
    }
    if seen != 8 {
        return Err(format!("expected 8 lines, got {seen}"));
    }
    Ok(state)
}

/// The unit env file of a colour: `SHIPIT_IMAGE`, `SHIPIT_RELEASE`, `SHIPIT_PORT`.
pub fn unit_env(release: &ReleaseRef, port: u16, colour: Colour) -> Vec<String> {
    vec![
        format!("SHIPIT_IMAGE={}", release.image),
        format!("SHIPIT_RELEASE={}", release.release),
        format!("SHIPIT_PORT={port}"),
        format!("SHIPIT_COLOUR={colour}"),
        format!("SHIPIT_CONFIG={}", release.config),
    ]
}

fn parse_unit_env(text: &str) -> Option<ReleaseRef> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some(ReleaseRef {
        release: get("SHIPIT_RELEASE")?,
        image: get("SHIPIT_IMAGE")?,
        config: get("SHIPIT_CONFIG").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_a_host_answer() {
        let env =
            "SHIPIT_IMAGE=r/a:1.0.0_abc@sha256:00\nSHIPIT_RELEASE=1.0.0+abc\nSHIPIT_PORT=3001\n";
        let lock = r#"{"id":"x","user":"alice","machine":"laptop","pid":1,"since":5,"command":"deploy","version":"1.0.0"}"#;
        let hist = r#"{"time":1,"release":"1.0.0+abc","image":"r/a:1","colour":"blue","user":"a","machine":"m","outcome":"deployed"}"#;
        let out = format!(
            "upstream {}\nenv-blue {}\nenv-green -\nactive-blue active\nactive-green inactive\nlock {}\nhistory {}\nnginx active\n",
            b64("server 127.0.0.1:3001 max_fails=1 fail_timeout=2s;\n"),
            b64(env),
            b64(lock),
            b64(&format!("{hist}\nnot json\n")),
        );
        let s = parse_state(&out).unwrap();
        assert_eq!(s.blue.release.as_ref().unwrap().release, "1.0.0+abc");
        assert!(s.blue.running() && !s.green.running());
        assert_eq!(s.green.release, None);
        assert_eq!(s.lock.unwrap().user, "alice");
        assert_eq!(s.history.len(), 1, "a corrupt line is skipped, not fatal");
        assert!(s.nginx_active);
        assert!(parse_state("upstream -\n").is_err());
    }

    #[test]
    fn unit_env_round_trips() {
        let r = ReleaseRef {
            release: "2.0.0+x".into(),
            image: "i@sha256:1".into(),
            config: "abc".into(),
        };
        let text = unit_env(&r, 3002, Colour::Green).join("\n");
        assert_eq!(parse_unit_env(&text), Some(r));
    }
}
