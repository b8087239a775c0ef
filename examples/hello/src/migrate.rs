//! `hello migrate`: the release command. The store's schema version is the file `schema`
//! (absent: 0); migrating writes the target version (`HELLO_SCHEMA`, default 1) atomically,
//! then appends `<unix-time> migrated <from> -> <to> by <release>` to `migrations.log`.
//! Forward only: a target below the store's version is refused and changes nothing.

use std::time::Duration;

use crate::env::Env;
use crate::failure::Failure;
use crate::store::{self, Store};

#[derive(Debug)]
pub struct Options {
    pub target: u32,
    /// `HELLO_MIGRATE_FAIL=1`: fail without changing anything.
    pub fail: bool,
    /// `HELLO_MIGRATE_SLEEP=<s>`: wait that long first.
    pub sleep: Option<Duration>,
}

impl Options {
    pub fn from_env(env: &Env) -> Result<Options, Failure> {
        Ok(Options {
            target: env
                .parse("HELLO_SCHEMA", "a schema version (0, 1, 2 ...)")?
                .unwrap_or(1),
            fail: env.flag("HELLO_MIGRATE_FAIL")?,
            sleep: env.seconds("HELLO_MIGRATE_SLEEP")?,
        })
    }
}

pub fn run(env: &Env) -> Result<(), Failure> {
    let options = Options::from_env(env)?;
    let store = Store::open(env.data_dir())?;
    if let Some(sleep) = options.sleep {
        crate::runtime()?.block_on(async {
            let stop = crate::stop_signal();
            println!(
                "HELLO_MIGRATE_SLEEP={}: waiting before migrating",
                sleep.as_secs_f64()
            );
            tokio::select! {
                (signal, number) = stop => Err(Failure::Interrupted { signal, number }),
                () = tokio::time::sleep(sleep) => Ok(()),
            }
        })?;
    }
    let line = migrate(&store, &options, &env.release(), store::unix_time())?;
    println!("{line}");
    Ok(())
}

/// Migrates `store` to `options.target` and returns what to print. `options.sleep` is the
/// caller's business.
pub fn migrate(
    store: &Store,
    options: &Options,
    release: &str,
    now: u64,
) -> Result<String, Failure> {
    let (from, to) = (store.schema()?, options.target);
    if to < from {
        return Err(Failure::Downgrade {
            current: from,
            target: to,
        });
    }
    if options.fail {
        return Err(Failure::Asked(format!(
            "migration {from} -> {to} failed, as HELLO_MIGRATE_FAIL=1 asks: nothing changed"
        )));
    }
    if to == from {
        return Ok(format!("schema already at {to}: nothing to migrate"));
    }
    store::write_atomic(&store.path("schema"), format!("{to}\n").as_bytes())?;
    let line = format!("migrated {from} -> {to} by {release}");
    store::append_line(&store.path("migrations.log"), &format!("{now} {line}"))?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TempStore;

    fn to(target: u32) -> Options {
        Options {
            target,
            fail: false,
            sleep: None,
        }
    }

    #[test]
    fn migrates_up_once_and_logs_it() {
        let t = TempStore::new("migrate-up");
        assert_eq!(
            migrate(&t.0, &to(1), "2.0.0", 100).unwrap(),
            "migrated 0 -> 1 by 2.0.0"
        );
        assert_eq!(
            migrate(&t.0, &to(1), "2.0.0", 101).unwrap(),
            "schema already at 1: nothing to migrate"
        );
        assert_eq!(
            migrate(&t.0, &to(3), "2.1.0", 102).unwrap(),
            "migrated 1 -> 3 by 2.1.0"
        );
        assert_eq!(t.read("schema"), "3\n");
        assert_eq!(
            t.read("migrations.log"),
            "100 migrated 0 -> 1 by 2.0.0\n102 migrated 1 -> 3 by 2.1.0\n"
        );
        assert_eq!(
            t.0.files().unwrap(),
            ["migrations.log", "schema"],
            "no temporary file left"
        );
    }

    #[test]
    fn refuses_to_go_down() {
        let t = TempStore::new("migrate-down");
        t.write("schema", "2\n");
        let e = migrate(&t.0, &to(1), "1.0.0", 100).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.to_string()
                .starts_with("refusing to migrate down from schema 2 to 1"),
            "{e}"
        );
        assert_eq!(t.read("schema"), "2\n");
        assert_eq!(t.0.files().unwrap(), ["schema"]);
    }

    #[test]
    fn the_fail_flag_changes_nothing() {
        let t = TempStore::new("migrate-fail");
        let options = Options {
            fail: true,
            ..to(1)
        };
        let e = migrate(&t.0, &options, "1.0.0", 100).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "migration 0 -> 1 failed, as HELLO_MIGRATE_FAIL=1 asks: nothing changed"
        );
        assert_eq!(t.0.files().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn options_come_from_the_environment() {
        let o = Options::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!((o.target, o.fail, o.sleep), (1, false, None));
        let env = Env::from_pairs(&[
            ("HELLO_SCHEMA", "4"),
            ("HELLO_MIGRATE_FAIL", "1"),
            ("HELLO_MIGRATE_SLEEP", "0.5"),
        ]);
        let o = Options::from_env(&env).unwrap();
        assert_eq!(
            (o.target, o.fail, o.sleep),
            (4, true, Some(Duration::from_millis(500)))
        );
        let e = Options::from_env(&Env::from_pairs(&[("HELLO_SCHEMA", "-1")])).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (
                2,
                "HELLO_SCHEMA=\"-1\" is not a schema version (0, 1, 2 ...)"
            )
        );
        let e = Options::from_env(&Env::from_pairs(&[("HELLO_MIGRATE_FAIL", "yes")])).unwrap_err();
        assert_eq!(e.to_string(), "HELLO_MIGRATE_FAIL=\"yes\": expected 1 or 0");
    }
}
