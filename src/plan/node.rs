//! Plan nodes: mirror, build, test, merge.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::NodeId;
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

/// One unit of work of the plan: `{ id, needs, level, work }`, with one payload per kind.
/// Its commands are derived from it on demand ([`Node::commands`]), so a plan of 10,000
/// builds stays small.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub needs: Vec<NodeId>,
    /// 0 for nodes without needs; otherwise one more than the deepest need.
    pub level: usize,
    /// Creation order (manifest order); breaks ties inside a level.
    pub seq: usize,
    pub publish: Publish,
    /// `plan --check-registry`: `build`, `reuse`, `mirror`, `up-to-date` or `publish`, why, and the input hash.
    pub decision: Option<Box<Decision>>,
    pub work: Work,
}

/// What a node does, by kind.
#[derive(Clone, Debug)]
pub enum Work {
    Mirror(MirrorWork),
    Build(Box<BuildWork>),
    Test(TestWork),
    Merge(MergeWork),
}

/// A mirror copies `source:TAG` (the tag is the id's) to `repository:TAG`.
#[derive(Clone, Debug)]
pub struct MirrorWork {
    /// Upstream repository.
    pub source: String,
    pub repository: String,
    /// The platforms copied (empty: the whole upstream index).
    pub platforms: Vec<String>,
}

/// The image version a build, test or merge belongs to, and the repository it publishes to.
#[derive(Clone, Debug)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub variant: Option<String>,
    pub repository: String,
}

/// A build of one platform (the id's) of an image version.
#[derive(Clone, Debug)]
pub struct BuildWork {
    pub image: Image,
    pub builder: Option<String>,
    /// The CI runner label of the builder that owns the platform (matrix output).
    pub runs_on: Option<String>,
    pub context: String,
    pub dockerfile: String,
    pub target: Option<String>,
    /// Build args; a base is pinned with a digest placeholder.
    pub args: BTreeMap<String, Arg>,
    pub labels: BTreeMap<String, String>,
    /// Manifest-level annotations (`--annotation`): an input, as labels are.
    pub annotations: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH` (buildx `--build-arg`, buildah/podman `--timestamp`): no input, so
    /// a new commit with the same inputs reuses the image.
    pub epoch: Option<i64>,
    pub cache: Option<Cache>,
    /// buildx builds: the attestation requests (`--attest`); empty turns provenance off.
    pub attest: Option<Vec<String>>,
    /// Build secrets by id (`--secret`): where each comes from, never its value.
    pub secrets: BTreeMap<String, SecretSource>,
    /// The Dockerfile's upstream bases, each pinned to its digest for `platform`.
    pub bases: Vec<Base>,
    /// `rebuild-after`: a published image older than this (seconds; as written) is rebuilt.
    pub rebuild_after: Option<(u64, String)>,
    /// Build without the layer cache (`--no-cache`): set when the published image is rebuilt
    /// for its age, so no cached `RUN` step (an `apt-get upgrade`) comes back.
    pub no_cache: bool,
}

/// An upstream base of a build, and the platform whose image of it the build pins (`None`:
/// the whole index, when the build's stages use it on more than one platform).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub reference: String,
    pub platform: Option<String>,
}

/// The smoke test of one platform's build.
#[derive(Clone, Debug)]
pub struct TestWork {
    pub image: Image,
    pub builder: Option<String>,
    pub test: Vec<String>,
}

/// The index of an image version: its platforms' builds, tagged.
#[derive(Clone, Debug)]
pub struct MergeWork {
    pub image: Image,
    /// The platforms in the index.
    pub platforms: Vec<String>,
    pub tags: Vec<String>,
    /// Tags made from the run's date or time: written once, never moved to another index.
    pub dated_tags: Vec<String>,
    /// Annotations of the index itself: written at merge, no input of anything.
    pub annotations: BTreeMap<String, String>,
    /// Those of `annotations` taken from the commit (`source`, `revision`, `created`): when
    /// the published index has the same images and the same other annotations, it stays as
    /// it is, with the values of the commit that first published those images.
    pub commit_annotations: Vec<String>,
    /// Where the profile's signing key comes from (`env:NAME` or a file), when it signs: the
    /// index and each platform image are signed after the index exists, before any tag.
    pub sign: Option<String>,
}

/// What a run would do with a node, as the registry says today.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub decision: String,
    pub reason: String,
    pub input_hash: Option<String>,
    /// Rebuilt for its age (`rebuild-after`): its command gains `--no-cache`.
    #[serde(skip)]
    pub no_cache: bool,
}

impl Node {
    pub fn kind(&self) -> Kind {
        self.id.kind()
    }

    /// `image:version[-variant]` of build, test and merge nodes.
    pub fn key(&self) -> Option<&str> {
        self.id.key()
    }

    /// The platform of a build or test.
    pub fn platform(&self) -> Option<&str> {
        self.id.platform()
    }

    /// The image version of a build, test or merge.
    pub fn image(&self) -> Option<&Image> {
        match &self.work {
            Work::Mirror(_) => None,
            Work::Build(b) => Some(&b.image),
            Work::Test(t) => Some(&t.image),
            Work::Merge(m) => Some(&m.image),
        }
    }

    /// The repository the node writes to (a test: the one it reads).
    pub fn reference(&self) -> &str {
        match &self.work {
            Work::Mirror(m) => &m.repository,
            _ => self.image().map_or("", |i| i.repository.as_str()),
        }
    }

    /// The tags a merge or mirror publishes.
    pub fn tags(&self) -> &[String] {
        match (&self.work, &self.id) {
            (Work::Merge(m), _) => &m.tags,
            (Work::Mirror(_), NodeId::Mirror { tag, .. }) => std::slice::from_ref(tag),
            _ => &[],
        }
    }

    /// The platforms a merge puts in its index, or a mirror copies.
    pub fn platforms(&self) -> &[String] {
        match &self.work {
            Work::Merge(m) => &m.platforms,
            Work::Mirror(m) => &m.platforms,
            _ => &[],
        }
    }

    /// The buildx builder of a build or test.
    pub fn builder(&self) -> Option<&str> {
        match &self.work {
            Work::Build(b) => b.builder.as_deref(),
            Work::Test(t) => t.builder.as_deref(),
            _ => None,
        }
    }

    /// The CI runner label of a build's builder.
    pub fn runs_on(&self) -> Option<&str> {
        match &self.work {
            Work::Build(b) => b.runs_on.as_deref(),
            _ => None,
        }
    }

    /// A mirror's payload.
    pub fn as_mirror(&self) -> Option<&MirrorWork> {
        match &self.work {
            Work::Mirror(m) => Some(m),
            _ => None,
        }
    }

    /// A build's payload.
    pub fn as_build(&self) -> Option<&BuildWork> {
        match &self.work {
            Work::Build(b) => Some(b),
            _ => None,
        }
    }
}
