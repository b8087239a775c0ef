//! Fleets of both Docker image stores: hosts whose engine keeps images in its own store (Debian
//! 12's Docker 20.10, the testbed's `shipit-th*`) beside hosts whose engine keeps them in
//! containerd's store (Debian 13's Docker 26 with the containerd snapshotter, `shipit-tx*`),
//! and a deploying engine of either store. An engine with containerd's store calls an image by
//! its manifest's digest, which a `docker load` from the other store makes anew: each host runs,
//! checks and prunes the image by the ID it gives it. Under load, no request may fail.

mod support;

use support::{
    App, ForwardedEngine, Load, TestHost, Testbed, assert_has, deploy_json, host_runs, layered_app,
};

/// What `deploy --json` says `host` got.
fn sent_to<'a>(report: &'a serde_json::Value, host: &TestHost) -> &'a serde_json::Value {
    report["sent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == host.dest.as_str())
        .unwrap_or_else(|| panic!("nothing said about {} in {report}", host.dest))
}

/// The IDs of the app's images a host's engine holds (by the label shipit builds with).
fn app_images(tb: &Testbed, h: &TestHost, name: &str) -> Vec<String> {
    let out = tb.sh_ok(
        h,
        &format!("docker image ls -aq --no-trunc --filter label=shipit.app={name} | sort -u"),
    );
    out.lines().map(str::to_owned).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[test]
fn a_mixed_fleet_without_a_registry_deploys_rolls_back_warm_and_cold_and_prunes() {
    let tb = Testbed::from_env();
    let (th, tx) = (tb.hosts(1).remove(0), tb.trixie(1).remove(0));
    let hosts = vec![th.clone(), tx.clone()];
    let name = "t-mixssh";
    let app = layered_app(&tb, name, &hosts, 6101, 3);

    // First deploy: the classic host takes the archive as it is; the containerd host gets every
    // layer (its store wants them all), said so, and names the image by a manifest of its own.
    let first = deploy_json(&app, "1.0.0");
    let id1 = first["image"].as_str().unwrap().to_owned();
    let (s_th, s_tx) = (sent_to(&first, &th), sent_to(&first, &tx));
    assert_eq!(s_th["layers_sent"], 3, "{first}");
    assert_eq!(s_th["id"], id1.as_str(), "{first}");
    assert_eq!(s_tx["layers_sent"], 3, "{first}");
    assert!(
        s_tx["everything_because"]
            .as_str()
            .is_some_and(|w| w.contains("containerd")),
        "{first}"
    );
    let tx1 = s_tx["id"].as_str().unwrap().to_owned();
    assert!(tx1.starts_with("sha256:") && tx1 != id1, "{first}");
    assert_eq!(host_runs(&tb, &th, name), id1);
    assert_eq!(host_runs(&tb, &tx, name), tx1, "the host runs its own ID");
    // What both stores agree on: the manifest the containerd host made names the build's
    // configuration, whose digest is the classic engine's ID.
    let labels = tb.sh_ok(&tx, &format!("ctr -n moby content ls | grep -F {tx1}"));
    assert_has(&labels, &format!("gc.ref.content.config={id1}"));

    let load = Load::start(&hosts, &app.domain, 2);

    // One changed layer: only it to the classic host; everything again to the other.
    app.file("release.txt", "second\n").commit();
    let second = deploy_json(&app, "1.1.0");
    let (s_th, s_tx) = (sent_to(&second, &th), sent_to(&second, &tx));
    assert_eq!(
        (&s_th["layers_sent"], &s_th["layers_had"]),
        (&1.into(), &2.into()),
        "{second}"
    );
    assert_eq!(s_tx["layers_sent"], 3, "{second}");
    let tx2 = s_tx["id"].as_str().unwrap().to_owned();
    assert_eq!(app.versions(&tb, &hosts), ["1.1.0"; 2]);

    // The same image again: nothing to send, nothing to start.
    let run = app
        .shipit(&["deploy", "production", "--version", "1.1.0", "--no-build"])
        .success();
    assert!(!run.stderr.contains("Sending"), "{}", run.stderr);

    // A warm rollback: each host is found to have the image (the containerd host by its
    // configuration's digest), nothing is sent; a switch on both hosts, each back on the ID it
    // had.
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "on every host already");
    assert_has(&run.stderr, "Rolled back to 1.0.0+");
    assert!(!run.stderr.contains("Sending"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    assert_eq!(host_runs(&tb, &th, name), id1);
    assert_eq!(host_runs(&tb, &tx, name), tx1);

    // A cold rollback: 1.2.0 replaces 1.1.0's warm copy, then 1.1.0 starts again from the image
    // each host kept, by the ID each gave it; nothing is sent.
    app.file("release.txt", "third\n").commit();
    let third = deploy_json(&app, "1.2.0");
    let id3 = third["image"].as_str().unwrap().to_owned();
    let tx3 = sent_to(&third, &tx)["id"].as_str().unwrap().to_owned();
    let run = app
        .shipit(&["rollback", "production", "--to", "1.1.0"])
        .success();
    assert_has(&run.stderr, "Rolled back to 1.1.0+");
    assert!(!run.stderr.contains("Sending"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.1.0"; 2]);
    let id2 = second["image"].as_str().unwrap().to_owned();
    assert_eq!(host_runs(&tb, &th, name), id2);
    assert_eq!(host_runs(&tb, &tx, name), tx2);

    // A deploy after it; pruning beyond `retain` (3) then removes 1.0.0 from both hosts, each
    // by the name it has there, and keeps 1.1.0 (live before), 1.2.0 and 1.3.0.
    app.file("release.txt", "fourth\n").commit();
    let fourth = deploy_json(&app, "1.3.0");
    let id4 = fourth["image"].as_str().unwrap().to_owned();
    let tx4 = sent_to(&fourth, &tx)["id"].as_str().unwrap().to_owned();
    assert_eq!(app.versions(&tb, &hosts), ["1.3.0"; 2]);
    load.stop().assert_no_failures(
        "a fleet of both image stores: deploys over SSH, a warm and a cold rollback",
    );
    assert_eq!(
        app_images(&tb, &th, name),
        sorted(vec![id2.clone(), id3.clone(), id4.clone()]),
        "images kept on the classic host"
    );
    assert_eq!(
        app_images(&tb, &tx, name),
        sorted(vec![tx2, tx3, tx4]),
        "images kept on the containerd host"
    );
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "1.3.0");
}

#[test]
fn a_deploying_engine_with_containerds_store_sends_to_both_stores() {
    let tb = Testbed::from_env();
    let (th, tx) = (tb.hosts(1).remove(0), tb.trixie(1).remove(0));
    // The deploying machine's engine: the second trixie host's, through a forwarded socket.
    let deployer = tb.trixie(2).remove(1);
    let engine = ForwardedEngine::start(&tb, &deployer);
    let hosts = vec![th.clone(), tx.clone()];
    let name = "t-ctrdsrc";
    let mut app = layered_app(&tb, name, &hosts, 6111, 2);
    app.set_env("DOCKER_HOST", &engine.docker_host);

    let first = deploy_json(&app, "1.0.0");
    // The deploying engine names the image by its manifest...
    let id1 = first["image"].as_str().unwrap().to_owned();
    let (s_th, s_tx) = (sent_to(&first, &th), sent_to(&first, &tx));
    // ...the classic host by its configuration, which that manifest names (in the deploying
    // engine's containerd, whose builder labels it `gc.ref.content.0`).
    let th1 = s_th["id"].as_str().unwrap().to_owned();
    assert_ne!(th1, id1, "{first}");
    let labels = tb.sh_ok(
        &deployer,
        &format!("ctr -n moby content ls | grep -F {id1}"),
    );
    assert_has(&labels, &format!("={th1}"));
    assert_eq!(s_th["layers_sent"], 3, "{first}");
    assert_eq!(s_tx["layers_sent"], 3, "{first}");
    assert_eq!(host_runs(&tb, &th, name), th1);
    assert_eq!(
        host_runs(&tb, &tx, name),
        s_tx["id"].as_str().unwrap(),
        "{first}"
    );

    let load = Load::start(&hosts, &app.domain, 2);
    // The containerd store's archive (OCI layout, compressed layers) loads on the classic host
    // without the layers it has.
    app.file("release.txt", "second\n").commit();
    let second = deploy_json(&app, "1.1.0");
    assert_eq!(sent_to(&second, &th)["layers_sent"], 1, "{second}");
    assert_eq!(sent_to(&second, &tx)["layers_sent"], 3, "{second}");
    assert_eq!(app.versions(&tb, &hosts), ["1.1.0"; 2]);
    // A rollback: the image is on both hosts; found there, nothing sent.
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 1.0.0+");
    assert!(!run.stderr.contains("Sending"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    assert_eq!(host_runs(&tb, &th, name), th1);
    load.stop()
        .assert_no_failures("deploys from an engine with containerd's store");
    drop(engine);
}

#[test]
fn a_deploying_engine_with_containerds_store_pushes_for_a_fleet_of_both_stores() {
    let tb = Testbed::from_env();
    let (th, tx) = (tb.hosts(1).remove(0), tb.trixie(1).remove(0));
    let engine = ForwardedEngine::start(&tb, &tb.trixie(2).remove(1));
    let hosts = vec![th.clone(), tx.clone()];
    let name = "t-ctrdreg";
    let mut app = App::hello(&tb, name, &hosts, 6131, "");
    app.set_env("DOCKER_HOST", &engine.docker_host);
    let first = deploy_json(&app, "1.0.0");
    let pinned = first["image"].as_str().unwrap();
    assert!(
        pinned.contains("@sha256:"),
        "pushed and pulled by digest: {first}"
    );
    let load = Load::start(&hosts, &app.domain, 2);
    app.file("README", "second\n").commit();
    deploy_json(&app, "1.1.0");
    assert_eq!(app.versions(&tb, &hosts), ["1.1.0"; 2]);
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 1.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    load.stop()
        .assert_no_failures("pushed from an engine with containerd's store");
    drop(engine);
}

#[test]
fn a_registry_serves_a_fleet_of_both_stores_and_pruning_finds_images_known_by_digest() {
    let tb = Testbed::from_env();
    let (th, tx) = (tb.hosts(1).remove(0), tb.trixie(1).remove(0));
    let hosts = vec![th.clone(), tx.clone()];
    let name = "t-mixreg";
    let app = App::hello(&tb, name, &hosts, 6121, "");
    let toml = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &toml.replace("[deploy]\n", "[deploy]\nretain = 2\n"),
    )
    .commit();

    let image = |report: &serde_json::Value| report["image"].as_str().unwrap().to_owned();
    let first = image(&deploy_json(&app, "1.0.0"));
    assert!(first.contains("@sha256:"), "pulled by digest: {first}");
    // Both engines run the pulled image by the reference it was pulled by.
    for h in &hosts {
        let c = tb.sh_ok(
            h,
            &format!(
                "c=$(sed -n 's/^# live: //p' /etc/shipit/{name}/production/upstream.conf) && docker inspect --format '{{{{.Config.Image}}}}' {name}_production-$c"
            ),
        );
        assert_eq!(c.trim(), first, "{}", h.dest);
    }
    let load = Load::start(&hosts, &app.domain, 2);
    let second = image(&deploy_json(&app, "1.1.0"));
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 1.0.0+");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    let third = image(&deploy_json(&app, "1.2.0"));
    assert_eq!(app.versions(&tb, &hosts), ["1.2.0"; 2]);
    load.stop()
        .assert_no_failures("a registry and a fleet of both image stores");

    // Retain 2: 1.2.0 and 1.0.0 (live before it) stay, 1.1.0 goes, on both hosts; the
    // containerd engine lists no image known by its digest alone, the history names it.
    let by_digest = |r: &str| {
        let (name, digest) = r.split_once('@').unwrap();
        format!("{}@{digest}", name.rsplit_once(':').unwrap().0)
    };
    for h in &hosts {
        for (r, kept) in [(&first, true), (&second, false), (&third, true)] {
            let there = tb
                .sh(h, &format!("docker image inspect {}", by_digest(r)))
                .status
                .success();
            assert_eq!(there, kept, "{} on {}", r, h.dest);
        }
    }
}

/// Make the local image `reference` claim another architecture (`docker save`, its
/// configuration's `architecture` rewritten, `docker load` under the same tag): what an arm64
/// laptop builds for amd64 servers, without needing an arm64 machine.
fn relabel(reference: &str, arch: &str) -> String {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.tar");
    let ok = std::process::Command::new("docker")
        .args(["save", "-o"])
        .arg(&saved)
        .arg(reference)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut entries: Vec<(tar::Header, String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        entries.push((e.header().clone(), path, bytes));
    }
    let manifest_at = entries.iter().position(|e| e.1 == "manifest.json").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[manifest_at].2).unwrap();
    let old = manifest[0]["Config"].as_str().unwrap().to_owned();
    let config_at = entries.iter().position(|e| e.1 == old).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&entries[config_at].2).unwrap();
    config["architecture"] = arch.into();
    let bytes = serde_json::to_vec(&config).unwrap();
    let id = hex::encode(sha2::Sha256::digest(&bytes));
    let new = format!("{id}.json");
    manifest[0]["Config"] = new.as_str().into();
    entries[config_at].1 = new;
    entries[config_at].2 = bytes;
    entries[manifest_at].2 = serde_json::to_vec(&manifest).unwrap();
    let out = dir.path().join("relabelled.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&out).unwrap());
    for (mut header, path, bytes) in entries {
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, &path, bytes.as_slice())
            .unwrap();
    }
    builder.finish().unwrap();
    drop(builder);
    let ok = std::process::Command::new("docker")
        .args(["load", "-q", "-i"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(ok.success());
    format!("sha256:{id}")
}

#[test]
fn an_image_for_another_architecture_is_refused_before_anything_is_sent_or_started() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let name = "t-arch";
    let app = layered_app(&tb, name, &hosts, 6141, 2);
    app.deploy("1.0.0");
    let live = host_runs(&tb, &hosts[0], name);
    // Version 2.0.0 built here, then made an arm64 image (an Apple Silicon laptop's build).
    let built = app
        .shipit(&["build", "production", "--version", "2.0.0"])
        .success();
    let reference = built.stdout.split_whitespace().next().unwrap().to_owned();
    let arm = relabel(&reference, "arm64");
    let load = Load::start(&hosts, &app.domain, 2);
    let run = app
        .shipit(&["deploy", "production", "--version", "2.0.0", "--no-build"])
        .failure(2);
    assert_has(&run.stderr, "is built for linux/arm64");
    for h in &hosts {
        assert_has(&run.stderr, &format!("`{}` (amd64)", h.dest));
        // Nothing was sent: the host has no such image, and still runs what it ran.
        let has = tb.sh(h, &format!("docker image inspect {arm}"));
        assert!(!has.status.success(), "{} got the arm64 image", h.dest);
        assert_eq!(host_runs(&tb, h, name), live);
    }
    assert_has(&run.stderr, "nothing was sent or started");
    assert_has(&run.stderr, "--platform linux/amd64");
    // `platform` builds for another architecture (a `FROM scratch` image needs no emulator):
    // for arm64, refused the same way; for the hosts' amd64, deployed.
    let text = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    app.file(
        "shipit.toml",
        &format!("platform = \"linux/arm64\"\n{text}"),
    )
    .commit();
    let run = app.deploy_fails("3.0.0", 2);
    assert_has(&run.stderr, "is built for linux/arm64");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 2]);
    app.file(
        "shipit.toml",
        &format!("platform = \"linux/amd64\"\n{text}"),
    )
    .commit();
    app.deploy("3.0.0");
    load.stop()
        .assert_no_failures("an arm64 image refused on amd64 hosts, then one built for them");
    assert_eq!(app.versions(&tb, &hosts), ["3.0.0"; 2]);
    // Doctor says what each host runs, and for which platform images must be built.
    let doctor = app.shipit(&["doctor", "production"]).success();
    assert_has(
        &doctor.stdout,
        "x86_64 (images must be built for linux/amd64)",
    );
}
