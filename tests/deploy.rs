//! Blue/green deploys, rollbacks and their failures on 3 real testbed hosts, with a bounded
//! load through every host's nginx proving that no request fails.

mod support;

use support::{App, Load, Testbed, assert_has};

fn units(tb: &Testbed, host: &support::TestHost, app: &str) -> String {
    tb.sh_ok(
        host,
        &format!("systemctl is-active {app}_production@blue {app}_production@green | tr '\\n' ' '"),
    )
}

#[test]
fn deploy_rollback_and_back_again_without_dropping_a_request() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-story", &hosts, 4101, "");

    // First deploy: no live colour yet.
    let run = app.deploy("1.0.0");
    assert_has(&run.stderr, "Deployed 1.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);

    // v2 while serving.
    let load = Load::start(&hosts, &app.domain, 2);
    app.deploy("2.0.0");
    load.stop().assert_no_failures("deploy of 2.0.0");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    for h in &hosts {
        assert_eq!(
            units(&tb, h, "t-story"),
            "active active ",
            "the previous colour stays warm"
        );
    }

    // Rollback: a switch to the warm colour.
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.shipit(&["rollback", "production"]).success();
    load.stop().assert_no_failures("rollback");
    assert!(
        !run.stderr.contains("Started"),
        "a warm rollback starts nothing: {}",
        run.stderr
    );
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);

    // A rollback of the rollback goes forward again.
    app.shipit(&["rollback", "production"]).success();
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);

    // v3, then back to 1.0.0 by name: its colour was replaced, so it starts from its image.
    app.deploy("3.0.0");
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app
        .shipit(&["rollback", "production", "--to", "1.0.0"])
        .success();
    load.stop().assert_no_failures("rollback --to 1.0.0");
    assert_has(&run.stderr, "Started 1.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);

    // A retained release that does not exist is refused with the list.
    let run = app
        .shipit(&["rollback", "production", "--to", "9.9.9"])
        .failure(2);
    assert_has(
        &run.stderr,
        "release `9.9.9` is not among the retained releases",
    );

    // The history, merged from all hosts, newest first; status per host.
    let releases = app.shipit(&["releases", "production", "--json"]).success();
    let lines: serde_json::Value = serde_json::from_str(&releases.stdout).unwrap();
    let outcomes: Vec<(String, String)> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["release"]
                    .as_str()
                    .unwrap()
                    .split('+')
                    .next()
                    .unwrap()
                    .to_owned(),
                l["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("1.0.0", "rolled-back"),
        ("3.0.0", "deployed"),
        ("2.0.0", "rolled-back"),
        ("1.0.0", "rolled-back"),
        ("2.0.0", "deployed"),
        ("1.0.0", "deployed"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(outcomes, want);
    assert!(
        lines
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["missing_on"].as_array().unwrap().is_empty())
    );

    let status = app.shipit(&["status", "production", "--json"]).success();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["health"]["state"], "healthy", "{row}");
        assert!(row["release"].as_str().unwrap().starts_with("1.0.0+"));
        assert!(row["lock"].is_null());
    }

    // Redeploying what already serves changes nothing.
    let run = app
        .shipit(&["rollback", "production", "--to", "1.0.0"])
        .success();
    assert_has(&run.stderr, "already serves on every host");

    // Secrets and settings reach the container, at mode 0600.
    for h in &hosts {
        let modes = tb.sh_ok(
            h,
            "stat -c '%a %U' /etc/shipit/t-story/production/blue.env /etc/shipit/t-story/production/blue.app.env",
        );
        assert_eq!(modes, "600 root\n600 root\n");
    }
}

#[test]
fn a_release_that_never_gets_healthy_switches_no_host() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-unhealthy", &hosts, 4111, "");
    app.deploy("1.0.0");

    app.set_hello_env(4111, "HELLO_HEALTH = \"unhealthy\"");
    app.health_timeout("3s");
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.deploy_fails("2.0.0", 7);
    load.stop()
        .assert_no_failures("a deploy whose health gate fails");
    assert_has(&run.stderr, "health gate failed on `root@127.0.0.1:");
    assert_has(
        &run.stderr,
        r#"last answer: HTTP 200: {"status":"unhealthy""#,
    );
    assert_has(&run.stderr, "log lines of t-unhealthy_production@");
    assert!(
        run.stderr.contains("GET /health 200"),
        "the container's log is shown: {}",
        run.stderr
    );
    assert_has(&run.stderr, "no host was switched");
    assert!(!run.stderr.contains("Switched"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    for h in &hosts {
        assert_eq!(
            units(&tb, h, "t-unhealthy"),
            "inactive active ",
            "the new copies are stopped"
        );
    }
    let releases = app.shipit(&["releases", "production"]).success();
    assert!(
        releases.stdout.lines().next().unwrap().contains("failed"),
        "{}",
        releases.stdout
    );
}

#[test]
fn a_release_that_dies_after_the_switch_is_rolled_back_everywhere() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-dies", &hosts, 4121, "");
    app.deploy("1.0.0");

    // Passes the gate (healthy within ~0.5 s), then exits 1.2 s after it started.
    app.set_hello_env(4121, "HELLO_EXIT_AFTER = \"1.2\"");
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.deploy_fails("2.0.0", 7);
    let report = load.stop();
    assert!(
        run.stderr.contains("Switched 3 hosts"),
        "it passed the gate and switched: {}",
        run.stderr
    );
    assert_has(&run.stderr, "verification through nginx failed");
    assert_has(&run.stderr, "every host was switched back");
    assert_eq!(run.stderr.matches("Reverted").count(), 3, "{}", run.stderr);
    report.assert_no_failures("a release dying after the switch (nginx's backup serves)");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    let releases = app.shipit(&["releases", "production"]).success();
    assert!(
        releases
            .stdout
            .lines()
            .next()
            .unwrap()
            .contains("auto-rolled-back"),
        "{}",
        releases.stdout
    );
}

#[test]
fn a_second_deploy_is_refused_with_the_holder_or_waits() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-lock", &hosts, 4131, "");
    app.deploy("1.0.0");
    app.set_hello_env(4131, "HELLO_START_DELAY = \"2\"");

    // Once the first deploy starts its new copies, it holds the lock.
    let first = app.spawn_until(&["deploy", "production", "--version", "2.0.0"], "Started");
    let second = app.deploy_fails("3.0.0", 6);
    assert!(
        second
            .stderr
            .contains("the deploy lock of `production` is held on `root@127.0.0.1:"),
        "{}",
        second.stderr
    );
    assert_has(&second.stderr, "for `deploy 2.0.0+");
    assert_has(&second.stderr, "shipit lock release production");
    let status = app.shipit(&["lock", "status", "production"]).success();
    assert_has(&status.stdout, "held by");

    let waited = app
        .shipit(&[
            "deploy",
            "production",
            "--version",
            "3.0.0",
            "--lock-wait",
            "60s",
        ])
        .success();
    assert_has(&waited.stderr, "Waiting");
    let (status, stderr) = first.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 3]);
    let status = app.shipit(&["lock", "status", "production"]).success();
    assert_eq!(
        status.stdout.matches(": free").count(),
        3,
        "the lock is released: {}",
        status.stdout
    );
}

#[test]
fn an_unreachable_host_stops_the_deploy_before_any_switch() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-unreach", &hosts, 4141, "");
    app.deploy("1.0.0");
    let mut with_dead = hosts.clone();
    with_dead.push(support::TestHost::unreachable());
    app.env_file("production", &tb, &with_dead, "");
    app.commit();
    let run = app.deploy_fails("2.0.0", 3);
    assert_has(&run.stderr, "cannot connect to `root@127.0.0.1:1`");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    for h in &hosts {
        assert_eq!(
            units(&tb, h, "t-unreach"),
            "inactive active ",
            "nothing was started"
        );
    }
}

#[test]
fn a_killed_deploy_is_converged_by_the_next_one() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello(&tb, "t-kill", &hosts, 4151, "");
    app.deploy("1.0.0");

    let load = Load::start(&hosts, &app.domain, 2);
    for (version, after) in [("2.0.0", "Healthy"), ("3.0.0", "Switched")] {
        // SIGKILL at a step boundary: after the health gate, and after the switch.
        app.spawn_until(&["deploy", "production", "--version", version], after)
            .kill();

        // The lock is left behind, and the next deploy takes it over (same machine, dead pid).
        let run = app.deploy(version);
        assert_has(
            &run.stderr,
            "taking over the lock left by a shipit that is no longer running",
        );
        assert_eq!(app.versions(&tb, &hosts), [version; 3]);
    }
    load.stop()
        .assert_no_failures("two deploys killed with SIGKILL and their re-runs");
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 2.0.0+");
}

#[test]
fn tls_sites_serve_https_redirect_http_and_still_verify() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    // A certificate of the team's private CA, two days from its expiry.
    let ca = support::TestCa::new();
    let (cert, key) = ca.issue_for_days(&["t-tls.test"], 2);
    for h in &hosts {
        tb.put(h, "/etc/ssl/shipit-test-san/cert.pem", &cert.pem(), "644");
        tb.put(
            h,
            "/etc/ssl/shipit-test-san/key.pem",
            &key.serialize_pem(),
            "600",
        );
    }
    let mut app = App::hello(&tb, "t-tls", &hosts, 4161, "");
    let tls = "\n[tls]\ncertificate = \"/etc/ssl/shipit-test-san/cert.pem\"\ncertificate_key = \"/etc/ssl/shipit-test-san/key.pem\"\n";
    app.env_file("production", &tb, &hosts, tls).commit();
    app.shipit(&["provision", "production"]).success();
    let run = app.deploy("1.0.0");
    // Verified over HTTPS with the domain as SNI too; a certificate this machine does not
    // trust (the CA is not given yet) is said, per host.
    assert_eq!(
        run.stderr
            .matches(
                "serves `t-tls.test` over HTTPS with a certificate this machine does not trust"
            )
            .count(),
        2,
        "{}",
        run.stderr
    );
    for h in &hosts {
        let https = tb.sh_ok(
            h,
            "curl -sk -i --resolve t-tls.test:443:127.0.0.1 https://t-tls.test/version",
        );
        assert!(https.starts_with("HTTP/1.1 200"), "{https}");
        assert!(
            https.contains("Strict-Transport-Security: max-age=63072000"),
            "{https}"
        );
        assert!(
            !https.contains("X-Shipit-Upstream"),
            "internal addresses are not told to clients: {https}"
        );
        let (status, head, _) = tb.http_get(h, "t-tls.test", "/version");
        assert_eq!(status, 301, "plain HTTP is redirected: {head}");
        let protocols = tb.sh_ok(h, "for p in tls1_1 tls1_2; do echo | openssl s_client -$p -connect 127.0.0.1:443 -servername t-tls.test >/dev/null 2>&1 && echo \"$p ok\" || echo \"$p refused\"; done");
        assert_eq!(protocols, "tls1_1 refused\ntls1_2 ok\n");
    }
    // Doctor reads the served certificate: under 14 days is a warning, not a failure.
    let doctor = app.shipit(&["doctor", "production"]).success();
    for h in &hosts {
        assert!(
            doctor.stdout.contains(&format!(
                "WARN {}: tls certificate: `t-tls.test` expires",
                h.dest
            )) && doctor.stdout.contains("(in 1 days)"),
            "{}",
            doctor.stdout
        );
    }
    // With the private CA trusted (`SSL_CERT_FILE`), nothing is said.
    app.set_env("SSL_CERT_FILE", &ca.pem_file.path().display().to_string());
    let run = app.deploy("2.0.0");
    assert!(!run.stderr.contains("does not trust"), "{}", run.stderr);
    let doctor = app.shipit(&["doctor", "production"]).success();
    assert!(
        doctor.stdout.contains("; trusted here"),
        "{}",
        doctor.stdout
    );

    // A preview over HTTPS: the header on the live name reaches the waiting release (the
    // certificate covers only the live name), users get the live one; discarded after.
    app.env_file("production", &tb, &hosts, &format!("{tls}\n[preview]\n"))
        .commit();
    app.shipit(&["provision", "production"]).success();
    let run = app
        .shipit(&["deploy", "production", "--version", "3.0.0", "--no-promote"])
        .success();
    assert_has(&run.stderr, "preview: https://preview.t-tls.test/");
    for h in &hosts {
        let version = |header: &str| {
            tb.sh_ok(
                h,
                &format!(
                    "curl -sk --resolve t-tls.test:443:127.0.0.1 {header} https://t-tls.test/version"
                ),
            )
        };
        assert!(
            version("-H 'X-Shipit-Preview: yes'").contains("\"version\":\"3.0.0+"),
            "{}",
            version("-H 'X-Shipit-Preview: yes'")
        );
        assert!(
            version("").contains("\"version\":\"2.0.0+"),
            "{}",
            version("")
        );
    }
    app.shipit(&["discard", "production"]).success();

    // Every host checks what it serves daily by itself, so that a renewal nobody ran is noticed
    // without anyone running shipit: under 14 days it says so in its journal and calls the
    // webhooks of `[notify]` from the host. A listener on the host's loopback stands in for the
    // webhook; its URL (a credential) is in a script only root reads.
    let hooked = format!("{tls}[notify]\nwebhook = \"http://127.0.0.1:9977/tls?token=s3cret\"\n");
    app.env_file("production", &tb, &hosts, &hooked).commit();
    app.shipit(&["provision", "production"]).success();
    let h = &hosts[0];
    let unit = "t-tls_production_tls_check";
    assert_eq!(
        tb.sh_ok(
            h,
            &format!(
                "systemctl is-enabled {unit}.timer; systemctl is-active {unit}.timer; stat -c '%a %U' /etc/shipit/t-tls/production/tls-check.sh"
            )
        ),
        "enabled\nactive\n700 root\n"
    );
    tb.put(
        h,
        "/tmp/shipit-tls-hook.py",
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_POST(self):\n\
         \x20       body = self.rfile.read(int(self.headers['Content-Length']))\n\
         \x20       open('/tmp/shipit-tls-hook.body', 'ab').write(self.path.encode() + b' ' + body + b'\\n')\n\
         \x20       self.send_response(200)\n\
         \x20       self.end_headers()\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         s = http.server.HTTPServer(('127.0.0.1', 9977), H)\n\
         s.timeout = 60\n\
         s.handle_request()\n",
        "600",
    );
    tb.sh_ok(
        h,
        "rm -f /tmp/shipit-tls-hook.body; setsid python3 /tmp/shipit-tls-hook.py < /dev/null > /dev/null 2>&1 & sleep 1",
    );
    let check = tb.sh(h, &format!("systemctl start {unit}.service"));
    assert!(
        !check.status.success(),
        "the check fails: the certificate is due"
    );
    let journal = tb.sh_ok(
        h,
        &format!("journalctl -u {unit}.service --no-pager -o cat -n 30"),
    );
    assert_has(&journal, "t-tls production on ");
    assert_has(&journal, "the certificate for t-tls.test expires");
    assert_has(&journal, "(in 1 days)");
    assert_has(
        &journal,
        "put a renewed certificate in /etc/ssl/shipit-test-san/cert.pem",
    );
    let body = tb.sh_ok(h, "sleep 1; cat /tmp/shipit-tls-hook.body");
    assert_has(
        &body,
        "/tls?token=s3cret {\"event\":\"certificate-expiring\"",
    );
    assert_has(&body, "\"domain\":\"t-tls.test\"");
    assert_has(&body, "\"days_left\":1,");
    assert!(!journal.contains("s3cret"), "{journal}");
    // A host user cannot read the webhook address.
    let peek = tb.sh(
        h,
        "su nosudo -s /bin/sh -c 'cat /etc/shipit/t-tls/production/tls-check.sh'",
    );
    assert!(!peek.status.success());
}

/// Status codes of `count` requests in a row through a host's published nginx port, from this
/// machine, with extra curl arguments (headers).
fn burst(host: &support::TestHost, domain: &str, count: usize, extra: &[&str]) -> Vec<u16> {
    let url = format!("http://127.0.0.1:{}/version", host.http_port);
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "%{http_code}\\n", "-H"])
        .arg(format!("Host: {domain}"))
        .args(extra)
        // `-o` is per URL.
        .args((0..count).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn a_rate_limit_answers_429_with_retry_after_per_client_and_a_csp_is_report_only_until_enforced() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let app = App::hello_unprovisioned(&tb, "t-limits", &hosts, 4831, "");
    let settings = |extra: &str| {
        format!(
            "\n[nginx]\nrate_limit = {{ rate = \"5r/s\", burst = 5 }}\ncsp = \"default-src 'self'; img-src *\"\n{extra}"
        )
    };
    app.env_file("production", &tb, &hosts, &settings(""));
    app.commit();
    app.shipit(&["provision", "production"]).success();
    // shipit's own checks (the gate, the verification, 20 smoke requests) are never limited.
    app.deploy("1.0.0");

    // One client address (this machine) over the rate: 429 after the burst, with Retry-After.
    let codes = burst(h, "t-limits.test", 40, &[]);
    let limited = codes.iter().filter(|c| **c == 429).count();
    let passed = codes.iter().filter(|c| **c == 200).count();
    assert!(passed >= 6 && limited >= 20, "{codes:?}");
    assert_eq!(passed + limited, 40, "{codes:?}");
    let (status, head, body) = tb.http_get(h, "t-limits.test", "/version");
    assert_eq!(status, 429, "{head}");
    assert_has(&head, "Retry-After: 1");
    assert_has(&body, "Too many requests");
    // Another client (the host itself) passes meanwhile.
    let other = tb.sh_ok(
        h,
        "curl -s -o /dev/null -w '%{http_code}' -H 'Host: t-limits.test' http://127.0.0.1/version",
    );
    assert_eq!(other, "200");
    // The policy is reported, not enforced: it cannot break the app until the team says so.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status, head, _) = tb.http_get(h, "t-limits.test", "/version");
    assert_eq!(status, 200, "{head}");
    assert_has(
        &head,
        "Content-Security-Policy-Report-Only: default-src 'self'; img-src *",
    );

    // Behind a load balancer: the client is the address it forwards, each with its own limit.
    app.env_file(
        "production",
        &tb,
        &hosts,
        &settings("csp_enforce = true\ntrusted_proxies = [\"172.16.0.0/12\"]\n"),
    );
    app.commit();
    app.shipit(&["provision", "production"]).success();
    let codes = burst(
        h,
        "t-limits.test",
        30,
        &["-H", "X-Forwarded-For: 198.51.100.7"],
    );
    assert!(codes.contains(&429), "{codes:?}");
    let codes = burst(
        h,
        "t-limits.test",
        3,
        &["-H", "X-Forwarded-For: 198.51.100.8"],
    );
    assert_eq!(codes, [200, 200, 200]);
    let (_, head, _) = tb.http_get(h, "t-limits.test", "/version");
    assert_has(
        &head,
        "Content-Security-Policy: default-src 'self'; img-src *",
    );
    // And deploys still verify through nginx.
    app.deploy("2.0.0");
}

#[test]
fn keep_previous_stop_drains_and_stops_the_old_colour_and_old_images_are_pruned() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-prune", &hosts, 4171, "");
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace("[deploy]\nverify_window = \"1500ms\"", "[deploy]\nverify_window = \"1500ms\"\nkeep_previous = \"stop\"\ndrain = \"500ms\"\nretain = 2"),
    )
    .commit();
    app.deploy("1.0.0");
    for v in ["2.0.0", "3.0.0", "4.0.0"] {
        let load = Load::start(&hosts, &app.domain, 2);
        app.deploy(v);
        load.stop().assert_no_failures(&format!(
            "deploy {v} with the previous colour stopped after a drain"
        ));
    }
    for h in &hosts {
        // Only the live colour runs, and nginx has no backup to fall back on.
        let live = tb.sh_ok(h, "cat /etc/shipit/t-prune/production/upstream.conf");
        assert!(!live.contains("backup"), "{live}");
        let units = tb.sh_ok(
            h,
            "systemctl is-active t-prune_production@blue t-prune_production@green | sort | tr '\\n' ' '",
        );
        assert_eq!(units, "active inactive ", "{units}");
        // Images: the last `retain` releases and what either colour holds, no more.
        let images = tb.sh_ok(h, "docker image ls --digests --format '{{.Digest}}' registry.test:5000/tests/t-prune | sort");
        let colours = tb.sh_ok(h, "sed -n 's/^SHIPIT_IMAGE=.*@//p' /etc/shipit/t-prune/production/blue.env /etc/shipit/t-prune/production/green.env | sort");
        assert_eq!(
            images, colours,
            "only the images of 4.0.0 (live) and 3.0.0 (stopped, retained) are left"
        );
    }
    assert_eq!(app.versions(&tb, &hosts), ["4.0.0"; 2]);
}

/// A CI pipeline builds once and promotes that image: `deploy --no-build` finds the release of
/// the current commit in the registry, builds nothing, and refuses (changing nothing) when the
/// release was never pushed.
#[test]
fn no_build_deploys_the_image_already_pushed_to_every_environment() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello_unprovisioned(&tb, "t-nobuild", &hosts, 4331, "");
    // staging is the first host, production the second: one image for both.
    app.env_file(
        "staging",
        &tb,
        &hosts[..1],
        "[deploy]\nverify_window = \"0s\"\n",
    );
    app.env_file(
        "production",
        &tb,
        &hosts[1..],
        "[deploy]\nverify_window = \"0s\"\n",
    );
    app.commit();
    app.shipit(&["provision", "staging"]).success();
    app.shipit(&["provision", "production"]).success();

    // Never built at this version: refused before any host is touched.
    let refused = app
        .shipit(&["deploy", "staging", "--no-build", "--version", "3.0.0"])
        .failure(5);
    assert!(
        refused.stderr.contains("is not in the registry")
            && refused.stderr.contains("shipit build staging"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("Building"), "{}", refused.stderr);
    for h in &hosts {
        let (status, _, _) = tb.http_get(h, &app.domain, "/version");
        assert_ne!(status, 200, "{}: nothing may serve yet", h.dest);
    }

    let built = app
        .shipit(&["build", "staging", "--version", "3.0.0"])
        .success();
    let pushed = built.stdout.trim().to_owned();
    let report = |env: &str| {
        let run = app
            .shipit(&["deploy", env, "--no-build", "--version", "3.0.0", "--json"])
            .success();
        assert!(!run.stderr.contains("Building"), "{}", run.stderr);
        assert_has(&run.stderr, "Found");
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["image"].as_str().unwrap().to_owned()
    };
    assert_eq!(report("staging"), pushed);
    assert_eq!(report("production"), pushed);
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0", "3.0.0"]);
}

/// `/version` through a host's nginx with `Host: host` and `headers`: the status and the
/// version (its part before `+`), or the body when it is not a version.
fn version_via(h: &support::TestHost, host: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
        .args(["-H", &format!("Host: {host}")]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{}/version", h.http_port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let version = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .map_or_else(
            || body.to_owned(),
            |v| v.split('+').next().unwrap_or("").to_owned(),
        );
    (code.trim().parse().unwrap_or(0), version)
}

#[test]
fn a_release_waits_for_promotion_beside_the_live_one_then_is_promoted_or_discarded() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello_unprovisioned(&tb, "t-preview", &hosts, 4371, "");
    // A worker beside the web process: a waiting release's must not consume the live queue.
    for h in &hosts {
        tb.sh_ok(h, "install -d -o 65534 -g 65534 /var/lib/t-preview-data");
    }
    let text = std::fs::read_to_string(app.path().join("shipit.toml"))
        .unwrap()
        .replace(
            "cpu_quota = \"50%\"\n",
            "cpu_quota = \"50%\"\nvolumes = [\"/var/lib/t-preview-data:/data\"]\n",
        );
    app.file(
        "shipit.toml",
        &format!("{text}\n[preview]\n\n[processes.worker]\ncommand = [\"worker\"]\nready_after = \"1s\"\n"),
    )
    .commit();
    let workers = |h: &support::TestHost| {
        tb.sh_ok(
            h,
            "systemctl is-active t-preview_production_worker@blue t-preview_production_worker@green | tr '\\n' ' '",
        )
    };
    app.shipit(&["provision", "production"]).success();
    let preview = format!("preview.{}", app.domain);
    app.deploy("1.0.0");
    for h in &hosts {
        assert_eq!(
            version_via(h, &preview, &[]).0,
            502,
            "nothing waits: the preview answers 502"
        );
    }

    // 2.0.0 waits: users keep 1.0.0 under load; the preview name and the header reach 2.0.0.
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app
        .shipit(&["deploy", "production", "--version", "2.0.0", "--no-promote"])
        .success();
    assert_has(&run.stderr, "Waiting");
    assert_has(&run.stderr, "shipit promote production");
    assert!(!run.stderr.contains("Deployed"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    for h in &hosts {
        assert_eq!(version_via(h, &preview, &[]), (200, "2.0.0".into()));
        assert_eq!(
            version_via(h, &app.domain, &["X-Shipit-Preview: 1"]),
            (200, "2.0.0".into())
        );
        assert_eq!(version_via(h, &app.domain, &[]), (200, "1.0.0".into()));
    }
    let status = app.shipit(&["status", "production"]).success();
    assert_eq!(
        status
            .stdout
            .matches("waiting for promotion: 2.0.0")
            .count(),
        3,
        "{}",
        status.stdout
    );
    // Only the live release's worker runs while 2.0.0 waits; promoted, only 2.0.0's.
    let before: Vec<String> = hosts.iter().map(workers).collect();
    for w in &before {
        assert_eq!(w.matches("inactive").count(), 1, "one worker runs: {w}");
    }

    // Promoted: the very copies that were previewed go live; the preview is empty again.
    let run = app.shipit(&["promote", "production"]).success();
    assert_has(&run.stderr, "Promoted 2.0.0+");
    assert!(
        !run.stderr.contains("Starting"),
        "nothing restarts: {}",
        run.stderr
    );
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    for (h, before) in hosts.iter().zip(&before) {
        assert_eq!(version_via(h, &preview, &[]).0, 502);
        let after = workers(h);
        assert_eq!(
            after.matches("inactive").count(),
            1,
            "one worker runs: {after}"
        );
        assert_ne!(&after, before, "the worker moved to the promoted colour");
    }
    let status = app.shipit(&["status", "production"]).success();
    assert!(!status.stdout.contains("waiting"), "{}", status.stdout);
    let again = app.shipit(&["promote", "production"]).failure(2);
    assert_has(&again.stderr, "nothing waits for promotion");

    // Discarded: 3.0.0 is stopped everywhere, users never left 2.0.0.
    app.shipit(&["deploy", "production", "--version", "3.0.0", "--no-promote"])
        .success();
    let run = app.shipit(&["discard", "production"]).success();
    assert_has(&run.stderr, "Discarded 3.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    for h in &hosts {
        assert_eq!(version_via(h, &preview, &[]).0, 502);
        assert_eq!(
            units(&tb, h, "t-preview")
                .split_whitespace()
                .filter(|u| *u == "active")
                .count(),
            1
        );
    }

    // A deploy over a waiting release says it replaces it, and nothing waits after it.
    app.shipit(&["deploy", "production", "--version", "4.0.0", "--no-promote"])
        .success();
    let run = app.deploy("5.0.0");
    assert_has(&run.stderr, "4.0.0+");
    assert_has(&run.stderr, "replaces it with 5.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["5.0.0"; 3]);
    let status = app.shipit(&["status", "production"]).success();
    assert!(!status.stdout.contains("waiting"), "{}", status.stdout);
    load.stop()
        .assert_no_failures("a preview, its promotion, a discard and a deploy over a preview");
}

/// The number after `prefix` in `text` (such as `12` in `(12 of 240 requests)`).
fn number_after(text: &str, prefix: &str) -> f64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` in {text}"))
        + prefix.len();
    text[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{prefix}` in {text}"))
}

#[test]
fn a_canary_of_a_good_release_reaches_everyone_and_a_failing_one_is_switched_back_by_its_error_rate()
 {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let app = App::hello_unprovisioned(&tb, "t-canary", &hosts, 4381, "");
    let settings = |env: &str| {
        app.set_hello_env(4381, env);
        let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
        app.file(
            "shipit.toml",
            &format!("{text}\n[canary]\nhold = \"2s\"\nmin_requests = 40\n"),
        )
        .commit();
    };
    settings("");
    app.shipit(&["provision", "production"]).success();
    app.deploy("1.0.0");

    // A good release: each step passes on its figures, the split is the one asked for.
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app
        .shipit(&[
            "deploy",
            "production",
            "--version",
            "2.0.0",
            "--canary",
            "20%,50%",
        ])
        .success();
    load.stop().assert_no_failures("a canary of a good release");
    let steps: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("Canary "))
        .collect();
    eprintln!("{}", steps.join("\n"));
    assert_eq!(steps.len(), 2, "{}", run.stderr);
    assert!(
        steps[0].contains("20% on 3 hosts") && steps[0].contains("passed"),
        "{steps:?}"
    );
    for (step, want) in [(steps[0], 20.0), (steps[1], 50.0)] {
        let split = number_after(&step[step.rfind("; ").unwrap()..], "; ");
        assert!(
            (split - want).abs() < 6.0,
            "asked {want}%, measured {split}%: {step}"
        );
    }
    assert_has(&run.stderr, "Deployed 2.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    let releases = app.shipit(&["releases", "production"]).success();
    assert_has(&releases.stdout, "canary: 20% passed (new 0.0% errors");

    // 5% of its answers are 500s: the first step's error rate alone switches every host back.
    settings("HELLO_ERROR_RATE = \"0.05\"");
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app
        .shipit(&[
            "deploy",
            "production",
            "--version",
            "3.0.0",
            "--canary",
            "50%",
        ])
        .failure(7);
    let report = load.stop();
    let verdict = run
        .stderr
        .lines()
        .find(|l| l.contains("the canary at 50% failed: error rate "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    eprintln!("{verdict}");
    let rate = number_after(verdict, "failed: error rate ");
    assert!((3.0..=7.0).contains(&rate), "{verdict}");
    assert!(number_after(verdict, "% (") > 0.0, "{verdict}");
    // Users' failed requests are the canary's own errors: every one it answered until every
    // host went back (counted from nginx's log after the switch back).
    let errors = number_after(verdict, "requests, ");
    assert!(
        report.failed > 0 && report.failed as f64 <= errors,
        "the only failed requests are the canary's own {errors} errors: {report:?}"
    );
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    assert_eq!(
        run.stderr.matches("Reverted").count(),
        3,
        "every host switched back: {}",
        run.stderr
    );
    let releases = app.shipit(&["releases", "production"]).success();
    assert_has(&releases.stdout, "the canary at 50% failed: error rate");
}
