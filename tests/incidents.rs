//! When things are already wrong: the README's runbook ("When things are already wrong"),
//! staged on the real testbed under load. The live copy has crashed, a host is down, a host is
//! new or lost its state, a host was taken out of `hosts`, another environment shares the host,
//! the deploying machine's clock is wrong, the configuration changed since the last provision,
//! a killed CI job left its lock. Each test asserts what users got (no failed request wherever
//! a copy could serve them) and what shipit printed and recorded, read from the hosts.

mod support;

use std::process::Command;

use support::{App, Frozen, Load, TestHost, Testbed, assert_has};

/// The container of a colour on a host: its ID and when it started (the same after a run
/// means it was never restarted).
fn container(tb: &Testbed, h: &TestHost, app: &str, colour: &str) -> String {
    tb.sh_ok(
        h,
        &format!(
            "docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}}' {app}_production-{colour}"
        ),
    )
}

/// The live copy crashes and stays down (systemd gave up on it): its container killed, its
/// unit stopped. Users now get the previous colour through nginx's backup.
fn crash(tb: &Testbed, h: &TestHost, app: &str, colour: &str) {
    tb.sh_ok(
        h,
        &format!(
            "docker kill {app}_production-{colour} >/dev/null 2>&1; systemctl stop {app}_production@{colour}; \
             docker rm -f {app}_production-{colour} >/dev/null 2>&1; true"
        ),
    );
}

/// The smoke check's latency threshold relaxed (this machine's two cores carry the hosts, the
/// load and the tests): what these tests judge is what users got, counted by the load.
const SMOKE: &str = "[smoke]\nmax_p95 = \"5s\"\n";

fn relax_smoke(app: &App) {
    let path = app.path().join("environments/production.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    if !text.contains("[smoke]") {
        app.file("environments/production.toml", &format!("{text}\n{SMOKE}"));
        app.commit();
    }
}

/// The last line of a host's history.
fn last_history(tb: &Testbed, h: &TestHost, app: &str) -> serde_json::Value {
    let line = tb.sh_ok(
        h,
        &format!("tail -n 1 /var/lib/shipit/{app}/production/history.jsonl"),
    );
    serde_json::from_str(&line).unwrap()
}

/// v1 then v2 deployed to `hosts`: blue serves v2 (on `port`), green runs v1 warm as nginx's
/// backup (on `port + 1`; the first deploy goes to green).
fn two_releases(tb: &Testbed, name: &str, hosts: &[TestHost], port: u16) -> App {
    let app = App::hello(tb, name, hosts, port, "");
    relax_smoke(&app);
    app.deploy("1.0.0");
    app.deploy("2.0.0");
    assert_eq!(app.versions(tb, hosts), vec!["2.0.0"; hosts.len()]);
    app
}

#[test]
fn the_live_copy_crashed_a_rollback_makes_the_previous_one_live_without_restarting_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let name = "t-crashed";
    let app = two_releases(&tb, name, &hosts, 5501);
    let green: Vec<String> = hosts
        .iter()
        .map(|h| container(&tb, h, name, "green"))
        .collect();

    let load = Load::start(&hosts, &app.domain, 2);
    for h in &hosts {
        crash(&tb, h, name, "blue");
    }
    // Users get the previous release, through nginx's backup.
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "users get green 1.0.0+");
    assert_has(&status.stdout, "through nginx's backup");
    let rows: serde_json::Value = serde_json::from_str(
        &app.shipit(&["status", "production", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["live"], "blue", "{row}");
        assert_eq!(row["through_backup"], "green", "{row}");
        assert_eq!(row["health"]["state"], "down", "{row}");
    }

    // The rollback goes to the release before the crashed one, where it already serves: a
    // switch, and nothing restarted.
    let run = app.shipit(&["rollback", "production"]).success();
    load.stop()
        .assert_no_failures("a crash of the live copy and the rollback");
    assert_has(&run.stderr, "Rolled back");
    assert_has(&run.stderr, "to 1.0.0+");
    for (h, before) in hosts.iter().zip(&green) {
        assert_eq!(
            &container(&tb, h, name, "green"),
            before,
            "{}: the copy that served was never restarted",
            h.dest
        );
        let entry = last_history(&tb, h, name);
        assert_eq!(entry["outcome"], "rolled-back", "{entry}");
        assert_eq!(entry["colour"], "green", "{entry}");
        let upstream = tb.sh_ok(
            h,
            &format!("cat /etc/shipit/{name}/production/upstream.conf"),
        );
        assert_has(&upstream, "server 127.0.0.1:5502 max_fails");
    }
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
}

#[test]
fn a_hotfix_while_the_live_copy_is_down_starts_in_its_colour_and_never_touches_what_serves() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-hotfix";
    let app = two_releases(&tb, name, &hosts, 5511);
    let green: Vec<String> = hosts
        .iter()
        .map(|h| container(&tb, h, name, "green"))
        .collect();
    let load = Load::start(&hosts, &app.domain, 2);
    for h in &hosts {
        crash(&tb, h, name, "blue");
    }

    // A hotfix that is not healthy: the copy users get (green, through the backup) is never
    // stopped; the failure says so.
    app.set_hello_env(5511, "HELLO_HEALTH = \"unhealthy\"");
    app.health_timeout("3s");
    let run = app.deploy_fails("3.0.0", 7);
    assert_has(&run.stderr, "blue (3.0.0+");
    assert_has(&run.stderr, "does not answer");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);

    // A healthy hotfix starts in the crashed colour and goes live; the previous copy stays
    // warm behind it.
    app.set_hello_env(5511, "");
    app.health_timeout("20s");
    let run = app.deploy("3.1.0");
    load.stop()
        .assert_no_failures("a crashed live copy, a failed hotfix and a good one");
    assert_has(&run.stderr, "Deployed 3.1.0");
    assert_eq!(app.versions(&tb, &hosts), ["3.1.0"; 2]);
    for (h, before) in hosts.iter().zip(&green) {
        assert_eq!(
            &container(&tb, h, name, "green"),
            before,
            "{}: the copy that served was never restarted",
            h.dest
        );
        let upstream = tb.sh_ok(
            h,
            &format!("cat /etc/shipit/{name}/production/upstream.conf"),
        );
        assert_has(&upstream, "server 127.0.0.1:5511 max_fails");
        assert_has(&upstream, "server 127.0.0.1:5512 backup");
    }
}

#[test]
fn a_dead_host_blocks_nothing_when_it_is_left_out_and_is_converged_when_it_is_back() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let name = "t-deadhost";
    let app = two_releases(&tb, name, &hosts, 5521);
    let (alive, dead) = (&hosts[..2], &hosts[2]);
    let frozen = Frozen::host(dead);

    // Without the choice, nothing changes anywhere.
    let run = app.shipit(&["rollback", "production"]).failure(3);
    assert_has(&run.stderr, &dead.dest);
    assert_has(&run.stderr, "--skip-unreachable");
    assert_eq!(app.versions(&tb, alive), ["2.0.0"; 2]);

    // Left out by choice: the others roll back with every check; the dead one is named, and
    // recorded as behind on the others.
    let load = Load::start(alive, &app.domain, 2);
    let run = app
        .shipit(&["rollback", "production", "--skip-unreachable"])
        .failure(13);
    load.stop()
        .assert_no_failures("a rollback that leaves a dead host out");
    assert_has(&run.stderr, &format!("leaving out `{}`", dead.dest));
    assert_has(&run.stderr, "behind");
    assert_eq!(app.versions(&tb, alive), ["1.0.0"; 2]);
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, &format!("{}: unreachable", dead.dest));
    for h in alive {
        assert_has(
            &tb.sh_ok(h, &format!("cat /var/lib/shipit/{name}/production/behind")),
            &format!("\"host\":\"{}\"", dead.dest),
        );
    }

    // `deploy.tolerate_unreachable = 1`: a deploy goes on without it too.
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace("[deploy]\n", "[deploy]\ntolerate_unreachable = 1\n"),
    )
    .commit();
    let load = Load::start(alive, &app.domain, 2);
    let run = app.deploy_fails("3.0.0", 13);
    load.stop()
        .assert_no_failures("a deploy that tolerates one unreachable host");
    assert_has(&run.stderr, "left out (unreachable, now behind)");
    assert_eq!(app.versions(&tb, alive), ["3.0.0"; 2]);

    // Back: status says what it missed; it still serves what it served.
    drop(frozen);
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "behind: missed the deploy to 3.0.0+");
    assert_eq!(app.versions(&tb, std::slice::from_ref(dead)), ["2.0.0"]);
    // The next run converges it, and nobody is behind any more.
    let load = Load::start(&hosts, &app.domain, 2);
    app.deploy("3.0.0");
    load.stop().assert_no_failures("the run that converges it");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 3]);
    let status = app.shipit(&["status", "production"]).success();
    assert!(!status.stdout.contains("behind"), "{}", status.stdout);
}

#[test]
fn a_new_or_rebuilt_host_follows_the_release_the_others_agree_on() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let name = "t-newhost";
    for h in &hosts {
        tb.wipe(h, name);
    }
    let app = two_releases(&tb, name, &hosts[..2], 5531);
    // A third host joins: provisioned, then the next release goes everywhere.
    app.env_file("production", &tb, &hosts, SMOKE);
    app.commit();
    app.shipit(&["provision", "production"]).success();
    app.deploy("3.0.0");

    // Its history has only 3.0.0: it follows the others back to 2.0.0.
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "follow the other hosts");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 3]);
    // Any release some host retains: 1.0.0 went live before it joined.
    app.shipit(&["rollback", "production", "--to", "1.0.0"])
        .success();
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);

    // A host that lost its state (rebuilt from an image, its disk replaced): the same.
    tb.sh_ok(
        &hosts[1],
        &format!("rm -rf /var/lib/shipit/{name}/production/history.jsonl"),
    );
    app.shipit(&["rollback", "production", "--to", "3.0.0"])
        .success();
    load.stop()
        .assert_no_failures("rollbacks with a new host and a host that lost its state");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 3]);
}

#[test]
fn a_host_taken_out_of_hosts_is_named_until_it_is_retired_and_its_jobs_never_run_twice() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-removed";
    let app = App::hello_unprovisioned(&tb, name, &hosts, 5541, "");
    relax_smoke(&app);
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &format!("{text}\n[jobs.tick]\nschedule = \"daily\"\ncommand = [\"job\", \"tick\"]\n"),
    )
    .commit();
    app.shipit(&["provision", "production"]).success();
    app.deploy("1.0.0");
    let (gone, kept) = (&hosts[0], &hosts[1]);
    let timer = format!("{name}_production_job_tick.timer");
    assert_eq!(
        tb.sh_ok(gone, &format!("systemctl is-active {timer}")),
        "active\n"
    );

    // The first host leaves `hosts`: the job would move to the second.
    app.env_file("production", &tb, std::slice::from_ref(kept), SMOKE);
    app.commit();
    let run = app.shipit(&["provision", "production"]).failure(2);
    assert_has(&run.stderr, &format!("not starting `{timer}`"));
    assert_has(
        &run.stderr,
        &format!("shipit retire production {}", gone.dest),
    );
    assert_eq!(
        tb.sh(kept, &format!("systemctl is-enabled {timer}"))
            .status
            .code(),
        Some(1),
        "the timer was not started on the second host"
    );
    let load = Load::start(std::slice::from_ref(kept), &app.domain, 2);
    // A deploy names it too, and (the job's units not being there yet) says to provision.
    let run = app.deploy_fails("2.0.0", 2);
    assert_has(
        &run.stderr,
        &format!("`{}` is no longer in `hosts`", gone.dest),
    );
    assert_has(&run.stderr, "shipit provision production");
    let status = app.shipit(&["status", "production"]).success();
    assert_has(
        &status.stdout,
        &format!("retire it with `shipit retire production {}`", gone.dest),
    );
    let doctor = app.shipit(&["doctor", "production"]).failure(9);
    assert_has(&doctor.stdout, "fleet membership");

    // Retired: its copies, job and site are gone; the others forget it.
    let run = app.shipit(&["retire", "production", &gone.dest]).success();
    assert_has(&run.stderr, "Retired");
    assert_has(&run.stderr, "its nginx site removed");
    let left = tb.sh_ok(
        gone,
        &format!(
            "systemctl list-units --all --plain --no-legend '{name}_*' '{name}@*' | awk '$3 == \"active\"'; \
             docker ps -q --filter label=shipit.app={name}; ls /etc/nginx/conf.d | grep {name}; \
             ls /etc/shipit/{name} 2>/dev/null; true"
        ),
    );
    assert_eq!(
        left.trim(),
        "",
        "nothing of the app runs on the retired host"
    );
    assert!(
        tb.sh_ok(gone, &format!("ls /var/lib/shipit/{name}/production"))
            .contains("history.jsonl"),
        "its history stays"
    );
    let status = app.shipit(&["status", "production"]).success();
    assert!(!status.stdout.contains(&gone.dest), "{}", status.stdout);
    app.shipit(&["provision", "production"]).success();
    assert_eq!(
        tb.sh_ok(kept, &format!("systemctl is-active {timer}")),
        "active\n"
    );
    app.deploy("2.0.0");
    load.stop()
        .assert_no_failures("a host taken out, named, and retired");
}

#[test]
fn staging_on_the_same_host_keeps_its_images_when_production_prunes() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let name = "t-sharedhost";
    let app = App::hello(&tb, name, &hosts, 5551, "");
    relax_smoke(&app);
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace("[deploy]\n", "[deploy]\nretain = 2\n"),
    );
    app.env_file(
        "staging",
        &tb,
        &hosts,
        "[ports]\nblue = 5556\ngreen = 5557\n",
    );
    app.file(
        "environments/staging.toml",
        &std::fs::read_to_string(app.path().join("environments/staging.toml"))
            .unwrap()
            .replace(
                &format!("\"{}\"", app.domain),
                "\"staging.t-sharedhost.test\"",
            ),
    );
    app.commit();
    app.shipit(&["provision", "staging"]).success();
    let staging = |v: &str| {
        app.shipit(&["deploy", "staging", "--version", v]).success();
    };
    staging("1.0.0");
    staging("2.0.0");
    let digests = |what: &str| -> Vec<String> {
        tb.sh_ok(
            &hosts[0],
            &format!("cat /var/lib/shipit/{name}/{what}/history.jsonl"),
        )
        .lines()
        .filter_map(|l| l.split("@sha256:").nth(1))
        .map(|d| d.chars().take(64).collect())
        .collect()
    };
    let kept = digests("staging");
    assert!(kept.len() >= 2, "{kept:?}");
    for v in ["3.0.0", "4.0.0", "5.0.0", "6.0.0"] {
        app.deploy(v);
    }
    let images = tb.sh_ok(
        &hosts[0],
        &format!(
            "docker image ls --digests --no-trunc {}",
            format_args!("{}/tests/{name}", tb.registry)
        ),
    );
    for d in &kept {
        assert_has(&images, d);
    }
    // Production pruned its own beyond `retain`, and staging rolls back to its first release.
    let retained = tb.sh_ok(
        &hosts[0],
        &format!("cat /var/lib/shipit/{name}/production/retained"),
    );
    assert_eq!(retained.lines().count(), 2, "{retained}");
    app.shipit(&["rollback", "staging"]).success();
}

#[test]
fn backups_and_history_are_dated_by_the_host_even_when_the_deployer_clock_is_wrong() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let name = "t-clock";
    let data = "/var/lib/t-clock-data";
    tb.sh_ok(
        &hosts[0],
        &format!("rm -rf {data} && install -d -o 65534 -g 65534 {data}"),
    );
    let app = App::hello_unprovisioned(&tb, name, &hosts, 5561, "");
    relax_smoke(&app);
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &format!(
            "{}\n[backup]\ncommand = [\"backup\"]\nrestore = [\"restore\"]\nkeep = 2\n",
            text.replace(
                "[container]\nport = 3000\n",
                &format!("[container]\nport = 3000\nvolumes = [\"{data}:/data\"]\n")
            )
        ),
    )
    .commit();
    app.shipit(&["provision", "production"]).success();
    app.deploy("1.0.0");
    app.deploy("2.0.0");
    // The deploying machine's clock is 30 days behind.
    let run = Command::new("faketime")
        .args(["-f", "-30d", env!("CARGO_BIN_EXE_shipit")])
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(["deploy", "production", "--version", "3.0.0"])
        .current_dir(app.path())
        .env("SHIPIT_REGISTRY_PASSWORD", &tb.registry_password)
        .output()
        .expect("faketime runs (package faketime, installed by the testbed)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_has(&stderr, "Backed up");
    let today = tb.sh_ok(&hosts[0], "date -u +%Y%m%d");
    let backups = app.shipit(&["backups", "production"]).success();
    let newest = backups.stdout.lines().next().unwrap_or_default();
    assert!(
        newest.starts_with(today.trim()) && newest.contains("3.0.0+"),
        "the backup just taken is the newest, named by the host's clock: {}",
        backups.stdout
    );
    assert_eq!(backups.stdout.lines().count(), 2, "{}", backups.stdout);
    let now: u64 = tb.sh_ok(&hosts[0], "date +%s").trim().parse().unwrap();
    let entry = last_history(&tb, &hosts[0], name);
    assert!(
        now - entry["time"].as_u64().unwrap() < 600,
        "the history is dated by the host: {entry}"
    );
}

#[test]
fn what_changed_since_the_last_deploy_reaches_users_or_is_named() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-drift";
    let mut app = App::hello(&tb, name, &hosts, 5571, "");
    relax_smoke(&app);
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace(
            "[env.clear]",
            "[env]\nsecret = [\"DATABASE_PASSWORD\"]\n\n[env.clear]",
        ),
    )
    .commit();
    app.set_env("DATABASE_PASSWORD", "first-Secret-value");
    app.deploy("1.0.0");
    let load = Load::start(&hosts, &app.domain, 2);

    // A rotated secret, the same commit: a new copy with it, and the name (never the value).
    app.set_env("DATABASE_PASSWORD", "second-Secret-value");
    let run = app.deploy("1.0.0");
    assert_has(&run.stderr, "settings changed: `DATABASE_PASSWORD`");
    assert_has(&run.stderr, "Because");
    assert!(!run.stderr.contains("second-Secret-value"));
    assert!(!run.stderr.contains("first-Secret-value"));
    assert_has(&run.stderr, "Deployed 1.0.0");

    // Limits changed.
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &text.replace("memory_max = \"256M\"", "memory_max = \"300M\""),
    )
    .commit();
    // Not provisioned: the deploy names what differs and the command, and starts nothing.
    let blue: Vec<String> = hosts
        .iter()
        .map(|h| container(&tb, h, name, "blue"))
        .collect();
    let run = app.deploy_fails("1.0.0", 2);
    assert_has(&run.stderr, "changed since the last `shipit provision`");
    assert_has(
        &run.stderr,
        &format!("/etc/systemd/system/{name}_production@.service"),
    );
    assert_has(&run.stderr, "shipit provision production");
    for (h, before) in hosts.iter().zip(&blue) {
        assert_eq!(&container(&tb, h, name, "blue"), before, "nothing started");
    }
    app.shipit(&["provision", "production"]).success();
    app.deploy("2.0.0");
    // The copy a rollback goes back to was started with the earlier units: it starts again
    // with the new limits, and the rollback says why.
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "the units (volumes, limits or processes)");
    let memory = tb.sh_ok(
        &hosts[0],
        &format!(
            "for c in blue green; do docker inspect -f '{{{{.HostConfig.Memory}}}}' {name}_production-$c 2>/dev/null; done"
        ),
    );
    assert_eq!(
        memory
            .lines()
            .filter(|m| *m == (300u64 << 20).to_string())
            .count(),
        2,
        "both copies run with the new limit: {memory}"
    );

    // A new domain: only `provision` applies it; the deploy says so before anything starts.
    app.env_file("production", &tb, &hosts, SMOKE);
    app.file(
        "environments/production.toml",
        &std::fs::read_to_string(app.path().join("environments/production.toml"))
            .unwrap()
            .replace("t-drift.test", "www.t-drift.test"),
    )
    .commit();
    let run = app.deploy_fails("2.0.0", 2);
    assert_has(
        &run.stderr,
        &format!("/etc/nginx/conf.d/shipit-{name}_production.conf"),
    );
    load.stop()
        .assert_no_failures("a rotated secret, new limits and a refused deploy");
    app.shipit(&["provision", "production"]).success();
    app.deploy("3.0.0");
    let (status, _, body) = tb.http_get(&hosts[0], "www.t-drift.test", "/version");
    assert_eq!(status, 200, "{body}");
    assert_has(&body, "3.0.0");
}

#[test]
fn a_lock_left_by_a_killed_ci_job_is_taken_over_once_its_lease_expired_and_an_old_one_is_named() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-ci-lock";
    let app = App::hello(&tb, name, &hosts, 5581, "");
    relax_smoke(&app);
    app.deploy("1.0.0");
    // A CI container killed mid-deploy: another machine and PID namespace, its process gone.
    let holder = r#"{"id":"ci-1","user":"ci","machine":"runner-7","machine_id":"m-ci","boot_id":"b-ci","pid_ns":"pid:[4026532999]","pid":41,"start_time":5,"since":1796000000,"command":"deploy","version":"0.9.0"}"#;
    for h in &hosts {
        tb.put(
            h,
            &format!("/var/lib/shipit/{name}/production/lock/info.json"),
            holder,
            "644",
        );
    }
    // Written by an older shipit, without a lease: only a person can break it.
    let run = app.deploy_fails("2.0.0", 6);
    assert_has(&run.stderr, "`ci` on `runner-7`");
    assert_has(&run.stderr, "shipit lock release production");
    app.shipit(&["lock", "release", "production", "--yes"])
        .success();
    app.deploy("2.0.0");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 2]);
    // With a lease of 60 s, renewed 30 s ago by the hosts' clocks (the deploying machine's clock
    // plays no part): refused, saying when it can be taken over. Not renewed for 2 minutes on
    // every host: taken over with a warning naming the holder, and the deploy goes on.
    let leased = holder.replace(
        "\"version\":\"0.9.0\"",
        "\"version\":\"0.9.0\",\"lease\":60",
    );
    let place = |ago: u32| {
        for h in &hosts {
            let dir = format!("/var/lib/shipit/{name}/production/lock");
            tb.put(h, &format!("{dir}/info.json"), &leased, "644");
            tb.sh_ok(
                h,
                &format!("echo $(( $(date +%s) - {ago} )) > {dir}/renewed"),
            );
        }
    };
    place(30);
    let status = app.shipit(&["lock", "status", "production"]).success();
    // (30 s, or a second or two more: the clock runs while the test talks to the hosts)
    assert_has(&status.stdout, "its lease (1m) was renewed 3");
    assert_has(&status.stdout, "s ago by the host's clock");
    let run = app.deploy_fails("3.0.0", 6);
    assert_has(&run.stderr, "`ci` on `runner-7`");
    assert_has(&run.stderr, "the lock can be taken over in ");
    place(120);
    let run = app.deploy("3.0.0");
    assert_has(
        &run.stderr,
        "taking over the lock whose lease expired (not renewed for 2m",
    );
    assert_has(&run.stderr, "its lease is 1m): `ci` on `runner-7`");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 2]);
    let status = app.shipit(&["lock", "status", "production"]).success();
    assert!(!status.stdout.contains("held by"), "{}", status.stdout);
}
