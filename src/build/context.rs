//! The build context: the app's files, filtered by `.dockerignore`, as a deterministic tar that
//! is streamed to the engine, never held in memory whole.
//!
//! Deterministic (sorted entries, zero times and owners) so that an unchanged context gives
//! the same bytes, the same hash and the engine's cache hits. shipit's own secret sources (the
//! `.env` beside `shipit.toml`) are left out of every context, whatever `.dockerignore` says.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::ignore::DockerIgnore;
use crate::error::Error;

/// What a context holds: its entries, scanned once; the tar is written from them on demand.
#[derive(Clone)]
pub struct Context {
    dir: PathBuf,
    entries: Vec<(String, PathBuf)>,
    pub files: usize,
    /// The size of its files, in bytes.
    pub bytes: u64,
    /// shipit's secret files that were in the context and left out of it (relative paths).
    pub secrets_left_out: Vec<String>,
}

/// The bytes of one chunk sent to the engine; a few are in flight at once.
const CHUNK: usize = 256 * 1024;

/// Scan `dir`, leaving out what `.dockerignore` excludes and every file of `secret_files`
/// (absolute paths); `dockerfile` (relative to `dir`) and `.dockerignore` are always sent, as
/// Docker's own client does.
pub fn scan(dir: &Path, dockerfile: &str, secret_files: &[PathBuf]) -> Result<Context, Error> {
    let ignore_path = dir.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text).map_err(|(line, message)| Error::DockerIgnore {
            path: ignore_path.clone(),
            line,
            message,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(source) => {
            return Err(Error::Read {
                path: ignore_path,
                source,
            });
        }
    };
    let mut entries = Vec::new();
    walk(dir, "", &ignore, &mut entries)?;
    for always in [dockerfile, ".dockerignore"] {
        if !entries.iter().any(|(rel, _)| rel == always) && dir.join(always).is_file() {
            entries.push((always.to_owned(), dir.join(always)));
        }
    }
    // The secrets, by the file they are: a link or another spelling of the path is caught too.
    let secret_ids: Vec<(u64, u64)> = secret_files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| file_id(&m))
        .collect();
    let mut secrets_left_out = Vec::new();
    entries.retain(|(rel, path)| {
        let secret = std::fs::metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .is_some_and(|m| secret_ids.contains(&file_id(&m)));
        if secret {
            secrets_left_out.push(rel.clone());
        }
        !secret
    });
    entries.sort();
    secrets_left_out.sort();
    let mut files = 0;
    let mut bytes = 0;
    for (_, path) in &entries {
        if let Ok(m) = std::fs::symlink_metadata(path)
            && m.is_file()
        {
            files += 1;
            bytes += m.len();
        }
    }
    Ok(Context {
        dir: dir.to_path_buf(),
        entries,
        files,
        bytes,
        secrets_left_out,
    })
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Context {
    /// The paths of what the context holds, relative to its directory.
    pub fn relative_paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(rel, _)| rel.as_str())
    }

    /// Write the tar to `out`.
    pub fn write_tar(&self, out: impl Write) -> Result<(), Error> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        // A file with holes (a linker's output often has one) as GNU sparse entries: Docker's
        // engine refuses those ("unhandled tar header type 83"). Plain entries, holes as zeros.
        builder.sparse(false);
        for (rel, path) in &self.entries {
            builder
                .append_path_with_name(path, rel)
                .map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
        }
        builder.finish().map_err(|source| Error::Read {
            path: self.dir.clone(),
            source,
        })
    }

    /// Hex sha256 of the named files' paths and contents (a link's target), in the context's
    /// order: the same files give the same hash wherever and whenever they were made.
    pub fn sha256_of<'a>(&self, rels: impl Iterator<Item = &'a str>) -> Result<String, Error> {
        let wanted: std::collections::HashSet<&str> = rels.collect();
        let mut hash = Sha256::new();
        for (rel, path) in self
            .entries
            .iter()
            .filter(|(r, _)| wanted.contains(r.as_str()))
        {
            let read = |source| Error::Read {
                path: path.clone(),
                source,
            };
            hash.update(rel.as_bytes());
            hash.update([0]);
            let meta = std::fs::symlink_metadata(path).map_err(read)?;
            if meta.is_symlink() {
                let target = std::fs::read_link(path).map_err(read)?;
                hash.update(target.as_os_str().as_encoded_bytes());
            } else if meta.is_file() {
                let mut file = std::fs::File::open(path).map_err(read)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf).map_err(read)?;
                    if n == 0 {
                        break;
                    }
                    hash.update(&buf[..n]);
                }
            }
            hash.update([0]);
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// Hex sha256 of the tar (written through the hash, never held): a tag naming a dirty
    /// tree's content.
    pub fn sha256(&self) -> Result<String, Error> {
        struct Hashing(Sha256);
        impl Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut hashing = Hashing(Sha256::new());
        self.write_tar(&mut hashing)?;
        Ok(hex::encode(hashing.0.finalize()))
    }

    /// The tar as a stream of chunks, written by a blocking task a few chunks ahead of the
    /// engine: memory stays a few chunks, whatever the context's size. A file that cannot be
    /// read ends the stream with its error.
    pub fn stream(self) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::task::spawn_blocking(move || {
            let mut writer = Chunks {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let written = self.write_tar(&mut writer).and_then(|()| {
                writer.send().map_err(|source| Error::Read {
                    path: self.dir.clone(),
                    source,
                })
            });
            if let Err(e) = written {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }
}

/// A writer that sends full chunks down a bounded channel (blocking while it is full).
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(Bytes::from(chunk))).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn walk(
    dir: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), Error> {
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let read = std::fs::read_dir(&here).map_err(|source| Error::Read {
        path: here.clone(),
        source,
    })?;
    for entry in read {
        let entry = entry.map_err(|source| Error::Read {
            path: here.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(Error::Read {
                path: entry.path(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "file name is not UTF-8",
                ),
            });
        };
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = entry.file_type().map_err(|source| Error::Read {
            path: entry.path(),
            source,
        })?;
        let excluded = ignore.is_excluded(&child);
        if file_type.is_dir() {
            // An excluded directory is walked only when a `!` pattern may bring back a part.
            if excluded && !ignore.has_exclusions() {
                continue;
            }
            if !excluded {
                out.push((child.clone(), entry.path()));
            }
            walk(dir, &child, ignore, out)?;
        } else if !excluded {
            out.push((child, entry.path()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_holes_is_a_plain_entry_docker_can_read() {
        use std::io::{Read, Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        // 1 MiB with a hole in the middle (as a linker leaves one), data at both ends.
        let mut f = std::fs::File::create(dir.path().join("app")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let ctx = scan(dir.path(), "Dockerfile", &[]).unwrap();
        let mut tar = Vec::new();
        ctx.write_tar(&mut tar).unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            assert_ne!(e.header().entry_type(), tar::EntryType::GNUSparse);
            if e.path().unwrap().to_str() == Some("app") {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                assert_eq!(data.len(), (1 << 20) + 4);
                assert_eq!(&data[..4], b"head");
                assert_eq!(&data[data.len() - 4..], b"tail");
                assert!(data[4..1 << 20].iter().all(|b| *b == 0));
            }
        }
    }

    fn names(ctx: &Context) -> Vec<String> {
        let mut tar = Vec::new();
        ctx.write_tar(&mut tar).unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn honours_dockerignore_and_always_sends_the_dockerfile() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in [
            "Dockerfile.production",
            "app/hello",
            "target/x/big",
            "target/keep/k",
            "notes.md",
            "src/main.rs",
            "docs/a.md",
        ] {
            std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            std::fs::write(p.join(f), f).unwrap();
        }
        std::fs::write(
            p.join(".dockerignore"),
            "target\n!target/keep\n*.md\nsrc/\nDockerfile.production\n",
        )
        .unwrap();
        let ctx = scan(p, "Dockerfile.production", &[]).unwrap();
        assert_eq!(
            names(&ctx),
            [
                ".dockerignore",
                "Dockerfile.production",
                "app",
                "app/hello",
                "docs",
                "docs/a.md",
                "target/keep",
                "target/keep/k"
            ]
        );
        // The same files give the same bytes.
        let sha = ctx.sha256().unwrap();
        assert_eq!(
            scan(p, "Dockerfile.production", &[])
                .unwrap()
                .sha256()
                .unwrap(),
            sha
        );
        std::fs::write(p.join("app/hello"), "changed").unwrap();
        assert_ne!(
            scan(p, "Dockerfile.production", &[])
                .unwrap()
                .sha256()
                .unwrap(),
            sha
        );
    }

    #[test]
    fn shipits_secrets_never_go_into_a_context_whatever_dockerignore_says() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join(".env"), "API_TOKEN=secret\n").unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::os::unix::fs::symlink(p.join(".env"), p.join("sub/linked.env")).unwrap();
        std::fs::hard_link(p.join(".env"), p.join("sub/hard.env")).unwrap();
        // `.dockerignore` even re-includes it.
        std::fs::write(p.join(".dockerignore"), "!.env\n").unwrap();
        let ctx = scan(p, "Dockerfile", &[p.join(".env")]).unwrap();
        assert_eq!(names(&ctx), [".dockerignore", "Dockerfile", "sub"]);
        assert_eq!(
            ctx.secrets_left_out,
            [".env", "sub/hard.env", "sub/linked.env"]
        );
    }

    #[tokio::test]
    async fn the_stream_is_the_tar() {
        use futures::StreamExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join("big"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        let ctx = scan(p, "Dockerfile", &[]).unwrap();
        let mut whole = Vec::new();
        ctx.write_tar(&mut whole).unwrap();
        let chunks: Vec<Bytes> = ctx.stream().map(|c| c.unwrap()).collect::<Vec<_>>().await;
        assert!(chunks.len() > 3, "sent in chunks");
        assert_eq!(chunks.concat(), whole);
    }
}
