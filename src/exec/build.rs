//! Builds and tests: a node's commands as child processes, after the reuse decision;
//! the digest a build reports is checked against the registry before anyone uses it.

use tokio::io::AsyncWriteExt;

use super::Context;
use super::failure::Failure;
use super::node::Done;
use super::process::{self, Exit};
use super::report::{CacheCounter, Status};
use super::reuse::{self, Reuse};
use crate::inputs;
use crate::plan::command::{self, Arg, DigestOut, digest_file, file_stem};
use crate::plan::{Kind, Node, Work};
use crate::registry::is_digest;

/// Replace digest placeholders with what the named nodes published, and file placeholders
/// with the image ID an earlier command wrote (which must look like one).
fn resolve(arg: &Arg, ctx: &Context) -> Result<String, Failure> {
    use crate::plan::command::Part;
    let mut parts = Vec::with_capacity(arg.0.len());
    for p in &arg.0 {
        parts.push(match p {
            Part::File(path) => Part::Lit(read_image_id(&ctx.options.workdir.join(path), path)?),
            other => other.clone(),
        });
    }
    Ok(inputs::resolve(
        &Arg(parts),
        &|id| ctx.digest(id),
        &|r, p| ctx.upstream_digest(r, p),
    )?)
}

fn read_image_id(file: &std::path::Path, name: &str) -> Result<String, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| Failure::Missing {
        what: "image ID in",
        path: name.to_owned(),
        why: e.to_string(),
    })?;
    let id = text.trim();
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::Malformed {
            what: "image ID in",
            path: name.to_owned(),
            found: format!(": {id:?}"),
        });
    }
    Ok(id.to_owned())
}

/// A digest file must hold exactly one well-formed digest: anything else fails the node.
async fn read_digest_file(path: &std::path::Path) -> Result<String, Failure> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| Failure::Missing {
            what: "digest file",
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    let d = text.trim();
    if is_digest(d) {
        Ok(d.to_owned())
    } else {
        Err(Failure::Malformed {
            what: "digest in",
            path: path.display().to_string(),
            found: format!(": {d:?}"),
        })
    }
}

async fn read_buildx_metadata(path: &std::path::Path) -> Result<String, Failure> {
    let text = tokio::fs::read(path).await.map_err(|e| Failure::Missing {
        what: "metadata file",
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Failure::Malformed {
            what: "metadata file",
            path: path.display().to_string(),
            found: format!(": {e}"),
        })?;
    let d = json
        .get("containerimage.digest")
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    if is_digest(d) {
        Ok(d.to_owned())
    } else {
        Err(Failure::NoImageDigest(path.display().to_string()))
    }
}

/// Builds and tests: the node's commands as child processes.
pub(super) async fn commands(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    // A test of an image that was reused, not rebuilt, passed when that image was published.
    if node.kind() == Kind::Test
        && let Some(build) = node.id.build()
        && reuse::was_reused(ctx, &build)
    {
        return Done {
            status: Status::Reused,
            ..Done::ok(None)
        };
    }
    if let Some(b) = node.as_build()
        && let Err(e) = ctx.read_bases(b).await
    {
        return Done::failed(e);
    }
    let labelled;
    let node = if node.kind() == Kind::Build && node.publish.push {
        match reuse_or_label(node, ctx, log).await {
            Ok(n) => {
                labelled = n;
                &labelled
            }
            Err(done) => return done,
        }
    } else {
        node
    };
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
    let stem = file_stem(&node.id.to_string());
    let _ = tokio::fs::remove_file(dir.join(".mab/iid").join(stem)).await;
    let mut cache = CacheCounter::default();
    let failure = run_steps(node, ctx, log, &steps, &own_digest, &mut cache).await;
    cleanup(ctx, log, &steps).await;
    if let Some(f) = failure {
        return f;
    }
    let cache = (node.kind() == Kind::Build).then(|| cache.finish());
    if node.kind() != Kind::Build || !node.publish.push {
        return Done {
            cache,
            ..Done::ok(None)
        };
    }
    match pushed(node, ctx, &steps, &own_digest).await {
        Ok(digest) => Done {
            cache,
            ..Done::ok(Some(digest))
        },
        Err(e) => Done::failed(e),
    }
}

/// The reuse decision for a build that publishes: done (reused, or failed), or the node to
/// build, labelled with its input hash and fingerprints.
async fn reuse_or_label(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
) -> Result<Node, Done> {
    match reuse::decide(node, ctx).await {
        Err(e) => Err(Done::failed(e)),
        Ok(Reuse::Published { digest, input }) => {
            let _ = log
                .write_all(
                    format!(
                        "reused {}@{digest}: same input hash {input}\n",
                        node.reference()
                    )
                    .as_bytes(),
                )
                .await;
            ctx.output(&node.id, &format!("reused {digest} (input hash unchanged)"));
            Err(Done {
                status: Status::Reused,
                ..Done::ok(Some(digest))
            })
        }
        Ok(Reuse::Build {
            why,
            input,
            components,
        }) => {
            let _ = log.write_all(format!("building: {why}\n").as_bytes()).await;
            ctx.output(&node.id, &format!("building: {why}"));
            let mut labelled = node.clone();
            if let Work::Build(b) = &mut labelled.work {
                b.no_cache = why.for_age();
                b.labels.insert(inputs::INPUT_LABEL.to_owned(), input);
                b.labels.insert(
                    inputs::INPUTS_LABEL.to_owned(),
                    inputs::fingerprints(&components),
                );
                if let Some(bases) = inputs::bases_label(&components) {
                    b.labels.insert(inputs::BASES_LABEL.to_owned(), bases);
                }
            }
            Ok(labelled)
        }
    }
}

/// Run the node's commands in order until one fails; the failure, if any.
async fn run_steps(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
    steps: &command::Steps,
    own_digest: &std::path::Path,
    cache: &mut CacheCounter,
) -> Option<Done> {
    let mut cancel = ctx.cancel.clone();
    for cmd in &steps.commands {
        let argv: Vec<String> = match cmd.argv.iter().map(|a| resolve(a, ctx)).collect() {
            Ok(a) => a,
            Err(e) => return Some(Done::failed(e)),
        };
        let _ = log
            .write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
            .await;
        let mut on_line = |l: &str| {
            cache.line(l);
            ctx.output(&node.id, l);
        };
        let exit = process::run(
            &argv,
            cmd.stdin.as_deref(),
            &ctx.options.workdir,
            log,
            &mut cancel,
            ctx.options.grace,
            &mut on_line,
        )
        .await;
        match exit {
            Exit::Code(0) => {}
            Exit::Code(c) => {
                return Some(Done::failed(Failure::Exited {
                    command: argv[..2.min(argv.len())].join(" "),
                    code: c,
                }));
            }
            Exit::Signal => {
                return Some(Done::failed(Failure::Killed {
                    program: argv[0].clone(),
                }));
            }
            Exit::Cancelled => return Some(Done::cancelled("interrupted")),
            Exit::SpawnFailed(e) => return Some(Done::failed(Failure::Spawn(e))),
        }
        // `--digestfile` has written the digest the following commands pin.
        if steps.digest == DigestOut::File
            && tokio::fs::try_exists(own_digest).await.unwrap_or(false)
        {
            match read_digest_file(own_digest).await {
                Ok(d) => ctx.set_digest(&node.id, d),
                Err(e) => return Some(Done::failed(e)),
            }
        }
    }
    None
}

/// The node's cleanup commands: run even after a failure or a signal, so nothing is left behind.
async fn cleanup(ctx: &Context, log: &mut tokio::fs::File, steps: &command::Steps) {
    for cmd in &steps.cleanup {
        let Ok(argv) = cmd
            .argv
            .iter()
            .map(|a| resolve(a, ctx))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let _ = log
            .write_all(format!("$ {}\n", argv.join(" ")).as_bytes())
            .await;
        let (_tx, mut never) = tokio::sync::watch::channel(super::Cancel::None);
        let _ = process::run(
            &argv,
            None,
            &ctx.options.workdir,
            log,
            &mut never,
            ctx.options.grace,
            &mut |_| {},
        )
        .await;
    }
}

/// Fail closed: a build that pushed must name a digest, and the registry must hold it.
async fn pushed(
    node: &Node,
    ctx: &Context,
    steps: &command::Steps,
    own_digest: &std::path::Path,
) -> Result<String, Failure> {
    let digest = match &steps.digest {
        DigestOut::File => read_digest_file(own_digest).await?,
        DigestOut::BuildxMetadata(path) => {
            read_buildx_metadata(&ctx.options.workdir.join(path)).await?
        }
        DigestOut::Stdout | DigestOut::None => return Err(Failure::NoDigestReported),
    };
    match ctx
        .registry
        .digest(&format!("{}@{digest}", node.reference()))
        .await?
    {
        Some(d) if d == digest => Ok(digest),
        _ => Err(Failure::NotPushed {
            reference: node.reference().to_owned(),
            digest,
        }),
    }
}
