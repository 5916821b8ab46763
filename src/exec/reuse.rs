//! The reuse decision, in one place: a build whose inputs hash to what the image published
//! for it carries is not built again. `build` acts on it and `plan --check-registry`
//! reports it — the same code, so the plan's `reuse` is the run's `reused`.

use std::collections::BTreeMap;

use super::Context;
use super::failure::Failure;
use crate::inputs;
use crate::plan::command::Part;
use crate::plan::{BuildWork, Node, NodeId};
use crate::registry::{Registry, RegistryError};

/// Why the published image is not reused.
#[derive(Debug, thiserror::Error)]
pub enum NotReusable {
    #[error("--no-reuse")]
    Off,
    #[error("nothing is published at {reference}:{tag} for {platform}")]
    NothingPublished {
        reference: String,
        tag: String,
        platform: String,
    },
    #[error("the published image carries no input hash")]
    NoInputHash,
    /// Which inputs changed (`changed: files of the context, build arg `BASE``).
    #[error("{0}")]
    Changed(String),
    /// Same inputs, but published longer ago than `rebuild-after`.
    #[error("published {age} ago; rebuild-after {limit}")]
    Aged { age: String, limit: String },
    /// Same inputs, `rebuild-after` set, and nothing says when it was built.
    #[error("its build time is unknown; rebuild-after {limit}")]
    AgeUnknown { limit: String },
}

impl NotReusable {
    /// Rebuilt for its age: then without the layer cache.
    pub fn for_age(&self) -> bool {
        matches!(
            self,
            NotReusable::Aged { .. } | NotReusable::AgeUnknown { .. }
        )
    }
}

/// The annotation of an index entry saying when mab built that image (RFC 3339, UTC).
pub const BUILT_ANNOTATION: &str = "io.mab.built";

/// What to do with a build.
pub enum Reuse {
    /// The image published for the node has the same inputs: its digest.
    Published { digest: String, input: String },
    /// Build it, and why; the components label the image it builds.
    Build {
        why: NotReusable,
        input: String,
        components: BTreeMap<String, String>,
    },
}

/// Decide for build `node`, whose needs have all published their digests. Reads the
/// registry (HEAD and small GETs); an error is one the node fails with.
pub async fn decide(node: &Node, ctx: &Context) -> Result<Reuse, Failure> {
    let Some(build) = node.as_build() else {
        return Err(Failure::Internal(format!("`{}` is not a build", node.id)));
    };
    ctx.read_bases(build).await?;
    let components = input_components(node, build, ctx).await?;
    let input = inputs::hash(&components);
    // A registry that does not answer is a failure, not a reason to rebuild: the build
    // could not push either, and `plan --check-registry` must not call it "build".
    let found = if ctx.options.reuse {
        reusable(node, build, ctx, &components).await?
    } else {
        Err(NotReusable::Off)
    };
    Ok(match found {
        Ok(digest) => {
            ctx.reused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node.id.clone());
            Reuse::Published { digest, input }
        }
        Err(why) => Reuse::Build {
            why,
            input,
            components,
        },
    })
}

/// Whether `build`'s published image was reused by this run (so its test need not run).
pub fn was_reused(ctx: &Context, build: &NodeId) -> bool {
    ctx.reused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(build)
}

/// The input components of `node` (see [`crate::inputs`]); context hashes are shared
/// between the platforms of one image.
async fn input_components(
    node: &Node,
    build: &BuildWork,
    ctx: &Context,
) -> Result<BTreeMap<String, String>, Failure> {
    let dir = ctx.options.workdir.clone();
    let key = (dir.join(&build.context), dir.join(&build.dockerfile));
    // One hash per context and Dockerfile, however many platforms ask at once: the first
    // computes it, the others wait for it.
    let context_hash = ctx
        .context_hashes
        .get_or_try_init(key, || async {
            let (context, dockerfile) = (build.context.clone(), build.dockerfile.clone());
            let backend = node.publish.backend;
            tokio::task::spawn_blocking(move || {
                inputs::context_hash(&context, &dockerfile, backend, &dir)
            })
            .await
            .map_err(|e| Failure::Internal(e.to_string()))?
            .map_err(Failure::from)
        })
        .await?;
    // A base mab publishes is an input by its image for this platform, not by the index
    // (or the push) that holds it: a new index annotation, another platform's rebuild, or a
    // split build that pins the platform's push instead of the merged index changes nothing
    // this build sees. So each pinned node stands for that image in the hash.
    let platform = node.platform().unwrap_or_default();
    let mut images = std::collections::HashMap::new();
    for arg in build.args.values() {
        if let [Part::Lit(prefix), Part::Digest(id)] = arg.0.as_slice()
            && let Some(digest) = ctx.digest(id)
        {
            let pinned = format!("{prefix}{digest}");
            images.insert(id, ctx.platform_image(id, &pinned, platform).await?);
        }
    }
    let pinned = |id: &NodeId| images.get(id).cloned().or_else(|| ctx.digest(id));
    Ok(inputs::components(
        node,
        build,
        &context_hash,
        &pinned,
        &|r, p| ctx.upstream_digest(r, p),
    )?)
}

/// Why an image with unchanged inputs is rebuilt all the same: built longer ago than the
/// build's `rebuild-after` (when mab built it, as its index entry says; else the image's
/// `created`), or at an unknown time. `None`: young enough, or no `rebuild-after`.
fn too_old(
    build: &BuildWork,
    entry: &crate::registry::Descriptor,
    created: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<NotReusable> {
    let (seconds, limit) = build.rebuild_after.as_ref()?;
    let built = entry
        .annotations
        .get(BUILT_ANNOTATION)
        .map(String::as_str)
        .or(created)
        .and_then(crate::clock::parse);
    let Some(built) = built else {
        return Some(NotReusable::AgeUnknown {
            limit: limit.clone(),
        });
    };
    let age = (now - built).num_seconds();
    (age > i64::try_from(*seconds).unwrap_or(i64::MAX)).then(|| NotReusable::Aged {
        age: crate::clock::age(age),
        limit: limit.clone(),
    })
}

/// The digest of the image published for `node` when it has the same inputs, else why not;
/// an error when the registry cannot say.
async fn reusable(
    node: &Node,
    build: &BuildWork,
    ctx: &Context,
    components: &BTreeMap<String, String>,
) -> Result<Result<String, NotReusable>, RegistryError> {
    let registry: &Registry = &ctx.registry;
    let input = inputs::hash(components);
    let tag = node
        .key()
        .and_then(|k| k.split_once(':'))
        .map_or("", |k| k.1);
    let platform = node.platform().unwrap_or("");
    let Some(entry) = registry
        .published_entry(node.reference(), tag, platform)
        .await?
    else {
        return Ok(Err(NotReusable::NothingPublished {
            reference: node.reference().to_owned(),
            tag: tag.to_owned(),
            platform: platform.to_owned(),
        }));
    };
    let child = entry.digest.clone();
    let config = registry.config(node.reference(), &child).await?;
    let labels = &config.labels;
    Ok(match labels.get(inputs::INPUT_LABEL) {
        Some(published) if *published == input => {
            match too_old(build, &entry, config.created.as_deref(), ctx.now) {
                Some(why) => Err(why),
                None => Ok(child),
            }
        }
        Some(_) => Err(NotReusable::Changed(inputs::describe_moves(
            &inputs::changed(
                labels.get(inputs::INPUTS_LABEL).map_or("", String::as_str),
                components,
            ),
            labels.get(inputs::BASES_LABEL).map_or("", String::as_str),
            components,
        ))),
        None => Err(NotReusable::NoInputHash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Options, compile};
    use crate::plan::{Selection, plan};

    #[test]
    fn age_is_read_from_the_index_entry_before_the_image() {
        let source = crate::diag::Source::new(
            "images.kdl".to_owned(),
            r#"profile "dev" { registry "r.example/team"; }
defaults { platforms "linux/amd64"; }
image "a" { version "1"; rebuild-after "7d"; }
"#
            .to_owned(),
        );
        let model = compile(&source, &Options::default()).expect("manifest");
        let plan = plan(&model, &Selection::default()).expect("plan");
        let build = plan
            .nodes
            .iter()
            .find_map(|n| n.as_build())
            .expect("a build");
        let now = crate::clock::parse("2026-11-25T00:00:00Z").unwrap();
        let mut entry = crate::registry::Descriptor {
            media_type: String::new(),
            digest: "sha256:0".into(),
            size: 0,
            platform: None,
            annotations: Default::default(),
        };
        // Nothing says when: rebuilt.
        assert!(matches!(
            too_old(build, &entry, None, now),
            Some(NotReusable::AgeUnknown { .. })
        ));
        // The image's own `created` (a SOURCE_DATE_EPOCH, say) is old; mab's stamp is young.
        let old = Some("2026-01-01T00:00:00Z");
        assert!(too_old(build, &entry, old, now).is_some());
        entry
            .annotations
            .insert(BUILT_ANNOTATION.into(), "2026-11-20T00:00:00Z".into());
        assert!(too_old(build, &entry, old, now).is_none());
        entry
            .annotations
            .insert(BUILT_ANNOTATION.into(), "2026-11-15T00:00:00Z".into());
        assert_eq!(
            too_old(build, &entry, old, now).map(|w| w.to_string()),
            Some("published 10 days ago; rebuild-after 7d".to_owned())
        );
    }
}
