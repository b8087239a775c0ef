//! What the user reads: status lines on stderr (like cargo's), results on stdout.
//!
//! Logs (tracing) are separate and go to stderr only with `-v`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// `    Verb message`, the verb right-aligned and green on a terminal.
pub fn status(verb: &str, message: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = if std::io::stderr().is_terminal() {
        writeln!(err, "\x1b[1;32m{verb:>12}\x1b[0m {message}")
    } else {
        writeln!(err, "{verb:>12} {message}")
    };
}

/// A result on stdout.
pub fn out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

/// A warning line on stderr (even with `-q`: it says something was done on the user's behalf).
pub fn warn(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if std::io::stderr().is_terminal() {
        writeln!(err, "\x1b[1;33mwarning\x1b[0m: {message}")
    } else {
        writeln!(err, "warning: {message}")
    };
}
