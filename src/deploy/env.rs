//! The container's environment: the clear values, the secrets, and what shipit tells the app
//! about itself. Pure.
//!
//! Owns: the text of a colour's app env file (it lands on hosts only at mode 0600, sent on
//! stdin), and the settings the host compares with each colour's file to tell whether a warm
//! copy still has this deploy's settings. Nothing derived from a secret value is computed here
//! or anywhere else on the deployer: the host compares, and only says `same` or `differs`.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::Error;
use crate::model::Colour;
use crate::secret::Secrets;
use crate::state::ReleaseRef;

/// The app's own settings (clear values and secrets), sorted by name; fails, naming them, if
/// secrets are missing or unusable.
fn settings(config: &Config, secrets: &Secrets) -> Result<BTreeMap<String, String>, Error> {
    let mut lines: BTreeMap<String, String> = config.env.clear.clone();
    let mut missing = Vec::new();
    for name in &config.env.secret {
        match secrets.get(name) {
            Some((value, _)) if !value.expose().contains(['\n', '\r', '\0']) => {
                lines.insert(name.clone(), value.expose().to_owned());
            }
            Some(_) => missing.push(format!("{name} (contains a line break)")),
            None => missing.push(name.clone()),
        }
    }
    // Where each accessory is, composed from its settings and secrets (never printed).
    for a in &config.accessories {
        let secret = |name: &str| {
            a.env
                .secret
                .iter()
                .any(|s| s == name)
                .then(|| secrets.get(name).map(|(v, _)| v.expose().to_owned()))
                .flatten()
        };
        match a.url_value(secret) {
            None => {}
            Some(Ok((name, value))) if !value.contains(['\n', '\r', '\0']) => {
                lines.insert(name, value);
            }
            Some(Ok((name, _))) => missing.push(format!("{name} (contains a line break)")),
            Some(Err(names)) => missing.extend(
                names
                    .into_iter()
                    .map(|n| format!("{n} (for accessories.{}.url)", a.name)),
            ),
        }
    }
    if missing.is_empty() {
        Ok(lines)
    } else {
        Err(Error::MissingSecrets {
            names: missing,
            dotenv: Some(config.app_dir.join(".env")),
        })
    }
}

fn render(lines: &BTreeMap<String, String>) -> String {
    lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The app env file of one colour: the settings plus `SHIPIT_RELEASE`, `SHIPIT_COLOUR` and
/// `SHIPIT_ENVIRONMENT`.
pub fn app_env(
    config: &Config,
    secrets: &Secrets,
    release: &ReleaseRef,
    colour: Colour,
) -> Result<String, Error> {
    let mut lines = settings(config, secrets)?;
    lines.insert("SHIPIT_RELEASE".into(), release.release.clone());
    lines.insert("SHIPIT_COLOUR".into(), colour.to_string());
    lines.insert("SHIPIT_ENVIRONMENT".into(), config.environment.clone());
    Ok(render(&lines))
}

/// What the host compares with a colour's app env file, its `SHIPIT_*` lines left out: the
/// settings alone, in the same order. Sent on stdin; the host answers `same` or `differs`.
pub fn settings_text(config: &Config, secrets: &Secrets) -> Result<String, Error> {
    Ok(render(&settings(config, secrets)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compared_settings_are_the_env_file_without_its_shipit_lines() {
        let config = crate::config::validate_for_tests(
            "app = \"a\"\nimage = \"r/a\"\nversion = \"1.0.0\"\n[env]\nclear = { ZED = \"1\", ALPHA = \"x=y\" }\n",
            "domain = \"a.test\"\nhosts = [\"h1\"]\n",
        )
        .unwrap();
        let secrets = Secrets::default();
        let release = ReleaseRef {
            release: "1.0.0+a".into(),
            image: "i".into(),
        };
        let file = app_env(&config, &secrets, &release, Colour::Green).unwrap();
        let kept: String = file
            .lines()
            .filter(|l| !l.starts_with("SHIPIT_"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(kept, settings_text(&config, &secrets).unwrap());
        assert_eq!(kept, "ALPHA=x=y\nZED=1\n");
        assert!(file.contains("SHIPIT_COLOUR=green\n"));
    }
}
