//! A real ACME CA on this machine for the tests: Debian's `pebble` (Let's Encrypt's test
//! server) and `pebble-challtestsrv` as its DNS, each started per test on free ports of
//! 127.0.0.1 and stopped (by pid) when dropped.
//!
//! The CA validates HTTP-01 challenges by fetching `http://<domain>/.well-known/...` from the
//! address the DNS gives for the domain: a test points the domain at testbed hosts (their
//! addresses on Docker's bridge), as a team points DNS at its servers or its load balancer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestCa;

pub struct Pebble {
    _dir: tempfile::TempDir,
    pebble: Child,
    dns: Child,
    /// The ACME directory URL, for `[tls] acme.directory`.
    pub directory: String,
    management: String,
    dns_management: String,
    /// A PEM bundle for `SSL_CERT_FILE`: the CA of pebble's own HTTPS listener and the root
    /// that signs the certificates pebble issues (a new one each time pebble starts).
    pub trust: PathBuf,
    /// That root alone, PEM.
    pub root: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pebble {
    pub fn start() -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let (acme, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        // pebble's HTTPS listener, with a certificate of a CA of the test's own.
        let listener_ca = TestCa::new();
        let (cert, key) = listener_ca.issue(&["127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                // Where the CA connects to validate: the port every host's nginx serves.
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        std::fs::write(
            dir.path().join("pebble.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns_child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            // Only the DNS: the hosts answer the challenges themselves.
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            // Names nobody pointed anywhere resolve to nothing that answers.
            .args(["-defaultIPv4", "127.0.0.9", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv runs (Debian package `pebble`; `bash testbed/testbed.sh up` installs it)");
        let pebble_child = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .args(["-strict"])
            // No random sleeps before validating, no nonces rejected at random, and a new
            // challenge for every order (no reuse of a valid authorization).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble runs");
        let mut p = Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management: format!("https://127.0.0.1:{management}"),
            dns_management: format!("http://127.0.0.1:{dns_management}"),
            trust: dir.path().join("trust.pem"),
            root: String::new(),
            _dir: dir,
            pebble: pebble_child,
            dns: dns_child,
        };
        p.wait_ready(&listener_ca);
        p.root = p.get(&format!("{}/roots/0", p.management));
        let bundle = format!(
            "{}{}",
            std::fs::read_to_string(listener_ca.pem_file.path()).unwrap(),
            p.root
        );
        std::fs::write(&p.trust, bundle).unwrap();
        p
    }

    fn wait_ready(&mut self, listener_ca: &TestCa) {
        let started = Instant::now();
        loop {
            let ok = Command::new("curl")
                .args(["-sf", "--max-time", "2", "--cacert"])
                .arg(listener_ca.pem_file.path())
                .arg(&self.directory)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let dns_up = Command::new("curl")
                .args(["-s", "--max-time", "2", "-o", "/dev/null"])
                .arg(format!("{}/", self.dns_management))
                .status()
                .is_ok_and(|s| s.success());
            if ok && dns_up {
                return;
            }
            if let Ok(Some(status)) = self.pebble.try_wait() {
                panic!("pebble exited: {status}: {}", self.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "pebble did not answer at {} within 20s: {}",
                self.directory,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET over pebble's management listener (its certificate is the test's own).
    fn get(&self, url: &str) -> String {
        let out = Command::new("curl")
            .args(["-sSf", "-k", "--max-time", "5", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Point `domain` at these addresses (A records), replacing what it pointed at.
    pub fn point(&self, domain: &str, addresses: &[String]) {
        let body = serde_json::json!({ "host": domain, "addresses": addresses }).to_string();
        let paths: &[&str] = if addresses.is_empty() {
            &["clear-a"]
        } else {
            &["clear-a", "add-a"]
        };
        for path in paths {
            let body = if *path == "clear-a" {
                serde_json::json!({ "host": domain }).to_string()
            } else {
                body.clone()
            };
            let out = Command::new("curl")
                .args(["-sSf", "--max-time", "5", "-d", &body])
                .arg(format!("{}/{path}", self.dns_management))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "challtestsrv {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Both servers' logs, for a failure message.
    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.err"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self._dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "--- {f}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
