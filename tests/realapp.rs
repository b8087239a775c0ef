//! The rest of a real app beside its web process, on the testbed: a backup before every
//! deploy (kept, pruned, restored), a release command (a migration) before any switch, a worker
//! process per colour, a scheduled job on a systemd timer, and one-off commands (`shipit
//! exec`). The app's "database" is a file-backed store in a host directory mounted into each
//! container (the hello example's `migrate`, `worker`, `job`, `backup`, `restore` subcommands).

mod support;

use std::time::{Duration, Instant};

use support::{App, Load, TestHost, Testbed, assert_has};

const DATA: &str = "/var/lib/t-realapp-data";

fn settings(extra_env: &str) -> String {
    format!(
        r#"
[container]
port = 3000
memory_max = "256M"
cpu_quota = "50%"
volumes = ["{DATA}:/data"]

[deploy]
verify_window = "1500ms"
retain = 3
release_command = ["migrate"]

[backup]
command = ["backup"]
restore = ["restore"]
keep = 2

[processes.worker]
command = ["worker"]
ready_after = "3s"

[jobs.tick]
schedule = "*:*:0/5"
command = ["job", "tick"]

[env.clear]
{extra_env}
"#
    )
}

/// The app's test settings replaced by `settings` (its own `[container]` among them);
/// committed.
fn write_settings(app: &App, settings: &str) {
    let base = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    let base = base.split("\n# test settings\n").next().unwrap().to_owned();
    let base = base.replace(
        "[container]\nport = 3000\nmemory_max = \"256M\"\ncpu_quota = \"50%\"\n",
        "",
    );
    app.file(
        "shipit.toml",
        &format!("{base}\n# test settings\n{settings}"),
    );
    app.commit();
}

/// The first test's settings, with `env` in `[env.clear]`.
fn configure(app: &App, env: &str) {
    write_settings(
        app,
        &format!("[ports]\nblue = 4921\ngreen = 4922\n{}", settings(env)),
    );
}

/// The store through the first host's nginx (`GET /store`).
fn store(tb: &Testbed, h: &TestHost, app: &App) -> serde_json::Value {
    let (status, _, body) = tb.http_get(h, &app.domain, "/store");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn backups_a_migration_a_worker_a_job_and_one_off_commands_beside_the_web_process() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-realapp";
    // The store the app's containers share on each host, owned by the image's user.
    for h in &hosts {
        tb.sh_ok(
            h,
            &format!("rm -rf {DATA} && install -d -o 65534 -g 65534 {DATA}"),
        );
    }
    let app = App::hello_unprovisioned(&tb, name, &hosts, 4921, "");
    configure(&app, "HELLO_SCHEMA = \"1\"");
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "started 1 job timer");
    // The job runs on its host only (the first); the worker's units go to both.
    let units = |h: &TestHost| {
        tb.sh_ok(
            h,
            &format!("ls /etc/systemd/system | grep '^{name}_production_' | sort | tr '\\n' ' '"),
        )
    };
    assert_eq!(
        units(&hosts[0]),
        format!(
            "{name}_production_job_tick.service {name}_production_job_tick.timer {name}_production_worker@.service "
        )
    );
    assert_eq!(
        units(&hosts[1]),
        format!("{name}_production_worker@.service ")
    );

    // First deploy: a backup, then the migration (streamed with the host's name), then the
    // web process and the worker.
    let run = app.deploy("1.0.0");
    assert_has(&run.stderr, "Backed up");
    assert_has(&run.stderr, "migrated 0 -> 1");
    assert!(
        run.stderr.find("Backed up").unwrap() < run.stderr.find("migrated 0 -> 1").unwrap()
            && run.stderr.find("migrated 0 -> 1").unwrap() < run.stderr.find("Switched").unwrap(),
        "backup, then migration, then switch: {}",
        run.stderr
    );
    assert_eq!(store(&tb, &hosts[0], &app)["schema"], 1);

    let load = Load::start(&hosts, &app.domain, 2);
    // The worker consumes the queue on each host.
    for h in &hosts {
        tb.sh_ok(
            h,
            &format!("mkdir -p {DATA}/queue && echo job > {DATA}/queue/.t && mv {DATA}/queue/.t {DATA}/queue/one && chown -R 65534:65534 {DATA}/queue"),
        );
    }
    for h in &hosts {
        wait_for(
            "the worker to take the queued file",
            Duration::from_secs(15),
            || {
                tb.sh(h, &format!("test -f {DATA}/done/one"))
                    .status
                    .success()
            },
        );
    }

    // Second deploy: migration 1 -> 2; the new worker runs, the old one stops after the switch.
    configure(&app, "HELLO_SCHEMA = \"2\"");
    let run = app.deploy("2.0.0");
    assert_has(&run.stderr, "migrated 1 -> 2");
    for h in &hosts {
        let live = tb.sh_ok(
            h,
            &format!("sed -n 's/^# live: //p' /etc/shipit/{name}/production/upstream.conf"),
        );
        let live = live.trim();
        let other = if live == "blue" { "green" } else { "blue" };
        assert_eq!(
            tb.sh_ok(
                h,
                &format!("systemctl is-active {name}_production_worker@{live} || true")
            ),
            "active\n"
        );
        assert_ne!(
            tb.sh_ok(
                h,
                &format!("systemctl is-active {name}_production_worker@{other} || true")
            ),
            "active\n",
            "the previous release's worker stops after the switch"
        );
    }

    // A third backup: the oldest goes (keep = 2).
    configure(&app, "HELLO_SCHEMA = \"3\"");
    let run = app.deploy("3.0.0");
    assert_has(&run.stderr, "1 older backup removed (keep = 2)");
    let listed = app.shipit(&["backups", "production", "--json"]).success();
    let backups: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(backups.len(), 2, "{}", listed.stdout);
    assert!(
        backups[0]["release"]
            .as_str()
            .unwrap()
            .starts_with("3.0.0+")
    );
    assert!(
        backups[1]["release"]
            .as_str()
            .unwrap()
            .starts_with("2.0.0+")
    );
    let mode = tb.sh_ok(
        &hosts[0],
        &format!(
            "stat -c '%a %U' /var/lib/shipit/{name}/production/backups/{}",
            backups[0]["id"].as_str().unwrap()
        ),
    );
    assert_eq!(mode, "600 root\n");

    // A failing migration: nothing switched, exit 12, the command named.
    configure(&app, "HELLO_SCHEMA = \"4\"\nHELLO_MIGRATE_FAIL = \"1\"");
    let run = app.deploy_fails("4.0.0", 12);
    assert_has(&run.stderr, "the release command `migrate` failed on");
    assert!(!run.stderr.contains("Switched"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 2]);
    // A failing backup: the migration does not even run.
    configure(&app, "HELLO_SCHEMA = \"4\"\nHELLO_BACKUP_FAIL = \"1\"");
    let migrations = || tb.sh_ok(&hosts[0], &format!("cat {DATA}/migrations.log"));
    let before = migrations();
    let run = app.deploy_fails("4.0.0", 12);
    assert_has(&run.stderr, "the backup `backup` failed on");
    assert_has(&run.stderr, "--skip-backup");
    assert_eq!(migrations(), before, "no migration after a failed backup");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 2]);
    // `--skip-backup` goes on, and the history says so.
    let run = app
        .shipit(&[
            "deploy",
            "production",
            "--version",
            "4.0.0",
            "--skip-backup",
        ])
        .success();
    assert_has(&run.stderr, "migrated 3 -> 4");
    let history = tb.sh_ok(
        &hosts[0],
        &format!("tail -n 1 /var/lib/shipit/{name}/production/history.jsonl"),
    );
    assert_has(&history, "\"backup\":\"skipped (--skip-backup)\"");

    // A worker that crashes: its check fails, the deploy is undone, web traffic never fails.
    configure(&app, "HELLO_SCHEMA = \"4\"\nHELLO_WORKER_FAIL = \"1\"");
    let run = app.deploy_fails("5.0.0", 7);
    assert_has(&run.stderr, "the process `worker` of 5.0.0");
    assert_eq!(app.versions(&tb, &hosts), ["4.0.0"; 2]);
    load.stop()
        .assert_no_failures("migrations, workers, failing release phases and a failing worker");
    configure(&app, "HELLO_SCHEMA = \"4\"");

    // The job runs on its timer, the live release, and follows a rollback.
    let jobs = |h: &TestHost| tb.sh_ok(h, &format!("cat {DATA}/jobs.log 2>/dev/null || true"));
    wait_for("the job to run 4.0.0", Duration::from_secs(20), || {
        jobs(&hosts[0]).contains("ran release 4.0.0")
    });
    assert_eq!(jobs(&hosts[1]), "", "the job runs on its host only");
    app.shipit(&["rollback", "production"]).success();
    wait_for(
        "the job to run 3.0.0 after the rollback",
        Duration::from_secs(20),
        || {
            jobs(&hosts[0])
                .lines()
                .last()
                .is_some_and(|l| l.contains("ran release 3.0.0"))
        },
    );
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "process worker: blue");
    assert_has(&status.stdout, "job tick: last run");
    assert_has(&status.stdout, "(success, exit status 0)");

    // One-off commands: their output and exit code; no container left; audited.
    let run = app.shipit(&["exec", "production", "--", "store"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_has(&run.stdout, "\"schema\":4");
    let run = app.shipit(&[
        "exec",
        "production",
        "--host",
        &hosts[1].dest,
        "--",
        "job",
        "fail",
    ]);
    assert_eq!(run.code(), 1, "the command's exit code: {}", run.stderr);
    for h in &hosts {
        assert_eq!(
            tb.sh_ok(h, "docker ps -aq --filter label=shipit.role=exec"),
            "",
            "no exec container left on {}",
            h.dest
        );
    }
    let audit = tb.sh_ok(
        &hosts[1],
        &format!("cat /var/lib/shipit/{name}/production/audit.jsonl"),
    );
    assert_has(&audit, "\"command\":[\"job\",\"fail\"]");
    assert_has(&audit, "\"exit\":1");

    // Restore the newest backup: what was written since is gone again.
    tb.sh_ok(
        &hosts[0],
        &format!("echo later > {DATA}/written-later && chown 65534:65534 {DATA}/written-later"),
    );
    assert_has(&store(&tb, &hosts[0], &app).to_string(), "written-later");
    let listed = app.shipit(&["backups", "production", "--json"]).success();
    let backups: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let id = backups[0]["id"].as_str().unwrap();
    // Not without saying yes, when nobody can be asked.
    app.shipit(&["backups", "restore", "production", id])
        .failure(2);
    let run = app
        .shipit(&["backups", "restore", "production", id, "--yes"])
        .success();
    assert_has(&run.stderr, "Restored");
    let after = store(&tb, &hosts[0], &app);
    assert!(!after.to_string().contains("written-later"), "{after}");
    assert_eq!(after["schema"], 4);
}

#[test]
fn an_interrupted_migration_leaves_no_container_and_units_follow_the_configuration() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let name = "t-realapp2";
    let data = "/var/lib/t-realapp2-data";
    tb.sh_ok(
        h,
        &format!("rm -rf {data} && install -d -o 65534 -g 65534 {data}"),
    );
    let app = App::hello_unprovisioned(&tb, name, &hosts, 4931, "");
    let write = |env: &str, parts: &str| {
        write_settings(
            &app,
            &format!(
                "[ports]\nblue = 4931\ngreen = 4932\n[container]\nvolumes = [\"{data}:/data\"]\n[deploy]\nverify_window = \"1s\"\nrelease_command = [\"migrate\"]\n{parts}\n[env.clear]\n{env}\n"
            ),
        );
    };
    let parts = "[processes.worker]\ncommand = [\"worker\"]\nready_command = [\"/hello\", \"worker\", \"--check\"]\n[jobs.tick]\nschedule = \"daily\"\ncommand = [\"job\", \"tick\"]\n";
    write("HELLO_MIGRATE_SLEEP = \"60\"", parts);
    app.shipit(&["provision", "production"]).success();

    // Ctrl-C while the migration runs: the deploy stops, its container goes, the lock is free.
    let release = format!("{name}_production_release");
    let spawned = app.spawn_until(&["deploy", "production", "--version", "1.0.0"], "Releasing");
    wait_for("the migration's container", Duration::from_secs(20), || {
        !tb.sh_ok(h, &format!("docker ps -q --filter name=^{release}$"))
            .is_empty()
    });
    let pid = spawned.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, stderr) = spawned.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert_eq!(
        tb.sh_ok(h, &format!("docker ps -aq --filter name=^{release}$")),
        "",
        "no container left: {stderr}"
    );
    let lock = app.shipit(&["lock", "status", "production"]).success();
    assert!(!lock.stdout.contains("held"), "{}", lock.stdout);

    // Without the sleep it goes through; the worker is ready by its own check.
    write("", parts);
    let run = app.deploy("1.0.0");
    assert_has(&run.stderr, "migrated 0 -> 1");
    let workers = tb.sh_ok(
        h,
        &format!(
            "systemctl is-active {name}_production_worker@blue {name}_production_worker@green || true"
        ),
    );
    assert_eq!(
        workers.matches("inactive").count(),
        1,
        "one worker, the live colour's: {workers}"
    );

    // `exec` on a terminal (a pseudo-terminal from `script`): interactive, its exit code
    // passed through, its container gone.
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} -C {} exec production -- job fail",
            env!("CARGO_BIN_EXE_shipit"),
            app.path().display()
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_has(&text, "(interactive)");
    assert_eq!(
        tb.sh_ok(h, "docker ps -aq --filter label=shipit.role=exec"),
        "",
        "no exec container left"
    );

    // A schedule systemd does not read is refused on the host, naming the validator.
    write(
        "",
        &parts.replace("schedule = \"daily\"", "schedule = \"every tuesday\""),
    );
    let run = app.shipit(&["provision", "production"]).failure(4);
    assert_has(
        &run.stderr,
        &format!(
            "the candidate `/etc/systemd/system/{name}_production_job_tick.timer` (from `job.timer.tera`) was refused"
        ),
    );
    assert_has(&run.stderr, "Failed to parse calendar specification");

    // Taken out of the configuration, the job and the worker are stopped and removed.
    write("", "");
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "removed 3 units no longer configured");
    assert_eq!(
        tb.sh_ok(
            h,
            &format!("ls /etc/systemd/system | grep -c '^{name}_production_' || true")
        ),
        "0\n"
    );
    assert_eq!(
        tb.sh_ok(h, &format!("systemctl is-active {name}_production_worker@blue {name}_production_job_tick.timer || true")),
        "inactive\ninactive\n"
    );
    // The web process serves on.
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"]);
}
