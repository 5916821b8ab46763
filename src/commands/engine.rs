//! What every command that runs nodes shares: the registry client and its transport rules,
//! the engine's options resolved once from the command line, the preflight (secrets, the
//! registry, builders, `.mab/lock`), the run itself, and the verdict and exit code.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Project;
use crate::cli::RunArgs;
use crate::diag::{Diag, Diagnostics};
use crate::exec::{self, report};
use crate::manifest::Model;
use crate::plan::{self, Kind, NodeId, Plan};
use crate::registry::Registry;
use crate::{exit_code, lock};

/// `host[:port]` of a repository reference.
fn host(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}

/// What one command's walks and registry reads share: one runtime, one registry client (its
/// transport rules, `registries.conf` included, read once) whose retry notes go where the
/// run's events go.
pub(super) struct Session {
    pub rt: tokio::runtime::Runtime,
    pub registry: Arc<Registry>,
    pub reporter: Arc<report::Reporter>,
}

impl Session {
    pub fn new(model: &Model, reporter: report::Reporter) -> Result<Session, Diagnostics> {
        Session::for_models(&[model], reporter)
    }

    /// A session that talks to the registries of every model in `models` (promotion).
    pub fn for_models(
        models: &[&Model],
        reporter: report::Reporter,
    ) -> Result<Session, Diagnostics> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Diag::plain(format!("cannot start the runtime: {e}")))?;
        let reporter = Arc::new(reporter);
        let notes = reporter.clone();
        let registry = Arc::new(
            Registry::with_observer(
                &insecure_hosts(models),
                Box::new(move |m| {
                    use exec::events::{Event, Sink};
                    notes.event(Event::Note(&format!("registry: {m}")))
                }),
            )
            .map_err(Diag::plain)?,
        );
        Ok(Session {
            rt,
            registry,
            reporter,
        })
    }

    /// Walk `plan` with the work `opts` says.
    pub fn walk(&self, plan: &Plan, opts: exec::Options) -> exec::Walk {
        self.rt.block_on(exec::run(
            plan,
            opts,
            self.registry.clone(),
            self.reporter.clone(),
        ))
    }
}

/// Registries (host[:port]) spoken to over plain HTTP.
fn insecure_hosts(models: &[&Model]) -> Vec<String> {
    let mut insecure: Vec<String> = Vec::new();
    for model in models {
        if model.profile.insecure {
            insecure.push(host(&model.profile.registry).to_owned());
        }
        for m in model.mirrors.iter().filter(|m| m.insecure) {
            insecure.push(host(&m.source).to_owned());
        }
    }
    // What buildah, podman and skopeo (which mab runs) are told is plain HTTP.
    insecure.extend(crate::registry::transport::insecure_from_registries_conf(
        &|m| eprintln!("mab: {m}"),
    ));
    insecure.sort();
    insecure.dedup();
    insecure
}

pub(super) fn options(
    project: &Project,
    run: &RunArgs,
    metadata_dir: Option<PathBuf>,
) -> exec::Options {
    exec::Options {
        jobs: run
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        keep_going: run.keep_going,
        grace: Duration::from_secs(run.grace),
        workdir: project.dir.clone(),
        metadata_dir,
        sleep_backend: cfg!(feature = "test-backend")
            && std::env::var("MAB_TEST_BACKEND").is_ok_and(|v| v == "sleep"),
        known_digests: HashMap::new(),
        locked: None,
        signer: None,
        reuse: true,
        mode: exec::Mode::Run,
    }
}

/// Run `plan`, print the summary, write the report; the exit code.
pub(super) fn execute(
    session: &Session,
    model: &Model,
    plan: &Plan,
    run: &RunArgs,
    opts: exec::Options,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    // What is missing on this machine is said before the network is asked anything.
    if !opts.sleep_backend {
        secrets_available(plan, &opts.workdir)?;
    }
    // One request to the registry the run publishes to, before any build: an outage is found
    // now, not after the first build's minutes, when it fails to push its cache.
    if !opts.sleep_backend
        && model.profile.push
        && let Some(n) = plan
            .nodes
            .iter()
            .find(|n| matches!(n.kind(), Kind::Build | Kind::Merge))
    {
        let probe = format!("{}:mab-preflight", n.reference());
        if let Err(e) = session.rt.block_on(session.registry.digest(&probe)) {
            eprintln!(
                "mab: cannot reach the registry of profile `{}`: {e}",
                model.profile.name
            );
            let _ = writeln!(out, "failed: nothing was run; the registry did not answer");
            return Ok(exit_code::NODE_FAILED);
        }
    }
    run_plan(session, model, plan, run, opts, out).map(|r| r.exit_code)
}

/// Run `plan`, print the summary, write the report.
pub(super) fn run_plan(
    session: &Session,
    model: &Model,
    plan: &Plan,
    run: &RunArgs,
    opts: exec::Options,
    out: &mut dyn Write,
) -> Result<report::RunReport, Diagnostics> {
    // A report that cannot be written is refused before anything runs.
    if let Some(path) = &run.report
        && let Err(e) = std::fs::File::create(path)
    {
        return Err(Diag::plain(format!("cannot write report {}: {e}", path.display())).into());
    }
    // `.mab/` (digest, ID and metadata files, layouts, logs) belongs to one run at a time;
    // runs in other checkouts have their own.
    let _lock = lock_workdir(&opts.workdir)?;
    if !opts.sleep_backend {
        builders(model, plan)?;
    }
    let report = verdict(plan, session.walk(plan, opts));
    let _ = out.write_all(report::summary_table(&report).as_bytes());
    // What to do about the failures, once per kind of advice.
    let mut helps: Vec<&str> = report
        .nodes
        .iter()
        .filter_map(|n| n.failure.as_ref()?.help())
        .collect();
    helps.sort_unstable();
    helps.dedup();
    for h in helps {
        eprintln!("mab: help: {h}");
    }
    if let Some(path) = &run.report {
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            return Err(Diag::plain(format!("cannot write report {}: {e}", path.display())).into());
        }
    }
    Ok(report)
}

/// The report of a walk: its verdict and exit code. A node that failed, was skipped or did
/// not run fails the run; a signal makes it interrupted.
pub(super) fn verdict(plan: &Plan, walk: exec::Walk) -> report::RunReport {
    use report::Status;
    let failed = walk
        .nodes
        .iter()
        .any(|r| matches!(r.status, Status::Failed | Status::Skipped | Status::NotRun));
    let (result, exit_code) = if walk.interrupted {
        ("interrupted", exit_code::INTERRUPTED)
    } else if failed {
        ("failed", exit_code::NODE_FAILED)
    } else {
        ("success", exit_code::SUCCESS)
    };
    report::RunReport {
        profile: plan.profile.clone(),
        result,
        exit_code,
        duration_ms: walk.duration_ms,
        nodes: walk.nodes,
    }
}

/// Take `.mab/lock` for the run, waiting (as cargo does for its build directory) while
/// another run in the same directory holds it. The lock goes with the process, however it ends.
pub(super) fn lock_workdir(workdir: &std::path::Path) -> Result<std::fs::File, Diagnostics> {
    let dir = workdir.join(".mab");
    let path = dir.join("lock");
    let open = || {
        std::fs::create_dir_all(&dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    };
    let file = open().map_err(|e| Diag::plain(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "mab: waiting for another run in this directory to finish (it holds .mab/lock)"
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Diag::plain(format!("cannot lock {}: {e}", path.display())).into());
        }
    }
    file.lock()
        .map_err(|e| Diag::plain(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Every secret a build of the plan mounts is there before anything runs.
pub(super) fn secrets_available(plan: &Plan, workdir: &std::path::Path) -> Result<(), Diagnostics> {
    let builds = plan
        .nodes
        .iter()
        .filter_map(|n| Some((n.key()?, &n.as_build()?.secrets)));
    let diags = crate::check::missing_secrets(builds, workdir);
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}

/// buildx: the builder of every `builder` block the plan's nodes name, created from its
/// endpoint or checked, before anything runs.
pub(super) fn builders(model: &Model, plan: &Plan) -> Result<(), Diagnostics> {
    if model.profile.backend != crate::manifest::model::Backend::Buildx {
        return Ok(());
    }
    let mut diags = Diagnostics::new();
    for b in &model.builders {
        if plan
            .nodes
            .iter()
            .any(|n| n.builder() == Some(b.name.as_str()))
            && let Err(e) = crate::buildx::ensure(b)
        {
            diags.push(Diag::plain(e.to_string()));
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(())
    }
}

/// `sign`: the profile's signing key, read before anything runs.
pub(super) fn signer(
    project: &Project,
) -> Result<Option<std::sync::Arc<crate::sign::Signer>>, Diagnostics> {
    project
        .model
        .profile
        .sign
        .as_ref()
        .map(|k| {
            crate::sign::Signer::load(k, &project.dir)
                .map(std::sync::Arc::new)
                .map_err(|e| {
                    Diagnostics::from(Diag::plain(e.to_string()).help(
                        "the profile's `sign key=…` names it; nothing was built or published",
                    ))
                })
        })
        .transpose()
}

/// `--locked`: the manifest's lock file.
pub(super) fn read_lock(project: &Project) -> Result<std::sync::Arc<lock::Lock>, Diagnostics> {
    let path = lock::path_for(&project.file);
    lock::Lock::read(&path)
        .map(std::sync::Arc::new)
        .map_err(|e| {
            Diagnostics::from(
                Diag::plain(e.to_string())
                    .help("write it with `mab mirror --update-lock`, and commit it"),
            )
        })
}

/// The digest of each external need at its tag (or of its platform's child of the index
/// there); one with nothing published is an error, with `help`.
pub(super) fn published_digests(
    session: &Session,
    external: Vec<&plan::External>,
    help: &str,
) -> Result<HashMap<NodeId, String>, Diagnostics> {
    let mut known = HashMap::new();
    let mut diags = Diagnostics::new();
    for e in external {
        let found = match &e.platform {
            None => session.rt.block_on(session.registry.digest(&e.reference)),
            Some(p) => {
                let (repo, tag) = e.reference.rsplit_once(':').unwrap_or((&e.reference, ""));
                session
                    .rt
                    .block_on(session.registry.published_child(repo, tag, p))
            }
        };
        match found {
            Ok(Some(d)) => {
                known.insert(e.id.clone(), d);
            }
            Ok(None) => diags.push(
                Diag::plain(match &e.platform {
                    None => format!(
                        "`{}` is not published: {} does not exist",
                        e.id, e.reference
                    ),
                    Some(p) => format!(
                        "`{}` is not published: {} holds no {p} image",
                        e.id, e.reference
                    ),
                })
                .help(help),
            ),
            Err(e) => diags.push(Diag::plain(e.to_string())),
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(known)
    }
}
