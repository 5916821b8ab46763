//! Graphviz: one cluster per image version, build nodes labelled by platform.

use std::fmt::Write;

use crate::plan::{Kind, Plan};

fn quote(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph mab {{");
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(
        out,
        "  label={};",
        quote(format!("mab plan: profile {}", plan.profile))
    );
    let _ = writeln!(out, "  node [shape=box, fontname=\"Helvetica\"];");
    for (i, (key, nodes)) in super::groups(plan).iter().enumerate() {
        let mirror = nodes.iter().all(|n| n.kind() == Kind::Mirror);
        if mirror {
            for n in nodes {
                let _ = writeln!(
                    out,
                    "  {} [label={}, shape=cylinder];",
                    quote(&n.id),
                    quote(&n.id)
                );
            }
            continue;
        }
        let _ = writeln!(out, "  subgraph cluster_{i} {{");
        let _ = writeln!(out, "    label={};", quote(key));
        for n in nodes {
            let (label, shape) = match n.kind() {
                Kind::Build => (n.platform().map(str::to_owned).unwrap_or_default(), "box"),
                Kind::Test => (format!("test {}", n.platform().unwrap_or("")), "ellipse"),
                Kind::Merge => (format!("merge :{}", n.tags().join(" :")), "box3d"),
                Kind::Mirror => (n.id.to_string(), "cylinder"),
            };
            let _ = writeln!(
                out,
                "    {} [label={}, shape={shape}];",
                quote(&n.id),
                quote(&label)
            );
        }
        let _ = writeln!(out, "  }}");
    }
    for n in &plan.nodes {
        for need in super::drawn_needs(n) {
            let _ = writeln!(out, "  {} -> {};", quote(need), quote(&n.id));
        }
    }
    let _ = writeln!(out, "}}");
    out
}
