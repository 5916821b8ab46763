//! The dry work behind `plan --check-registry`: what a build would do with each node, asked
//! of the registry (HEAD and small GETs, no writes) by the same code a build decides with —
//! [`reuse::decide`] for builds, [`mirror::target`] for mirrors, [`merge::index_of`] for
//! merges. A node that would be reused or is up to date passes on the digest it has, so its
//! dependents are judged on exactly what a build would pin.

use super::node::Done;
use super::reuse::{self, Reuse};
use super::{Context, merge, mirror};
use crate::plan::{Decision, Kind, Node};

fn decided(done: Done, decision: &str, reason: impl Into<String>, input: Option<String>) -> Done {
    Done {
        decision: Some(Decision {
            decision: decision.to_owned(),
            reason: reason.into(),
            input_hash: input,
            no_cache: false,
        }),
        ..done
    }
}

/// Decide for `node`; its needs have been decided.
pub(super) async fn decide(node: &Node, ctx: &Context) -> Done {
    match node.kind() {
        Kind::Mirror => decide_mirror(node, ctx).await,
        Kind::Build => decide_build(node, ctx).await,
        Kind::Test => match node.id.build() {
            Some(b) if reuse::was_reused(ctx, &b) => decided(
                Done::with(super::report::Status::Reused, None),
                "reuse",
                "tested when it was published",
                None,
            ),
            _ => decided(Done::planned(None), "build", "its image is built", None),
        },
        Kind::Merge => decide_merge(node, ctx).await,
    }
}

async fn decide_mirror(node: &Node, ctx: &Context) -> Done {
    match mirror::target(node, ctx).await {
        Err(e) => Done::failed(e),
        Ok(t) if t.current.as_deref() == Some(t.wanted.as_str()) => decided(
            Done::current(t.wanted),
            "up-to-date",
            "the target has the upstream digest",
            None,
        ),
        Ok(t) => {
            let why = match &t.current {
                None => "not mirrored yet".to_owned(),
                Some(_) => format!("upstream moved to {}", t.upstream),
            };
            // Dependents are judged on what the mirror will publish: its images too, which
            // the target does not hold yet.
            match mirror::content(node, ctx, &t).await {
                Ok(content) => ctx.known(&node.id, content),
                Err(e) => return Done::failed(e),
            }
            decided(Done::planned(Some(t.wanted)), "mirror", why, None)
        }
    }
}

async fn decide_build(node: &Node, ctx: &Context) -> Done {
    if !node.publish.push {
        return decided(
            Done::planned(None),
            "build",
            "push #false: nothing published is reused",
            None,
        );
    }
    if let Some(need) = node.needs.iter().find(|n| ctx.digest(n).is_none()) {
        let why = format!("waits for `{need}`, which changes first");
        return decided(Done::planned(None), "build", why, None);
    }
    match reuse::decide(node, ctx).await {
        Err(e) => Done::failed(e),
        Ok(Reuse::Published { digest, input }) => decided(
            Done::with(super::report::Status::Reused, Some(digest)),
            "reuse",
            "the published image has the same inputs",
            Some(input),
        ),
        Ok(Reuse::Build { why, input, .. }) => {
            let mut done = decided(Done::planned(None), "build", why.to_string(), Some(input));
            if let Some(d) = &mut done.decision {
                d.no_cache = why.for_age();
            }
            done
        }
    }
}

async fn decide_merge(node: &Node, ctx: &Context) -> Done {
    if merge::builds(node).any(|(id, _)| ctx.digest(id).is_none()) {
        return decided(
            Done::planned(None),
            "publish",
            "a platform is rebuilt",
            None,
        );
    }
    let digest = match merge::index_of(node, ctx).await {
        Ok(index) => index.digest(),
        Err(e) => return Done::failed(e),
    };
    // What the run would refuse, the check refuses too.
    if let Err(e) = merge::dated_tags_free(node, ctx, &digest).await {
        return Done::failed(e);
    }
    match merge::stale_tag(node, ctx, &digest).await {
        Err(e) => Done::failed(e),
        Ok(None) => decided(
            Done::current(digest),
            "up-to-date",
            "every platform is reused",
            None,
        ),
        Ok(Some((tag, None))) => decided(
            Done::planned(Some(digest)),
            "publish",
            format!("{tag} does not exist yet"),
            None,
        ),
        Ok(Some((tag, Some(_)))) => decided(
            Done::planned(Some(digest)),
            "publish",
            format!("{tag} holds another index"),
            None,
        ),
    }
}
