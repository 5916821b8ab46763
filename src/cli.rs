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

    /// Override a manifest `var` (repeatable): `--var upstream=127.0.0.1:5000`
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// This machine is the CI runner of the platforms it builds (a job of `mab ci`): build on
    /// its own builder, not on the manifest's `builder`s (no `--builder`, no endpoint); a
    /// platform whose builder names a `runs-on` runner is native here
    #[arg(long, global = true)]
    pub on_runner: bool,

    #[command(subcommand)]
    pub command: Command,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what would run; never touches a registry or builder
    Plan(PlanArgs),
    /// Run the plan: mirror, build, test, merge; tags move only after every platform passed
    Build(BuildArgs),
    /// Only the mirror nodes: copy upstream images into the registry
    Mirror(MirrorArgs),
    /// Build PLATFORM only to fill the registry cache; publishes nothing
    Seed(SeedArgs),
    /// Publish indexes and tags from the metadata of split builds
    Merge(MergeArgs),
    /// Copy the exact indexes one profile published (children, attestations and signatures
    /// by digest) to another profile's registry, tags last; nothing when a version is missing.
    Promote(PromoteArgs),
    /// Check that every published tag of the selected image versions (its index and each
    /// platform image) carries a valid signature by the profile's key.
    Verify(VerifyArgs),
    /// Write a CI pipeline that runs the plan level by level across runners
    Ci(CiArgs),
    /// Validate the manifest, the files it names, and this machine
    Check {
        /// Skip the machine checks (backend tools, emulation)
        #[arg(long)]
        manifest_only: bool,
    },
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
    /// Print the content hash of a build context as a build sees it (honouring .dockerignore)
    HashContext {
        /// The context directory
        dir: std::path::PathBuf,
        /// The Dockerfile (default: DIR/Dockerfile)
        #[arg(long)]
        dockerfile: Option<std::path::PathBuf>,
        /// Whose ignore files apply: buildx (`<Dockerfile>.dockerignore`, else `.dockerignore`)
        /// or buildah/podman (`.containerignore`, else `.dockerignore`)
        #[arg(long, default_value = "buildx", value_parser = ["buildx", "buildah", "podman"])]
        backend: String,
    },
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

    /// Only the images whose inputs changed in git since REF, and everything built on them
    #[arg(long, value_name = "GIT_REF")]
    pub changed_since: Option<String>,

    /// Ask the registry what a build would do with each node: build or reuse, and why
    #[arg(long)]
    pub check_registry: bool,

    /// Implied by --check-registry (mirrors are judged against upstream now, as a build
    /// copies them first); kept so scripts that pass it still work
    #[arg(long, requires = "check_registry", hide = true)]
    pub refresh: bool,
}

/// Options of every command that runs nodes.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Nodes running at once (default: the number of CPUs)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Let every node that does not depend on a failure finish
    #[arg(long)]
    pub keep_going: bool,

    /// Write the summary as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    /// Seconds children get to stop after Ctrl-C before they are killed
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub grace: u64,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Images to build; what they need upstream comes too
    pub selectors: Vec<String>,

    /// Only these platforms (repeat, or separate with commas)
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',', value_parser = parse_platform)]
    pub platforms: Vec<Platform>,

    /// Print the commands (`plan --format shell`) instead of running them
    #[arg(long)]
    pub dry_run: bool,

    /// Split builds: push digests only, write one metadata file per build here, tag nothing
    #[arg(long, value_name = "DIR")]
    pub metadata_dir: Option<std::path::PathBuf>,

    /// Fail, naming the tag, when an upstream tag moved since `images.lock`
    #[arg(long)]
    pub locked: bool,

    /// Build even when the published image has the same input hash
    #[arg(long)]
    pub no_reuse: bool,

    /// Only the images whose inputs changed in git since REF, and everything built on them
    #[arg(long, value_name = "GIT_REF")]
    pub changed_since: Option<String>,

    /// Run exactly this node (repeatable), with its test; what it needs is read from the registry
    #[arg(long = "node", value_name = "ID")]
    pub nodes: Vec<String>,

    /// Run exactly the nodes listed in FILE (one id a line, or `github-matrix` JSON)
    #[arg(long, value_name = "FILE")]
    pub nodes_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// Mirrors to run (`alpine`, `alpine:3.15`); all when none
    pub names: Vec<String>,

    /// Record the upstream digest of every mirrored tag in `images.lock`
    #[arg(long, conflicts_with = "locked")]
    pub update_lock: bool,

    /// Fail, naming the tag, when an upstream tag moved since `images.lock`
    #[arg(long)]
    pub locked: bool,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The platform whose cache to fill (repeat, or separate with commas)
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',', value_parser = parse_platform, required = true)]
    pub platforms: Vec<Platform>,

    /// Images to seed; what they need upstream comes too
    pub selectors: Vec<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// Image versions to promote (`app`, `app:1.2`, `golang-*`); none: every one.
    pub selectors: Vec<String>,

    /// The profile whose published images are copied (default: the target's `promoted-from`).
    #[arg(long, value_name = "PROFILE")]
    pub from: Option<String>,

    /// The profile they are copied to (default: `--profile`, or the default profile).
    #[arg(long, value_name = "PROFILE")]
    pub to: Option<String>,

    /// Read the registries and print what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The output of `--dry-run`.
    #[arg(long, value_enum, default_value_t = PromoteFormat::Text)]
    pub format: PromoteFormat,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Image versions (`app`, `app:1.2`, `golang-*`); none: every one.
    pub selectors: Vec<String>,

    /// The public key (PEM); default: the one of the profile's `sign` key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PromoteFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    #[command(subcommand)]
    pub engine: CiEngine,
}

#[derive(Debug, Subcommand)]
pub enum CiEngine {
    /// A GitHub Actions workflow: a matrix job per level, then its merges
    Github(GithubArgs),
    /// A GitLab CI child pipeline for this run of the plan (written by a parent job): a stage
    /// of `parallel:matrix` builds per level, then its merges
    Gitlab(GitlabArgs),
}

#[derive(Debug, clap::Args)]
pub struct GitlabArgs {
    /// The image every job runs in: one with mab and the profile's backend (buildah, or
    /// docker with buildx), for every runner's architecture
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// A shell command every job runs first, e.g. one that installs mab
    #[arg(long, value_name = "COMMAND")]
    pub install: Option<String>,

    /// Only the image versions changed since this git revision (a merge request's target)
    #[arg(long, value_name = "REF")]
    pub changed_since: Option<String>,

    /// Write the pipeline here instead of standard output
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct GithubArgs {
    /// The composite action that installs mab in every job: `OWNER/mab@v1`, or `./` in
    /// mab's own repository
    #[arg(long, value_name = "REF")]
    pub action: String,

    /// The workflow's name (also its concurrency group)
    #[arg(long, default_value = "images")]
    pub name: String,

    /// The branch whose pushes build and publish
    #[arg(long, default_value = "main")]
    pub branch: String,

    /// When the scheduled rebuild runs (cron, UTC)
    #[arg(long, default_value = crate::ci::github::SCHEDULE)]
    pub schedule: String,

    /// Write the workflow here (`.github/workflows/images.yml`) instead of standard output
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The metadata files of the split builds (from one or several machines)
    #[arg(long, value_name = "DIR", required = true)]
    pub metadata_dir: std::path::PathBuf,

    /// Images to merge; all when none
    pub selectors: Vec<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
    Mermaid,
    Shell,
    Markdown,
    /// Build jobs per level, for a GitHub Actions matrix
    GithubMatrix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    Text,
    Json,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| format!("{}\n  help: {}", e.message(), e.help()))
}
