//! `mab verify`: every published tag of the selected image versions — its index and each
//! platform image in it — carries a valid signature by the key.

use std::io::Write;

use super::Project;
use super::engine::Session;
use crate::cli::VerifyArgs;
use crate::diag::{Diag, Diagnostics};
use crate::exit_code;
use crate::plan::{self, Kind, Selection};
use crate::sign;

pub fn run(project: &Project, args: &VerifyArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let model = &project.model;
    let key = match (&args.key, &model.profile.sign) {
        (Some(path), _) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                Diagnostics::from(Diag::plain(format!("cannot read {}: {e}", path.display())))
            })?;
            sign::public_key(&pem, &path.display().to_string())
                .map_err(|e| Diagnostics::from(Diag::plain(e.to_string())))?
        }
        (None, Some(k)) => sign::Signer::load(k, &project.dir)
            .map_err(|e| Diagnostics::from(Diag::plain(e.to_string())))?
            .public(),
        (None, None) => {
            return Err(Diag::plain(format!(
                "profile `{}` has no `sign` key to verify with",
                model.profile.name
            ))
            .help("say `--key cosign.pub`, or set `sign key=…` in the profile")
            .into());
        }
    };
    let picked = plan::select::pick(model, &args.selectors)?;
    let keys: std::collections::BTreeSet<&str> = picked
        .versions
        .iter()
        .map(|&i| model.versions[i].key.as_str())
        .collect();
    let plan = plan::plan(model, &Selection::default())?;
    let session = Session::new(model, crate::exec::report::Reporter::detect())?;
    let registry = &session.registry;
    let mut failed = 0;
    let mut checked = 0;
    for node in plan
        .nodes
        .iter()
        .filter(|n| n.kind() == Kind::Merge && n.key().is_some_and(|k| keys.contains(k)))
    {
        let repository = node.reference();
        for tag in node.tags() {
            checked += 1;
            let verdict = session.rt.block_on(async {
                let Some(digest) = registry.digest(&format!("{repository}:{tag}")).await? else {
                    return Ok::<_, sign::SignError>(Err("not published".to_owned()));
                };
                let manifest = registry.manifest(&format!("{repository}@{digest}")).await?;
                let mut digests = vec![digest.clone()];
                if manifest.is_index() {
                    digests.extend(
                        manifest
                            .entries()?
                            .into_iter()
                            .filter(|e| e.attests().is_none())
                            .map(|e| e.digest),
                    );
                }
                for d in &digests {
                    if !sign::signed_by(registry, &key, repository, d).await? {
                        return Ok(Err(format!("{d} has no valid signature by this key")));
                    }
                }
                Ok(Ok(digest))
            });
            match verdict {
                Ok(Ok(digest)) => {
                    let _ = writeln!(out, "verified {repository}:{tag} ({digest})");
                }
                Ok(Err(why)) => {
                    failed += 1;
                    let _ = writeln!(out, "FAILED   {repository}:{tag}: {why}");
                }
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(out, "FAILED   {repository}:{tag}: {e}");
                }
            }
        }
    }
    let _ = writeln!(out, "{} of {checked} tags verified", checked - failed);
    Ok(if failed == 0 {
        exit_code::SUCCESS
    } else {
        exit_code::NODE_FAILED
    })
}
