//! [`Env`]: the process environment as hello reads it, through one function so that tests can
//! pass their own variables instead of changing the process's. An empty value counts as unset.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::failure::Failure;

/// A variable's value by name.
type Lookup = dyn Fn(&str) -> Option<String>;

pub struct Env {
    get: Box<Lookup>,
}

impl Env {
    /// The process's environment (a variable that is not UTF-8 counts as unset).
    pub fn process() -> Env {
        Env {
            get: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Exactly these variables.
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env {
            get: Box::new(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    /// A value parsed as `T`; `what` names the kind of value for the error ("a port number").
    pub fn parse<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, Failure> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| Failure::Usage(format!("{name}={v:?} is not {what}")))
            })
            .transpose()
    }

    /// `1` or `0`; unset is `0`.
    pub fn flag(&self, name: &str) -> Result<bool, Failure> {
        match self.get(name).as_deref().map(str::trim) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(Failure::Usage(format!("{name}={other:?}: expected 1 or 0"))),
        }
    }

    pub fn seconds(&self, name: &str) -> Result<Option<Duration>, Failure> {
        let seconds: Option<f64> = self.parse(name, "a number of seconds")?;
        seconds
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| Failure::Usage(format!("{name}={s} is not a number of seconds")))
            })
            .transpose()
    }

    /// The store: `HELLO_DATA`, else `/data`.
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.get("HELLO_DATA").unwrap_or_else(|| "/data".to_owned()))
    }

    /// The release this process runs: `SHIPIT_RELEASE`, else `APP_VERSION`, else the crate's.
    pub fn release(&self) -> String {
        self.get("SHIPIT_RELEASE")
            .or_else(|| self.get("APP_VERSION"))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
    }

    /// `SHIPIT_COLOUR`: `blue` or `green` under shipit.
    pub fn colour(&self) -> Option<String> {
        self.get("SHIPIT_COLOUR")
    }
}
