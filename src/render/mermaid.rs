//! Mermaid flowchart: renders in a pull-request comment.

use std::collections::HashMap;
use std::fmt::Write;

use crate::plan::{Kind, NodeId, Plan};

/// Mermaid labels are quoted; what could end the quote, the line or be read as markup or an
/// entity is written as an entity code.
fn label(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '`' => out.push_str("#96;"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn render(plan: &Plan) -> String {
    let ids: HashMap<&NodeId, String> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (&n.id, format!("n{i}")))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "flowchart LR");
    for (i, (key, nodes)) in super::groups(plan).iter().enumerate() {
        let mirror = nodes.iter().all(|n| n.kind() == Kind::Mirror);
        if mirror {
            for n in nodes {
                let _ = writeln!(out, "  {}[({})]", ids[&n.id], label(&n.id));
            }
            continue;
        }
        let _ = writeln!(out, "  subgraph g{i}[{}]", label(key));
        for n in nodes {
            let id = &ids[&n.id];
            let _ = match n.kind() {
                Kind::Build => writeln!(out, "    {id}[{}]", label(n.platform().unwrap_or(""))),
                Kind::Test => writeln!(
                    out,
                    "    {id}([{}])",
                    label(format!("test {}", n.platform().unwrap_or("")))
                ),
                Kind::Merge => writeln!(
                    out,
                    "    {id}[[{}]]",
                    label(format!("merge :{}", n.tags().join(" :")))
                ),
                Kind::Mirror => writeln!(out, "    {id}[({})]", label(&n.id)),
            };
        }
        let _ = writeln!(out, "  end");
    }
    for n in &plan.nodes {
        for need in super::drawn_needs(n) {
            if let Some(from) = ids.get(need) {
                let _ = writeln!(out, "  {from} --> {}", ids[&n.id]);
            }
        }
    }
    out
}
