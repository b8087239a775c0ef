//! shipit's own image: `Dockerfile.production` built for real, from the local base images that
//! `testbed/bases.sh` makes (no public registry is reachable here), then run as a CI job would
//! run it: as uid 10001, the app mounted at /work, the SSH key and known_hosts mounted, the
//! Docker socket for builds, secrets passed with `-e`, against the testbed's hosts.
//!
//! Each test builds the image under its own tag (the layers are cached after the first: a cold
//! build takes minutes, hence the longer time limit in .config/nextest.toml) and removes that
//! tag when it ends; the base images are never removed.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use support::{App, Testbed, docker_build, docker_ok};

const UID: u32 = 10001;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The two base images, made or checked by `testbed/bases.sh` (idempotent: a second run only
/// checks, in well under a second).
struct Bases {
    builder: String,
    runtime: String,
}

fn bases() -> Bases {
    let (builder, runtime) = support::local_bases();
    Bases { builder, runtime }
}

/// One test's build of shipit's image, under a tag of its own; the tag goes when it drops.
struct Image {
    tag: String,
    bases: Bases,
}

/// Builds run one at a time within a test binary (`cargo test` runs tests on threads).
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Image {
    fn build(test: &str) -> Image {
        let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let bases = bases();
        // A tag nobody else has: the one this test removes at the end.
        let mut n = 0;
        let tag = loop {
            let tag = format!("shipit-selftest:{test}-{}-{n}", std::process::id());
            if !image_exists(&tag) {
                break tag;
            }
            n += 1;
        };
        let started = Instant::now();
        let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
        let builder = format!("BUILDER_IMAGE={}", bases.builder);
        let runtime = format!("RUNTIME_IMAGE={}", bases.runtime);
        docker_build(
            &repo(),
            &[
                "-f",
                "Dockerfile.production",
                "--build-arg",
                &builder,
                "--build-arg",
                &runtime,
                "--build-arg",
                &version,
                "-t",
                &tag,
                ".",
            ],
        );
        eprintln!("image: {tag} built in {:.1?}", started.elapsed());
        Image { tag, bases }
    }

    fn inspect(&self, reference: &str, format: &str) -> String {
        text(&docker_ok(&["image", "inspect", "-f", format, reference]).stdout)
            .trim()
            .to_owned()
    }

    /// `docker run --rm ARGS`, whatever its outcome.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("docker")
            .args(["run", "--rm"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI runs")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // --no-prune: the parent layers stay as build cache for the next run.
        let _ = Command::new("docker")
            .args(["rmi", "--no-prune", &self.tag])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn prints_its_version_and_runs_as_a_user_that_is_not_root() {
    let image = Image::build("version");

    let out = image.run(&[&image.tag, "--version"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim_end(),
        format!("shipit {}", env!("CARGO_PKG_VERSION"))
    );

    let user = image.inspect(&image.tag, "{{.Config.User}}");
    assert_eq!(
        user,
        format!("{UID}:{UID}"),
        "the configured user, by number"
    );
    let out = image.run(&["--entrypoint", "id", &image.tag, "-u"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let uid = text(&out.stdout).trim().to_owned();
    assert_ne!(uid, "0", "runs as root");
    assert_eq!(uid, UID.to_string());

    assert_eq!(
        image.inspect(
            &image.tag,
            "{{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.WorkingDir}}"
        ),
        "[shipit] [--help] /work"
    );
    assert_eq!(
        image.inspect(
            &image.tag,
            r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#
        ),
        env!("CARGO_PKG_VERSION")
    );
    // The default command is the help, exit 0.
    let out = image.run(&[&image.tag], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Usage: shipit"));
}

#[test]
fn runtime_image_is_small_and_holds_no_toolchain() {
    let image = Image::build("size");
    let mb = |r: &str| image.inspect(r, "{{.Size}}").parse::<u64>().unwrap() / 1_000_000;
    let (runtime, builder) = (mb(&image.tag), mb(&image.bases.builder));
    eprintln!(
        "sizes: {} {runtime} MB, builder base {} {builder} MB, runtime base {} {} MB",
        image.tag,
        image.bases.builder,
        image.bases.runtime,
        mb(&image.bases.runtime)
    );
    assert!(runtime < 250, "the runtime image is {runtime} MB");
    assert!(
        runtime * 3 < builder,
        "the runtime image ({runtime} MB) is not much smaller than the builder ({builder} MB)"
    );

    // Only the binary comes from the build stage: no compiler, no cargo, no crates.
    let script = "for p in cargo rustc rustup cc gcc; do command -v $p && exit 1; done; \
                  for d in /usr/local/cargo /usr/local/rustup /usr/local/lib/rustlib /build; do \
                  [ -e $d ] && echo $d && exit 1; done; ls /usr/local/bin";
    let out = image.run(&["--entrypoint", "sh", &image.tag, "-c", script], &[]);
    assert!(
        out.status.success(),
        "the runtime image holds build tools: {}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout).trim(), "shipit", "/usr/local/bin");

    // What shipit runs is there, as the image's user.
    let out = image.run(
        &["--entrypoint", "sh", &image.tag, "-c", "ssh -V && git --version && test -s /etc/ssl/certs/ca-certificates.crt && test -w \"$HOME/.cache\" && echo \"$HOME\""],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().last(), Some("/home/shipit"));
}

/// A copy of examples/hello as a CI job sees it: a git checkout whose SSH settings name the
/// mounted key and known_hosts (`~/.ssh/...` inside the image), on the testbed's hosts.
fn ci_app(testbed: &Testbed) -> App {
    let hosts = testbed.hosts(3);
    let app = App::new(testbed, "t-packaging", &hosts);
    std::fs::remove_file(app.path().join("environments/production.toml")).unwrap();
    let hello = repo().join("examples/hello");
    let read = |rel: &str| std::fs::read_to_string(hello.join(rel)).unwrap();
    let read_top = |rel: &str| std::fs::read_to_string(repo().join(rel)).unwrap();

    // Its own app and repository, so that nothing of the demo's `hello` is touched.
    // The copy is its own build context (the Dockerfile and app/hello are copied beside it).
    let config = read_top("shipit.toml")
        .lines()
        .filter(|l| !l.starts_with("context = "))
        .map(|l| match l {
            l if l.starts_with("app = ") => "app = \"t-packaging\"".to_owned(),
            l if l.starts_with("image = ") => {
                format!("image = \"{}/tests/t-packaging\"", testbed.registry)
            }
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(config.contains("app = \"t-packaging\"") && config.contains("/tests/t-packaging"));
    app.file("shipit.toml", &(config + "\n"));

    let list = hosts
        .iter()
        .map(|h| format!("{:?}", h.dest))
        .collect::<Vec<_>>()
        .join(", ");
    let env = read_top("environments/local.toml")
        .lines()
        .map(|l| match l {
            l if l.starts_with("hosts = ") => format!("hosts = [{list}]"),
            l if l.starts_with("identity = ") => "identity = \"~/.ssh/id_ed25519\"".to_owned(),
            l if l.starts_with("known_hosts_file = ") => {
                "known_hosts_file = \"~/.ssh/known_hosts\"".to_owned()
            }
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        env.contains("identity = \"~/.ssh/id_ed25519\"")
            && env.contains("known_hosts_file = \"~/.ssh/known_hosts\""),
        "environments/local.toml no longer sets ssh.identity and \
         ssh.known_hosts_file: {env}"
    );
    app.file("environments/local.toml", &(env + "\n"));

    for rel in ["Dockerfile.production", ".dockerignore"] {
        app.file(rel, &read(rel));
    }
    let bin = app.path().join("app/hello");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(support::hello_binary(), &bin).unwrap();
    app.commit();
    // A checkout is readable by others (tempdir makes it private to root).
    std::fs::set_permissions(
        app.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    app
}

/// The testbed's key as a CI job hands it over: a copy owned by the image's user, mode 0600.
fn key_for_the_image(testbed: &Testbed) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::copy(&testbed.key, &key).unwrap();
    std::os::unix::fs::chown(&key, Some(UID), Some(UID))
        .expect("chown the key copy to uid 10001 (the tests run as root, as the testbed does)");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (dir, key)
}

/// `docker run` arguments of a CI job, as Dockerfile.production documents them: an init, host
/// network (the testbed's hosts listen on this machine's loopback), the app at /work, key and known_hosts under ~/.ssh, the password with
/// `-e` (from the docker CLI's environment, never on its command line).
fn ci_args(app: &Path, key: &Path, testbed: &Testbed) -> Vec<String> {
    vec![
        "--init".into(),
        "--network".into(),
        "host".into(),
        "-v".into(),
        format!("{}:/work", app.display()),
        "-v".into(),
        format!("{}:/home/shipit/.ssh/id_ed25519:ro", key.display()),
        "-v".into(),
        format!(
            "{}:/home/shipit/.ssh/known_hosts:ro",
            testbed.known_hosts.display()
        ),
        "-e".into(),
        "SHIPIT_REGISTRY_PASSWORD".into(),
    ]
}

/// `docker run` of the image as a CI job runs it on `app` (see [`ci_args`]), with `extra`
/// docker options and `shipit_args`; it must succeed. Returns shipit's stdout.
fn run_as_ci_job(
    testbed: &Testbed,
    image: &Image,
    app: &App,
    extra: &[&str],
    shipit_args: &[&str],
) -> String {
    let (_keydir, key) = key_for_the_image(testbed);
    let mut args = ci_args(app.path(), &key, testbed);
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(image.tag.clone());
    args.extend(shipit_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = image.run(
        &args,
        &[("SHIPIT_REGISTRY_PASSWORD", &testbed.registry_password)],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!(
        "docker run {} ({:.1?}):\n{stdout}{stderr}",
        args.join(" "),
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "shipit {} failed in the image ({}):\n{stderr}",
        shipit_args.join(" "),
        out.status
    );
    stdout
}

#[test]
fn from_ci_reaches_every_host_of_the_testbed() {
    let testbed = Testbed::from_env();
    let image = Image::build("status");
    let app = ci_app(&testbed);
    let stdout = run_as_ci_job(&testbed, &image, &app, &[], &["status", "local"]);
    for host in testbed.hosts(3) {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{}: ", host.dest))),
            "{} is missing from the status:\n{stdout}",
            host.dest
        );
    }
}

#[test]
fn from_ci_builds_and_pushes_through_the_mounted_docker_socket() {
    let testbed = Testbed::from_env();
    let image = Image::build("build");
    let socket = Path::new("/var/run/docker.sock");
    let gid = std::fs::metadata(socket)
        .expect("the Docker socket /var/run/docker.sock")
        .gid();
    let mount = format!("{}:/var/run/docker.sock", socket.display());
    let gid = gid.to_string();
    let app = ci_app(&testbed);
    let stdout = run_as_ci_job(
        &testbed,
        &image,
        &app,
        &["-v", &mount, "--group-add", &gid],
        &["build", "local"],
    );

    // The release is named after the checkout's commit: git ran inside, on a tree another uid owns.
    let sha = text(
        &Command::new("git")
            .args(["rev-parse", "--short=7", "HEAD"])
            .current_dir(app.path())
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    let tag = format!("1.0.0_{sha}");
    let reference = format!("{}/tests/t-packaging:{tag}@sha256:", testbed.registry);
    assert!(
        stdout.starts_with(&reference),
        "expected {reference}...; got:\n{stdout}"
    );
    assert!(
        testbed.registry_tags("tests/t-packaging").contains(&tag),
        "{tag} is not in the registry"
    );
}
