//! `mab`: compiles `images.kdl` into a DAG of mirror, build, test and merge nodes.

pub mod check;
pub mod cli;
pub mod diag;
pub mod exit_code;
pub mod info;
pub mod manifest;
pub mod plan;
pub mod render;
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
    match execute(&cli) {
        Ok(out) => {
            let mut stdout = io::stdout().lock();
            // A closed pipe (`mab plan | head`) is not an error of ours.
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush());
            exit_code::SUCCESS
        }
        Err(diags) => {
            diags.eprint();
            exit_code::USAGE
        }
    }
}

/// Run one command; its output, or the diagnostics that make it fail.
fn execute(cli: &Cli) -> Result<String, Diagnostics> {
    if let Command::Completions { shell } = &cli.command {
        let mut buf = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "mab", &mut buf);
        return Ok(String::from_utf8_lossy(&buf).into_owned());
    }
    let loaded = manifest::load(&cli.file, cli.profile.as_deref())?;
    let model = &loaded.model;
    let in_file = |d: Diagnostics| d.in_source(&loaded.source).sorted();
    match &cli.command {
        Command::Plan(args) => {
            let selection = plan::Selection {
                selectors: args.selectors.clone(),
                platforms: args.platforms.clone(),
            };
            let plan = plan::plan(model, &selection).map_err(in_file)?;
            Ok(match args.format {
                PlanFormat::Text => render::text::render(&plan),
                PlanFormat::Json => render::json(&plan),
                PlanFormat::Dot => render::dot::render(&plan),
                PlanFormat::Mermaid => render::mermaid::render(&plan),
                PlanFormat::Shell => render::shell::render(&plan),
                PlanFormat::Markdown => render::markdown::render(&plan),
            })
        }
        Command::Check => {
            let mut diags = plan::graph::check_cycles(model).in_source(&loaded.source);
            let base = cli
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            diags.extend(check::files(model, &loaded.source, base));
            let diags = diags.sorted();
            if diags.has_errors() {
                return Err(diags);
            }
            diags.eprint();
            let warnings = diags.len();
            Ok(format!(
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
            ))
        }
        Command::Info { format } => Ok(match format {
            DataFormat::Text => info::info_text(model),
            DataFormat::Json => info::info_json(model),
        }),
        Command::List { selectors, format } => {
            let picked = plan::select::pick(model, selectors).map_err(in_file)?;
            Ok(match format {
                DataFormat::Text => info::list_text(model, &picked.versions),
                DataFormat::Json => info::list_json(model, &picked.versions),
            })
        }
        Command::Completions { .. } => Ok(String::new()),
    }
}
