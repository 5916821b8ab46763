//! `mab mirror`: upstream tags copied when they moved; `--locked` / `--update-lock`.
//!
//! `--update-lock` is the one "refresh the world" command: it records the upstream digest
//! of every mirror it ran and of every undeclared base any profile's builds name.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::Project;
use super::engine::{Session, options, read_lock, run_plan};
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
    if selectors.is_empty() && !args.update_lock {
        let _ = writeln!(out, "the manifest declares no mirror");
        return Ok(exit_code::SUCCESS);
    }
    let session = Session::new(model, crate::exec::report::Reporter::detect())?;
    let mirrored = if selectors.is_empty() {
        None
    } else {
        let selection = Selection {
            selectors,
            platforms: Vec::new(),
            only: None,
        };
        let plan = plan::plan(model, &selection)?;
        let mut opts = options(project, &args.run, None);
        if args.locked {
            opts.locked = Some(read_lock(project)?);
        }
        let report = run_plan(&session, model, &plan, &args.run, opts, out)?;
        if report.exit_code != exit_code::SUCCESS {
            return Ok(report.exit_code);
        }
        Some((plan, report))
    };
    if args.update_lock {
        // A base that cannot be read fails the refresh as a node would: exit 1, nothing written.
        let bases = match read_bases(project, &session) {
            Ok(b) => b,
            Err(d) => {
                d.eprint();
                let _ = writeln!(out, "the lock was not written");
                return Ok(exit_code::NODE_FAILED);
            }
        };
        write_lock(project, model, mirrored.as_ref(), bases)
            .map_err(|e| Diag::plain(e.to_string()))?;
        let _ = writeln!(out, "wrote {}", lock::path_for(&project.file).display());
    }
    Ok(exit_code::SUCCESS)
}

/// Every base pin the builds of every profile use (each profile can pass other build args),
/// and whether every profile could be planned (if not, no entry is dropped as unused).
fn base_pins(project: &Project) -> (BTreeSet<(String, Option<String>)>, bool) {
    let mut pins = BTreeSet::new();
    let mut complete = true;
    let mut add = |model: &Model| match plan::plan(model, &Selection::default()) {
        Ok(plan) => {
            for n in &plan.nodes {
                for b in n.as_build().map_or(&[][..], |b| &b.bases[..]) {
                    pins.insert((b.reference.clone(), b.platform.clone()));
                }
            }
            true
        }
        Err(_) => false,
    };
    complete &= add(&project.model);
    for p in &project.model.profiles {
        if Some(p) == project.options.profile.as_ref() {
            continue;
        }
        let options = crate::manifest::Options {
            profile: Some(p.clone()),
            ..project.options.clone()
        };
        complete &= Project::load(&project.file, options).is_ok_and(|other| add(&other.model));
    }
    (pins, complete)
}

/// What upstream holds now for every base pin: the lock's `bases`, and whether entries of
/// pins not found now may be dropped.
struct Bases {
    digests: BTreeMap<String, BTreeMap<String, String>>,
    complete: bool,
}

fn read_bases(project: &Project, session: &Session) -> Result<Bases, Diagnostics> {
    let (pins, complete) = base_pins(project);
    let registry = &session.registry;
    let found = session
        .rt
        .block_on(futures_util::future::join_all(pins.iter().map(
            |(reference, platform)| async move {
                match platform {
                    Some(p) => registry.platform_digest(reference, p).await,
                    None => registry.digest(reference).await,
                }
            },
        )));
    let mut digests: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut diags = Diagnostics::new();
    for ((reference, platform), found) in pins.iter().zip(found) {
        let name = lock::base_name(reference, platform.as_deref());
        match found {
            Ok(Some(d)) => {
                digests
                    .entry(reference.clone())
                    .or_default()
                    .insert(lock::platform_key(platform.as_deref()).to_owned(), d);
            }
            Ok(None) => diags.push(
                Diag::plain(format!("base {name} does not exist upstream"))
                    .help("a Dockerfile names it in a FROM: is the tag right, and does it have that platform?"),
            ),
            Err(e) => diags.push(Diag::plain(format!("cannot read base {name}: {e}"))),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Bases { digests, complete })
}

/// Record the upstream digest each mirror node found (keeping the entries of mirrors not
/// run now, dropping those the manifest no longer declares) and every base pin.
fn write_lock(
    project: &Project,
    model: &Model,
    mirrored: Option<&(Plan, report::RunReport)>,
    bases: Bases,
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
    for (node, result) in mirrored
        .iter()
        .flat_map(|(plan, report)| plan.nodes.iter().zip(&report.nodes))
    {
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
    if bases.complete {
        lock.bases = bases.digests;
    } else {
        for (reference, platforms) in bases.digests {
            lock.bases.entry(reference).or_default().extend(platforms);
        }
    }
    lock.write(&path)
}
