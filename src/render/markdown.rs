//! A pull-request comment: counts, images × versions × platforms, and the graph.

use std::fmt::Write;

use crate::plan::{Kind, Plan};

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### mab plan: profile `{}`\n", plan.profile);
    let _ = writeln!(
        out,
        "**{} nodes** in {} levels: {}. Registry `{}`, backend `{}`{}.\n",
        plan.nodes.len(),
        plan.levels(),
        super::counts(plan),
        plan.registry,
        plan.backend,
        if plan.push { "" } else { ", push disabled" }
    );
    if !plan.changes.is_empty() {
        let _ = writeln!(out, "**Rebuilt because of changes:**\n");
        let _ = writeln!(out, "| image | why |");
        let _ = writeln!(out, "|---|---|");
        for (key, why) in &plan.changes {
            let _ = writeln!(out, "| `{}` | {} |", cell(key), cell(why));
        }
        out.push('\n');
    }
    let decided: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Build && n.decision.is_some())
        .collect();
    if !decided.is_empty() {
        let builds: Vec<_> = decided
            .iter()
            .filter(|n| n.decision.as_ref().is_some_and(|d| d.decision == "build"))
            .collect();
        let _ = writeln!(
            out,
            "**{} of {} builds run; {} are reused.**\n",
            builds.len(),
            decided.len(),
            decided.len() - builds.len()
        );
        if !builds.is_empty() {
            let _ = writeln!(out, "| build | why |");
            let _ = writeln!(out, "|---|---|");
            for n in builds {
                let why = n.decision.as_ref().map_or("", |d| d.reason.as_str());
                let _ = writeln!(out, "| `{}` | {} |", cell(&n.id), cell(why));
            }
            out.push('\n');
        }
    }
    let mut rows: Vec<(String, String, String, String, String, String)> = Vec::new();
    for (_, nodes) in super::groups(plan) {
        let Some(first) = nodes.iter().find(|n| n.kind != Kind::Mirror) else {
            continue;
        };
        let platforms: Vec<&str> = nodes
            .iter()
            .filter(|n| n.kind == Kind::Build)
            .filter_map(|n| n.platform.as_deref())
            .collect();
        let tested = if nodes.iter().any(|n| n.kind == Kind::Test) {
            "yes"
        } else {
            "no"
        };
        let tags = nodes
            .iter()
            .find(|n| n.kind == Kind::Merge)
            .map(|m| {
                m.tags
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "(not published)".to_owned());
        rows.push((
            first.image.clone().unwrap_or_default(),
            first.version.clone().unwrap_or_default(),
            first.variant.clone().unwrap_or_default(),
            platforms.join(", "),
            tested.to_owned(),
            tags,
        ));
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "| image | version | variant | platforms | test | tags |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&r.0),
                cell(&r.1),
                cell(&r.2),
                cell(&r.3),
                r.4,
                cell(&r.5)
            );
        }
        out.push('\n');
    }
    let mirrors: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Mirror)
        .collect();
    if !mirrors.is_empty() {
        let _ = writeln!(out, "| mirror | upstream | into | platforms |");
        let _ = writeln!(out, "|---|---|---|---|");
        for m in mirrors {
            let platforms = if m.platforms.is_empty() {
                "all".to_owned()
            } else {
                m.platforms.join(", ")
            };
            let tag = m.tags.join(",");
            let _ = writeln!(
                out,
                "| `{}` | `{}:{tag}` | `{}:{tag}` | {} |",
                m.id,
                m.source.as_deref().unwrap_or(""),
                m.reference,
                platforms
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "```mermaid");
    out.push_str(&super::mermaid::render(plan));
    let _ = writeln!(out, "```");
    out
}
