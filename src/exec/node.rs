//! One node's run: the work of the run's kind — real (builds and tests as child
//! processes, mirrors and merges as registry calls), dry, or the registry check — and what
//! follows it (digests for dependents, split-build metadata). Every failure comes back as
//! a [`NodeResult`], never a panic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::failure::Failure;
use super::report::{CacheUse, NodeResult, Status};
use super::{Context, Mode, build, check, merge, metadata, mirror};
use crate::plan::command::{Arg, file_stem};
use crate::plan::{Decision, Kind, Node, NodeId};
use crate::registry;

/// The outcome of a node's work, before timing is added.
pub(super) struct Done {
    pub status: Status,
    pub reason: Option<String>,
    pub digest: Option<String>,
    pub cache: Option<CacheUse>,
    pub source_digest: Option<String>,
    /// `plan --check-registry`: what a build would do.
    pub decision: Option<Decision>,
    pub failure: Option<Failure>,
}

impl Done {
    pub fn with(status: Status, digest: Option<String>) -> Done {
        Done {
            status,
            reason: None,
            digest,
            cache: None,
            source_digest: None,
            decision: None,
            failure: None,
        }
    }

    pub fn ok(digest: Option<String>) -> Done {
        Done::with(Status::Ok, digest)
    }

    /// Not run (a dry walk), passing on the digest the node would publish, if known.
    pub fn planned(digest: Option<String>) -> Done {
        Done::with(Status::Planned, digest)
    }

    pub fn current(digest: String) -> Done {
        Done::with(Status::Current, Some(digest))
    }

    pub fn cancelled(reason: &str) -> Done {
        Done {
            reason: Some(reason.to_owned()),
            ..Done::with(Status::Cancelled, None)
        }
    }

    pub fn failed(failure: impl Into<Failure>) -> Done {
        let failure = failure.into();
        Done {
            reason: Some(failure.to_string()),
            failure: Some(failure),
            ..Done::with(Status::Failed, None)
        }
    }
}

/// Do `node`'s work of the run's kind ([`Mode`]) and say how it went.
pub async fn run(node: &Node, ctx: &Context) -> NodeResult {
    let start = Instant::now();
    let (mut done, log) = match ctx.options.mode {
        Mode::DryRun => (Done::planned(None), None),
        Mode::Check => (check::decide(node, ctx).await, None),
        Mode::Run => {
            let (done, log) = work(node, ctx).await;
            (done, (!ctx.options.sleep_backend).then_some(log))
        }
    };
    if done.status == Status::Ok && ctx.cancelled() {
        // Finished, but what it produced is not used: nothing is published after a signal.
        done.status = Status::Cancelled;
        done.reason = Some("interrupted".to_owned());
    }
    if let Some(d) = &done.digest
        && done.status.succeeded()
    {
        ctx.set_digest(&node.id, d.clone());
    }
    // Split-build metadata says "this image may be merged": a build's is written once its
    // test (if the run has one) passed, so a merge never publishes an untested image.
    let ready = match &node.id {
        NodeId::Build { .. } if !ctx.tested.contains(&node.id) => {
            done.digest.clone().map(|d| (node.id.clone(), d))
        }
        NodeId::Test { .. } => node
            .id
            .build()
            .and_then(|b| Some((ctx.digest(&b)?, b)).map(|(d, b)| (b, d))),
        _ => None,
    };
    if done.status.succeeded()
        && ctx.options.mode == Mode::Run
        && let (Some(dir), Some((build, d))) = (&ctx.options.metadata_dir, ready)
        && let Err(e) = metadata::write(dir, &build, node, &d)
    {
        done = Done::failed(Failure::Unwritable {
            what: "metadata in",
            path: dir.display().to_string(),
            why: e.to_string(),
        });
    }
    NodeResult {
        id: node.id.clone(),
        kind: node.kind(),
        status: done.status,
        reason: done.reason,
        duration_ms: start.elapsed().as_millis() as u64,
        digest: done.digest,
        source_digest: done.source_digest,
        cache: done.cache,
        log: log.map(|l| relative(&l, &ctx.options.workdir)),
        decision: done.decision,
        failure: done.failure.map(std::sync::Arc::new),
    }
}

/// The real work of `node`, logged to `.mab/logs/<node>.log`.
async fn work(node: &Node, ctx: &Context) -> (Done, PathBuf) {
    // What an earlier run said of this build no longer holds: should this one (or its test)
    // fail, no merge may take the earlier image for it.
    if node.kind() == Kind::Build
        && let Some(dir) = &ctx.options.metadata_dir
    {
        metadata::remove(dir, &node.id);
    }
    let log_path = ctx
        .options
        .workdir
        .join(".mab/logs")
        .join(format!("{}.log", file_stem(&node.id.to_string())));
    let done = match open_log(&log_path).await {
        Err(e) => Done::failed(Failure::Unwritable {
            what: "log",
            path: log_path.display().to_string(),
            why: e.to_string(),
        }),
        Ok(mut log) => {
            let done = if ctx.options.sleep_backend {
                sleep_node(node, ctx).await
            } else {
                match node.kind() {
                    Kind::Build | Kind::Test => build::commands(node, ctx, &mut log).await,
                    Kind::Merge => merge::merge(node, ctx, &mut log).await,
                    Kind::Mirror => mirror::mirror(node, ctx, &mut log).await,
                }
            };
            // A failure's reason is in its log too (a mirror writes nothing else there).
            if done.status == Status::Failed
                && let Some(r) = &done.reason
            {
                let _ = log.write_all(format!("error: {r}\n").as_bytes()).await;
            }
            let _ = log.flush().await;
            done
        }
    };
    (done, log_path)
}

fn relative(path: &std::path::Path, base: &std::path::Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

async fn open_log(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    match tokio::fs::File::create(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::File::create(path).await
        }
        other => other,
    }
}

/// The test backend (`MAB_TEST_BACKEND=sleep`): a build sleeps for its `MAB_SLEEP_MS`
/// build arg and fails when `MAB_FAIL` is `1`; every other node is instant. It measures
/// the scheduler alone and tests failure handling without a builder or registry.
async fn sleep_node(node: &Node, ctx: &Context) -> Done {
    let Some(build) = node.as_build() else {
        return Done::ok(Some(registry::digest_of(node.id.to_string().as_bytes())));
    };
    let arg = |name: &str| build.args.get(name).map(Arg::display);
    let ms = arg("MAB_SLEEP_MS")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    // A thread sleep lasts what it says; tokio's timer wheel rounds every sleep up to its
    // next millisecond tick, which would bill the backend's imprecision to the scheduler.
    // `MAB_SLEEP_TRACE=FILE`: each build appends `start ID PID` and `end ID PID` to FILE as it
    // happens, so a test can check the order of events of several runs, not their timing.
    let trace = std::env::var_os("MAB_SLEEP_TRACE");
    let id = node.id.to_string();
    let work = tokio::task::spawn_blocking(move || {
        let mark = |what: &str| {
            if let Some(path) = &trace {
                use std::io::Write;
                // One write of the whole line (O_APPEND): builds writing at once never mix.
                let line = format!("{what} {id} {}\n", std::process::id());
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = f.write_all(line.as_bytes());
                }
            }
        };
        mark("start");
        std::thread::sleep(Duration::from_millis(ms));
        mark("end");
    });
    let mut cancel = ctx.cancel.clone();
    tokio::select! {
        _ = work => {
            if arg("MAB_FAIL").as_deref() == Some("1") {
                Done::failed(Failure::Injected)
            } else {
                Done::ok(Some(registry::digest_of(node.id.to_string().as_bytes())))
            }
        }
        _ = cancel.changed() => Done::cancelled("interrupted"),
    }
}
