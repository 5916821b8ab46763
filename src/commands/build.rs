//! `mab build`: the plan for the selection (and `--changed-since`, `--node`, split builds),
//! run — or, with `--dry-run`, its commands printed and its walk reported.

use std::collections::HashMap;
use std::io::Write;

use super::Project;
use super::engine::{Session, execute, options, published_digests, read_lock, verdict};
use crate::cli::BuildArgs;
use crate::diag::{Diag, Diagnostics};
use crate::exec::{self, report};
use crate::plan::{self, Kind, NodeId, Plan, Selection};
use crate::{exit_code, render};

pub fn run(project: &Project, args: &BuildArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let selection = Selection {
        selectors: args.selectors.clone(),
        platforms: args.platforms.clone(),
        only: super::changed_since(project, args.changed_since.as_deref())?,
    };
    let mut plan = plan::plan(model, &selection)?;
    let chosen = chosen_nodes(args)?;
    if !chosen.is_empty() {
        plan.keep_only(model, &chosen)?;
    } else if args.metadata_dir.is_some() {
        // (A `--platform` subset that leaves out platforms of an image version has no merge
        // of it in the plan itself: never half a release.)
        plan.without_merges(model);
    }
    if args.dry_run {
        // The commands only: what the nodes need from outside is read when they run.
        let _ = render::shell::write(&plan, out);
        if let Some(path) = &args.run.report {
            // The engine's walk without the work: every node the run would reach, in plan order.
            let mut opts = options(project, &args.run, args.metadata_dir.clone());
            opts.mode = exec::Mode::DryRun;
            let session = Session::new(model, report::Reporter::silent())?;
            let report = verdict(&plan, session.walk(&plan, opts));
            let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
            std::fs::write(path, json)
                .map_err(|e| Diag::plain(format!("cannot write report {}: {e}", path.display())))?;
        }
        return Ok(exit_code::SUCCESS);
    }
    // Signing happens at merges: a run without one (a split build's job) needs no key, so
    // the key reaches only the jobs that publish tags.
    let signer = match plan.nodes.iter().any(|n| n.kind() == Kind::Merge) {
        true => super::engine::signer(project)?,
        false => None,
    };
    let session = Session::new(model, report::Reporter::detect())?;
    let mut opts = options(project, &args.run, args.metadata_dir.clone());
    opts.signer = signer;
    opts.reuse = !args.no_reuse;
    opts.known_digests = external_digests(&session, &plan, args)?;
    if args.locked {
        opts.locked = Some(read_lock(project)?);
    }
    execute(&session, model, &plan, &args.run, opts, out)
}

/// The digests of what the plan needs and does not build: mirrors and merges from their tags;
/// a base's image of one platform from that tag's index; under `--node`, builds (and the tests
/// that vouch for them) from the split-build metadata of the jobs that built them.
fn external_digests(
    session: &Session,
    plan: &Plan,
    args: &BuildArgs,
) -> Result<HashMap<NodeId, String>, Diagnostics> {
    use plan::ExternalSource;
    let of = |source| -> Vec<&plan::External> {
        plan.external
            .iter()
            .filter(|e| e.source == source)
            .collect()
    };
    // Local images (`push #false`) are named, not pinned: nothing to read.
    let (built, published) = (of(ExternalSource::Metadata), of(ExternalSource::Registry));
    let mut known = HashMap::new();
    if !built.is_empty() {
        let Some(dir) = &args.metadata_dir else {
            let ids: Vec<String> = built.iter().map(|e| e.id.to_string()).collect();
            return Err(Diag::plain(format!(
                "the chosen nodes need `{}`, which this run does not build",
                ids.join("`, `")
            ))
            .help("pass `--metadata-dir DIR` holding the metadata their build jobs wrote (`mab build --node … --metadata-dir DIR`)")
            .into());
        };
        known = digests_from_metadata(dir, plan, &built)?;
    }
    if !published.is_empty() {
        let help = if args.changed_since.is_some() {
            "`--changed-since` rebuilds only what changed and builds on what is published: publish it first (`mab build` without `--changed-since`)"
        } else {
            "run the earlier level (and its `mab merge`) first"
        };
        known.extend(published_digests(session, published, help)?);
    }
    Ok(known)
}

/// `--node` and `--nodes-file`: the node ids to run.
fn chosen_nodes(args: &BuildArgs) -> Result<std::collections::BTreeSet<String>, Diagnostics> {
    let mut ids: std::collections::BTreeSet<String> = args.nodes.iter().cloned().collect();
    if let Some(path) = &args.nodes_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::from(Diag::plain(format!("cannot read {}: {e}", path.display())))
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            // A `github-matrix` document, or any JSON with `"node"` fields.
            Ok(json) => collect_node_fields(&json, &mut ids),
            Err(_) => ids.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            ),
        }
    }
    Ok(ids)
}

fn collect_node_fields(v: &serde_json::Value, ids: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(id)) = map.get("node") {
                ids.insert(id.clone());
            }
            map.values().for_each(|x| collect_node_fields(x, ids));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_node_fields(x, ids)),
        _ => {}
    }
}

/// The digests of builds outside a `--node` run, from the split-build metadata in `dir`. A
/// test outside the run is vouched for by its build's metadata, which is written only once
/// the test passed; every file must name the repository the manifest builds into.
fn digests_from_metadata(
    dir: &std::path::Path,
    plan: &Plan,
    outside: &[&plan::External],
) -> Result<HashMap<NodeId, String>, Diagnostics> {
    let metadata = exec::metadata::read(dir).map_err(|e| Diag::plain(e.to_string()))?;
    let mut known = HashMap::new();
    let mut diags = Diagnostics::new();
    for n in outside {
        let is_test = n.id.kind() == Kind::Test;
        let build = n.id.build().unwrap_or_else(|| n.id.clone());
        let repository = n
            .reference
            .rsplit_once(':')
            .map_or(n.reference.as_str(), |r| r.0);
        let needed_by: Vec<String> = plan
            .nodes
            .iter()
            .filter(|x| x.needs.contains(&n.id))
            .map(|x| x.id.to_string())
            .collect();
        match metadata.iter().find(|m| m.id == build) {
            None => diags.push(
                Diag::plain(format!(
                    "`{}` needs `{}`, which {} has no metadata for",
                    needed_by.join("`, `"),
                    n.id,
                    dir.display()
                ))
                .help(if is_test {
                    "a build's metadata is written once its test passed: run that build job (with its test) first"
                } else {
                    "run that build job first (`mab build --node … --metadata-dir DIR`) and copy its files here"
                }),
            ),
            Some(m) if m.repository != repository => diags.push(Diag::plain(format!(
                "metadata of `{build}` names {}, the manifest {repository}",
                m.repository
            ))),
            Some(m) => {
                known.insert(build, m.digest.clone());
            }
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(known)
    }
}
