//! Day-to-day operations on the real testbed: logs, maintenance page, init, secrets check.

mod support;

use support::{App, Testbed, assert_has};

#[test]
fn logs_come_from_every_host_prefixed_by_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-logs", &hosts, 4301, "");
    app.deploy("1.0.0");
    // The health gate and the verification ask /health; the smoke check after them asks /.
    let run = app
        .shipit(&["logs", "production", "--lines", "60"])
        .success();
    for h in &hosts {
        let prefix = format!("{} | ", h.dest);
        let mine: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .collect();
        assert!(!mine.is_empty() && mine.len() <= 60, "{}", run.stdout);
        assert!(
            mine.iter().any(|l| l.contains("GET /health 200")),
            "{}",
            run.stdout
        );
        assert!(
            mine.iter().any(|l| l.contains("GET / 200")),
            "{}",
            run.stdout
        );
    }
    let few = app
        .shipit(&["logs", "production", "--lines", "3"])
        .success();
    assert_eq!(
        few.stdout.lines().count(),
        6,
        "3 lines from each of 2 hosts: {}",
        few.stdout
    );
    // The same as a JSON object per line, for tools.
    let json = app
        .shipit(&["logs", "production", "--lines", "3", "--json"])
        .success();
    let records: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 6, "{}", json.stdout);
    for h in &hosts {
        let mine: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["host"] == h.dest.as_str())
            .collect();
        assert_eq!(mine.len(), 3, "{}", json.stdout);
        assert!(
            mine.iter().all(|r| r["unit"]
                .as_str()
                .is_some_and(|u| u.starts_with("t-logs_production@"))
                && r["line"].is_string()),
            "{}",
            json.stdout
        );
    }
}

#[test]
fn maintenance_serves_a_page_without_a_reload_and_deploys_still_verify() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-maint", &hosts, 4311, "");
    app.deploy("1.0.0");
    let workers =
        |h: &support::TestHost| tb.sh_ok(h, "pgrep -f '^nginx: worker' | sort | tr '\\n' ' '");
    let before: Vec<String> = hosts.iter().map(workers).collect();

    app.shipit(&["maintenance", "on", "production"]).success();
    for h in &hosts {
        let (status, head, body) = tb.http_get(h, &app.domain, "/version");
        assert_eq!(status, 503, "{head}");
        assert!(body.contains("Down for maintenance"), "{body}");
        assert!(
            head.contains("X-Frame-Options: DENY"),
            "security headers stay on: {head}"
        );
    }
    assert_eq!(
        before,
        hosts.iter().map(workers).collect::<Vec<_>>(),
        "maintenance reloaded nginx"
    );

    // shipit's own checks pass the page, so a deploy during maintenance verifies.
    app.deploy("2.0.0");
    assert_eq!(
        tb.http_get(&hosts[0], &app.domain, "/version").0,
        503,
        "still in maintenance"
    );

    app.shipit(&["maintenance", "off", "production"]).success();
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 2]);
}

#[test]
fn init_scaffolds_a_valid_app_and_secrets_check_names_what_is_missing() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-init", &tb.hosts(1));
    let dir = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(["-C"])
        .arg(dir.path())
        .args(["init", "--app", "web-shop"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "shipit.toml",
        "environments/production.toml",
        "environments/staging.toml",
        "Dockerfile.production",
        ".dockerignore",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let config = std::process::Command::new(env!("CARGO_BIN_EXE_shipit"))
        .arg("-C")
        .arg(dir.path())
        .args(["config", "staging"])
        .output()
        .unwrap();
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );

    // secrets check: set, from where; missing, by name; never a value.
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &format!("{text}\n[env]\nsecret = [\"DATABASE_URL\", \"API_KEY\"]\n"),
    );
    app.file(".env", "DATABASE_URL=postgres://u:hunter2@db/app\n");
    let run = app.shipit(&["secrets", "check", "production"]).failure(2);
    assert_has(
        &run.stdout,
        "DATABASE_URL: set, from `DATABASE_URL` in .env",
    );
    assert_has(&run.stdout, "API_KEY: MISSING");
    assert_has(
        &run.stdout,
        "SHIPIT_REGISTRY_PASSWORD: set, from environment variable",
    );
    assert_has(&run.stderr, "secret missing: API_KEY");
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
}

#[test]
fn doctor_checks_each_host_and_says_how_to_fix_what_is_wrong() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::new(&tb, "t-doctor", &hosts);
    app.shipit(&["provision", "production"]).success();
    let run = app.shipit(&["doctor", "production"]).success();
    for h in &hosts {
        for what in [
            "ssh and host key",
            "root or sudo",
            "docker engine",
            "registry login",
            "nginx",
            "systemd",
            "disk space",
            "clock",
        ] {
            assert!(
                run.stdout.contains(&format!("ok   {}: {what}:", h.dest)),
                "{what} on {}: {}",
                h.dest,
                run.stdout
            );
        }
    }
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);

    // An unreachable host, and a registry the hosts never logged in to.
    let mut with_dead = hosts.clone();
    with_dead.push(support::TestHost::unreachable());
    app.env_file("production", &tb, &with_dead, "");
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace(
            &format!("server = \"{}\"", tb.registry),
            "server = \"elsewhere.test:5000\"",
        ),
    );
    let run = app.shipit(&["doctor", "production", "--json"]).failure(9);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let failed: Vec<(String, String)> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["place"].as_str().unwrap().to_owned(),
                c["what"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            (hosts[0].dest.clone(), "registry login".to_owned()),
            (hosts[1].dest.clone(), "registry login".to_owned()),
            ("root@127.0.0.1:1".to_owned(), "ssh and host key".to_owned()),
        ]
    );
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .all(|c| c["fix"].as_str().is_some_and(|f| !f.is_empty()))
    );
}

#[test]
fn progress_is_live_per_host_on_a_terminal_and_plain_lines_elsewhere() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-progress", &hosts, 4321, "");

    // At a terminal: a live line per host for each long step, redrawn in place.
    let tty = app
        .shipit_on_terminal(&["deploy", "production", "--version", "1.0.0"])
        .success();
    assert_has(&tty.stdout, "\x1b[");
    for h in &hosts {
        for done in [
            "connected",
            "started",
            "healthy",
            "switched",
            "healthy through nginx",
        ] {
            assert!(
                tty.stdout.contains(&format!("✓ {}: {done} (", h.dest)),
                "no `{done}` line for {}:\n{}",
                h.dest,
                tty.stdout
            );
        }
    }
    assert_has(&tty.stdout, "Deployed");

    // Not a terminal (CI logs): no escape codes and no redrawn lines, only plain lines; a host
    // still busy after 5 s says what it waits for, every 5 s. The new copy binds after 7 s.
    app.set_hello_env(4321, "HELLO_START_DELAY = \"7\"");
    let plain = app.deploy("1.0.1");
    assert!(!plain.stderr.contains('\x1b'), "{}", plain.stderr);
    assert!(!plain.stderr.contains('✓'), "{}", plain.stderr);
    for h in &hosts {
        let waiting: Vec<&str> = plain
            .stderr
            .lines()
            .filter(|l| {
                l.trim_start()
                    .starts_with(&format!("Checking {}: waiting for /health", h.dest))
            })
            .collect();
        assert_eq!(
            waiting.len(),
            1,
            "one line at 5 s for {}:\n{}",
            h.dest,
            plain.stderr
        );
        assert!(waiting[0].ends_with("(5s so far)"), "{}", waiting[0]);
        assert_has(waiting[0], "(attempt ");
    }
    assert_eq!(app.versions(&tb, &hosts), ["1.0.1", "1.0.1"]);

    // Log lines (`-vv`) in a CI log are plain too.
    let logged = app.shipit(&["status", "production", "-vv"]).success();
    assert_has(&logged.stderr, "DEBUG");
    assert!(!logged.stderr.contains('\x1b'), "{}", logged.stderr);

    // `-q`: nothing on stderr at all for a run that succeeds.
    app.set_hello_env(4321, "");
    let quiet = app
        .shipit(&["deploy", "production", "--version", "1.0.2", "-q"])
        .success();
    assert_eq!(quiet.stderr, "");
}
