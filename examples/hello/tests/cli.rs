//! The `hello` binary as shipit runs it (`docker run ... <image> <args>`): exit codes, output
//! lines and signals, against a temporary store. No Docker needed.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh store directory, removed on drop.
struct Store(PathBuf);

impl Store {
    fn new(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("hello-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store(dir)
    }

    /// `hello <args>` with only `HELLO_DATA` and `vars` in its environment.
    fn hello(&self, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hello"));
        command
            .args(args)
            .env_clear()
            .env("HELLO_DATA", &self.0)
            .envs(vars.iter().copied());
        command
    }

    fn run(&self, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
        let Output {
            status,
            stdout,
            stderr,
        } = self.hello(args, vars).output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (status.code().unwrap(), text(stdout), text(stderr))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exit_within(child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    output
}

#[test]
fn migrate_exit_codes() {
    let s = Store::new("migrate");
    let release = ("SHIPIT_RELEASE", "2.0.0");
    assert_eq!(
        s.run(&["migrate"], &[release]),
        (0, "migrated 0 -> 1 by 2.0.0\n".into(), String::new())
    );
    let (code, _, err) = s.run(&["migrate"], &[("HELLO_SCHEMA", "0")]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with("hello migrate: refusing to migrate down from schema 1 to 0"),
        "{err}"
    );
    let (code, _, err) = s.run(
        &["migrate"],
        &[("HELLO_SCHEMA", "2"), ("HELLO_MIGRATE_FAIL", "1")],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "hello migrate: migration 1 -> 2 failed, as HELLO_MIGRATE_FAIL=1 asks: nothing changed\n"
        )
    );
    assert_eq!(std::fs::read_to_string(s.path("schema")).unwrap(), "1\n");
    let (code, _, err) = s.run(&["migrate"], &[("HELLO_DATA", "/nonexistent/hello")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`/nonexistent/hello` is not a directory: mount it"),
        "{err}"
    );
}

#[test]
fn an_interrupted_migration_changes_nothing() {
    let s = Store::new("migrate-sigterm");
    let mut child = s
        .hello(&["migrate"], &[("HELLO_MIGRATE_SLEEP", "30")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Printed once SIGTERM is handled.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "HELLO_MIGRATE_SLEEP=30: waiting before migrating\n");
    terminate(&child);
    let output = exit_within(child, Duration::from_secs(1));
    assert_eq!(output.status.code(), Some(143));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "hello migrate: interrupted by SIGTERM: nothing changed\n"
    );
    assert!(!s.path("schema").exists());
}

#[test]
fn a_worker_works_until_sigterm() {
    let s = Store::new("worker");
    let vars = [("SHIPIT_RELEASE", "2.0.0"), ("SHIPIT_COLOUR", "blue")];
    let mut child = s
        .hello(&["worker"], &vars)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line, "worker 2.0.0 started\n",
        "printed once SIGTERM is handled"
    );
    // As a producer would: written under a hidden name, which workers skip, then renamed.
    std::fs::write(s.path("queue/.job-1"), "x").unwrap();
    std::fs::rename(s.path("queue/.job-1"), s.path("queue/job-1")).unwrap();
    wait_for("done/job-1", || s.path("done/job-1").exists());
    assert_eq!(s.run(&["worker", "--check"], &[]).0, 0);
    terminate(&child);
    let started = Instant::now();
    assert!(child.wait().unwrap().success());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(
        rest,
        "job-1 done by 2.0.0 (blue)\nworker 2.0.0 stopping (SIGTERM)\n"
    );
    let store = s.run(&["store"], &[]).1;
    let expected = r#"{"done":1,"files":["done/job-1","worker.log"],"queue":0,"schema":0}"#;
    assert_eq!(store, format!("{expected}\n"));
}

#[test]
fn a_failing_worker_crashes_after_a_second() {
    let s = Store::new("worker-fail");
    let started = Instant::now();
    let (code, out, err) = s.run(&["worker"], &[("HELLO_WORKER_FAIL", "1")]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!((code, out.as_str()), (1, "worker 1.0.0 started\n"));
    assert_eq!(
        err,
        "hello worker: crashing 1 s after start, as HELLO_WORKER_FAIL=1 asks\n"
    );
}

#[test]
fn jobs_backups_and_usage() {
    let s = Store::new("misc");
    let (code, out, _) = s.run(&["job", "nightly"], &[("SHIPIT_RELEASE", "2.0.0")]);
    assert_eq!(code, 0);
    assert!(out.ends_with(" job nightly ran release 2.0.0\n"), "{out}");
    assert_eq!(s.run(&["job", "fail"], &[]).0, 1);
    assert_eq!(s.run(&["backup"], &[]).0, 2);
    let file = s.path("backups/one");
    let file = ("SHIPIT_BACKUP_FILE", file.to_str().unwrap());
    let (code, out, _) = s.run(&["backup"], &[file]);
    assert_eq!(code, 0);
    assert!(out.starts_with("backed up 1 files ("), "{out}");
    std::fs::write(s.path("jobs.log"), "changed").unwrap();
    assert_eq!(
        s.run(&["restore"], &[file]),
        (0, "restored 1 files\n".into(), String::new())
    );
    assert!(
        std::fs::read_to_string(s.path("jobs.log"))
            .unwrap()
            .contains("job nightly")
    );
    let (code, _, err) = s.run(&["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("hello frobnicate: unexpected arguments"),
        "{err}"
    );
}
