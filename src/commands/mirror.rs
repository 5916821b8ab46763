//! `mab mirror`: upstream tags copied when they moved; `--locked` / `--update-lock`.

use std::io::Write;

use super::Project;
use super::engine::{Session, locked_digests, options, run_plan};
use crate::cli::MirrorArgs;
use crate::diag::{Diag, Diagnostics};
use crate::exec::report;
use crate::manifest::Model;
use crate::plan::{self, Plan, Selection};
use crate::{exit_code, lock};

pub fn run(project: &Project, args: &MirrorArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let selectors: Vec<String> = if args.names.is_empty() {
        model
            .mirrors
            .iter()
            .map(|m| format!("mirror:{}", m.name))
            .collect()
    } else {
        args.names.iter().map(|n| format!("mirror:{n}")).collect()
    };
    if selectors.is_empty() {
        let _ = writeln!(out, "the manifest declares no mirror");
        return Ok(exit_code::SUCCESS);
    }
    let plan = plan::plan(
        model,
        &Selection {
            selectors,
            platforms: Vec::new(),
            only: None,
        },
    )?;
    let mut opts = options(project, &args.run, None);
    if args.locked {
        opts.locked = Some(locked_digests(project, &plan)?);
    }
    let session = Session::new(model, crate::exec::report::Reporter::detect())?;
    let report = run_plan(&session, model, &plan, &args.run, opts, out)?;
    if args.update_lock && report.exit_code == exit_code::SUCCESS {
        write_lock(project, model, &plan, &report).map_err(|e| Diag::plain(e.to_string()))?;
        let _ = writeln!(out, "wrote {}", lock::path_for(&project.file).display());
    }
    Ok(report.exit_code)
}

/// Record the upstream digest each mirror node found; keep the entries of mirrors not run
/// now, drop those the manifest no longer declares.
fn write_lock(
    project: &Project,
    model: &Model,
    plan: &Plan,
    report: &report::RunReport,
) -> Result<(), lock::LockError> {
    let path = lock::path_for(&project.file);
    let mut lock = if path.exists() {
        lock::Lock::read(&path)?
    } else {
        lock::Lock::default()
    };
    lock.version = 1;
    let declared: std::collections::HashSet<String> = model
        .mirrors
        .iter()
        .flat_map(|m| m.tags.iter().map(move |t| format!("{}:{t}", m.name)))
        .collect();
    lock.mirrors.retain(|k, _| declared.contains(k));
    for (node, result) in plan.nodes.iter().zip(&report.nodes) {
        if let (Some(digest), Some(m)) = (&result.source_digest, node.as_mirror()) {
            let source = &m.source;
            let tag = node.tags().first().map_or("", String::as_str);
            lock.mirrors.insert(
                lock::key(&node.id),
                lock::Locked {
                    source: format!("{source}:{tag}"),
                    digest: digest.clone(),
                },
            );
        }
    }
    lock.write(&path)
}
