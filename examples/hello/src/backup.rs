//! `hello backup` and `hello restore`: the store to and from one file, `SHIPIT_BACKUP_FILE`.
//!
//! The format is JSON lines, readable with `head` and `jq`: a header, then one line per
//! regular file of the store, its content in hex (which round-trips any bytes):
//!
//! ```text
//! {"format":"hello-backup","version":1,"files":2,"bytes":4}
//! {"path":"queue/a","hex":"4142"}
//! {"path":"schema","hex":"310a"}
//! ```
//!
//! Both leave alone `backups/` and the backup file itself, should either lie in the store.
//! Both write atomically (temp file beside, rename). Neither is a snapshot of a store that a
//! worker is changing meanwhile: stop the workers for an exact copy.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::env::Env;
use crate::failure::Failure;
use crate::store::{self, BACKUPS, Store};

/// `SHIPIT_BACKUP_FILE`, which both subcommands need.
pub fn backup_file(env: &Env) -> Result<PathBuf, Failure> {
    let name = env.get("SHIPIT_BACKUP_FILE").ok_or_else(|| {
        Failure::Usage("SHIPIT_BACKUP_FILE is not set: set it to the backup's file name".into())
    })?;
    let file = PathBuf::from(&name);
    if name.ends_with('/') || file.file_name().is_none() || file.is_dir() {
        return Err(Failure::Usage(format!(
            "SHIPIT_BACKUP_FILE={name}: expected a file name, not a directory"
        )));
    }
    Ok(file)
}

/// Writes a backup of `store` to `file` (and its directory, if need be); returns what to
/// print. `fail` (`HELLO_BACKUP_FAIL=1`) fails before writing anything.
pub fn backup(store: &Store, file: &Path, fail: bool) -> Result<String, Failure> {
    if fail {
        return Err(Failure::Asked(
            "failing before writing anything, as HELLO_BACKUP_FAIL=1 asks".into(),
        ));
    }
    let dir = parent(file);
    fs::create_dir_all(dir).map_err(Failure::io("create", dir))?;
    let itself = relative_in(store, file)?;
    let mut lines = Vec::new();
    let mut bytes = 0;
    for rel in store.files()? {
        if !backed_up(&rel, itself.as_deref()) {
            continue;
        }
        let content = match fs::read(store.path(&rel)) {
            Ok(content) => content,
            // Moved or removed since it was listed (a worker at work): not in this backup.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::io("read", store.path(&rel))(e)),
        };
        bytes += content.len();
        lines.push(format!(
            r#"{{"path":{},"hex":"{}"}}"#,
            Value::from(rel),
            hex(&content)
        ));
    }
    let files = lines.len();
    let header =
        format!(r#"{{"format":"hello-backup","version":1,"files":{files},"bytes":{bytes}}}"#);
    let text = std::iter::once(header)
        .chain(lines)
        .map(|l| l + "\n")
        .collect::<String>();
    store::write_atomic(file, text.as_bytes())?;
    Ok(format!(
        "backed up {files} files ({bytes} bytes) to {}",
        file.display()
    ))
}

/// Makes `store` hold exactly what `file` holds: the files the backup does not have are
/// removed (first, so that a file may give way to a directory), then each file is written
/// beside and renamed into place, unless unchanged. Nothing is touched unless the whole
/// backup reads back correctly; if interrupted, running it again finishes the job. Returns
/// what to print.
pub fn restore(store: &Store, file: &Path) -> Result<String, Failure> {
    let text = fs::read_to_string(file).map_err(Failure::io("read", file))?;
    let files = decode(&text).map_err(|problem| Failure::Corrupt {
        path: file.to_owned(),
        problem: format!("{problem}: not a complete hello backup, so nothing was restored"),
    })?;
    let itself = relative_in(store, file)?;
    let wanted: HashSet<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
    for rel in store.files()? {
        if backed_up(&rel, itself.as_deref()) && !wanted.contains(rel.as_str()) {
            fs::remove_file(store.path(&rel)).map_err(Failure::io("remove", store.path(&rel)))?;
        }
    }
    for (rel, content) in &files {
        let path = store.path(rel);
        if fs::read(&path).is_ok_and(|old| old == *content) {
            continue;
        }
        let dir = parent(&path);
        fs::create_dir_all(dir).map_err(Failure::io("create", dir))?;
        store::write_atomic(&path, content)?;
    }
    Ok(format!("restored {} files", files.len()))
}

/// Whether a backup holds the store's file `rel`: not in `backups/`, not the backup itself.
fn backed_up(rel: &str, itself: Option<&str>) -> bool {
    !rel.starts_with(&format!("{BACKUPS}/")) && Some(rel) != itself
}

/// `file`'s path relative to the store, if it lies in it. Its directory must exist.
fn relative_in(store: &Store, file: &Path) -> Result<Option<String>, Failure> {
    let resolve = |p: &Path| fs::canonicalize(p).map_err(Failure::io("resolve", p));
    let (dir, store_dir) = (resolve(parent(file))?, resolve(store.dir())?);
    let Some(name) = file.file_name() else {
        return Ok(None);
    };
    let rel = dir.join(name);
    Ok(rel
        .strip_prefix(&store_dir)
        .ok()
        .and_then(Path::to_str)
        .map(str::to_owned))
}

fn parent(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The files of a backup's text, checked whole: header, count, sizes and every path.
fn decode(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut lines = text.lines().zip(1..);
    let header: Value = lines
        .next()
        .and_then(|(line, _)| serde_json::from_str(line).ok())
        .unwrap_or_default();
    let (Some(files), Some(bytes)) = (header["files"].as_u64(), header["bytes"].as_u64()) else {
        return Err("line 1 is no backup header".into());
    };
    if header["format"] != "hello-backup" || header["version"] != 1 {
        return Err(format!(
            "line 1: expected format hello-backup version 1, found {header}"
        ));
    }
    let mut decoded = Vec::new();
    let mut paths = HashSet::new();
    for (line, n) in lines {
        let entry: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let path = entry["path"]
            .as_str()
            .ok_or(format!("line {n}: no \"path\""))?;
        check_path(path).map_err(|problem| format!("line {n}: {problem}"))?;
        let content = entry["hex"]
            .as_str()
            .and_then(unhex)
            .ok_or(format!("line {n}: no hex content"))?;
        if !paths.insert(path.to_owned()) {
            return Err(format!("line {n}: {path:?} a second time"));
        }
        decoded.push((path.to_owned(), content));
    }
    let found = decoded.iter().map(|(_, c)| c.len() as u64).sum::<u64>();
    if (decoded.len() as u64, found) != (files, bytes) {
        return Err(format!(
            "holds {} files ({found} bytes) where its header says {files} ({bytes})",
            decoded.len()
        ));
    }
    Ok(decoded)
}

/// A path restore may write: relative, inside the store, outside `backups/`.
fn check_path(path: &str) -> Result<(), String> {
    let inside = !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if !inside {
        Err(format!("{path:?} is not a path inside the store"))
    } else if !backed_up(path, None) {
        Err(format!(
            "{path:?} lies in {BACKUPS}/, which backups leave out"
        ))
    } else {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Both indexes are below 16.
        text.push(DIGITS[usize::from(b >> 4)].into());
        text.push(DIGITS[usize::from(b & 0xf)].into());
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let pairs = text.as_bytes().chunks(2);
    pairs
        .map(|p| Some(digit(*p.first()?)? << 4 | digit(*p.get(1)?)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TempStore;
    use std::collections::BTreeMap;

    /// Every file of the store but its backups, with content.
    fn content(t: &TempStore) -> BTreeMap<String, Vec<u8>> {
        let files =
            t.0.files()
                .unwrap()
                .into_iter()
                .filter(|f| !f.starts_with("backups/"));
        files
            .map(|f| (f.clone(), fs::read(t.0.path(&f)).unwrap()))
            .collect()
    }

    #[test]
    fn backup_then_changes_then_restore_gives_the_same_store() {
        let t = TempStore::new("roundtrip");
        t.write("schema", "2\n");
        t.write("queue/a job", "{\"quoted\": \"$x; y\"}\n");
        t.write("done/dir/deep/b", "");
        t.write("backups/older.backup", "left alone");
        fs::write(t.0.path("done/all-bytes"), (0..=255).collect::<Vec<u8>>()).unwrap();
        let before = content(&t);
        let file = t.0.path("backups/before-2.1.0.backup");
        assert_eq!(
            backup(&t.0, &file, false).unwrap(),
            format!("backed up 4 files (278 bytes) to {}", file.display())
        );

        t.write("schema", "3\n");
        t.write("queue/new", "new");
        fs::remove_file(t.0.path("done/all-bytes")).unwrap();
        t.write("other/x", "x");
        fs::remove_dir_all(t.0.path("done/dir")).unwrap();
        t.write("done/dir", "a file where the backup has a directory");
        assert_eq!(restore(&t.0, &file).unwrap(), "restored 4 files");
        assert_eq!(content(&t), before);
        assert_eq!(t.read("backups/older.backup"), "left alone");
        assert_eq!(
            restore(&t.0, &file).unwrap(),
            "restored 4 files",
            "again: nothing to do"
        );
        assert_eq!(content(&t), before);
    }

    #[test]
    fn a_backup_in_the_store_leaves_itself_out() {
        let t = TempStore::new("itself");
        t.write("schema", "1\n");
        let file = t.0.path("pre-deploy.backup");
        backup(&t.0, &file, false).unwrap();
        assert_eq!(
            backup(&t.0, &file, false).unwrap(),
            format!("backed up 1 files (2 bytes) to {}", file.display())
        );
        t.write("schema", "5\n");
        assert_eq!(restore(&t.0, &file).unwrap(), "restored 1 files");
        assert_eq!(t.0.files().unwrap(), ["pre-deploy.backup", "schema"]);
        assert_eq!(t.read("schema"), "1\n");
    }

    #[test]
    fn the_fail_flag_writes_nothing() {
        let t = TempStore::new("backup-fail");
        t.write("schema", "1\n");
        let e = backup(&t.0, &t.0.path("backups/x"), true).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(t.0.files().unwrap(), ["schema"]);
        assert!(!t.0.path("backups").exists());
    }

    #[test]
    fn the_backup_file_is_required() {
        let e = backup_file(&Env::from_pairs(&[])).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (
                2,
                "SHIPIT_BACKUP_FILE is not set: set it to the backup's file name"
            )
        );
        assert_eq!(
            backup_file(&Env::from_pairs(&[("SHIPIT_BACKUP_FILE", "/tmp/")]))
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn a_bad_backup_restores_nothing() {
        let t = TempStore::new("hostile");
        t.write("schema", "1\n");
        let header = |files, bytes| {
            format!(
                "{{\"format\":\"hello-backup\",\"version\":1,\"files\":{files},\"bytes\":{bytes}}}\n"
            )
        };
        let cases = [
            (String::new(), "line 1 is no backup header"),
            (
                header(1, 1) + "{\"path\":\"../escaped\",\"hex\":\"41\"}\n",
                "line 2: \"../escaped\" is not a path inside the store",
            ),
            (
                header(1, 1) + "{\"path\":\"/etc/x\",\"hex\":\"41\"}\n",
                "line 2: \"/etc/x\" is not a path inside the store",
            ),
            (
                header(1, 1) + "{\"path\":\"backups/x\",\"hex\":\"41\"}\n",
                "line 2: \"backups/x\" lies in backups/",
            ),
            (
                header(1, 1) + "{\"path\":\"a\",\"hex\":\"4\"}\n",
                "line 2: no hex content",
            ),
            (
                header(2, 2) + "{\"path\":\"a\",\"hex\":\"41\"}\n",
                "holds 1 files (1 bytes) where its header says 2 (2)",
            ),
            (
                header(2, 2) + "{\"path\":\"a\",\"hex\":\"41\"}\n{\"path\":\"a\",\"hex\":\"41\"}\n",
                "line 3: \"a\" a second time",
            ),
        ];
        let file =
            std::env::temp_dir().join(format!("hello-hostile-{}.backup", std::process::id()));
        for (text, problem) in cases {
            fs::write(&file, &text).unwrap();
            let e = restore(&t.0, &file).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            assert!(e.to_string().contains(problem), "{text:?}: {e}");
            assert_eq!(t.0.files().unwrap(), ["schema"], "{text:?}");
        }
        fs::remove_file(file).unwrap();
    }

    #[test]
    fn hex_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)).unwrap(), all);
        assert_eq!(hex(b"\x00\xffA"), "00ff41");
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
