//! The executor: runs a plan's nodes as their needs complete, at most `jobs` at a
//! time, longest remaining path first. A failed command is an outcome, not a crash;
//! its dependents are skipped. Ctrl-C stops every child and publishes nothing further.

mod build;
mod check;
pub mod events;
pub mod failure;
mod merge;
pub mod metadata;
mod mirror;
pub mod node;
pub mod process;
pub mod report;
pub mod reuse;
pub mod schedule;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::plan::{Kind, NodeId, Plan};
use crate::registry::Registry;
use events::{Event, Sink};
use report::{NodeResult, Status};

/// How hard the run is being stopped; only ever escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cancel {
    None,
    Graceful,
    Kill,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    /// Between SIGTERM and SIGKILL for children on Ctrl-C.
    pub grace: Duration,
    /// Where commands run (the manifest's directory); `.mab/` lives here.
    pub workdir: PathBuf,
    /// Split builds: write one metadata file per build node here.
    pub metadata_dir: Option<PathBuf>,
    /// Benchmark backend: builds sleep for their `MAB_SLEEP_MS` arg, nothing else runs.
    pub sleep_backend: bool,
    /// Digests known before the run (split-build metadata, mirrors already in the registry).
    pub known_digests: HashMap<NodeId, String>,
    /// `sign`: the key every merged index and its platform images are signed with.
    pub signer: Option<Arc<crate::sign::Signer>>,
    /// `--locked`: the lock file, which pins every mirror's upstream and every base.
    pub locked: Option<Arc<crate::lock::Lock>>,
    /// Reuse a published image whose input hash matches (off with `--no-reuse`).
    pub reuse: bool,
    /// What each node does: the real work, nothing, or the registry check.
    pub mode: Mode,
}

/// The kinds of work behind one engine: the walk, order and failure rules are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `build`, `mirror`, `seed`, `merge`.
    Run,
    /// `build --dry-run`: every node is `planned`, nothing is touched.
    DryRun,
    /// `plan --check-registry`: each node's decision, asked of the registry (reads only).
    Check,
}

/// The digest of one upstream base for one platform, read at most once per run.
pub type UpstreamDigest = Arc<tokio::sync::OnceCell<String>>;

/// Shared by every running node.
pub struct Context {
    pub options: Options,
    pub registry: Arc<Registry>,
    /// Where the engine's events go.
    pub events: Arc<dyn Sink>,
    /// Digest published by each finished node, by node id.
    pub digests: Mutex<HashMap<NodeId, String>>,
    pub cancel: watch::Receiver<Cancel>,
    /// One writer per target repository at a time: tags of one mirror share their blobs and
    /// child manifests, and the distribution registry can report a child it is still
    /// linking for a concurrent writer as unknown.
    pub repositories: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Context hashes by (context, Dockerfile): the platforms of one image share them.
    pub context_hashes: crate::once_map::OnceMap<(PathBuf, PathBuf), String>,
    /// Build nodes whose published image was reused: their tests need not run again.
    pub reused: Mutex<std::collections::HashSet<NodeId>>,
    /// Build nodes with a test in this run: their split-build metadata waits for it.
    pub tested: std::collections::HashSet<NodeId>,
    /// The digest of each upstream base (reference, platform), read once per run: the build
    /// pins what the input hash covered.
    pub upstream: Mutex<HashMap<(String, Option<String>), UpstreamDigest>>,
    /// The run's time ([`crate::clock`]): when the images it builds were built.
    pub now: chrono::DateTime<chrono::Utc>,
    /// What each node a build pins published (an index's entries, or one image), read once
    /// per run: the builds' input hashes take their platform's image of it.
    pub pinned: Mutex<HashMap<NodeId, Arc<tokio::sync::OnceCell<Pinned>>>>,
}

/// What a pinned node published.
pub enum Pinned {
    Index(Vec<crate::registry::Descriptor>),
    Image(String),
}

impl Context {
    fn new(
        plan: &Plan,
        options: Options,
        registry: Arc<Registry>,
        events: Arc<dyn Sink>,
        cancel: watch::Receiver<Cancel>,
    ) -> Context {
        Context {
            digests: Mutex::new(options.known_digests.clone()),
            options,
            registry,
            events,
            cancel,
            repositories: Mutex::new(HashMap::new()),
            context_hashes: crate::once_map::OnceMap::default(),
            reused: Mutex::new(std::collections::HashSet::new()),
            upstream: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            now: crate::clock::now().unwrap_or_else(|_| chrono::Utc::now()),
            tested: plan
                .nodes
                .iter()
                .filter(|n| n.kind() == Kind::Test)
                .filter_map(|n| n.id.build())
                .collect(),
        }
    }

    pub fn repository_lock(&self, repository: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.repositories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repository.to_owned())
            .or_default()
            .clone()
    }

    pub fn digest(&self, id: &NodeId) -> Option<String> {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn set_digest(&self, id: &NodeId, digest: String) {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), digest);
    }

    /// A line of `id`'s output, for whoever shows the run.
    pub fn output(&self, id: &NodeId, line: &str) {
        self.events.event(Event::Output { id, line });
    }

    /// The digest of upstream base `reference` for `platform`, once it was read this run.
    pub fn upstream_digest(&self, reference: &str, platform: Option<&str>) -> Option<String> {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(reference.to_owned(), platform.map(str::to_owned)))
            .and_then(|c| c.get().cloned())
    }

    /// Record what node `id` publishes (a merge knows its index; a mirror `plan
    /// --check-registry` will copy, what upstream holds), for the dependents' input hashes.
    pub fn known(&self, id: &NodeId, content: Pinned) {
        let _ = self.pinned_cell(id).set(content);
    }

    fn pinned_cell(&self, id: &NodeId) -> Arc<tokio::sync::OnceCell<Pinned>> {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone()
    }

    /// The digest of the image for `platform` in what node `id` published at `reference`
    /// (`repository[:tag]@digest`): the index's child for it, or the manifest itself when it
    /// is one image (a push of one platform without attestations). An index without that
    /// platform stands for itself. The manifest is read once per node and run, whatever the
    /// platforms asked for.
    pub async fn platform_image(
        &self,
        id: &NodeId,
        reference: &str,
        platform: &str,
    ) -> Result<String, failure::Failure> {
        let cell = self.pinned_cell(id);
        let pinned = cell
            .get_or_try_init(|| async {
                let m = self.registry.manifest(reference).await?;
                Ok::<_, failure::Failure>(if m.is_index() {
                    Pinned::Index(m.entries()?)
                } else {
                    Pinned::Image(m.digest)
                })
            })
            .await?;
        let whole = || {
            reference
                .rsplit_once('@')
                .map_or(reference, |(_, d)| d)
                .to_owned()
        };
        Ok(match pinned {
            Pinned::Image(digest) => digest.clone(),
            Pinned::Index(entries) => entries
                .iter()
                .find(|c| {
                    c.attests().is_none()
                        && c.platform.as_ref().is_some_and(|p| p.matches(platform))
                })
                .map_or_else(whole, |c| c.digest.clone()),
        })
    }

    /// Read the digest of every upstream base of `build` (once per run and base).
    pub async fn read_bases(&self, build: &crate::plan::BuildWork) -> Result<(), failure::Failure> {
        for b in &build.bases {
            let cell = self
                .upstream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((b.reference.clone(), b.platform.clone()))
                .or_default()
                .clone();
            cell.get_or_try_init(|| async {
                if let Some(lock) = &self.options.locked {
                    let platform = b.platform.as_deref();
                    return lock.base(&b.reference, platform).cloned().ok_or_else(|| {
                        failure::Failure::NotLocked(crate::lock::base_name(&b.reference, platform))
                    });
                }
                let found = match &b.platform {
                    Some(p) => self.registry.platform_digest(&b.reference, p).await,
                    None => self.registry.digest(&b.reference).await,
                };
                match found {
                    Ok(Some(d)) => Ok(d),
                    Ok(None) => {
                        // Say which: the tag is not there at all, or it lacks the platform.
                        let tagged = match &b.platform {
                            Some(_) => self.registry.digest(&b.reference).await?.is_some(),
                            None => false,
                        };
                        Err(failure::Failure::NoBase {
                            reference: b.reference.clone(),
                            platform: b.platform.clone().filter(|_| tagged),
                            dockerfile: build.dockerfile.clone(),
                        })
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        }
        Ok(())
    }

    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow() != Cancel::None
    }
}

/// Estimated cost of a node, for ordering: builds dominate.
fn weight(plan: &Plan, i: usize, sleep_backend: bool) -> f64 {
    let n = &plan.nodes[i];
    if sleep_backend {
        return n
            .as_build()
            .and_then(|b| b.args.get("MAB_SLEEP_MS"))
            .and_then(|a| a.display().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    match n.kind() {
        Kind::Build => 100.0,
        Kind::Test => 5.0,
        Kind::Mirror => 5.0,
        Kind::Merge => 1.0,
    }
}

/// What a walk of the plan came to: each node's result, in plan order. The command turns
/// it into a verdict and an exit code.
#[derive(Clone, Debug)]
pub struct Walk {
    pub nodes: Vec<NodeResult>,
    /// A signal stopped the run.
    pub interrupted: bool,
    pub duration_ms: u64,
}

/// Run `plan`. Signals (SIGINT, SIGTERM) are handled here: the first stops the run
/// gracefully, the second kills every child at once.
pub async fn run(
    plan: &Plan,
    options: Options,
    registry: Arc<Registry>,
    events: Arc<dyn Sink>,
) -> Walk {
    let started = Instant::now();
    let mut schedule = scheduler(plan, &options);
    let mut results: Vec<Option<NodeResult>> = vec![None; plan.nodes.len()];

    let (cancel_tx, cancel_rx) = watch::channel(Cancel::None);
    let signals = tokio::spawn(watch_signals(cancel_tx, events.clone()));
    let jobs = options.jobs.max(1);
    let ctx = Arc::new(Context::new(
        plan,
        options,
        registry,
        events,
        cancel_rx.clone(),
    ));
    let mut running: JoinSet<NodeResult> = JoinSet::new();
    // Which node each task runs: a task that panicked still names its node.
    let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut cancel_rx = cancel_rx;
    let mut signals_alive = true;
    loop {
        if *cancel_rx.borrow() != Cancel::None {
            schedule.stop();
        }
        while running.len() < jobs {
            let Some(i) = schedule.start_next() else {
                break;
            };
            let node = plan.nodes[i].clone();
            let ctx = ctx.clone();
            ctx.events.event(Event::Started { id: &node.id });
            let task = running.spawn(async move { node::run(&node, &ctx).await });
            tasks.insert(task.id(), i);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.join_next_with_id() => {
                let Some(done) = done else { break };
                let (i, result) = match done {
                    Ok((task, r)) => (tasks.remove(&task), r),
                    // A panicking node task is our bug; report it as its node's failure.
                    Err(e) => {
                        let Some(i) = tasks.remove(&e.id()) else { continue };
                        let f = failure::Failure::Internal(e.to_string());
                        (Some(i), NodeResult::unrun(&plan.nodes[i], Status::Failed, f.to_string()))
                    }
                };
                let Some(i) = i else { continue };
                ctx.events.event(Event::Finished(&result));
                let outcome = match result.status {
                    s if s.succeeded() => schedule::Outcome::Succeeded,
                    Status::Failed => schedule::Outcome::Failed,
                    _ => schedule::Outcome::Stopped,
                };
                for (d, because) in schedule.finish(i, outcome) {
                    let r = skipped(plan, d, because);
                    ctx.events.event(Event::Finished(&r));
                    results[d] = Some(r);
                }
                results[i] = Some(result);
            }
            changed = cancel_rx.changed(), if signals_alive => {
                // Without a signal watcher there is nothing more to wait for here.
                signals_alive = changed.is_ok();
            }
        }
    }
    signals.abort();
    let interrupted = *ctx.cancel.borrow() != Cancel::None;
    Walk {
        nodes: in_plan_order(plan, results, interrupted),
        interrupted,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// The scheduler of `plan`'s nodes: needs as indexes, weights for the longest path.
fn scheduler(plan: &Plan, options: &Options) -> schedule::Scheduler {
    let index: HashMap<&NodeId, usize> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, x)| (&x.id, i))
        .collect();
    let needs: Vec<Vec<usize>> = plan
        .nodes
        .iter()
        .map(|x| {
            x.needs
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect()
        })
        .collect();
    let weights: Vec<f64> = (0..plan.nodes.len())
        .map(|i| weight(plan, i, options.sleep_backend))
        .collect();
    schedule::Scheduler::new(&needs, &weights, options.keep_going)
}

/// Every node's result in plan order; a node that never ran is `not run`, and why.
fn in_plan_order(
    plan: &Plan,
    results: Vec<Option<NodeResult>>,
    interrupted: bool,
) -> Vec<NodeResult> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let why = if interrupted {
                    "interrupted"
                } else {
                    "the run stopped after a failure"
                };
                NodeResult::unrun(&plan.nodes[i], Status::NotRun, why.to_owned())
            })
        })
        .collect()
}

/// The result of a node skipped because `because`, which it waited for, did not succeed.
fn skipped(plan: &Plan, d: usize, because: usize) -> NodeResult {
    let why = format!("needs `{}`, which did not succeed", plan.nodes[because].id);
    NodeResult::unrun(&plan.nodes[d], Status::Skipped, why)
}

/// First SIGINT/SIGTERM: graceful stop; second: kill at once.
async fn watch_signals(tx: watch::Sender<Cancel>, events: Arc<dyn Sink>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut level = Cancel::None;
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        level = if level == Cancel::None {
            Cancel::Graceful
        } else {
            Cancel::Kill
        };
        events.event(Event::Note(if level == Cancel::Graceful {
            "interrupted: stopping every running command (again to kill at once)"
        } else {
            "killing every running command"
        }));
        let _ = tx.send(level);
    }
}

#[cfg(test)]
mod tests {
    //! The engine with the sleep backend and a recording sink: events and outcomes without
    //! a builder, a registry or a process.

    use std::sync::Arc;

    use super::events::{Recorded, Recorder};
    use super::report::Status;
    use super::*;
    use crate::diag::Source;
    use crate::manifest::compile;
    use crate::plan::{Selection, plan};

    fn walk(manifest: &str, mode: Mode) -> (Walk, Vec<Recorded>) {
        let source = Source::new("images.kdl".to_owned(), manifest.to_owned());
        let model = compile(&source, &Default::default()).expect("manifest");
        let plan = plan(&model, &Selection::default()).expect("plan");
        let workdir = std::env::temp_dir().join(format!(
            "mab-engine-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let options = Options {
            jobs: 2,
            keep_going: false,
            grace: Duration::from_millis(10),
            workdir: workdir.clone(),
            metadata_dir: None,
            sleep_backend: true,
            known_digests: HashMap::new(),
            locked: None,
            signer: None,
            reuse: true,
            mode,
        };
        let recorder = Arc::new(Recorder::default());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let walk = rt.block_on(run(
            &plan,
            options,
            Arc::new(Registry::new(&[]).expect("registry client")),
            recorder.clone(),
        ));
        let _ = std::fs::remove_dir_all(workdir);
        (walk, recorder.take())
    }

    const CHAIN: &str = r#"
profile "t" default=#true { registry "registry.example.com/t"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "base" { arg "MAB_SLEEP_MS" "5"; version "1"; }
image "app" { from "base:1" arg="BASE"; arg "MAB_SLEEP_MS" "1"; version "1"; }
"#;

    fn id(s: &str) -> NodeId {
        s.parse().expect("node id")
    }

    fn status(walk: &Walk, s: &str) -> Status {
        walk.nodes.iter().find(|n| n.id == id(s)).expect(s).status
    }

    #[test]
    fn every_node_starts_once_before_it_finishes_and_needs_finish_first() {
        let (walk, events) = walk(CHAIN, Mode::Run);
        assert!(!walk.interrupted);
        assert_eq!(walk.nodes.len(), 6);
        let at = |e: &Recorded| events.iter().position(|x| x == e).expect("event");
        for r in &walk.nodes {
            assert_eq!(r.status, Status::Ok, "{}", r.id);
            let started = at(&Recorded::Started(r.id.clone()));
            let finished = at(&Recorded::Finished(r.id.clone(), Status::Ok));
            assert!(started < finished, "{}", r.id);
            let starts = events
                .iter()
                .filter(|e| **e == Recorded::Started(r.id.clone()))
                .count();
            assert_eq!(starts, 1, "{}", r.id);
        }
        // The base's merge finished before any build of the app started.
        let merged = at(&Recorded::Finished(id("merge:base:1"), Status::Ok));
        for p in ["linux/amd64", "linux/arm64"] {
            assert!(merged < at(&Recorded::Started(id(&format!("build:app:1@{p}")))));
        }
    }

    #[test]
    fn a_failure_skips_its_dependents_and_is_an_outcome_not_an_exit_code() {
        let failing = CHAIN.replace(
            r#"image "base" { arg "MAB_SLEEP_MS" "5";"#,
            r#"image "base" { arg "MAB_SLEEP_MS" "5"; arg "MAB_FAIL" "1";"#,
        );
        let (walk, events) = walk(&failing, Mode::Run);
        assert!(!walk.interrupted);
        assert_eq!(status(&walk, "build:base:1@linux/amd64"), Status::Failed);
        for n in ["merge:base:1", "build:app:1@linux/amd64", "merge:app:1"] {
            let s = status(&walk, n);
            assert!(matches!(s, Status::Skipped | Status::NotRun), "{n}: {s:?}");
            // Nothing that never ran was announced as started.
            assert!(!events.contains(&Recorded::Started(id(n))), "{n}");
        }
    }

    #[test]
    fn a_dry_walk_reaches_every_node_in_plan_order_and_runs_nothing() {
        let (walk, events) = walk(CHAIN, Mode::DryRun);
        assert!(walk.nodes.iter().all(|n| n.status == Status::Planned));
        assert!(
            walk.nodes
                .iter()
                .all(|n| n.log.is_none() && n.digest.is_none())
        );
        assert!(
            !events.iter().any(|e| matches!(e, Recorded::Output(..))),
            "{events:?}"
        );
    }
}
