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

/// The variables of a `.env` file, read with dotenvy (the syntax of docker compose and most
/// tools: `#` comments, `export `, quotes; `$VAR` is expanded in unquoted and double-quoted
/// values, so a literal `$` goes in single quotes). Returns the 1-based line of the first bad
/// line and what is wrong with it.
fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle.trim()))
            .map_or(1, |i| i + 1)
    };
    let mut out = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (key, value) = item.map_err(|e| match e {
            dotenvy::Error::LineParse(line, at) => (
                line_of(&line),
                format!("cannot read `KEY=value` here (at character {})", at + 1),
            ),
            other => (1, other.to_string()),
        })?;
        if !crate::config::is_env_name(&key) {
            return Err((line_of(&key), format!("`{key}` is not a variable name")));
        }
        out.insert(key, value);
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
        let m = parse_dotenv(
            "# c\nA=1\nexport B=\"two words\"\nC='x=y'\nD='p4$$w0rd'\nE=\"${A}-x\"\n\n",
        )
        .unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(m["D"], "p4$$w0rd", "single quotes keep `$`");
        assert_eq!(m["E"], "1-x", "double quotes expand");
        assert_eq!(parse_dotenv("A=1\nnope here\n").unwrap_err().0, 2);
    }
}
