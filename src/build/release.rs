//! The release identity of a build: semver version plus the app repository's commit.

use std::path::Path;
use std::process::Command;

use crate::error::Error;

/// What the app's git working tree says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tree {
    Clean { sha: String },
    Dirty { sha: String },
    NotARepository,
}

/// A release: `1.4.2+3f9c2ab` as semver, `1.4.2_3f9c2ab` as an image tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: semver::Version,
}

impl Release {
    /// Combine the configured version with the tree; a dirty tree is refused unless allowed,
    /// and then marked, with a hash of the context so two dirty builds never share a tag.
    /// `context_sha256` is asked for only when the tree is dirty.
    pub fn new(
        version: &semver::Version,
        tree: &Tree,
        allow_dirty: bool,
        context_sha256: impl FnOnce() -> Result<String, Error>,
    ) -> Result<Release, Error> {
        let short = || -> Result<String, Error> {
            let sha = context_sha256()?;
            Ok(sha[..sha.len().min(7)].to_owned())
        };
        let build = match (tree, allow_dirty) {
            (Tree::Clean { sha }, _) => sha.clone(),
            (Tree::Dirty { sha }, true) => format!("{sha}.dirty.{}", short()?),
            (Tree::NotARepository, true) => format!("nogit.{}", short()?),
            (Tree::Dirty { .. }, false) => {
                return Err(Error::DirtyTree {
                    not_a_repository: false,
                });
            }
            (Tree::NotARepository, false) => {
                return Err(Error::DirtyTree {
                    not_a_repository: true,
                });
            }
        };
        let mut version = version.clone();
        version.build = semver::BuildMetadata::new(&build).map_err(|e| Error::Internal {
            context: "the release version".into(),
            source: e.into(),
        })?;
        Ok(Release { version })
    }

    /// The image tag: semver's `+` is not allowed in a tag, so it becomes `_`.
    pub fn tag(&self) -> String {
        self.version.to_string().replace('+', "_")
    }
}

/// The files of a build context (`paths`, relative to `context_dir`) that git ignores in the
/// repository holding `app_dir`: what goes into the image without the commit pinning it
/// (`dist/`, a built binary, `config/master.key`, a stray `.env.production`). Each as
/// `(path in the context, path shown from the app directory)`.
pub fn ignored_in_context<'a>(
    app_dir: &Path,
    context_dir: &Path,
    paths: impl Iterator<Item = &'a str>,
) -> Vec<(String, String)> {
    let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(context_dir)
        .args([
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--",
            ".",
        ])
        .output()
    else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let ignored: std::collections::HashSet<&[u8]> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    let shown_from = |rel: &str| {
        context_dir
            .join(rel)
            .strip_prefix(app_dir)
            .map_or_else(|_| rel.to_owned(), |p| p.display().to_string())
    };
    paths
        .filter(|rel| ignored.contains(rel.as_bytes()))
        .map(|rel| (rel.to_owned(), shown_from(rel)))
        .collect()
}

/// The tree state of the git repository holding `dir`.
pub fn probe_tree(dir: &Path) -> Tree {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(sha) = git(&["rev-parse", "--short=7", "HEAD"]) else {
        return Tree::NotARepository;
    };
    match git(&[
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
    ]) {
        Some(s) if s.is_empty() => Tree::Clean { sha },
        _ => Tree::Dirty { sha },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let v = semver::Version::parse("1.4.2").unwrap();
        let clean = Release::new(
            &v,
            &Tree::Clean {
                sha: "3f9c2ab".into(),
            },
            false,
            || Ok("abcdef0123".into()),
        )
        .unwrap();
        assert_eq!(clean.version.to_string(), "1.4.2+3f9c2ab");
        assert_eq!(clean.tag(), "1.4.2_3f9c2ab");
        let dirty = Release::new(
            &v,
            &Tree::Dirty {
                sha: "3f9c2ab".into(),
            },
            true,
            || Ok("abcdef0123".into()),
        )
        .unwrap();
        assert_eq!(dirty.tag(), "1.4.2_3f9c2ab.dirty.abcdef0");
        assert!(matches!(
            Release::new(&v, &Tree::Dirty { sha: "x".into() }, false, || Ok(
                "a".into()
            )),
            Err(Error::DirtyTree {
                not_a_repository: false
            })
        ));
        let pre = Release::new(
            &semver::Version::parse("2.0.0-rc.1").unwrap(),
            &Tree::NotARepository,
            true,
            || Ok("ff00".into()),
        )
        .unwrap();
        assert_eq!(pre.tag(), "2.0.0-rc.1_nogit.ff00");
    }
}
