//! `hello job <name>`: a scheduled job. It appends `<unix-time> job <name> ran release
//! <release>` to `jobs.log` and prints the same line; the job named `fail` fails instead.

use crate::failure::Failure;
use crate::store::{self, Store};

/// A job name is one word, as it goes into a log line; the error says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "job name {name:?}: expected one word, such as `nightly`"
        ))
    } else {
        Ok(())
    }
}

/// Runs job `name` and returns the line to print.
pub fn run(store: &Store, name: &str, release: &str, now: u64) -> Result<String, Failure> {
    if name == "fail" {
        return Err(Failure::Asked("job `fail` failed, as its name asks".into()));
    }
    let line = format!("{now} job {name} ran release {release}");
    store::append_line(&store.path("jobs.log"), &line)?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TempStore;

    #[test]
    fn a_job_appends_its_line() {
        let t = TempStore::new("job");
        assert_eq!(
            run(&t.0, "nightly", "2.0.0", 100).unwrap(),
            "100 job nightly ran release 2.0.0"
        );
        assert_eq!(
            run(&t.0, "hourly", "2.0.1", 160).unwrap(),
            "160 job hourly ran release 2.0.1"
        );
        assert_eq!(
            t.read("jobs.log"),
            "100 job nightly ran release 2.0.0\n160 job hourly ran release 2.0.1\n"
        );
    }

    #[test]
    fn the_job_named_fail_fails_and_logs_nothing() {
        let t = TempStore::new("job-fail");
        assert_eq!(run(&t.0, "fail", "2.0.0", 100).unwrap_err().exit_code(), 1);
        assert!(t.0.files().unwrap().is_empty());
    }

    #[test]
    fn names_are_one_word() {
        assert!(check_name("nightly-report").is_ok());
        for bad in ["", "two words", "new\nline"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
