//! Running one node: builds and tests as child processes, mirrors and merges as
//! registry calls. Every failure comes back as a [`NodeResult`], never a panic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::Context;
use super::process::{self, Exit};
use super::report::{CacheCounter, CacheUse, NodeResult, Status};
use crate::inputs;
use crate::plan::command::{self, Arg, DigestOut, digest_file, file_stem};
use crate::plan::{Kind, Node};
use crate::registry::{self, Descriptor, index_bytes, is_digest};

/// The outcome of a node's work, before timing is added.
struct Done {
    status: Status,
    reason: Option<String>,
    digest: Option<String>,
    cache: Option<CacheUse>,
    source_digest: Option<String>,
}

impl Done {
    fn ok(digest: Option<String>) -> Done {
        Done {
            status: Status::Ok,
            reason: None,
            digest,
            cache: None,
            source_digest: None,
        }
    }

    fn cancelled(reason: &str) -> Done {
        Done {
            status: Status::Cancelled,
            reason: Some(reason.to_owned()),
            digest: None,
            cache: None,
            source_digest: None,
        }
    }

    fn current(digest: String) -> Done {
        Done {
            status: Status::Current,
            reason: None,
            digest: Some(digest),
            cache: None,
            source_digest: None,
        }
    }

    fn failed(reason: impl Into<String>) -> Done {
        Done {
            status: Status::Failed,
            reason: Some(reason.into()),
            digest: None,
            cache: None,
            source_digest: None,
        }
    }
}

/// What a split build leaves for `mab merge`: one file per build node.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BuildMetadata {
    pub id: String,
    pub image: String,
    pub key: String,
    pub platform: String,
    pub repository: String,
    pub digest: String,
}

pub async fn run(node: &Node, ctx: &Context) -> NodeResult {
    let start = Instant::now();
    if ctx.options.dry_run {
        return NodeResult {
            id: node.id.clone(),
            kind: node.kind,
            status: Status::Planned,
            reason: None,
            duration_ms: 0,
            digest: None,
            source_digest: None,
            cache: None,
            log: None,
        };
    }
    // What an earlier run said of this build no longer holds: should this one (or its test)
    // fail, no merge may take the earlier image for it.
    if node.kind == Kind::Build
        && let Some(dir) = &ctx.options.metadata_dir
    {
        let _ = std::fs::remove_file(dir.join(format!("{}.json", file_stem(&node.id))));
    }
    let log_path = ctx
        .options
        .workdir
        .join(".mab/logs")
        .join(format!("{}.log", file_stem(&node.id)));
    let done = match open_log(&log_path).await {
        Err(e) => Done::failed(format!("cannot write log {}: {e}", log_path.display())),
        Ok(mut log) => {
            let done = if ctx.options.sleep_backend {
                sleep_node(node, ctx).await
            } else {
                match node.kind {
                    Kind::Build | Kind::Test => commands(node, ctx, &mut log).await,
                    Kind::Merge => merge(node, ctx, &mut log).await,
                    Kind::Mirror => mirror(node, ctx, &mut log).await,
                }
            };
            // A failure's reason is in its log too (a mirror writes nothing else there).
            if done.status == Status::Failed
                && let Some(r) = &done.reason
            {
                let _ = log.write_all(format!("error: {r}\n").as_bytes()).await;
            }
            let _ = log.flush().await;
            done
        }
    };
    let mut done = done;
    if done.status == Status::Ok && ctx.cancelled() {
        // Finished, but what it produced is not used: nothing is published after a signal.
        done.status = Status::Cancelled;
        done.reason = Some("interrupted".to_owned());
    }
    if let Some(d) = &done.digest
        && done.status.succeeded()
    {
        ctx.set_digest(&node.id, d.clone());
    }
    // Split-build metadata says "this image may be merged": a build's is written once its
    // test (if the run has one) passed, so a merge never publishes an untested image.
    let ready = match node.kind {
        Kind::Build if !ctx.tested.contains(&node.id) => {
            done.digest.clone().map(|d| (node.id.clone(), d))
        }
        Kind::Test => node
            .needs
            .first()
            .and_then(|b| Some((b.clone(), ctx.digest(b)?))),
        _ => None,
    };
    if done.status.succeeded()
        && let (Some(dir), Some((build, d))) = (&ctx.options.metadata_dir, ready)
        && let Err(e) = write_metadata(dir, &build, node, &d)
    {
        done = Done::failed(format!("cannot write metadata in {}: {e}", dir.display()));
    }
    NodeResult {
        id: node.id.clone(),
        kind: node.kind,
        status: done.status,
        reason: done.reason,
        duration_ms: start.elapsed().as_millis() as u64,
        digest: done.digest,
        source_digest: done.source_digest,
        cache: done.cache,
        log: (!ctx.options.sleep_backend).then(|| relative(&log_path, &ctx.options.workdir)),
    }
}

fn relative(path: &std::path::Path, base: &std::path::Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

async fn open_log(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    match tokio::fs::File::create(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::File::create(path).await
        }
        other => other,
    }
}

/// The metadata of build `id`, written when `node` (the build, or its test) succeeded.
fn write_metadata(
    dir: &std::path::Path,
    id: &str,
    node: &Node,
    digest: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let m = BuildMetadata {
        id: id.to_owned(),
        image: node.image.clone().unwrap_or_default(),
        key: node.key().unwrap_or_default().to_owned(),
        platform: node.platform.clone().unwrap_or_default(),
        repository: node.reference.clone(),
        digest: digest.to_owned(),
    };
    let path = dir.join(format!("{}.json", file_stem(id)));
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&m).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// The test backend (`MAB_TEST_BACKEND=sleep`): a build sleeps for its `MAB_SLEEP_MS`
/// build arg and fails when `MAB_FAIL` is `1`; every other node is instant. It measures
/// the scheduler alone and tests failure handling without a builder or registry.
async fn sleep_node(node: &Node, ctx: &Context) -> Done {
    let arg = |name: &str| node.args.get(name).map(Arg::display);
    if node.kind != Kind::Build {
        return Done::ok(Some(registry::digest_of(node.id.as_bytes())));
    }
    let ms = arg("MAB_SLEEP_MS")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    // A thread sleep lasts what it says; tokio's timer wheel rounds every sleep up to its
    // next millisecond tick, which would bill the backend's imprecision to the scheduler.
    let work = tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(ms)));
    let mut cancel = ctx.cancel.clone();
    tokio::select! {
        _ = work => {
            if arg("MAB_FAIL").as_deref() == Some("1") {
                Done::failed("MAB_FAIL is set")
            } else {
                Done::ok(Some(registry::digest_of(node.id.as_bytes())))
            }
        }
        _ = cancel.changed() => Done::cancelled("interrupted"),
    }
}

/// Replace digest placeholders with what the named nodes published, and file placeholders
/// with the image ID an earlier command wrote (which must look like one).
fn resolve(arg: &Arg, ctx: &Context) -> Result<String, String> {
    use crate::plan::command::Part;
    let mut parts = Vec::with_capacity(arg.0.len());
    for p in &arg.0 {
        parts.push(match p {
            Part::File(path) => Part::Lit(read_image_id(&ctx.options.workdir.join(path), path)?),
            other => other.clone(),
        });
    }
    inputs::resolve(&Arg(parts), &|id| ctx.digest(id))
}

fn read_image_id(file: &std::path::Path, name: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("no image ID in {name}: {e}"))?;
    let id = text.trim();
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("malformed image ID in {name}: {id:?}"));
    }
    Ok(id.to_owned())
}

/// A digest file must hold exactly one well-formed digest: anything else fails the node.
async fn read_digest_file(path: &std::path::Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("no digest file {}: {e}", path.display()))?;
    let d = text.trim();
    if is_digest(d) {
        Ok(d.to_owned())
    } else {
        Err(format!("malformed digest in {}: {d:?}", path.display()))
    }
}

async fn read_buildx_metadata(path: &std::path::Path) -> Result<String, String> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|e| format!("no metadata file {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("malformed metadata file {}: {e}", path.display()))?;
    let d = json
        .get("containerimage.digest")
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    if is_digest(d) {
        Ok(d.to_owned())
    } else {
        Err(format!(
            "no image digest in metadata file {}",
            path.display()
        ))
    }
}

/// Builds and tests: the node's commands as child processes.
/// The input components of `node` (see [`crate::inputs`]); context hashes are shared
/// between the platforms of one image.
async fn input_components(
    node: &Node,
    ctx: &Context,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let dir = ctx.options.workdir.clone();
    let key = (
        dir.join(node.context.as_deref().unwrap_or(".")),
        dir.join(node.dockerfile.as_deref().unwrap_or("Dockerfile")),
    );
    let cached = ctx
        .context_hashes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let context_hash = match cached {
        Some(h) => h,
        None => {
            let n = node.clone();
            let h = tokio::task::spawn_blocking(move || inputs::context_hash(&n, &dir))
                .await
                .map_err(|e| e.to_string())??;
            ctx.context_hashes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, h.clone());
            h
        }
    };
    inputs::components(node, &context_hash, &|id| ctx.digest(id))
}

/// The digest of the image published for `node` when it has the same inputs, else why not.
/// Builds and `plan --check-registry` decide with it alike.
pub async fn reusable(
    node: &Node,
    registry: &crate::registry::Registry,
    components: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let input = inputs::hash(components);
    let tag = node
        .key()
        .and_then(|k| k.split_once(':'))
        .map_or("", |k| k.1);
    let platform = node.platform.as_deref().unwrap_or("");
    let child = match registry
        .published_child(&node.reference, tag, platform)
        .await
    {
        Ok(Some(child)) => child,
        Ok(None) => {
            return Err(format!(
                "nothing is published at {}:{tag} for {platform}",
                node.reference
            ));
        }
        Err(e) => return Err(format!("cannot read {}:{tag}: {e}", node.reference)),
    };
    match registry.labels(&node.reference, &child).await {
        Ok(labels) => match labels.get(inputs::INPUT_LABEL) {
            Some(published) if *published == input => Ok(child),
            Some(_) => Err(inputs::describe(&inputs::changed(
                labels.get(inputs::INPUTS_LABEL).map_or("", String::as_str),
                components,
            ))),
            None => Err("the published image carries no input hash".to_owned()),
        },
        Err(e) => Err(format!(
            "cannot read the labels of {}@{child}: {e}",
            node.reference
        )),
    }
}

async fn commands(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    // A test of an image that was reused, not rebuilt, passed when that image was published.
    if node.kind == Kind::Test
        && let Some(build) = node.needs.first()
        && ctx
            .reused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(build)
    {
        return Done {
            status: Status::Reused,
            ..Done::ok(None)
        };
    }
    let mut labelled;
    let mut node = node;
    if node.kind == Kind::Build && node.publish.push {
        let components = match input_components(node, ctx).await {
            Ok(c) => c,
            Err(e) => return Done::failed(e),
        };
        let input = inputs::hash(&components);
        let found = if ctx.options.reuse {
            reusable(node, &ctx.registry, &components).await
        } else {
            Err("--no-reuse".to_owned())
        };
        match found {
            Ok(digest) => {
                let _ = log
                    .write_all(
                        format!(
                            "reused {}@{digest}: same input hash {input}\n",
                            node.reference
                        )
                        .as_bytes(),
                    )
                    .await;
                ctx.reporter
                    .line(&node.id, &format!("reused {digest} (input hash unchanged)"));
                ctx.reused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(node.id.clone());
                return Done {
                    status: Status::Reused,
                    ..Done::ok(Some(digest))
                };
            }
            Err(why) => {
                let _ = log.write_all(format!("building: {why}\n").as_bytes()).await;
                ctx.reporter.line(&node.id, &format!("building: {why}"));
            }
        }
        labelled = node.clone();
        labelled
            .labels
            .insert(inputs::INPUT_LABEL.to_owned(), input);
        labelled.labels.insert(
            inputs::INPUTS_LABEL.to_owned(),
            inputs::fingerprints(&components),
        );
        node = &labelled;
    }
    let steps = command::for_node(node);
    let dir = &ctx.options.workdir;
    for sub in [
        ".mab/digests",
        ".mab/metadata",
        ".mab/oci",
        ".mab/iid",
        ".mab/cid",
    ] {
        let _ = tokio::fs::create_dir_all(dir.join(sub)).await;
    }
    let own_digest = dir.join(digest_file(&node.id));
    let _ = tokio::fs::remove_file(&own_digest).await;
    // Nor may an image ID of an earlier run be pushed in place of this one's.
    let _ = tokio::fs::remove_file(dir.join(".mab/iid").join(file_stem(&node.id))).await;
    let mut cache = CacheCounter::default();
    let mut failure: Option<Done> = None;
    let mut cancel = ctx.cancel.clone();
    for cmd in &steps.commands {
        let argv: Result<Vec<String>, String> = cmd.argv.iter().map(|a| resolve(a, ctx)).collect();
        let argv = match argv {
            Ok(a) => a,
            Err(e) => {
                failure = Some(Done::failed(e));
                break;
            }
        };
        let _ = log
            .write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
            .await;
        let mut on_line = |l: &str| {
            cache.line(l);
            ctx.reporter.line(&node.id, l);
        };
        let exit = process::run(
            &argv,
            cmd.stdin.as_deref(),
            dir,
            log,
            &mut cancel,
            ctx.options.grace,
            &mut on_line,
        )
        .await;
        match exit {
            Exit::Code(0) => {}
            Exit::Code(c) => {
                failure = Some(Done::failed(format!(
                    "`{}` exited with {c}",
                    argv[..2.min(argv.len())].join(" ")
                )));
                break;
            }
            Exit::Signal => {
                failure = Some(Done::failed(format!(
                    "`{}` was killed by a signal",
                    argv[0]
                )));
                break;
            }
            Exit::Cancelled => {
                failure = Some(Done::cancelled("interrupted"));
                break;
            }
            Exit::SpawnFailed(e) => {
                failure = Some(Done::failed(e));
                break;
            }
        }
        // `--digestfile` has written the digest the following commands pin.
        if steps.digest == DigestOut::File
            && tokio::fs::try_exists(&own_digest).await.unwrap_or(false)
        {
            match read_digest_file(&own_digest).await {
                Ok(d) => ctx.set_digest(&node.id, d),
                Err(e) => {
                    failure = Some(Done::failed(e));
                    break;
                }
            }
        }
    }
    for cmd in &steps.cleanup {
        if let Ok(argv) = cmd
            .argv
            .iter()
            .map(|a| resolve(a, ctx))
            .collect::<Result<Vec<_>, _>>()
        {
            let _ = log
                .write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
                .await;
            // Cleanup runs even after a signal, so nothing is left behind.
            let (_tx, mut never) = tokio::sync::watch::channel(super::Cancel::None);
            let _ = process::run(
                &argv,
                None,
                dir,
                log,
                &mut never,
                ctx.options.grace,
                &mut |_| {},
            )
            .await;
        }
    }
    if let Some(f) = failure {
        return f;
    }
    let cache = (node.kind == Kind::Build).then(|| cache.finish());
    if node.kind != Kind::Build || !node.publish.push {
        return Done {
            cache,
            ..Done::ok(None)
        };
    }
    // Fail closed: a build that pushed must name a digest, and the registry must hold it.
    let digest = match &steps.digest {
        DigestOut::File => read_digest_file(&own_digest).await,
        DigestOut::BuildxMetadata(path) => read_buildx_metadata(&dir.join(path)).await,
        DigestOut::Stdout | DigestOut::None => Err("the backend reports no digest".to_owned()),
    };
    let digest = match digest {
        Ok(d) => d,
        Err(e) => return Done::failed(e),
    };
    match ctx
        .registry
        .digest(&format!("{}@{digest}", node.reference))
        .await
    {
        Ok(Some(d)) if d == digest => Done {
            cache,
            ..Done::ok(Some(digest))
        },
        Ok(_) => Done::failed(format!(
            "{}@{digest} is not in the registry after the push",
            node.reference
        )),
        Err(e) => Done::failed(e.to_string()),
    }
}

/// Push the index of every platform's image (with its attestation manifests), then its
/// tags, unless interrupted.
async fn merge(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    // A reused image was published with its attestations: they are in the index at the tag.
    let published = match node.tags.first() {
        Some(tag) => match ctx.registry.index_entries(&node.reference, tag).await {
            Ok(entries) => entries.unwrap_or_default(),
            Err(e) => return Done::failed(e.to_string()),
        },
        None => Vec::new(),
    };
    let mut children: Vec<Descriptor> = Vec::new();
    for id in node.needs.iter().filter(|n| n.starts_with("build:")) {
        let Some(digest) = ctx.digest(id) else {
            return Done::failed(format!("no digest from `{id}`"));
        };
        let platform = id.rsplit_once('@').map_or("", |x| x.1);
        match ctx
            .registry
            .platform_entries(&node.reference, &digest, platform, &published)
            .await
        {
            Ok(d) => children.extend(d),
            Err(e) => return Done::failed(e.to_string()),
        }
    }
    if children.is_empty() {
        return Done::failed("no platform image to merge");
    }
    let children = registry::images_first(children);
    let repository = ctx.repository_lock(&node.reference);
    let _writer = repository.lock().await;
    publish_index(
        node,
        ctx,
        log,
        registry::index_type_for(&children),
        &children,
    )
    .await
}

/// PUT an index (of `media_type`) of `children` at every tag of `node`.
async fn publish_index(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
    media_type: &str,
    children: &[Descriptor],
) -> Done {
    let bytes = index_bytes(media_type, children);
    let digest = registry::digest_of(&bytes);
    let mut pushed = false;
    for tag in &node.tags {
        if ctx.cancelled() {
            return Done::cancelled("interrupted before publishing");
        }
        // A tag that already holds this very index needs no write.
        if let Ok(Some(current)) = ctx
            .registry
            .digest(&format!("{}:{tag}", node.reference))
            .await
            && current == digest
        {
            continue;
        }
        let _ = log
            .write_all(format!("PUT {}:{tag} -> {digest}\n", node.reference).as_bytes())
            .await;
        if let Err(e) = ctx
            .registry
            .put_manifest(&node.reference, tag, &bytes, media_type)
            .await
        {
            return Done::failed(e.to_string());
        }
        pushed = true;
        ctx.reporter.line(
            &node.id,
            &format!("tagged {}:{tag} ({digest})", node.reference),
        );
    }
    if !pushed {
        return Done::current(digest);
    }
    Done::ok(Some(digest))
}

/// Copy `source:tag` to `ref:tag`: the whole index, or the selected platforms only.
async fn mirror(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    let tag = node.tags.first().cloned().unwrap_or_default();
    let source = node.source.clone().unwrap_or_default();
    let src = format!("{source}:{tag}");
    let dst = format!("{}:{tag}", node.reference);
    // Up to date in one round trip: two HEAD requests (not counted as pulls).
    let upstream_digest = match ctx.registry.digest(&src).await {
        Ok(Some(d)) => d,
        Ok(None) => return Done::failed(format!("{src} does not exist upstream")),
        Err(e) => return Done::failed(e.to_string()),
    };
    let repository = ctx.repository_lock(&node.reference);
    let _writer = repository.lock().await;
    let result: Result<Done, registry::RegistryError> = async {
        if let Some(locked) = &ctx.options.locked {
            match locked.get(&node.id) {
                None => {
                    return Ok(Done::failed(format!(
                        "`{}` is not in the lock file; run `mab mirror --update-lock`",
                        crate::lock::key(&node.id)
                    )));
                }
                Some(want) if *want != upstream_digest => {
                    return Ok(Done::failed(format!(
                        "upstream {src} moved: the lock file has {want}, upstream now {upstream_digest}; \
                         run `mab mirror --update-lock` and review the change"
                    )));
                }
                Some(_) => {}
            }
        }
        let current = ctx.registry.digest(&dst).await?;
        if node.platforms.is_empty() && current.as_deref() == Some(upstream_digest.as_str()) {
            return Ok(Done::current(upstream_digest.clone()));
        }
        // Everything below reads the upstream by digest: what is copied is what was checked.
        let pinned = format!("{source}@{upstream_digest}");
        let upstream = ctx.registry.manifest(&pinned).await?;
        let _ = log
            .write_all(format!("copy {src} -> {dst}\n").as_bytes())
            .await;
        if !upstream.is_index() {
            ctx.registry
                .copy_image(&source, &node.reference, &upstream)
                .await?;
            if ctx.cancelled() {
                return Ok(Done::cancelled("interrupted"));
            }
            ctx.registry
                .put_manifest(&node.reference, &tag, &upstream.bytes, &upstream.media_type)
                .await?;
            return Ok(Done::ok(Some(upstream.digest)));
        }
        let entries = upstream.entries()?;
        // A filter keeps the attestation manifests of the images it keeps.
        let keep: Vec<Descriptor> = if node.platforms.is_empty() {
            entries
        } else {
            registry::with_attestations(&entries, |d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| node.platforms.iter().any(|w| p.matches(w)))
            })
        };
        if !node.platforms.is_empty() {
            let have: Vec<&registry::PlatformSpec> = keep
                .iter()
                .filter(|d| d.attests().is_none())
                .filter_map(|d| d.platform.as_ref())
                .collect();
            let missing: Vec<&String> = node
                .platforms
                .iter()
                .filter(|w| !have.iter().any(|p| p.matches(w)))
                .collect();
            if !missing.is_empty() {
                return Ok(Done::failed(format!(
                    "{src} has no {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let wanted = registry::digest_of(&index_bytes(&upstream.media_type, &keep));
            if current.as_deref() == Some(wanted.as_str()) {
                return Ok(Done::current(wanted));
            }
        }
        for child in &keep {
            let m = ctx
                .registry
                .manifest(&format!("{source}@{}", child.digest))
                .await?;
            // The digest was checked on the way in; the size must match the index entry too.
            if m.bytes.len() as u64 != child.size {
                return Ok(Done::failed(format!(
                    "{source}@{} is {} bytes, its index entry says {}",
                    child.digest,
                    m.bytes.len(),
                    child.size
                )));
            }
            ctx.registry
                .copy_image(&source, &node.reference, &m)
                .await?;
        }
        if ctx.cancelled() {
            return Ok(Done::cancelled("interrupted"));
        }
        if node.platforms.is_empty() {
            ctx.registry
                .put_manifest(&node.reference, &tag, &upstream.bytes, &upstream.media_type)
                .await?;
            Ok(Done::ok(Some(upstream.digest)))
        } else {
            Ok(publish_index(node, ctx, log, &upstream.media_type, &keep).await)
        }
    }
    .await;
    match result {
        Ok(done) if done.status.succeeded() => Done {
            source_digest: Some(upstream_digest),
            ..done
        },
        Ok(done) => done,
        Err(e) => Done::failed(e.to_string()),
    }
}

/// Read every metadata file of a directory (split builds).
pub fn read_metadata(dir: &std::path::Path) -> Result<Vec<BuildMetadata>, String> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
    {
        let text = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let m: BuildMetadata = serde_json::from_slice(&text)
            .map_err(|e| format!("malformed metadata file {}: {e}", p.display()))?;
        if !is_digest(&m.digest) {
            return Err(format!("malformed digest in {}", p.display()));
        }
        // A file is named after the build it speaks of; another name means it was renamed or
        // written over, and cannot be trusted to be the only one of its build.
        let expected = format!("{}.json", file_stem(&m.id));
        if p.file_name().and_then(|f| f.to_str()) != Some(expected.as_str()) {
            return Err(format!(
                "{} holds the metadata of `{}`, which belongs in {expected}",
                p.display(),
                m.id
            ));
        }
        out.push(m);
    }
    Ok(out)
}
