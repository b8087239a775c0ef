//! Nothing outside shipit borrows its powers (issue 20): shipit acts as root on the hosts and
//! holds SSH masters on the deploying machine, and each test here has a hostile actor try to
//! use that: an app image whose backup leaves a link to a host file (or a device, or a
//! directory), a proxy on the host relaying visitors with shipit's own header, another local
//! user probing for shipit's forwards, a host user reading the audit of a command with a
//! password in its words. Each asserts that nothing outside shipit gained anything, and that
//! shipit said what happened.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{App, Load, TestHost, Testbed, assert_has};

/// Replace the app's `[backup]` (after its test settings), committed.
fn with_backup(app: &App, command: &str) {
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    let base = text.split("\n# backup test\n").next().unwrap().to_owned();
    app.file(
        "shipit.toml",
        &format!("{base}\n# backup test\n[backup]\ncommand = {command}\nkeep = 3\n"),
    );
    app.commit();
}

#[test]
fn a_backup_that_leaves_a_link_a_device_or_a_directory_gains_nothing_on_the_host() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let app = App::new(&tb, "t-evilbackup", &hosts);
    app.ports(4961).busybox_app("evil");
    app.commit();
    for h in &hosts {
        tb.wipe(h, &app.name);
    }
    app.shipit(&["provision", "production"]).success();
    let before = tb.sh_ok(h, "stat -c '%a %U:%G' /etc /etc/shadow /etc/passwd");
    // The image runs as root in its container and writes where $SHIPIT_BACKUP_FILE says.
    for (command, said) in [
        (
            r#"["sh", "-c", "ln -s /etc \"$SHIPIT_BACKUP_FILE\""]"#,
            "left a symbolic link to `/etc`",
        ),
        (
            r#"["sh", "-c", "ln -s /etc/shadow \"$SHIPIT_BACKUP_FILE\""]"#,
            "left a symbolic link to `/etc/shadow`",
        ),
        (
            r#"["sh", "-c", "mknod \"$SHIPIT_BACKUP_FILE\" c 1 3"]"#,
            "left a character special file",
        ),
        (
            r#"["sh", "-c", "mkdir \"$SHIPIT_BACKUP_FILE\""]"#,
            "left a directory",
        ),
        (r#"["true"]"#, "exited 0 but wrote nothing"),
    ] {
        with_backup(&app, command);
        let run = app
            .shipit(&["deploy", "production", "--version", "1.0.0"])
            .failure(12);
        assert_has(&run.stderr, said);
        assert_has(&run.stderr, "refused, nothing kept");
        assert_eq!(
            tb.sh_ok(h, "stat -c '%a %U:%G' /etc /etc/shadow /etc/passwd"),
            before,
            "{command}: the host's files are as they were"
        );
        let kept = tb.sh_ok(
            h,
            "ls -A /var/lib/shipit/t-evilbackup/production/backups 2>/dev/null; true",
        );
        assert_eq!(kept.trim(), "", "{command}: nothing kept: {kept}");
    }
    // A real file is kept: copied into a new file of root's, 0600.
    with_backup(
        &app,
        r#"["sh", "-c", "echo data > \"$SHIPIT_BACKUP_FILE\""]"#,
    );
    let run = app.deploy("1.0.0");
    assert_has(&run.stderr, "Backed up");
    assert_eq!(
        tb.sh_ok(
            h,
            "stat -c '%a %U %h' /var/lib/shipit/t-evilbackup/production/backups/*.backup"
        ),
        "600 root 1\n"
    );
}

/// A second site on a host's nginx: a proxy on the host itself (as cloudflared, HAProxy or
/// Caddy would be), relaying every visitor to the app's site over loopback.
fn relay(tb: &Testbed, h: &TestHost, domain: &str, on: bool) {
    let site = "/etc/nginx/conf.d/zz-t-relay.conf";
    let script = if on {
        format!(
            "printf 'server {{ listen 127.0.0.1:8097; location / {{ proxy_pass http://127.0.0.1:80; proxy_set_header Host {domain}; proxy_set_header X-Shipit-Verify $http_x_shipit_verify; }} }}\\n' > {site} && nginx -t -q && nginx -s reload && sleep 0.3"
        )
    } else {
        format!("rm -f {site}; nginx -t -q && nginx -s reload")
    };
    tb.sh_ok(h, &script);
}

/// A request through the relay, with `header` as `X-Shipit-Verify`: its status and headers.
fn through_relay(tb: &Testbed, h: &TestHost, header: &str) -> (u16, String) {
    let out = tb.sh_ok(
        h,
        &format!(
            "curl -s -o /dev/null -D - -H 'X-Shipit-Verify: {header}' http://127.0.0.1:8097/version"
        ),
    );
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn a_proxy_on_the_host_relaying_visitors_gives_them_nothing_shipits_checks_get() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let app = App::hello_unprovisioned(&tb, "t-relay", &hosts, 4771, "");
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &format!("{text}\n[nginx]\nrate_limit = {{ rate = \"2r/s\", burst = 2 }}\n"),
    )
    .commit();
    app.shipit(&["provision", "production"]).success();
    app.deploy("1.0.0");
    relay(&tb, h, &app.domain, true);
    let token = tb.sh_ok(
        h,
        "sed -n 's/^ *\"\\([0-9a-f]*\\)\" 1;$/\\1/p' /etc/shipit/t-relay/production/verify.conf",
    );
    assert_eq!(token.trim().len(), 32, "a 128-bit token: {token}");
    assert_eq!(
        tb.sh_ok(
            h,
            "stat -c '%a %U' /etc/shipit/t-relay/production/verify.conf"
        ),
        "600 root\n"
    );

    // Visitors through the relay come from 127.0.0.1 with whatever header they like: they are
    // told nothing of the upstreams.
    for header in ["1", "true", "00000000000000000000000000000000"] {
        let (status, headers) = through_relay(&tb, h, header);
        assert_eq!(status, 200, "{headers}");
        assert!(
            !headers.to_lowercase().contains("x-shipit-upstream"),
            "{header}: {headers}"
        );
    }
    // The rate limit holds for them (12 requests at once through the relay).
    let statuses = tb.sh_ok(
        h,
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do curl -s -o /dev/null -w '%{http_code} ' -H 'X-Shipit-Verify: 1' http://127.0.0.1:8097/version; done",
    );
    assert!(statuses.contains("429"), "{statuses}");

    // With the maintenance page on, they get it, header or not; shipit's own checks still
    // pass (a deploy during maintenance verifies through nginx with the token).
    std::thread::sleep(Duration::from_secs(2));
    app.shipit(&["maintenance", "on", "production"]).success();
    for header in ["1", "yes"] {
        assert_eq!(through_relay(&tb, h, header).0, 503, "{header}");
    }
    let direct = tb.sh_ok(
        h,
        "curl -s -o /dev/null -w '%{http_code}' -H 'Host: t-relay.test' -H 'X-Shipit-Verify: 1' http://127.0.0.1/version",
    );
    assert_eq!(direct, "503", "from 127.0.0.1 with the old constant header");
    app.deploy("2.0.0");
    app.shipit(&["maintenance", "off", "production"]).success();
    // Only the token tells nginx's upstream (and the app never sees the header).
    let (_, headers) = through_relay(&tb, h, token.trim());
    assert!(
        headers.to_lowercase().contains("x-shipit-upstream"),
        "the token is what counts: {headers}"
    );
    relay(&tb, h, &app.domain, false);
}

/// Listeners on this machine that belong to one of shipit's SSH masters (an `ssh` whose
/// control socket is shipit's): TCP ones, and Unix sockets.
fn ssh_listeners() -> (Vec<String>, Vec<String>) {
    let shipits = |line: &str| {
        line.split("pid=")
            .skip(1)
            .filter_map(|p| p.split([',', ')']).next()?.parse::<u32>().ok())
            .any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains("/shipit/ssh") || c.contains(".ssh-connection")
                    })
                    .unwrap_or(false)
            })
    };
    let ss = |args: &[&str]| {
        String::from_utf8_lossy(&Command::new("ss").args(args).output().unwrap().stdout)
            .lines()
            .filter(|l| l.contains("\"ssh\"") && shipits(l))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    (ss(&["-Hltnp"]), ss(&["-Hlxp"]))
}

#[test]
fn no_listener_of_shipits_is_left_and_another_local_user_reaches_nothing_through_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    // Forwards an earlier test's killed shipit could not close (the interrupt tests) stay on
    // the master it shared until that expires. This test answers for what its own runs
    // leave; the earlier ones must be root's alone (checked at the end).
    let (_, earlier) = ssh_listeners();
    let forward = |l: &String| l.contains(".sock");
    let earlier: Vec<String> = earlier.into_iter().filter(forward).collect();
    let app = App::hello(&tb, "t-forwards", &hosts, 4781, "");
    app.deploy("1.0.0");
    // Another user of this machine (a shared CI runner, a bastion).
    let _ = Command::new("useradd")
        .args(["--no-create-home", "t-prober"])
        .output();
    let load = Load::start(&hosts, &app.domain, 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(["deploy", "production", "--version", "2.0.0"])
        .current_dir(app.path())
        .env("SHIPIT_REGISTRY_PASSWORD", &tb.registry_password)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // While it runs: no TCP listener of an ssh process; each forwarded socket sits in a
    // directory only its owner enters, and the prober cannot connect to it.
    let started = Instant::now();
    let mut sockets_seen = 0;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        let (tcp, unix) = ssh_listeners();
        assert!(
            tcp.is_empty(),
            "TCP listeners of ssh during a deploy: {tcp:?}"
        );
        for line in unix {
            let Some(path) = line.split_whitespace().find(|w| w.ends_with(".sock")) else {
                continue;
            };
            sockets_seen += 1;
            assert_only_root_reaches(path);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    load.stop()
        .assert_no_failures("a deploy probed by another local user");
    eprintln!("forwarded sockets seen during the deploy: {sockets_seen}");
    // After `status` and `deploy` (whose masters persist): nothing listens for shipit.
    app.shipit(&["status", "production"]).success();
    let (tcp, unix) = ssh_listeners();
    assert!(tcp.is_empty(), "{tcp:?}");
    let left: Vec<&String> = unix
        .iter()
        .filter(|l| forward(l) && !earlier.contains(l))
        .collect();
    assert!(left.is_empty(), "forwards left after the run: {left:?}");
    // Whatever an earlier run left (a shipit killed by a test keeps its directory, and the
    // forward stays on the master it shared until that expires) is root's alone too.
    for l in unix.iter().filter(|l| forward(l)) {
        let path = l.split_whitespace().find(|w| w.ends_with(".sock")).unwrap();
        assert_only_root_reaches(path);
    }
}

/// A forwarded socket of shipit's sits in a directory only root enters (or is gone), and
/// another local user cannot connect to it.
fn assert_only_root_reaches(path: &str) {
    let dir = std::path::Path::new(path).parent().unwrap();
    let mode = Command::new("stat")
        .args(["-c", "%a %U"])
        .arg(dir)
        .output()
        .unwrap();
    if !mode.status.success() {
        return;
    }
    assert_eq!(
        String::from_utf8_lossy(&mode.stdout),
        "700 root\n",
        "{path}"
    );
    let probe = Command::new("runuser")
        .args(["-u", "t-prober", "--", "curl", "-s", "--max-time", "2"])
        .args(["--unix-socket", path, "http://x/health"])
        .output()
        .unwrap();
    assert!(
        !probe.status.success() || probe.stdout.is_empty(),
        "another user reached {path}: {}",
        String::from_utf8_lossy(&probe.stdout)
    );
}

#[test]
fn execs_audit_is_roots_alone_and_never_holds_a_password() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let app = App::hello(&tb, "t-audit", &hosts, 4791, "");
    app.deploy("1.0.0");
    let password = "hunter2-Audit";
    let run = app.shipit(&[
        "-vv",
        "exec",
        "production",
        "--",
        "psql",
        &format!("postgres://app:{password}@db.internal/app"),
        &format!("--password={password}"),
    ]);
    assert!(
        !run.stderr.contains(password),
        "not in shipit's own output, even at -vv"
    );
    let file = "/var/lib/shipit/t-audit/production/audit.jsonl";
    let audit = tb.sh_ok(h, &format!("cat {file}"));
    assert!(!audit.contains(password), "{audit}");
    assert_has(&audit, "postgres://app:***@db.internal/app");
    assert_has(&audit, "--password=***");
    assert_eq!(
        tb.sh_ok(h, &format!("stat -c '%a %U' {file}")),
        "600 root\n"
    );
    let other = tb.sh(h, &format!("runuser -u nosudo -- cat {file}"));
    assert!(!other.status.success(), "a host user reads the audit");
    // Rotated with the site's logs.
    let rotate = tb.sh(
        h,
        "logrotate -d /etc/logrotate.d/shipit-t-audit_production 2>&1",
    );
    assert_has(&String::from_utf8_lossy(&rotate.stdout), "audit.jsonl");
}
