//! Output formats of `mab plan`.

pub mod dot;
pub mod markdown;
pub mod matrix;
pub mod mermaid;
pub mod shell;
pub mod text;

use std::collections::BTreeMap;

use crate::plan::{Kind, Node, NodeId, Plan};

/// Serialize the plan as pretty JSON, newline-terminated.
pub fn json(plan: &Plan) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail, and the plan holds only strings, numbers and lists.
    let _ = write_json(plan, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Stream the plan as pretty JSON into `out`, newline-terminated. Nodes are serialized
/// in parallel, a batch at a time; the bytes are those of `serde_json::to_writer_pretty`.
pub fn write_json(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use rayon::prelude::*;
    const BATCH: usize = 2048;
    let head =
        serde_json::to_string_pretty(&plan.clone_without_nodes()).map_err(std::io::Error::other)?;
    let Some(open) = head
        .strip_suffix("[]\n}")
        .or_else(|| head.strip_suffix("[]}"))
    else {
        return Err(std::io::Error::other("unexpected plan header"));
    };
    out.write_all(open.as_bytes())?;
    if plan.nodes.is_empty() {
        return out.write_all(b"[]\n}\n");
    }
    out.write_all(b"[\n")?;
    for (i, batch) in plan.nodes.chunks(BATCH).enumerate() {
        let parts: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|node| {
                let text = serde_json::to_string_pretty(node).unwrap_or_default();
                let mut buf = Vec::with_capacity(text.len() + text.len() / 8);
                for (j, line) in text.split('\n').enumerate() {
                    if j > 0 {
                        buf.push(b'\n');
                    }
                    buf.extend_from_slice(b"    ");
                    buf.extend_from_slice(line.as_bytes());
                }
                buf
            })
            .collect();
        for (j, part) in parts.iter().enumerate() {
            if i > 0 || j > 0 {
                out.write_all(b",\n")?;
            }
            out.write_all(part)?;
        }
    }
    out.write_all(b"\n  ]\n}\n")
}

/// Nodes grouped per image version (`image:version[-variant]`), in plan order; mirrors grouped per mirror.
pub fn groups(plan: &Plan) -> Vec<(String, Vec<&Node>)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
    for n in &plan.nodes {
        let key = match n.kind() {
            Kind::Mirror => n.id.to_string(),
            _ => n.key().map_or_else(|| n.id.to_string(), str::to_owned),
        };
        if !map.contains_key(&key) {
            order.push(key.clone());
        }
        map.entry(key).or_default().push(n);
    }
    order
        .into_iter()
        .map(|k| {
            let v = map.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

/// "3 mirror, 8 build, 2 test, 4 merge".
/// `1 node`, `2 nodes`: a count and its noun, in the plural unless it is one.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn counts(plan: &Plan) -> String {
    [Kind::Mirror, Kind::Build, Kind::Test, Kind::Merge]
        .iter()
        .map(|k| format!("{} {k}", plan.count(*k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The needs worth drawing: a merge's edge from a build is implied when the build's test is also needed.
pub fn drawn_needs<'a>(node: &'a Node) -> impl Iterator<Item = &'a NodeId> + 'a {
    node.needs.iter().filter(move |need| {
        node.kind() != Kind::Merge
            || need.kind() != Kind::Build
            || !node
                .needs
                .iter()
                .any(|other| other.kind() == Kind::Test && other.build().as_ref() == Some(*need))
    })
}

#[cfg(test)]
mod tests {
    use crate::diag::Source;
    use crate::plan::{Selection, plan};

    #[test]
    fn parallel_json_is_byte_identical_to_serde_json() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/images.kdl")).unwrap();
        let model = crate::manifest::compile(&Source::new("images.kdl", text), &Default::default())
            .unwrap();
        let p = plan(&model, &Selection::default()).unwrap();
        let mut expected = serde_json::to_string_pretty(&p).unwrap();
        expected.push('\n');
        assert_eq!(super::json(&p), expected);
        let empty = crate::plan::Plan {
            nodes: Vec::new(),
            ..p.clone_without_nodes()
        };
        let mut expected = serde_json::to_string_pretty(&empty).unwrap();
        expected.push('\n');
        assert_eq!(super::json(&empty), expected);
    }
}
