//! One-off containers of the app: the release command, the backup and its restore, `shipit
//! exec`. Pure: the `docker run` arguments each one gets, with the same limits, labels and
//! volumes as the app's own containers.
//!
//! The app's environment (its settings and secrets) reaches the container either from a file
//! the host has (`shipit exec` uses the live colour's, mode 0600), or on stdin
//! (`--env-file /dev/stdin`: docker reads it before the container starts, and it never
//! touches the host's disk).

use crate::config::Config;

/// Where a one-off container's environment comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvFrom {
    /// Sent on stdin.
    Stdin,
    /// A file on the host.
    File(String),
}

/// One one-off container.
#[derive(Clone, Debug)]
pub struct Oneoff<'a> {
    pub config: &'a Config,
    /// The host it runs on: its options to reach the accessories.
    pub host: &'a crate::config::HostSpec,
    /// What it is for (`release`, `backup`, `restore`, `exec`): its label `shipit.role`.
    pub role: &'a str,
    /// Its name on the host.
    pub name: String,
    pub image: &'a str,
    pub command: &'a [String],
    pub env: EnvFrom,
    /// More `docker run` options (`-e`, `-v`), before the image.
    pub extra: Vec<String>,
    /// Allocate a terminal and keep stdin open (`shipit exec` on a terminal).
    pub tty: bool,
    /// Keep stdin open without a terminal (`shipit exec` fed from a pipe).
    pub interactive: bool,
}

impl Oneoff<'_> {
    /// `run --rm --init --name ... IMAGE COMMAND...`
    pub fn docker_args(&self) -> Vec<String> {
        let c = &self.config.container;
        let mut args: Vec<String> = ["run", "--rm", "--init", "--name"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.push(self.name.clone());
        if self.tty {
            args.push("--tty".into());
        }
        if self.tty || self.interactive {
            args.push("--interactive".into());
        }
        args.push("--env-file".into());
        args.push(match &self.env {
            EnvFrom::Stdin => "/dev/stdin".into(),
            EnvFrom::File(f) => f.clone(),
        });
        for (flag, value) in [
            ("--memory", c.memory_max.to_lowercase()),
            ("--cpus", crate::templates::docker_cpus(&c.cpu_quota)),
            ("--log-opt", "max-size=50m".to_owned()),
            ("--label", format!("shipit.app={}", self.config.app)),
            (
                "--label",
                format!("shipit.environment={}", self.config.environment),
            ),
            ("--label", format!("shipit.role={}", self.role)),
        ] {
            args.push(flag.to_owned());
            args.push(value);
        }
        for v in &c.volumes {
            args.push("--volume".into());
            args.push(v.clone());
        }
        args.extend(crate::templates::link_args(self.config, self.host));
        args.extend(self.extra.iter().cloned());
        args.push(self.image.to_owned());
        args.extend(self.command.iter().cloned());
        args
    }
}

/// The name of a one-off container of `role` for the site (one at a time under the lock).
pub fn name(config: &Config, role: &str) -> String {
    format!("{}_{role}", config.site().key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::validate_for_tests(
            "app = \"web\"\nimage = \"r.test/web\"\nversion = \"1.0.0\"\n[container]\nmemory_max = \"512M\"\ncpu_quota = \"150%\"\nvolumes = [\"/srv/data:/data\", \"/srv/ro:/ro:ro\"]\n",
            "domain = \"web.test\"\nhosts = [\"h1\"]\n",
        )
        .unwrap()
    }

    #[test]
    fn a_release_command_gets_the_apps_limits_labels_volumes_and_its_env_on_stdin() {
        let config = config();
        let command = vec![
            "./bin/migrate".to_owned(),
            "--to".to_owned(),
            "$x y".to_owned(),
        ];
        let o = Oneoff {
            config: &config,
            host: &config.hosts[0],
            role: "release",
            name: name(&config, "release"),
            image: "r.test/web@sha256:00",
            command: &command,
            env: EnvFrom::Stdin,
            extra: vec![],
            tty: false,
            interactive: false,
        };
        assert_eq!(
            o.docker_args().join(" "),
            "run --rm --init --name web_test_release --env-file /dev/stdin --memory 512m --cpus 1.50 --log-opt max-size=50m --label shipit.app=web --label shipit.environment=test --label shipit.role=release --volume /srv/data:/data --volume /srv/ro:/ro:ro r.test/web@sha256:00 ./bin/migrate --to $x y"
        );
    }

    #[test]
    fn exec_on_a_terminal_is_interactive_with_the_live_env_file() {
        let config = config();
        let command = vec!["sh".to_owned()];
        let o = Oneoff {
            config: &config,
            host: &config.hosts[0],
            role: "exec",
            name: "web_test_exec-1".into(),
            image: "sha256:11",
            command: &command,
            env: EnvFrom::File("/etc/shipit/web/test/blue.app.env".into()),
            extra: vec!["-e".into(), "SHIPIT_EXEC=1".into()],
            tty: true,
            interactive: false,
        };
        let args = o.docker_args();
        assert!(args.contains(&"--tty".to_owned()));
        assert!(args.contains(&"--interactive".to_owned()));
        let at = args.iter().position(|a| a == "--env-file").unwrap();
        assert_eq!(args[at + 1], "/etc/shipit/web/test/blue.app.env");
        assert_eq!(
            &args[args.len() - 4..],
            ["-e", "SHIPIT_EXEC=1", "sha256:11", "sh"]
        );
    }
}
