//! The manifest as written, as data: spanned, typed structures, nothing resolved.

use miette::SourceSpan;

use super::kdl_node::Spanned;

pub type Pair = (Spanned<String>, Spanned<String>);

#[derive(Clone, Debug)]
pub struct RawFrom {
    pub reference: Spanned<String>,
    pub arg: Option<Spanned<String>>,
}

/// Where a build secret comes from (`secret ID env=VAR` or `secret ID file=PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(String),
}

/// `secret "npm" env="NPM_TOKEN"`: a secret the builder mounts (`RUN --mount=type=secret,id=npm`).
/// Only its id and where it comes from are ever written down; mab never reads its value.
#[derive(Clone, Debug)]
pub struct RawSecret {
    pub id: Spanned<String>,
    pub source: Spanned<SecretSource>,
}

#[derive(Clone, Debug)]
pub enum RawCache {
    Disabled,
    Repo {
        repo: Spanned<String>,
        mode: Option<Spanned<String>>,
    },
}

/// `annotation "KEY" "VALUE" level="index"|"manifest"|"both"`.
#[derive(Clone, Debug)]
pub struct RawAnnotation {
    pub key: Spanned<String>,
    pub value: Spanned<String>,
    pub level: crate::manifest::model::AnnotationLevel,
}

/// Image settings as written in one block (`defaults`, `profile`, `image`, `version` or `variant`).
#[derive(Clone, Debug, Default)]
pub struct RawSettings {
    pub context: Option<Spanned<String>>,
    pub dockerfile: Option<Spanned<String>>,
    pub target: Option<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
    pub args: Vec<Pair>,
    pub labels: Vec<Pair>,
    /// `annotation KEY VALUE level=…`, in the order written.
    pub annotations: Vec<RawAnnotation>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub froms: Vec<RawFrom>,
    pub test: Option<Spanned<Vec<String>>>,
    pub cache: Option<Spanned<RawCache>>,
    /// `context DIR outside=#true`: the manifest opts in to a context outside its directory.
    pub outside: Option<Spanned<bool>>,
    /// `attest "type=provenance,mode=max" "type=sbom"`; `attest #false` is an empty list.
    pub attest: Option<Spanned<Vec<Spanned<String>>>>,
    pub secrets: Vec<RawSecret>,
    /// `rebuild-after "7d"` (seconds, as written); `rebuild-after #false` turns it off.
    pub rebuild_after: Option<Spanned<Option<(u64, String)>>>,
}

#[derive(Clone, Debug)]
pub struct RawVariant {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub suffix: Option<Spanned<String>>,
    pub settings: RawSettings,
}

#[derive(Clone, Debug)]
pub struct RawVersion {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub settings: RawSettings,
    pub variants: Vec<RawVariant>,
}

#[derive(Clone, Debug)]
pub struct RawImage {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub settings: RawSettings,
    pub versions: Vec<RawVersion>,
    pub variants: Vec<RawVariant>,
}

#[derive(Clone, Debug)]
pub struct RawProfile {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub default: Option<Spanned<bool>>,
    pub registry: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub backend: Option<Spanned<String>>,
    pub push: Option<Spanned<bool>>,
    /// `promoted-from "dev"`: this profile only receives `dev`'s images (`mab promote`).
    pub promoted_from: Option<Spanned<String>>,
    /// `sign key="env:NAME"` / `sign key="PATH"`.
    pub sign: Option<Spanned<String>>,
    pub tags: Vec<Spanned<String>>,
    pub inherits: Option<Spanned<String>>,
    pub vars: Vec<Pair>,
    pub settings: RawSettings,
}

#[derive(Clone, Debug)]
pub struct RawMirror {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub from: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub tags: Vec<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Clone, Debug)]
pub struct RawBuilder {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub platforms: Vec<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    /// The CI runner label of this builder (`runs-on` of a GitHub Actions job).
    pub runs_on: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct RawManifest {
    pub defaults: RawSettings,
    pub profiles: Vec<RawProfile>,
    pub vars: Vec<Pair>,
    pub mirrors: Vec<RawMirror>,
    pub images: Vec<RawImage>,
    pub builders: Vec<RawBuilder>,
}
