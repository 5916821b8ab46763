//! Where the images come from: the commit the manifest is checked out at. It gives the
//! builds their `SOURCE_DATE_EPOCH` (no input: a new commit with the same inputs reuses every
//! image), and the index its standard `org.opencontainers.image.version` annotation unless
//! the manifest sets it.

use std::path::Path;
use std::process::Command;

use chrono::DateTime;

use crate::manifest::Model;

/// The reproducible-builds variable: when set, it wins over the commit's time.
pub const EPOCH_VAR: &str = "SOURCE_DATE_EPOCH";

pub const VERSION: &str = "org.opencontainers.image.version";

/// `SOURCE_DATE_EPOCH` from the environment: `Ok(None)` when unset or empty; an error when it
/// is not a whole number of seconds, never ignored.
pub fn epoch_from_env() -> Result<Option<i64>, String> {
    match std::env::var(EPOCH_VAR) {
        Ok(text) if !text.is_empty() => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0 && DateTime::from_timestamp(*s, 0).is_some())
            .map(Some)
            .ok_or_else(|| format!("{EPOCH_VAR}={text:?} is not a number of seconds since 1970")),
        _ => Ok(None),
    }
}

/// `git -C DIR ARGS…`: its output, trimmed; `None` when git fails or is missing.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// The committer time of the commit `dir` is checked out at; `None` outside a repository
/// (or without git, or before the first commit).
pub fn commit_time(dir: &Path) -> Option<i64> {
    git(dir, &["log", "-1", "--format=%ct"])?.parse().ok()
}

/// The builds' `SOURCE_DATE_EPOCH`: the environment's (validated when the run starts), else
/// the time of the commit `dir` is checked out at — git runs only then.
pub fn epoch(dir: &Path) -> Option<i64> {
    epoch_from_env().ok().flatten().or_else(|| commit_time(dir))
}

/// Give every version the standard `version` index annotation unless it sets it.
///
/// The commit's `source`, `revision` and `created` are not written on the index: a dependent
/// pins its base by the index digest, so an index that changed with every commit would
/// rebuild every dependent on every commit.
pub fn annotate(model: &mut Model) {
    for v in &mut model.versions {
        let version = v.primary_tag();
        v.index_annotations
            .entry(VERSION.to_owned())
            .or_insert(version);
    }
}
