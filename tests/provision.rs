//! `shipit provision` against real testbed hosts (systemd, sshd, nginx, logrotate, Docker).

mod support;

use support::{App, Testbed, assert_has};

/// The files provisioning manages for `app`, as `path mode owner` lines plus a content hash.
fn fingerprint(tb: &Testbed, host: &support::TestHost, app: &str) -> String {
    tb.sh_ok(
        host,
        &format!(
            "cd / && for f in /etc/nginx/conf.d/shipit-{app}_production.conf /etc/systemd/system/{app}_production@.service \
             /etc/logrotate.d/shipit-{app}_production /etc/shipit/{app}/production/upstream.conf; do \
             if [ -f \"$f\" ]; then stat -c '%n %a %U:%G %Y' \"$f\"; sha256sum \"$f\"; else echo \"absent $f\"; fi; done"
        ),
    )
}

fn nginx_workers(tb: &Testbed, host: &support::TestHost) -> String {
    tb.sh_ok(host, "pgrep -f '^nginx: worker' | sort | tr '\\n' ' '")
}

#[test]
fn provision_applies_then_changes_nothing_on_a_rerun() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::new(&tb, "t-prov-apply", &hosts);
    // Ports of its own: nothing may answer there, so nginx answers 502 until a deploy.
    app.file(
        "shipit.toml",
        &(std::fs::read_to_string(app.path().join("shipit.toml"))
            .unwrap()
            .split("\n# test settings\n")
            .next()
            .unwrap()
            .to_owned()
            + "\n[ports]\nblue = 4351\ngreen = 4352\n"),
    );
    for h in &hosts {
        tb.wipe(h, &app.name);
    }

    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "2 hosts");
    // The site, its unit, its logrotate rule, the upstream include and the check token.
    assert_has(&run.stderr, "10 changes");

    for h in &hosts {
        // Files, modes and owners.
        let stat = tb.sh_ok(
            h,
            "stat -c '%n %a %U:%G' /etc/nginx/conf.d/shipit-t-prov-apply_production.conf /etc/systemd/system/t-prov-apply_production@.service \
             /etc/logrotate.d/shipit-t-prov-apply_production /etc/shipit/t-prov-apply/production/upstream.conf \
             /etc/shipit/t-prov-apply/production/verify.conf",
        );
        assert_eq!(
            stat,
            "/etc/nginx/conf.d/shipit-t-prov-apply_production.conf 644 root:root\n\
             /etc/systemd/system/t-prov-apply_production@.service 644 root:root\n\
             /etc/logrotate.d/shipit-t-prov-apply_production 644 root:root\n\
             /etc/shipit/t-prov-apply/production/upstream.conf 644 root:root\n\
             /etc/shipit/t-prov-apply/production/verify.conf 600 root:root\n"
        );
        // Contents are the rendered templates.
        let site = tb.sh_ok(
            h,
            "cat /etc/nginx/conf.d/shipit-t-prov-apply_production.conf",
        );
        assert!(site.contains("server_name t-prov-apply.test;"));
        assert!(site.contains("include /etc/shipit/t-prov-apply/production/upstream.conf;"));
        assert!(site.contains("server_tokens off;"));
        let unit = tb.sh_ok(
            h,
            "cat /etc/systemd/system/t-prov-apply_production@.service",
        );
        assert!(unit.contains("MemoryMax=256M") && unit.contains("CPUQuota=50%"));
        assert!(unit.contains("EnvironmentFile=/etc/shipit/t-prov-apply/production/%i.env"));
        let rotate = tb.sh_ok(h, "cat /etc/logrotate.d/shipit-t-prov-apply_production");
        for want in [
            "daily",
            "rotate 30",
            "compress",
            "maxsize 100M",
            "kill -USR1",
        ] {
            assert!(rotate.contains(want), "logrotate lacks {want}");
        }
        // systemd knows the template unit; no staged candidates are left behind.
        tb.sh_ok(
            h,
            "systemctl cat t-prov-apply_production@blue.service > /dev/null",
        );
        assert_eq!(tb.sh_ok(h, "ls -A /etc/nginx/conf.d /etc/systemd/system /etc/logrotate.d | grep -c 'shipit-new~' || true"), "0\n");
        // nginx serves the site: our security headers on the answer (502 until a deploy).
        let (status, head, _) = tb.http_get(h, &app.domain, "/");
        assert_eq!(status, 502, "{head}");
        assert!(head.contains("X-Frame-Options: DENY"), "{head}");
        assert!(!head.contains("nginx/"), "server tokens leak: {head}");
        tb.sh_ok(
            h,
            "test -s /var/log/shipit/t-prov-apply/production/access.log",
        );
        // Docker was logged in to the registry; the password went over stdin.
        let auth = tb.sh_ok(h, "cat /root/.docker/config.json");
        assert!(auth.contains(&tb.registry), "{auth}");
    }
    assert!(
        !run.stdout.contains(&tb.registry_password) && !run.stderr.contains(&tb.registry_password)
    );

    // A second run finds nothing to do and reloads nothing.
    let before: Vec<_> = hosts
        .iter()
        .map(|h| (fingerprint(&tb, h, &app.name), nginx_workers(&tb, h)))
        .collect();
    let rerun = app.shipit(&["provision", "production"]).success();
    assert_has(&rerun.stderr, "0 changes, nothing reloaded");
    let after: Vec<_> = hosts
        .iter()
        .map(|h| (fingerprint(&tb, h, &app.name), nginx_workers(&tb, h)))
        .collect();
    assert_eq!(before, after, "a re-run touched files or reloaded nginx");
}

#[test]
fn broken_template_is_refused_and_the_old_config_keeps_serving() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::new(&tb, "t-prov-broken", &hosts);
    // Ports of its own: nothing may answer there, so nginx answers 502 until a deploy.
    app.file(
        "shipit.toml",
        &(std::fs::read_to_string(app.path().join("shipit.toml"))
            .unwrap()
            .split("\n# test settings\n")
            .next()
            .unwrap()
            .to_owned()
            + "\n[ports]\nblue = 4361\ngreen = 4362\n"),
    );
    for h in &hosts {
        tb.wipe(h, &app.name);
    }
    app.shipit(&["provision", "production"]).success();
    let before: Vec<String> = hosts
        .iter()
        .map(|h| fingerprint(&tb, h, &app.name))
        .collect();

    // Valid Tera, invalid nginx: an unknown directive.
    let broken = include_str!("../templates/nginx.conf.tera").replace(
        "server_tokens off;",
        "server_tokens off;\n    bogus_directive on;",
    );
    app.file("templates/nginx.conf.tera", &broken);
    let run = app.shipit(&["provision", "production"]).failure(4);
    assert_has(&run.stderr, "refused by `nginx -t`");
    assert!(
        run.stderr.contains("unknown directive \"bogus_directive\""),
        "validator output missing: {}",
        run.stderr
    );
    assert_has(&run.stderr, "templates/nginx.conf.tera");

    for (h, before) in hosts.iter().zip(&before) {
        assert_eq!(
            &fingerprint(&tb, h, &app.name),
            before,
            "the installed files changed"
        );
        let (status, head, _) = tb.http_get(h, &app.domain, "/");
        assert_eq!(status, 502, "nginx stopped serving the site: {head}");
        assert!(head.contains("X-Frame-Options: DENY"));
        tb.sh_ok(h, "nginx -t -q");
        assert_eq!(
            tb.sh_ok(h, "ls -A /etc/nginx/conf.d | grep -c 'shipit-new~' || true"),
            "0\n",
            "a candidate was left behind"
        );
    }

    // A unit systemd refuses, and a logrotate rule logrotate refuses, are caught the same way.
    std::fs::remove_file(app.path().join("templates/nginx.conf.tera")).unwrap();
    app.file(
        "templates/app.service.tera",
        "[Service]\nExecStart=relative/path\nRestart=sometimes\n",
    );
    let run = app.shipit(&["provision", "production"]).failure(4);
    assert_has(&run.stderr, "refused by `systemd-analyze verify`");
    std::fs::remove_file(app.path().join("templates/app.service.tera")).unwrap();
    app.file(
        "templates/logrotate.tera",
        "/var/log/x.log {\n    rotate banana\n}\n",
    );
    let run = app.shipit(&["provision", "production"]).failure(4);
    assert_has(&run.stderr, "refused by `logrotate -d`");
    for (h, before) in hosts.iter().zip(&before) {
        assert_eq!(&fingerprint(&tb, h, &app.name), before);
    }

    // A Tera syntax error is caught before connecting, with its position.
    app.file("templates/logrotate.tera", "{{ app \n");
    let run = app.shipit(&["provision", "production"]).failure(2);
    assert!(
        run.stderr
            .contains("template `templates/logrotate.tera:2:1`"),
        "no position: {}",
        run.stderr
    );
}

#[test]
fn dry_run_shows_diffs_and_changes_nothing() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::new(&tb, "t-prov-dry", &hosts);
    for h in &hosts {
        tb.wipe(h, &app.name);
    }
    // On a fresh host: every file shown as new, nothing written.
    let run = app
        .shipit(&["provision", "production", "--dry-run"])
        .success();
    assert_has(&run.stdout, "--- /dev/null");
    assert!(
        run.stdout.contains("+server_name t-prov-dry.test;")
            || run.stdout.contains("+    server_name t-prov-dry.test;")
    );
    for h in &hosts {
        assert!(
            fingerprint(&tb, h, &app.name)
                .lines()
                .all(|l| l.starts_with("absent"))
        );
    }

    app.shipit(&["provision", "production"]).success();
    let before: Vec<_> = hosts
        .iter()
        .map(|h| (fingerprint(&tb, h, &app.name), nginx_workers(&tb, h)))
        .collect();
    app.file(
        "shipit.toml",
        &std::fs::read_to_string(app.path().join("shipit.toml"))
            .unwrap()
            .replace("256M", "512M"),
    );
    let run = app
        .shipit(&["provision", "production", "--dry-run"])
        .success();
    assert_has(&run.stdout, "-MemoryMax=256M\n+MemoryMax=512M");
    assert_has(&run.stderr, "1 file, reload systemd");
    let after: Vec<_> = hosts
        .iter()
        .map(|h| (fingerprint(&tb, h, &app.name), nginx_workers(&tb, h)))
        .collect();
    assert_eq!(before, after);

    // Applying it changes only the unit, and reloads only systemd.
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "1 file changed, reloaded systemd");
    assert!(!run.stderr.contains("nginx"), "{}", run.stderr);
}

#[test]
fn unreachable_host_is_named_and_nothing_changes() {
    let tb = Testbed::from_env();
    let mut hosts = tb.hosts(1);
    let app_name = "t-prov-unreach";
    tb.wipe(&hosts[0], app_name);
    hosts.push(support::TestHost::unreachable());
    let app = App::new(&tb, app_name, &hosts);
    let run = app.shipit(&["provision", "production"]).failure(3);
    assert_has(&run.stderr, "cannot connect to `root@127.0.0.1:1`");
    assert_has(
        &run.stderr,
        "help: check that `127.0.0.1` is up and sshd listens on port 1",
    );
    assert!(
        fingerprint(&tb, &hosts[0], app_name)
            .lines()
            .all(|l| l.starts_with("absent")),
        "the reachable host was changed"
    );
}

#[test]
fn unknown_host_key_is_refused_with_how_to_accept_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let app = App::new(&tb, "t-prov-hostkey", &hosts);
    let empty = app.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    app.env_file("production", &tb, &hosts, "");
    let text = std::fs::read_to_string(app.path().join("environments/production.toml"))
        .unwrap()
        .replace(
            &tb.known_hosts.display().to_string(),
            &empty.display().to_string(),
        );
    app.file("environments/production.toml", &text);
    let run = app
        .shipit(&["provision", "production", "--dry-run"])
        .failure(3);
    assert_has(&run.stderr, "Host key verification failed");
    assert_has(&run.stderr, "ssh-keyscan -p");
}

#[test]
fn hostile_arguments_reach_the_host_unchanged() {
    use shipit::remote::scripts;
    let tb = Testbed::from_env();
    let host = &tb.hosts(1)[0];
    let words = [
        "it's",
        "$(touch /tmp/pwned)",
        "`id`",
        "a;b|c&&d",
        "new\nline",
        "émoji 🚀",
        "'\"\\$",
        "*",
        "-n",
        "",
    ];
    tb.sh_ok(host, "rm -f /tmp/pwned");
    let spec = shipit::config::parse_host(&host.dest).unwrap();
    let ssh = shipit::config::Ssh {
        identity: Some(tb.key.clone()),
        known_hosts: shipit::config::KnownHostsPolicy::Strict,
        known_hosts_file: Some(tb.known_hosts.clone()),
        connect_timeout: std::time::Duration::from_secs(5),
        max_parallel: 4,
        max_starts: 4,
        persist: std::time::Duration::ZERO,
        bastion: None,
        config_file: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt.block_on(async {
        let h = shipit::ssh::Host::connect(&spec, &ssh).await.unwrap();
        let out = h
            .check(&scripts::EchoArgs { words: &words }.command())
            .await
            .unwrap();
        h.close().await;
        out
    });
    let got: Vec<&[u8]> = out.split(|b| *b == 0).collect();
    assert_eq!(got.len(), words.len() + 1);
    for (g, w) in got.iter().zip(words) {
        assert_eq!(*g, w.as_bytes());
    }
    assert_eq!(
        tb.sh_ok(host, "test -e /tmp/pwned && echo yes || echo no"),
        "no\n"
    );
}

#[test]
fn ten_sites_on_one_host_leave_nginx_as_quiet_as_one() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    // Ten apps with names as long as teams give them, each provisioned (with a rate limit,
    // whose map adds a variable); then `nginx -t` must not warn.
    let mut apps = Vec::new();
    for i in 0..10u16 {
        let name = format!("t-tensites-customer-portal-{i}");
        tb.wipe(h, &name);
        let app = App::new(&tb, &name, &hosts);
        let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
        app.file(
            "shipit.toml",
            &format!(
                "{}\n[ports]\nblue = {}\ngreen = {}\n\n[nginx]\nrate_limit = {{ rate = \"10r/s\" }}\n",
                text.split("\n# test settings\n").next().unwrap(),
                5601 + 2 * i,
                5602 + 2 * i
            ),
        );
        app.shipit(&["provision", "production"]).success();
        apps.push(app);
    }
    let out = tb.sh(h, "nginx -t 2>&1");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("[warn]"),
        "nginx warns with ten sites: {said}"
    );
    for app in &apps {
        tb.wipe(h, &app.name);
    }
}
