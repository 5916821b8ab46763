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
pub mod dockerignore;
pub mod exec;
pub mod exit_code;
pub mod files;
pub mod hash;
pub mod info;
pub mod inputs;
pub mod lock;
pub mod manifest;
pub mod once_map;
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
    let mut stdout = Output::new(io::stdout().lock());
    let code = match execute(&cli, &mut stdout) {
        Ok(code) => code,
        Err(diags) => {
            diags.eprint();
            exit_code::USAGE
        }
    };
    match stdout.finish() {
        Ok(()) => code,
        // A closed pipe (`mab plan | head`) is the reader's choice, not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("mab: error: cannot write the output: {e}");
            exit_code::NODE_FAILED.max(code)
        }
    }
}

/// Standard output, buffered, keeping its first write error: commands write their output
/// without stopping on each error, and the run fails on it at the end (a script or workflow
/// cut short by a full disk must not exit 0). Once a write failed, nothing more is written.
pub struct Output<W: Write> {
    inner: io::BufWriter<W>,
    error: Option<io::Error>,
}

impl<W: Write> Output<W> {
    pub fn new(inner: W) -> Output<W> {
        Output {
            inner: io::BufWriter::with_capacity(1 << 16, inner),
            error: None,
        }
    }

    /// Flush, and the first error any write met.
    pub fn finish(mut self) -> io::Result<()> {
        if self.error.is_none()
            && let Err(e) = self.inner.flush()
        {
            self.error = Some(e);
        }
        match self.error.take() {
            Some(e) => {
                // Nothing buffered is written again when the writer is dropped.
                let _ = self.inner.into_parts();
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn keep<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && self.error.is_none()
        {
            self.error = Some(io::Error::new(e.kind(), e.to_string()));
        }
        result
    }

    fn failed(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|e| io::Error::new(e.kind(), e.to_string()))
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let r = self.inner.write(buf);
        self.keep(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let r = self.inner.flush();
        self.keep(r)
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
