//! Merges: the index of every platform's image (with its attestation manifests), put at
//! the version's tags once every platform is in the registry.

use tokio::io::AsyncWriteExt;

use super::Context;
use super::failure::Failure;
use super::node::Done;
use super::reuse;
use crate::inputs::InputError;
use crate::plan::{Node, NodeId, Work};
use crate::registry::{self, Descriptor, NewIndex};

/// Push the index of every platform's image (with its attestation manifests), then its
/// tags, unless interrupted.
pub(super) async fn merge(node: &Node, ctx: &Context, log: &mut tokio::fs::File) -> Done {
    let index = match index_of(node, ctx).await {
        Ok(index) => index,
        Err(e) => return Done::failed(e),
    };
    let repository = ctx.repository_lock(node.reference());
    let _writer = repository.lock().await;
    // Nothing is written, not even a signature, when a dated tag would have to move.
    if let Err(e) = dated_tags_free(node, ctx, &index.digest()).await {
        return Done::failed(e);
    }
    if let Some(signer) = &ctx.options.signer {
        if ctx.cancelled() {
            return Done::cancelled("interrupted before signing");
        }
        if let Err(e) = sign_all(node, ctx, signer, &index).await {
            return Done::failed(e);
        }
    }
    publish_index(node, ctx, log, &index).await
}

/// Sign every platform image of the index and the index itself (put by digest first), before
/// any tag points at it. What is signed by this key already is not signed again.
async fn sign_all(
    node: &Node,
    ctx: &Context,
    signer: &crate::sign::Signer,
    index: &NewIndex,
) -> Result<(), Failure> {
    let repository = node.reference();
    let bytes = index.bytes();
    let digest = registry::digest_of(&bytes);
    if ctx
        .registry
        .digest(&format!("{repository}@{digest}"))
        .await?
        .is_none()
    {
        ctx.registry
            .put_manifest(repository, &digest, &bytes, &index.media_type)
            .await?;
    }
    if crate::sign::sign_index(&ctx.registry, signer, repository, &digest, &index.manifests).await?
    {
        ctx.output(&node.id, &format!("signed {repository}@{digest}"));
    }
    Ok(())
}

/// The index merge `node` publishes: its entries, images first, and its annotations. Every
/// platform's build must have published its digest.
pub(super) async fn index_of(node: &Node, ctx: &Context) -> Result<NewIndex, Failure> {
    let Work::Merge(merge) = &node.work else {
        return Err(Failure::Internal(format!("`{}` is not a merge", node.id)));
    };
    // What is published at the first tag that is not today's: a reused image was published
    // with its attestations, which are in that index.
    let first = (merge.tags.iter())
        .find(|t| !merge.dated_tags.contains(t))
        .or(merge.tags.first());
    let current = match first {
        Some(tag) => ctx.registry.index_at(node.reference(), tag).await?,
        None => None,
    };
    let published = match &current {
        Some(index) => index.entries()?,
        None => Vec::new(),
    };
    let mut children: Vec<Descriptor> = Vec::new();
    for (id, platform) in builds(node) {
        let digest = ctx
            .digest(id)
            .ok_or_else(|| InputError::NoDigest(id.to_string()))?;
        let mut entries = ctx
            .registry
            .platform_entries(node.reference(), &digest, platform, &published)
            .await?;
        stamp_built(&mut entries, id, ctx, &published);
        children.extend(entries);
    }
    if children.is_empty() {
        return Err(Failure::NothingToMerge);
    }
    // The dependents' input hashes take each platform's image of it: known now, read no more.
    ctx.known(&node.id, super::Pinned::Index(children.clone()));
    let index = NewIndex::annotated(registry::images_first(children), merge.annotations.clone());
    Ok(match current {
        Some(current) => as_published(index, &current, &merge.commit_annotations),
        None => index,
    })
}

/// `index`, or the `published` index when the two differ only in the annotations taken from
/// the commit (`commit_keys`): a new commit that changed nothing the index holds writes
/// nothing, and the index keeps naming the commit that first published its images.
fn as_published(
    index: NewIndex,
    published: &registry::Manifest,
    commit_keys: &[String],
) -> NewIndex {
    if commit_keys.is_empty() {
        return index;
    }
    let theirs = published.annotations();
    let mut kept = index.clone();
    for key in commit_keys {
        match theirs.get(key) {
            Some(value) => kept.annotations.insert(key.clone(), value.clone()),
            None => kept.annotations.remove(key),
        };
    }
    if kept.digest() == published.digest {
        kept
    } else {
        index
    }
}

/// Say in the image's index entry when it was built (`io.mab.built`, for `rebuild-after`):
/// now, when this run built it or the image is new to the index (a split build's merge);
/// otherwise (reused) what the published index says of that image. The index is no input
/// of anything, so the time never defeats reuse.
fn stamp_built(
    entries: &mut [Descriptor],
    build: &NodeId,
    ctx: &Context,
    published: &[Descriptor],
) {
    let built_here =
        !reuse::was_reused(ctx, build) && !ctx.options.known_digests.contains_key(build);
    for e in entries.iter_mut().filter(|e| e.attests().is_none()) {
        let time = match published.iter().find(|p| p.digest == e.digest) {
            Some(p) if !built_here => p.annotations.get(reuse::BUILT_ANNOTATION).cloned(),
            _ => Some(crate::clock::format(ctx.now)),
        };
        match time {
            Some(t) => e.annotations.insert(reuse::BUILT_ANNOTATION.to_owned(), t),
            None => e.annotations.remove(reuse::BUILT_ANNOTATION),
        };
    }
}

/// The builds a merge puts in its index, with their platforms.
pub(super) fn builds(node: &Node) -> impl Iterator<Item = (&NodeId, &str)> {
    node.needs.iter().filter_map(|id| match id {
        NodeId::Build { platform, .. } => Some((id, platform.as_str())),
        _ => None,
    })
}

/// The first tag of `node` that does not hold `digest` yet, and what it holds.
pub(super) async fn stale_tag(
    node: &Node,
    ctx: &Context,
    digest: &str,
) -> Result<Option<(String, Option<String>)>, registry::RegistryError> {
    for tag in node.tags() {
        let current = ctx
            .registry
            .digest(&format!("{}:{tag}", node.reference()))
            .await?;
        if current.as_deref() != Some(digest) {
            return Ok(Some((tag.clone(), current)));
        }
    }
    Ok(None)
}

/// Fail when a dated tag of `node` (`${date}`, `${time}`) already holds an index other than
/// `digest`: such a tag is written once. Asked before any tag moves.
pub(super) async fn dated_tags_free(
    node: &Node,
    ctx: &Context,
    digest: &str,
) -> Result<(), Failure> {
    let Work::Merge(m) = &node.work else {
        return Ok(());
    };
    for tag in &m.dated_tags {
        let current = ctx
            .registry
            .digest(&format!("{}:{tag}", node.reference()))
            .await?;
        if let Some(current) = current.filter(|c| c != digest) {
            return Err(Failure::DatedTagTaken {
                reference: node.reference().to_owned(),
                tag: tag.clone(),
                current,
            });
        }
    }
    Ok(())
}

/// PUT `index` at every tag of `node`, in order. A failure or an interruption between two
/// tags says which tags hold the new index and which do not; a run again writes only those.
pub(super) async fn publish_index(
    node: &Node,
    ctx: &Context,
    log: &mut tokio::fs::File,
    index: &NewIndex,
) -> Done {
    let bytes = index.bytes();
    let digest = registry::digest_of(&bytes);
    let tags = node.tags();
    let mut pushed = false;
    for (i, tag) in tags.iter().enumerate() {
        let (done, rest) = (&tags[..i], &tags[i..]);
        if ctx.cancelled() {
            let reason = if pushed {
                format!(
                    "interrupted between two tags of {}; {}",
                    node.reference(),
                    super::failure::tag_state(done, rest)
                )
            } else {
                "interrupted before publishing".to_owned()
            };
            return Done::cancelled(&reason);
        }
        // A tag that already holds this very index needs no write.
        if let Ok(Some(current)) = ctx
            .registry
            .digest(&format!("{}:{tag}", node.reference()))
            .await
            && current == digest
        {
            continue;
        }
        let _ = log
            .write_all(format!("PUT {}:{tag} -> {digest}\n", node.reference()).as_bytes())
            .await;
        if let Err(e) = ctx
            .registry
            .put_manifest(node.reference(), tag, &bytes, &index.media_type)
            .await
        {
            let e = Failure::from(e);
            if i == 0 {
                return Done::failed(e);
            }
            return Done::failed(Failure::PartlyTagged {
                reference: node.reference().to_owned(),
                tag: tag.clone(),
                cause: Box::new(e),
                moved: done.to_vec(),
                not_moved: rest.to_vec(),
            });
        }
        pushed = true;
        ctx.output(
            &node.id,
            &format!("tagged {}:{tag} ({digest})", node.reference()),
        );
    }
    if !pushed {
        return Done::current(digest);
    }
    Done::ok(Some(digest))
}
