//! `--format github-matrix`: the build jobs of each level, for GitHub Actions matrices.
//!
//! A level holds the builds whose bases are all published by earlier levels: level 0
//! builds on mirrors only, level n on images of levels below n. A workflow runs the jobs
//! of a level (`mab build --node ID --metadata-dir …`), then `mab merge` for that level,
//! then the next level — see `examples/github-actions/`.
//!
//! A GitHub matrix runs at most 256 jobs, so each level also comes in `parts` of at most
//! [`MATRIX_LIMIT`] jobs, one matrix job each (`levels[N].parts[K]`); `include` is the whole
//! level.

use std::collections::HashMap;

use serde::Serialize;

use crate::plan::{Kind, NodeId, Plan};

/// The most jobs one GitHub Actions matrix may have.
pub const MATRIX_LIMIT: usize = 256;

#[derive(Clone, Serialize)]
struct Job<'a> {
    node: &'a NodeId,
    image: Option<&'a str>,
    version: Option<&'a str>,
    variant: Option<&'a str>,
    platform: Option<&'a str>,
    #[serde(rename = "runs-on")]
    runs_on: &'a str,
}

#[derive(Serialize)]
struct Level<'a> {
    level: usize,
    include: Vec<Job<'a>>,
    parts: Vec<Vec<Job<'a>>>,
}

#[derive(Serialize)]
struct Matrix<'a> {
    profile: &'a str,
    levels: Vec<Level<'a>>,
}

/// The build level of every build node: 0 without image bases, else one above its bases' builds.
pub fn build_levels(plan: &Plan) -> HashMap<&NodeId, usize> {
    let by_id: HashMap<&NodeId, &crate::plan::Node> =
        plan.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut levels: HashMap<&NodeId, usize> = HashMap::new();
    // Plan order is topological: bases come first.
    for n in plan.nodes.iter().filter(|n| n.kind() == Kind::Build) {
        let mut level = 0;
        for need in &n.needs {
            let Some(merge) = by_id.get(need).filter(|m| m.kind() == Kind::Merge) else {
                continue;
            };
            for b in merge.needs.iter().filter(|x| x.kind() == Kind::Build) {
                if let Some(l) = levels.get(b) {
                    level = level.max(l + 1);
                }
            }
        }
        levels.insert(&n.id, level);
    }
    levels
}

/// How many matrix parts each build level of `plan` has (see [`MATRIX_LIMIT`]).
pub fn parts(plan: &Plan) -> Vec<usize> {
    let levels = build_levels(plan);
    let mut count: Vec<usize> = vec![0; levels.values().max().map_or(0, |m| m + 1)];
    for level in levels.values() {
        count[*level] += 1;
    }
    count.iter().map(|n| n.div_ceil(MATRIX_LIMIT)).collect()
}

pub fn render(plan: &Plan) -> String {
    let levels = build_levels(plan);
    let depth = levels.values().max().map_or(0, |m| m + 1);
    let mut out: Vec<Level> = (0..depth)
        .map(|level| Level {
            level,
            include: Vec::new(),
            parts: Vec::new(),
        })
        .collect();
    for n in plan.nodes.iter().filter(|n| n.kind() == Kind::Build) {
        out[levels[&n.id]].include.push(Job {
            node: &n.id,
            image: n.image().map(|i| i.name.as_str()),
            version: n.image().map(|i| i.version.as_str()),
            variant: n.image().and_then(|i| i.variant.as_deref()),
            platform: n.platform(),
            runs_on: n.runs_on().unwrap_or("ubuntu-latest"),
        });
    }
    for level in &mut out {
        level.parts = level
            .include
            .chunks(MATRIX_LIMIT)
            .map(<[Job]>::to_vec)
            .collect();
    }
    let matrix = Matrix {
        profile: &plan.profile,
        levels: out,
    };
    let mut s = serde_json::to_string_pretty(&matrix).unwrap_or_default();
    s.push('\n');
    s
}
