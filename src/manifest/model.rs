//! The resolved manifest: one profile chosen, settings cascaded, strings interpolated.

use std::collections::BTreeMap;
use std::fmt;

use miette::SourceSpan;
use serde::Serialize;

use super::platform::Platform;
pub use super::syntax::SecretSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Buildx,
    Buildah,
    Podman,
}

impl Backend {
    pub const NAMES: &'static [&'static str] = &["buildx", "buildah", "podman"];

    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "buildx" => Some(Backend::Buildx),
            "buildah" => Some(Backend::Buildah),
            "podman" => Some(Backend::Podman),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Buildx => "buildx",
            Backend::Buildah => "buildah",
            Backend::Podman => "podman",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    /// Profiles this one inherits from, nearest first.
    pub inherits: Vec<String>,
    pub registry: String,
    pub insecure: bool,
    pub backend: Backend,
    pub push: bool,
    /// Extra tags given to the newest version of each image (`latest`).
    pub extra_tags: Vec<String>,
    /// `promoted-from`: the profile whose published images this one receives; it builds nothing.
    pub promoted_from: Option<String>,
    /// `sign key=…`: every manifest and index published is signed with this key.
    pub sign: Option<SignKey>,
}

/// Where an `annotation` is written: the index, each platform's image manifest, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationLevel {
    Index,
    Manifest,
    Both,
}

impl AnnotationLevel {
    pub const NAMES: &'static [&'static str] = &["index", "manifest", "both"];

    pub fn parse(s: &str) -> Option<AnnotationLevel> {
        match s {
            "index" => Some(AnnotationLevel::Index),
            "manifest" => Some(AnnotationLevel::Manifest),
            "both" => Some(AnnotationLevel::Both),
            _ => None,
        }
    }

    pub fn index(self) -> bool {
        self != AnnotationLevel::Manifest
    }

    pub fn manifest(self) -> bool {
        self != AnnotationLevel::Index
    }
}

/// Where the signing key comes from: `env:NAME`, or a file (relative to the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignKey {
    Env(String),
    File(String),
}

/// As the manifest writes it: `env:NAME`, or the file's path.
impl std::fmt::Display for SignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignKey::Env(name) => write!(f, "env:{name}"),
            SignKey::File(path) => f.write_str(path),
        }
    }
}

/// The registry cache of one build: `--cache-from`/`--cache-to` reference and mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cache {
    #[serde(rename = "ref")]
    pub reference: String,
    pub mode: String,
}

/// What a `from` points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dep {
    /// Index into `Model::versions`.
    Image(usize),
    /// Index into `Model::mirrors`, and the tag.
    Mirror(usize, String),
}

#[derive(Clone, Debug)]
pub struct From {
    pub dep: Dep,
    /// The build arg that receives the pinned reference; `None` orders the build only.
    pub arg: Option<String>,
    pub span: SourceSpan,
}

/// Settings that may differ per platform (they can use `${platform}`, `${os}`, `${arch}`).
#[derive(Clone, Debug)]
pub struct PlatformSettings {
    pub platform: Platform,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub test: Option<Vec<String>>,
    pub cache: Option<Cache>,
    /// The bases the Dockerfile names that the manifest does not declare (`FROM
    /// debian:bookworm-slim`), as the build resolves them; filled from the Dockerfile when the
    /// project is loaded ([`crate::bases`]).
    pub bases: Vec<UpstreamBase>,
}

/// A base of a Dockerfile that is not a manifest `from`: pinned to its digest for the run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UpstreamBase {
    /// The reference as the `FROM` names it once its `ARG`s are expanded (the name of the
    /// build context that pins it).
    pub name: String,
    /// Whose image of it the stage uses.
    pub platform: BasePlatform,
}

/// The platform of a stage's base (`FROM --platform=…`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BasePlatform {
    /// The build's target platform (no `--platform`, or `$TARGETPLATFORM`).
    Target,
    /// Where the build runs (`--platform=$BUILDPLATFORM`).
    Build,
    /// A platform written out (`--platform=linux/amd64`).
    Fixed(String),
}

/// One buildable unit: an image, one of its versions, optionally a variant.
#[derive(Clone, Debug)]
pub struct ImageVersion {
    pub image: String,
    pub version: String,
    pub variant: Option<String>,
    pub suffix: String,
    /// `image:version[suffix]`, the name selectors and `from` use.
    pub key: String,
    /// Directory of the build context, relative to the manifest.
    pub context: String,
    /// `context … outside=#true`: it may lie outside the manifest's directory.
    pub outside: bool,
    /// Where `context` was set, if it was.
    pub context_span: Option<SourceSpan>,
    /// Where `dockerfile` was set, if it was.
    pub dockerfile_span: Option<SourceSpan>,
    /// Dockerfile path, relative to the manifest.
    pub dockerfile: String,
    pub target: Option<String>,
    /// Attestation requests for buildx (`--attest`), resolved; empty: none at all.
    pub attest: Vec<String>,
    /// Build secrets by id (`--secret`): where each comes from, never its value.
    pub secrets: BTreeMap<String, SecretSource>,
    pub platforms: Vec<PlatformSettings>,
    pub tags: Vec<String>,
    pub froms: Vec<From>,
    /// `rebuild-after`: seconds, and the age as written (`7d`).
    pub rebuild_after: Option<(u64, String)>,
    /// `annotation … level="index"` (the default) and the standard
    /// `org.opencontainers.image.*` ones: written on the index at merge, no input.
    pub index_annotations: BTreeMap<String, String>,
    /// Those of `index_annotations` mab took from the commit (`source`, `revision`,
    /// `created`): they alone never make a new index.
    pub commit_annotations: std::collections::BTreeSet<String>,
    /// `annotation … level="manifest"`: on every platform's image manifest, an input.
    pub manifest_annotations: BTreeMap<String, String>,
    /// Tags made from the run's time (`${date}`, `${time}`): written once, never moved.
    pub dated_tags: Vec<String>,
    /// `${registry}/${image}`.
    pub repository: String,
    pub span: SourceSpan,
    pub image_span: SourceSpan,
}

impl ImageVersion {
    pub fn platform_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.platforms.iter().map(|p| p.platform.as_str())
    }

    /// The tag the version is known by (version plus variant suffix).
    pub fn primary_tag(&self) -> String {
        format!("{}{}", self.version, self.suffix)
    }
}

#[derive(Clone, Debug)]
pub struct Mirror {
    pub name: String,
    /// Upstream repository, e.g. `docker.io/library/alpine`.
    pub source: String,
    /// The upstream registry speaks plain HTTP.
    pub insecure: bool,
    pub tags: Vec<String>,
    /// Platforms to copy; `None` copies the whole index.
    pub platforms: Option<Vec<Platform>>,
    /// `${registry}/thirdparty/${name}`.
    pub repository: String,
    pub span: SourceSpan,
}

#[derive(Clone, Debug)]
pub struct Builder {
    pub name: String,
    pub platforms: Vec<Platform>,
    pub endpoint: Option<String>,
    /// CI runner label for matrix jobs of these platforms.
    pub runs_on: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub profile: Profile,
    /// `SOURCE_DATE_EPOCH` of the builds: the environment's, else the commit's time.
    pub epoch: Option<i64>,
    /// `--on-runner`: builds run on this machine's own builder, as a CI runner of their
    /// platform; `builder` blocks give only their `runs-on`.
    pub on_runner: bool,
    pub profiles: Vec<String>,
    pub vars: BTreeMap<String, String>,
    pub mirrors: Vec<Mirror>,
    /// Image names in manifest order.
    pub images: Vec<String>,
    pub versions: Vec<ImageVersion>,
    pub builders: Vec<Builder>,
}

impl Model {
    pub fn builder_for(&self, platform: &Platform) -> Option<&Builder> {
        self.builders
            .iter()
            .find(|b| b.platforms.contains(platform))
    }
}

/// The buildx driver for a builder endpoint: a BuildKit daemon (`tcp://`, `unix://`) is
/// reached with the `remote` driver; a Docker host (`ssh://`) runs BuildKit in a container
/// there. `None`: not an endpoint mab supports.
pub fn endpoint_driver(endpoint: &str) -> Option<&'static str> {
    if endpoint.starts_with("tcp://") || endpoint.starts_with("unix://") {
        Some("remote")
    } else if endpoint.starts_with("ssh://") {
        Some("docker-container")
    } else {
        None
    }
}
