//! `mab`: compiles `images.kdl` into a DAG of mirror, build, test and merge nodes.

pub mod bases;
pub mod buildx;
pub mod changes;
pub mod check;
pub mod ci;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod diag;
pub mod dockerfile;
pub mod exec;
pub mod exit_code;
pub mod files;
pub mod hash;
pub mod info;
pub mod inputs;
pub mod lock;
pub mod manifest;
pub mod origin;
pub mod plan;
pub mod promote;
pub mod registry;
pub mod render;
pub mod sign;
pub mod suggest;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
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
        now: clock::now().ok(),
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
        commands::emit(
            out,
            &format!("{}  {} files, {} bytes\n", h.digest, h.files, h.bytes),
        );
        return Ok(exit_code::SUCCESS);
    }
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "mab", out);
        return Ok(exit_code::SUCCESS);
    }
    if let Err(e) = clock::now() {
        return Err(diag::Diag::plain(e)
            .help("unset it to run at the present time")
            .into());
    }
    if let Err(e) = origin::epoch_from_env() {
        return Err(diag::Diag::plain(e)
            .help("unset it to take the time of the checked-out commit")
            .into());
    }
    commands::execute(cli, out)
}
