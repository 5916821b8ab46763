//! The reviewer's view: nodes grouped by the level at which they can run.

use std::fmt::Write;

use crate::plan::{ExternalSource, Node, Plan, Work};

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for profile `{}`: registry {}, backend {}{}",
        plan.profile,
        plan.registry,
        plan.backend,
        if plan.push { "" } else { ", push disabled" }
    );
    if !plan.platforms.is_empty() {
        let _ = writeln!(out, "platforms: {}", plan.platforms.join(", "));
    }
    let _ = writeln!(
        out,
        "{} ({}) in {}",
        super::count(plan.nodes.len(), "node"),
        super::counts(plan),
        super::count(plan.levels(), "level")
    );
    for (key, why) in &plan.changes {
        let _ = writeln!(out, "changed: {key}: {why}");
    }
    for e in &plan.external {
        let _ = match (e.source, &e.platform) {
            (ExternalSource::Local, _) => writeln!(out, "local: {} ({})", e.id, e.reference),
            (ExternalSource::Metadata, _) => {
                writeln!(out, "built by another job: {} (its metadata)", e.id)
            }
            (ExternalSource::Registry, Some(p)) => {
                writeln!(out, "published: {} ({p} image of {})", e.id, e.reference)
            }
            (ExternalSource::Registry, None) => {
                writeln!(out, "published: {} ({})", e.id, e.reference)
            }
        };
    }
    for b in &plan.builders {
        match &b.endpoint {
            Some(e) => {
                let _ = writeln!(out, "builder: {} at {e} (created when missing)", b.name);
            }
            None => {
                let _ = writeln!(out, "builder: {} (an existing buildx builder)", b.name);
            }
        }
    }
    let width = plan
        .nodes
        .iter()
        .map(|n| n.id.to_string().len())
        .max()
        .unwrap_or(0);
    let mut level = usize::MAX;
    for n in &plan.nodes {
        if n.level != level {
            level = n.level;
            let _ = writeln!(out, "\nlevel {level}");
        }
        match &n.decision {
            Some(d) => {
                let _ = writeln!(out, "  {:width$}  {:10} {}", n.id, d.decision, d.reason);
            }
            None => {
                let _ = writeln!(out, "  {:width$}  {}", n.id, describe(n));
            }
        }
    }
    out
}

fn describe(n: &Node) -> String {
    match &n.work {
        Work::Mirror(m) => {
            let filter = if n.platforms().is_empty() {
                "all platforms".to_owned()
            } else {
                n.platforms().join(", ")
            };
            format!(
                "{}:{} -> {}:{} ({filter})",
                m.source,
                n.tags().join(","),
                n.reference(),
                n.tags().join(",")
            )
        }
        Work::Build(b) => {
            let mut s = if n.publish.push {
                format!("{} by digest", n.reference())
            } else {
                format!(
                    "local image {}",
                    crate::plan::command::local_name(
                        &b.image.name,
                        n.key().and_then(|k| k.split_once(':')).map_or("", |k| k.1),
                        n.platform().unwrap_or("")
                    )
                )
            };
            if let Some(builder) = &b.builder {
                s.push_str(&format!(", on builder `{builder}`"));
            }
            if let Some(t) = &b.target {
                s.push_str(&format!(", target `{t}`"));
            }
            if let Some((_, age)) = &b.rebuild_after {
                s.push_str(&format!(", rebuilt when published over {age} ago"));
            }
            s
        }
        Work::Test(t) => format!("runs `{}`", t.test.join(" ")),
        Work::Merge(m) => {
            let mut s = format!(
                "{} tags {} ({})",
                n.reference(),
                n.tags()
                    .iter()
                    .map(|t| format!(":{t}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                n.platforms().join(", ")
            );
            if !m.dated_tags.is_empty() {
                s.push_str(&format!(", never moving :{}", m.dated_tags.join(" :")));
            }
            if let Some(key) = &m.sign {
                s.push_str(&format!(", signed with {key} before any tag"));
            }
            s
        }
    }
}
