//! Selectors: `runtime`, `runtime:3.15`, `golang-*`, `mirror:alpine[:TAG]`.

use std::collections::BTreeSet;

use globset::{Glob, GlobMatcher};

use crate::diag::{Diag, Diagnostics};
use crate::manifest::Model;
use crate::suggest;

/// What the selectors picked, before the upstream closure.
#[derive(Clone, Debug, Default)]
pub struct Picked {
    pub versions: BTreeSet<usize>,
    pub mirrors: BTreeSet<(usize, String)>,
}

enum Target {
    Image(GlobMatcher),
    Version(GlobMatcher),
    Mirror(GlobMatcher),
    MirrorTag(GlobMatcher),
}

fn matcher(pattern: &str, selector: &str) -> Result<GlobMatcher, Box<Diag>> {
    Glob::new(pattern).map(|g| g.compile_matcher()).map_err(|e| {
        Box::new(Diag::plain(format!("invalid selector `{selector}`: {}", e.kind()))
            .help("selectors are names or globs: `runtime`, `runtime:3.15`, `golang-*`, `mirror:alpine`"),
        )
    })
}

/// Apply selectors; no selector picks everything. A selector that matches nothing is an error.
pub fn pick(model: &Model, selectors: &[String]) -> Result<Picked, Diagnostics> {
    let mut picked = Picked::default();
    if selectors.is_empty() {
        picked.versions = (0..model.versions.len()).collect();
        for (i, m) in model.mirrors.iter().enumerate() {
            picked.mirrors.extend(m.tags.iter().map(|t| (i, t.clone())));
        }
        return Ok(picked);
    }
    let mut diags = Diagnostics::new();
    for sel in selectors {
        let target = match sel.strip_prefix("mirror:") {
            Some(rest) if rest.contains(':') => matcher(rest, sel).map(Target::MirrorTag),
            Some(rest) => matcher(rest, sel).map(Target::Mirror),
            None if sel.contains(':') => matcher(sel, sel).map(Target::Version),
            None => matcher(sel, sel).map(Target::Image),
        };
        let target = match target {
            Ok(t) => t,
            Err(d) => {
                diags.push(*d);
                continue;
            }
        };
        let before = (picked.versions.len(), picked.mirrors.len());
        for (i, v) in model.versions.iter().enumerate() {
            let hit = match &target {
                Target::Image(g) => g.is_match(&v.image),
                Target::Version(g) => g.is_match(&v.key),
                _ => false,
            };
            if hit {
                picked.versions.insert(i);
            }
        }
        for (i, m) in model.mirrors.iter().enumerate() {
            for t in &m.tags {
                let hit = match &target {
                    Target::Mirror(g) => g.is_match(&m.name),
                    Target::MirrorTag(g) => g.is_match(format!("{}:{t}", m.name)),
                    _ => false,
                };
                if hit {
                    picked.mirrors.insert((i, t.clone()));
                }
            }
        }
        if (picked.versions.len(), picked.mirrors.len()) == before
            && !matched_already(model, &target)
        {
            let candidates: Vec<String> = if sel.starts_with("mirror:") {
                model
                    .mirrors
                    .iter()
                    .map(|m| format!("mirror:{}", m.name))
                    .collect()
            } else if sel.contains(':') {
                model.versions.iter().map(|v| v.key.clone()).collect()
            } else {
                model.images.clone()
            };
            diags.push(
                Diag::plain(format!("selector `{sel}` matches nothing")).help(
                    suggest::did_you_mean(sel, candidates.iter().map(String::as_str))
                        .unwrap_or_else(|| {
                            format!(
                                "images: {}",
                                suggest::list(model.images.iter().map(String::as_str))
                            )
                        }),
                ),
            );
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(picked)
    }
}

/// A selector that repeats an earlier one adds nothing new but is not an error.
fn matched_already(model: &Model, target: &Target) -> bool {
    match target {
        Target::Image(g) => model.versions.iter().any(|v| g.is_match(&v.image)),
        Target::Version(g) => model.versions.iter().any(|v| g.is_match(&v.key)),
        Target::Mirror(g) => model.mirrors.iter().any(|m| g.is_match(&m.name)),
        Target::MirrorTag(g) => model
            .mirrors
            .iter()
            .any(|m| m.tags.iter().any(|t| g.is_match(format!("{}:{t}", m.name)))),
    }
}
