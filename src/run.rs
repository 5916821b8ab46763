//! `build`, `mirror`, `seed` and `merge`: plans turned into runs.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{BuildArgs, Cli, MergeArgs, MirrorArgs, RunArgs, SeedArgs};
use crate::diag::{Diag, Diagnostics};
use crate::exec::{self, report};
use crate::manifest::Model;
use crate::plan::{self, Kind, Plan, Selection};
use crate::registry::Registry;
use crate::{exit_code, lock, render};

/// The manifest's directory, absolute: commands run there and `.mab/` lives there.
fn workdir(cli: &Cli) -> PathBuf {
    let dir = cli
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// `host[:port]` of a repository reference.
fn host(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}

/// Registries spoken to over plain HTTP: the profile's when `insecure`, and insecure mirrors' upstreams.
fn registry(model: &Model) -> Registry {
    Registry::new(&insecure_hosts(model))
}

/// The registry of a run: its retry notes go to the run's reporter.
fn run_registry(model: &Model, reporter: &std::sync::Arc<report::Reporter>) -> Registry {
    let reporter = reporter.clone();
    Registry::with_observer(
        &insecure_hosts(model),
        Box::new(move |m| {
            use exec::events::{Event, Sink};
            reporter.event(Event::Note(&format!("registry: {m}")))
        }),
    )
}

/// Registries (host[:port]) spoken to over plain HTTP.
fn insecure_hosts(model: &Model) -> Vec<String> {
    let mut insecure: Vec<String> = Vec::new();
    if model.profile.insecure {
        insecure.push(host(&model.profile.registry).to_owned());
    }
    for m in model.mirrors.iter().filter(|m| m.insecure) {
        insecure.push(host(&m.source).to_owned());
    }
    // What buildah, podman and skopeo (which mab runs) are told is plain HTTP.
    insecure.extend(crate::registry::transport::insecure_from_registries_conf(
        &|m| eprintln!("mab: {m}"),
    ));
    insecure.sort();
    insecure.dedup();
    insecure
}

fn runtime() -> Result<tokio::runtime::Runtime, Diagnostics> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Diag::plain(format!("cannot start the runtime: {e}")).into())
}

fn options(cli: &Cli, run: &RunArgs, metadata_dir: Option<PathBuf>) -> exec::Options {
    exec::Options {
        jobs: run
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        keep_going: run.keep_going,
        grace: Duration::from_secs(run.grace),
        workdir: workdir(cli),
        metadata_dir,
        sleep_backend: cfg!(feature = "test-backend")
            && std::env::var("MAB_TEST_BACKEND").is_ok_and(|v| v == "sleep"),
        known_digests: HashMap::new(),
        locked: None,
        reuse: true,
        work: exec::Work::Run,
    }
}

/// Run `plan`, print the summary, write the report; the exit code.
fn execute(
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
            .find(|n| matches!(n.kind, Kind::Build | Kind::Merge))
    {
        let rt = runtime()?;
        let probe = format!("{}:mab-preflight", n.reference);
        if let Err(e) = rt.block_on(registry(model).digest(&probe)) {
            eprintln!(
                "mab: cannot reach the registry of profile `{}`: {e}",
                model.profile.name
            );
            let _ = writeln!(out, "failed: nothing was run; the registry did not answer");
            return Ok(exit_code::NODE_FAILED);
        }
    }
    run_plan(model, plan, run, opts, out).map(|r| r.exit_code)
}

/// Run `plan`, print the summary, write the report.
fn run_plan(
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
    let rt = runtime()?;
    let reporter = std::sync::Arc::new(report::Reporter::detect());
    let registry = run_registry(model, &reporter);
    let report = verdict(plan, rt.block_on(exec::run(plan, opts, registry, reporter)));
    let _ = out.write_all(report::summary_table(&report).as_bytes());
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
fn verdict(plan: &Plan, walk: exec::Walk) -> report::RunReport {
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
fn lock_workdir(workdir: &std::path::Path) -> Result<std::fs::File, Diagnostics> {
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
fn secrets_available(plan: &Plan, workdir: &std::path::Path) -> Result<(), Diagnostics> {
    let builds = plan
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Build)
        .map(|n| (n.key().unwrap_or(&n.id), &n.secrets));
    let diags = crate::check::missing_secrets(builds, workdir);
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}

/// buildx: the builder of every `builder` block the plan's nodes name, created from its
/// endpoint or checked, before anything runs.
fn builders(model: &Model, plan: &Plan) -> Result<(), Diagnostics> {
    if model.profile.backend != crate::manifest::model::Backend::Buildx {
        return Ok(());
    }
    let mut diags = Diagnostics::new();
    for b in &model.builders {
        if plan
            .nodes
            .iter()
            .any(|n| n.builder.as_deref() == Some(b.name.as_str()))
            && let Err(e) = crate::buildx::ensure(b)
        {
            diags.push(Diag::plain(e));
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(())
    }
}

/// `--locked`: mirror node id → locked upstream digest, from the manifest's lock file.
fn locked_digests(cli: &Cli, plan: &Plan) -> Result<HashMap<String, String>, Diagnostics> {
    let path = lock::path_for(&cli.file);
    let lock = lock::Lock::read(&path).map_err(|e| {
        Diagnostics::from(
            Diag::plain(e).help("write it with `mab mirror --update-lock`, and commit it"),
        )
    })?;
    Ok(plan
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Mirror)
        .filter_map(|n| {
            lock.mirrors
                .get(lock::key(&n.id))
                .map(|l| (n.id.clone(), l.digest.clone()))
        })
        .collect())
}

pub fn build(
    cli: &Cli,
    model: &Model,
    args: &BuildArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let only = match &args.changed_since {
        Some(git_ref) => {
            let c =
                crate::changes::since(model, &cli.file, git_ref, &crate::manifest_options(cli))?;
            Some((c.versions, c.reasons))
        }
        None => None,
    };
    let selection = Selection {
        selectors: args.selectors.clone(),
        platforms: args.platforms.clone(),
        only,
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
            let mut opts = options(cli, &args.run, args.metadata_dir.clone());
            opts.work = exec::Work::DryRun;
            let rt = runtime()?;
            let walk = rt.block_on(exec::run(
                &plan,
                opts,
                registry(model),
                std::sync::Arc::new(report::Reporter::silent()),
            ));
            let report = verdict(&plan, walk);
            let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
            std::fs::write(path, json)
                .map_err(|e| Diag::plain(format!("cannot write report {}: {e}", path.display())))?;
        }
        return Ok(exit_code::SUCCESS);
    }
    let mut opts = options(cli, &args.run, args.metadata_dir.clone());
    opts.reuse = !args.no_reuse;
    opts.known_digests = external_digests(model, &plan, args)?;
    if args.locked {
        opts.locked = Some(locked_digests(cli, &plan)?);
    }
    execute(model, &plan, &args.run, opts, out)
}

/// The digests of what the plan needs and does not build: mirrors and merges from their tags;
/// a base's image of one platform from that tag's index; under `--node`, builds (and the tests
/// that vouch for them) from the split-build metadata of the jobs that built them.
fn external_digests(
    model: &Model,
    plan: &Plan,
    args: &BuildArgs,
) -> Result<HashMap<String, String>, Diagnostics> {
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
            let ids: Vec<&str> = built.iter().map(|e| e.id.as_str()).collect();
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
        let rt = runtime()?;
        known.extend(published_digests(&rt, &registry(model), published, help)?);
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
) -> Result<HashMap<String, String>, Diagnostics> {
    let metadata = exec::metadata::read(dir).map_err(Diag::plain)?;
    let mut known = HashMap::new();
    let mut diags = Diagnostics::new();
    for n in outside {
        let id: Option<plan::NodeId> = n.id.parse().ok();
        let is_test = id.as_ref().is_some_and(|i| i.kind() == Kind::Test);
        let build = id
            .and_then(|i| i.build())
            .map_or_else(|| n.id.clone(), |b| b.to_string());
        let repository = n
            .reference
            .rsplit_once(':')
            .map_or(n.reference.as_str(), |r| r.0);
        let needed_by: Vec<&str> = plan
            .nodes
            .iter()
            .filter(|x| x.needs.contains(&n.id))
            .map(|x| x.id.as_str())
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

pub fn mirror(
    cli: &Cli,
    model: &Model,
    args: &MirrorArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
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
    let mut opts = options(cli, &args.run, None);
    if args.locked {
        opts.locked = Some(locked_digests(cli, &plan)?);
    }
    let report = run_plan(model, &plan, &args.run, opts, out)?;
    if args.update_lock && report.exit_code == exit_code::SUCCESS {
        write_lock(cli, model, &plan, &report).map_err(Diag::plain)?;
        let _ = writeln!(out, "wrote {}", lock::path_for(&cli.file).display());
    }
    Ok(report.exit_code)
}

/// Record the upstream digest each mirror node found; keep the entries of mirrors not run
/// now, drop those the manifest no longer declares.
fn write_lock(
    cli: &Cli,
    model: &Model,
    plan: &Plan,
    report: &report::RunReport,
) -> Result<(), String> {
    let path = lock::path_for(&cli.file);
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
        if let (Some(digest), Some(source)) = (&result.source_digest, &node.source) {
            let tag = node.tags.first().map_or("", String::as_str);
            lock.mirrors.insert(
                lock::key(&node.id).to_owned(),
                lock::Locked {
                    source: format!("{source}:{tag}"),
                    digest: digest.clone(),
                },
            );
        }
    }
    lock.write(&path)
}

/// The digest of each external need at its tag (or of its platform's child of the index
/// there); one with nothing published is an error, with `help`.
fn published_digests(
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    external: Vec<&plan::External>,
    help: &str,
) -> Result<HashMap<String, String>, Diagnostics> {
    let mut known = HashMap::new();
    let mut diags = Diagnostics::new();
    for e in external {
        let found = match &e.platform {
            None => rt.block_on(reg.digest(&e.reference)),
            Some(p) => {
                let (repo, tag) = e.reference.rsplit_once(':').unwrap_or((&e.reference, ""));
                rt.block_on(reg.published_child(repo, tag, p))
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

pub fn seed(
    cli: &Cli,
    model: &Model,
    args: &SeedArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    // Builds of the platform, kept local: only the cache (`--cache-to`) is written to the registry.
    let mut local = model.clone();
    local.profile.push = false;
    let selection = Selection {
        selectors: args.selectors.clone(),
        platforms: args.platforms.clone(),
        only: None,
    };
    let mut plan = plan::plan(&local, &selection)?;
    let rt = runtime()?;
    let mut opts = options(cli, &args.run, None);
    plan.nodes.retain(|n| n.kind == Kind::Build);
    plan.external = plan::externals(model, &plan.nodes);
    opts.known_digests = published_digests(
        &rt,
        &registry(model),
        plan.external.iter().collect(),
        "run `mab mirror` first: seeding builds on the mirrored bases",
    )?;
    drop(rt);
    for n in &mut plan.nodes {
        n.publish.cache_only = true;
    }
    execute(&local, &plan, &args.run, opts, out)
}

pub fn merge(
    cli: &Cli,
    model: &Model,
    args: &MergeArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let mut plan = plan::plan(
        model,
        &Selection {
            selectors: args.selectors.clone(),
            platforms: Vec::new(),
            only: None,
        },
    )?;
    let metadata = exec::metadata::read(&args.metadata_dir).map_err(Diag::plain)?;
    let by_id: HashMap<&str, &exec::metadata::BuildMetadata> =
        metadata.iter().map(|m| (m.id.as_str(), m)).collect();
    // Every file must be of a build this manifest has: a stray one means the directory is
    // not what this merge thinks it is.
    let builds: std::collections::HashSet<String> = model
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
    plan.nodes.retain(|n| n.kind == Kind::Merge);
    if args.selectors.is_empty() {
        // Without selectors: the image versions the metadata speaks of.
        plan.nodes
            .retain(|n| n.needs.iter().any(|x| by_id.contains_key(x.as_str())));
    }
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
        for need in n.needs.iter().filter(|x| x.starts_with("build:")) {
            match by_id.get(need.as_str()) {
                None => diags.push(
                    Diag::plain(format!("`{}` expects `{need}`, which {} has no metadata for", n.id, args.metadata_dir.display()))
                        .help("build that platform with `mab build --platform P --metadata-dir DIR` and copy its files here"),
                ),
                Some(m) if m.repository != n.reference => diags.push(Diag::plain(format!(
                    "metadata of `{need}` names {}, the manifest {}",
                    m.repository, n.reference
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
    let mut opts = options(cli, &args.run, None);
    opts.known_digests = known;
    execute(model, &plan, &args.run, opts, out)
}

/// `plan --check-registry`: what a build would do with each node, asked of the registry
/// (HEAD and small GETs only; nothing is written) — the engine's walk with the check as its
/// work, so each decision comes from the code the build decides with. Mirrors are judged
/// against upstream now, as the build's mirror nodes copy it first (`--refresh` is implied).
pub fn decide(cli: &Cli, model: &Model, plan: &mut Plan) -> Result<(), Diagnostics> {
    let rt = runtime()?;
    let reporter = std::sync::Arc::new(report::Reporter::silent());
    let reg = run_registry(model, &reporter);
    // What the plan does not build is judged on what is published, as a build reads it.
    let known = published_digests(
        &rt,
        &reg,
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
        workdir: workdir(cli),
        metadata_dir: None,
        sleep_backend: false,
        known_digests: known,
        locked: None,
        reuse: true,
        work: exec::Work::Check,
    };
    let walk = rt.block_on(exec::run(plan, opts, reg, reporter));
    let mut diags = Diagnostics::new();
    for (node, result) in plan.nodes.iter_mut().zip(walk.nodes) {
        match result.decision {
            Some(d) => node.decision = Some(Box::new(d)),
            None if result.status == report::Status::Failed => diags.push(Diag::plain(format!(
                "`{}`: {}",
                node.id,
                result.reason.unwrap_or_default()
            ))),
            None => {}
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(())
    }
}
