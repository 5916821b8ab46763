//! `mab merge`: the indexes of split builds, from their metadata — refused, publishing
//! nothing, when any platform is missing or the metadata is not this manifest's.

use std::collections::HashMap;
use std::io::Write;

use super::Project;
use super::engine::{Session, execute, options};
use crate::cli::MergeArgs;
use crate::diag::{Diag, Diagnostics};
use crate::exec;
use crate::exit_code;
use crate::plan::{self, Kind, NodeId, Selection};

pub fn run(project: &Project, args: &MergeArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let mut plan = plan::plan(
        model,
        &Selection {
            selectors: args.selectors.clone(),
            platforms: Vec::new(),
            only: None,
        },
    )?;
    let metadata =
        exec::metadata::read(&args.metadata_dir).map_err(|e| Diag::plain(e.to_string()))?;
    let by_id: HashMap<&NodeId, &exec::metadata::BuildMetadata> =
        metadata.iter().map(|m| (&m.id, m)).collect();
    // Every file must be of a build this manifest has: a stray one means the directory is
    // not what this merge thinks it is.
    let builds: std::collections::HashSet<NodeId> = model
        .versions
        .iter()
        .flat_map(|v| {
            v.platforms
                .iter()
                .map(move |p| plan::build_id(v, &p.platform))
        })
        .collect();
    let mut diags = Diagnostics::new();
    for m in &metadata {
        if !builds.contains(&m.id) {
            diags.push(
                Diag::plain(format!(
                    "{} holds metadata of `{}`, which this manifest does not build",
                    args.metadata_dir.display(),
                    m.id,
                ))
                .help("merge with the manifest (and profile) that wrote it, or remove the file"),
            );
        }
    }
    // Without selectors: the image versions the metadata speaks of.
    let any = args.selectors.is_empty();
    plan.restrict(model, |n| {
        n.kind() == Kind::Merge && (!any || n.needs.iter().any(|x| by_id.contains_key(x)))
    });
    if plan.nodes.is_empty() {
        return Err(Diag::plain(format!(
            "{} holds no metadata of this manifest's builds",
            args.metadata_dir.display()
        ))
        .help("write it with `mab build --platform P --metadata-dir DIR`")
        .into());
    }
    // Refuse before publishing anything when a platform the manifest expects is missing.
    let mut known = HashMap::new();
    for n in &plan.nodes {
        for need in n.needs.iter().filter(|x| x.kind() == Kind::Build) {
            match by_id.get(need) {
                None => diags.push(
                    Diag::plain(format!("`{}` expects `{need}`, which {} has no metadata for", n.id, args.metadata_dir.display()))
                        .help("build that platform with `mab build --platform P --metadata-dir DIR` and copy its files here"),
                ),
                Some(m) if m.repository != n.reference() => diags.push(Diag::plain(format!(
                    "metadata of `{need}` names {}, the manifest {}",
                    m.repository, n.reference()
                ))),
                Some(m) => {
                    known.insert(need.clone(), m.digest.clone());
                }
            }
        }
    }
    if diags.has_errors() {
        diags.eprint();
        let _ = writeln!(out, "merge refused: nothing was published");
        return Ok(exit_code::NODE_FAILED);
    }
    let mut opts = options(project, &args.run, None);
    opts.signer = super::engine::signer(project)?;
    opts.known_digests = known;
    let session = Session::new(model, crate::exec::report::Reporter::detect())?;
    execute(&session, model, &plan, &args.run, opts, out)
}
