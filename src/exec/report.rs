//! What a run shows: a live view on a terminal, prefixed lines otherwise (folded in
//! `::group::` blocks under GitHub Actions), the summary table and the JSON report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::plan::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran and succeeded.
    Ok,
    /// Nothing to do: a mirror or merge already up to date.
    Current,
    /// Not built: an image with the same input hash is already published for this node.
    Reused,
    Failed,
    /// Not run because a node it needs failed or was not run.
    Skipped,
    /// Stopped by Ctrl-C / SIGTERM.
    Cancelled,
    /// Not started: the run stopped first (a failure without `--keep-going`, or a signal).
    #[serde(rename = "not-run")]
    NotRun,
    /// `build --dry-run --report`: reached by the walk, not run.
    Planned,
}

impl Status {
    /// Whether dependents may run.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::Current | Status::Reused | Status::Planned
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Current => "up-to-date",
            Status::Reused => "reused",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
            Status::NotRun => "not run",
            Status::Planned => "planned",
        }
    }
}

/// Steps a build took from the layer cache, of those it could.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheUse {
    pub hits: u32,
    pub steps: u32,
    /// Hits pulled from the registry cache (`--cache-from`) rather than found locally.
    pub remote: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeResult {
    pub id: crate::plan::NodeId,
    pub kind: crate::plan::Kind,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Mirrors: the upstream digest the node found (and copied, unless filtered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// `plan --check-registry`: what a build would do, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<crate::plan::Decision>,
    /// Why it failed, typed (the report has `reason`, its message).
    #[serde(skip)]
    pub failure: Option<std::sync::Arc<super::failure::Failure>>,
}

impl NodeResult {
    /// The result of `node` when its work did not run (or did not come back), and why.
    pub fn unrun(node: &crate::plan::Node, status: Status, reason: String) -> NodeResult {
        NodeResult {
            id: node.id.clone(),
            kind: node.kind(),
            status,
            reason: Some(reason),
            duration_ms: 0,
            digest: None,
            source_digest: None,
            cache: None,
            log: None,
            decision: None,
            failure: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub profile: String,
    /// `success`, `failed` or `interrupted`.
    pub result: &'static str,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub nodes: Vec<NodeResult>,
}

enum Mode {
    /// No node shown (a dry run or a registry check, whose output is the plan itself);
    /// notes (a retry, a signal) are.
    Silent,
    Plain,
    Github,
    Live {
        multi: MultiProgress,
        bars: HashMap<NodeId, ProgressBar>,
    },
}

/// Shows the engine's events: a live view on a terminal, plain lines, or GitHub groups.
pub struct Reporter {
    mode: Mutex<Mode>,
    buffers: Mutex<HashMap<NodeId, Vec<String>>>,
}

impl Reporter {
    /// Live view on a terminal, groups under GitHub Actions, plain lines otherwise.
    pub fn detect() -> Reporter {
        let mode = if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            Mode::Github
        } else if std::io::stderr().is_terminal() {
            Mode::Live {
                multi: MultiProgress::new(),
                bars: HashMap::new(),
            }
        } else {
            Mode::Plain
        };
        Reporter {
            mode: Mutex::new(mode),
            buffers: Mutex::new(HashMap::new()),
        }
    }

    /// Shows notes only.
    pub fn silent() -> Reporter {
        Reporter {
            mode: Mutex::new(Mode::Silent),
            buffers: Mutex::new(HashMap::new()),
        }
    }

    fn err_line(text: &str) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{text}");
    }

    /// A note of the run, not of one node (a registry retry, a signal): above the live view,
    /// which it would otherwise tear.
    fn note(&self, text: &str) {
        let mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &*mode {
            Mode::Silent | Mode::Plain | Mode::Github => Self::err_line(&format!("mab: {text}")),
            Mode::Live { multi, .. } => {
                let _ = multi.println(format!("mab: {text}"));
            }
        }
    }

    fn started(&self, id: &NodeId) {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *mode {
            Mode::Silent => {}
            Mode::Plain => Self::err_line(&format!("[{id}] started")),
            Mode::Github => {}
            Mode::Live { multi, bars } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(id.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(id.clone(), bar);
            }
        }
    }

    fn line(&self, id: &NodeId, text: &str) {
        let mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &*mode {
            Mode::Silent => {}
            Mode::Plain => Self::err_line(&format!("[{id}] {text}")),
            Mode::Github => {
                let mut b = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
                b.entry(id.clone()).or_default().push(text.to_owned());
            }
            Mode::Live { bars, .. } => {
                if let Some(bar) = bars.get(id) {
                    let short: String = text.chars().take(80).collect();
                    bar.set_message(format!("{id}  {short}"));
                }
            }
        }
    }

    fn finished(&self, r: &NodeResult) {
        let outcome = format!(
            "{} in {}{}",
            r.status.as_str(),
            human(Duration::from_millis(r.duration_ms)),
            r.reason
                .as_ref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
        let summary = format!("{} {outcome}", r.id);
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *mode {
            Mode::Silent => {}
            Mode::Plain => Self::err_line(&format!("[{}] {outcome}", r.id)),
            Mode::Github => {
                let lines = self
                    .buffers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&r.id)
                    .unwrap_or_default();
                let failed = (r.status == Status::Failed)
                    .then(|| (r.id.to_string(), r.reason.as_deref().unwrap_or("failed")));
                let block = github_block(
                    &summary,
                    &lines,
                    failed.as_ref().map(|(id, why)| (id.as_str(), *why)),
                    &stop_token(),
                );
                let _ = std::io::stderr().lock().write_all(block.as_bytes());
            }
            Mode::Live { multi, bars } => {
                if let Some(bar) = bars.remove(&r.id) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let _ = multi.println(summary);
            }
        }
    }
}

/// GitHub's escaping of a workflow command's data (actions/toolkit `escapeData`): a `%`, CR
/// or LF in it would end the command or start another.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// ... and of a property (`escapeProperty`): also `:` and `,`, which end a property.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A token no build can guess: its output is shown between `::stop-commands::TOKEN` and
/// `::TOKEN::`, so a line a Dockerfile prints (`::add-mask::…`, `::error::…`) is shown as
/// text, never run as a workflow command.
fn stop_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Keys the standard library draws from the operating system's randomness.
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("mab-{a:016x}{b:016x}")
}

/// A finished node under GitHub Actions: a group of its output, and an error annotation
/// when it failed (`failed`: its id and why).
fn github_block(
    summary: &str,
    lines: &[String],
    failed: Option<(&str, &str)>,
    token: &str,
) -> String {
    let mut out = format!("::group::{}\n", escape_data(summary));
    if !lines.is_empty() {
        out.push_str(&format!("::stop-commands::{token}\n"));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&format!("::{token}::\n"));
    }
    out.push_str("::endgroup::\n");
    if let Some((id, why)) = failed {
        out.push_str(&format!(
            "::error title={}::{}\n",
            escape_property(id),
            escape_data(why)
        ));
    }
    out
}

impl super::events::Sink for Reporter {
    fn event(&self, event: super::events::Event<'_>) {
        use super::events::Event;
        match event {
            Event::Started { id } => self.started(id),
            Event::Output { id, line } => self.line(id, line),
            Event::Note(text) => self.note(text),
            Event::Finished(r) => self.finished(r),
        }
    }
}

fn remote(c: CacheUse) -> String {
    if c.remote > 0 {
        format!(", {} from the registry", c.remote)
    } else {
        String::new()
    }
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    }
}

/// The summary table printed at the end of a run.
pub fn summary_table(report: &RunReport) -> String {
    let width = report
        .nodes
        .iter()
        .map(|n| n.id.to_string().chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$}  {:10}  {:>8}  CACHE",
        "NODE", "STATUS", "TIME"
    );
    for n in &report.nodes {
        let cache = match n.cache {
            Some(c) if c.steps > 0 && c.hits == c.steps => {
                format!("cached ({}/{} steps{})", c.hits, c.steps, remote(c))
            }
            Some(c) if c.steps > 0 => format!("{}/{} steps cached{}", c.hits, c.steps, remote(c)),
            _ if n.status == Status::Current => "up to date".to_owned(),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:width$}  {:10}  {:>8}  {cache}",
            n.id,
            n.status.as_str(),
            human(Duration::from_millis(n.duration_ms))
        );
    }
    let count = |s: Status| report.nodes.iter().filter(|n| n.status == s).count();
    let _ = writeln!(
        out,
        "\n{}: {} ok, {} reused, {} up to date, {} failed, {} skipped, {} cancelled, {} not run in {}",
        report.result,
        count(Status::Ok),
        count(Status::Reused),
        count(Status::Current),
        count(Status::Failed),
        count(Status::Skipped),
        count(Status::Cancelled),
        count(Status::NotRun),
        human(Duration::from_millis(report.duration_ms))
    );
    for n in report.nodes.iter().filter(|n| n.status == Status::Failed) {
        let _ = writeln!(
            out,
            "failed: {}: {}{}",
            n.id,
            n.reason.as_deref().unwrap_or("failed"),
            n.log
                .as_ref()
                .map(|l| format!(" (log: {l})"))
                .unwrap_or_default()
        );
    }
    out
}

/// Counts cache use from a build's output, line by line: buildah's `STEP n/m:` and
/// `--> Using cache`, or BuildKit's plain progress (`#6 [2/4] RUN …`, `#6 CACHED`; a vertex
/// can print its header several times, so steps are counted by vertex number).
#[derive(Debug, Default)]
pub struct CacheCounter {
    use_: CacheUse,
    /// BuildKit vertices that are Dockerfile steps other than `FROM`.
    steps: std::collections::BTreeSet<u32>,
    cached: std::collections::BTreeSet<u32>,
}

impl CacheCounter {
    pub fn line(&mut self, l: &str) {
        if l.starts_with("STEP ") && !l.contains(": FROM ") {
            self.use_.steps += 1;
        }
        if l.contains("Using cache ") {
            self.use_.hits += 1;
        }
        if l.contains("Cache pulled from remote") {
            self.use_.remote += 1;
        }
        let Some((vertex, rest)) = l
            .strip_prefix('#')
            .and_then(|r| r.split_once(' '))
            .and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, rest)))
        else {
            return;
        };
        if rest == "CACHED" {
            self.cached.insert(vertex);
        } else if let Some((step, instruction)) =
            rest.strip_prefix('[').and_then(|r| r.split_once("] "))
        {
            // `[2/4]` or `[stage 2/4]`: a Dockerfile step; `[internal] …` is not.
            let numbered = step
                .rsplit(' ')
                .next()
                .and_then(|n| n.split_once('/'))
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            if numbered && !instruction.starts_with("FROM ") {
                self.steps.insert(vertex);
            }
        }
    }

    pub fn finish(&self) -> CacheUse {
        let mut c = self.use_;
        c.steps += self.steps.len() as u32;
        c.hits += self.cached.intersection(&self.steps).count() as u32;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failure reason or a build's output carries cannot end a workflow command or
    /// start another: data and properties are escaped as GitHub documents, output is shown
    /// with workflow commands stopped.
    #[test]
    fn github_workflow_commands_are_escaped() {
        let block = github_block(
            "build:a:1@linux/amd64 failed in 1s: 100% wrong\n::error::forged",
            &["::add-mask::secret".to_owned(), "plain".to_owned()],
            Some((
                "build:a:1@linux/amd64",
                "exit 1\r\n::warning title=x::forged, 50%",
            )),
            "mab-token",
        );
        assert_eq!(
            block,
            "::group::build:a:1@linux/amd64 failed in 1s: 100%25 wrong%0A::error::forged\n\
             ::stop-commands::mab-token\n\
             ::add-mask::secret\n\
             plain\n\
             ::mab-token::\n\
             ::endgroup::\n\
             ::error title=build%3Aa%3A1@linux/amd64::exit 1%0D%0A::warning title=x::forged, 50%25\n"
        );
        // The build's `::add-mask::` line is the only one mab did not write, and it is
        // between the stop and the token.
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 7, "{lines:?}");
        assert_eq!(
            lines.iter().position(|l| l.starts_with("::add-mask")),
            Some(2)
        );
        assert_eq!(escape_property("a:b,c%d\ne"), "a%3Ab%2Cc%25d%0Ae");
        let (t1, t2) = (stop_token(), stop_token());
        assert_ne!(t1, t2, "a token per group");
        assert_eq!(t1.len(), 4 + 32);
    }

    fn count(log: &str) -> CacheUse {
        let mut c = CacheCounter::default();
        log.lines().for_each(|l| c.line(l));
        c.finish()
    }

    #[test]
    fn buildkit_steps_are_counted_once_per_vertex() {
        let log = "#1 [internal] load build definition from Dockerfile\n\
            #5 [1/4] FROM 127.0.0.1:5000/alpine@sha256:55e3\n\
            #5 CACHED\n\
            #6 [2/4] RUN mkdir -p /etc/platform\n\
            #6 CACHED\n\
            #7 [3/4] RUN echo app >> /etc/passwd\n\
            #7 0.102 some output\n\
            #7 [3/4] RUN echo app >> /etc/passwd\n\
            #7 DONE 0.1s\n\
            #8 [build 4/4] WORKDIR /srv\n\
            #8 CACHED\n\
            #9 exporting to image\n";
        assert_eq!(
            count(log),
            CacheUse {
                hits: 2,
                steps: 3,
                remote: 0
            }
        );
    }

    #[test]
    fn buildah_steps_and_hits_are_counted() {
        let log = "STEP 1/3: FROM alpine\n\
            STEP 2/3: RUN true\n\
            --> Using cache 1a2b\n\
            STEP 3/3: WORKDIR /srv\n\
            Cache pulled from remote 127.0.0.1:5000/cache:x\n\
            --> Using cache 3c4d\n";
        assert_eq!(
            count(log),
            CacheUse {
                hits: 2,
                steps: 2,
                remote: 1
            }
        );
    }
}
