//! The build context: the app's files, filtered by `.dockerignore`, as a deterministic tar.
//!
//! Deterministic (sorted entries, zero times and owners) so that an unchanged context gives
//! the same bytes, the same hash and the engine's cache hits.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ignore::DockerIgnore;
use crate::error::Error;

pub struct Context {
    pub tar: Vec<u8>,
    pub files: usize,
    /// Hex sha256 of the tar, for a tag that names a dirty tree's content.
    pub sha256: String,
}

/// Tar `dir`, leaving out what `.dockerignore` excludes; `dockerfile` (relative to `dir`) and
/// `.dockerignore` are always sent, as Docker's own client does.
pub fn tar_context(dir: &Path, dockerfile: &str) -> Result<Context, Error> {
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
    entries.sort();

    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut files = 0;
    for (rel, path) in &entries {
        builder
            .append_path_with_name(path, rel)
            .map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
        if path.is_file() {
            files += 1;
        }
    }
    let tar = builder.into_inner().map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let sha256 = hex::encode(Sha256::digest(&tar));
    Ok(Context { tar, files, sha256 })
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

    fn names(ctx: &Context) -> Vec<String> {
        let mut a = tar::Archive::new(ctx.tar.as_slice());
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
        let ctx = tar_context(p, "Dockerfile.production").unwrap();
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
        assert_eq!(
            tar_context(p, "Dockerfile.production").unwrap().sha256,
            ctx.sha256
        );
        std::fs::write(p.join("app/hello"), "changed").unwrap();
        assert_ne!(
            tar_context(p, "Dockerfile.production").unwrap().sha256,
            ctx.sha256
        );
    }
}
