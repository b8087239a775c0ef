//! Hooks, the built-in smoke check and notifications, on real testbed hosts, with a local
//! HTTP server recording what the webhooks received.

mod support;

use support::{App, Receiver, TestCa, Testbed, assert_has};

fn configure(app: &App, extra: &str) {
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    let base = text.split("\n# hooks test\n").next().unwrap().to_owned();
    app.file("shipit.toml", &format!("{base}\n# hooks test\n{extra}\n"))
        .commit();
}

#[test]
fn hooks_run_with_the_deploy_facts_and_every_webhook_hears_of_it() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-hooks", &hosts, 4401, "");
    let rx = Receiver::start(1);
    configure(
        &app,
        &format!(
            "[hooks]\npre_deploy = [\"echo \\\"pre $SHIPIT_ENVIRONMENT $SHIPIT_VERSION $SHIPIT_HOSTS\\\" > hooks.log\"]\n\
             post_deploy = [\"echo \\\"post $SHIPIT_VERSION\\\" >> hooks.log\"]\n\n\
             [notify]\nwebhook = \"{0}/hook\"\nslack = \"{0}/slack\"\ndiscord = \"{0}/discord\"\n",
            rx.url
        ),
    );
    let run = app.deploy("1.0.0");
    assert!(
        run.stderr.contains("Smoke"),
        "the smoke check ran: {}",
        run.stderr
    );
    let log = std::fs::read_to_string(app.path().join("hooks.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("pre production 1.0.0+"), "{log}");
    assert!(
        lines[0].ends_with(&format!("{} {}", hosts[0].dest, hosts[1].dest)),
        "{log}"
    );
    assert!(lines[1].starts_with("post 1.0.0+"), "{log}");

    let got = rx.received();
    let by = |p: &str| {
        got.iter()
            .find(|(path, _)| path == p)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("{p} not called: {got:?}"))
    };
    let hook = by("/hook");
    assert_eq!(hook["event"], "deployed");
    assert_eq!(hook["app"], "t-hooks");
    assert!(hook["release"].as_str().unwrap().starts_with("1.0.0+"));
    assert!(
        by("/slack")["text"]
            .as_str()
            .unwrap()
            .contains("t-hooks deployed 1.0.0+")
    );
    assert!(
        by("/discord")["content"]
            .as_str()
            .unwrap()
            .contains("on production (2 hosts)")
    );
}

#[test]
fn a_failing_pre_deploy_hook_changes_nothing_and_a_failing_post_deploy_hook_rolls_back() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-hookfail", &hosts, 4411, "");
    app.deploy("1.0.0");
    let rx = Receiver::start(0);

    configure(
        &app,
        "[hooks]\npre_deploy = [\"echo backup failed >&2; exit 3\"]\n",
    );
    let run = app.deploy_fails("2.0.0", 8);
    assert!(
        run.stderr.contains(
            "hooks.pre_deploy command `echo backup failed >&2; exit 3` failed with exit code 3"
        ),
        "{}",
        run.stderr
    );
    assert_has(&run.stderr, "backup failed");
    assert!(!run.stderr.contains("Started"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);

    configure(
        &app,
        &format!(
            "[hooks]\npost_deploy = [\"exit 1\"]\n\n[notify]\nwebhook = \"{}/hook\"\n",
            rx.url
        ),
    );
    let run = app.deploy_fails("2.0.0", 7);
    assert!(
        run.stderr.contains("a post-deploy hook failed") && run.stderr.contains("switched back"),
        "{}",
        run.stderr
    );
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    let got = rx.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["event"], "auto-rolled-back");
    assert!(
        got[0].1["reason"]
            .as_str()
            .unwrap()
            .contains("post-deploy hook"),
        "{got:?}"
    );
}

#[test]
fn a_smoke_check_over_its_thresholds_rolls_back_and_a_dead_webhook_never_fails_a_deploy() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let app = App::hello(&tb, "t-smoke", &hosts, 4421, "");
    app.deploy("1.0.0");

    // Through SSH, nginx and the app, no p95 stays under 1 ms: the threshold is exceeded.
    configure(&app, "[smoke]\nrequests = 10\nmax_p95 = \"1ms\"\n");
    let run = app.deploy_fails("2.0.0", 7);
    assert_has(
        &run.stderr,
        "the smoke check through nginx failed: p95 latency",
    );
    assert!(
        run.stderr.contains("answers: 20 × HTTP 200; p95 "),
        "the failure says what was seen: {}",
        run.stderr
    );
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);

    // An API whose smoke path answers 404 is healthy: a 4xx is reported, never counted.
    configure(&app, "[smoke]\nrequests = 10\npath = \"/no-such-page\"\n");
    let run = app.deploy("1.5.0");
    assert!(
        run.stderr.contains("0 failed") && run.stderr.contains("(20 × HTTP 404)"),
        "{}",
        run.stderr
    );

    // A webhook that always fails is retried, reported, and the deploy still succeeds.
    let rx = Receiver::start(usize::MAX);
    configure(
        &app,
        &format!("[notify]\nwebhook = \"{}/secret-token\"\n", rx.url),
    );
    let run = app.deploy("2.0.0");
    assert_has(&run.stderr, "could not notify `http://127.0.0.1:");
    assert!(
        !run.stderr.contains("secret-token"),
        "the webhook's path is its secret: {}",
        run.stderr
    );
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"; 2]);
}

#[test]
fn https_webhooks_slack_and_discord_with_a_private_ca_and_an_untrusted_one_only_warns() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let ca = TestCa::new();
    let rx = Receiver::start_tls(0, &ca);
    let mut app = App::hello(&tb, "t-https", &hosts, 4441, "");
    let by_name = rx.url.replace("127.0.0.1", "localhost");
    configure(
        &app,
        &format!(
            "[notify]\nwebhook = \"{0}/hook\"\nslack = \"{0}/services/T0/B0/slack-token\"\ndiscord = \"{by_name}/api/webhooks/1/discord-token\"\n",
            rx.url
        ),
    );
    // A team's private CA, given to shipit the usual way.
    app.set_env("SSL_CERT_FILE", &ca.pem_file.path().display().to_string());
    let run = app.deploy("1.0.0");
    assert!(!run.stderr.contains("could not notify"), "{}", run.stderr);
    let mut got = rx.received();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/webhooks/1/discord-token",
            "/hook",
            "/services/T0/B0/slack-token"
        ]
    );
    assert!(
        got[0].1["content"]
            .as_str()
            .unwrap()
            .starts_with("t-https deployed 1.0.0+"),
        "{got:?}"
    );
    assert_eq!(got[1].1["event"], "deployed");
    assert!(
        got[2].1["text"]
            .as_str()
            .unwrap()
            .contains("deployed 1.0.0+")
    );

    // A deployer that does not trust that CA: a clear warning per endpoint, never a failed
    // deploy, and no token printed.
    app.set_env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
    let run = app.deploy("2.0.0");
    assert_eq!(
        run.stderr
            .matches("its TLS certificate is not trusted by this machine")
            .count(),
        3,
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("token"),
        "the URLs' tokens stay out: {}",
        run.stderr
    );
    assert_eq!(rx.received().len(), 3, "nothing was sent without trust");
    assert_eq!(app.versions(&tb, &hosts), ["2.0.0"]);
}
