//! Target platforms: `os/arch[/variant]`, validated against the platforms image builders know.

use std::fmt;

/// Every platform `mab` accepts, in the order they are listed in messages.
pub const KNOWN: &[&str] = &[
    "linux/amd64",
    "linux/amd64/v2",
    "linux/amd64/v3",
    "linux/amd64/v4",
    "linux/arm64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/arm/v5",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
    "linux/mips64",
    "linux/loong64",
    "windows/amd64",
    "windows/arm64",
];

/// A validated platform such as `linux/arm64` or `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform(&'static str);

impl Platform {
    /// Parse a platform string; the error is the list of known platforms plus a suggestion.
    /// `linux/arm64/v8` is `linux/arm64` (v8 is arm64's only variant; Docker Hub writes it, buildx
    /// does not): one platform, one name, in the manifest, `--platform`, ids and refs.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let s = if s == "linux/arm64/v8" {
            "linux/arm64"
        } else {
            s
        };
        KNOWN
            .iter()
            .find(|k| **k == s)
            .map(|k| Platform(k))
            .ok_or_else(|| PlatformError {
                input: s.to_owned(),
            })
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    pub fn os(&self) -> &'static str {
        self.0.split('/').next().unwrap_or_default()
    }

    pub fn arch(&self) -> &'static str {
        self.0.split('/').nth(1).unwrap_or_default()
    }

    pub fn variant(&self) -> Option<&'static str> {
        self.0.split('/').nth(2)
    }

    /// `arm64`, `arm-v7`: the architecture and variant, usable in tags and file names.
    /// The platform in a tag or file name: `arm64`, `arm-v7`; other systems than linux carry
    /// their name (`windows-amd64`), so their cache refs never meet linux ones.
    pub fn slug(&self) -> String {
        let arch = match self.variant() {
            Some(v) => format!("{}-{v}", self.arch()),
            None => self.arch().to_owned(),
        };
        if self.os() == "linux" {
            arch
        } else {
            format!("{}-{arch}", self.os())
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Debug, Clone)]
pub struct PlatformError {
    pub input: String,
}

impl PlatformError {
    pub fn message(&self) -> String {
        format!("unknown platform `{}`", self.input)
    }

    pub fn help(&self) -> String {
        let known = KNOWN.join(", ");
        match crate::suggest::closest(&self.input, KNOWN.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? known platforms: {known}"),
            None => format!("known platforms: {known}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_v8_is_arm64() {
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(v8, Platform::parse("linux/arm64").unwrap());
        assert_eq!(v8.as_str(), "linux/arm64");
        assert_eq!(v8.slug(), "arm64");
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().as_str(),
            "linux/arm/v7"
        );
    }

    #[test]
    fn parses_and_splits() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            (p.os(), p.arch(), p.variant()),
            ("linux", "arm", Some("v7"))
        );
        assert_eq!(p.slug(), "arm-v7");
        let e = Platform::parse("linux/amd65").unwrap_err();
        assert!(
            e.help().starts_with("did you mean `linux/amd64`?"),
            "{}",
            e.help()
        );
    }
}

#[cfg(test)]
mod slug_tests {
    use super::Platform;

    #[test]
    fn slugs_of_different_systems_differ() {
        let slug = |p: &str| Platform::parse(p).unwrap().slug();
        assert_eq!(slug("linux/amd64"), "amd64");
        assert_eq!(slug("linux/arm/v7"), "arm-v7");
        assert_eq!(slug("windows/amd64"), "windows-amd64");
        assert_ne!(slug("windows/amd64"), slug("linux/amd64"));
    }
}
