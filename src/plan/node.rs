//! Plan nodes: mirror, build, test, merge.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::argv::Arg;
use crate::manifest::model::{Backend, Cache, SecretSource};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mirror,
    Build,
    Test,
    Merge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mirror => "mirror",
            Kind::Build => "build",
            Kind::Test => "test",
            Kind::Merge => "merge",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Profile settings every node's commands depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    pub backend: Backend,
    pub insecure: bool,
    pub push: bool,
    /// `mab seed`: the build writes its registry cache and nothing else (buildx
    /// `--output type=cacheonly`; buildah and podman keep the image local, as without push).
    pub cache_only: bool,
}

/// One unit of work of the plan. Its commands are derived from these fields on
/// demand ([`Node::commands`]), so a plan of 10,000 builds stays small.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub kind: Kind,
    pub image: Option<String>,
    pub version: Option<String>,
    pub variant: Option<String>,
    /// The platform of a build or test node.
    pub platform: Option<String>,
    /// The platforms a merge puts in its index, or a mirror copies (empty: the whole upstream index).
    pub platforms: Vec<String>,
    /// 0 for nodes without needs; otherwise one more than the deepest need.
    pub level: usize,
    pub needs: Vec<String>,
    /// Repository the node writes to.
    pub reference: String,
    /// Tags the node publishes (merge and mirror nodes only).
    pub tags: Vec<String>,
    /// Upstream repository of a mirror.
    pub source: Option<String>,
    pub builder: Option<String>,
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    /// Build args; a `from` base is pinned with a digest placeholder.
    pub args: BTreeMap<String, Arg>,
    pub labels: BTreeMap<String, String>,
    pub cache: Option<Cache>,
    /// buildx builds: the attestation requests (`--attest`); empty turns provenance off.
    pub attest: Option<Vec<String>>,
    /// Build secrets by id (`--secret`): where each comes from, never its value.
    pub secrets: BTreeMap<String, SecretSource>,
    pub test: Option<Vec<String>>,
    pub publish: Publish,
    /// The CI runner label of the builder that owns the platform (matrix output).
    pub runs_on: Option<String>,
    /// `plan --check-registry`: `build`, `reuse`, `mirror`, `up-to-date` or `publish`, why, and the input hash.
    pub decision: Option<Box<Decision>>,
    /// Creation order (manifest order); breaks ties inside a level.
    pub seq: usize,
}

/// What a run would do with a node, as the registry says today.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub decision: String,
    pub reason: String,
    pub input_hash: Option<String>,
}

impl Node {
    /// `image:version[-variant]` of build, test and merge nodes.
    pub fn key(&self) -> Option<&str> {
        self.image.as_ref()?;
        let rest = self.id.split_once(':')?.1;
        rest.split('@').next()
    }
}
