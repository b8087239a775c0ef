//! `shipit build` against the real Docker engine and the authenticated registry.

mod support;

use std::process::Command;

use support::{App, Testbed};

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn build_pushes_the_release_and_an_unchanged_rebuild_pushes_nothing() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-push", &tb.hosts(1));
    // Both layers unique to this run (the busybox copy gets a trailing marker), so the count
    // does not depend on what an earlier run or test left in the registry.
    let marker = unique();
    app.busybox_app(&marker);
    let mut busybox = std::fs::read(app.path().join("busybox")).unwrap();
    busybox.extend_from_slice(format!("\n{marker}\n").as_bytes());
    std::fs::write(app.path().join("busybox"), busybox).unwrap();
    app.commit();

    let run = app.shipit(&["build", "production"]).success();
    let reference = run.stdout.trim();
    let (image, digest) = reference.split_once('@').unwrap();
    let tag = image.rsplit_once(':').unwrap().1;
    assert!(tag.starts_with("1.0.0_"), "{tag}");
    assert_eq!(
        tag.len(),
        "1.0.0_".len() + 7,
        "tag is version plus a 7-char commit: {tag}"
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        run.stderr.contains("Step 2/"),
        "progress shows steps: {}",
        run.stderr
    );
    assert!(run.stderr.contains("2 layers pushed"), "{}", run.stderr);
    assert!(
        tb.registry_tags("tests/t-build-push")
            .contains(&tag.to_owned())
    );
    assert!(
        !run.stderr.contains(&tb.registry_password) && !run.stdout.contains(&tb.registry_password)
    );

    let again = app.shipit(&["build", "production"]).success();
    assert_eq!(
        again.stdout.trim(),
        reference,
        "an unchanged rebuild is the same image"
    );
    assert!(again.stderr.contains("0 layers pushed"), "{}", again.stderr);
    assert!(again.stderr.contains("from cache"), "{}", again.stderr);

    // --version overrides the configured version; --json says everything.
    let json = app
        .shipit(&["build", "production", "--version", "2.0.0-rc.1", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v["tag"].as_str().unwrap().starts_with("2.0.0-rc.1_"));
    assert_eq!(v["layers_pushed"], 0);
}

#[test]
fn dirty_tree_is_refused_unless_allowed_and_then_marked() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-dirty", &tb.hosts(1));
    app.busybox_app("clean").commit();
    app.file("www/version", "dirty\n");
    let run = app.shipit(&["build", "production"]).failure(2);
    assert!(
        run.stderr.contains("uncommitted changes") && run.stderr.contains("--allow-dirty"),
        "{}",
        run.stderr
    );
    let run = app
        .shipit(&["build", "production", "--allow-dirty"])
        .success();
    assert!(run.stdout.contains(".dirty."), "{}", run.stdout);
}

#[test]
fn dockerignore_decides_what_the_image_gets() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-ignore", &tb.hosts(1));
    app.busybox_app("ignore");
    for f in [
        "ctx/keep.txt",
        "ctx/notes.md",
        "ctx/README.md",
        "ctx/target/debug/big",
        "ctx/target/keep/k",
        "ctx/deep/a/b.log",
        "ctx/deep/c.txt",
    ] {
        app.file(f, f);
    }
    app.file(
        ".dockerignore",
        "ctx/target\n!ctx/target/keep\nctx/*.md\n!ctx/README.md\n**/*.log\n.git\n",
    );
    let dockerfile = std::fs::read_to_string(app.path().join("Dockerfile.production")).unwrap();
    app.file(
        "Dockerfile.production",
        &dockerfile.replace("COPY www /www", "COPY www /www\nCOPY ctx /ctx"),
    );
    app.commit();
    let run = app.shipit(&["build", "production"]).success();
    let reference = run.stdout.trim().split('@').next().unwrap().to_owned();

    // List the image's files with the engine's own tools.
    let id = String::from_utf8(
        Command::new("docker")
            .args(["create", &reference])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = id.trim();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t | grep '^ctx/' | sort"))
        .output()
        .unwrap();
    Command::new("docker").args(["rm", id]).output().unwrap();
    let files: Vec<&str> = std::str::from_utf8(&export.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .collect();
    assert_eq!(
        files,
        [
            "ctx/README.md",
            "ctx/deep/c.txt",
            "ctx/keep.txt",
            "ctx/target/keep/k"
        ]
    );
}

#[test]
fn wrong_password_is_a_401_that_says_which_source_was_used() {
    let tb = Testbed::from_env();
    let mut app = App::new(&tb, "t-build-401", &tb.hosts(1));
    app.busybox_app(&unique()).commit();
    app.set_env("SHIPIT_REGISTRY_PASSWORD", "not-the-password");
    let run = app.shipit(&["build", "production"]).failure(5);
    assert!(
        run.stderr
            .contains("refused the credentials of `shipit` (401)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("environment variable `SHIPIT_REGISTRY_PASSWORD`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"));
    assert!(
        tb.registry_tags("tests/t-build-401").is_empty(),
        "something was pushed"
    );

    // From .env, the message names .env.
    app.set_env("SHIPIT_REGISTRY_PASSWORD", "");
    let mut app = app;
    app.file(".env", "SHIPIT_REGISTRY_PASSWORD=also-wrong\n");
    let run = {
        let out = Command::new(env!("CARGO_BIN_EXE_shipit"))
            .args(["build", "production", "--allow-dirty"])
            .current_dir(app.path())
            .env_remove("SHIPIT_REGISTRY_PASSWORD")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run.contains("`SHIPIT_REGISTRY_PASSWORD` in .env"), "{run}");
    let _ = &mut app;
}

#[test]
fn a_failing_step_shows_that_step_and_its_output() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-broken", &tb.hosts(1));
    app.busybox_app("broken");
    app.file(
        "Dockerfile.production",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY no-such-file /x\n",
    );
    app.commit();
    let run = app.shipit(&["build", "production"]).failure(5);
    assert!(
        run.stderr
            .contains("build failed at Step 3/5 : COPY no-such-file /x"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-file"), "{}", run.stderr);

    std::fs::remove_file(app.path().join("Dockerfile.production")).unwrap();
    app.commit();
    let run = app.shipit(&["build", "production"]).failure(2);
    assert!(run.stderr.contains("no Dockerfile at"), "{}", run.stderr);
}

#[test]
fn registry_down_is_retried_then_named() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-down", &tb.hosts(1));
    app.busybox_app("down").commit();
    // A registry address where nothing listens.
    let text = std::fs::read_to_string(app.path().join("shipit.toml"))
        .unwrap()
        .replace("registry.test:5000", "registry.test:5999");
    app.file("shipit.toml", &text).commit();
    let run = app.shipit(&["build", "production"]).failure(5);
    assert!(run.stderr.contains("Retrying"), "{}", run.stderr);
    assert!(run.stderr.contains("(3 left)"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("registry `registry.test:5999` is unreachable after 5 attempts"),
        "{}",
        run.stderr
    );
}

#[test]
fn engine_unreachable_says_how_to_start_it() {
    let tb = Testbed::from_env();
    let mut app = App::new(&tb, "t-build-engine", &tb.hosts(1));
    app.busybox_app("engine").commit();
    app.set_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let run = app.shipit(&["build", "production"]).failure(5);
    assert!(
        run.stderr
            .contains("cannot reach the Docker engine at `unix:///nonexistent/docker.sock`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("help: start it"), "{}", run.stderr);
}

#[test]
fn shipits_secrets_never_go_into_an_image_whatever_dockerignore_says() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-secrets", &tb.hosts(1));
    app.busybox_app("secrets");
    // The README's advice: secrets in `.env` beside shipit.toml; the default context `.`; a
    // `COPY . /app`; and a `.dockerignore` that forgets (or even re-includes) `.env`.
    let token = format!("tok-{}", unique());
    app.file(".env", &format!("API_TOKEN={token}\n"));
    app.file(".gitignore", ".env\n");
    app.file(".dockerignore", "!.env\n");
    app.file("config/app.toml", "name = \"demo\"\n");
    let dockerfile = std::fs::read_to_string(app.path().join("Dockerfile.production")).unwrap();
    app.file(
        "Dockerfile.production",
        &dockerfile.replace("COPY www /www", "COPY www /www\nCOPY . /app"),
    );
    app.file(
        "shipit.toml",
        &format!(
            "{}\n[env]\nsecret = [\"API_TOKEN\"]\n",
            std::fs::read_to_string(app.path().join("shipit.toml")).unwrap()
        ),
    );
    app.commit();
    let run = app.shipit(&["build", "production"]).success();
    assert_eq!(
        run.stderr.matches("Excluded").count(),
        1,
        "said once: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Excluded `.env` from the build context: shipit reads secrets from it"),
        "{}",
        run.stderr
    );
    let reference = run.stdout.trim().split('@').next().unwrap().to_owned();
    let id = String::from_utf8(
        Command::new("docker")
            .args(["create", &reference])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = id.trim().to_owned();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t | grep '^app/' | sort"))
        .output()
        .unwrap();
    let content = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | grep -ac {token} || true"))
        .output()
        .unwrap();
    Command::new("docker").args(["rm", &id]).output().unwrap();
    let files = String::from_utf8_lossy(&export.stdout);
    assert!(files.contains("app/config/app.toml"), "{files}");
    assert!(!files.contains(".env"), "{files}");
    assert_eq!(
        String::from_utf8_lossy(&content.stdout).trim(),
        "0",
        "the secret's value is nowhere in the image"
    );
}
