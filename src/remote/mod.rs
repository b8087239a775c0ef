//! Remote commands as data: a constant `sh` script plus positional arguments and stdin.
//!
//! Owns: building every command that runs on a host, its shell quoting and how it is shown in
//! messages. Must not: connect or run anything (that is `ssh`). Scripts are `&'static str`, so no
//! user value can ever become shell code: values reach the script only as `"$1"`, `"$2"`, ...,
//! each quoted by [`quote`], or on stdin.

pub mod scripts;

use std::borrow::Cow;
use std::fmt;

/// One command to run on a host.
#[derive(Clone)]
pub struct RemoteCommand {
    /// A short name for messages and traces, such as `stage /etc/nginx/conf.d/shipit-hello.conf`.
    pub label: String,
    pub script: &'static str,
    pub args: Vec<String>,
    /// Bytes sent on stdin. May hold secrets: never shown.
    pub stdin: Option<Vec<u8>>,
}

impl RemoteCommand {
    pub fn new(label: impl Into<String>, script: &'static str) -> RemoteCommand {
        RemoteCommand {
            label: label.into(),
            script,
            args: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> RemoteCommand {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> RemoteCommand {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> RemoteCommand {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line sent to the login shell, optionally under `sudo -n`: one line that
    /// every login shell (sh, dash, bash, zsh, tcsh, csh, fish) passes to `/bin/sh`
    /// unchanged, `/bin/sh -c 'eval "$(printf %s BASE64 | base64 -d)"'`. The base64 text is
    /// `set -- ARG...` (each word quoted) and the script: no newline, quote or `$` of the
    /// script or its arguments ever meets the login shell's own parser.
    pub fn command_line(&self, sudo: bool) -> String {
        self.line(sudo, None)
    }

    /// [`RemoteCommand::command_line`] whose script first prints `marker` on a line of its own
    /// to stdout and to stderr: what a login shell's rc files print before it runs (a
    /// `.bashrc` that greets) comes before the marker, and [`unframe`] leaves it out.
    pub fn framed_line(&self, sudo: bool, marker: &str) -> String {
        self.line(sudo, Some(marker))
    }

    fn line(&self, sudo: bool, marker: Option<&str>) -> String {
        use base64::Engine;
        let mut program = String::new();
        if let Some(m) = marker {
            program.push_str(&format!("printf '%s\\n' {m}; printf '%s\\n' {m} >&2\n"));
        }
        program.push_str("set --");
        for a in &self.args {
            program.push(' ');
            program.push_str(&quote(a));
        }
        program.push('\n');
        program.push_str(self.script);
        let encoded = base64::engine::general_purpose::STANDARD.encode(program);
        let inner = format!("eval \"$(printf %s {encoded} | base64 -d)\"");
        let mut words: Vec<&str> = Vec::with_capacity(6);
        if sudo {
            words.extend(["sudo", "-n", "--"]);
        }
        words.extend(["/bin/sh", "-c", &inner]);
        join(&words)
    }
}

/// What a framed command wrote after its marker (see [`RemoteCommand::framed_line`]); all of
/// it when the marker is not there (the command never ran: sudo refused, say).
pub fn unframe<'a>(bytes: &'a [u8], marker: &str) -> &'a [u8] {
    let needle = format!("{marker}\n");
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .filter(|&at| at == 0 || bytes[at - 1] == b'\n')
        .map_or(bytes, |at| &bytes[at + needle.len()..])
}

/// A fresh marker for one framed command: unguessable by what runs before it.
pub fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("shipit-{:016x}", h.finish())
}

impl fmt::Display for RemoteCommand {
    /// The label and the arguments, quoted; the script body and stdin are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)?;
        if !self.args.is_empty() {
            write!(
                f,
                " [{}]",
                join(&self.args.iter().map(String::as_str).collect::<Vec<_>>())
            )?;
        }
        Ok(())
    }
}

/// Quote one word for a POSIX shell so that it reaches the program unchanged.
pub fn quote(word: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(word))
}

/// Quote and join words into one command line.
pub fn join(words: &[&str]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings a user or a hostile config could supply.
    pub const HOSTILE: &[&str] = &[
        "",
        " ",
        "plain",
        "it's",
        "\"double\"",
        "$(touch /tmp/pwned)",
        "`id`",
        "a;b && c || d | e",
        "line\nbreak",
        "tab\there",
        "back\\slash\\",
        "*?[glob]",
        "~root",
        "-n",
        "--",
        "$HOME ${PATH} $1",
        "émoji 🚀 ünïcode",
        "'';'\"\\$`",
        "#comment",
        "a\rb",
    ];

    #[test]
    fn hostile_words_round_trip_through_a_real_shell() {
        // Each word goes out as an argument and must come back byte for byte.
        let cmd = RemoteCommand::new("echo", "for a; do printf '%s\\0' \"$a\"; done")
            .args(HOSTILE.iter().copied());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.command_line(false))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let words: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(words.len(), HOSTILE.len() + 1);
        for (got, want) in words.iter().zip(HOSTILE) {
            assert_eq!(*got, want.as_bytes());
        }
    }

    #[test]
    fn the_line_reaches_sh_unchanged_through_every_login_shell_here() {
        let cmd = RemoteCommand::new("echo", "for a; do printf '%s\\0' \"$a\"; done")
            .args(HOSTILE.iter().copied());
        let line = cmd.command_line(false);
        let mut tried = Vec::new();
        // sh, dash and bash are on every Debian machine; tcsh and fish where installed (the
        // testbed's hosts have users with each as their login shell).
        for shell in ["sh", "dash", "bash", "tcsh", "csh", "fish", "zsh"] {
            let Ok(out) = std::process::Command::new(shell)
                .arg("-c")
                .arg(&line)
                .output()
            else {
                assert!(!["sh", "dash", "bash"].contains(&shell), "{shell} runs");
                continue;
            };
            tried.push(shell);
            assert!(out.status.success(), "{shell}: {out:?}");
            let words: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
            assert_eq!(words.len(), HOSTILE.len() + 1, "{shell}");
            for (got, want) in words.iter().zip(HOSTILE) {
                assert_eq!(*got, want.as_bytes(), "{shell}");
            }
        }
        eprintln!("the command line reached sh unchanged through {tried:?}");
    }

    #[test]
    fn sudo_wraps_the_whole_command_in_one_line_any_shell_reads() {
        let line = RemoteCommand::new("x", "true\nexit 0")
            .arg("a b")
            .command_line(true);
        assert!(
            line.starts_with("sudo -n -- /bin/sh -c 'eval \"$(printf %s "),
            "{line}"
        );
        assert!(line.ends_with(" | base64 -d)\"'"), "{line}");
        assert!(!line.contains('\n') && !line.contains('!') && !line.contains('\\'));
    }

    #[test]
    fn a_framed_command_s_output_starts_after_its_marker() {
        let cmd = RemoteCommand::new("x", "printf 'out\\n'; printf 'err\\n' >&2");
        let marker = marker();
        assert_ne!(marker, super::marker());
        // A login shell whose rc file greets on both streams before the command runs.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo Welcome; echo Hi >&2; {}",
                cmd.framed_line(false, &marker)
            ))
            .output()
            .unwrap();
        assert_eq!(unframe(&out.stdout, &marker), b"out\n");
        assert_eq!(unframe(&out.stderr, &marker), b"err\n");
        assert_eq!(
            unframe(b"sudo: a password is required\n", &marker),
            b"sudo: a password is required\n"
        );
    }

    #[test]
    fn display_shows_label_and_quoted_args_not_stdin() {
        let cmd = RemoteCommand::new("login", "cat")
            .arg("it's")
            .stdin("hunter2");
        assert_eq!(cmd.to_string(), "login ['it'\\''s']");
        assert!(!cmd.to_string().contains("hunter2"));
    }
}
