//! Command lines of plan nodes, per backend. Digests that are only known when the
//! plan runs appear as [`Part::Digest`] placeholders naming the node that produces them.

use super::NodeId;
pub use super::argv::{Arg, Command, Part};
use super::node::{BuildWork, Image, MergeWork, MirrorWork, Node, TestWork, Work};
use crate::manifest::model::{Backend, SecretSource};
use crate::manifest::platform::Platform;

/// Where the digest a node publishes can be read once its commands ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestOut {
    /// The node publishes nothing others pin to.
    None,
    /// The last command prints the digest on stdout.
    Stdout,
    /// A command writes it to the node's digest file itself (`--digestfile`).
    File,
    /// `docker buildx build --metadata-file PATH` writes it as `containerimage.digest`.
    BuildxMetadata(String),
}

/// `.mab/digests/<id>` with the id made safe as a file name.
pub fn digest_file(id: &NodeId) -> String {
    format!(".mab/digests/{}", file_stem(&id.to_string()))
}

pub use crate::files::file_stem;

/// The name a build is stored under locally when the profile does not push.
pub fn local_name(image: &str, tag: &str, platform: &str) -> String {
    let slug = Platform::parse(platform).map_or_else(|_| platform.replace('/', "-"), |p| p.slug());
    format!("localhost/mab/{image}:{tag}-{slug}")
}

fn pinned(repository: &str, node: &NodeId) -> Arg {
    Arg(vec![
        Part::Lit(format!("{repository}@")),
        Part::Digest(node.clone()),
    ])
}

impl Node {
    /// The commands this node runs, for the profile's backend.
    pub fn commands(&self) -> Vec<Command> {
        let steps = for_node(self);
        let mut all = steps.commands;
        all.extend(steps.cleanup);
        all
    }
}

/// What a node runs: its commands in order, commands that run afterwards whatever
/// happened (removing a test container), and where its digest can be read.
#[derive(Clone, Debug)]
pub struct Steps {
    pub commands: Vec<Command>,
    pub cleanup: Vec<Command>,
    pub digest: DigestOut,
}

/// The steps of `node` for its profile's backend.
pub fn for_node(node: &Node) -> Steps {
    let (commands, digest) = match &node.work {
        Work::Mirror(m) => mirror(node, m),
        Work::Build(b) => return build(node, b),
        Work::Test(t) => return test(node, t),
        Work::Merge(m) => merge(node, m),
    };
    Steps {
        commands,
        cleanup: Vec::new(),
        digest,
    }
}

fn crane(node: &Node) -> Command {
    Command::new("crane").when(node.publish.insecure, "--insecure")
}

fn mirror(node: &Node, m: &MirrorWork) -> (Vec<Command>, DigestOut) {
    let tag = node.tags().first().map_or("", String::as_str);
    let src = format!("{}:{tag}", m.source);
    let dst = format!("{}:{tag}", m.repository);
    let copy = if m.platforms.is_empty() {
        crane(node).arg("copy").arg(src).arg(dst.clone())
    } else {
        let mut c = crane(node).arg("index").arg("filter");
        for p in &m.platforms {
            c = c.arg("--platform").arg(p.clone());
        }
        c.arg(src).arg("--tag").arg(dst.clone())
    };
    (
        vec![copy, crane(node).arg("digest").arg(dst)],
        DigestOut::Stdout,
    )
}

/// The name a build of `image` for `platform` is stored under locally.
fn local_of(node: &Node, image: &Image) -> String {
    let tag = node
        .key()
        .and_then(|k| k.split_once(':'))
        .map_or("", |k| k.1);
    local_name(&image.name, tag, node.platform().unwrap_or(""))
}

fn build(node: &Node, b: &BuildWork) -> Steps {
    match node.publish.backend {
        Backend::Buildx => buildx_build(node, b),
        Backend::Buildah | Backend::Podman => buildah_build(node, b),
    }
}

/// A build command's `--build-arg`, `--label`, `--secret` and `--build-context` flags: each
/// upstream base is pinned to the digest the run resolved (and hashed) for it.
fn with_build_flags(mut c: Command, b: &BuildWork, backend: Backend) -> Command {
    // Rebuilt for its age: every step runs again (the bases are still pinned, and pulled).
    c = c.when(b.no_cache, "--no-cache");
    for base in &b.bases {
        c = c.arg("--build-context").arg(Arg(vec![
            Part::Lit(format!("{0}=docker-image://{0}@", base.reference)),
            Part::Upstream {
                reference: base.reference.clone(),
                platform: base.platform.clone(),
            },
        ]));
    }
    for (k, a) in &b.args {
        let mut parts = vec![Part::Lit(format!("{k}="))];
        parts.extend(a.0.iter().cloned());
        c = c.arg("--build-arg").arg(Arg(parts));
    }
    for (k, l) in &b.labels {
        c = c.arg("--label").arg(format!("{k}={l}"));
    }
    // buildx reads a `TYPE:` before the key; the key itself has no `:` or `=`.
    let level = if backend == Backend::Buildx {
        "manifest:"
    } else {
        ""
    };
    for (k, a) in &b.annotations {
        c = c.arg("--annotation").arg(format!("{level}{k}={a}"));
    }
    // The commit's time: image `created`, history and (buildah; buildx with
    // `rewrite-timestamp`) file times, so a rebuild of the same inputs gives the same bytes.
    // The manifest's own `arg SOURCE_DATE_EPOCH` wins.
    if let Some(epoch) = b
        .epoch
        .filter(|_| !b.args.contains_key(crate::origin::EPOCH_VAR))
    {
        c = match backend {
            Backend::Buildx => c
                .arg("--build-arg")
                .arg(format!("{}={epoch}", crate::origin::EPOCH_VAR)),
            Backend::Buildah | Backend::Podman => c.arg("--timestamp").arg(epoch.to_string()),
        };
    }
    // Where each secret comes from, never its value: the builder reads it.
    for (id, source) in &b.secrets {
        let spec = match (source, backend) {
            (SecretSource::Env(var), Backend::Buildx) => format!("id={id},env={var}"),
            (SecretSource::Env(var), _) => format!("id={id},src={var},type=env"),
            (SecretSource::File(path), _) => format!("id={id},src={path}"),
        };
        c = c.arg("--secret").arg(spec);
    }
    c
}

/// `docker buildx build`: pushed by digest (or cache only, or loaded locally), the digest
/// read from its metadata file.
fn buildx_build(node: &Node, b: &BuildWork) -> Steps {
    let p = node.publish;
    let platform = node.platform().unwrap_or("");
    let metadata = format!(".mab/metadata/{}.json", file_stem(&node.id.to_string()));
    let insecure = if p.insecure {
        ",registry.insecure=true"
    } else {
        ""
    };
    let mut c = Command::new("docker")
        .args(["buildx", "build"])
        .opt("--builder", b.builder.clone())
        .arg("--platform")
        .arg(platform)
        .args(["--progress", "plain"])
        .arg("--file")
        .arg(b.dockerfile.clone())
        .opt("--target", b.target.clone());
    c = with_build_flags(c, b, p.backend);
    // A run that publishes nothing (`push #false`) reads the registry cache but does
    // not write it; `seed` writes only it.
    let write_cache = p.push || p.cache_only;
    if let Some(cache) = &b.cache {
        c = c
            .arg("--cache-from")
            .arg(format!("type=registry,ref={}{insecure}", cache.reference));
        if write_cache {
            c = c.arg("--cache-to").arg(format!(
                "type=registry,ref={},mode={}{insecure}",
                cache.reference, cache.mode
            ));
        }
    }
    match b.attest.as_deref() {
        None | Some([]) => c = c.arg("--provenance=false"),
        Some(requests) => {
            for a in requests {
                c = c.arg("--attest").arg(a.clone());
            }
        }
    }
    let output = if p.cache_only {
        "type=cacheonly".to_owned()
    } else if p.push {
        let rewrite = if b.epoch.is_some() || b.args.contains_key(crate::origin::EPOCH_VAR) {
            ",rewrite-timestamp=true"
        } else {
            ""
        };
        format!(
            "type=image,name={},push-by-digest=true,name-canonical=true,push=true{rewrite}{insecure}",
            b.image.repository
        )
    } else {
        format!("type=docker,name={}", local_of(node, &b.image))
    };
    c = c
        .arg("--output")
        .arg(output)
        .arg("--metadata-file")
        .arg(metadata.clone())
        .arg(b.context.clone());
    Steps {
        commands: vec![c],
        cleanup: Vec::new(),
        digest: DigestOut::BuildxMetadata(metadata),
    }
}

/// `buildah build` / `podman build`: a local image without push; pushing, the image ID it
/// wrote goes through an OCI layout to the registry by digest.
fn buildah_build(node: &Node, b: &BuildWork) -> Steps {
    let p = node.publish;
    let tool = p.backend.as_str();
    let mut c = Command::new(tool)
        .arg("build")
        .arg("--platform")
        .arg(node.platform().unwrap_or(""))
        .arg("--file")
        .arg(b.dockerfile.clone())
        .opt("--target", b.target.clone())
        .arg("--layers")
        // A failed step's container is removed too (buildah keeps it by default).
        .arg("--force-rm")
        .when(p.insecure, "--tls-verify=false");
    c = with_build_flags(c, b, p.backend);
    if let Some(cache) = &b.cache {
        // buildah/podman take a repository for the cache; the tag is theirs to choose.
        let repo = strip_tag(&cache.reference);
        c = c.arg("--cache-from").arg(repo.clone());
        if p.push || p.cache_only {
            c = c.arg("--cache-to").arg(repo);
        }
    }
    if !p.push {
        // Without push, the local image is the product: a stable name.
        return Steps {
            commands: vec![
                c.arg("--tag")
                    .arg(local_of(node, &b.image))
                    .arg(b.context.clone()),
            ],
            cleanup: Vec::new(),
            digest: DigestOut::None,
        };
    }
    // Pushing: no local tag at all, which another run on this host (another checkout
    // building an image of the same name) could move between build and push; the
    // push names the image by the ID the build wrote, i.e. by its content.
    let stem = file_stem(&node.id.to_string());
    let iid = format!(".mab/iid/{stem}");
    c = c.arg("--iidfile").arg(iid.clone()).arg(b.context.clone());
    let layout = format!(".mab/oci/{stem}");
    let oci = format!("oci:{layout}");
    // A layout of an earlier run would hold two images; skopeo then cannot choose.
    let clear = Command::new("rm").arg("-rf").arg(layout.clone());
    let push = Command::new(tool)
        .arg("push")
        .arg("--quiet")
        .arg("--digestfile")
        .arg(digest_file(&node.id))
        .arg(Arg(vec![Part::File(iid.clone())]))
        .arg(oci.clone());
    let copy = Command::new("skopeo")
        .arg("copy")
        .arg("--preserve-digests")
        .when(p.insecure, "--dest-tls-verify=false")
        .arg(oci)
        .arg(pinned(
            &format!("docker://{}", b.image.repository),
            &node.id,
        ));
    // The layout was only the way to the registry: a copy of the image per node.
    let remove = Command::new("rm").arg("-rf").arg(layout).arg(iid);
    Steps {
        commands: vec![c, clear, push, copy],
        cleanup: vec![remove],
        digest: DigestOut::File,
    }
}

fn strip_tag(reference: &str) -> String {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => reference.to_owned(),
    }
}

fn test(node: &Node, t: &TestWork) -> Steps {
    let p = node.publish;
    let platform = node.platform().unwrap_or("");
    let Some(build) = node.id.build() else {
        return Steps {
            commands: Vec::new(),
            cleanup: Vec::new(),
            digest: DigestOut::None,
        };
    };
    let build = &build;
    let local = local_of(node, &t.image);
    let reference = &t.image.repository;
    let words: Vec<String> = match t.test.as_slice() {
        [one] => vec!["sh".into(), "-c".into(), one.clone()],
        words => words.to_vec(),
    };
    let steps = |commands, cleanup| Steps {
        commands,
        cleanup,
        digest: DigestOut::None,
    };
    match p.backend {
        // buildah runs the smoke test in a working container of the pushed image.
        Backend::Buildah => {
            // The working container is named by buildah (unique on the host) and found again
            // through its ID file: a fixed name would collide with the same test of a run in
            // another checkout.
            let cid = format!(".mab/cid/{}", file_stem(&node.id.to_string()));
            let name = Arg(vec![Part::File(cid.clone())]);
            let image = if p.push {
                let mut parts = vec![Part::Lit(format!("docker://{reference}@"))];
                parts.push(Part::Digest(build.clone()));
                Arg(parts)
            } else {
                Arg::lit(format!("containers-storage:{local}"))
            };
            let clear = Command::new("rm").arg("-f").arg(cid.clone());
            let from = Command::new("buildah")
                .arg("from")
                .arg("--cidfile")
                .arg(cid)
                .arg("--platform")
                .arg(platform)
                .when(p.insecure, "--tls-verify=false")
                .arg(image);
            let run = Command::new("buildah")
                .arg("run")
                .arg(name.clone())
                .arg("--")
                .args(words);
            steps(
                vec![clear, from, run],
                vec![Command::new("buildah").arg("rm").arg(name)],
            )
        }
        // buildx: a build on the builder that owns the platform, of the pushed image plus one
        // `RUN` of the test, with no output: no Docker daemon needed, native where the builder
        // node is, emulated otherwise. `--no-cache`, so the test really runs every time.
        Backend::Buildx => {
            let image = if p.push {
                pinned(reference, build)
            } else {
                Arg::lit(local.clone())
            };
            let c = Command::new("docker")
                .args(["buildx", "build"])
                .opt("--builder", t.builder.clone())
                .arg("--platform")
                .arg(platform)
                .args(["--progress", "plain", "--no-cache", "--provenance=false"])
                .arg("--output")
                .arg("type=cacheonly")
                .arg("--build-arg")
                .arg(Arg([
                    vec![Part::Lit("MAB_TEST_IMAGE=".to_owned())],
                    image.0,
                ]
                .concat()))
                .arg("-")
                .stdin(test_dockerfile(&words));
            steps(vec![c], Vec::new())
        }
        Backend::Podman => {
            let image = if p.push {
                pinned(reference, build)
            } else {
                Arg::lit(local.clone())
            };
            let c = Command::new("podman")
                .arg("run")
                .arg("--rm")
                .arg("--platform")
                .arg(platform)
                .when(p.insecure, "--tls-verify=false")
                .arg(image)
                .args(words);
            steps(vec![c], Vec::new())
        }
    }
}

/// The Dockerfile of a test under buildx: the image under test, and the test as one exec-form
/// `RUN` (a JSON array: quotes, newlines and non-ASCII reach the command exactly).
pub fn test_dockerfile(words: &[String]) -> String {
    format!(
        "# check=skip=InvalidDefaultArgInFrom\nARG MAB_TEST_IMAGE\nFROM ${{MAB_TEST_IMAGE}}\nRUN {}\n",
        serde_json::to_string(words).unwrap_or_default()
    )
}

/// The index a merge publishes, composed by `jq` from each platform's manifest exactly as
/// `mab build` composes it (`exec/merge.rs`): each build's image — or, when the build pushed an
/// index (buildx), its image for the platform and that image's attestation manifests — the
/// images first, each stamped with the time it was built (`io.mab.built`), the index's own
/// annotations, an OCI index unless every child is a Docker manifest and there are no
/// annotations. Entries keep only the fields mab writes, in mab's order, so the bytes are the
/// same. Arguments: `$mN`/`$dN`/`$pN` (a manifest's bytes, its digest, its platform) per build,
/// `$annotations`.
pub const INDEX_JQ: &str = r#"def attests: (.annotations // {}) as $a
  | if $a["vnd.docker.reference.type"] == "attestation-manifest" then $a["vnd.docker.reference.digest"] else null end;
def plat: split("/") | {architecture: .[1], os: .[0]} + (if .[2] then {variant: .[2]} else {} end);
def norm: if .architecture == "arm64" and .variant == "v8" then null else .variant end;
def desc: {mediaType, digest, size}
  + (if .platform then {platform: (.platform | {architecture, os} + (if .variant then {variant} else {} end))} else {} end)
  + (if (.annotations // {}) != {} then {annotations: (.annotations | to_entries | sort_by(.key) | from_entries)} else {} end);
def entries($raw; $d; $p): ($raw | fromjson) as $m | ($p | plat) as $w
  | if $m.manifests then
      [$m.manifests[] | select(attests == null and .platform != null and .platform.os == $w.os
        and .platform.architecture == $w.architecture and (.platform | norm) == ($w | norm))] as $i
      | if ($i | length) != 1 then error("\($d) holds \($i | length) images for \($p)")
        else [$m.manifests[] | select((attests // .digest) as $x | $i | any(.digest == $x))] end
    else [{mediaType: $m.mediaType, digest: $d, size: ($raw | utf8bytelength), platform: $w}] end;
def index($entries; $annotations): (now | floor | todate) as $built
  | ($entries | add | map(if attests == null then .annotations = ((.annotations // {}) + {"io.mab.built": $built}) else . end | desc)) as $all
  | {schemaVersion: 2,
     mediaType: (if $annotations == {} and ($all | all(.mediaType == "application/vnd.docker.distribution.manifest.v2+json"))
       then "application/vnd.docker.distribution.manifest.list.v2+json" else "application/vnd.oci.image.index.v1+json" end),
     manifests: ([$all[] | select(attests == null)] + [$all[] | select(attests != null)])}
  + (if $annotations == {} then {} else {annotations: $annotations} end);
"#;

/// A merge as commands a user has: each platform's manifest read with `crane manifest`, the
/// index composed by `jq` ([`INDEX_JQ`]), then put once at each tag (`crane edit manifest`
/// puts the bytes it reads as they are) — after every build and test of the version, as
/// `mab build` does. What these commands do not do that `mab build` does: sign, refuse to
/// move a dated tag, keep the index of an earlier commit that published the same images.
fn merge(node: &Node, m: &MergeWork) -> (Vec<Command>, DigestOut) {
    let reference = &m.image.repository;
    let stem = file_stem(&node.id.to_string());
    let builds: Vec<(&NodeId, &str)> = node
        .needs
        .iter()
        .filter_map(|n| match n {
            NodeId::Build { platform, .. } => Some((n, platform.as_str())),
            _ => None,
        })
        .collect();
    let mut cmds = Vec::new();
    let mut jq = Command::new("jq").arg("-cjn");
    let mut calls = Vec::new();
    for (i, (b, platform)) in builds.iter().enumerate() {
        let file = format!(".mab/merge/{stem}.{i}.json");
        cmds.push(
            crane(node)
                .arg("manifest")
                .arg(pinned(reference, b))
                .stdout_to(file.clone()),
        );
        jq = jq
            .arg("--rawfile")
            .arg(format!("m{i}"))
            .arg(file)
            .arg("--arg")
            .arg(format!("d{i}"))
            .arg(Arg(vec![Part::Digest((*b).clone())]))
            .arg("--arg")
            .arg(format!("p{i}"))
            .arg(platform.to_string());
        calls.push(format!("entries($m{i}; $d{i}; $p{i})"));
    }
    let index = format!(".mab/merge/{stem}.json");
    let annotations = serde_json::to_string(&m.annotations).unwrap_or_else(|_| "{}".to_owned());
    cmds.push(
        jq.arg("--argjson")
            .arg("annotations")
            .arg(annotations)
            .arg(format!(
                "{INDEX_JQ}index([{}]; $annotations)",
                calls.join(", ")
            ))
            .stdout_to(index.clone()),
    );
    // Each tag is written once, with the whole index; the index is only read from the
    // first build's image reference, which exists (`crane edit` reads before it writes).
    if let Some((first, _)) = builds.first() {
        for t in &m.tags {
            cmds.push(
                crane(node)
                    .args(["edit", "manifest"])
                    .arg(pinned(reference, first))
                    .arg("--tag")
                    .arg(format!("{reference}:{t}"))
                    .stdin_from(index.clone()),
            );
        }
    }
    let first = format!("{reference}:{}", m.tags.first().map_or("", String::as_str));
    cmds.push(crane(node).arg("digest").arg(first));
    (cmds, DigestOut::Stdout)
}

/// The command that creates the builder of a block with an endpoint.
pub fn create_command(b: &crate::manifest::model::Builder) -> Option<Command> {
    let endpoint = b.endpoint.as_deref()?;
    let mut c = Command::new("docker")
        .args(["buildx", "create", "--name"])
        .arg(b.name.clone())
        .arg("--driver")
        .arg(crate::manifest::model::endpoint_driver(endpoint)?);
    for p in &b.platforms {
        c = c.arg("--platform").arg(p.to_string());
    }
    Some(c.arg(endpoint.to_owned()))
}
