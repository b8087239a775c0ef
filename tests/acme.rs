//! Certificates from an ACME CA for a whole fleet (`[tls] acme`, `shipit tls`), against a real
//! ACME server on this machine (Debian's `pebble`, with `pebble-challtestsrv` as its DNS) and
//! the testbed's hosts. The CA reaches the hosts on port 80 at their addresses on Docker's
//! bridge, wherever the test points the domain's DNS.

mod support;

use std::time::Duration;

use support::pebble::Pebble;
use support::{App, Load, TestHost, Testbed, assert_has};

fn acme_settings(pebble: &Pebble) -> String {
    format!(
        "\n[tls]\nacme = {{ email = \"ops@example.com\", directory = \"{}\" }}\n",
        pebble.directory
    )
}

/// What a host serves over HTTPS for `domain`, checked as a browser that trusts only `root`
/// would: the status and body of `path`, and the SHA-256 of the certificate served.
fn https_get(host: &TestHost, domain: &str, root: &str, path: &str) -> (u16, String, String) {
    let address: std::net::SocketAddr = format!("{}:443", host.address()).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = shipit::tls::client_builder()
            .no_proxy()
            .resolve(domain, address)
            .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).unwrap()])
            .tls_info(true)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://{domain}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: HTTPS to {domain}: {e:?}", host.dest));
        let der = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&der))
        };
        (status, body, sha)
    })
}

/// Each host's certificate file, key and account, as `sha256sum` and `stat` see them.
fn files(tb: &Testbed, host: &TestHost, app: &str) -> String {
    tb.sh_ok(
        host,
        &format!(
            "cd /etc/shipit/{app}/production && openssl x509 -in tls/fullchain.pem -outform DER | sha256sum && \
             sha256sum tls/privkey.pem && \
             stat -c '%n %a %U' tls tls/privkey.pem tls/fullchain.pem /var/lib/shipit/{app}/production/acme-account.json && \
             echo challenges: $(ls -A acme-challenge | wc -l)"
        ),
    )
}

#[test]
fn one_certificate_for_every_host_issued_renewed_when_due_and_served_without_a_failed_request() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let pebble = Pebble::start();
    let name = "t-acme";
    let domain = "t-acme.test";
    // The CA reaches the second host only: the answer must be on every host, not only on the
    // first one shipit talks to.
    pebble.point(domain, &[hosts[1].address()]);
    let mut app = App::hello_unprovisioned(&tb, name, &hosts, 4801, "");
    app.env_file("production", &tb, &hosts, &acme_settings(&pebble))
        .commit();
    app.set_env("SSL_CERT_FILE", &pebble.trust.display().to_string());
    let mut outputs = Vec::new();

    // Provision installs the site with a stand-in certificate, then obtains the real one.
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "Obtaining");
    assert_has(
        &run.stderr,
        "serves the temporary self-signed certificate `shipit provision` put there",
    );
    assert_has(&run.stderr, "Installed");
    assert_has(&run.stderr, "every host serves it (read back over HTTPS)");
    outputs.push(run.stdout + &run.stderr);
    let run = app.deploy("1.0.0");
    assert!(!run.stderr.contains("does not trust"), "{}", run.stderr);
    assert!(!run.stderr.contains("expires in"), "{}", run.stderr);
    outputs.push(run.stdout + &run.stderr);

    let served: Vec<String> = hosts
        .iter()
        .map(|h| {
            let (status, body, sha) = https_get(h, domain, &pebble.root, "/version");
            assert_eq!(status, 200, "{}: {body}", h.dest);
            sha
        })
        .collect();
    assert!(
        served.iter().all(|s| *s == served[0]),
        "one certificate on every host: {served:?}"
    );
    let before: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    for (h, f) in hosts.iter().zip(&before) {
        assert_has(f, "tls 700 root");
        assert_has(f, "tls/privkey.pem 600 root");
        assert_has(f, "acme-account.json 600 root");
        assert_has(f, "challenges: 0");
        assert_has(f, &served[0]);
        assert_eq!(f, &before[0], "{} holds what the others hold", h.dest);
    }

    // Not due: nothing is asked of the CA and nothing changes.
    pebble.point(domain, &[]);
    let run = app.shipit(&["tls", "renew", "production"]).success();
    assert_has(&run.stderr, "Current");
    assert_has(&run.stdout, "t-acme.test: current");
    outputs.push(run.stdout + &run.stderr);
    let after: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    assert_eq!(after, before);

    // Status per host: names, issuer, expiry, and what nginx serves.
    let status = app.shipit(&["tls", "status", "production"]).success();
    for h in &hosts {
        assert_has(
            &status.stdout,
            &format!("{}: t-acme.test, issued by Pebble", h.dest),
        );
    }
    assert_eq!(
        status.stdout.matches("serves it on 443").count(),
        3,
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("different certificate"),
        "{}",
        status.stdout
    );

    // Due: a certificate that expires in ten days (put there by hand, the same on every
    // host). Doctor, provision and deploy say so; `tls renew` renews, this time through the
    // third host, while HTTPS traffic goes on.
    let ca = support::TestCa::new();
    let (old, old_key) = ca.issue_for_days(&[domain], 10);
    for h in &hosts {
        tb.put(
            h,
            &format!("/etc/shipit/{name}/production/tls/fullchain.pem"),
            &old.pem(),
            "644",
        );
        tb.put(
            h,
            &format!("/etc/shipit/{name}/production/tls/privkey.pem"),
            &old_key.serialize_pem(),
            "600",
        );
        tb.sh_ok(h, "systemctl reload nginx");
    }
    let doctor = app.shipit(&["doctor", "production"]).success();
    assert_has(&doctor.stdout, "(in 9 days)");
    assert_has(&doctor.stdout, "run `shipit tls renew production`");
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "is due for renewal: it expires in 9 days");
    outputs.push(run.stdout + &run.stderr);
    let run = app.deploy("2.0.0");
    assert_has(
        &run.stderr,
        "expires in 9 days: run `shipit tls renew production`",
    );
    outputs.push(run.stdout + &run.stderr);

    pebble.point(domain, &[hosts[2].address()]);
    // The CA issued the first certificate minutes ago: a second one for the same name the
    // same day is refused (a run failing after its order would otherwise spend the CA's
    // duplicate-certificate limit), nothing is asked of the CA and nothing changes.
    let due: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    let run = app.shipit(&["tls", "renew", "production"]).failure(11);
    assert_has(
        &run.stderr,
        "the CA already issued a certificate for `t-acme.test`",
    );
    assert_has(&run.stderr, "shipit tls renew production --force");
    outputs.push(run.stdout + &run.stderr);
    let after: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    assert_eq!(after, due, "nothing changed on any host");
    // As if that order was two days ago, by each host's record and clock.
    for h in &hosts {
        tb.sh_ok(
            h,
            &format!(
                "cd /var/lib/shipit/{name}/production && awk '{{ $1 = $1 - 172800; print }}' acme-orders.log > o.tmp && mv o.tmp acme-orders.log"
            ),
        );
    }
    let load = Load::start_tls(&hosts, domain, &ca_and(&pebble.root, &ca), 2);
    let run = app.shipit(&["tls", "renew", "production"]).success();
    assert_has(
        &run.stderr,
        "it expires in 9 days (renewal is due within 30)",
    );
    assert_has(&run.stdout, "t-acme.test: renewed");
    outputs.push(run.stdout + &run.stderr);
    // Forced, and with every remote command shown (-vv): the key is still in no output.
    let run = app
        .shipit(&["-vv", "tls", "renew", "production", "--force"])
        .success();
    assert_has(&run.stderr, "`--force` was given");
    outputs.push(run.stdout + &run.stderr);
    // A deploy over HTTPS under the same load.
    let run = app.deploy("3.0.0");
    assert!(!run.stderr.contains("expires in"), "{}", run.stderr);
    outputs.push(run.stdout + &run.stderr);
    load.stop()
        .assert_no_failures("two renewals (nginx reloaded) and a deploy, over HTTPS");

    let renewed: Vec<String> = hosts
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert!(renewed.iter().all(|s| *s == renewed[0]), "{renewed:?}");
    assert_ne!(renewed[0], served[0], "a new certificate");
    let current = renewed[0].clone();
    for h in &hosts {
        assert_has(&files(&tb, h, name), "challenges: 0");
    }

    // One host with another certificate (someone copied one by hand): status marks it, and
    // a renewal puts one certificate on every host again.
    let (stray, stray_key) = ca.issue_for_days(&[domain], 60);
    tb.put(
        &hosts[2],
        &format!("/etc/shipit/{name}/production/tls/fullchain.pem"),
        &stray.pem(),
        "644",
    );
    tb.put(
        &hosts[2],
        &format!("/etc/shipit/{name}/production/tls/privkey.pem"),
        &stray_key.serialize_pem(),
        "600",
    );
    tb.sh_ok(&hosts[2], "systemctl reload nginx && sleep 1");
    let status = app.shipit(&["tls", "status", "production"]).success();
    assert_has(
        &status.stdout,
        &format!("{}: t-acme.test, issued by shipit test CA", hosts[2].dest),
    );
    assert_eq!(
        status
            .stdout
            .matches("(a different certificate from the other hosts)")
            .count(),
        1,
        "{}",
        status.stdout
    );
    // The one the other two hold (from the configured CA, not due) is copied to it: the CA
    // is asked for nothing (its duplicate-certificate limit is not spent).
    pebble.point(domain, &[]);
    let run = app.shipit(&["tls", "renew", "production"]).success();
    assert_has(&run.stderr, "the hosts hold different certificates");
    assert_has(
        &run.stderr,
        &format!("that `{}` holds (sha256 {}", hosts[0].dest, &current[..16]),
    );
    assert_has(&run.stderr, "nothing is asked of the CA");
    assert_has(
        &run.stdout,
        &format!("t-acme.test: copied to {} (sha256", hosts[2].dest),
    );
    outputs.push(run.stdout + &run.stderr);
    let copied: Vec<String> = hosts
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert_eq!(copied, [current.as_str(); 3]);
    assert_eq!(files(&tb, &hosts[2], name), files(&tb, &hosts[0], name));

    // A host that cannot be reached: without the choice, nothing changes anywhere; with
    // `--skip-unreachable` the others renew and it is named; once it answers, the next run
    // gives it the certificate the others hold, again without a new order.
    pebble.point(domain, &[hosts[0].address()]);
    let frozen = support::Frozen::host(&hosts[2]);
    let run = app
        .shipit(&["tls", "renew", "production", "--force"])
        .failure(3);
    assert_has(&run.stderr, &hosts[2].dest);
    assert_has(&run.stderr, "--skip-unreachable");
    let run = app
        .shipit(&[
            "tls",
            "renew",
            "production",
            "--force",
            "--skip-unreachable",
        ])
        .success();
    assert_has(
        &run.stderr,
        &format!("`{}` is left out (unreachable", hosts[2].dest),
    );
    assert_has(
        &run.stdout,
        &format!("left out (unreachable, not changed): {}", hosts[2].dest),
    );
    assert_has(&run.stdout, "on 2 hosts");
    outputs.push(run.stdout + &run.stderr);
    let forced: Vec<String> = hosts[..2]
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert_eq!(forced[0], forced[1]);
    assert_ne!(
        forced[0], current,
        "a new certificate on the hosts that answered"
    );
    drop(frozen);
    pebble.point(domain, &[]);
    let run = app.shipit(&["tls", "renew", "production"]).success();
    assert_has(
        &run.stdout,
        &format!("t-acme.test: copied to {} (sha256", hosts[2].dest),
    );
    outputs.push(run.stdout + &run.stderr);
    let renewed: Vec<String> = hosts
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert_eq!(renewed, [forced[0].as_str(); 3]);

    // A host that refuses the commit (its nginx fails `nginx -t` for a reason of its own): the
    // renewal fails naming it and it keeps serving what it had; every later run finishes the
    // split by copying the new certificate, never by another order (the CA is pointed nowhere).
    pebble.point(domain, &[hosts[0].address()]);
    let broken = "/etc/nginx/conf.d/zz-shipit-test-broken.conf";
    tb.put(&hosts[1], broken, "this is not nginx;\n", "644");
    // Removed however the test ends: later tests share the host's nginx.
    let _broken = support::OnDrop(|| {
        tb.sh(
            &hosts[1],
            &format!("rm -f {broken} && systemctl reload nginx"),
        );
    });
    let run = app.shipit(&["tls", "renew", "production", "--force"]);
    assert_ne!(run.code(), 0, "{}", run.stderr);
    assert_has(&run.stderr, &hosts[1].dest);
    outputs.push(run.stdout + &run.stderr);
    let split: Vec<String> = hosts
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert_eq!(split[1], forced[0], "the refusing host serves what it had");
    assert_ne!(split[0], forced[0], "the others serve the new certificate");
    pebble.point(domain, &[]);
    let run = app.shipit(&["tls", "renew", "production"]);
    assert_ne!(run.code(), 0, "{}", run.stderr);
    assert_has(&run.stderr, "nothing is asked of the CA");
    outputs.push(run.stdout + &run.stderr);
    tb.sh_ok(&hosts[1], &format!("rm {broken} && systemctl reload nginx"));
    let run = app.shipit(&["tls", "renew", "production"]).success();
    assert_has(
        &run.stdout,
        &format!("t-acme.test: copied to {} (sha256", hosts[1].dest),
    );
    outputs.push(run.stdout + &run.stderr);
    let healed: Vec<String> = hosts
        .iter()
        .map(|h| https_get(h, domain, &pebble.root, "/version").2)
        .collect();
    assert_eq!(healed, [split[0].as_str(); 3]);

    // Neither key ever appeared in any output: the certificate's, nor the account's.
    let key = tb.sh_ok(
        &hosts[0],
        &format!("cat /etc/shipit/{name}/production/tls/privkey.pem"),
    );
    let account: serde_json::Value = serde_json::from_str(&tb.sh_ok(
        &hosts[0],
        &format!("cat /var/lib/shipit/{name}/production/acme-account.json"),
    ))
    .unwrap();
    let account_key = account["credentials"]["key_pkcs8"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!key_body.is_empty());
    for out in &outputs {
        for line in &key_body {
            assert!(!out.contains(line), "the private key was printed:\n{out}");
        }
        assert!(
            !out.contains(&account_key[..20]),
            "the account key was printed:\n{out}"
        );
    }
}

/// A bundle of pebble's root and the test CA's (the hand-made certificate is served until
/// the renewal).
fn ca_and(root: &str, ca: &support::TestCa) -> String {
    format!(
        "{root}{}",
        std::fs::read_to_string(ca.pem_file.path()).unwrap()
    )
}

#[test]
fn a_failed_challenge_says_what_the_ca_answered_and_changes_nothing_on_any_host() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let pebble = Pebble::start();
    let name = "t-acme-fail";
    let domain = "t-acme-fail.test";
    let mut app = App::hello_unprovisioned(&tb, name, &hosts, 4811, "");
    app.env_file("production", &tb, &hosts, &acme_settings(&pebble))
        .commit();
    app.set_env("SSL_CERT_FILE", &pebble.trust.display().to_string());

    // Before the site is provisioned no host can answer a challenge: the CA is not asked.
    let run = app.shipit(&["tls", "renew", "production"]).failure(11);
    assert_has(
        &run.stderr,
        "does not serve the ACME challenge for `t-acme-fail.test`",
    );
    assert_has(&run.stderr, "run `shipit provision production`");

    // The domain points at a server that is not one of the environment's hosts: the CA gets a
    // 404 there. Provision installs the site and says what the CA answered.
    let third = tb.hosts(3)[2].clone();
    pebble.point(domain, &[third.address()]);
    let run = app.shipit(&["provision", "production"]).failure(11);
    assert_has(&run.stderr, "Provisioned 2 hosts");
    assert_has(&run.stderr, "the ACME CA at");
    assert_has(
        &run.stderr,
        "refused to validate: for `t-acme-fail.test`: unauthorized",
    );
    assert_has(&run.stderr, "404");
    assert_has(&run.stderr, "must resolve to your hosts");
    let placeholder: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    for f in &placeholder {
        assert_has(f, "challenges: 0");
    }
    // (Doctor fails here on what a deploy would fix: nothing is deployed yet.)
    let doctor = app.shipit(&["doctor", "production"]);
    assert_has(&doctor.stdout, "temporary self-signed certificate");
    assert_has(&doctor.stdout, "run `shipit tls renew production`");

    // Again with `tls renew`: the same answer, and every file as it was.
    let run = app.shipit(&["tls", "renew", "production"]).failure(11);
    assert_has(&run.stderr, "unauthorized");
    let after: Vec<String> = hosts.iter().map(|h| files(&tb, h, name)).collect();
    assert_eq!(after, placeholder, "nothing changed on any host");

    // Pointed at the hosts, it works, and a deploy follows.
    pebble.point(domain, &[hosts[0].address(), hosts[1].address()]);
    app.shipit(&["tls", "renew", "production"]).success();
    app.deploy("1.0.0");
    for h in &hosts {
        assert_eq!(https_get(h, domain, &pebble.root, "/version").0, 200);
    }
}
