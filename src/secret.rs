//! Secret values: a type that never prints its content, and where values come from.
//!
//! Owns: reading secrets from the deployer's environment or the `.env` file beside
//! `shipit.toml`. Must not: log, display or serialize a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::Error;

/// A value that prints as `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (stdin of a remote command,
    /// an env file written at mode 0600).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where a secret's value was found, for messages that must say which source was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Environment(String),
    DotEnv(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Environment(name) => write!(f, "environment variable `{name}`"),
            Source::DotEnv(name) => write!(f, "`{name}` in .env"),
        }
    }
}

/// The deployer's secret sources: the process environment, then `.env` beside shipit.toml.
#[derive(Default)]
pub struct Secrets {
    dotenv: BTreeMap<String, String>,
}

impl Secrets {
    /// The files shipit reads secrets from in `app_dir`: never part of a build context.
    pub fn files(app_dir: &Path) -> Vec<std::path::PathBuf> {
        vec![app_dir.join(".env")]
    }

    pub fn load(app_dir: &Path) -> Result<Secrets, Error> {
        let path = app_dir.join(".env");
        let dotenv = match std::fs::read_to_string(&path) {
            Ok(text) => parse_dotenv(&text).map_err(|(line, message)| Error::DotEnv {
                path: path.clone(),
                line,
                message,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(Error::Read { path, source }),
        };
        Ok(Secrets { dotenv })
    }

    /// The value of `name`, and where it came from.
    pub fn get(&self, name: &str) -> Option<(Secret, Source)> {
        if let Some(v) = std::env::var_os(name).and_then(|v| v.into_string().ok()) {
            return Some((Secret(v), Source::Environment(name.to_owned())));
        }
        self.dotenv
            .get(name)
            .map(|v| (Secret(v.clone()), Source::DotEnv(name.to_owned())))
    }
}

/// `KEY=value` lines; `#` comments, blank lines, optional `export `, and single or double
/// quotes around a value. Returns the 1-based line of the first bad line.
fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, "expected `KEY=value`".into()));
        };
        let key = key.trim();
        if !crate::config::is_env_name(key) {
            return Err((i + 1, format!("`{key}` is not a variable name")));
        }
        let value = value.trim();
        let value = match (value.chars().next(), value.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if q == e && value.len() >= 2 => {
                &value[1..value.len() - 1]
            }
            _ => value,
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn dotenv_lines() {
        let m = parse_dotenv("# c\nA=1\nexport B = \"two words\"\nC='x=y'\n\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(parse_dotenv("A=1\nnope\n").unwrap_err().0, 2);
    }
}
