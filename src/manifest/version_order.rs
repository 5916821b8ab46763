//! Semver-aware ordering of image versions (`1.10` > `1.9`, `2.5.0` > `2.5.0-b.23`).
//! Versions are read leniently (`3.15` is 3.15.0, `v2` is 2.0.0) by `lenient_semver`.

use std::cmp::Ordering;

/// Compare two version strings the way release numbers compare; unparseable ones
/// sort before parseable ones, by text, so the order is total and deterministic.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (lenient_semver::parse(a), lenient_semver::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp_precedence(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_releases() {
        assert_eq!(compare("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare("3.16", "3.15"), Ordering::Greater);
        assert_eq!(compare("2.5.0", "2.5.0-b.23"), Ordering::Greater);
        assert_eq!(compare("2.5.0-b.23", "2.5.0-b.3"), Ordering::Greater);
        assert_eq!(compare("1.10", "1.10.0-rc.1"), Ordering::Greater);
        assert_eq!(compare("2.2", "2.3"), Ordering::Less);
        assert_eq!(compare("1.0", "nightly"), Ordering::Greater);
    }
}
