//! Output formats of `mab plan`.

pub mod dot;
pub mod markdown;
pub mod mermaid;
pub mod shell;
pub mod text;

use std::collections::BTreeMap;

use crate::plan::{Kind, Node, Plan};

/// Serialize the plan as pretty JSON, newline-terminated.
pub fn json(plan: &Plan) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail, and the plan holds only strings, numbers and lists.
    let _ = write_json(plan, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Stream the plan as pretty JSON into `out`, newline-terminated.
pub fn write_json(plan: &Plan, mut out: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, plan).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// Nodes grouped per image version (`image:version[-variant]`), in plan order; mirrors grouped per mirror.
pub fn groups(plan: &Plan) -> Vec<(String, Vec<&Node>)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
    for n in &plan.nodes {
        let key = match n.kind {
            Kind::Mirror => n.id.clone(),
            _ => n.key().unwrap_or(&n.id).to_owned(),
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
pub fn counts(plan: &Plan) -> String {
    [Kind::Mirror, Kind::Build, Kind::Test, Kind::Merge]
        .iter()
        .map(|k| format!("{} {k}", plan.count(*k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The needs worth drawing: a merge's edge from a build is implied when the build's test is also needed.
pub fn drawn_needs<'a>(node: &'a Node) -> impl Iterator<Item = &'a String> + 'a {
    node.needs.iter().filter(move |need| {
        node.kind != Kind::Merge
            || !need.starts_with("build:")
            || !node
                .needs
                .iter()
                .any(|other| other.strip_prefix("test:") == need.strip_prefix("build:"))
    })
}
