//! Node ids, typed: `mirror:NAME:TAG`, `build:KEY@PLATFORM`, `test:KEY@PLATFORM`,
//! `merge:KEY` (KEY is `image:version[-variant]`). The strings are the plan's JSON and the
//! names users pass to `--node`; [`NodeId`] is how the code reads them, so no caller splits
//! an id by hand.

use std::fmt;
use std::str::FromStr;

use super::Kind;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeId {
    Mirror { name: String, tag: String },
    Build { key: String, platform: String },
    Test { key: String, platform: String },
    Merge { key: String },
}

impl NodeId {
    pub fn kind(&self) -> Kind {
        match self {
            NodeId::Mirror { .. } => Kind::Mirror,
            NodeId::Build { .. } => Kind::Build,
            NodeId::Test { .. } => Kind::Test,
            NodeId::Merge { .. } => Kind::Merge,
        }
    }

    /// `image:version[-variant]` of a build, test or merge.
    pub fn key(&self) -> Option<&str> {
        match self {
            NodeId::Mirror { .. } => None,
            NodeId::Build { key, .. } | NodeId::Test { key, .. } | NodeId::Merge { key } => {
                Some(key)
            }
        }
    }

    /// The platform of a build or test.
    pub fn platform(&self) -> Option<&str> {
        match self {
            NodeId::Build { platform, .. } | NodeId::Test { platform, .. } => Some(platform),
            _ => None,
        }
    }

    /// The build a test runs on, or a build itself.
    pub fn build(&self) -> Option<NodeId> {
        match self {
            NodeId::Build { .. } => Some(self.clone()),
            NodeId::Test { key, platform } => Some(NodeId::Build {
                key: key.clone(),
                platform: platform.clone(),
            }),
            _ => None,
        }
    }
}

impl NodeId {
    fn write(&self, w: &mut impl fmt::Write) -> fmt::Result {
        match self {
            NodeId::Mirror { name, tag } => write!(w, "mirror:{name}:{tag}"),
            NodeId::Build { key, platform } => write!(w, "build:{key}@{platform}"),
            NodeId::Test { key, platform } => write!(w, "test:{key}@{platform}"),
            NodeId::Merge { key } => write!(w, "merge:{key}"),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            // `{:width$}` pads the whole id.
            let mut s = String::new();
            self.write(&mut s)?;
            return f.pad(&s);
        }
        self.write(f)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a node id.
#[derive(Debug, PartialEq, Eq)]
pub struct BadId(pub String);

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a node id (mirror:NAME:TAG, build:IMAGE:VERSION@PLATFORM, test:…@PLATFORM, merge:IMAGE:VERSION)",
            self.0
        )
    }
}

impl FromStr for NodeId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<NodeId, BadId> {
        let bad = || BadId(s.to_owned());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        // A key is `image:version`: both parts non-empty. Tags hold no `:` and platforms no
        // `@` (the grammar of both), so the last separator is the one.
        let key_ok = |k: &str| {
            k.split_once(':')
                .is_some_and(|(i, v)| !i.is_empty() && !v.is_empty())
        };
        let with_platform = |rest: &str| -> Result<(String, String), BadId> {
            let (key, platform) = rest.rsplit_once('@').ok_or_else(bad)?;
            if !key_ok(key) || platform.is_empty() {
                return Err(bad());
            }
            Ok((key.to_owned(), platform.to_owned()))
        };
        match kind {
            "mirror" => {
                let (name, tag) = rest.rsplit_once(':').ok_or_else(bad)?;
                if name.is_empty() || tag.is_empty() {
                    return Err(bad());
                }
                Ok(NodeId::Mirror {
                    name: name.to_owned(),
                    tag: tag.to_owned(),
                })
            }
            "build" => with_platform(rest).map(|(key, platform)| NodeId::Build { key, platform }),
            "test" => with_platform(rest).map(|(key, platform)| NodeId::Test { key, platform }),
            "merge" if key_ok(rest) && !rest.contains('@') => Ok(NodeId::Merge {
                key: rest.to_owned(),
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for s in [
            "mirror:alpine:3.15",
            "mirror:team/golang:1.18-alpine3.15",
            "build:odb:2.5.0-b.23-slim@linux/arm64",
            "build:a/b:1@linux/arm/v7",
            "test:runtime:3.15@linux/s390x",
            "merge:golang-build:1.18",
        ] {
            let id: NodeId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        // Padding pads the whole id (the text plan's column).
        let m: NodeId = "merge:a:1".parse().unwrap();
        assert_eq!(format!("{m:12}|"), "merge:a:1   |");
        let t: NodeId = "test:runtime:3.15@linux/s390x".parse().unwrap();
        assert_eq!(t.kind(), Kind::Test);
        assert_eq!(t.key(), Some("runtime:3.15"));
        assert_eq!(t.platform(), Some("linux/s390x"));
        assert_eq!(
            t.build().unwrap().to_string(),
            "build:runtime:3.15@linux/s390x"
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for s in [
            "",
            "runtime:3.15",
            "build:runtime:3.15",
            "build:runtime@linux/amd64",
            "build:runtime:3.15@",
            "merge:runtime",
            "merge:runtime:3.15@linux/amd64",
            "mirror:alpine",
            "mirror::3.15",
            "push:a:1",
        ] {
            assert!(s.parse::<NodeId>().is_err(), "{s}");
        }
    }
}
