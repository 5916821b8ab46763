//! The command layer: one module per subcommand, each taking options resolved once from
//! the command line and the [`Project`] — never the whole `Cli`. `execute` loads the project
//! and dispatches; a command returns its exit code or the diagnostics that make it fail.

pub mod build;
mod engine;
mod inspect;
pub mod merge;
pub mod mirror;
pub mod plan;
pub mod promote;
pub mod seed;
pub mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::diag::{Diagnostics, Source};
use crate::manifest::{self, Model};
use crate::{check, exit_code};

/// The manifest a command works on: where it is, the directory its commands run in, its
/// text (for locating errors) and the model resolved with the asked profile and variables.
pub struct Project {
    /// The manifest, as given (`-f`).
    pub file: PathBuf,
    /// The manifest's directory, as given (`.` when the file has none): what paths in
    /// diagnostics and checks are relative to.
    pub base: PathBuf,
    /// The same directory, absolute: commands run there and `.mab/` lives there.
    pub dir: PathBuf,
    pub options: manifest::Options,
    pub source: Source,
    pub model: Model,
}

impl Project {
    pub fn load(file: &Path, options: manifest::Options) -> Result<Project, Diagnostics> {
        let loaded = manifest::load(file, &options)?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let dir = std::fs::canonicalize(&base).unwrap_or_else(|_| base.clone());
        let mut model = loaded.model;
        crate::bases::fill(&mut model, &dir);
        crate::origin::fill(&mut model, crate::origin::commit(&dir).as_ref());
        Ok(Project {
            file: file.to_path_buf(),
            base,
            dir,
            options,
            source: loaded.source,
            model,
        })
    }

    /// Diagnostics located in the manifest's text, sorted.
    pub fn located(&self, d: Diagnostics) -> Diagnostics {
        d.in_source(&self.source).sorted()
    }
}

/// `--changed-since REF`: the image versions changed since REF (and why), for a
/// [`crate::plan::Selection`]'s `only`; `None` without the flag.
pub type Changed = Option<(
    std::collections::BTreeSet<usize>,
    std::collections::BTreeMap<String, String>,
)>;

pub fn changed_since(project: &Project, git_ref: Option<&str>) -> Result<Changed, Diagnostics> {
    let Some(git_ref) = git_ref else {
        return Ok(None);
    };
    let c = crate::changes::since(&project.model, &project.file, git_ref, &project.options)?;
    Ok(Some((c.versions, c.reasons)))
}

/// Run one command that needs the manifest, writing its output to `out`.
pub fn execute(cli: &Cli, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let timer = Timer::from_env();
    let mut project = Project::load(&cli.file, crate::manifest_options(cli))?;
    project.model.on_runner = cli.on_runner;
    timer.lap("load (read, parse, resolve)");
    if matches!(cli.command, Command::Build(_) | Command::Seed(_)) {
        // Nothing outside the project is sent to a builder (symbolic links followed).
        let d = check::outside_project(&project.model.versions, &project.source, &project.base);
        if d.has_errors() {
            return Err(d);
        }
    }
    if let (Command::Build(_) | Command::Seed(_) | Command::Merge(_), Some(from)) =
        (&cli.command, &project.model.profile.promoted_from)
    {
        let to = &project.model.profile.name;
        return Err(crate::diag::Diag::plain(format!(
            "profile `{to}` is promoted from `{from}`: it builds nothing, it receives what `{from}` published and tested"
        ))
        .help(format!("`mab promote --from {from} --to {to}` copies those exact images"))
        .into());
    }
    let located = |d: Diagnostics| project.located(d);
    let code = match &cli.command {
        Command::Plan(args) => plan::run(&project, args, out, &timer),
        Command::Build(args) => build::run(&project, args, out).map_err(located),
        Command::Mirror(args) => mirror::run(&project, args, out).map_err(located),
        Command::Seed(args) => seed::run(&project, args, out).map_err(located),
        Command::Merge(args) => merge::run(&project, args, out).map_err(located),
        Command::Promote(args) => promote::run(&project, args, out),
        Command::Verify(args) => verify::run(&project, args, out),
        Command::Ci(args) => ci(&project, args, out),
        Command::Check { manifest_only } => inspect::check(&project, *manifest_only, out),
        Command::Info { format } => inspect::info(&project, *format, out),
        Command::List { selectors, format } => inspect::list(&project, selectors, *format, out),
        Command::Completions { .. } | Command::HashContext { .. } => Ok(exit_code::SUCCESS),
    };
    // Large plans: freeing every node one by one only delays the exit.
    std::mem::forget(project);
    code
}

/// `mab ci github`: the workflow, on standard output or written to `--output`.
fn ci(
    project: &Project,
    args: &crate::cli::CiArgs,
    out: &mut dyn Write,
) -> Result<i32, Diagnostics> {
    let (text, output) = match &args.engine {
        crate::cli::CiEngine::Github(args) => {
            (crate::ci::github_workflow(project, args)?, &args.output)
        }
        crate::cli::CiEngine::Gitlab(args) => {
            (crate::ci::gitlab_pipeline(project, args)?, &args.output)
        }
    };
    match output {
        None => emit(out, &text),
        Some(path) => {
            let write = || -> std::io::Result<()> {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(path, &text)
            };
            write().map_err(|e| {
                Diagnostics::from(crate::diag::Diag::plain(format!(
                    "cannot write {}: {e}",
                    path.display()
                )))
            })?;
            emit(out, &format!("wrote {}\n", path.display()));
        }
    }
    Ok(exit_code::SUCCESS)
}

/// Write errors (a closed pipe) end the output; they are not the manifest's fault.
pub(crate) fn emit(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
}

/// `MAB_TIMINGS=1` prints how long each phase took, for benchmarks.
pub struct Timer(Option<std::cell::Cell<std::time::Instant>>);

impl Timer {
    pub fn from_env() -> Timer {
        Timer(
            std::env::var_os("MAB_TIMINGS")
                .map(|_| std::cell::Cell::new(std::time::Instant::now())),
        )
    }

    pub fn lap(&self, phase: &str) {
        if let Some(start) = &self.0 {
            let now = std::time::Instant::now();
            eprintln!(
                "mab: {phase}: {:.1} ms",
                (now - start.get()).as_secs_f64() * 1000.0
            );
            start.set(now);
        }
    }
}
