//! `mab seed`: builds of a platform that write the registry cache and publish nothing.

use std::io::Write;

use super::Project;
use super::engine::{Session, execute, options, published_digests};
use crate::cli::SeedArgs;
use crate::diag::Diagnostics;
use crate::plan::{self, Kind, Selection};

pub fn run(project: &Project, args: &SeedArgs, out: &mut dyn Write) -> Result<i32, Diagnostics> {
    let model = &project.model;
    // Builds of the platform, kept local: only the cache (`--cache-to`) is written to the registry.
    let mut local = model.clone();
    local.profile.push = false;
    let selection = Selection {
        selectors: args.selectors.clone(),
        platforms: args.platforms.clone(),
        only: None,
    };
    let mut plan = plan::plan(&local, &selection)?;
    let session = Session::new(model, crate::exec::report::Reporter::detect())?;
    let mut opts = options(project, &args.run, None);
    plan.restrict(model, |n| n.kind() == Kind::Build);
    opts.known_digests = published_digests(
        &session,
        plan.external.iter().collect(),
        "run `mab mirror` first: seeding builds on the mirrored bases",
    )?;
    for n in &mut plan.nodes {
        n.publish.cache_only = true;
    }
    execute(&session, &local, &plan, &args.run, opts, out)
}
