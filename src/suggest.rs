//! "Did you mean" for misspelled names.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(input, c), c))
        .filter(|(d, c)| *d <= (c.len().max(input.len()) / 3).max(1) || c.starts_with(input))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_and_refuses_strangers() {
        let keys = ["port", "memory_max", "cpu_quota"];
        assert_eq!(closest("prot", keys.into_iter()), Some("port"));
        assert_eq!(closest("memory-max", keys.into_iter()), Some("memory_max"));
        assert_eq!(closest("database", keys.into_iter()), None);
        assert_eq!(
            closest("prodution", ["production", "staging"].into_iter()),
            Some("production")
        );
    }
}
