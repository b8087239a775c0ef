//! Faults, abuse and secrets on the real testbed: what shipit survives, and that nothing is
//! lost, half-changed or leaked.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{App, Load, TestHost, Testbed, assert_has};

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn container_of(host: &TestHost) -> String {
    format!("shipit-th{}", host.ssh_port - 2200)
}

#[test]
fn a_rebooted_host_comes_back_serving_the_live_release() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let host = hosts[1].clone();
    let app = App::hello(&tb, "t-reboot", std::slice::from_ref(&host), 4201, "");
    app.deploy("1.0.0");
    app.deploy("2.0.0");

    let out = Command::new("docker")
        .args(["restart", "-t", "5", &container_of(&host)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("ssh after the reboot", Duration::from_secs(90), || {
        tb.sh(
            &host,
            "systemctl is-system-running --wait >/dev/null 2>&1; true",
        )
        .status
        .success()
    });
    // Served for 3 s straight: while the units come up, each nginx worker may still hold the
    // live copy as failed for its `fail_timeout` (2 s) after a refused connection of its own.
    let mut serving_since: Option<Instant> = None;
    wait_for(
        "the live release serving for 3 s after the reboot",
        Duration::from_secs(90),
        || {
            let out = Command::new("curl")
                .args(["-s", "--max-time", "2", "-H", "Host: t-reboot.test"])
                .arg(format!("http://127.0.0.1:{}/version", host.http_port))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("\"version\":\"2.0.0+") {
                serving_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(3)
            } else {
                serving_since = None;
                false
            }
        },
    );
    assert_eq!(app.versions(&tb, std::slice::from_ref(&host)), ["2.0.0"]);
    let status = app.shipit(&["status", "production", "--json"]).success();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows[0]["health"]["state"], "healthy", "{rows}");
    assert!(rows[0]["release"].as_str().unwrap().starts_with("2.0.0+"));
    assert!(
        rows[0]["blue"]["unit"] == "active",
        "the warm colour is back too: {rows}"
    );
    // And a rollback right after the reboot is still a switch to the warm colour.
    let run = app.shipit(&["rollback", "production"]).success();
    assert!(!run.stderr.contains("Started"), "{}", run.stderr);
}

#[test]
fn secrets_never_appear_in_any_output() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let secret = format!("s3cr3t-{}-'\"$`;ü", std::process::id());
    let mut app = App::hello(&tb, "t-secrets", &hosts, 4211, "");
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace(
            "[env.clear]",
            "[env]\nsecret = [\"API_TOKEN\"]\n\n[env.clear]",
        ),
    )
    .commit();
    app.set_env("API_TOKEN", &secret);

    let mut outputs = Vec::new();
    for args in [
        &["-v", "provision", "production"][..],
        &["-vv", "deploy", "production", "--version", "1.0.0"],
        &["deploy", "production", "--version", "2.0.0", "--dry-run"],
        &[
            "-vv",
            "deploy",
            "production",
            "--version",
            "2.0.0",
            "--json",
        ],
        &["-vv", "rollback", "production", "--json"],
        &["status", "production", "--json"],
        &["releases", "production", "--json"],
        &["config", "production"],
        &["config", "production", "--json"],
        &["lock", "status", "production", "--json"],
    ] {
        let run = app.shipit(args);
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr);
        outputs.push((args.join(" "), run.stdout + &run.stderr));
    }
    // A failing deploy, with the secret in play.
    app.set_hello_env(4211, "HELLO_HEALTH = \"unhealthy\"");
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text
            .replace(
                "[env.clear]",
                "[env]\nsecret = [\"API_TOKEN\"]\n\n[env.clear]",
            )
            .replace("timeout = \"20s\"", "timeout = \"2s\""),
    )
    .commit();
    let run = app
        .shipit(&["-vv", "deploy", "production", "--version", "3.0.0"])
        .failure(7);
    outputs.push(("failing deploy".into(), run.stdout + &run.stderr));

    for (what, out) in &outputs {
        assert!(!out.contains(&secret), "the secret leaked in `{what}`");
        assert!(
            !out.contains(&tb.registry_password),
            "the registry password leaked in `{what}`"
        );
    }
    let config = &outputs[7].1;
    assert!(
        config.contains("API_TOKEN = \"[REDACTED] from environment variable `API_TOKEN`\""),
        "{config}"
    );

    // On the hosts the secret is exactly as given, in a 0600 file owned by root.
    for h in &hosts {
        let colour = if tb
            .sh_ok(h, "cat /etc/shipit/t-secrets/production/upstream.conf")
            .contains(":4211 max_fails")
        {
            "blue"
        } else {
            "green"
        };
        let file = format!("/etc/shipit/t-secrets/production/{colour}.app.env");
        assert_eq!(
            tb.sh_ok(h, &format!("stat -c '%a %U' {file}")),
            "600 root\n"
        );
        let env = tb.sh_ok(h, &format!("cat {file}"));
        assert!(
            env.lines().any(|l| l == format!("API_TOKEN={secret}")),
            "{env}"
        );
    }
}

#[test]
fn hostile_values_reach_the_container_exactly_and_bad_ones_are_refused() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let values = [
        ("QUOTES", r#"it's "quoted""#),
        ("SHELL", "$(touch /tmp/pwned-env); `id`; rm -rf / #"),
        ("SPACES", "  leading and trailing  "),
        ("UNICODE", "héllo wörld 🚀"),
        ("EQUALS", "a=b=c"),
    ];
    let env: String = values
        .iter()
        .map(|(k, v)| format!("{k} = {}\n", toml::Value::String((*v).to_owned())))
        .collect();
    let app = App::hello(&tb, "t-hostile", &hosts, 4221, &env);
    tb.sh_ok(&hosts[0], "rm -f /tmp/pwned-env");
    app.deploy("1.0.0");
    let inspect = tb.sh_ok(
        &hosts[0],
        "docker inspect --format '{{json .Config.Env}}' t-hostile_production-green",
    );
    let got: Vec<String> = serde_json::from_str(inspect.trim()).unwrap();
    for (k, v) in values {
        assert!(
            got.contains(&format!("{k}={v}")),
            "{k} did not arrive exactly: {got:?}"
        );
    }
    assert_eq!(
        tb.sh_ok(&hosts[0], "test -e /tmp/pwned-env && echo yes || echo no"),
        "no\n"
    );

    // Values that cannot be passed safely are refused before anything connects (the
    // environment file may override any key, so they go there).
    let env_path = app.path().join("environments/production.toml");
    let env_text = std::fs::read_to_string(&env_path).unwrap();
    for (key, value, message) in [
        (
            "version",
            "\"1.0.0; rm -rf /\"",
            "is not a semantic version",
        ),
        (
            "domain",
            "\"x.test; include /etc/shadow\"",
            "is not a domain name",
        ),
        ("app", "\"t-hostile$(id)\"", "is not a valid app name"),
        (
            "dockerfile",
            "\"../../etc/passwd\"",
            "is not a relative path inside the app directory",
        ),
        (
            "hosts",
            "[\"root@h;reboot\"]",
            "is not a host name, address or ssh_config alias",
        ),
    ] {
        let bad = env_text.replace("domain = ", &format!("{key} = {value}\n# was: domain = "));
        let bad = if key == "domain" || key == "hosts" {
            bad.lines()
                .filter(|l| {
                    !l.starts_with(&format!("{key} = \"t-"))
                        && !l.starts_with("hosts = [\"root@127")
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            bad
        };
        std::fs::write(&env_path, &bad).unwrap();
        let run = app.shipit(&["deploy", "production"]).failure(2);
        assert!(
            run.stderr.contains(message) && run.stderr.contains("environments/production.toml:"),
            "{key}: {}",
            run.stderr
        );
    }
    std::fs::write(&env_path, env_text).unwrap();
    let run = app.shipit(&["deploy", "prodution"]).failure(2);
    assert!(
        run.stderr.contains("unknown environment `prodution`")
            && run.stderr.contains("did you mean `production`?"),
        "{}",
        run.stderr
    );
    let run = app.shipit(&["deploy", "../etc"]).failure(2);
    assert_has(&run.stderr, "environment name `../etc` is not valid");
}

#[test]
fn a_stale_lock_is_shown_with_its_holder_and_broken_only_explicitly() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-stale", &hosts, 4231, "");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let info = format!(
        r#"{{"id":"ci-7-4242-1","user":"alice","machine":"ci-runner-7","machine_id":"not-this-machine","pid":4242,"since":{since},"command":"deploy","version":"0.9.0"}}"#
    );
    for h in &hosts {
        tb.sh_ok(h, &format!("mkdir -p /var/lib/shipit/t-stale/production/lock && printf '%s\\n' '{info}' > /var/lib/shipit/t-stale/production/lock/info.json"));
    }
    let run = app.deploy_fails("1.0.0", 6);
    assert_has(
        &run.stderr,
        "by `alice` on `ci-runner-7` (pid 4242) since 1h",
    );
    assert_has(&run.stderr, "for `deploy 0.9.0`");
    let status = app.shipit(&["lock", "status", "production"]).success();
    assert_eq!(
        status.stdout.matches("held by `alice`").count(),
        2,
        "{}",
        status.stdout
    );
    // Never broken without saying so: no terminal, no --yes, no release.
    let run = app.shipit(&["lock", "release", "production"]).failure(2);
    assert_has(&run.stderr, "pass `--yes`");
    assert!(
        app.shipit(&["lock", "status", "production"])
            .success()
            .stdout
            .contains("held by")
    );
    let run = app
        .shipit(&["lock", "release", "production", "--yes"])
        .success();
    assert!(
        run.stderr.contains("alice"),
        "the release says whose lock it broke: {}",
        run.stderr
    );
    app.deploy("1.0.0");
}

#[test]
fn a_changed_host_key_is_refused_with_how_to_accept_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let app = App::new(&tb, "t-hostkey2", &hosts);
    let dir = app.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("other"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let other = std::fs::read_to_string(dir.join("other.pub")).unwrap();
    let key = other
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known = dir.join("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {key}\n", hosts[0].ssh_port)).unwrap();
    let text = std::fs::read_to_string(app.path().join("environments/production.toml"))
        .unwrap()
        .replace(
            &tb.known_hosts.display().to_string(),
            &known.display().to_string(),
        );
    app.file("environments/production.toml", &text);
    let run = app
        .shipit(&["provision", "production", "--dry-run"])
        .failure(3);
    assert!(
        run.stderr
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || run.stderr.contains("Host key verification failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("has changed; check it out of band"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_full_disk_leaves_the_old_file_and_reloads_nothing() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::new(&tb, "t-diskfull", &hosts);
    for h in &hosts {
        tb.wipe(h, "t-diskfull");
    }
    app.shipit(&["provision", "production"]).success();
    let h = &hosts[0];
    let before = tb.sh_ok(h, "sha256sum /etc/logrotate.d/shipit-t-diskfull_production; pgrep -f '^nginx: worker' | sort | tr '\\n' ' '");
    // A small filesystem over /etc/logrotate.d with the same files, filled up. The guard
    // unmounts it whatever happens, so no other test meets a full disk.
    struct Unmount<'a>(&'a Testbed, &'a TestHost);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = self.0.sh(
                self.1,
                "umount /etc/logrotate.d 2>/dev/null; rm -rf /root/logrotate.d.saved",
            );
        }
    }
    let guard = Unmount(&tb, h);
    tb.sh_ok(h, "rm -rf /root/logrotate.d.saved && cp -a /etc/logrotate.d /root/logrotate.d.saved && mount -t tmpfs -o size=4m tmpfs /etc/logrotate.d && cp -a /root/logrotate.d.saved/. /etc/logrotate.d/ && (dd if=/dev/zero of=/etc/logrotate.d/.fill bs=4k 2>/dev/null || true)");
    let big = format!(
        "# {}\n{}",
        "x".repeat(20_000),
        include_str!("../templates/logrotate.tera")
    );
    app.file("templates/logrotate.tera", &big);
    let run = app.shipit(&["provision", "production"]);
    let after = tb.sh_ok(h, "sha256sum /etc/logrotate.d/shipit-t-diskfull_production; pgrep -f '^nginx: worker' | sort | tr '\\n' ' '");
    let leftovers = tb.sh_ok(h, "ls -A /etc/logrotate.d | grep -c shipit-new || true");
    drop(guard);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("on `{}`", h.dest)),
        "names the host: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("No space left on device") || run.stderr.contains("disk full"),
        "{}",
        run.stderr
    );
    assert_eq!(before, after, "the old file changed or nginx was reloaded");
    assert_eq!(leftovers, "0\n", "a partial candidate was left behind");
    // The other host was not changed either: the fleet moves together.
    assert!(
        tb.sh_ok(
            &hosts[1],
            "cat /etc/logrotate.d/shipit-t-diskfull_production"
        )
        .len()
            < 2000
    );
}

#[test]
fn an_ssh_cut_during_a_deploy_names_the_host_and_the_next_deploy_converges() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-sshcut", &hosts, 4241, "");
    app.deploy("1.0.0");
    app.set_hello_env(4241, "HELLO_START_DELAY = \"1.5\"");

    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.spawn_until(&["deploy", "production", "--version", "2.0.0"], "Started");
    // Cut every SSH session of host 2 during the health gate (the test's own included).
    let _ = tb.sh(&hosts[1], "pkill -KILL -f '^sshd: root@'");
    let (status, stderr) = run.finish();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("`{}`", hosts[1].dest)),
        "the error names the host: {stderr}"
    );
    assert!(!stderr.contains("Switched"), "{stderr}");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3], "no host switched");
    // The lock went with the run, on a new connection where the old one was cut: none is left
    // for the next run to wait for or take over.
    assert!(!stderr.contains("could not release the lock"), "{stderr}");
    for h in &hosts {
        let left = tb.sh(h, "test -e /var/lib/shipit/t-sshcut/production/lock");
        assert_eq!(left.status.code(), Some(1), "{}: a lock is left", h.dest);
    }

    let run = app.deploy("2.0.0");
    assert!(
        !run.stderr.contains("taking over the lock"),
        "{}",
        run.stderr
    );
    assert_has(&run.stderr, "Deployed 2.0.0+");
    load.stop()
        .assert_no_failures("an SSH cut during a deploy, and the deploy after it");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
}

#[test]
fn a_registry_a_host_cannot_reach_fails_before_any_switch() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-regdown", &hosts, 4251, "");
    app.deploy("1.0.0");
    // Host 3 loses the registry between the build and its pull.
    let h = &hosts[2];
    struct Unblock<'a>(&'a Testbed, &'a TestHost);
    impl Drop for Unblock<'_> {
        fn drop(&mut self) {
            let _ = self.0.sh(
                self.1,
                "iptables -D OUTPUT -p tcp --dport 5000 -j REJECT --reject-with tcp-reset",
            );
        }
    }
    let guard = Unblock(&tb, h);
    tb.sh_ok(
        h,
        "iptables -I OUTPUT -p tcp --dport 5000 -j REJECT --reject-with tcp-reset",
    );
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.shipit(&["deploy", "production", "--version", "2.0.0"]);
    let report = load.stop();
    drop(guard);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("on `{}`", h.dest))
            && run.stderr.contains("registry.test:5000/v2/"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Switched"), "{}", run.stderr);
    report.assert_no_failures("a deploy whose pull fails on one host");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    for host in &hosts[..2] {
        assert_eq!(
            tb.sh_ok(
                host,
                "systemctl is-active t-regdown_production@blue || true"
            ),
            "inactive\n",
            "the new copies were stopped"
        );
    }
    app.deploy("2.0.0");
}

#[test]
fn an_ssh_cut_at_the_switch_leaves_no_host_switched_alone() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-sshcut2", &hosts, 4261, "");
    app.deploy("1.0.0");

    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.spawn_until(&["deploy", "production", "--version", "2.0.0"], "Healthy");
    // Every host passed the gate; host 2 loses its SSH sessions as the switch starts (or, if
    // the switch wins the race, during the verification right after it).
    let _ = tb.sh(&hosts[1], "pkill -KILL -f '^sshd: root@'");
    let (status, stderr) = run.finish();
    let report = load.stop();
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains(&format!("`{}`", hosts[1].dest)),
        "the error names the host: {stderr}"
    );
    assert_eq!(
        stderr.matches("Reverted").count(),
        3,
        "every host went back, the cut one on a new connection: {stderr}"
    );
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    report.assert_no_failures("an SSH cut at the switch");

    let run = app.deploy("2.0.0");
    assert_has(&run.stderr, "Deployed 2.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
}
