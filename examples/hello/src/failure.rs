//! [`Failure`]: every way a subcommand fails, with its exit code. All of hello's error wording
//! lives here; the modules only say what happened, with data.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or environment (exit 2): the message names the argument or variable.
    Usage(String),
    /// The store directory is missing (exit 2): a mount or `HELLO_DATA` is wrong.
    NoStore(PathBuf),
    /// A file-system call failed (exit 1); `doing` reads "cannot {doing} `{path}`".
    Io {
        doing: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// A file holds what hello never writes (exit 1).
    Corrupt { path: PathBuf, problem: String },
    /// The failure was asked for: a `HELLO_*_FAIL` flag or `job fail` (exit 1).
    Asked(String),
    /// `migrate` to a version below the store's (exit 3): nothing was changed.
    Downgrade { current: u32, target: u32 },
    /// A stop signal arrived before anything was changed (exit 128 + its number).
    Interrupted { signal: &'static str, number: u8 },
    /// The async runtime did not start (exit 1).
    Runtime(io::Error),
    /// `worker --check` found the worker could not work (exit 1, whatever the cause).
    NotReady(Box<Failure>),
    /// `serve` could not listen (exit 1).
    Listen { addr: SocketAddr, error: io::Error },
    /// `serve` failed while serving (exit 1).
    Serve(io::Error),
}

impl Failure {
    /// For `map_err`: an I/O error while doing `doing` to `path`.
    pub fn io(doing: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Failure {
        let path = path.into();
        move |error| Failure::Io { doing, path, error }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::NoStore(_) => 2,
            Failure::Downgrade { .. } => 3,
            Failure::Interrupted { number, .. } => 128 + number,
            Failure::Io { .. }
            | Failure::Corrupt { .. }
            | Failure::Asked(_)
            | Failure::Runtime(_)
            | Failure::NotReady(_)
            | Failure::Listen { .. }
            | Failure::Serve(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Asked(message) => f.write_str(message),
            Failure::NoStore(dir) => write!(
                f,
                "the store `{}` is not a directory: mount it into the container \
                 (shipit: `[container] volumes = [\"/var/lib/hello-data:/data\"]`) or set HELLO_DATA",
                dir.display()
            ),
            Failure::Io { doing, path, error } => {
                write!(f, "cannot {doing} `{}`: {error}", path.display())?;
                if error.kind() == io::ErrorKind::PermissionDenied {
                    // The image's USER: the host directory behind /data must let it write.
                    f.write_str(
                        ": let the user hello runs as (65534 in the image) read and write it",
                    )?;
                }
                Ok(())
            }
            Failure::Corrupt { path, problem } => write!(f, "`{}`: {problem}", path.display()),
            Failure::Downgrade { current, target } => write!(
                f,
                "refusing to migrate down from schema {current} to {target}: migrations are \
                 forward only; deploy a release with HELLO_SCHEMA >= {current}, or restore a \
                 backup taken at schema {target}"
            ),
            Failure::Interrupted { signal, .. } => {
                write!(f, "interrupted by {signal}: nothing changed")
            }
            Failure::Runtime(error) => write!(f, "cannot start the async runtime: {error}"),
            Failure::NotReady(cause) => write!(f, "not ready: {cause}"),
            Failure::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            Failure::Serve(error) => write!(f, "serving: {error}"),
        }
    }
}
