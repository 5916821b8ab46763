//! Mirrors: an upstream tag copied to the registry — the whole index, or the chosen
//! platforms with their attestations — read by digest, so what is copied is what was checked.

use tokio::io::AsyncWriteExt;

use super::Context;
use super::failure::Failure;
use super::merge::publish_index;
use super::node::Done;
use crate::plan::Node;
use crate::registry::{self, Descriptor, index_bytes};

/// Copy `source:tag` to `ref:tag`: the whole index, or the selected platforms only.
pub(super) async fn mirror(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    let tag = node.tags.first().cloned().unwrap_or_default();
    let source = node.source.clone().unwrap_or_default();
    let src = format!("{source}:{tag}");
    let dst = format!("{}:{tag}", node.reference);
    // Up to date in one round trip: two HEAD requests (not counted as pulls).
    let upstream_digest = match ctx.registry.digest(&src).await {
        Ok(Some(d)) => d,
        Ok(None) => return Done::failed(Failure::NotUpstream(src)),
        Err(e) => return Done::failed(e),
    };
    let repository = ctx.repository_lock(&node.reference);
    let _writer = repository.lock().await;
    let result: Result<Done, registry::RegistryError> = async {
        if let Some(locked) = &ctx.options.locked {
            match locked.get(&node.id) {
                None => {
                    return Ok(Done::failed(Failure::NotLocked(
                        crate::lock::key(&node.id).to_owned(),
                    )));
                }
                Some(want) if *want != upstream_digest => {
                    return Ok(Done::failed(Failure::Moved {
                        upstream: src.clone(),
                        locked: want.clone(),
                        now: upstream_digest.clone(),
                    }));
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
        let keep = match keep_platforms(node, entries, &src) {
            Ok(keep) => keep,
            Err(e) => return Ok(Done::failed(e)),
        };
        if !node.platforms.is_empty() {
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
                return Ok(Done::failed(Failure::SizeMismatch {
                    reference: format!("{source}@{}", child.digest),
                    actual: m.bytes.len() as u64,
                    expected: child.size,
                }));
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
        Err(e) => Done::failed(e),
    }
}

/// The entries of upstream index `entries` a mirror copies: all of them, or the platforms
/// it names with their attestation manifests; every named platform must be there.
fn keep_platforms(
    node: &Node,
    entries: Vec<Descriptor>,
    src: &str,
) -> Result<Vec<Descriptor>, Failure> {
    if node.platforms.is_empty() {
        return Ok(entries);
    }
    let keep = registry::with_attestations(&entries, |d| {
        d.platform
            .as_ref()
            .is_some_and(|p| node.platforms.iter().any(|w| p.matches(w)))
    });
    let have: Vec<&registry::PlatformSpec> = keep
        .iter()
        .filter(|d| d.attests().is_none())
        .filter_map(|d| d.platform.as_ref())
        .collect();
    let missing: Vec<String> = node
        .platforms
        .iter()
        .filter(|w| !have.iter().any(|p| p.matches(w)))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(keep)
    } else {
        Err(Failure::MissingPlatforms {
            upstream: src.to_owned(),
            platforms: missing,
        })
    }
}

/// A mirror's tag: what it should hold, the upstream digest, what it holds now.
pub(super) struct Target {
    pub wanted: String,
    pub upstream: String,
    pub current: Option<String>,
}

/// What mirror `node` would publish at its tag — the upstream digest, or the digest of the
/// filtered index — and what the tag holds now. Reads only (HEAD, and the upstream index
/// when filtered).
pub(super) async fn target(node: &Node, ctx: &Context) -> Result<Target, Failure> {
    let tag = node.tags.first().cloned().unwrap_or_default();
    let source = node.source.clone().unwrap_or_default();
    let src = format!("{source}:{tag}");
    let upstream_digest = match ctx.registry.digest(&src).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(Failure::NotUpstream(src)),
        Err(e) => return Err(e.into()),
    };
    let current = ctx
        .registry
        .digest(&format!("{}:{tag}", node.reference))
        .await?;
    if node.platforms.is_empty() {
        return Ok(Target {
            wanted: upstream_digest.clone(),
            upstream: upstream_digest,
            current,
        });
    }
    let upstream = ctx
        .registry
        .manifest(&format!("{source}@{upstream_digest}"))
        .await?;
    if !upstream.is_index() {
        return Ok(Target {
            wanted: upstream.digest,
            upstream: upstream_digest,
            current,
        });
    }
    let entries = upstream.entries()?;
    let keep = keep_platforms(node, entries, &src)?;
    let wanted = registry::digest_of(&index_bytes(&upstream.media_type, &keep));
    Ok(Target {
        wanted,
        upstream: upstream_digest,
        current,
    })
}
