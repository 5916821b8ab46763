//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::manifest::platform::Platform;

#[derive(Debug, Parser)]
#[command(
    name = "mab",
    version,
    about = "Build sets of multi-architecture container images from one declarative manifest",
    propagate_version = true
)]
pub struct Cli {
    /// The manifest
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "images.kdl",
        value_name = "FILE"
    )]
    pub file: PathBuf,

    /// Profile to use (default: the one marked `default=#true`)
    #[arg(long, global = true, env = "MAB_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what would run; never touches a registry or builder
    Plan(PlanArgs),
    /// Validate the manifest and the files it names
    Check,
    /// Show the resolved profile: registry, backend, platforms, cache, builders
    Info {
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// List images × versions × variants × platforms
    List {
        /// Images to list: `runtime`, `runtime:3.15`, `golang-*`
        selectors: Vec<String>,
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Images to plan: `runtime`, `runtime:3.15`, `golang-*`, `mirror:alpine`; what they need upstream comes too
    pub selectors: Vec<String>,

    /// Only these platforms (repeat, or separate with commas)
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',', value_parser = parse_platform)]
    pub platforms: Vec<Platform>,

    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
    Mermaid,
    Shell,
    Markdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    Text,
    Json,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| format!("{}\n  help: {}", e.message(), e.help()))
}
