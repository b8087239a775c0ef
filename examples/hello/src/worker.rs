//! `hello worker`: the queue consumer. Every 200 ms it moves each file of `queue/` to `done/`
//! and appends `<unix-time> <name> done by <release> (<colour>)` to `worker.log`, until
//! SIGTERM or SIGINT. Several workers may share a queue (blue and green during a deploy): each
//! file is moved by a rename, which exactly one of them wins. `hello worker --check` is the
//! readiness check shipit runs in the container: is the queue there and writable?

use std::fs;
use std::io::ErrorKind;
use std::time::Duration;

use crate::env::Env;
use crate::failure::Failure;
use crate::store::{self, DONE, QUEUE, Store};

const TICK: Duration = Duration::from_millis(200);

pub fn run(env: &Env) -> Result<(), Failure> {
    let fail = env.flag("HELLO_WORKER_FAIL")?;
    let store = Store::open(env.data_dir())?;
    let (release, colour) = (env.release(), env.colour().unwrap_or_else(|| "none".into()));
    for sub in [QUEUE, DONE] {
        fs::create_dir_all(store.path(sub)).map_err(Failure::io("create", store.path(sub)))?;
    }
    crate::runtime()?.block_on(async {
        let stop = crate::stop_signal();
        tokio::pin!(stop);
        println!("worker {release} started");
        if fail {
            // A worker that crashes: it does no work, so what is done is done by the others.
            tokio::select! {
                (signal, _) = &mut stop => println!("worker {release} stopping ({signal})"),
                () = tokio::time::sleep(Duration::from_secs(1)) => return Err(Failure::Asked(
                    "crashing 1 s after start, as HELLO_WORKER_FAIL=1 asks".into(),
                )),
            }
            return Ok(());
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased; // a stop comes before more work
                (signal, _) = &mut stop => {
                    println!("worker {release} stopping ({signal})");
                    return Ok(());
                }
                _ = tick.tick() => {
                    for line in step(&store, &release, &colour, store::unix_time())? {
                        println!("{line}");
                    }
                }
            }
        }
    })
}

/// One pass over the queue: moves each file to `done/` and logs it. Returns what to print, a
/// line per file moved; a file that another worker moved first is skipped.
pub fn step(store: &Store, release: &str, colour: &str, now: u64) -> Result<Vec<String>, Failure> {
    let mut lines = Vec::new();
    for name in store.entries(QUEUE)? {
        let (from, to) = (
            store.path(&format!("{QUEUE}/{name}")),
            store.path(&format!("{DONE}/{name}")),
        );
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && !from.exists() => continue,
            Err(e) => return Err(Failure::io("move to done/", from)(e)),
        }
        let line = format!("{name} done by {release} ({colour})");
        store::append_line(&store.path("worker.log"), &format!("{now} {line}"))?;
        lines.push(line);
    }
    Ok(lines)
}

/// `--check`: creates and removes a hidden file in `queue/` (which workers skip). Any
/// failure exits 1: for a readiness check, all that matters is "not yet".
pub fn check(env: &Env) -> Result<(), Failure> {
    let writable = || {
        let queue = Store::open(env.data_dir())?.path(QUEUE);
        fs::create_dir_all(&queue).map_err(Failure::io("create", &queue))?;
        let probe = queue.join(format!(".check-{}", std::process::id()));
        fs::write(&probe, b"").map_err(Failure::io("write", &probe))?;
        fs::remove_file(&probe).map_err(Failure::io("remove", &probe))?;
        Ok(queue)
    };
    let queue = writable().map_err(|cause| Failure::NotReady(Box::new(cause)))?;
    println!("queue `{}` is writable", queue.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TempStore;

    #[test]
    fn a_step_moves_every_queued_file_and_logs_it() {
        let t = TempStore::new("worker-step");
        t.write("queue/b", "B");
        t.write("queue/a", "A");
        t.write("queue/.incoming", "half written");
        t.write("done/old", "");
        let lines = step(&t.0, "2.0.0", "green", 100).unwrap();
        assert_eq!(
            lines,
            ["a done by 2.0.0 (green)", "b done by 2.0.0 (green)"]
        );
        assert_eq!(
            t.read("worker.log"),
            "100 a done by 2.0.0 (green)\n100 b done by 2.0.0 (green)\n"
        );
        assert_eq!(t.0.entries(QUEUE).unwrap(), Vec::<String>::new());
        assert_eq!(t.0.entries(DONE).unwrap(), ["a", "b", "old"]);
        assert_eq!(
            (t.read("done/a"), t.read("queue/.incoming")),
            ("A".into(), "half written".into())
        );
        assert!(
            step(&t.0, "2.0.0", "green", 101).unwrap().is_empty(),
            "nothing left to do"
        );
    }

    #[test]
    fn a_step_on_a_store_without_queue_dirs_fails_with_the_path() {
        let t = TempStore::new("worker-nodone");
        t.write("queue/a", "A");
        let e = step(&t.0, "2.0.0", "blue", 100).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot move to done/ `")
                && e.ends_with("queue/a`: No such file or directory (os error 2)"),
            "{e}"
        );
    }

    #[test]
    fn the_check_wants_a_writable_queue() {
        let t = TempStore::new("worker-check");
        let env = |dir: &std::path::Path| Env::from_pairs(&[("HELLO_DATA", dir.to_str().unwrap())]);
        check(&env(t.0.dir())).unwrap();
        assert_eq!(
            t.0.files().unwrap(),
            Vec::<String>::new(),
            "the probe is removed"
        );
        t.write(
            "not-a-dir/queue",
            "a file where the queue directory should be",
        );
        let e = check(&env(&t.0.path("not-a-dir"))).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.to_string().starts_with("not ready: cannot create `"),
            "{e}"
        );
        let e = check(&Env::from_pairs(&[("HELLO_DATA", "/nonexistent/hello")])).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }

    /// The loop itself, as `docker stop` sees it: SIGTERM ends it at once, with success.
    #[test]
    fn the_worker_stops_on_sigterm() {
        let t = TempStore::new("worker-signal");
        t.write("queue/a", "A");
        let dir = t.0.dir().to_str().unwrap().to_owned();
        let worker = std::thread::spawn(move || {
            run(&Env::from_pairs(&[
                ("HELLO_DATA", &dir),
                ("SHIPIT_RELEASE", "3.0.0"),
            ]))
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !t.0.path("done/a").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not move queue/a"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = std::time::Instant::now();
        // The handlers are installed before the first step. SIGTERM to this test process is
        // the worker's to catch.
        std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        worker.join().unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(t.read("worker.log").ends_with(" a done by 3.0.0 (none)\n"));
    }
}
