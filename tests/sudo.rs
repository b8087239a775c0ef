//! Hosts where the SSH user is not root: `deploy` with passwordless sudo (Debian's default
//! sudoers, `use_pty` and all) runs the whole story; `nosudo`, whose sudo wants a password, is
//! told exactly what is missing.

mod support;

use support::{App, Load, TestHost, Testbed, assert_has};

/// The testbed's hosts, logged in to as `user`.
fn as_user(hosts: &[TestHost], user: &str) -> Vec<TestHost> {
    hosts
        .iter()
        .map(|h| TestHost {
            dest: h.dest.replacen("root@", &format!("{user}@"), 1),
            ..h.clone()
        })
        .collect()
}

#[test]
fn the_main_story_works_as_a_user_with_passwordless_sudo() {
    let tb = Testbed::from_env();
    let root_hosts = tb.hosts(2);
    let hosts = as_user(&root_hosts, "deploy");
    // Wiped as root; then everything below runs as `deploy`.
    for h in &root_hosts {
        tb.wipe(h, "t-sudo");
    }
    let app = App::hello_unprovisioned(&tb, "t-sudo", &hosts, 4701, "");
    let doctor = app.shipit(&["doctor", "production"]);
    assert!(
        doctor
            .stdout
            .contains("root or sudo: `deploy` with passwordless sudo"),
        "{}",
        doctor.stdout
    );
    app.shipit(&["provision", "production"]).success();
    app.shipit(&["doctor", "production"]).success();
    app.deploy("1.0.0");
    let load = Load::start(&hosts, &app.domain, 2);
    app.deploy("2.0.0");
    app.shipit(&["rollback", "production"]).success();
    load.stop()
        .assert_no_failures("a deploy and a rollback as a user with sudo");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);

    let status = app.shipit(&["status", "production", "--json"]).success();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["health"]["state"], "healthy", "{row}");
        assert!(
            row["host"].as_str().unwrap().starts_with("deploy@"),
            "{row}"
        );
    }
    let releases = app.shipit(&["releases", "production"]).success();
    assert_eq!(releases.stdout.lines().count(), 3, "{}", releases.stdout);
    let logs = app
        .shipit(&["logs", "production", "--lines", "5"])
        .success();
    assert_has(&logs.stdout, "deploy@127.0.0.1:");
    let lock = app.shipit(&["lock", "status", "production"]).success();
    assert_eq!(lock.stdout.matches(": free").count(), 2, "{}", lock.stdout);
    app.shipit(&["maintenance", "on", "production"]).success();
    let (code, _, _) = tb.http_get(&hosts[0], &app.domain, "/version");
    assert_eq!(code, 503);
    app.shipit(&["maintenance", "off", "production"]).success();
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    // What shipit wrote is root's, as with a root login.
    for h in &root_hosts {
        assert_eq!(
            tb.sh_ok(
                h,
                "stat -c '%a %U' /etc/shipit/t-sudo/production/green.app.env /var/lib/shipit/t-sudo/production/history.jsonl"
            ),
            "600 root\n644 root\n"
        );
    }
}

#[test]
fn a_user_whose_sudo_wants_a_password_is_told_exactly_what_is_missing() {
    let tb = Testbed::from_env();
    let hosts = as_user(&tb.hosts(1), "nosudo");
    let app = App::hello_unprovisioned(&tb, "t-nosudo", &hosts, 4711, "");
    let doctor = app.shipit(&["doctor", "production"]).failure(9);
    assert_has(
        &doctor.stdout,
        "root or sudo: `nosudo` is not root and sudo wants a password (sudo said: sudo: a password is required)",
    );
    assert!(
        doctor
            .stdout
            .contains("echo 'nosudo ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/shipit"),
        "{}",
        doctor.stdout
    );
    let run = app.shipit(&["provision", "production"]).failure(1);
    assert_has(
        &run.stderr,
        "`nosudo` may not run shipit's commands as root: sudo: a password is required",
    );
}

#[test]
fn the_main_story_works_whatever_the_login_shell_parses_or_prints() {
    let tb = Testbed::from_env();
    let root_hosts = tb.hosts(2);
    // tcsh and fish parse a command line their own way; each of the three prints from its rc
    // file on stdout and stderr before any command runs.
    for (user, port) in [("tcshuser", 4741), ("fishuser", 4751), ("noisy", 4761)] {
        let name = format!("t-shell-{}", &user[..4]);
        let hosts = as_user(&root_hosts, user);
        for h in &root_hosts {
            tb.wipe(h, &name);
        }
        let app = App::hello_unprovisioned(&tb, &name, &hosts, port, "");
        let doctor = app.shipit(&["doctor", "production"]).success();
        assert_has(&doctor.stdout, "login shell: `/");
        assert_has(&doctor.stdout, "before every command");
        app.shipit(&["provision", "production"]).success();
        app.deploy("1.0.0");
        let load = Load::start(&hosts, &app.domain, 2);
        app.deploy("2.0.0");
        app.shipit(&["rollback", "production"]).success();
        load.stop()
            .assert_no_failures(&format!("a deploy and a rollback as {user}"));
        assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2], "{user}");
        let lock = app.shipit(&["lock", "status", "production"]).success();
        assert_eq!(
            lock.stdout.matches(": free").count(),
            2,
            "{user}: {}",
            lock.stdout
        );
        let releases = app.shipit(&["releases", "production", "--json"]).success();
        let lines: serde_json::Value = serde_json::from_str(&releases.stdout).unwrap();
        assert_eq!(
            lines.as_array().unwrap().len(),
            3,
            "{user}: {}",
            releases.stdout
        );
        let logs = app
            .shipit(&["logs", "production", "--lines", "3"])
            .success();
        assert!(!logs.stdout.contains("Welcome"), "{user}: {}", logs.stdout);
        let exec = app.shipit(&["exec", "production", "--", "help"]).success();
        assert!(!exec.stdout.contains("Welcome"), "{user}: {}", exec.stdout);
    }
}
