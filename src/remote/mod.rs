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

    /// The command line sent to the remote shell: `sh -c SCRIPT sh ARG...`, every word
    /// quoted, optionally under `sudo -n`.
    pub fn command_line(&self, sudo: bool) -> String {
        let mut words: Vec<&str> = Vec::with_capacity(self.args.len() + 6);
        if sudo {
            words.extend(["sudo", "-n", "--"]);
        }
        words.extend(["sh", "-c", self.script, "sh"]);
        words.extend(self.args.iter().map(String::as_str));
        join(&words)
    }
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
    fn sudo_wraps_the_whole_command() {
        let line = RemoteCommand::new("x", "true")
            .arg("a b")
            .command_line(true);
        assert_eq!(line, "sudo -n -- sh -c true sh 'a b'");
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
