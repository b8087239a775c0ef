//! `.dockerignore` matching with Docker's own rules. Pure.
//!
//! Docker's rules differ from gitignore's: patterns are anchored at the context root, `*` and
//! `?` never cross `/`, `**` spans any number of directories, a pattern that matches a
//! directory excludes everything below it, `!` re-includes, and the last matching pattern wins.
//! Glob syntax is globset's with `literal_separator`, which has exactly these `*`/`**` rules.

use globset::{Glob, GlobBuilder, GlobMatcher};

#[derive(Debug)]
struct Pattern {
    matcher: GlobMatcher,
    exclusion: bool,
}

/// The parsed rules of one `.dockerignore`.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parse the file's text; the error names the 1-based line of a bad pattern.
    pub fn parse(text: &str) -> Result<DockerIgnore, (usize, String)> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let glob: Glob = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| (i + 1, e.kind().to_string()))?;
            patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exclusion,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether any pattern re-includes (so an excluded directory must still be walked).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An inclusion can only change an excluded path, an exclusion only an included one.
            if p.exclusion != excluded {
                continue;
            }
            let hit = p.matcher.is_match(path) || parents.iter().any(|d| p.matcher.is_match(d));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }
}

/// Docker cleans each pattern like Go's `filepath.Clean` and drops a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::DockerIgnore;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn a_name_excludes_itself_and_everything_below() {
        let i = ignore("target\n");
        assert!(i.is_excluded("target"));
        assert!(i.is_excluded("target/release/app"));
        assert!(
            !i.is_excluded("src/target"),
            "patterns are anchored at the root"
        );
        assert!(!i.is_excluded("targets"));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let i = ignore("*.md\n");
        assert!(i.is_excluded("README.md"));
        assert!(!i.is_excluded("docs/guide.md"));
        let i = ignore("*/*.md\n");
        assert!(i.is_excluded("docs/guide.md"));
        assert!(!i.is_excluded("docs/deep/guide.md"));
    }

    #[test]
    fn double_star_spans_directories() {
        let i = ignore("**/*.log\n");
        assert!(i.is_excluded("a.log"));
        assert!(i.is_excluded("x/y/z/a.log"));
        assert!(!i.is_excluded("x/a.txt"));
        let i = ignore("logs/**\n");
        assert!(i.is_excluded("logs/a/b"));
        let i = ignore("a/**/b\n");
        assert!(i.is_excluded("a/b"));
        assert!(i.is_excluded("a/x/y/b"));
        assert!(i.is_excluded("a/x/b/inside"));
    }

    #[test]
    fn bang_re_includes_and_the_last_match_wins() {
        let i = ignore("*.md\n!README.md\n");
        assert!(i.is_excluded("CHANGES.md"));
        assert!(!i.is_excluded("README.md"));
        let i = ignore("!README.md\n*.md\n");
        assert!(
            i.is_excluded("README.md"),
            "a later exclusion wins over an earlier re-include"
        );
        let i = ignore("target\n!target/keep/**\n");
        assert!(i.is_excluded("target/debug/x"));
        assert!(!i.is_excluded("target/keep/a/b"));
        assert!(i.has_exclusions());
    }

    #[test]
    fn patterns_are_cleaned_and_comments_skipped() {
        let i = ignore("# comment\n\n  /build/  \n./tmp/../cache\n");
        assert!(i.is_excluded("build/out"));
        assert!(i.is_excluded("cache"));
        assert!(!i.is_excluded("tmp"));
        assert!(!i.is_excluded("# comment"));
    }

    #[test]
    fn question_mark_and_classes() {
        let i = ignore("file?.txt\n[ab].bin\n");
        assert!(i.is_excluded("file1.txt"));
        assert!(!i.is_excluded("file10.txt"));
        assert!(i.is_excluded("a.bin"));
        assert!(!i.is_excluded("c.bin"));
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        assert_eq!(DockerIgnore::parse("ok\n[unclosed\n").unwrap_err().0, 2);
    }
}
