//! Deploys without a registry: the image goes from this machine's engine to each host over SSH,
//! only the layers a host lacks. Against the testbed's hosts (Debian 12's engine, 20.10, with
//! the vfs storage driver inside each host) under load.

mod support;

use std::time::{Duration, Instant};

use support::{
    App, Load, TestHost, Testbed, assert_has, assets, deploy_json, host_runs, layered_app,
};

fn local_size(reference: &str) -> u64 {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", reference])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn without_a_registry_each_host_gets_only_the_layers_it_lacks_and_rolls_back_to_what_it_kept() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(3);
    let name = "t-noreg";
    let app = layered_app(&tb, name, &hosts, 4901, 2);

    // First deploy: every layer to every host.
    let first = deploy_json(&app, "1.0.0");
    let id = first["image"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("sha256:"),
        "the hosts run the image by its ID: {first}"
    );
    let size = local_size(&id);
    assert!(size > 6 << 20, "{size}");
    for s in first["sent"].as_array().unwrap() {
        assert_eq!(s["layers_sent"], 3, "{s}");
        assert!(s["bytes"].as_u64().unwrap() > 6 << 20, "{s}");
    }
    for h in &hosts {
        assert_eq!(
            host_runs(&tb, h, name),
            id,
            "{} runs exactly what was built",
            h.dest
        );
    }

    // From now on, a load through every host's nginx: no request may fail.
    let load = Load::start(&hosts, &app.domain, 2);

    // A one-line change: only the top layer goes, under 5% of the image per host.
    app.file("release.txt", "second\n").commit();
    let second = deploy_json(&app, "1.1.0");
    let id2 = second["image"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);
    for s in second["sent"].as_array().unwrap() {
        assert_eq!(s["layers_sent"], 1, "{s}");
        assert_eq!(s["layers_had"], 2, "{s}");
        let bytes = s["bytes"].as_u64().unwrap();
        assert!(
            bytes * 20 < size,
            "a redeploy sends under 5% of the image: {bytes} of {size}"
        );
    }
    assert_eq!(app.versions(&tb, &hosts), ["1.1.0"; 3]);

    // The same image again (promoted with --no-build, found in the local engine): nothing to
    // send, nothing to start.
    let run = app
        .shipit(&["deploy", "production", "--version", "1.1.0", "--no-build"])
        .success();
    assert_has(&run.stderr, "in the local engine");

    // Rollback to the retained image, on the hosts already: nothing is sent.
    let run = app.shipit(&["rollback", "production"]).success();
    assert_has(&run.stderr, "Rolled back to 1.0.0+");
    assert!(!run.stderr.contains("Sending"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3]);
    for h in &hosts {
        assert_eq!(host_runs(&tb, h, name), id);
    }

    // An SSH cut in the middle of a transfer (a new 24 MiB base layer): the deploy fails, no
    // host switched, the cut host holds no half-loaded image; the next deploy sends it what is
    // missing.
    assets(&app, 24, 2);
    app.file("release.txt", "third\n").commit();
    let spawned = app.spawn_until(&["deploy", "production", "--version", "1.2.0"], "Sending");
    let started = Instant::now();
    while tb
        .sh(&hosts[1], "pgrep -f 'docker load' > /dev/null")
        .status
        .code()
        != Some(0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no docker load on the host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tb.sh(&hosts[1], "pkill -KILL -f '^sshd: root@'");
    let (status, stderr) = spawned.finish();
    assert!(!status.success(), "{stderr}");
    assert_has(&stderr, &format!("`{}`", hosts[1].dest));
    assert!(!stderr.contains("Switched"), "{stderr}");
    assert_eq!(app.versions(&tb, &hosts), ["1.0.0"; 3], "no host switched");
    let id3 = String::from_utf8(
        std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(format!("{}:1.2.0_{}", image_repo(&tb, name), head(&app)))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let none = tb.sh(&hosts[1], &format!("docker image inspect {id3}"));
    assert!(
        !none.status.success(),
        "no half-loaded image on the cut host"
    );
    let redeploy = deploy_json(&app, "1.2.0");
    assert_eq!(redeploy["image"], id3.as_str());
    assert_eq!(app.versions(&tb, &hosts), ["1.2.0"; 3]);

    // A host whose Docker has no room (a small filesystem for its temporary files, where
    // `docker load` stages the stream): the host refuses the load before it starts, with what
    // it needs where, and the deploy fails before any host switched, naming the host.
    let h = &hosts[2];
    struct Unmount<'a>(&'a Testbed, &'a TestHost);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = self.0.sh(self.1, "umount /var/lib/docker/tmp 2>/dev/null");
        }
    }
    let guard = Unmount(&tb, h);
    tb.sh_ok(h, "mount -t tmpfs -o size=2m tmpfs /var/lib/docker/tmp");
    assets(&app, 8, 3);
    app.commit();
    let run = app.deploy_fails("1.3.0", 1);
    drop(guard);
    assert_has(&run.stderr, &format!("`{}`", h.dest));
    assert_has(&run.stderr, "no room to load the image: docker load needs ");
    assert_has(&run.stderr, " MiB in /var/lib/docker/tmp (");
    assert!(!run.stderr.contains("Switched"), "{}", run.stderr);
    assert_eq!(app.versions(&tb, &hosts), ["1.2.0"; 3], "no host switched");
    // With room again, it goes.
    app.deploy("1.3.0");
    assert_eq!(app.versions(&tb, &hosts), ["1.3.0"; 3]);

    load.stop().assert_no_failures(
        "deploys without a registry: one changed layer, a rollback, an SSH cut mid-transfer, a full disk",
    );

    // Pruning beyond `deploy.retain` (2) removes images by their ID: the live one and the one
    // before it stay.
    let kept = tb.sh_ok(
        &hosts[0],
        &format!(
            "docker image ls -q --no-trunc {} | sort -u",
            image_repo(&tb, name)
        ),
    );
    let mut kept: Vec<&str> = kept.lines().collect();
    kept.sort_unstable();
    let mut want = vec![host_runs(&tb, &hosts[0], name), id3.clone()];
    want.sort();
    assert_eq!(kept, want, "images kept: the retained releases");
    let status = app.shipit(&["status", "production"]).success();
    assert_has(&status.stdout, "1.3.0");
}

fn image_repo(tb: &Testbed, name: &str) -> String {
    format!("{}/tests/{name}", tb.registry)
}

fn head(app: &App) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(app.path())
        .args(["rev-parse", "--short=7", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn two_apps_loading_at_once_where_there_is_room_for_one_load_at_a_time_both_deploy() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(1);
    let h = &hosts[0];
    let a = layered_app(&tb, "t-load-a", &hosts, 6151, 2);
    let b = layered_app(&tb, "t-load-b", &hosts, 6161, 2);
    // Each load stages about 8 MiB (6 of assets, the app's 2) in the engine's temporary
    // directory: 12 MiB hold one load at a time, not two.
    struct Unmount<'a>(&'a Testbed, &'a TestHost);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = self.0.sh(self.1, "umount /var/lib/docker/tmp 2>/dev/null");
        }
    }
    let _guard = Unmount(&tb, h);
    tb.sh_ok(h, "mount -t tmpfs -o size=12m tmpfs /var/lib/docker/tmp");
    // Both at once: the host takes their loads one after the other, each checked for room
    // right before it starts, so neither fills the disk under the other.
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| a.shipit(&["deploy", "production", "--version", "1.0.0"]));
        let rb = s.spawn(|| b.shipit(&["deploy", "production", "--version", "1.0.0"]));
        (ra.join().unwrap(), rb.join().unwrap())
    });
    for (app, run) in [(&a, ra), (&b, rb)] {
        assert_eq!(run.code(), 0, "{}: {}", app.name, run.stderr);
        assert!(!run.stderr.contains("no space left"), "{}", run.stderr);
        assert_eq!(app.versions(&tb, &hosts), ["1.0.0"]);
    }
}
