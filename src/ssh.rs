//! Host connections: one multiplexed SSH master per host, reused by every command of a run.
//!
//! Owns: connecting (host-key policy, identity, timeouts), running a [`RemoteCommand`] with its
//! stdin, and turning failures into errors that name the host, the command, the exit code and
//! stderr. Must not: decide what to run (plans do) or build shell text (`remote` does).

use openssh::Stdio;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;
use tracing::{Instrument, debug, info_span};

use crate::config::{HostSpec, KnownHostsPolicy, Ssh};
use crate::error::Error;
use crate::remote::RemoteCommand;

/// What a finished remote command returned.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    /// A framed command's output, what came before its marker left out.
    fn unframed(out: std::process::Output, marker: &str) -> Output {
        Output {
            code: out.status.code(),
            stdout: crate::remote::unframe(&out.stdout, marker).to_vec(),
            stderr: String::from_utf8_lossy(crate::remote::unframe(&out.stderr, marker))
                .into_owned(),
        }
    }
}

/// A connected host.
pub struct Host {
    pub spec: HostSpec,
    session: Session,
    /// The user it logged in as: the spec's, or what ssh's configuration chose.
    login: String,
    sudo: bool,
    /// The master outlives this run (`ssh.persist`): closing leaves it for the next one.
    persistent: bool,
    /// The bastion's master this host's connection goes through, kept open as long as it is.
    via: Option<std::sync::Arc<Host>>,
}

impl Host {
    /// Open the master connection to `spec`, or reuse the one a recent run left open for
    /// the same host and settings (`ssh.persist`). A little over the usual length: its one
    /// tracing span covers both paths, and the new master is remembered where it is made.
    pub async fn connect(spec: &HostSpec, ssh: &Ssh) -> Result<Host, Error> {
        let via = match jump_of(spec, ssh) {
            Some(bastion) => Some(std::sync::Arc::new(
                Host::connect_through(&bastion, ssh, None, 0).await?,
            )),
            None => None,
        };
        Host::connect_through(spec, ssh, via, 0).await
    }

    /// [`Host::connect`] through `via`, a bastion's master already open (one master carries
    /// every connection through it); `shard` tells apart several masters to one bastion.
    pub async fn connect_through(
        spec: &HostSpec,
        ssh: &Ssh,
        via: Option<std::sync::Arc<Host>>,
        shard: usize,
    ) -> Result<Host, Error> {
        let span = info_span!("connect", host = %spec);
        async {
            let started = Instant::now();
            let reuse = persisted_link(spec, ssh, shard);
            if let Some(session) = resume_persisted(reuse.as_deref(), ssh.connect_timeout).await {
                debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "reused the master connection"
                );
                return Host::logged_in(spec, session, true, via).await;
            }
            let mut b = SessionBuilder::default();
            // What the spec leaves out, ssh's configuration (`~/.ssh/config`) decides.
            if let Some(user) = &spec.user {
                b.user(user.clone());
            }
            if let Some(port) = spec.port {
                b.port(port);
            }
            b.connect_timeout(ssh.connect_timeout)
                .server_alive_interval(std::time::Duration::from_secs(5))
                .known_hosts_check(match ssh.known_hosts {
                    KnownHostsPolicy::Strict => KnownHosts::Strict,
                    KnownHostsPolicy::AcceptNew => KnownHosts::Add,
                });
            match &reuse {
                Some(link) => {
                    let secs = usize::try_from(ssh.persist.as_secs()).unwrap_or(usize::MAX);
                    b.control_directory(link.parent().unwrap_or(link))
                        .control_persist(ControlPersist::IdleFor(
                            NonZeroUsize::new(secs).unwrap_or(NonZeroUsize::MIN),
                        ));
                }
                None => {
                    // A killed shipit leaves no master behind for long.
                    b.control_directory(std::env::temp_dir()).control_persist(
                        ControlPersist::IdleFor(NonZeroUsize::MIN.saturating_add(29)),
                    );
                }
            }
            if let Some(identity) = &ssh.identity {
                b.keyfile(identity);
            }
            if let Some(file) = &ssh.known_hosts_file {
                b.user_known_hosts_file(file);
            }
            match &via {
                // Through the bastion's master: a configuration of its own that sends this host's
                // connection over that master, then reads the user's as ssh would.
                Some(bastion) => {
                    let file = jump_config(spec, bastion, ssh)
                        .map_err(|message| connect_error_text(spec, message))?;
                    b.config_file(file);
                }
                None => {
                    if let Some(file) = &ssh.config_file {
                        b.config_file(file);
                    }
                }
            }
            let session = b
                .connect_mux(&spec.host)
                .await
                .map_err(|e| connect_error(spec, ssh, &e))?;
            debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "connected"
            );
            let session = match &reuse {
                Some(link) => {
                    // Keep the master for the next run: remember its socket under a name
                    // derived from the host and the settings that authenticated it.
                    let (ctl, log) = session.detach();
                    let tmp = link.with_extension("new");
                    let _ = std::fs::remove_file(&tmp);
                    if std::os::unix::fs::symlink(&ctl, &tmp)
                        .and_then(|()| std::fs::rename(&tmp, link))
                        .is_err()
                    {
                        debug!("could not remember the master connection");
                    }
                    Session::resume_mux(ctl, log)
                }
                None => session,
            };
            Host::logged_in(spec, session, reuse.is_some(), via).await
        }
        .instrument(span)
        .await
    }

    /// The connected host, knowing the user it logged in as (asked when the spec leaves it to
    /// ssh's configuration), and so whether its commands need `sudo`.
    async fn logged_in(
        spec: &HostSpec,
        session: Session,
        persistent: bool,
        via: Option<std::sync::Arc<Host>>,
    ) -> Result<Host, Error> {
        let mut host = Host {
            spec: spec.clone(),
            session,
            login: spec.user.clone().unwrap_or_default(),
            sudo: false,
            persistent,
            via,
        };
        if spec.user.is_none() {
            let cmd = RemoteCommand::new("who logs in", "id -un");
            let out = host.run_with(&cmd, false).await?;
            host.login = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.code != Some(0) || host.login.is_empty() {
                return Err(host.failed(&cmd, &out));
            }
        }
        host.sudo = host.login != "root";
        Ok(host)
    }

    /// The user it logged in as.
    pub fn login(&self) -> &str {
        &self.login
    }

    /// Run `cmd` and return its output whatever its exit code. Errors only when the
    /// connection itself fails.
    pub async fn run(&self, cmd: &RemoteCommand) -> Result<Output, Error> {
        self.run_with(cmd, self.sudo).await
    }

    /// Run `cmd` as the login user, without `sudo` (for checking what sudo allows).
    pub async fn run_as_login_user(&self, cmd: &RemoteCommand) -> Result<Output, Error> {
        self.run_with(cmd, false).await
    }

    /// Start `cmd` (as root: under `sudo` when `sudo`) with its stdout and stderr piped and its
    /// stdin piped when `stdin` (else empty); nothing is written to it yet. Its output is
    /// framed: what the login shell's rc files print before it runs comes before the marker
    /// returned (see [`crate::remote::unframe`]).
    async fn spawn(
        &self,
        cmd: &RemoteCommand,
        sudo: bool,
        stdin: bool,
    ) -> Result<(openssh::Child<&Session>, String), Error> {
        let marker = crate::remote::marker();
        let mut command = self.session.raw_command(cmd.framed_line(sudo, &marker));
        command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .await
            .map_err(|e| self.transport_error(cmd, &e))?;
        Ok((child, marker))
    }

    /// What the login shell (its rc files) printed before a command ran, on stdout and stderr:
    /// nothing on a quiet host. shipit leaves it out of every answer; `doctor` names it.
    pub async fn login_noise(&self) -> Result<(String, String), Error> {
        let cmd = RemoteCommand::new("check the login shell", "true");
        let (child, marker) = self.spawn(&cmd, false, false).await?;
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| self.transport_error(&cmd, &e))?;
        let before = |bytes: &[u8]| {
            let rest = crate::remote::unframe(bytes, &marker).len();
            let noise = &bytes[..bytes.len() - rest];
            String::from_utf8_lossy(noise)
                .trim_end_matches(&format!("{marker}\n"))
                .to_owned()
        };
        Ok((before(&out.stdout), before(&out.stderr)))
    }

    /// Write `cmd`'s stdin (if it has one) to `child`, then close it.
    async fn feed_stdin(
        &self,
        cmd: &RemoteCommand,
        child: &mut openssh::Child<&Session>,
    ) -> Result<(), Error> {
        if let (Some(bytes), Some(mut stdin)) = (&cmd.stdin, child.stdin().take()) {
            let transport = |e: &dyn std::fmt::Display| self.transport_error(cmd, e);
            // A command may end without reading all of its stdin (the lock script, when the
            // lock is held, never reads the settings): its exit status says how it went.
            let fed = match stdin.write_all(bytes).await {
                Ok(()) => stdin.shutdown().await,
                Err(e) => Err(e),
            };
            match fed {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(transport(&e)),
                _ => {}
            }
        }
        Ok(())
    }

    async fn run_with(&self, cmd: &RemoteCommand, sudo: bool) -> Result<Output, Error> {
        let span = info_span!("remote", host = %self.spec, cmd = %cmd.label);
        async {
            let started = Instant::now();
            let transport = |e: &dyn std::fmt::Display| self.transport_error(cmd, e);
            let (mut child, marker) = self.spawn(cmd, sudo, cmd.stdin.is_some()).await?;
            self.feed_stdin(cmd, &mut child).await?;
            let out = child.wait_with_output().await.map_err(|e| transport(&e))?;
            let output = Output::unframed(out, &marker);
            debug!(code = ?output.code, elapsed_ms = started.elapsed().as_millis() as u64, "done");
            Ok(output)
        }
        .instrument(span)
        .await
    }

    /// Run `cmd` with its stdin fed by `feed` (a stream too big to hold in memory, such as an
    /// image) while its output is read; the output whatever the exit code. Errors when the
    /// connection fails; a `feed` that fails (the far end went away) leaves the exit code and
    /// stderr to say why, or is the error itself when they say nothing.
    pub async fn run_fed<F, Fut>(&self, cmd: &RemoteCommand, feed: F) -> Result<Output, Error>
    where
        F: FnOnce(openssh::ChildStdin) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let span = info_span!("remote", host = %self.spec, cmd = %cmd.label);
        async {
            let started = Instant::now();
            let transport = |e: &dyn std::fmt::Display| self.transport_error(cmd, e);
            let (mut child, marker) = self.spawn(cmd, self.sudo, true).await?;
            let stdin = child
                .stdin()
                .take()
                .ok_or_else(|| transport(&"no stdin to write to"))?;
            let (fed, out) = tokio::join!(feed(stdin), child.wait_with_output());
            let out = out.map_err(|e| transport(&e))?;
            let output = Output::unframed(out, &marker);
            debug!(code = ?output.code, elapsed_ms = started.elapsed().as_millis() as u64, "done");
            match fed {
                Err(e) if output.code == Some(0) || output.stderr.trim().is_empty() => {
                    Err(transport(&e))
                }
                _ => Ok(output),
            }
        }
        .instrument(span)
        .await
    }

    /// Run `cmd` (its stdin sent first), handing each line of its stdout to `on_line` as it
    /// comes; the output holds the last 40 lines of stdout, all of stderr, and the exit code.
    pub async fn run_streaming(
        &self,
        cmd: &RemoteCommand,
        mut on_line: impl FnMut(&str),
    ) -> Result<Output, Error> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let span = info_span!("remote", host = %self.spec, cmd = %cmd.label);
        async {
            let transport = |e: &dyn std::fmt::Display| self.transport_error(cmd, e);
            let (mut child, marker) = self.spawn(cmd, self.sudo, cmd.stdin.is_some()).await?;
            self.feed_stdin(cmd, &mut child).await?;
            let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
            let mut stderr = String::new();
            let (Some(stdout), Some(mut err)) = (child.stdout().take(), child.stderr().take())
            else {
                return Err(transport(&"no output to read"));
            };
            let read_out = async {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let mut framed = false;
                while let Some(line) = lines.next_line().await.map_err(|e| transport(&e))? {
                    // What the login shell printed before the command ran is not its output.
                    if !framed {
                        framed = line == marker;
                        continue;
                    }
                    on_line(&line);
                    tail.push_back(line);
                    if tail.len() > 40 {
                        tail.pop_front();
                    }
                }
                Ok::<_, Error>(())
            };
            let read_err = async {
                err.read_to_string(&mut stderr)
                    .await
                    .map_err(|e| transport(&e))
            };
            let (out, err) = tokio::join!(read_out, read_err);
            out?;
            err?;
            let stderr =
                String::from_utf8_lossy(crate::remote::unframe(stderr.as_bytes(), &marker))
                    .into_owned();
            let status = child.wait().await.map_err(|e| transport(&e))?;
            let stdout: Vec<u8> = tail
                .into_iter()
                .flat_map(|l| (l + "\n").into_bytes())
                .collect();
            Ok(Output {
                code: status.code(),
                stdout,
                stderr,
            })
        }
        .instrument(span)
        .await
    }

    /// Run `cmd` and hand each line of its stdout to `on_line` as it comes (for `logs
    /// --follow`); ends when the command does.
    pub async fn stream_lines(
        &self,
        cmd: &RemoteCommand,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), Error> {
        use tokio::io::AsyncBufReadExt;
        let transport = |e: &dyn std::fmt::Display| self.transport_error(cmd, e);
        let (mut child, marker) = self.spawn(cmd, self.sudo, false).await?;
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let read_out = async {
            if let Some(stdout) = stdout {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let mut framed = false;
                while let Some(line) = lines.next_line().await.map_err(|e| transport(&e))? {
                    if !framed {
                        framed = line == marker;
                        continue;
                    }
                    on_line(&line);
                }
            }
            Ok::<_, Error>(())
        };
        // Its stderr is drained (and dropped), so that it never blocks on a full pipe.
        let drain = async {
            if let Some(mut err) = stderr {
                let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
            }
        };
        let (out, ()) = tokio::join!(read_out, drain);
        out?;
        child.wait().await.map_err(|e| transport(&e))?;
        Ok(())
    }

    /// Run `cmd` and return its stdout; a non-zero exit becomes [`Error::Remote`].
    pub async fn check(&self, cmd: &RemoteCommand) -> Result<Vec<u8>, Error> {
        let out = self.run(cmd).await?;
        if out.code == Some(0) {
            Ok(out.stdout)
        } else {
            Err(self.failed(cmd, &out))
        }
    }

    /// The error for a connection that failed while `cmd` ran.
    fn transport_error(&self, cmd: &RemoteCommand, e: &dyn std::fmt::Display) -> Error {
        Error::Transport {
            host: self.spec.to_string(),
            command: cmd.to_string(),
            message: e.to_string(),
        }
    }

    /// The error for a command that exited non-zero.
    pub fn failed(&self, cmd: &RemoteCommand, out: &Output) -> Error {
        if self.sudo && out.stderr.starts_with("sudo: ") {
            return Error::Sudo {
                host: self.spec.to_string(),
                user: self.login.clone(),
                said: trim_stderr(&out.stderr),
            };
        }
        Error::Remote {
            host: self.spec.to_string(),
            command: cmd.to_string(),
            code: out.code,
            stderr: trim_stderr(&out.stderr),
        }
    }

    /// The system `ssh` running `cmd` through this master connection, its stdin, stdout and
    /// stderr those of shipit: with `tty` a terminal is allocated (`-t`: keys, Ctrl-C and the
    /// window size pass through), else none (`-T`). Its exit status is the command's (255:
    /// ssh's own failure). Without a terminal, its output is framed (see [`Host::stream_out`]),
    /// and the marker is returned.
    pub fn interactive(
        &self,
        cmd: &RemoteCommand,
        tty: bool,
    ) -> (tokio::process::Command, Option<String>) {
        let mut c = tokio::process::Command::new("ssh");
        c.arg("-S")
            .arg(self.session.control_socket())
            .args(["-o", "ControlMaster=no", "-o", "LogLevel=error"])
            .arg(if tty { "-t" } else { "-T" });
        if let Some(port) = self.spec.port {
            c.arg("-p").arg(port.to_string());
        }
        let marker = (!tty).then(crate::remote::marker);
        let line = match &marker {
            Some(m) => cmd.framed_line(self.sudo, m),
            None => cmd.command_line(self.sudo),
        };
        c.arg(match &self.spec.user {
            Some(user) => format!("{user}@{}", self.spec.host),
            None => self.spec.host.clone(),
        })
        .arg("--")
        .arg(line);
        (c, marker)
    }

    /// Run an [`Host::interactive`] command without a terminal: its stdin is shipit's, its
    /// stdout and stderr are copied to shipit's as they come, what the login shell printed
    /// before the marker left out. Its exit status.
    pub async fn stream_out(
        mut command: tokio::process::Command,
        marker: &str,
    ) -> std::io::Result<std::process::ExitStatus> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn()?;
        let copy = |from: Option<tokio::process::ChildStdout>| async move {
            let Some(from) = from else { return Ok(()) };
            pass(tokio::io::BufReader::new(from), tokio::io::stdout(), marker).await
        };
        let copy_err = |from: Option<tokio::process::ChildStderr>| async move {
            let Some(from) = from else { return Ok(()) };
            pass(tokio::io::BufReader::new(from), tokio::io::stderr(), marker).await
        };
        /// Lines up to the marker dropped, the rest copied as it comes.
        async fn pass(
            mut from: impl tokio::io::AsyncBufRead + Unpin,
            mut to: impl tokio::io::AsyncWrite + Unpin,
            marker: &str,
        ) -> std::io::Result<()> {
            // Held until the marker comes: without one (the command never ran: sudo refused,
            // say), all of it is what there is to say.
            let mut before = Vec::new();
            loop {
                let start = before.len();
                if from.read_until(b'\n', &mut before).await? == 0 {
                    to.write_all(&before).await?;
                    return to.flush().await;
                }
                if before[start..].strip_suffix(b"\n") == Some(marker.as_bytes()) {
                    break;
                }
            }
            tokio::io::copy_buf(&mut from, &mut to).await?;
            to.flush().await
        }
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let (a, b) = tokio::join!(copy(out), copy_err(err));
        a?;
        b?;
        child.wait().await
    }

    /// The master connection, for port forwards.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Close the master connection (a persistent one is left to expire on its own).
    pub async fn close(self) {
        if !self.persistent
            && let Err(e) = self.session.close().await
        {
            debug!(host = %self.spec, error = %e, "closing the master connection");
        }
        // The bastion's master, once no other host goes through it.
        if let Some(bastion) = self.via.and_then(std::sync::Arc::into_inner) {
            Box::pin(bastion.close()).await;
        }
    }

    /// The bastion this host's connection goes through.
    pub fn via(&self) -> Option<&std::sync::Arc<Host>> {
        self.via.as_ref()
    }
}

/// The jump host `spec`'s connection goes through: `ssh.bastion`, or else the single
/// `ProxyJump` ssh's configuration gives it (`ssh -G`). A chain of several is left to ssh.
pub fn jump_of(spec: &HostSpec, ssh: &Ssh) -> Option<HostSpec> {
    if let Some(bastion) = &ssh.bastion {
        return (bastion != spec).then(|| bastion.clone());
    }
    let mut c = std::process::Command::new("ssh");
    c.arg("-G");
    if let Some(file) = &ssh.config_file {
        c.arg("-F").arg(file);
    }
    if let Some(user) = &spec.user {
        c.arg("-l").arg(user);
    }
    if let Some(port) = spec.port {
        c.arg("-p").arg(port.to_string());
    }
    let out = c.arg("--").arg(&spec.host).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let jump = text
        .lines()
        .find_map(|l| l.strip_prefix("proxyjump "))?
        .trim();
    if jump.is_empty() || jump == "none" || jump.contains(',') {
        return None;
    }
    let jump = jump.strip_prefix("ssh://").unwrap_or(jump);
    crate::config::parse_host(jump).ok()
}

/// A configuration for ssh that sends `spec`'s connection over the bastion's master (a
/// `ProxyCommand` of `ssh -W` on its control socket, so that one authenticated connection to
/// the bastion carries them all), then reads the user's configuration as ssh would (its
/// `User`, `Port`, `HostName`, `IdentityFile`; its `ProxyJump` yields to this). Written in the
/// private directory.
fn jump_config(spec: &HostSpec, bastion: &Host, ssh: &Ssh) -> Result<PathBuf, String> {
    use std::fmt::Write as _;
    let dir = private_dir()?;
    let mut proxy = format!(
        "ssh -o ControlMaster=no -o BatchMode=yes -S {}",
        crate::remote::quote(&bastion.session.control_socket().to_string_lossy())
    );
    if let Some(user) = &bastion.spec.user {
        let _ = write!(proxy, " -l {}", crate::remote::quote(user));
    }
    if let Some(port) = bastion.spec.port {
        let _ = write!(proxy, " -p {port}");
    }
    let _ = write!(
        proxy,
        " -W %h:%p -- {}",
        crate::remote::quote(&bastion.spec.host)
    );
    let user_config = ssh
        .config_file
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh").join("config")));
    let mut text = format!("Host {}\n    ProxyCommand {proxy}\nMatch all\n", spec.host);
    if let Some(file) = user_config.filter(|f| f.is_file()) {
        let _ = writeln!(text, "    Include {}", file.display());
    }
    text.push_str("    Include /etc/ssh/ssh_config\n");
    let path = dir.join(format!(
        "jump-{}.conf",
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())[..8])
    ));
    std::fs::write(&path, text).map_err(|e| format!("writing `{}`: {e}", path.display()))?;
    Ok(path)
}

/// A connection that failed before ssh ran, as the user reads it.
fn connect_error_text(spec: &HostSpec, message: String) -> Error {
    Error::Connect {
        host: spec.to_string(),
        message,
        help: None,
    }
}

/// The master connection a recent run left at `link`, when the host still answers through it
/// within `timeout`: a master outlives a host that died or froze (its alive check is local),
/// so a command must come back. One that does not is closed and its link removed.
async fn resume_persisted(
    link: Option<&std::path::Path>,
    timeout: std::time::Duration,
) -> Option<Session> {
    let link = link?;
    let ctl = std::fs::read_link(link).ok()?;
    let session = Session::resume_mux(ctl.into_boxed_path(), None);
    if session.check().await.is_ok() {
        // Its output goes nowhere: a login shell's greeting is not shipit's output.
        let mut check = session.command("true");
        check
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let answered = tokio::time::timeout(timeout, check.status()).await;
        if matches!(answered, Ok(Ok(status)) if status.success()) {
            return Some(session);
        }
        debug!("the kept master connection no longer reaches its host: closing it");
        let _ = tokio::time::timeout(timeout, session.close()).await;
    }
    let _ = std::fs::remove_file(link);
    None
}

/// Where the master connection of `spec` with these settings is remembered, when masters
/// persist: `~/.cache/shipit/ssh/cm-HASH` (the directory is private to the user).
fn persisted_link(spec: &HostSpec, ssh: &Ssh, shard: usize) -> Option<std::path::PathBuf> {
    use sha2::Digest;
    if ssh.persist.is_zero() {
        return None;
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let dir = base.join("shipit").join("ssh");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).ok()?;
    }
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).ok()?;
    let key = format!(
        "{spec}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{shard}",
        ssh.identity, ssh.known_hosts, ssh.known_hosts_file, ssh.config_file, ssh.bastion
    );
    let hash = hex::encode(&sha2::Sha256::digest(key)[..8]);
    Some(dir.join(format!("cm-{hash}")))
}

/// This process's private directory (0700), made once: the forwarded sockets of the checks,
/// the generated ssh configuration of hosts behind a bastion. Removed at the end of the run.
pub fn private_dir() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let failed =
            |e: std::io::Error| format!("making a private directory in `{}`: {e}", base.display());
        let dir = tempfile::Builder::new()
            .prefix("shipit-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&base)
            .map(tempfile::TempDir::keep)
            .map_err(failed)?;
        // Whatever the umask or the crate made of it: its owner's alone.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(failed)?;
        Ok(dir)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// Before a run connects its hosts: remove what masters of earlier runs (kept by `ssh.persist`)
/// left behind once they expired.
pub fn sweep_persisted(first: &HostSpec, ssh: &Ssh) {
    if let Some(link) = persisted_link(first, ssh, 0) {
        sweep_expired_masters(link.parent().unwrap_or(&link));
    }
}

/// Remove what expired masters left in the control directory: the directories of masters
/// that no longer listen (older than a minute, so a master being started is never touched)
/// and links to them.
fn sweep_expired_masters(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("cm-") && !path.exists() {
            // A link whose master directory is gone.
            let _ = std::fs::remove_file(&path);
        } else if name.starts_with(".ssh-connection") && !path.join("master").exists() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(60));
            if old {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// The last 40 lines of stderr, enough to act on without flooding the terminal.
fn trim_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let skip = lines.len().saturating_sub(40);
    lines[skip..].join("\n")
}

fn connect_error(spec: &HostSpec, ssh: &Ssh, e: &openssh::Error) -> Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    let known_hosts = ssh.known_hosts_file.as_ref().map_or_else(
        || "~/.ssh/known_hosts".to_owned(),
        |p| p.display().to_string(),
    );
    let lower = message.to_lowercase();
    // What ssh's configuration decides when the spec leaves it out.
    let port = spec.port.map_or_else(
        || "its port (ssh_config's `Port`, else 22)".to_owned(),
        |p| format!("port {p}"),
    );
    let user = spec
        .user
        .clone()
        .unwrap_or_else(|| "the user ssh_config names (else yours)".to_owned());
    let help = if lower.contains("host key verification failed") || lower.contains("host key") {
        Some(format!(
            "the host key of `{}` is not in `{known_hosts}` or has changed; check it out of band, then add it with `ssh-keyscan -p {} {} >> {known_hosts}`, or set `ssh.known_hosts = \"accept-new\"` to trust a new host on first use",
            spec.host,
            spec.port.unwrap_or(22),
            spec.host
        ))
    } else if lower.contains("permission denied") {
        Some(format!(
            "`{user}` refused the key; check `ssh.identity` and that the public key is in ~{user}/.ssh/authorized_keys on the host",
        ))
    } else if lower.contains("refused")
        || lower.contains("timed out")
        || lower.contains("no route")
        || lower.contains("could not resolve")
    {
        Some(format!(
            "check that `{}` is up and sshd listens on {port}; in an incident, `deploy` and `rollback` go on without it with `--skip-unreachable`",
            spec.host
        ))
    } else {
        None
    };
    Error::Connect {
        host: spec.to_string(),
        message,
        help,
    }
}
