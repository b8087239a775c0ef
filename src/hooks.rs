//! Deploy hooks: commands the user configures, run on the deploying machine with `sh -c`.
//!
//! Owns: running them in order with the deploy's facts in their environment, and the error
//! when one fails (its command, exit code and the end of its output).

use std::process::Stdio;

use crate::config::Config;
use crate::error::Error;
use crate::ui;

/// When a hook runs.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    PreDeploy,
    PostDeploy,
}

impl Stage {
    pub fn key(self) -> &'static str {
        match self {
            Stage::PreDeploy => "hooks.pre_deploy",
            Stage::PostDeploy => "hooks.post_deploy",
        }
    }
}

/// Run the stage's commands in order; the first failure stops them.
pub async fn run(config: &Config, stage: Stage, release: &str, image: &str) -> Result<(), Error> {
    let commands = match stage {
        Stage::PreDeploy => &config.hooks.pre_deploy,
        Stage::PostDeploy => &config.hooks.post_deploy,
    };
    let hosts: Vec<String> = config.hosts.iter().map(ToString::to_string).collect();
    for command in commands {
        ui::status("Hook", &format!("{}: {command}", stage.key()));
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&config.app_dir)
            .env("SHIPIT_APP", &config.app)
            .env("SHIPIT_ENVIRONMENT", &config.environment)
            .env("SHIPIT_VERSION", release)
            .env("SHIPIT_IMAGE", image)
            .env("SHIPIT_HOSTS", hosts.join(" "))
            .env("SHIPIT_DOMAIN", &config.domain)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that everything it started can be ended with it.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Hook {
                stage: stage.key(),
                command: command.clone(),
                code: None,
                output: e.to_string(),
            })?;
        // A deploy interrupted during a hook does not leave the hook, or what it started,
        // running: the group is killed when this wait is dropped unfinished.
        let group = GroupGuard(child.id());
        let output = child.wait_with_output().await.map_err(|e| Error::Hook {
            stage: stage.key(),
            command: command.clone(),
            code: None,
            output: e.to_string(),
        })?;
        std::mem::forget(group);
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let lines: Vec<&str> = text.trim_end().lines().collect();
            return Err(Error::Hook {
                stage: stage.key(),
                command: command.clone(),
                code: output.status.code(),
                output: lines[lines.len().saturating_sub(20)..].join("\n"),
            });
        }
    }
    Ok(())
}

/// Kills a hook's process group when dropped (the hook's wait was abandoned).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok())
            && pid > 0
        {
            // SAFETY: sends SIGKILL to the process group the hook leads, which we created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}
