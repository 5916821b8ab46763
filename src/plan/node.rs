//! Plan nodes: mirror, build, test, merge.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::command::{self, Arg, Command};
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

    /// The commands this node runs, for the profile's backend.
    pub fn commands(&self) -> Vec<Command> {
        let steps = command::for_node(self);
        let mut all = steps.commands;
        all.extend(steps.cleanup);
        all
    }
}

/// The JSON shape of a node (`schemas/plan.schema.json`); field order is the JSON order.
#[derive(Serialize)]
struct NodeJson<'a> {
    id: &'a str,
    kind: Kind,
    image: &'a Option<String>,
    version: &'a Option<String>,
    variant: &'a Option<String>,
    platform: &'a Option<String>,
    platforms: &'a [String],
    level: usize,
    needs: &'a [String],
    #[serde(rename = "ref")]
    reference: &'a str,
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    source: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    builder: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dockerfile: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: &'a Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    args: &'a BTreeMap<String, Arg>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: &'a Option<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attest: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_hash: Option<&'a str>,
    commands: Vec<Command>,
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NodeJson {
            id: &self.id,
            kind: self.kind,
            image: &self.image,
            version: &self.version,
            variant: &self.variant,
            platform: &self.platform,
            platforms: &self.platforms,
            level: self.level,
            needs: &self.needs,
            reference: &self.reference,
            tags: &self.tags,
            source: &self.source,
            builder: &self.builder,
            context: &self.context,
            dockerfile: &self.dockerfile,
            target: &self.target,
            args: &self.args,
            labels: &self.labels,
            cache: &self.cache,
            attest: &self.attest,
            test: &self.test,
            decision: self.decision.as_ref().map(|d| d.decision.as_str()),
            reason: self.decision.as_ref().map(|d| d.reason.as_str()),
            input_hash: self.decision.as_ref().and_then(|d| d.input_hash.as_deref()),
            commands: self.commands(),
        }
        .serialize(s)
    }
}
