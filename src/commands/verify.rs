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
    let (mut verified, mut failed, mut unpublished) = (0, 0, 0);
    // A digest two tags share (`1`, `latest`) is checked once.
    let mut good: std::collections::HashSet<String> = std::collections::HashSet::new();
    for node in plan
        .nodes
        .iter()
        .filter(|n| n.kind() == Kind::Merge && n.key().is_some_and(|k| keys.contains(k)))
    {
        let repository = node.reference();
        for tag in node.tags() {
            let verdict = session.rt.block_on(async {
                let Some(digest) = registry.digest(&format!("{repository}:{tag}")).await? else {
                    return Ok::<_, sign::SignError>(None);
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
                    if !good.contains(d) {
                        if !sign::signed_by(registry, &key, repository, d).await? {
                            return Ok(Some(Err(format!(
                                "{d} has no valid signature by this key"
                            ))));
                        }
                        good.insert(d.clone());
                    }
                }
                Ok(Some(Ok(digest)))
            });
            match verdict {
                Ok(None) => {
                    unpublished += 1;
                    let _ = writeln!(out, "-        {repository}:{tag}: not published");
                }
                Ok(Some(Ok(digest))) => {
                    verified += 1;
                    let _ = writeln!(out, "verified {repository}:{tag} ({digest})");
                }
                Ok(Some(Err(why))) => {
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
    let _ = writeln!(
        out,
        "{verified} tags verified, {failed} failed, {unpublished} not published"
    );
    // Nothing published is nothing verified: a release check must not pass on an empty registry.
    Ok(if failed == 0 && verified > 0 {
        exit_code::SUCCESS
    } else {
        exit_code::NODE_FAILED
    })
}
