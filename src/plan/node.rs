//! Plan nodes: mirror, build, test, merge.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::command::{Command, DigestOut};
use crate::manifest::model::Cache;

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

/// One unit of work of the plan. Field order is the JSON order.
#[derive(Clone, Debug, Serialize)]
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
    #[serde(rename = "ref")]
    pub reference: String,
    /// Tags the node publishes (merge and mirror nodes only).
    pub tags: Vec<String>,
    /// Upstream repository of a mirror.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Build args, base references pinned with `{digest:NODE}` placeholders.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    pub commands: Vec<Command>,
    #[serde(skip)]
    pub digest: DigestOut,
    /// Creation order (manifest order); breaks ties inside a level.
    #[serde(skip)]
    pub seq: usize,
}

impl Node {
    /// `image:version[-variant]` of build, test and merge nodes.
    pub fn key(&self) -> Option<String> {
        let image = self.image.as_ref()?;
        let rest = self.id.split_once(':')?.1;
        let key = rest.split('@').next()?;
        key.starts_with(image.as_str()).then(|| key.to_owned())
    }
}
