//! Semver-aware ordering of image versions (`1.10` > `1.9`, `2.5.0` > `2.5.0-b.23`).

use std::cmp::Ordering;

use versions::Versioning;

/// Compare two version strings the way release numbers compare; unparseable ones
/// compare after parseable ones, by text, so the order is total and deterministic.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (Versioning::new(a), Versioning::new(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
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
        assert_eq!(compare("2.2", "2.3"), Ordering::Less);
    }
}
