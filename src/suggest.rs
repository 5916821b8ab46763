//! "did you mean" suggestions.

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, c)| *score >= 0.8 || strsim::levenshtein(input, c) <= 2)
        // Highest score first; ties broken by name so the answer is deterministic.
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// `Some("did you mean `x`?")` when a candidate is close.
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// A comma-separated list of names in backticks.
pub fn list<'a, I>(names: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_only() {
        assert_eq!(
            closest("plaforms", ["platforms", "tags"]),
            Some("platforms")
        );
        assert_eq!(closest("prdo", ["dev", "prod", "local"]), Some("prod"));
        assert_eq!(closest("zzz", ["platforms", "tags"]), None);
    }
}
