//! The executor: runs a plan's nodes as their needs complete, at most `jobs` at a
//! time, longest remaining path first. A failed command is an outcome, not a crash;
//! its dependents are skipped. Ctrl-C stops every child and publishes nothing further.

mod build;
mod check;
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

use crate::exit_code;
use crate::plan::{Kind, Plan};
use crate::registry::Registry;
use report::{NodeResult, Reporter, RunReport, Status};

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
    pub known_digests: HashMap<String, String>,
    /// `--locked`: mirror node id → the upstream digest `images.lock` pins it to.
    pub locked: Option<HashMap<String, String>>,
    /// Reuse a published image whose input hash matches (off with `--no-reuse`).
    pub reuse: bool,
    /// What each node does: the real work, nothing, or the registry check.
    pub work: Work,
}

/// The kinds of work behind one engine: the walk, order and failure rules are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// `build`, `mirror`, `seed`, `merge`.
    Run,
    /// `build --dry-run`: every node is `planned`, nothing is touched.
    DryRun,
    /// `plan --check-registry`: each node's decision, asked of the registry (reads only).
    Check,
}

/// Shared by every running node.
pub struct Context {
    pub options: Options,
    pub registry: Registry,
    pub reporter: Arc<Reporter>,
    /// Digest published by each finished node, by node id.
    pub digests: Mutex<HashMap<String, String>>,
    pub cancel: watch::Receiver<Cancel>,
    /// One writer per target repository at a time: tags of one mirror share their blobs and
    /// child manifests, and the distribution registry can report a child it is still
    /// linking for a concurrent writer as unknown.
    pub repositories: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Context hashes by (context, Dockerfile): the platforms of one image share them.
    pub context_hashes: Mutex<HashMap<(PathBuf, PathBuf), String>>,
    /// Build nodes whose published image was reused: their tests need not run again.
    pub reused: Mutex<std::collections::HashSet<String>>,
    /// Build nodes with a test in this run: their split-build metadata waits for it.
    pub tested: std::collections::HashSet<String>,
}

impl Context {
    pub fn repository_lock(&self, repository: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.repositories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repository.to_owned())
            .or_default()
            .clone()
    }

    pub fn digest(&self, id: &str) -> Option<String> {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn set_digest(&self, id: &str, digest: String) {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), digest);
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
            .args
            .get("MAB_SLEEP_MS")
            .and_then(|a| a.display().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    match n.kind {
        Kind::Build => 100.0,
        Kind::Test => 5.0,
        Kind::Mirror => 5.0,
        Kind::Merge => 1.0,
    }
}

/// Run `plan`. Signals (SIGINT, SIGTERM) are handled here: the first stops the run
/// gracefully, the second kills every child at once.
pub async fn run(
    plan: &Plan,
    options: Options,
    registry: Registry,
    reporter: Arc<Reporter>,
) -> RunReport {
    let started = Instant::now();
    let n = plan.nodes.len();
    let index: HashMap<&str, usize> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.as_str(), i))
        .collect();
    let needs: Vec<Vec<usize>> = plan
        .nodes
        .iter()
        .map(|x| {
            x.needs
                .iter()
                .filter_map(|id| index.get(id.as_str()).copied())
                .collect()
        })
        .collect();
    let weights: Vec<f64> = (0..n)
        .map(|i| weight(plan, i, options.sleep_backend))
        .collect();
    let mut schedule = schedule::Scheduler::new(&needs, &weights, options.keep_going);
    drop(needs);
    let mut results: Vec<Option<NodeResult>> = vec![None; n];

    let (cancel_tx, cancel_rx) = watch::channel(Cancel::None);
    let signals = tokio::spawn(watch_signals(cancel_tx, reporter.clone()));
    let jobs = options.jobs.max(1);
    let known = options.known_digests.clone();
    let ctx = Arc::new(Context {
        digests: Mutex::new(known),
        options,
        registry,
        reporter,
        cancel: cancel_rx.clone(),
        repositories: Mutex::new(HashMap::new()),
        context_hashes: Mutex::new(HashMap::new()),
        reused: Mutex::new(std::collections::HashSet::new()),
        tested: plan
            .nodes
            .iter()
            .filter(|n| n.kind == Kind::Test)
            .filter_map(|n| n.needs.first().cloned())
            .collect(),
    });
    let mut running: JoinSet<NodeResult> = JoinSet::new();
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
            ctx.reporter.started(&node.id);
            running.spawn(async move { node::run(&node, &ctx).await });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.join_next() => {
                let Some(done) = done else { break };
                let result = match done {
                    Ok(r) => r,
                    // A panicking node task is our bug; report it as a failure, keep the run sane.
                    Err(e) => NodeResult {
                        id: "(internal)".to_owned(), kind: Kind::Build, status: Status::Failed,
                        reason: Some(format!("internal error: {e}")), duration_ms: 0, digest: None, source_digest: None, cache: None, log: None, decision: None,
                    },
                };
                let Some(&i) = index.get(result.id.as_str()) else { continue };
                ctx.reporter.finished(&result);
                let outcome = match result.status {
                    s if s.succeeded() => schedule::Outcome::Succeeded,
                    Status::Failed => schedule::Outcome::Failed,
                    _ => schedule::Outcome::Stopped,
                };
                for (d, because) in schedule.finish(i, outcome) {
                    let r = skipped(plan, d, because);
                    ctx.reporter.finished(&r);
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
    let nodes: Vec<NodeResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| NodeResult {
                id: plan.nodes[i].id.clone(),
                kind: plan.nodes[i].kind,
                status: Status::NotRun,
                reason: Some(if interrupted {
                    "interrupted".to_owned()
                } else {
                    "the run stopped after a failure".to_owned()
                }),
                duration_ms: 0,
                digest: None,
                source_digest: None,
                cache: None,
                log: None,
                decision: None,
            })
        })
        .collect();
    let failed = nodes
        .iter()
        .any(|r| matches!(r.status, Status::Failed | Status::Skipped | Status::NotRun));
    let (result, exit_code) = if interrupted {
        ("interrupted", exit_code::INTERRUPTED)
    } else if failed {
        ("failed", exit_code::NODE_FAILED)
    } else {
        ("success", exit_code::SUCCESS)
    };
    RunReport {
        profile: plan.profile.clone(),
        result,
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        nodes,
    }
}

/// The result of a node skipped because `because`, which it waited for, did not succeed.
fn skipped(plan: &Plan, d: usize, because: usize) -> NodeResult {
    NodeResult {
        id: plan.nodes[d].id.clone(),
        kind: plan.nodes[d].kind,
        status: Status::Skipped,
        reason: Some(format!(
            "needs `{}`, which did not succeed",
            plan.nodes[because].id
        )),
        duration_ms: 0,
        digest: None,
        source_digest: None,
        cache: None,
        log: None,
        decision: None,
    }
}

/// First SIGINT/SIGTERM: graceful stop; second: kill at once.
async fn watch_signals(tx: watch::Sender<Cancel>, reporter: Arc<Reporter>) {
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
        reporter.note(if level == Cancel::Graceful {
            "interrupted: stopping every running command (again to kill at once)"
        } else {
            "killing every running command"
        });
        let _ = tx.send(level);
    }
}
