//! A pull-request comment: counts, images × versions × platforms, and the graph.

use std::fmt::Write;

use crate::plan::{ExternalSource, Kind, Plan};

/// Text from the manifest or the plan, in a table cell: every character markdown could read
/// as markup is escaped, a line break (which would end the row) becomes a space.
fn cell(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '!' | '(' | ')'
            | '{' | '}' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A sentence of mab's own (a reason) whose `…` spans name files, images or inputs: the spans
/// stay code spans, everything is escaped; unbalanced backticks make it all plain text.
fn prose(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return cell(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 2 == 0 { cell(p) } else { code(p) })
        .collect()
}

/// A code span that shows `s` exactly, whatever backticks it holds; in a table, `|` is
/// escaped (GitHub reads `\|` as a pipe inside code spans too) and line breaks become spaces.
pub(crate) fn code(s: impl std::fmt::Display) -> String {
    let s: String = s
        .to_string()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### mab plan: profile {}\n", code(&plan.profile));
    let _ = writeln!(
        out,
        "**{}** in {}: {}. Registry {}, backend `{}`{}.\n",
        super::count(plan.nodes.len(), "node"),
        super::count(plan.levels(), "level"),
        super::counts(plan),
        code(&plan.registry),
        plan.backend,
        if plan.push { "" } else { ", push disabled" }
    );
    let key = plan.nodes.iter().find_map(|n| match &n.work {
        crate::plan::Work::Merge(m) => m.sign.as_deref(),
        _ => None,
    });
    if let Some(key) = key {
        let _ = writeln!(
            out,
            "Every index and platform image is signed with {} (cosign's format) before any tag moves.\n",
            code(key)
        );
    }
    changes(&mut out, plan);
    external(&mut out, plan);
    decisions(&mut out, plan);
    versions(&mut out, plan);
    mirrors(&mut out, plan);
    let _ = writeln!(out, "```mermaid");
    out.push_str(&super::mermaid::render(plan));
    let _ = writeln!(out, "```");
    out
}

/// `--changed-since`: why each image version is rebuilt.
fn changes(out: &mut String, plan: &Plan) {
    if !plan.changes.is_empty() {
        let _ = writeln!(out, "**Rebuilt because of changes:**\n");
        let _ = writeln!(out, "| image | why |");
        let _ = writeln!(out, "|---|---|");
        for (key, why) in &plan.changes {
            let _ = writeln!(out, "| {} | {} |", code(key), prose(why));
        }
        out.push('\n');
    }
}

/// What the plan builds on and does not build, and where it is read.
fn external(out: &mut String, plan: &Plan) {
    if !plan.external.is_empty() {
        let _ = writeln!(out, "**Built on what is published (not rebuilt):**\n");
        let _ = writeln!(out, "| node | read from |");
        let _ = writeln!(out, "|---|---|");
        for e in &plan.external {
            let from = match (e.source, &e.platform) {
                (ExternalSource::Local, _) => format!("local image {}", code(&e.reference)),
                (ExternalSource::Metadata, _) => "the metadata of the job that built it".to_owned(),
                (ExternalSource::Registry, Some(p)) => {
                    format!("{} ({})", code(&e.reference), code(p))
                }
                (ExternalSource::Registry, None) => code(&e.reference),
            };
            let _ = writeln!(out, "| {} | {from} |", code(&e.id));
        }
        out.push('\n');
    }
}

/// `--check-registry`: how many builds run, and why each does.
fn decisions(out: &mut String, plan: &Plan) {
    let decided: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind() == Kind::Build && n.decision.is_some())
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
                let _ = writeln!(out, "| {} | {} |", code(&n.id), prose(why));
            }
            out.push('\n');
        }
    }
}

/// One row per image version: platforms, test, tags.
fn versions(out: &mut String, plan: &Plan) {
    let mut rows: Vec<(String, String, String, String, String, String)> = Vec::new();
    for (_, nodes) in super::groups(plan) {
        let Some(first) = nodes.iter().find(|n| n.kind() != Kind::Mirror) else {
            continue;
        };
        let platforms: Vec<&str> = nodes
            .iter()
            .filter(|n| n.kind() == Kind::Build)
            .filter_map(|n| n.platform())
            .collect();
        let tested = if nodes.iter().any(|n| n.kind() == Kind::Test) {
            "yes"
        } else {
            "no"
        };
        let tags = nodes
            .iter()
            .find(|n| n.kind() == Kind::Merge)
            .map(|m| m.tags().iter().map(code).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "(not published)".to_owned());
        rows.push((
            first.image().map(|i| i.name.clone()).unwrap_or_default(),
            first.image().map(|i| i.version.clone()).unwrap_or_default(),
            first
                .image()
                .and_then(|i| i.variant.clone())
                .unwrap_or_default(),
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
                r.5
            );
        }
        out.push('\n');
    }
}

/// One row per mirror tag.
fn mirrors(out: &mut String, plan: &Plan) {
    let mirrors: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind() == Kind::Mirror)
        .collect();
    if !mirrors.is_empty() {
        let _ = writeln!(out, "| mirror | upstream | into | platforms |");
        let _ = writeln!(out, "|---|---|---|---|");
        for m in mirrors {
            let platforms = if m.platforms().is_empty() {
                "all".to_owned()
            } else {
                m.platforms().join(", ")
            };
            let tag = m.tags().join(",");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(&m.id),
                code(format!(
                    "{}:{tag}",
                    m.as_mirror().map_or("", |m| m.source.as_str())
                )),
                code(format!("{}:{tag}", m.reference())),
                cell(&platforms)
            );
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_text_cannot_become_markup() {
        let hostile = "x` | **INJECTED** [click](https://e.example) |\n\n# Injected heading";
        let c = code(hostile);
        assert!(!c.contains('\n'), "{c}");
        assert!(c.starts_with("``") && c.ends_with("``"), "{c}");
        assert!(!c.contains(" | "), "an unescaped pipe splits the row: {c}");
        let t = cell(hostile);
        assert!(
            !t.contains('\n') && !t.contains("](") && !t.contains("**I"),
            "{t}"
        );
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(
            prose("its base `golang-build:1.18` changes"),
            "its base `golang-build:1.18` changes"
        );
        assert_eq!(prose("file `a|b*` changed"), "file `a\\|b*` changed");
        assert_eq!(prose("odd ` tick *"), "odd \\` tick \\*");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }
}
