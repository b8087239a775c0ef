//! Integration-test support: the real testbed (hosts, registry) and a fluent builder for an
//! app directory on which the real `shipit` binary runs.
//!
//! The testbed comes from `testbed/testbed.sh up`; its settings are read from the environment
//! or from `$SHIPIT_TESTBED_DIR/env.sh`. A missing testbed is a test failure with the command
//! to run, never a silent skip.

#![allow(dead_code)]

pub mod pebble;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

pub struct Testbed {
    pub hosts: Vec<TestHost>,
    /// The current-engine hosts: Debian 13, Docker 26 keeping images in containerd's store
    /// (`shipit-tx1..`); empty when the testbed was brought up without them.
    pub trixie: Vec<TestHost>,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub registry: String,
    pub registry_user: String,
    pub registry_password: String,
}

#[derive(Clone)]
pub struct TestHost {
    /// `root@127.0.0.1:2201`
    pub dest: String,
    pub ssh_port: u16,
    /// The host's nginx, published on 127.0.0.1.
    pub http_port: u16,
    /// Its container (`shipit-th1`).
    pub container: String,
}

impl TestHost {
    /// A host nothing answers for (SSH port 1 on this machine).
    pub fn unreachable() -> TestHost {
        TestHost {
            dest: "root@127.0.0.1:1".into(),
            ssh_port: 1,
            http_port: 1,
            container: "none".into(),
        }
    }

    /// The host's address on Docker's bridge, where the machine reaches any of its ports
    /// (as a CA or a load balancer would reach a server). Read each time: a restarted host
    /// may get another.
    pub fn address(&self) -> String {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &self.container,
            ])
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker inspect {}", self.container);
        let address = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(!address.is_empty(), "{} has no address", self.container);
        address
    }
}

fn testbed_vars() -> BTreeMap<String, String> {
    let dir =
        std::env::var("SHIPIT_TESTBED_DIR").unwrap_or_else(|_| "/var/lib/shipit-testbed".into());
    let mut vars = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("env.sh")) {
        for line in text.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                vars.insert(k.to_owned(), v.trim_matches('\'').to_owned());
            }
        }
        if let Ok(pw) = std::fs::read_to_string(Path::new(&dir).join("registry-password")) {
            vars.insert("SHIPIT_REGISTRY_PASSWORD".into(), pw.trim().to_owned());
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("SHIPIT_TESTBED_") || k.starts_with("SHIPIT_REGISTRY") {
            vars.insert(k, v);
        }
    }
    vars
}

impl Testbed {
    pub fn from_env() -> Testbed {
        let vars = testbed_vars();
        let var = |k: &str| {
            vars.get(k).cloned().unwrap_or_else(|| {
                panic!("testbed variable {k} is not set: run `bash testbed/testbed.sh up` first")
            })
        };
        let hosts_of = |ssh: &str, http: &str, containers: &str| -> Vec<TestHost> {
            let ssh: Vec<String> = ssh.split_whitespace().map(str::to_owned).collect();
            let http: Vec<u16> = http
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            let containers: Vec<String> =
                containers.split_whitespace().map(str::to_owned).collect();
            assert_eq!(ssh.len(), http.len());
            assert_eq!(ssh.len(), containers.len());
            ssh.into_iter()
                .zip(http)
                .zip(containers)
                .map(|((dest, http_port), container)| TestHost {
                    ssh_port: dest.rsplit_once(':').unwrap().1.parse().unwrap(),
                    dest,
                    http_port,
                    container,
                })
                .collect()
        };
        let hosts = hosts_of(
            &var("SHIPIT_TESTBED_HOSTS"),
            &var("SHIPIT_TESTBED_HTTP_PORTS"),
            &var("SHIPIT_TESTBED_CONTAINERS"),
        );
        let optional = |k: &str| vars.get(k).cloned().unwrap_or_default();
        let trixie = hosts_of(
            &optional("SHIPIT_TESTBED_TRIXIE_HOSTS"),
            &optional("SHIPIT_TESTBED_TRIXIE_HTTP_PORTS"),
            &optional("SHIPIT_TESTBED_TRIXIE_CONTAINERS"),
        );
        Testbed {
            hosts,
            trixie,
            key: var("SHIPIT_TESTBED_KEY").into(),
            known_hosts: var("SHIPIT_TESTBED_KNOWN_HOSTS").into(),
            registry: var("SHIPIT_REGISTRY"),
            registry_user: var("SHIPIT_REGISTRY_USER"),
            registry_password: var("SHIPIT_REGISTRY_PASSWORD"),
        }
    }

    /// The first `n` hosts; fails when the testbed has fewer.
    pub fn hosts(&self, n: usize) -> Vec<TestHost> {
        assert!(
            self.hosts.len() >= n,
            "this test needs {n} testbed hosts, the testbed has {}: run `bash testbed/testbed.sh up {n}`",
            self.hosts.len()
        );
        self.hosts[..n].to_vec()
    }

    /// The first `n` current-engine hosts (Docker 26, containerd's image store); fails when the
    /// testbed has fewer.
    pub fn trixie(&self, n: usize) -> Vec<TestHost> {
        assert!(
            self.trixie.len() >= n,
            "this test needs {n} trixie testbed hosts (Docker 26, containerd image store), the testbed has {}: run `bash testbed/testbed.sh up` (without SHIPIT_TESTBED_TRIXIE=0)",
            self.trixie.len()
        );
        self.trixie[..n].to_vec()
    }

    /// Run a shell command on a host with the system ssh client (independent of shipit).
    pub fn sh(&self, host: &TestHost, script: &str) -> Output {
        let (_, port) = host.dest.rsplit_once(':').unwrap();
        Command::new("ssh")
            .args(["-i"])
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-p", port, "root@127.0.0.1", script])
            .output()
            .expect("ssh runs")
    }

    /// Write `content` to `path` on a host (mode `mode`), through ssh's stdin.
    pub fn put(&self, host: &TestHost, path: &str, content: &str, mode: &str) {
        use std::io::Write as _;
        let (_, port) = host.dest.rsplit_once(':').unwrap();
        let mut child = Command::new("ssh")
            .args(["-i"])
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-p", port, "root@127.0.0.1"])
            .arg(format!(
                "mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode} '{path}'"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "writing {path} on {}",
            host.dest
        );
    }

    /// Like [`sh`], but the command must succeed; returns stdout.
    pub fn sh_ok(&self, host: &TestHost, script: &str) -> String {
        let out = self.sh(host, script);
        assert!(
            out.status.success(),
            "on {}: `{script}` failed: {}",
            host.dest,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Remove everything shipit may have put on a host for `app`, in any environment, and in
    /// the earlier layout (keyed by the app alone).
    pub fn wipe(&self, host: &TestHost, app: &str) {
        self.sh_ok(
            host,
            &format!(
                "for u in $(systemctl list-units --all --plain --no-legend '{app}@*' '{app}_*' | awk '{{print $1}}'); do \
                   systemctl disable --now \"$u\" 2>/dev/null; systemctl reset-failed \"$u\" 2>/dev/null; done; \
                 for u in $(systemctl list-unit-files --plain --no-legend '{app}_*.timer' | awk '{{print $1}}'); do \
                   systemctl disable --now \"$u\" 2>/dev/null; done; \
                 rm -rf /etc/nginx/conf.d/shipit-{app}.conf /etc/nginx/conf.d/shipit-{app}_*.conf \
                 /etc/nginx/conf.d/.shipit-{app}.conf.* /etc/nginx/conf.d/.shipit-{app}_*.conf.* \
                 /etc/systemd/system/{app}@.service /etc/systemd/system/{app}_* \
                 /etc/systemd/system/.{app}@.service.* /etc/systemd/system/.{app}_* \
                 /etc/logrotate.d/shipit-{app} /etc/logrotate.d/shipit-{app}_* \
                 /etc/logrotate.d/.shipit-{app}.* /etc/logrotate.d/.shipit-{app}_* \
                 /etc/shipit/{app} /var/log/shipit/{app} /var/lib/shipit/{app} && \
                 systemctl daemon-reload && (nginx -t -q && systemctl reload-or-restart nginx)"
            ),
        );
    }

    /// GET `path` through a host's nginx with `Host: domain`; returns (status, headers, body).
    pub fn http_get(&self, host: &TestHost, domain: &str, path: &str) -> (u16, String, String) {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "5", "-H"])
            .arg(format!("Host: {domain}"))
            .arg(format!("http://127.0.0.1:{}{path}", host.http_port))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned())
    }
}

/// `text` holds `needle`; else the failure shows all of `text`.
#[track_caller]
pub fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "`{needle}` not in:\n{text}");
}

/// An app directory in a temp dir, and the `shipit` binary run on it.
pub struct App {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub domain: String,
    envs: BTreeMap<String, String>,
}

pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }
}

/// Run the real `shipit` in `dir` with no testbed, no terminal and no log filter: what a user
/// sees of a command that needs no host.
pub fn shipit_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(args)
        .current_dir(dir)
        .env_remove("SHIPIT_LOG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("shipit runs")
        .into()
}

/// `docker ARGS` on this machine, whatever its outcome.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the docker CLI runs (installed by `bash testbed/testbed.sh up`)")
}

/// `docker ARGS`, which must succeed; its output.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> Output {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `docker build ARGS` in `dir`, which must succeed: on failure, the command and the last 60
/// lines of the build's log.
#[track_caller]
pub fn docker_build(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("docker")
        .arg("build")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the docker CLI runs (installed by `bash testbed/testbed.sh up`)");
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "`docker build {}` in {} failed ({}):\n...\n{}\n{}",
            args.join(" "),
            dir.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The local base images of `testbed/bases.sh` (no public registry is reachable here):
/// `(BUILDER_IMAGE, RUNTIME_IMAGE)`, made the first time (a debootstrap), checked after.
pub fn local_bases() -> (String, String) {
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg("testbed/bases.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "`bash testbed/bases.sh` failed ({}); run it by hand (as root, after \
         `bash testbed/testbed.sh up`) to see why:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("`bash testbed/bases.sh` printed no {name}=...: {stdout}"))
            .to_owned()
    };
    let bases = (var("BUILDER_IMAGE"), var("RUNTIME_IMAGE"));
    eprintln!("bases: {bases:?} ready in {:.1?}", started.elapsed());
    bases
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert!(
            self.output.status.success(),
            "shipit failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "expected exit code {code}:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl App {
    /// A valid app named `name` deployed to `hosts` of the testbed as environment `production`,
    /// its colours on ports 5901 and 5902 (never the defaults, 3001 and 3002: the demo's app
    /// holds those on the hosts, and tests never trip over what the demo left).
    pub fn new(testbed: &Testbed, name: &str, hosts: &[TestHost]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let domain = format!("{name}.test");
        let app = App {
            dir,
            name: name.to_owned(),
            domain: domain.clone(),
            envs: BTreeMap::from([(
                "SHIPIT_REGISTRY_PASSWORD".into(),
                testbed.registry_password.clone(),
            )]),
        };
        app.file(
            "shipit.toml",
            &format!(
                r#"app = "{name}"
image = "{registry}/tests/{name}"
version = "1.0.0"

[registry]
server = "{registry}"
username = "{user}"
password_env = "SHIPIT_REGISTRY_PASSWORD"

[container]
port = 3000
memory_max = "256M"
cpu_quota = "50%"

[health]
path = "/health"
expect_json = {{ status = "healthy" }}
timeout = "20s"

# test settings
[ports]
blue = 5901
green = 5902
"#,
                registry = testbed.registry,
                user = testbed.registry_user,
            ),
        );
        app.env_file("production", testbed, hosts, "");
        // What an earlier test (of this run or an earlier one) left on the shared ports is
        // wiped: tests never trip over it. The demo's apps are never `t-*`.
        for h in hosts.iter().filter(|h| h.ssh_port != 1) {
            let others = testbed.sh_ok(
                h,
                "for p in 5901 5902; do docker ps --filter publish=$p --format '{{.Label \"shipit.app\"}}'; done | sort -u",
            );
            for other in others.lines().filter(|o| o.starts_with("t-") && *o != name) {
                testbed.wipe(h, other);
            }
        }
        app
    }

    /// The app's colours on `blue` and `blue + 1` instead of the shared 5901 and 5902 (for a
    /// test that leaves its copies running: the next test of the shared ports would meet them).
    pub fn ports(&self, blue: u16) -> &App {
        let text = std::fs::read_to_string(self.path().join("shipit.toml")).unwrap();
        self.file(
            "shipit.toml",
            &text.replace(
                "[ports]\nblue = 5901\ngreen = 5902\n",
                &format!("[ports]\nblue = {blue}\ngreen = {}\n", blue + 1),
            ),
        )
    }

    /// Write `environments/<env>.toml` for `hosts`, with `extra` appended.
    pub fn env_file(&self, env: &str, testbed: &Testbed, hosts: &[TestHost], extra: &str) -> &App {
        let list = hosts
            .iter()
            .map(|h| format!("{:?}", h.dest))
            .collect::<Vec<_>>()
            .join(", ");
        self.file(
            &format!("environments/{env}.toml"),
            &format!(
                "domain = \"{}\"\nhosts = [{list}]\n\n[ssh]\nidentity = {:?}\nknown_hosts_file = {:?}\nconnect_timeout = \"5s\"\n{extra}",
                self.domain,
                testbed.key.display().to_string(),
                testbed.known_hosts.display().to_string(),
            ),
        )
    }

    pub fn file(&self, rel: &str, text: &str) -> &App {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `shipit deploy production --version VERSION`, which must succeed.
    #[track_caller]
    pub fn deploy(&self, version: &str) -> Run {
        self.shipit(&["deploy", "production", "--version", version])
            .success()
    }

    /// `shipit deploy production --version VERSION`, which must fail with `code`.
    #[track_caller]
    pub fn deploy_fails(&self, version: &str, code: i32) -> Run {
        self.shipit(&["deploy", "production", "--version", version])
            .failure(code)
    }

    /// Set `health.timeout` in shipit.toml (from the 20 s `App::new` writes); committed.
    pub fn health_timeout(&self, timeout: &str) {
        let text = std::fs::read_to_string(self.path().join("shipit.toml"))
            .unwrap()
            .replace("timeout = \"20s\"", &format!("timeout = \"{timeout}\""));
        self.file("shipit.toml", &text).commit();
    }

    pub fn shipit(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_shipit"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SHIPIT_REGISTRY_PASSWORD")
            .envs(&self.envs)
            .output()
            .expect("shipit runs");
        Run::from(output)
    }
}

impl App {
    /// `shipit args` on a pseudo-terminal (util-linux `script`), as an operator at a terminal
    /// runs it: the output is what the terminal received, both streams together.
    pub fn shipit_on_terminal(&self, args: &[&str]) -> Run {
        let command = std::iter::once(env!("CARGO_BIN_EXE_shipit"))
            .chain(args.iter().copied())
            .map(|a| shell_escape::unix::escape(a.into()).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .current_dir(self.dir.path())
            .env_remove("SHIPIT_REGISTRY_PASSWORD")
            .env_remove("SHIPIT_LOG")
            .env("TERM", "xterm-256color")
            .envs(&self.envs)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script (util-linux) runs");
        Run::from(output)
    }
}

impl App {
    /// A tiny real web app image: busybox httpd serving a JSON `/health` and `/version`,
    /// `FROM scratch`. `marker` goes into a file, so different markers give different layers.
    pub fn busybox_app(&self, marker: &str) -> &App {
        let busybox = std::fs::read("/bin/busybox")
            .expect("/bin/busybox (busybox-static) is installed by the testbed");
        let path = self.path().join("busybox");
        std::fs::write(&path, busybox).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&path).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        self.file("www/health", "{\"status\":\"healthy\"}\n")
            .file("www/version", &format!("{marker}\n"))
            .file(
                "Dockerfile.production",
                "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"httpd\", \"-f\", \"-p\", \"3000\", \"-h\", \"/www\"]\n",
            )
    }

    /// `git init` (once) and commit everything, so the build has a clean tree.
    pub fn commit(&self) -> &App {
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.email=test@shipit.test",
                    "-c",
                    "user.name=shipit tests",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(self.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !self.path().join(".git").exists() {
            git(&["init", "-q"]);
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "--allow-empty", "-m", "test"]);
        self
    }

    pub fn set_env(&mut self, key: &str, value: &str) -> &mut App {
        self.envs.insert(key.to_owned(), value.to_owned());
        self
    }
}

impl Testbed {
    /// The tags the registry holds for `repository`, asked with curl and the registry's own auth.
    pub fn registry_tags(&self, repository: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-u"])
            .arg(format!("{}:{}", self.registry_user, self.registry_password))
            .arg(format!(
                "http://{}/v2/{repository}/tags/list",
                self.registry
            ))
            .output()
            .expect("curl runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The example app (examples/hello), built by `examples/hello/build.sh`.
pub fn hello_binary() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello/app/hello");
    assert!(
        p.is_file(),
        "{} is missing: run `bash examples/hello/build.sh` (testbed/test.sh does)",
        p.display()
    );
    p
}

impl App {
    /// The hello example app as `name`, its colours on `port` and `port + 1` of each host,
    /// with `env` lines in `[env.clear]`; provisioned on `hosts`.
    pub fn hello(testbed: &Testbed, name: &str, hosts: &[TestHost], port: u16, env: &str) -> App {
        let app = App::hello_unprovisioned(testbed, name, hosts, port, env);
        app.shipit(&["provision", "production"]).success();
        app
    }

    /// [`App::hello`] without the provision: the hosts are wiped of the app, nothing else.
    pub fn hello_unprovisioned(
        testbed: &Testbed,
        name: &str,
        hosts: &[TestHost],
        port: u16,
        env: &str,
    ) -> App {
        let app = App::new(testbed, name, hosts);
        for h in hosts {
            testbed.wipe(h, name);
        }
        let bin = std::fs::read(hello_binary()).unwrap();
        let path = app.path().join("app/hello");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bin).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
        app.file(
            "Dockerfile.production",
            &std::fs::read_to_string(root.join("Dockerfile.production")).unwrap(),
        );
        app.file(
            ".dockerignore",
            &std::fs::read_to_string(root.join(".dockerignore")).unwrap(),
        );
        app.set_hello_env(port, env);
        app
    }

    /// Rewrite the app's settings: ports and `[env.clear]`; committed so builds stay clean.
    pub fn set_hello_env(&self, port: u16, env: &str) -> &App {
        let base = std::fs::read_to_string(self.path().join("shipit.toml")).unwrap();
        let base = base.split("\n# test settings\n").next().unwrap().to_owned();
        self.file(
            "shipit.toml",
            &format!(
                "{base}\n# test settings\n[ports]\nblue = {port}\ngreen = {}\n\n[deploy]\nverify_window = \"1500ms\"\n\n[env.clear]\n{env}\n",
                port + 1
            ),
        );
        self.commit()
    }

    /// The `/version` answer of each host through its nginx.
    pub fn versions(&self, testbed: &Testbed, hosts: &[TestHost]) -> Vec<String> {
        hosts
            .iter()
            .map(|h| {
                let (status, _, body) = testbed.http_get(h, &self.domain, "/version");
                assert_eq!(status, 200, "{}: {body}", h.dest);
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v["version"]
                    .as_str()
                    .unwrap()
                    .split('+')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

/// A host frozen (its container paused): SSH to it times out, as for a host that died. Thawed
/// when dropped, whatever the test did.
pub struct Frozen(String);

impl Frozen {
    pub fn host(h: &TestHost) -> Frozen {
        let out = Command::new("docker")
            .args(["pause", &h.container])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker pause {}", h.container);
        Frozen(h.container.clone())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["unpause", &self.0]).output();
    }
}

/// A bounded load through the hosts' nginx while something happens: a few keep-alive clients
/// per host, each stopping after `max_requests` or `max_time`. A request on a reused
/// connection that nginx closed on reload is retried once by the client (RFC 9112 9.3.1);
/// anything else that is not a 2xx is a failed request.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<LoadReport>>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// Requests retried once after nginx closed their idle keep-alive connection.
    pub retried: u64,
    pub failures: Vec<String>,
}

/// Where one load client sends its requests.
#[derive(Clone)]
struct Target {
    url: String,
    /// `Host` for plain HTTP to a published port.
    host_header: Option<String>,
    /// For HTTPS: the domain resolves to this address, and this root is trusted.
    tls: Option<(String, std::net::SocketAddr, String)>,
}

impl Load {
    pub fn start(hosts: &[TestHost], domain: &str, clients_per_host: usize) -> Load {
        let targets = hosts
            .iter()
            .map(|h| Target {
                url: format!("http://127.0.0.1:{}/version", h.http_port),
                host_header: Some(domain.to_owned()),
                tls: None,
            })
            .collect();
        Load::run(targets, clients_per_host)
    }

    /// HTTPS to each host's nginx on 443 (at its address on Docker's bridge), with `domain` as
    /// SNI, trusting only `root_pem`: as browsers reach the site.
    pub fn start_tls(
        hosts: &[TestHost],
        domain: &str,
        root_pem: &str,
        clients_per_host: usize,
    ) -> Load {
        let targets = hosts
            .iter()
            .map(|h| Target {
                url: format!("https://{domain}/version"),
                host_header: None,
                tls: Some((
                    domain.to_owned(),
                    format!("{}:443", h.address()).parse().unwrap(),
                    root_pem.to_owned(),
                )),
            })
            .collect();
        Load::run(targets, clients_per_host)
    }

    fn run(targets: Vec<Target>, clients_per_host: usize) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let started = std::time::Instant::now();
                let mut tasks = Vec::new();
                for target in targets {
                    for _ in 0..clients_per_host {
                        let mut builder = shipit::tls::client_builder()
                            .no_proxy()
                            .timeout(std::time::Duration::from_secs(5));
                        if let Some((domain, address, root)) = &target.tls {
                            builder = builder.resolve(domain, *address).tls_certs_only([
                                reqwest::Certificate::from_pem(root.as_bytes()).unwrap(),
                            ]);
                        }
                        let client = builder.build().unwrap();
                        let url = target.url.clone();
                        let host_header = target.host_header.clone();
                        let flag = flag.clone();
                        tasks.push(tokio::spawn(async move {
                            let mut r = LoadReport::default();
                            while !flag.load(Ordering::Relaxed)
                                && r.ok + r.failed < 40_000
                                && started.elapsed() < std::time::Duration::from_secs(120)
                            {
                                let request = || {
                                    let r = client.get(&url);
                                    match &host_header {
                                        Some(h) => r.header("Host", h),
                                        None => r,
                                    }
                                };
                                let mut sent = request().send().await;
                                // A keep-alive connection closed by a reloading nginx before it
                                // answered: retried once on a new connection, as browsers do.
                                if sent
                                    .as_ref()
                                    .is_err_and(|e| format!("{e:?}").contains("IncompleteMessage"))
                                {
                                    r.retried += 1;
                                    sent = request().send().await;
                                }
                                match sent {
                                    Ok(resp) if resp.status().is_success() => {
                                        let _ = resp.bytes().await;
                                        r.ok += 1;
                                    }
                                    Ok(resp) => {
                                        r.failed += 1;
                                        r.failures.push(format!("HTTP {}", resp.status()));
                                    }
                                    Err(e) => {
                                        r.failed += 1;
                                        r.failures.push(format!("{e:?}"));
                                    }
                                }
                                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            }
                            r
                        }));
                    }
                }
                let mut total = LoadReport::default();
                for t in tasks {
                    let r = t.await.unwrap();
                    total.ok += r.ok;
                    total.failed += r.failed;
                    total.retried += r.retried;
                    total.failures.extend(r.failures);
                }
                total
            })
        });
        // Let the clients connect before the action starts.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Load {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> LoadReport {
        // Keep loading a little after the action, so late failures are seen.
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl LoadReport {
    #[track_caller]
    pub fn assert_no_failures(&self, what: &str) {
        eprintln!(
            "load during {what}: {} ok, {} failed, {} retried on a new connection",
            self.ok, self.failed, self.retried
        );
        assert!(self.ok > 50, "the load did not run during {what}: {self:?}");
        assert_eq!(
            self.failed,
            0,
            "failed requests during {what}: {:?}",
            &self.failures[..self.failures.len().min(10)]
        );
    }
}

/// A shipit run in the background, read line by line from its stderr.
pub struct Spawned {
    pub child: std::process::Child,
    pub stderr: String,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl App {
    /// Start shipit with `args` and return once a line of its stderr contains `marker`.
    pub fn spawn_until(&self, args: &[&str], marker: &str) -> Spawned {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_shipit"))
            .args(args)
            .current_dir(self.path())
            .env_remove("SHIPIT_REGISTRY_PASSWORD")
            .envs(&self.envs)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("shipit runs");
        let mut spawned = Spawned {
            stderr: String::new(),
            lines: std::io::BufReader::new(child.stderr.take().unwrap()).lines(),
            child,
        };
        while let Some(Ok(line)) = spawned.lines.next() {
            spawned.stderr.push_str(&line);
            spawned.stderr.push('\n');
            if line.contains(marker) {
                return spawned;
            }
        }
        panic!(
            "shipit ended before printing `{marker}`:\n{}",
            spawned.stderr
        );
    }
}

impl Spawned {
    /// Let it run to the end; its exit status and all it printed on stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        for line in self.lines.by_ref().map_while(Result::ok) {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
        }
        (self.child.wait().unwrap(), self.stderr)
    }

    /// SIGKILL it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A certificate authority of the test's own, and certificates it signs: what a team with a
/// private CA has. Its certificate goes in a PEM file for `SSL_CERT_FILE`.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub pem_file: tempfile::NamedTempFile,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "shipit test CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(pem_file.path(), issuer.pem()).unwrap();
        TestCa { issuer, pem_file }
    }

    /// A certificate and key for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        self.issue_for_days(names, 90)
    }

    /// The same, valid from an hour ago for `days` days.
    pub fn issue_for_days(
        &self,
        names: &[&str],
        days: i64,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }
}

/// A webhook receiver on 127.0.0.1, over HTTP or HTTPS (hyper, and rustls with a certificate
/// of a [`TestCa`] for `127.0.0.1` and `localhost`): records `(path, body)` of each POST and
/// answers 500 to the first `fail_first` requests (to exercise the retries), then 200.
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        Receiver::serve(fail_first, None)
    }

    /// Over HTTPS, with a certificate `ca` signed; the URL names `127.0.0.1`.
    pub fn start_tls(fail_first: usize, ca: &TestCa) -> Receiver {
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
        shipit::tls::install_provider();
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Receiver::serve(fail_first, Some(Arc::new(config)))
    }

    fn serve(fail_first: usize, tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                for _ in 0..200 {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let store = Arc::clone(&store);
                    let seen = Arc::clone(&seen);
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let store = Arc::clone(&store);
                            let seen = Arc::clone(&seen);
                            async move {
                                use http_body_util::BodyExt;
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await?.to_bytes();
                                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                let status = if n <= fail_first {
                                    500
                                } else {
                                    store.lock().unwrap().push((
                                        path,
                                        serde_json::from_slice(&body).unwrap_or_default(),
                                    ));
                                    200
                                };
                                Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let http = hyper::server::conn::http1::Builder::new();
                        match acceptor {
                            Some(acceptor) => {
                                // A client that refuses our certificate ends here.
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = http
                                        .serve_connection(
                                            hyper_util::rt::TokioIo::new(stream),
                                            service,
                                        )
                                        .await;
                                }
                            }
                            None => {
                                let _ = http
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    });
                }
            });
        });
        Receiver { url, received }
    }

    pub fn received(&self) -> Vec<(String, serde_json::Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// Deploys without a registry (`tests/noregistry.rs`, `tests/engines.rs`): an app whose image
/// has a base layer (`assets`, `base_mib` MiB that do not compress), the
/// hello binary, and a small layer that changes (`release.txt`): what a team's image with a
/// distribution base under its app looks like to the transfer.
pub fn layered_app(tb: &Testbed, name: &str, hosts: &[TestHost], port: u16, retain: usize) -> App {
    let app = App::hello_unprovisioned(tb, name, hosts, port, "");
    // No `[registry]`: images go over SSH.
    let base = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
    let start = base.find("[registry]").unwrap();
    let end = start + base[start..].find("\n\n").unwrap() + 2;
    // Few releases kept (`retain`): what pruning removes is seen without many deploys.
    app.file(
        "shipit.toml",
        &format!(
            "{}{}",
            &base[..start],
            base[end..].replace("[deploy]\n", &format!("[deploy]\nretain = {retain}\n"))
        ),
    );
    assets(&app, 6, 1);
    app.file("release.txt", "first\n");
    app.file(".dockerignore", "*\n!app/hello\n!assets\n!release.txt\n");
    app.file(
        "Dockerfile.production",
        "FROM scratch\nCOPY assets /assets\nCOPY app/hello /hello\nCOPY release.txt /release.txt\nEXPOSE 3000\nUSER 65534:65534\nENTRYPOINT [\"/hello\"]\n",
    );
    app.commit();
    app.shipit(&["provision", "production"]).success();
    app
}

/// `mib` MiB of bytes that do not compress, different for each `seed` and each run of the
/// test (a host keeps the layers of earlier runs: this run's must be new to it).
pub fn assets(app: &App, mib: usize, seed: u64) {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state = (seed ^ run).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(mib << 20);
    while bytes.len() < mib << 20 {
        // xorshift64: cheap, and gzip finds nothing in it.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(app.path().join("assets"), bytes).unwrap();
}

/// `deploy --json`: what each host got of the image.
pub fn deploy_json(app: &App, version: &str) -> serde_json::Value {
    let run = app
        .shipit(&["deploy", "production", "--version", version, "--json"])
        .success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// The image ID the live colour's container of `name` runs on a host (the colour nginx serves,
/// as its upstream include records it).
pub fn host_runs(tb: &Testbed, h: &TestHost, name: &str) -> String {
    tb.sh_ok(
        h,
        &format!(
            "c=$(sed -n 's/^# live: //p' /etc/shipit/{name}/production/upstream.conf) && docker inspect --format '{{{{.Image}}}}' {name}_production-$c"
        ),
    )
    .trim()
    .to_owned()
}

/// The deploying machine's engine switched to containerd's image store: a trixie host's Docker
/// (26, containerd snapshotter), reached through an SSH-forwarded socket in a private temporary
/// directory. Give shipit and the docker CLI `docker_host` as `DOCKER_HOST`; dropping it ends
/// the forward.
pub struct ForwardedEngine {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    pub docker_host: String,
}

impl ForwardedEngine {
    pub fn start(tb: &Testbed, host: &TestHost) -> ForwardedEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let child = Command::new("ssh")
            .args(["-N", "-i"])
            .arg(&tb.key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ExitOnForwardFailure=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", tb.known_hosts.display()))
            .arg("-L")
            .arg(format!("{}:/run/docker.sock", socket.display()))
            .args(["-p", &host.ssh_port.to_string(), "root@127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("ssh runs");
        let engine = ForwardedEngine {
            child,
            docker_host: format!("unix://{}", socket.display()),
            _dir: dir,
        };
        let started = std::time::Instant::now();
        loop {
            if engine
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success()
            {
                return engine;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "the engine of {} did not answer through the forwarded socket",
                host.container
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the docker CLI runs")
    }
}

impl Drop for ForwardedEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs its closure when dropped, however the test ends (a panic included): for undoing what a
/// test did to a host that later tests share.
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
