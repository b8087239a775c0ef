//! `shipit build` against the real Docker engine and the authenticated registry.

mod support;

use std::process::Command;

use support::{App, Testbed, assert_has};

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

/// An image's files under `dir/`, and how many times `needle` occurs in its content: listed and
/// searched with the engine's own tools (`docker create`, `docker export`).
fn image_files(reference: &str, dir: &str, needle: &str) -> (Vec<String>, usize) {
    let id = String::from_utf8(
        Command::new("docker")
            .args(["create", reference])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = id.trim().to_owned();
    let sh = |script: String| {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files = sh(format!(
        "docker export {id} | tar -t | grep '^{dir}/' | sort"
    ))
    .lines()
    .filter(|l| !l.ends_with('/'))
    .map(str::to_owned)
    .collect();
    let found = sh(format!(
        "docker export {id} | grep -ac -- '{needle}' || true"
    ));
    Command::new("docker").args(["rm", &id]).output().unwrap();
    (files, found.trim().parse().unwrap_or(0))
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
    assert_has(&run.stderr, "2 layers pushed");
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
    assert_has(&again.stderr, "0 layers pushed");
    assert_has(&again.stderr, "from cache");

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
    assert_has(&run.stdout, ".dirty.");
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
    let (files, _) = image_files(&reference, "ctx", "-");
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
    assert_has(&run.stderr, "refused the credentials of `shipit` (401)");
    assert_has(
        &run.stderr,
        "environment variable `SHIPIT_REGISTRY_PASSWORD`",
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
    assert_has(
        &run.stderr,
        "build failed at Step 3/5 : COPY no-such-file /x",
    );
    assert_has(&run.stderr, "no-such-file");

    std::fs::remove_file(app.path().join("Dockerfile.production")).unwrap();
    app.commit();
    let run = app.shipit(&["build", "production"]).failure(2);
    assert_has(&run.stderr, "no Dockerfile at");
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
    assert_has(&run.stderr, "Retrying");
    assert_has(&run.stderr, "(3 left)");
    assert_has(
        &run.stderr,
        "registry `registry.test:5999` is unreachable after 5 attempts",
    );
}

#[test]
fn engine_unreachable_says_how_to_start_it() {
    let tb = Testbed::from_env();
    let mut app = App::new(&tb, "t-build-engine", &tb.hosts(1));
    app.busybox_app("engine").commit();
    app.set_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let run = app.shipit(&["build", "production"]).failure(5);
    assert_has(
        &run.stderr,
        "cannot reach the Docker engine at `unix:///nonexistent/docker.sock`",
    );
    assert_has(&run.stderr, "help: start it");
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
    assert_has(
        &run.stderr,
        "Excluded `.env` from the build context: shipit reads secrets from it",
    );
    let reference = run.stdout.trim().split('@').next().unwrap().to_owned();
    let (files, found) = image_files(&reference, "app", &token);
    let files = files.join("\n");
    assert!(files.contains("app/config/app.toml"), "{files}");
    assert!(!files.contains(".env"), "{files}");
    assert_eq!(found, 0, "the secret's value is nowhere in the image");
}

#[test]
fn files_git_ignores_in_the_context_are_pinned_in_the_release_name() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-pinned", &tb.hosts(1));
    // A file built before the image (a `dist/`, a binary) that git ignores: the commit alone
    // would not name what the image holds.
    app.busybox_app(&unique());
    app.file(".gitignore", "www/version\n").commit();
    let tag_of = |run: &support::Run| {
        let reference = run.stdout.trim();
        let image = reference.split_once('@').unwrap().0;
        image.rsplit_once(':').unwrap().1.to_owned()
    };
    let first = app.shipit(&["build", "production"]).success();
    assert_has(
        &first.stderr,
        "Pinned 1 file of the context that git ignores (`www/version`)",
    );
    let first_tag = tag_of(&first);
    assert_eq!(
        first_tag.len(),
        "1.0.0_".len() + 7 + 1 + 7,
        "version, commit and the ignored files' hash: {first_tag}"
    );
    // Other content in the ignored file, the same commit: another release.
    app.file("www/version", "rebuilt\n");
    let second = app.shipit(&["build", "production"]).success();
    assert_ne!(tag_of(&second), first_tag);
    let (_, found) = image_files(second.stdout.trim(), "www", "rebuilt");
    assert_eq!(found, 1, "the image holds what its name pins");
}

#[test]
fn a_pushed_tag_never_names_other_content_unless_forced() {
    let tb = Testbed::from_env();
    let app = App::new(&tb, "t-build-taken", &tb.hosts(1));
    app.busybox_app(&unique()).commit();
    let first = app.shipit(&["build", "production"]).success();
    let (image, digest) = first.stdout.trim().split_once('@').unwrap();
    // The same commit built again after the engine's cache is gone: another image (its
    // creation time differs), under the same release name.
    support::docker_ok(&["rmi", image]);
    let run = app.shipit(&["build", "production"]).failure(5);
    assert_has(&run.stderr, "already names another image in the registry");
    assert_has(&run.stderr, digest);
    assert_has(&run.stderr, "--force-push");
    assert_has(&run.stderr, "--no-build");
    // The registry still holds the first image under the tag.
    let tag = image.rsplit_once(':').unwrap().1;
    let head = Command::new("curl")
        .args(["-sSI", "--max-time", "5", "-u"])
        .arg(format!("{}:{}", tb.registry_user, tb.registry_password))
        .args([
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!(
            "http://{}/v2/tests/t-build-taken/manifests/{tag}",
            tb.registry
        ))
        .output()
        .unwrap();
    assert_has(&String::from_utf8_lossy(&head.stdout), digest);
    let forced = app
        .shipit(&["build", "production", "--force-push"])
        .success();
    assert_has(&forced.stderr, "replacing");
    assert_ne!(forced.stdout.trim().split_once('@').unwrap().1, digest);
}
