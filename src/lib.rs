//! `mab`: compiles `images.kdl` into a DAG of mirror, build, test and merge nodes.

pub mod buildx;
pub mod changes;
pub mod check;
pub mod cli;
pub mod diag;
pub mod dockerfile;
pub mod exec;
pub mod exit_code;
pub mod hash;
pub mod info;
pub mod inputs;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod registry;
pub mod render;
pub mod run;
pub mod suggest;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, DataFormat, PlanFormat};
use diag::Diagnostics;

/// Run the command line; returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::SUCCESS
            };
        }
    };
    let mut stdout = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    match execute(&cli, &mut stdout) {
        Ok(code) => {
            // A closed pipe (`mab plan | head`) is not an error of ours.
            let _ = stdout.flush();
            code
        }
        Err(diags) => {
            diags.eprint();
            exit_code::USAGE
        }
    }
}

/// The profile and variables the command line asks the manifest to be resolved with.
pub fn manifest_options(cli: &Cli) -> manifest::Options {
    manifest::Options {
        // `MAB_PROFILE=` (set, but empty) means no profile was asked for.
        profile: cli.profile.clone().filter(|p| !p.is_empty()),
        vars: cli.vars.clone(),
    }
}

/// Run one command, writing its output to `out`; or the diagnostics that make it fail.
fn execute(cli: &Cli, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    if let Command::HashContext {
        dir,
        dockerfile,
        backend,
    } = &cli.command
    {
        let dockerfile = dockerfile.clone().unwrap_or_else(|| dir.join("Dockerfile"));
        let rules =
            manifest::model::Backend::parse(backend).map_or(hash::Rules::BuildKit, hash::Rules::of);
        let h = hash::hash_context(dir, &dockerfile, rules).map_err(|e| {
            Diagnostics::from(diag::Diag::plain(format!(
                "cannot hash {}: {e}",
                dir.display()
            )))
        })?;
        emit(
            out,
            &format!("{}  {} files, {} bytes\n", h.digest, h.files, h.bytes),
        );
        return Ok(exit_code::SUCCESS);
    }
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "mab", out);
        return Ok(exit_code::SUCCESS);
    }

    let timer = Timer::from_env();
    let options = manifest_options(cli);
    let loaded = manifest::load(&cli.file, &options)?;
    timer.lap("load (read, parse, resolve)");
    let model = &loaded.model;
    let in_file = |d: Diagnostics| d.in_source(&loaded.source).sorted();
    let base = cli
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if matches!(cli.command, Command::Build(_) | Command::Seed(_)) {
        // Nothing outside the project is sent to a builder (symbolic links followed).
        let d = check::outside_project(&model.versions, &loaded.source, base);
        if d.has_errors() {
            return Err(d);
        }
    }
    match &cli.command {
        Command::Plan(args) => {
            let selection = plan::Selection {
                selectors: args.selectors.clone(),
                platforms: args.platforms.clone(),
                only: match &args.changed_since {
                    Some(git_ref) => {
                        let c = changes::since(model, &cli.file, git_ref, &options)?;
                        Some((c.versions, c.reasons))
                    }
                    None => None,
                },
            };
            let mut plan = plan::plan(model, &selection).map_err(in_file)?;
            if args.check_registry {
                run::decide(cli, model, &mut plan)?;
            }
            timer.lap("plan");
            match args.format {
                PlanFormat::Text => emit(out, &render::text::render(&plan)),
                PlanFormat::Json => {
                    let _ = render::write_json(&plan, out);
                }
                PlanFormat::Dot => emit(out, &render::dot::render(&plan)),
                PlanFormat::Mermaid => emit(out, &render::mermaid::render(&plan)),
                PlanFormat::Shell => {
                    let _ = render::shell::write(&plan, out);
                }
                PlanFormat::Markdown => emit(out, &render::markdown::render(&plan)),
                PlanFormat::GithubMatrix => emit(out, &render::matrix::render(&plan)),
            }
            timer.lap("render");
            // Large plans: freeing every node one by one only delays the exit.
            std::mem::forget(plan);
            std::mem::forget(loaded);
            Ok(exit_code::SUCCESS)
        }
        Command::Build(args) => run::build(cli, model, args, out).map_err(in_file),
        Command::Mirror(args) => run::mirror(cli, model, args, out).map_err(in_file),
        Command::Seed(args) => run::seed(cli, model, args, out).map_err(in_file),
        Command::Merge(args) => run::merge(cli, model, args, out).map_err(in_file),
        Command::Check { manifest_only } => {
            let mut diags = plan::graph::check_cycles(model).in_source(&loaded.source);
            diags.extend(check::files(model, &loaded.source, base));
            if !manifest_only {
                diags.extend(check::machine(model));
                diags.extend(check::secrets(model, base));
            }
            let diags = diags.sorted();
            if diags.has_errors() {
                return Err(diags);
            }
            diags.eprint();
            let warnings = diags.len();
            emit(
                out,
                &format!(
                    "{}: {} images, {} image versions, {} mirrors; {}\n",
                    cli.file.display(),
                    model.images.len(),
                    model.versions.len(),
                    model.mirrors.len(),
                    match warnings {
                        0 => "no problems found".to_owned(),
                        1 => "1 warning".to_owned(),
                        n => format!("{n} warnings"),
                    }
                ),
            );
            Ok(exit_code::SUCCESS)
        }
        Command::Info { format } => {
            emit(
                out,
                &match format {
                    DataFormat::Text => info::info_text(model),
                    DataFormat::Json => info::info_json(model),
                },
            );
            Ok(exit_code::SUCCESS)
        }
        Command::List { selectors, format } => {
            let picked = plan::select::pick(model, selectors).map_err(in_file)?;
            emit(
                out,
                &match format {
                    DataFormat::Text => info::list_text(model, &picked.versions),
                    DataFormat::Json => info::list_json(model, &picked.versions),
                },
            );
            Ok(exit_code::SUCCESS)
        }
        Command::Completions { .. } | Command::HashContext { .. } => Ok(exit_code::SUCCESS),
    }
}

/// Write errors (a closed pipe) end the output; they are not the manifest's fault.
fn emit(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
}

/// `MAB_TIMINGS=1` prints how long each phase took, for benchmarks.
struct Timer(Option<std::cell::Cell<std::time::Instant>>);

impl Timer {
    fn from_env() -> Timer {
        Timer(
            std::env::var_os("MAB_TIMINGS")
                .map(|_| std::cell::Cell::new(std::time::Instant::now())),
        )
    }

    fn lap(&self, phase: &str) {
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
