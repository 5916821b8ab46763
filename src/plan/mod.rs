//! The plan layer: resolved model → DAG of mirror, build, test and merge nodes.

pub mod command;
pub mod graph;
pub mod node;
pub mod select;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::diag::{Diag, Diagnostics};
use crate::manifest::model::{Backend, Dep, ImageVersion, Mirror, Model, PlatformSettings};
use crate::manifest::platform::Platform;
use command::{Arg, Command, DigestOut, Part, digest_file, file_stem};
pub use node::{Kind, Node};

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
    pub nodes: Vec<Node>,
}

impl Plan {
    pub fn count(&self, kind: Kind) -> usize {
        self.nodes.iter().filter(|n| n.kind == kind).count()
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
}

/// Compile the model into the plan for `selection`.
pub fn plan(model: &Model, selection: &Selection) -> Result<Plan, Diagnostics> {
    let cycles = graph::check_cycles(model);
    if cycles.has_errors() {
        return Err(cycles);
    }
    let picked = select::pick(model, &selection.selectors)?;
    let (versions, mirrors) = closure(model, picked);
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
        && !b.nodes.iter().any(|n| n.kind == Kind::Build)
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
    index: HashMap<String, usize>,
}

impl Builder<'_> {
    fn push(&mut self, mut node: Node) {
        node.seq = self.nodes.len();
        self.index.insert(node.id.clone(), self.nodes.len());
        self.nodes.push(node);
    }

    fn insecure(&self) -> bool {
        self.model.profile.insecure
    }

    fn mirror(&mut self, mi: usize, tag: &str) {
        let m: &Mirror = &self.model.mirrors[mi];
        let id = format!("mirror:{}:{tag}", m.name);
        let platforms: Vec<String> = m
            .platforms
            .iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        let src = format!("{}:{tag}", m.source);
        let dst = format!("{}:{tag}", m.repository);
        let crane = || Command::new("crane").when(self.insecure(), "--insecure");
        let copy = if platforms.is_empty() {
            crane().arg("copy").arg(src).arg(dst.clone())
        } else {
            let mut c = crane().arg("index").arg("filter");
            for p in &platforms {
                c = c.arg("--platform").arg(p.clone());
            }
            c.arg(src).arg("--tag").arg(dst.clone())
        };
        let node = Node {
            id,
            kind: Kind::Mirror,
            image: None,
            version: None,
            variant: None,
            platform: None,
            platforms,
            level: 0,
            needs: Vec::new(),
            reference: m.repository.clone(),
            tags: vec![tag.to_owned()],
            source: Some(m.source.clone()),
            builder: None,
            context: None,
            dockerfile: None,
            target: None,
            args: BTreeMap::new(),
            cache: None,
            test: None,
            commands: vec![copy, crane().arg("digest").arg(dst)],
            digest: DigestOut::Stdout,
            seq: 0,
        };
        self.push(node);
    }

    /// The node a build of `platform` waits for, and the pinned reference it receives.
    fn base(&self, dep: &Dep, platform: &Platform) -> (String, Arg) {
        match dep {
            Dep::Mirror(m, tag) => {
                let m = &self.model.mirrors[*m];
                let id = format!("mirror:{}:{tag}", m.name);
                let arg = Arg(vec![
                    Part::Lit(format!("{}:{tag}@", m.repository)),
                    Part::Digest(id.clone()),
                ]);
                (id, arg)
            }
            Dep::Image(i) => {
                let v = &self.model.versions[*i];
                if self.model.profile.push {
                    let id = format!("merge:{}", v.key);
                    let arg = Arg(vec![
                        Part::Lit(format!("{}:{}@", v.repository, v.primary_tag())),
                        Part::Digest(id.clone()),
                    ]);
                    (id, arg)
                } else {
                    (build_id(v, platform), Arg::lit(local_name(v, platform)))
                }
            }
        }
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
        let mut merge_needs = Vec::new();
        for ps in &platforms {
            let mut needs = Vec::new();
            let mut args: BTreeMap<String, Arg> = ps
                .args
                .iter()
                .map(|(k, v)| (k.clone(), Arg::lit(v.clone())))
                .collect();
            for f in &v.froms {
                let (need, pinned) = self.base(&f.dep, &ps.platform);
                if !needs.contains(&need) {
                    needs.push(need);
                }
                if let Some(a) = &f.arg {
                    args.insert(a.clone(), pinned);
                }
            }
            let id = build_id(v, &ps.platform);
            let builder = model.builder_for(&ps.platform).map(|b| b.name.clone());
            let (commands, digest) = build_commands(model, v, ps, &args, builder.as_deref(), &id);
            merge_needs.push(id.clone());
            self.push(Node {
                id: id.clone(),
                kind: Kind::Build,
                image: Some(v.image.clone()),
                version: Some(v.version.clone()),
                variant: v.variant.clone(),
                platform: Some(ps.platform.to_string()),
                platforms: Vec::new(),
                level: 0,
                needs,
                reference: v.repository.clone(),
                tags: Vec::new(),
                source: None,
                builder,
                context: Some(v.context.clone()),
                dockerfile: Some(v.dockerfile.clone()),
                target: v.target.clone(),
                args: args.iter().map(|(k, a)| (k.clone(), a.display())).collect(),
                cache: ps.cache.clone(),
                test: None,
                commands,
                digest,
                seq: 0,
            });
            if let Some(test) = &ps.test {
                let tid = format!("test:{}@{}", v.key, ps.platform);
                merge_needs.push(tid.clone());
                self.push(Node {
                    id: tid,
                    kind: Kind::Test,
                    image: Some(v.image.clone()),
                    version: Some(v.version.clone()),
                    variant: v.variant.clone(),
                    platform: Some(ps.platform.to_string()),
                    platforms: Vec::new(),
                    level: 0,
                    needs: vec![id.clone()],
                    reference: v.repository.clone(),
                    tags: Vec::new(),
                    source: None,
                    builder: model.builder_for(&ps.platform).map(|b| b.name.clone()),
                    context: None,
                    dockerfile: None,
                    target: None,
                    args: BTreeMap::new(),
                    cache: None,
                    test: Some(test.clone()),
                    commands: vec![test_command(model, v, &ps.platform, &id, test)],
                    digest: DigestOut::None,
                    seq: 0,
                });
            }
        }
        if model.profile.push {
            let builds: Vec<String> = merge_needs
                .iter()
                .filter(|n| n.starts_with("build:"))
                .cloned()
                .collect();
            let (commands, digest) = merge_commands(model, v, &builds);
            self.push(Node {
                id: format!("merge:{}", v.key),
                kind: Kind::Merge,
                image: Some(v.image.clone()),
                version: Some(v.version.clone()),
                variant: v.variant.clone(),
                platform: None,
                platforms: platforms.iter().map(|p| p.platform.to_string()).collect(),
                level: 0,
                needs: merge_needs,
                reference: v.repository.clone(),
                tags: v.tags.clone(),
                source: None,
                builder: None,
                context: None,
                dockerfile: None,
                target: None,
                args: BTreeMap::new(),
                cache: None,
                test: None,
                commands,
                digest,
                seq: 0,
            });
        }
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
        let seq: Vec<usize> = nodes.iter().map(|n| n.seq).collect();
        let (order, levels) = graph::order(&needs, &seq);
        for (n, l) in nodes.iter_mut().zip(&levels) {
            n.level = *l;
        }
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        let nodes = order.iter().filter_map(|&i| slots[i].take()).collect();
        Plan {
            schema: SCHEMA_VERSION,
            profile: model.profile.name.clone(),
            registry: model.profile.registry.clone(),
            backend: model.profile.backend,
            push: model.profile.push,
            platforms: selection.platforms.iter().map(|p| p.to_string()).collect(),
            nodes,
        }
    }
}

pub fn build_id(v: &ImageVersion, platform: &Platform) -> String {
    format!("build:{}@{platform}", v.key)
}

/// The name a build is stored under locally when the profile does not push.
fn local_name(v: &ImageVersion, platform: &Platform) -> String {
    format!(
        "localhost/mab/{}:{}-{}",
        v.image,
        v.primary_tag(),
        platform.slug()
    )
}

fn build_commands(
    model: &Model,
    v: &ImageVersion,
    ps: &PlatformSettings,
    args: &BTreeMap<String, Arg>,
    builder: Option<&str>,
    id: &str,
) -> (Vec<Command>, DigestOut) {
    let profile = &model.profile;
    let build_args = |mut c: Command| {
        for (k, a) in args {
            let mut parts = vec![Part::Lit(format!("{k}="))];
            parts.extend(a.0.iter().cloned());
            c = c.arg("--build-arg").arg(Arg(parts));
        }
        for (k, l) in &ps.labels {
            c = c.arg("--label").arg(format!("{k}={l}"));
        }
        c
    };
    match profile.backend {
        Backend::Buildx => {
            let metadata = format!(".mab/metadata/{}.json", file_stem(id));
            let mut c = Command::new("docker")
                .args(["buildx", "build"])
                .opt("--builder", builder)
                .arg("--platform")
                .arg(ps.platform.as_str())
                .arg("--file")
                .arg(v.dockerfile.clone())
                .opt("--target", v.target.clone());
            c = build_args(c);
            if let Some(cache) = &ps.cache {
                let insecure = if profile.insecure {
                    ",registry.insecure=true"
                } else {
                    ""
                };
                c = c
                    .arg("--cache-from")
                    .arg(format!("type=registry,ref={}{insecure}", cache.reference))
                    .arg("--cache-to")
                    .arg(format!(
                        "type=registry,ref={},mode={}{insecure}",
                        cache.reference, cache.mode
                    ));
            }
            let output = if profile.push {
                format!(
                    "type=image,name={},push-by-digest=true,name-canonical=true,push=true{}",
                    v.repository,
                    if profile.insecure {
                        ",registry.insecure=true"
                    } else {
                        ""
                    }
                )
            } else {
                format!("type=docker,name={}", local_name(v, &ps.platform))
            };
            c = c
                .arg("--output")
                .arg(output)
                .arg("--metadata-file")
                .arg(metadata.clone())
                .arg(v.context.clone());
            (vec![c], DigestOut::BuildxMetadata(metadata))
        }
        Backend::Buildah | Backend::Podman => {
            let tool = profile.backend.as_str();
            let tls = if profile.insecure {
                Some("--tls-verify=false")
            } else {
                None
            };
            let local = local_name(v, &ps.platform);
            let mut c = Command::new(tool)
                .arg("build")
                .arg("--platform")
                .arg(ps.platform.as_str())
                .arg("--file")
                .arg(v.dockerfile.clone())
                .opt("--target", v.target.clone())
                .arg("--layers");
            if let Some(t) = tls {
                c = c.arg(t);
            }
            c = build_args(c);
            if let Some(cache) = &ps.cache {
                // buildah/podman take a repository for the cache; the tag is theirs to choose.
                let repo = strip_tag(&cache.reference);
                c = c
                    .arg("--cache-from")
                    .arg(repo.clone())
                    .arg("--cache-to")
                    .arg(repo);
            }
            c = c.arg("--tag").arg(local.clone()).arg(v.context.clone());
            if !profile.push {
                return (vec![c], DigestOut::None);
            }
            let oci = format!("oci:.mab/oci/{}", file_stem(id));
            let push = Command::new(tool)
                .arg("push")
                .arg("--quiet")
                .arg("--digestfile")
                .arg(digest_file(id))
                .arg(local)
                .arg(oci.clone());
            let mut copy = Command::new("skopeo").arg("copy").arg("--preserve-digests");
            if profile.insecure {
                copy = copy.arg("--dest-tls-verify=false");
            }
            let dest = Arg(vec![
                Part::Lit(format!("docker://{}@", v.repository)),
                Part::Digest(id.to_owned()),
            ]);
            copy = copy.arg(oci).arg(dest);
            (vec![c, push, copy], DigestOut::File)
        }
    }
}

fn strip_tag(reference: &str) -> String {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => reference.to_owned(),
    }
}

fn test_command(
    model: &Model,
    v: &ImageVersion,
    platform: &Platform,
    build: &str,
    test: &[String],
) -> Command {
    let image = if model.profile.push {
        Arg(vec![
            Part::Lit(format!("{}@", v.repository)),
            Part::Digest(build.to_owned()),
        ])
    } else {
        Arg::lit(local_name(v, platform))
    };
    let tool = match model.profile.backend {
        Backend::Buildx => "docker",
        Backend::Buildah | Backend::Podman => "podman",
    };
    let mut c = Command::new(tool)
        .arg("run")
        .arg("--rm")
        .arg("--platform")
        .arg(platform.as_str());
    if model.profile.insecure && tool == "podman" {
        c = c.arg("--tls-verify=false");
    }
    c = c.arg(image);
    match test {
        [one] => c.arg("sh").arg("-c").arg(one.clone()),
        words => c.args(words.iter().cloned()),
    }
}

fn merge_commands(model: &Model, v: &ImageVersion, builds: &[String]) -> (Vec<Command>, DigestOut) {
    let crane = || Command::new("crane").when(model.profile.insecure, "--insecure");
    let first = format!("{}:{}", v.repository, v.tags[0]);
    let mut c = crane().arg("index").arg("append");
    for b in builds {
        c = c.arg("--manifest").arg(Arg(vec![
            Part::Lit(format!("{}@", v.repository)),
            Part::Digest(b.clone()),
        ]));
    }
    let mut cmds = vec![c.arg("--tag").arg(first.clone())];
    for t in &v.tags[1..] {
        cmds.push(crane().arg("tag").arg(first.clone()).arg(t.clone()));
    }
    cmds.push(crane().arg("digest").arg(first));
    (cmds, DigestOut::Stdout)
}
