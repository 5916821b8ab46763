//! Mirrors: an upstream tag copied to the registry — the whole index, or the chosen
//! platforms with their attestations — read by digest, so what is copied is what was checked.

use tokio::io::AsyncWriteExt;

use super::Context;
use super::Pinned;
use super::failure::Failure;
use super::merge::publish_index;
use super::node::Done;
use crate::plan::Node;
use crate::registry::{self, Descriptor, NewIndex};

/// Copy `source:tag` to `ref:tag`: the whole index, or the selected platforms only.
pub(super) async fn mirror(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    let repository = ctx.repository_lock(node.reference());
    let _writer = repository.lock().await;
    // Up to date in one round trip: two HEAD requests (not counted as pulls), and the
    // upstream index when filtered.
    let target = match target(node, ctx).await {
        Ok(t) => t,
        Err(e) => return Done::failed(e),
    };
    let upstream_digest = target.upstream.clone();
    let done = match copy(node, ctx, log, target).await {
        Ok(done) => done,
        Err(e) => Done::failed(e),
    };
    if done.status.succeeded() {
        Done {
            source_digest: Some(upstream_digest),
            ..done
        }
    } else {
        done
    }
}

/// What `mirror` does once it knows its target: refuse a move the lock file does not
/// allow, or nothing when the tag holds what it should, or the copy.
async fn copy(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
    target: Target,
) -> Result<Done, Failure> {
    let tag = node.tags().first().cloned().unwrap_or_default();
    let source = node.as_mirror().map_or("", |m| m.source.as_str());
    let src = format!("{source}:{tag}");
    if let Some(locked) = &ctx.options.locked {
        match locked
            .mirrors
            .get(&crate::lock::key(&node.id))
            .map(|l| &l.digest)
        {
            None => return Err(Failure::NotLocked(crate::lock::key(&node.id))),
            Some(want) if *want != target.upstream => {
                return Err(Failure::Moved {
                    upstream: src,
                    locked: want.clone(),
                    now: target.upstream,
                });
            }
            Some(_) => {}
        }
    }
    if target.current.as_deref() == Some(target.wanted.as_str()) {
        return Ok(Done::current(target.wanted));
    }
    // Everything below reads the upstream by digest: what is copied is what was checked.
    let upstream = match target.manifest {
        Some(m) => m,
        None => {
            ctx.registry
                .manifest(&format!("{source}@{}", target.upstream))
                .await?
        }
    };
    let _ = log
        .write_all(format!("copy {src} -> {}:{tag}\n", node.reference()).as_bytes())
        .await;
    if !upstream.is_index() {
        ctx.registry
            .copy_image(source, node.reference(), &upstream)
            .await?;
        carry_signatures(
            node,
            ctx,
            log,
            source,
            std::slice::from_ref(&upstream.digest),
        )
        .await?;
        return tag_upstream(node, ctx, &tag, upstream).await;
    }
    let keep = keep_platforms(node, upstream.entries()?, &src)?;
    for child in &keep {
        let m = ctx
            .registry
            .manifest(&format!("{source}@{}", child.digest))
            .await?;
        // The digest was checked on the way in; the size must match the index entry too.
        if m.bytes.len() as u64 != child.size {
            return Err(Failure::SizeMismatch {
                reference: format!("{source}@{}", child.digest),
                actual: m.bytes.len() as u64,
                expected: child.size,
            });
        }
        ctx.registry
            .copy_image(source, node.reference(), &m)
            .await?;
    }
    // The upstream's signatures come along, before the tag: of the index when it is copied
    // whole, of each platform image copied (a filtered index is a new one, unsigned).
    let mut signed: Vec<String> = keep.iter().map(|c| c.digest.clone()).collect();
    if node.platforms().is_empty() {
        signed.push(upstream.digest.clone());
    }
    carry_signatures(node, ctx, log, source, &signed).await?;
    if node.platforms().is_empty() {
        tag_upstream(node, ctx, &tag, upstream).await
    } else if ctx.cancelled() {
        Ok(Done::cancelled("interrupted"))
    } else {
        let index = NewIndex::new(upstream.media_type.clone(), keep);
        Ok(publish_index(node, ctx, log, &index).await)
    }
}

/// Copy the upstream's cosign signatures (`sha256-<hex>.sig`) of `digests`, those it has.
async fn carry_signatures(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
    source: &str,
    digests: &[String],
) -> Result<(), Failure> {
    let copied =
        crate::sign::carry_digests(&ctx.registry, source, node.reference(), digests).await?;
    if copied > 0 {
        let _ = log
            .write_all(format!("copied {copied} signature(s) from {source}\n").as_bytes())
            .await;
    }
    Ok(())
}

/// Put the upstream manifest itself, byte for byte, at the mirror's tag (unless interrupted).
async fn tag_upstream(
    node: &Node,
    ctx: &Context,
    tag: &str,
    upstream: registry::Manifest,
) -> Result<Done, Failure> {
    if ctx.cancelled() {
        return Ok(Done::cancelled("interrupted"));
    }
    ctx.registry
        .put_manifest(node.reference(), tag, &upstream.bytes, &upstream.media_type)
        .await?;
    Ok(Done::ok(Some(upstream.digest)))
}

/// The entries of upstream index `entries` a mirror copies: all of them, or the platforms
/// it names with their attestation manifests; every named platform must be there.
fn keep_platforms(
    node: &Node,
    entries: Vec<Descriptor>,
    src: &str,
) -> Result<Vec<Descriptor>, Failure> {
    if node.platforms().is_empty() {
        return Ok(entries);
    }
    let keep = registry::with_attestations(&entries, |d| {
        d.platform
            .as_ref()
            .is_some_and(|p| node.platforms().iter().any(|w| p.matches(w)))
    });
    let have: Vec<&registry::PlatformSpec> = keep
        .iter()
        .filter(|d| d.attests().is_none())
        .filter_map(|d| d.platform.as_ref())
        .collect();
    let missing: Vec<String> = node
        .platforms()
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

/// A mirror's tag: what it should hold, the upstream digest, what it holds now — and the
/// upstream manifest, when reading it was needed to know what the tag should hold.
pub(super) struct Target {
    pub wanted: String,
    pub upstream: String,
    pub current: Option<String>,
    manifest: Option<registry::Manifest>,
}

/// What mirror `node` will hold once it copies `t`: the upstream image, or the (filtered)
/// index's entries. Read from upstream (by the digest checked) when `t` has no manifest yet.
pub(super) async fn content(node: &Node, ctx: &Context, t: &Target) -> Result<Pinned, Failure> {
    let source = node.as_mirror().map_or("", |m| m.source.as_str());
    let upstream = match &t.manifest {
        Some(m) => m.clone(),
        None => {
            ctx.registry
                .manifest(&format!("{source}@{}", t.upstream))
                .await?
        }
    };
    if !upstream.is_index() {
        return Ok(Pinned::Image(upstream.digest));
    }
    let src = format!(
        "{source}:{}",
        node.tags().first().map_or("", String::as_str)
    );
    Ok(Pinned::Index(keep_platforms(
        node,
        upstream.entries()?,
        &src,
    )?))
}

/// What mirror `node` would publish at its tag — the upstream digest, or the digest of the
/// filtered index — and what the tag holds now. Reads only (HEAD, and the upstream index
/// when filtered).
pub(super) async fn target(node: &Node, ctx: &Context) -> Result<Target, Failure> {
    let tag = node.tags().first().cloned().unwrap_or_default();
    let source = node.as_mirror().map_or("", |m| m.source.as_str());
    let src = format!("{source}:{tag}");
    let upstream_digest = match ctx.registry.digest(&src).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(Failure::NotUpstream(src)),
        Err(e) => return Err(e.into()),
    };
    let current = ctx
        .registry
        .digest(&format!("{}:{tag}", node.reference()))
        .await?;
    if node.platforms().is_empty() {
        return Ok(Target {
            wanted: upstream_digest.clone(),
            upstream: upstream_digest,
            current,
            manifest: None,
        });
    }
    let upstream = ctx
        .registry
        .manifest(&format!("{source}@{upstream_digest}"))
        .await?;
    let wanted = if upstream.is_index() {
        let keep = keep_platforms(node, upstream.entries()?, &src)?;
        NewIndex::new(upstream.media_type.clone(), keep).digest()
    } else {
        upstream.digest.clone()
    };
    Ok(Target {
        wanted,
        upstream: upstream_digest,
        current,
        manifest: Some(upstream),
    })
}
