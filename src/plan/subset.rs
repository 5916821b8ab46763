//! Subsets of a plan, as operations on the plan: whatever a subset leaves outside that its
//! nodes need becomes the plan's `external` (read as published), so a rendered plan and a run
//! of it always see the same nodes.

use std::collections::{BTreeSet, HashSet};

use super::command::Part;
use super::{ExternalSource, Kind, NodeId, Plan, Work, externals};
use crate::diag::{Diag, Diagnostics};
use crate::manifest::Model;

impl Plan {
    /// Keep the nodes `keep` says — a command that runs one kind of node (`seed` its builds,
    /// `merge` its merges); what they need outside becomes `external`.
    pub fn restrict(&mut self, model: &Model, keep: impl Fn(&super::Node) -> bool) {
        self.nodes.retain(keep);
        self.external = externals(model, &self.nodes);
    }

    /// `--node`: keep the chosen nodes (and the tests of chosen builds). Builds and tests left
    /// outside come from the split-build metadata of their jobs (`External::metadata`).
    pub fn keep_only(
        &mut self,
        model: &Model,
        chosen: &BTreeSet<String>,
    ) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::new();
        let names: Vec<String> = self.nodes.iter().map(|n| n.id.to_string()).collect();
        let mut wanted = HashSet::new();
        for id in chosen {
            let suggest = || crate::suggest::did_you_mean(id, names.iter().map(String::as_str));
            match id.parse::<NodeId>() {
                Err(bad) => diags.push(Diag::plain(bad.to_string()).help_opt(suggest())),
                Ok(parsed) if !self.nodes.iter().any(|n| n.id == parsed) => diags
                    .push(Diag::plain(format!("no node `{id}` in the plan")).help_opt(suggest())),
                Ok(parsed) => {
                    wanted.insert(parsed);
                }
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        self.nodes.retain(|n| {
            wanted.contains(&n.id) || n.id.build().is_some_and(|b| wanted.contains(&b))
        });
        self.external = externals(model, &self.nodes);
        for e in &mut self.external {
            if e.platform.is_some() && e.source == ExternalSource::Registry {
                e.source = ExternalSource::Metadata;
            }
        }
        Ok(())
    }

    /// Split builds (`--metadata-dir`): no merge runs; a build that needed one builds on its
    /// base's image of the same platform instead.
    pub fn without_merges(&mut self, model: &Model) {
        let dropped: HashSet<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.kind() == Kind::Merge)
            .map(|n| n.id.clone())
            .collect();
        self.nodes.retain(|n| !dropped.contains(&n.id));
        for node in &mut self.nodes {
            let Some(platform) = node.platform().map(str::to_owned) else {
                continue;
            };
            let to_build = |id: &mut NodeId| {
                if dropped.contains(id)
                    && let NodeId::Merge { key } = id
                {
                    *id = NodeId::Build {
                        key: std::mem::take(key),
                        platform: platform.clone(),
                    };
                }
            };
            for need in &mut node.needs {
                to_build(need);
            }
            if let Work::Build(b) = &mut node.work {
                for arg in b.args.values_mut() {
                    for part in &mut arg.0 {
                        if let Part::Digest(id) = part {
                            to_build(id);
                        }
                    }
                }
            }
        }
        self.external = externals(model, &self.nodes);
    }
}
