//! Hosts as users keep them in `~/.ssh/config` (issue 21): aliases without a user or a port,
//! behind a bastion (`ProxyJump`), which only the bastion can resolve and reach. shipit carries
//! every host's connection over one master to the bastion.

mod support;

use support::{App, Load, TestHost, Testbed, assert_has};

/// Each host's address on Docker's bridge, which the bastion (the first host) reaches.
fn bridge_address(h: &TestHost) -> String {
    h.address()
}

/// The sshd log lines of a host since `since` (a unix time) that accepted a key.
fn accepted_since(tb: &Testbed, h: &TestHost, since: &str) -> Vec<String> {
    tb.sh_ok(
        h,
        &format!("journalctl -u ssh --since @{since} --no-pager -o cat | grep 'Accepted publickey' || true"),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn aliases_behind_a_bastion_are_reached_through_one_master_to_it() {
    let tb = Testbed::from_env();
    let all = tb.hosts(3);
    let (bastion, targets) = (&all[0], &all[1..]);
    // Names only the bastion resolves (its /etc/hosts): from here, nothing but the bastion
    // leads to them.
    let names: Vec<String> = (2..=3).map(|i| format!("t-th{i}-internal")).collect();
    let mut entries = String::new();
    for (name, h) in names.iter().zip(targets) {
        entries.push_str(&format!("{} {name}\n", bridge_address(h)));
    }
    tb.sh_ok(
        bastion,
        &format!(
            "grep -v 't-th[0-9]-internal' /etc/hosts > /tmp/hosts.t; cat /tmp/hosts.t > /etc/hosts && printf '%s' '{entries}' >> /etc/hosts"
        ),
    );
    // The team's ssh configuration: a bastion, and aliases behind it without user or port.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ssh_config");
    let mut text = format!(
        "Host t-bastion\n    HostName 127.0.0.1\n    Port {}\n    User root\n    IdentityFile {}\n    UserKnownHostsFile {}\n",
        bastion.ssh_port,
        tb.key.display(),
        tb.known_hosts.display()
    );
    for (name, h) in names.iter().zip(targets) {
        text.push_str(&format!(
            "Host {name}\n    User root\n    ProxyJump t-bastion\n    IdentityFile {}\n    HostKeyAlias [127.0.0.1]:{}\n",
            tb.key.display(),
            h.ssh_port
        ));
    }
    std::fs::write(&config, text).unwrap();

    let name = "t-bastion";
    for h in targets {
        tb.wipe(h, name);
    }
    let app = App::hello_unprovisioned(&tb, name, targets, 4971, "");
    app.file(
        "environments/production.toml",
        &format!(
            "domain = \"{}\"\nhosts = [{}]\n\n[ssh]\nconfig_file = {:?}\nknown_hosts_file = {:?}\nconnect_timeout = \"5s\"\npersist = \"0s\"\n",
            app.domain,
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            config.display().to_string(),
            tb.known_hosts.display().to_string(),
        ),
    )
    .commit();
    let since = tb.sh_ok(bastion, "date +%s").trim().to_owned();
    app.shipit(&["provision", "production"]).success();
    app.deploy("1.0.0");
    let load = Load::start(targets, &app.domain, 2);
    app.deploy("2.0.0");
    app.shipit(&["rollback", "production"]).success();
    load.stop()
        .assert_no_failures("a deploy and a rollback through a bastion");
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "t-th2-internal: live");
    assert_eq!(app.versions(&tb, targets), ["1.0.0"; 2]);

    // This machine cannot resolve the hosts' names: every connection went through the
    // bastion. Each of the five runs opened one connection to it (this check's own login
    // aside), never one per host or per command; the hosts saw the bastion's address.
    let at_bastion = accepted_since(&tb, bastion, &since);
    assert!(
        !at_bastion.is_empty() && at_bastion.len() <= 5 + 2,
        "connections to the bastion: {at_bastion:?}"
    );
    let bastion_address = bridge_address(bastion);
    for h in targets {
        let seen = accepted_since(&tb, h, &since);
        assert!(
            seen.iter()
                .any(|l| l.contains(&format!("from {bastion_address} "))),
            "{}: reached from the bastion: {seen:?}",
            h.dest
        );
    }
    tb.sh_ok(
        bastion,
        "grep -v 't-th[0-9]-internal' /etc/hosts > /tmp/hosts.t; cat /tmp/hosts.t > /etc/hosts",
    );
}
