//! The plan layer: resolved model → DAG of mirror, build, test and merge nodes.

pub mod argv;
pub mod command;
pub mod graph;
pub mod id;
mod json;
pub mod node;
pub mod select;
pub mod subset;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::diag::{Diag, Diagnostics};
use crate::manifest::model::{
    Backend, BasePlatform, Dep, ImageVersion, Mirror, Model, PlatformSettings,
};
use crate::manifest::platform::Platform;
use command::{Arg, Part, local_name};
pub use id::NodeId;
pub use node::{
    Base, BuildWork, Decision, Image, Kind, MergeWork, MirrorWork, Node, Publish, TestWork, Work,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub profile: String,
    pub registry: String,
    pub backend: Backend,
    pub push: bool,
    /// The `--platform` filter, if any.
    pub platforms: Vec<String>,
    /// `--changed-since`: why each image version is in the plan.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, String>,
    /// buildx: the builders the nodes name (`--builder`), and how mab creates those with an
    /// endpoint before anything runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub builders: Vec<BuilderSetup>,
    /// What the nodes need that this plan does not build (a `--changed-since` or `--node`
    /// plan): published already, read from the registry before anything runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<External>,
    pub nodes: Vec<Node>,
}

/// A need outside the plan: the tag that holds it (and, for a base's image of one platform,
/// that platform's child of the index there).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct External {
    pub id: NodeId,
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Where the run finds it; the registry unless said otherwise.
    #[serde(skip_serializing_if = "ExternalSource::is_registry")]
    pub source: ExternalSource,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExternalSource {
    /// Published: the digest at `ref` (a platform's child of the index there, with `platform`).
    Registry,
    /// A `--node` job: the digest the split-build metadata of the job that built it names.
    Metadata,
    /// `push #false`: the local image `ref`, as an earlier run built it; no digest is read.
    Local,
}

impl ExternalSource {
    fn is_registry(&self) -> bool {
        *self == ExternalSource::Registry
    }
}

/// The needs of `nodes` outside them, in id order, with where each is published.
pub fn externals(model: &Model, nodes: &[Node]) -> Vec<External> {
    let inside: std::collections::HashSet<&NodeId> = nodes.iter().map(|n| &n.id).collect();
    // In the order of the ids' text (the plan's JSON order).
    let wanted: BTreeMap<String, &NodeId> = nodes
        .iter()
        .flat_map(|n| &n.needs)
        .filter(|id| !inside.contains(id))
        .map(|id| (id.to_string(), id))
        .collect();
    let version = |key: &str| model.versions.iter().find(|v| v.key == key);
    wanted
        .into_values()
        .filter_map(|id| {
            let (reference, platform) = match id {
                NodeId::Mirror { name, tag } => {
                    let m = model
                        .mirrors
                        .iter()
                        .find(|m| &m.name == name && m.tags.contains(tag))?;
                    (format!("{}:{tag}", m.repository), None)
                }
                NodeId::Merge { key } => {
                    let v = version(key)?;
                    (format!("{}:{}", v.repository, v.primary_tag()), None)
                }
                // Without push, a base is the local image its build left (what the
                // dependent's build arg names), not anything in the registry.
                NodeId::Build { key, platform } if !model.profile.push => {
                    let v = version(key)?;
                    let local = local_name(&v.image, &v.primary_tag(), platform);
                    return Some(External {
                        id: id.clone(),
                        reference: local,
                        platform: Some(platform.clone()),
                        source: ExternalSource::Local,
                    });
                }
                NodeId::Build { key, platform } | NodeId::Test { key, platform } => {
                    let v = version(key)?;
                    (
                        format!("{}:{}", v.repository, v.primary_tag()),
                        Some(platform.clone()),
                    )
                }
            };
            Some(External {
                id: id.clone(),
                reference,
                platform,
                source: ExternalSource::Registry,
            })
        })
        .collect()
}

/// A buildx builder a plan's nodes run on.
#[derive(Clone, Debug, Serialize)]
pub struct BuilderSetup {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `docker buildx create …`, run when no builder of that name exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<command::Command>,
}

impl Plan {
    pub fn count(&self, kind: Kind) -> usize {
        self.nodes.iter().filter(|n| n.kind() == kind).count()
    }

    /// The plan's header fields, with no nodes.
    pub fn clone_without_nodes(&self) -> Plan {
        Plan {
            schema: self.schema,
            profile: self.profile.clone(),
            registry: self.registry.clone(),
            backend: self.backend,
            push: self.push,
            platforms: self.platforms.clone(),
            changes: self.changes.clone(),
            builders: self.builders.clone(),
            external: self.external.clone(),
            nodes: Vec::new(),
        }
    }

    pub fn levels(&self) -> usize {
        self.nodes.iter().map(|n| n.level + 1).max().unwrap_or(0)
    }
}

/// What to plan: selectors and a platform filter.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub selectors: Vec<String>,
    pub platforms: Vec<Platform>,
    /// `--changed-since`: only these image versions (and what they need), with why.
    pub only: Option<(BTreeSet<usize>, BTreeMap<String, String>)>,
}

/// Compile the model into the plan for `selection`.
pub fn plan(model: &Model, selection: &Selection) -> Result<Plan, Diagnostics> {
    let cycles = graph::check_cycles(model);
    if cycles.has_errors() {
        return Err(cycles);
    }
    let mut picked = select::pick(model, &selection.selectors)?;
    platforms_offered(model, &picked, &selection.platforms)?;
    if let Some((only, _)) = &selection.only {
        picked.versions.retain(|v| only.contains(v));
        picked.mirrors.clear();
    }
    let (mut versions, mut mirrors) = closure(model, picked);
    if let Some((only, _)) = &selection.only {
        // What did not change is not rebuilt: the changed versions' bases and mirrors are
        // read from the registry (`external`), as they are published.
        versions.retain(|v| only.contains(v));
        mirrors.clear();
    }
    let mut b = Builder {
        model,
        filter: &selection.platforms,
        nodes: Vec::new(),
        index: HashMap::new(),
    };
    for (mi, tag) in &mirrors {
        b.mirror(*mi, tag);
    }
    for vi in versions {
        b.version(vi);
    }
    if !selection.platforms.is_empty()
        && !b.nodes.iter().any(|n| n.kind() == Kind::Build)
        && !selection.selectors.is_empty()
    {
        let wanted: Vec<&str> = selection.platforms.iter().map(Platform::as_str).collect();
        return Err(Diag::plain(format!(
            "the selection builds nothing for {}",
            wanted.join(", ")
        ))
        .help("`mab list` shows the platforms of each image")
        .into());
    }
    Ok(b.finish(selection))
}

/// A `--platform` that no image version the selectors pick (with what they build on) builds
/// matches nothing, as a selector that names nothing does: a typo, or a platform the manifest
/// lost, must not plan 0 builds and exit 0. Judged on the selection, before `--changed-since`
/// narrows it: a change that touches no image of that platform is nothing to do, not an error.
fn platforms_offered(
    model: &Model,
    picked: &select::Picked,
    wanted: &[Platform],
) -> Result<(), Diagnostics> {
    if wanted.is_empty() || picked.versions.is_empty() {
        return Ok(());
    }
    let (versions, _) = closure(model, picked.clone());
    let offered: BTreeSet<&Platform> = versions
        .iter()
        .flat_map(|&v| model.versions[v].platforms.iter().map(|p| &p.platform))
        .collect();
    match wanted.iter().find(|p| !offered.contains(p)) {
        None => Ok(()),
        Some(missing) => Err(Diag::plain(format!("platform `{missing}` matches nothing"))
            .help(format!(
                "the selection builds {}",
                offered
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into()),
    }
}

/// Add everything the picked versions need upstream; returns versions in manifest order.
fn closure(model: &Model, picked: select::Picked) -> (Vec<usize>, BTreeSet<(usize, String)>) {
    let mut versions: BTreeSet<usize> = BTreeSet::new();
    let mut mirrors = picked.mirrors;
    let mut stack: Vec<usize> = picked.versions.into_iter().collect();
    while let Some(v) = stack.pop() {
        if !versions.insert(v) {
            continue;
        }
        for f in &model.versions[v].froms {
            match &f.dep {
                Dep::Image(i) => stack.push(*i),
                Dep::Mirror(m, t) => {
                    mirrors.insert((*m, t.clone()));
                }
            }
        }
    }
    (versions.into_iter().collect(), mirrors)
}

struct Builder<'a> {
    model: &'a Model,
    filter: &'a [Platform],
    nodes: Vec<Node>,
    index: HashMap<NodeId, usize>,
}

impl Builder<'_> {
    fn node(&self, id: NodeId, needs: Vec<NodeId>, work: Work) -> Node {
        let p = &self.model.profile;
        Node {
            id,
            needs,
            level: 0,
            seq: 0,
            publish: Publish {
                backend: p.backend,
                insecure: p.insecure,
                push: p.push,
                cache_only: false,
            },
            decision: None,
            work,
        }
    }

    fn push(&mut self, mut node: Node) {
        node.seq = self.nodes.len();
        self.index.insert(node.id.clone(), self.nodes.len());
        self.nodes.push(node);
    }

    fn mirror(&mut self, mi: usize, tag: &str) {
        let m: &Mirror = &self.model.mirrors[mi];
        let id = NodeId::Mirror {
            name: m.name.clone(),
            tag: tag.to_owned(),
        };
        let work = Work::Mirror(MirrorWork {
            source: m.source.clone(),
            repository: m.repository.clone(),
            platforms: m
                .platforms
                .iter()
                .flatten()
                .map(|p| p.to_string())
                .collect(),
        });
        let node = self.node(id, Vec::new(), work);
        self.push(node);
    }

    /// The node a build of `platform` waits for, and the pinned reference it receives.
    fn base(&self, dep: &Dep, platform: &Platform) -> (NodeId, Arg) {
        let pinned = |repository_tag: String, id: &NodeId| {
            Arg(vec![
                Part::Lit(format!("{repository_tag}@")),
                Part::Digest(id.clone()),
            ])
        };
        match dep {
            Dep::Mirror(m, tag) => {
                let m = &self.model.mirrors[*m];
                let id = NodeId::Mirror {
                    name: m.name.clone(),
                    tag: tag.clone(),
                };
                let arg = pinned(format!("{}:{tag}", m.repository), &id);
                (id, arg)
            }
            Dep::Image(i) => {
                let v = &self.model.versions[*i];
                let tagged = format!("{}:{}", v.repository, v.primary_tag());
                if !self.model.profile.push {
                    let local = local_name(&v.image, &v.primary_tag(), platform.as_str());
                    (build_id(v, platform), Arg::lit(local))
                } else if self.partial(v) {
                    // No merge of the base in this run: its image of the same platform.
                    let id = build_id(v, platform);
                    let arg = pinned(tagged, &id);
                    (id, arg)
                } else {
                    let id = NodeId::Merge { key: v.key.clone() };
                    let arg = pinned(tagged, &id);
                    (id, arg)
                }
            }
        }
    }

    /// The upstream bases of a build of `ps`, each with the platform whose image is pinned: a
    /// `$BUILDPLATFORM` stage runs where the build does — this machine, or the native node of
    /// the builder (`native`) that owns the platform. A base its stages use on two platforms
    /// has one build context (one per name): it is pinned to the digest of the whole index,
    /// from which each stage takes its own platform.
    fn bases(&self, ps: &PlatformSettings, native: bool) -> Vec<Base> {
        let mut out: Vec<Base> = Vec::new();
        for b in &ps.bases {
            let platform = match &b.platform {
                BasePlatform::Target => ps.platform.to_string(),
                BasePlatform::Build if native => ps.platform.to_string(),
                BasePlatform::Build => host_platform().to_owned(),
                BasePlatform::Fixed(p) => p.clone(),
            };
            match out.iter_mut().find(|o| o.reference == b.name) {
                Some(o) if o.platform.as_deref() != Some(platform.as_str()) => o.platform = None,
                Some(_) => {}
                None => out.push(Base {
                    reference: b.name.clone(),
                    platform: Some(platform),
                }),
            }
        }
        out
    }

    /// Whether the `--platform` filter leaves out some platform of `v`: then no index of it
    /// is merged in this run (never half a release), and its dependents build on its images
    /// of their own platform.
    fn partial(&self, v: &ImageVersion) -> bool {
        !self.filter.is_empty()
            && v.platforms
                .iter()
                .any(|p| !self.filter.contains(&p.platform))
    }

    fn version(&mut self, vi: usize) {
        let model = self.model;
        let v = &model.versions[vi];
        let platforms: Vec<&PlatformSettings> = v
            .platforms
            .iter()
            .filter(|p| self.filter.is_empty() || self.filter.contains(&p.platform))
            .collect();
        if platforms.is_empty() {
            return;
        }
        let image = Image {
            name: v.image.clone(),
            version: v.version.clone(),
            variant: v.variant.clone(),
            repository: v.repository.clone(),
        };
        let mut merge_needs = Vec::new();
        for ps in &platforms {
            let id = build_id(v, &ps.platform);
            let build = self.build(v, ps, &image);
            let node = self.node(id.clone(), build.0, Work::Build(Box::new(build.1)));
            let builder = node.builder().map(str::to_owned);
            self.push(node);
            merge_needs.push(id.clone());
            if let Some(test) = &ps.test {
                let tid = NodeId::Test {
                    key: v.key.clone(),
                    platform: ps.platform.to_string(),
                };
                merge_needs.push(tid.clone());
                let work = Work::Test(TestWork {
                    image: image.clone(),
                    builder,
                    test: test.clone(),
                });
                let node = self.node(tid, vec![id], work);
                self.push(node);
            }
        }
        if model.profile.push && !self.partial(v) {
            let work = Work::Merge(MergeWork {
                image,
                platforms: platforms.iter().map(|p| p.platform.to_string()).collect(),
                tags: v.tags.clone(),
                dated_tags: v.dated_tags.clone(),
                annotations: v.index_annotations.clone(),
                commit_annotations: v.commit_annotations.iter().cloned().collect(),
                sign: model.profile.sign.as_ref().map(|k| k.to_string()),
            });
            let node = self.node(NodeId::Merge { key: v.key.clone() }, merge_needs, work);
            self.push(node);
        }
    }

    /// The needs and payload of `v`'s build of one platform.
    fn build(
        &self,
        v: &ImageVersion,
        ps: &PlatformSettings,
        image: &Image,
    ) -> (Vec<NodeId>, BuildWork) {
        let model = self.model;
        let mut needs = Vec::new();
        let mut args: BTreeMap<String, Arg> = ps
            .args
            .iter()
            .map(|(k, v)| (k.clone(), Arg::lit(v.clone())))
            .collect();
        for f in &v.froms {
            let (need, pinned) = self.base(&f.dep, &ps.platform);
            if let Some(a) = &f.arg {
                args.insert(a.clone(), pinned);
            }
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
        let owner = model.builder_for(&ps.platform);
        // A CI runner builds on its own builder; it is the native machine of the platforms
        // its builder sends to a `runs-on` runner.
        let (builder, native) = if model.on_runner {
            (None, owner.is_some_and(|b| b.runs_on.is_some()))
        } else {
            (
                owner.map(|b| b.name.clone()),
                owner.is_some_and(|b| b.endpoint.is_some()),
            )
        };
        let work = BuildWork {
            image: image.clone(),
            builder,
            runs_on: owner.and_then(|b| b.runs_on.clone()),
            context: v.context.clone(),
            dockerfile: v.dockerfile.clone(),
            target: v.target.clone(),
            args,
            labels: ps.labels.clone(),
            annotations: v.manifest_annotations.clone(),
            epoch: model.epoch,
            cache: ps.cache.clone(),
            attest: (model.profile.backend == Backend::Buildx).then(|| v.attest.clone()),
            secrets: v.secrets.clone(),
            bases: self.bases(ps, native),
            rebuild_after: v.rebuild_after.clone(),
            no_cache: false,
        };
        (needs, work)
    }

    fn finish(self, selection: &Selection) -> Plan {
        let Builder {
            model,
            mut nodes,
            index,
            ..
        } = self;
        let needs: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.needs
                    .iter()
                    .filter_map(|id| index.get(id).copied())
                    .collect()
            })
            .collect();
        drop(index);
        let levels = graph::levels(&needs);
        drop(needs);
        for (n, l) in nodes.iter_mut().zip(&levels) {
            n.level = *l;
        }
        // The order `graph::order` returns, sorted in place: by level, then manifest order.
        nodes.sort_unstable_by_key(|n| (n.level, n.seq));
        let builders = if model.profile.backend == Backend::Buildx {
            model
                .builders
                .iter()
                .filter(|b| nodes.iter().any(|n| n.builder() == Some(b.name.as_str())))
                .map(|b| BuilderSetup {
                    name: b.name.clone(),
                    endpoint: b.endpoint.clone(),
                    create: command::create_command(b),
                })
                .collect()
        } else {
            Vec::new()
        };
        Plan {
            schema: SCHEMA_VERSION,
            profile: model.profile.name.clone(),
            registry: model.profile.registry.clone(),
            backend: model.profile.backend,
            push: model.profile.push,
            platforms: selection.platforms.iter().map(|p| p.to_string()).collect(),
            changes: selection
                .only
                .as_ref()
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
            builders,
            external: externals(model, &nodes),
            nodes,
        }
    }
}

/// The platform of the machine mab runs on, as the builders name it.
pub fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        "powerpc64" => "linux/ppc64le",
        "s390x" => "linux/s390x",
        "riscv64" => "linux/riscv64",
        "x86" => "linux/386",
        "arm" => "linux/arm/v7",
        _ => "linux/amd64",
    }
}

pub fn build_id(v: &ImageVersion, platform: &Platform) -> NodeId {
    NodeId::Build {
        key: v.key.clone(),
        platform: platform.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Source;
    use crate::manifest::model::UpstreamBase;

    /// A base the stages of a build use on two platforms is pinned to its whole index; one
    /// used on the target's platform alone, to that platform's image.
    #[test]
    fn a_base_of_two_platforms_pins_the_index() {
        let text = "profile \"p\" default=#true { registry \"r.example/x\"; }\n\
                    image \"a\" { platforms \"linux/arm64\"; version \"1\"; }\n";
        let source = Source::new("images.kdl".to_owned(), text.to_owned());
        let mut model = crate::manifest::compile(&source, &Default::default()).expect("manifest");
        let base = |name: &str, platform| UpstreamBase {
            name: name.to_owned(),
            platform,
        };
        model.versions[0].platforms[0].bases = vec![
            base("golang:1", BasePlatform::Fixed("linux/amd64".to_owned())),
            base("golang:1", BasePlatform::Target),
            base("debian:12", BasePlatform::Target),
        ];
        let plan = plan(&model, &Selection::default()).expect("plan");
        let build = plan.nodes[0].as_build().expect("a build");
        assert_eq!(
            build.bases,
            [
                Base {
                    reference: "golang:1".to_owned(),
                    platform: None
                },
                Base {
                    reference: "debian:12".to_owned(),
                    platform: Some("linux/arm64".to_owned())
                },
            ]
        );
        let json = serde_json::to_string(&plan.nodes[0]).unwrap();
        assert!(
            json.contains("golang:1=docker-image://golang:1@{upstream:golang:1}"),
            "{json}"
        );
        assert!(json.contains("{upstream:debian:12@linux/arm64}"), "{json}");
    }
}
