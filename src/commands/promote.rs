//! `mab promote`: the indexes one profile published, copied byte for byte to another
//! profile's registry. Everything is read first — a version the source lacks fails the
//! command before anything is written — then each target repository is written by one
//! writer: children and index by digest, signatures, and the tags last. A target profile
//! with `sign` signs what it receives with its own key, after the copy and before any tag.

use std::collections::BTreeMap;
use std::io::Write;

use super::Project;
use super::engine::Session;
use crate::cli::{PromoteArgs, PromoteFormat};
use crate::diag::{Diag, Diagnostics};
use crate::exit_code;
use crate::promote::{self, Item};
use crate::registry::Registry;
use crate::sign::{self, SignError, Signer};
use p256::ecdsa::VerifyingKey;

/// The source and target projects of a promotion, from the flags and `promoted-from`.
fn projects(
    project: &Project,
    args: &PromoteArgs,
) -> Result<(Project, Option<Project>), Diagnostics> {
    let load = |name: &str| {
        Project::load(
            &project.file,
            crate::manifest::Options {
                profile: Some(name.to_owned()),
                ..project.options.clone()
            },
        )
    };
    let to = match &args.to {
        Some(name) if *name != project.model.profile.name => Some(load(name)?),
        _ => None,
    };
    let target = to.as_ref().map_or(&project.model, |p| &p.model);
    let from_name = match (&args.from, &target.profile.promoted_from) {
        (Some(f), _) => f.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => {
            return Err(Diag::plain(format!(
                "which profile does `{}` receive its images from?",
                target.profile.name
            ))
            .help("say `--from PROFILE`, or set `promoted-from \"PROFILE\"` in the target profile")
            .into());
        }
    };
    if from_name == target.profile.name {
        return Err(Diag::plain(format!(
            "`--from {from_name}` and the target are the same profile"
        ))
        .into());
    }
    Ok((load(&from_name)?, to))
}

pub fn run(project: &Project, args: &PromoteArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let (from, to) = projects(project, args)?;
    let target = to.as_ref().unwrap_or(project);
    let mut promotion = promote::promotion(&from.model, &target.model, &args.selectors)?;
    // The target's key is read before anything is written: without it nothing is promoted.
    // A dry run, which writes nothing, goes on without it and judges by the tags alone.
    let signer = match (&target.model.profile.sign, args.dry_run) {
        (Some(key), true) => match Signer::load(key, &target.dir) {
            Ok(signer) => Some(std::sync::Arc::new(signer)),
            Err(e) => {
                eprintln!(
                    "mab: warning: {e}: this dry run judges by the tags alone, not by signatures"
                );
                None
            }
        },
        _ => super::engine::signer(target)?,
    };
    let key = signer.as_ref().map(|s| s.public());
    let session = Session::for_models(
        &[&from.model, &target.model],
        crate::exec::report::Reporter::detect(),
    )?;
    let registry = &session.registry;
    // Read everything first: the source digest of every version, and what the target holds.
    let read = session.rt.block_on(futures_util::future::join_all(
        promotion
            .items
            .iter()
            .map(|i| state(registry, i, key.as_ref())),
    ));
    let mut diags = Diagnostics::new();
    for (item, state) in promotion.items.iter_mut().zip(read) {
        match state {
            Ok(State::Missing) => {
                item.decision = Some("missing".into());
                diags.push(
                    Diag::plain(format!(
                        "`{}` is not published by profile `{}`: {} does not exist",
                        item.version,
                        promotion.from,
                        item.source()
                    ))
                    .help(format!(
                        "build it with `mab build --profile {} {}` first; nothing was promoted",
                        promotion.from, item.version
                    )),
                );
            }
            Ok(State::DatedTaken { tag, current }) => {
                item.decision = Some("refused".into());
                diags.push(
                    Diag::plain(format!(
                        "`{}`: {}:{tag} already holds {current}: a dated tag is written once and never moved",
                        item.version, item.repository
                    ))
                    .help("nothing was promoted; promote again another day, or use `${time}` in the tag"),
                );
            }
            Ok(State::Current(d)) => {
                item.digest = Some(d);
                item.decision = Some("up-to-date".into());
            }
            Ok(State::Copy(d)) => {
                item.digest = Some(d);
                item.decision = Some("copy".into());
            }
            Ok(State::Sign(d)) => {
                item.digest = Some(d);
                item.decision = Some("sign".into());
            }
            Err(e) => diags.push(Diag::plain(format!("`{}`: {e}", item.version))),
        }
    }
    if args.dry_run || diags.has_errors() {
        let text = match args.format {
            PromoteFormat::Text => promotion.text(),
            PromoteFormat::Markdown => promotion.markdown(),
            PromoteFormat::Json => {
                serde_json::to_string_pretty(&promotion).unwrap_or_default() + "\n"
            }
        };
        if args.dry_run {
            super::emit(out, &text);
        }
        if diags.has_errors() {
            diags.eprint();
            return Ok(exit_code::NODE_FAILED);
        }
        return Ok(exit_code::SUCCESS);
    }
    // One writer per target repository; repositories in parallel.
    let mut by_repository: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in promotion
        .items
        .iter()
        .filter(|i| matches!(i.decision.as_deref(), Some("copy" | "sign")))
    {
        by_repository
            .entry(&item.repository)
            .or_default()
            .push(item);
    }
    let signer = signer.as_deref();
    let results = session.rt.block_on(futures_util::future::join_all(
        by_repository.into_values().map(|items| async move {
            let mut done = Vec::new();
            for item in items {
                done.push((item, copy(registry, item, signer).await));
            }
            done
        }),
    ));
    let mut failed = false;
    for (item, result) in results.into_iter().flatten() {
        match result {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "promoted {} {} -> {}:{}",
                    item.version,
                    item.digest.as_deref().unwrap_or_default(),
                    item.repository,
                    item.tags.join(",")
                );
            }
            Err(e) => {
                failed = true;
                Diagnostics::from(Diag::plain(format!("`{}`: {e}", item.version))).eprint();
            }
        }
    }
    let current = promotion
        .items
        .iter()
        .filter(|i| i.decision.as_deref() == Some("up-to-date"))
        .count();
    let _ = writeln!(
        out,
        "{} of {} image versions already promoted",
        current,
        promotion.items.len()
    );
    Ok(if failed {
        exit_code::NODE_FAILED
    } else {
        exit_code::SUCCESS
    })
}

enum State {
    /// The source tag does not exist.
    Missing,
    /// Every target tag holds the source digest already.
    Current(String),
    /// A dated target tag holds another index: it cannot move.
    DatedTaken {
        tag: String,
        current: String,
    },
    Copy(String),
    /// Every target tag holds the source digest, but the target's key has not signed it.
    Sign(String),
}

async fn state(
    registry: &Registry,
    item: &Item,
    key: Option<&VerifyingKey>,
) -> Result<State, SignError> {
    let Some(digest) = registry.digest(&item.source()).await? else {
        return Ok(State::Missing);
    };
    let mut copy = false;
    for tag in &item.tags {
        let at = registry
            .digest(&format!("{}:{tag}", item.repository))
            .await?;
        match at {
            Some(current) if current != digest && item.dated_tags.contains(tag) => {
                return Ok(State::DatedTaken {
                    tag: tag.clone(),
                    current,
                });
            }
            at => copy |= at.as_deref() != Some(digest.as_str()),
        }
    }
    if copy {
        return Ok(State::Copy(digest));
    }
    match key {
        Some(key) if !sign::signed_by(registry, key, &item.repository, &digest).await? => {
            Ok(State::Sign(digest))
        }
        _ => Ok(State::Current(digest)),
    }
}

/// Copy one version: everything by digest, its signatures, the target's own signatures of
/// the index and each platform image (with `signer`), then its tags.
async fn copy(registry: &Registry, item: &Item, signer: Option<&Signer>) -> Result<(), SignError> {
    let digest = item.digest.as_deref().unwrap_or_default();
    let source = item.from_repository.as_str();
    let index = registry
        .copy_by_digest(source, &item.repository, digest)
        .await?;
    sign::carry(registry, source, &item.repository, &index).await?;
    if let Some(signer) = signer {
        let entries = match index.is_index() {
            true => index.entries()?,
            false => Vec::new(),
        };
        sign::sign_index(registry, signer, &item.repository, &index.digest, &entries).await?;
    }
    for tag in &item.tags {
        let at = registry
            .digest(&format!("{}:{tag}", item.repository))
            .await?;
        if at.as_deref() != Some(digest) {
            registry
                .put_manifest(&item.repository, tag, &index.bytes, &index.media_type)
                .await?;
        }
    }
    Ok(())
}
