//! `mab plan`: the plan for the selection, rendered; with `--check-registry`, each node's
//! decision from the engine's read-only walk.

use std::io::Write;
use std::time::Duration;

use super::engine::{Session, published_digests};
use super::{Project, Timer, emit};
use crate::cli::{PlanArgs, PlanFormat};
use crate::diag::{Diag, Diagnostics};
use crate::exec::{self, report};
use crate::plan::{self, Plan};
use crate::{exit_code, render};

pub fn run(
    project: &Project,
    args: &PlanArgs,
    out: &mut dyn Write,
    timer: &Timer,
) -> Result<i32, Diagnostics> {
    let model = &project.model;
    if let Some(from) = &model.profile.promoted_from {
        return promotion_plan(project, from, args, out);
    }
    let selection = plan::Selection {
        selectors: args.selectors.clone(),
        platforms: args.platforms.clone(),
        only: super::changed_since(project, args.changed_since.as_deref())?,
    };
    let mut plan = plan::plan(model, &selection).map_err(|d| project.located(d))?;
    if args.check_registry {
        match decide(project, &mut plan)? {
            Checked::Decided => {}
            // A node the registry could not answer for fails the check as it would the run;
            // no plan with holes in its decisions is printed.
            Checked::Failed(diags) => {
                diags.eprint();
                return Ok(exit_code::NODE_FAILED);
            }
            Checked::Interrupted => return Ok(exit_code::INTERRUPTED),
        }
    }
    timer.lap("plan");
    match args.format {
        PlanFormat::Text => emit(out, &render::text::render(&plan)),
        PlanFormat::Json => {
            let _ = render::write_json(&plan, out);
        }
        PlanFormat::Dot => emit(out, &render::dot::render(&plan)),
        PlanFormat::Mermaid => emit(out, &render::mermaid::render(&plan)),
        PlanFormat::Shell => {
            let _ = render::shell::write(&plan, out);
        }
        PlanFormat::Markdown => emit(out, &render::markdown::render(&plan)),
        PlanFormat::GithubMatrix => emit(out, &render::matrix::render(&plan)),
    }
    timer.lap("render");
    // Large plans: freeing every node one by one only delays the exit.
    std::mem::forget(plan);
    Ok(exit_code::SUCCESS)
}

/// `plan --check-registry`: what a build would do with each node, asked of the registry
/// (HEAD and small GETs only; nothing is written) — the engine's walk with the check as its
/// work, so each decision comes from the code the build decides with. Mirrors are judged
/// against upstream now, as the build's mirror nodes copy it first (`--refresh` is implied).
pub fn decide(project: &Project, plan: &mut Plan) -> Result<Checked, Diagnostics> {
    let model = &project.model;
    let session = Session::new(model, report::Reporter::silent())?;
    // What the plan does not build is judged on what is published, as a build reads it.
    let known = published_digests(
        &session,
        plan.external
            .iter()
            .filter(|e| e.source == plan::ExternalSource::Registry)
            .collect(),
        "it is not built by this plan: publish it first",
    )?;
    let opts = exec::Options {
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()) * 4,
        keep_going: true,
        grace: Duration::from_secs(1),
        workdir: project.dir.clone(),
        metadata_dir: None,
        sleep_backend: false,
        known_digests: known,
        locked: None,
        signer: None,
        reuse: true,
        mode: exec::Mode::Check,
    };
    let walk = session.walk(plan, opts);
    let interrupted = walk.interrupted;
    let mut diags = Diagnostics::new();
    for (node, result) in plan.nodes.iter_mut().zip(walk.nodes) {
        match result.decision {
            Some(d) => {
                // The command shown is the one the run would run: rebuilt for its age,
                // without the layer cache.
                if let (true, crate::plan::Work::Build(b)) = (d.no_cache, &mut node.work) {
                    b.no_cache = true;
                }
                node.decision = Some(Box::new(d));
            }
            None if result.status == report::Status::Failed => diags.push(
                Diag::plain(format!(
                    "`{}`: {}",
                    node.id,
                    result.reason.unwrap_or_default()
                ))
                .help_opt(
                    result
                        .failure
                        .as_ref()
                        .and_then(|f| f.help())
                        .map(str::to_owned),
                ),
            ),
            None => {}
        }
    }
    Ok(if interrupted {
        Checked::Interrupted
    } else if diags.has_errors() {
        Checked::Failed(diags)
    } else {
        Checked::Decided
    })
}

/// How `plan --check-registry`'s walk ended.
pub enum Checked {
    /// Every node has its decision.
    Decided,
    /// Nodes the registry could not answer for, one diagnostic each.
    Failed(Diagnostics),
    Interrupted,
}

/// The plan of a profile that is only promoted into: what `mab promote` copies.
fn promotion_plan(
    project: &Project,
    from: &str,
    args: &PlanArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let source = Project::load(
        &project.file,
        crate::manifest::Options {
            profile: Some(from.to_owned()),
            ..project.options.clone()
        },
    )?;
    if args.check_registry || args.changed_since.is_some() {
        return Err(Diag::plain(format!(
            "profile `{}` is promoted from `{from}`: its plan is a promotion",
            project.model.profile.name
        ))
        .help("`mab promote --dry-run` reads the registries and says what would be copied")
        .into());
    }
    let promotion = crate::promote::promotion(&source.model, &project.model, &args.selectors)?;
    let text = match args.format {
        PlanFormat::Text => promotion.text(),
        PlanFormat::Markdown => promotion.markdown(),
        PlanFormat::Json => serde_json::to_string_pretty(&promotion).unwrap_or_default() + "\n",
        other => {
            use clap::ValueEnum;
            let name = other
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_owned());
            return Err(Diag::plain(format!(
                "profile `{}` is promoted from `{from}`: its plan is a promotion, which has no `--format {name}`",
                project.model.profile.name
            ))
            .help("`--format text`, `markdown` or `json`; `mab promote --dry-run` reads the registries")
            .into());
        }
    };
    emit(out, &text);
    Ok(exit_code::SUCCESS)
}
