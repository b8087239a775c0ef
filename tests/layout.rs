//! Real hosts hold several apps and environments: staging beside production, two apps on one
//! server, ports another app holds, and hosts set up by an earlier shipit (keyed by the app
//! alone) moved to the new layout without dropping a request.

mod support;

use support::{App, Load, TestHost, Testbed, assert_has};

/// `environments/<env>.toml` for `hosts` with its own domain and colour ports.
fn environment(app: &App, tb: &Testbed, env: &str, hosts: &[TestHost], domain: &str, port: u16) {
    let list = hosts
        .iter()
        .map(|h| format!("{:?}", h.dest))
        .collect::<Vec<_>>()
        .join(", ");
    app.file(
        &format!("environments/{env}.toml"),
        &format!(
            "domain = \"{domain}\"\nhosts = [{list}]\n\n[ssh]\nidentity = {:?}\nknown_hosts_file = {:?}\n\n[ports]\nblue = {port}\ngreen = {}\n",
            tb.key.display().to_string(),
            tb.known_hosts.display().to_string(),
            port + 1
        ),
    );
}

/// The `version` of `/version` through a host's nginx for `domain`.
fn version(tb: &Testbed, host: &TestHost, domain: &str) -> String {
    let (status, _, body) = tb.http_get(host, domain, "/version");
    assert_eq!(status, 200, "{}: {body}", host.dest);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["version"].as_str().unwrap().to_owned()
}

#[test]
fn staging_and_production_of_one_app_live_side_by_side_on_the_same_hosts() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello_unprovisioned(&tb, "t-twoenv", &hosts, 4601, "");
    environment(&app, &tb, "production", &hosts, "t-twoenv.test", 4601);
    environment(&app, &tb, "staging", &hosts, "staging.t-twoenv.test", 4611);
    app.commit();
    app.shipit(&["provision", "production"]).success();
    app.shipit(&["provision", "staging"]).success();
    app.deploy("1.0.0");
    app.shipit(&["deploy", "staging", "--version", "2.0.0-rc.1"])
        .success();
    for h in &hosts {
        assert!(version(&tb, h, "t-twoenv.test").starts_with("1.0.0+"));
        assert!(version(&tb, h, "staging.t-twoenv.test").starts_with("2.0.0-rc.1+"));
        let units = tb.sh_ok(
            h,
            "systemctl list-units --plain --no-legend 't-twoenv*' | awk '{print $1}' | sort | tr '\\n' ' '",
        );
        assert_eq!(
            units,
            "t-twoenv_production@green.service t-twoenv_staging@green.service "
        );
    }

    // Each environment has its own lock: staging held by a deploy does not hold production.
    let text = std::fs::read_to_string(app.path().join("environments/staging.toml")).unwrap();
    app.file(
        "environments/staging.toml",
        &format!("{text}\n[hooks]\npost_deploy = [\"sleep 5\"]\n"),
    );
    app.commit();
    let load = Load::start(&hosts, "t-twoenv.test", 2);
    let staging = app.spawn_until(
        &["deploy", "staging", "--version", "2.0.0-rc.2"],
        "hooks.post_deploy",
    );
    let run = app.deploy("1.1.0");
    assert!(!run.stderr.contains("Waiting"), "{}", run.stderr);
    let (status, stderr) = staging.finish();
    assert!(status.success(), "{stderr}");
    load.stop()
        .assert_no_failures("production deployed while staging deploys on the same hosts");
    for h in &hosts {
        assert!(version(&tb, h, "t-twoenv.test").starts_with("1.1.0+"));
        assert!(version(&tb, h, "staging.t-twoenv.test").starts_with("2.0.0-rc.2+"));
    }
    // And its own history.
    let releases = app.shipit(&["releases", "staging", "--json"]).success();
    let lines: serde_json::Value = serde_json::from_str(&releases.stdout).unwrap();
    let names: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["release"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|r| r.starts_with("2.0.0-rc.")),
        "{names:?}"
    );
    // A rollback of staging leaves production alone.
    app.shipit(&["rollback", "staging"]).success();
    for h in &hosts {
        assert!(version(&tb, h, "t-twoenv.test").starts_with("1.1.0+"));
        assert!(version(&tb, h, "staging.t-twoenv.test").starts_with("2.0.0-rc.1+"));
    }
}

#[test]
fn a_second_app_on_ports_another_app_holds_is_refused_by_provision_and_doctor() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let first = App::hello(&tb, "t-first", &hosts, 4621, "");
    first.deploy("1.0.0");
    // The second app left on the same ports: refused before anything changes on the host.
    let second = App::hello_unprovisioned(&tb, "t-second", &hosts, 4621, "");
    let load = Load::start(&hosts, &first.domain, 2);
    let run = second.shipit(&["provision", "production"]).failure(2);
    assert!(
        run.stderr.contains(&format!(
            "on `{}`: port 4622 is already held by container `t-first_production-green`; nothing was changed",
            hosts[0].dest
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        tb.sh_ok(
            &hosts[0],
            "ls /etc/nginx/conf.d/ | grep -c t-second || true"
        ),
        "0\n",
        "nothing of the second app was installed"
    );
    let doctor = second.shipit(&["doctor", "production"]).failure(9);
    assert!(
        doctor.stdout.contains("port 4622") && doctor.stdout.contains("t-first_production-green"),
        "{}",
        doctor.stdout
    );
    // A port a plain process listens on (no container publishes it) is named with the process.
    let pid = tb.sh_ok(
        &hosts[0],
        "nohup python3 -m http.server 4672 --bind 127.0.0.1 > /dev/null 2>&1 < /dev/null & echo $!; \
         for i in $(seq 50); do ss -Hltn 'sport = :4672' | grep -q . && break; sleep 0.1; done",
    );
    let pid = pid.trim().to_owned();
    let _listener = support::OnDrop(|| {
        tb.sh(&hosts[0], &format!("kill {pid}"));
    });
    second.set_hello_env(4671, "");
    let run = second.shipit(&["provision", "production"]).failure(2);
    assert!(
        run.stderr.contains(&format!(
            "port 4672 is already held by process `python3 (pid {pid})`"
        )),
        "{}",
        run.stderr
    );
    // With ports of its own, both apps serve from the one host.
    second.set_hello_env(4631, "");
    second.shipit(&["provision", "production"]).success();
    second.deploy("2.0.0");
    load.stop()
        .assert_no_failures("a second app set up beside the first");
    assert!(version(&tb, &hosts[0], &first.domain).starts_with("1.0.0+"));
    assert!(version(&tb, &hosts[0], &second.domain).starts_with("2.0.0+"));
}

/// What an earlier shipit (one environment per app) left on a host, written as it wrote it:
/// its templates (kept in tests/fixtures/legacy), env files, upstream include and history, its
/// two units running `image`, blue live with 1.0.0, green warm with 0.9.0.
fn set_up_the_earlier_layout(tb: &Testbed, host: &TestHost, app: &str, image: &str, port: u16) {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    for name in ["nginx.conf.tera", "app.service.tera", "logrotate.tera"] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/legacy")
                .join(name),
        )
        .unwrap();
        tera.add_raw_template(name, &text).unwrap();
    }
    let ctx = tera::Context::from_serialize(serde_json::json!({
        "app": app,
        "domain": format!("{app}.test"),
        "environment": "production",
        "upstream_name": format!("shipit_{}", app.replace('-', "_")),
        "upstream_include": format!("/etc/shipit/{app}/upstream.conf"),
        "config_dir": format!("/etc/shipit/{app}"),
        "log_dir": format!("/var/log/shipit/{app}"),
        "container_port": 3000,
        "memory_max": "256M",
        "cpu_quota": "50%",
        "docker_memory": "256m",
        "docker_cpus": "0.50",
        "ports": { "blue": port, "green": port + 1 },
        "tls": null,
    }))
    .unwrap();
    let render = |name: &str| tera.render(name, &ctx).unwrap();
    tb.put(
        host,
        &format!("/etc/nginx/conf.d/shipit-{app}.conf"),
        &render("nginx.conf.tera"),
        "644",
    );
    tb.put(
        host,
        &format!("/etc/systemd/system/{app}@.service"),
        &render("app.service.tera"),
        "644",
    );
    tb.put(
        host,
        &format!("/etc/logrotate.d/shipit-{app}"),
        &render("logrotate.tera"),
        "644",
    );
    tb.put(
        host,
        &format!("/etc/shipit/{app}/upstream.conf"),
        &format!(
            "# Managed by shipit deploy.\nserver 127.0.0.1:{port} max_fails=1 fail_timeout=2s;\nserver 127.0.0.1:{} backup;\n",
            port + 1
        ),
        "644",
    );
    for (colour, release, p) in [
        ("blue", "1.0.0+legacy1", port),
        ("green", "0.9.0+legacy0", port + 1),
    ] {
        tb.put(
            host,
            &format!("/etc/shipit/{app}/{colour}.env"),
            &format!(
                "SHIPIT_IMAGE={image}\nSHIPIT_RELEASE={release}\nSHIPIT_PORT={p}\nSHIPIT_COLOUR={colour}\nSHIPIT_CONFIG=0123456789abcdef\n"
            ),
            "600",
        );
        tb.put(
            host,
            &format!("/etc/shipit/{app}/{colour}.app.env"),
            &format!(
                "SHIPIT_COLOUR={colour}\nSHIPIT_ENVIRONMENT=production\nSHIPIT_RELEASE={release}\n"
            ),
            "600",
        );
    }
    tb.put(
        host,
        &format!("/var/lib/shipit/{app}/history.jsonl"),
        &format!(
            "{{\"time\":1700000000,\"release\":\"0.9.0+legacy0\",\"image\":\"{image}\",\"colour\":\"green\",\"user\":\"ops\",\"machine\":\"old\",\"outcome\":\"deployed\"}}\n{{\"time\":1700000100,\"release\":\"1.0.0+legacy1\",\"image\":\"{image}\",\"colour\":\"blue\",\"user\":\"ops\",\"machine\":\"old\",\"outcome\":\"deployed\"}}\n"
        ),
        "644",
    );
    tb.sh_ok(
        host,
        &format!(
            "mkdir -p /var/log/shipit/{app} && printf '%s' '{}' | docker login --username {} --password-stdin {} >/dev/null && \
             systemctl daemon-reload && systemctl enable --now {app}@blue {app}@green && nginx -t -q && systemctl reload nginx",
            tb.registry_password, tb.registry_user, tb.registry
        ),
    );
}

#[test]
fn a_host_in_the_earlier_layout_is_moved_by_provision_without_dropping_a_request() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello_unprovisioned(&tb, "t-legacy", &hosts, 4641, "");
    let image = app
        .shipit(&["build", "production"])
        .success()
        .stdout
        .trim()
        .to_owned();
    for h in &hosts {
        set_up_the_earlier_layout(&tb, h, "t-legacy", &image, 4641);
    }
    let serving = |want: &str| {
        for h in &hosts {
            let v = version(&tb, h, &app.domain);
            assert!(v.starts_with(want), "{}: {v}, not {want}", h.dest);
        }
    };
    // Wait until both copies answer through nginx for 3 s straight (an nginx worker whose own
    // connection was refused while the copies started holds them failed for 2 s).
    let started = std::time::Instant::now();
    let mut steady = std::time::Instant::now();
    while steady.elapsed() < std::time::Duration::from_secs(3) {
        if hosts
            .iter()
            .any(|h| tb.http_get(h, &app.domain, "/version").0 != 200)
        {
            steady = std::time::Instant::now();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(40));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    serving("1.0.0+legacy1");

    // A deploy refuses, with the command that moves the host.
    let run = app.deploy_fails("2.0.0", 2);
    assert!(
        run.stderr
            .contains("runs this app in shipit's earlier layout")
            && run.stderr.contains("run `shipit provision production`"),
        "{}",
        run.stderr
    );

    // Provision moves it, under load: the copies the earlier shipit started serve on.
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.shipit(&["provision", "production"]).success();
    load.stop()
        .assert_no_failures("provision moving the host off the earlier layout");
    assert_has(&run.stderr, "moved off the earlier layout");
    serving("1.0.0+legacy1");
    for h in &hosts {
        assert_eq!(
            tb.sh_ok(
                h,
                "ls /etc/nginx/conf.d/ | grep t-legacy | tr '\\n' ' '; systemctl is-active t-legacy@blue t-legacy@green | tr '\\n' ' '"
            ),
            "shipit-t-legacy_production.conf active active "
        );
    }
    let status = app.shipit(&["status", "production", "--json"]).success();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["live"], "blue", "{row}");
        assert_eq!(row["release"], "1.0.0+legacy1", "{row}");
        assert_eq!(row["health"]["state"], "healthy", "{row}");
    }
    let releases = app.shipit(&["releases", "production"]).success();
    assert!(
        releases.stdout.contains("1.0.0+legacy1"),
        "the history moved too: {}",
        releases.stdout
    );

    // Deploys replace the earlier units colour by colour, without dropping a request.
    let load = Load::start(&hosts, &app.domain, 2);
    app.deploy("2.0.0");
    serving("2.0.0+");
    app.deploy("3.0.0");
    serving("3.0.0+");
    load.stop()
        .assert_no_failures("deploys replacing the earlier layout's units");
    for h in &hosts {
        assert_eq!(
            tb.sh_ok(h, "systemctl is-active t-legacy@blue t-legacy@green t-legacy_production@blue t-legacy_production@green | tr '\\n' ' '"),
            "inactive inactive active active "
        );
    }
    // The next provision removes what is left of the earlier layout.
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "removed what was left of the earlier layout");
    for h in &hosts {
        assert_eq!(
            tb.sh_ok(
                h,
                "ls /etc/systemd/system/t-legacy@.service /etc/shipit/t-legacy/blue.env /var/lib/shipit/t-legacy/history.jsonl 2>/dev/null | wc -l"
            ),
            "0\n"
        );
    }
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 2.0.0+");
}
