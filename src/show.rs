//! Printing the merged configuration for `shipit config`, with secret values left out.

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::secret::Secrets;

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    config: &'a Config,
    /// Per secret: where its value comes from, or that it is missing. Never the value.
    secrets: std::collections::BTreeMap<String, String>,
}

pub fn config(config: &Config, json: bool) -> Result<String, Error> {
    let secrets = secrets(config)?
        .into_iter()
        .map(|s| {
            let state = s.source.map_or_else(
                || "missing".to_owned(),
                |src| format!("[REDACTED] from {src}"),
            );
            (s.name, state)
        })
        .collect();
    let shown = Shown { config, secrets };
    let internal = |source: Box<dyn std::error::Error + Send + Sync>| Error::Internal {
        context: "printing the configuration".into(),
        source,
    };
    if json {
        serde_json::to_string_pretty(&shown)
            .map(|s| s + "\n")
            .map_err(|e| internal(e.into()))
    } else {
        toml::to_string(&shown).map_err(|e| internal(e.into()))
    }
}

/// One secret the configuration needs, and where its value comes from (never the value).
#[derive(Debug, Serialize)]
pub struct SecretState {
    pub name: String,
    /// `None` when it is missing.
    pub source: Option<String>,
}

impl crate::ui::Render for SecretState {
    fn text(&self) -> String {
        match &self.source {
            Some(src) => format!("{}: set, from {src}\n", self.name),
            None => format!("{}: MISSING\n", self.name),
        }
    }
}

/// `shipit secrets check`'s verdict: every secret set, or the missing ones named.
pub fn secrets_verdict(states: &[SecretState]) -> Result<(), Error> {
    let missing: Vec<String> = states
        .iter()
        .filter(|s| s.source.is_none())
        .map(|s| s.name.clone())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingSecrets {
            names: missing,
            dotenv: None,
        })
    }
}

/// Every secret `config` needs: the container's and the registry password.
pub fn secrets(config: &Config) -> Result<Vec<SecretState>, Error> {
    let sources = Secrets::load(&config.app_dir)?;
    let mut names: Vec<&str> = config.env.secret.iter().map(String::as_str).collect();
    if let Some(r) = &config.registry {
        names.push(&r.password_env);
    }
    Ok(names
        .into_iter()
        .map(|name| SecretState {
            name: name.to_owned(),
            source: sources.get(name).map(|(_, source)| source.to_string()),
        })
        .collect())
}
