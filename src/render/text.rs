//! The reviewer's view: nodes grouped by the level at which they can run.

use std::fmt::Write;

use crate::plan::{ExternalSource, Kind, Node, Plan};

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
        "{} nodes ({}) in {} levels",
        plan.nodes.len(),
        super::counts(plan),
        plan.levels()
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
    let width = plan.nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
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
    match n.kind {
        Kind::Mirror => {
            let filter = if n.platforms.is_empty() {
                "all platforms".to_owned()
            } else {
                n.platforms.join(", ")
            };
            format!(
                "{}:{} -> {}:{} ({filter})",
                n.source.as_deref().unwrap_or(""),
                n.tags.join(","),
                n.reference,
                n.tags.join(",")
            )
        }
        Kind::Build => {
            let mut s = if n.publish.push {
                format!("{} by digest", n.reference)
            } else {
                format!(
                    "local image {}",
                    crate::plan::command::local_name(
                        n.image.as_deref().unwrap_or(""),
                        n.key().and_then(|k| k.split_once(':')).map_or("", |k| k.1),
                        n.platform.as_deref().unwrap_or("")
                    )
                )
            };
            if let Some(b) = &n.builder {
                s.push_str(&format!(", on builder `{b}`"));
            }
            if let Some(t) = &n.target {
                s.push_str(&format!(", target `{t}`"));
            }
            s
        }
        Kind::Test => format!("runs `{}`", n.test.as_deref().unwrap_or_default().join(" ")),
        Kind::Merge => format!(
            "{} tags {} ({})",
            n.reference,
            n.tags
                .iter()
                .map(|t| format!(":{t}"))
                .collect::<Vec<_>>()
                .join(" "),
            n.platforms.join(", ")
        ),
    }
}
