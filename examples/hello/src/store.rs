//! [`Store`]: the app's "database", a directory of files that every container of the app
//! shares (`HELLO_DATA`, default `/data`: a host directory that shipit bind-mounts). It owns
//! the layout (`schema`, `queue/`, `done/`, the `*.log` files, `backups/`) and the two ways
//! hello writes: a whole file atomically ([`write_atomic`]) and one log line at a time
//! ([`append_line`]). It does not decide what to write: the subcommands do.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::failure::Failure;

/// Where backups may be kept inside the store; backups and restores leave it alone.
pub const BACKUPS: &str = "backups";
pub const QUEUE: &str = "queue";
pub const DONE: &str = "done";

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`, which must exist: a missing mount should fail loudly, not start an
    /// empty store inside the container.
    pub fn open(dir: PathBuf) -> Result<Store, Failure> {
        if dir.is_dir() {
            Ok(Store { dir })
        } else {
            Err(Failure::NoStore(dir))
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rel`, a `/`-separated path relative to the store.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The schema version: the content of `schema`; 0 when there is none.
    pub fn schema(&self) -> Result<u32, Failure> {
        let path = self.path("schema");
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| Failure::Corrupt {
                path,
                problem: format!(
                    "holds {text:?}, not a schema version: write the right number into it"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Failure::io("read", path)(e)),
        }
    }

    /// Every regular file in the store, at any depth, as sorted `/`-separated relative paths.
    /// Symbolic links are neither listed nor followed.
    pub fn files(&self) -> Result<Vec<String>, Failure> {
        let mut files = Vec::new();
        walk(&self.dir, "", &mut files)?;
        files.sort();
        Ok(files)
    }

    /// The names of the regular files directly in `sub` (`queue` or `done`), sorted; none if
    /// `sub` does not exist. Hidden names are left out: a producer writes `.name` and renames it.
    pub fn entries(&self, sub: &str) -> Result<Vec<String>, Failure> {
        let dir = self.path(sub);
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Failure::io("list", dir)(e)),
        };
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(Failure::io("list", &dir))?;
            let is_file = entry
                .file_type()
                .map_err(Failure::io("inspect", entry.path()))?
                .is_file();
            let name = utf8_name(&entry)?;
            if is_file && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// `{"schema": n, "files": [...], "queue": n, "done": n}`: what `hello store` prints and
    /// `GET /store` answers.
    pub fn summary(&self) -> Result<Value, Failure> {
        Ok(json!({
            "schema": self.schema()?,
            "files": self.files()?,
            "queue": self.entries(QUEUE)?.len(),
            "done": self.entries(DONE)?.len(),
        }))
    }
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<String>) -> Result<(), Failure> {
    for entry in fs::read_dir(dir).map_err(Failure::io("list", dir))? {
        let entry = entry.map_err(Failure::io("list", dir))?;
        let kind = entry
            .file_type()
            .map_err(Failure::io("inspect", entry.path()))?;
        let rel = format!("{prefix}{}", utf8_name(&entry)?);
        if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), files)?;
        } else if kind.is_file() {
            files.push(rel);
        }
    }
    Ok(())
}

fn utf8_name(entry: &fs::DirEntry) -> Result<String, Failure> {
    entry
        .file_name()
        .into_string()
        .map_err(|_| Failure::Corrupt {
            path: entry.path(),
            problem: "the name is not UTF-8, which hello cannot list or back up: rename it".into(),
        })
}

/// Replaces `path` with `bytes` all at once: written to a temporary file beside it, flushed to
/// disk, then renamed over it, so that a reader (or a crash) sees the old content or the new,
/// never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(Failure::io("write", &temp))
        .and_then(|()| fs::rename(&temp, path).map_err(Failure::io("rename into place", path)));
    if written.is_err() {
        // Best effort: the error being returned matters more than the leftover.
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Appends `line` and a newline to `path` (created if need be) in one write: lines that
/// several processes append to the same log do not interleave.
pub fn append_line(path: &Path, line: &str) -> Result<(), Failure> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
        .map_err(Failure::io("append to", path))
}

/// Seconds since the epoch, for log lines (0 if the clock is before 1970).
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh, empty store under the system's temporary directory, removed on drop.
#[cfg(test)]
pub struct TempStore(pub Store);

#[cfg(test)]
impl TempStore {
    pub fn new(name: &str) -> TempStore {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hello-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempStore(Store::open(dir).unwrap())
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.0.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.0.path(rel)).unwrap()
    }
}

#[cfg(test)]
impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.dir());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_files_and_counts_queues() {
        let t = TempStore::new("summary");
        let empty = t.0.summary().unwrap();
        assert_eq!(
            empty,
            json!({"schema": 0, "files": [], "queue": 0, "done": 0})
        );
        t.write("schema", "2\n");
        t.write("queue/b", "");
        t.write("queue/.incoming", "");
        t.write("done/a", "");
        fs::create_dir_all(t.0.path("empty")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", t.0.path("link")).unwrap();
        assert_eq!(
            t.0.summary().unwrap(),
            json!({"schema": 2, "files": ["done/a", "queue/.incoming", "queue/b", "schema"], "queue": 1, "done": 1})
        );
        t.write("schema", "two");
        let e = t.0.schema().unwrap_err().to_string();
        assert!(
            e.contains("schema`: holds \"two\", not a schema version"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_store_says_to_mount_it() {
        let e = Store::open("/nonexistent/hello-data".into()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("`/nonexistent/hello-data` is not a directory: mount it")
        );
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temp_file() {
        let t = TempStore::new("atomic");
        write_atomic(&t.0.path("f"), b"one").unwrap();
        write_atomic(&t.0.path("f"), b"two").unwrap();
        assert_eq!(t.read("f"), "two");
        assert_eq!(t.0.files().unwrap(), ["f"]);
        let e = write_atomic(&t.0.path("no/such/f"), b"x")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot write `") && e.contains("no/such/.f.tmp-"),
            "{e}"
        );
    }
}
