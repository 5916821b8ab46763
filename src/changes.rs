//! `--changed-since GIT_REF`: the image versions whose inputs changed in git since REF,
//! and everything built on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use crate::diag::{Diag, Diagnostics};
use crate::hash::DockerIgnore;
use crate::manifest::Model;
use crate::manifest::model::Dep;

/// Changed version indexes, and why each is in (`image:tag` → reason).
pub struct Changes {
    pub versions: BTreeSet<usize>,
    pub reasons: BTreeMap<String, String>,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Diagnostics> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| Diagnostics::from(Diag::plain(format!("cannot run git: {e}"))))?;
    if !out.status.success() {
        return Err(Diag::plain(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
            .help("`--changed-since` takes a git ref of the repository that holds the manifest, e.g. `origin/main`")
            .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Files changed since `git_ref` (committed or not, and new untracked files), relative
/// to `dir` (the manifest's directory). Names come NUL-separated (`-z`), so spaces,
/// non-ASCII and quotes reach mab as written; the ref can never be read as an option.
pub fn changed_files(dir: &Path, git_ref: &str) -> Result<BTreeSet<String>, Diagnostics> {
    let inside = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .map_err(|e| Diagnostics::from(Diag::plain(format!("cannot run git: {e}"))))?;
    if !inside.status.success() {
        return Err(Diag::plain(format!(
            "`--changed-since` needs a git repository, and {} is in none",
            dir.display()
        ))
        .into());
    }
    if git_ref.starts_with('-') {
        return Err(Diag::plain(format!("`{git_ref}` is not a git ref"))
            .help("`--changed-since` takes a ref such as `origin/main` or a commit")
            .into());
    }
    git(dir, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{git_ref}^{{commit}}")])
        .map_err(|_| {
            Diagnostics::from(
                Diag::plain(format!("`{git_ref}` names no commit of this repository"))
                    .help("`--changed-since` takes a ref such as `origin/main` or a commit (fetch it first in a shallow clone)"),
            )
        })?;
    let split = |text: String| -> Vec<String> {
        text.split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut files: BTreeSet<String> = split(git(
        dir,
        &[
            "diff",
            "--name-only",
            "--relative",
            "-z",
            "--end-of-options",
            git_ref,
            "--",
        ],
    )?)
    .into_iter()
    .collect();
    files.extend(split(git(
        dir,
        &["ls-files", "-z", "--others", "--exclude-standard"],
    )?));
    Ok(files)
}

/// The manifest as it was at `git_ref` (`None`: it did not exist there).
fn manifest_at(dir: &Path, git_ref: &str, name: &str) -> Result<Option<String>, Diagnostics> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["show", "--end-of-options"])
        .arg(format!("{git_ref}:./{name}"))
        .output()
        .map_err(|e| Diagnostics::from(Diag::plain(format!("cannot run git: {e}"))))?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// What each image version and mirror tag of `model` amounts to in the plan: its nodes as
/// JSON (commands included), without their level (the graph's shape elsewhere).
fn resolved(model: &Model) -> Option<HashMap<String, Vec<serde_json::Value>>> {
    // Upstream bases come from the Dockerfiles, whose changes are the context's: compared
    // without them, as the manifest at the old revision is read without its files.
    // `rebuild-after` is no input either: adding it rebuilds nothing by itself. Nor is the
    // commit's time (`SOURCE_DATE_EPOCH`) and the annotations mab takes from the commit,
    // which the old text has no part in.
    let mut model = model.clone();
    model.epoch = None;
    for v in &mut model.versions {
        for key in std::mem::take(&mut v.commit_annotations) {
            v.index_annotations.remove(&key);
        }
        v.rebuild_after = None;
        for p in &mut v.platforms {
            p.bases.clear();
        }
    }
    let plan = crate::plan::plan(&model, &crate::plan::Selection::default()).ok()?;
    let mut out: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for n in &plan.nodes {
        let key = match n.key() {
            Some(k) => k.to_owned(),
            None => n.id.to_string(),
        };
        let mut json = serde_json::to_value(n).ok()?;
        if let Some(o) = json.as_object_mut() {
            o.remove("level");
        }
        out.entry(key).or_default().push(json);
    }
    Some(out)
}

/// The image versions whose resolved settings differ between the manifest at `git_ref`
/// and now, with why; `None` when the old manifest cannot be compared (every version is in).
fn manifest_changes(
    model: &Model,
    old_text: Option<String>,
    manifest_name: &str,
    options: &crate::manifest::Options,
) -> Option<BTreeMap<usize, String>> {
    let old_text = old_text?;
    let mut old = crate::manifest::compile(
        &crate::diag::Source::new(manifest_name.to_owned(), old_text),
        options,
    )
    .ok()?;
    // The standard annotation the manifest does not set, as the project's load gives it.
    crate::origin::annotate(&mut old);
    let (before, now) = (resolved(&old)?, resolved(model)?);
    let mut changed = BTreeMap::new();
    for (i, v) in model.versions.iter().enumerate() {
        let why = match before.get(&v.key) {
            None => Some(format!("new in `{manifest_name}`")),
            Some(b) if now.get(&v.key) != Some(b) => {
                Some(format!("its settings in `{manifest_name}` changed"))
            }
            Some(_) => v.froms.iter().find_map(|f| match &f.dep {
                Dep::Mirror(m, tag) => {
                    let id = format!("mirror:{}:{tag}", model.mirrors[*m].name);
                    (before.get(&id) != now.get(&id))
                        .then(|| format!("its mirror `{}:{tag}` changed", model.mirrors[*m].name))
                }
                Dep::Image(_) => None,
            }),
        };
        if let Some(why) = why {
            changed.insert(i, why);
        }
    }
    Some(changed)
}

/// The image versions a lock file change moves: those built on a mirror tag or a base whose
/// locked digests differ between `before` and `now`, with why.
fn lock_changes(
    model: &Model,
    before: &crate::lock::Lock,
    now: &crate::lock::Lock,
    lock_name: &str,
) -> Vec<(usize, String)> {
    let mut changed = Vec::new();
    for (i, v) in model.versions.iter().enumerate() {
        let mirror = v.froms.iter().find_map(|f| match &f.dep {
            Dep::Mirror(m, tag) => {
                let key = format!("{}:{tag}", model.mirrors[*m].name);
                (before.mirrors.get(&key) != now.mirrors.get(&key))
                    .then(|| format!("its mirror `{key}` moved in `{lock_name}`"))
            }
            Dep::Image(_) => None,
        });
        let base = || {
            v.platforms
                .iter()
                .flat_map(|p| &p.bases)
                .find(|b| before.bases.get(&b.name) != now.bases.get(&b.name))
                .map(|b| format!("its base `{}` moved in `{lock_name}`", b.name))
        };
        if let Some(why) = mirror.or_else(base) {
            changed.push((i, why));
        }
    }
    changed
}

pub fn since(
    model: &Model,
    manifest: &Path,
    git_ref: &str,
    options: &crate::manifest::Options,
) -> Result<Changes, Diagnostics> {
    let dir = manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let files = changed_files(dir, git_ref)?;
    let manifest_name = manifest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut direct: BTreeSet<usize> = BTreeSet::new();
    if files.contains(&manifest_name) {
        // Only what the edit changes once resolved: a comment, a reordering or another
        // image's settings rebuild nothing.
        let old = manifest_at(dir, git_ref, &manifest_name)?;
        match manifest_changes(model, old, &manifest_name, options) {
            Some(changed) => {
                for (i, why) in changed {
                    direct.insert(i);
                    reasons.insert(model.versions[i].key.clone(), why);
                }
            }
            None => {
                for (i, v) in model.versions.iter().enumerate() {
                    direct.insert(i);
                    reasons.insert(
                        v.key.clone(),
                        format!("`{manifest_name}` changed (its version at `{git_ref}` does not resolve to compare)"),
                    );
                }
            }
        }
    }
    let lock_name = crate::lock::path_for(Path::new(&manifest_name))
        .display()
        .to_string();
    if files.contains(&lock_name) {
        let at = |text: Option<String>| {
            text.and_then(|t| serde_json::from_str::<crate::lock::Lock>(&t).ok())
                .unwrap_or_default()
        };
        let before = at(manifest_at(dir, git_ref, &lock_name)?);
        let now = at(std::fs::read_to_string(dir.join(&lock_name)).ok());
        for (i, why) in lock_changes(model, &before, &now, &lock_name) {
            if direct.insert(i) {
                reasons.insert(model.versions[i].key.clone(), why);
            }
        }
    }
    let mut ignores: HashMap<(&str, &str), DockerIgnore> = HashMap::new();
    let rules = crate::hash::Rules::of(model.profile.backend);
    for (i, v) in model.versions.iter().enumerate() {
        if direct.contains(&i) {
            continue;
        }
        let ignore = ignores
            .entry((&v.context, &v.dockerfile))
            .or_insert_with(|| {
                DockerIgnore::for_build(&dir.join(&v.context), &dir.join(&v.dockerfile), rules)
                    .unwrap_or_default()
            });
        let prefix = format!("{}/", v.context.trim_end_matches('/'));
        let seen: Vec<&String> = files
            .iter()
            .filter(|f| {
                **f == v.dockerfile
                    || (v.context == "." && !ignore.excluded(f))
                    || f.strip_prefix(&prefix)
                        .is_some_and(|rel| !ignore.excluded(rel))
            })
            .collect();
        if let Some(first) = seen.first() {
            direct.insert(i);
            let more = if seen.len() > 1 {
                format!(" and {} more", seen.len() - 1)
            } else {
                String::new()
            };
            reasons.insert(v.key.clone(), format!("`{first}`{more} changed"));
        }
    }
    // Everything built on a changed version changes too.
    let mut versions = direct.clone();
    loop {
        let mut grew = false;
        for (i, v) in model.versions.iter().enumerate() {
            if versions.contains(&i) {
                continue;
            }
            if let Some(base) = v.froms.iter().find_map(|f| match f.dep {
                Dep::Image(b) if versions.contains(&b) => Some(b),
                _ => None,
            }) {
                versions.insert(i);
                reasons.insert(
                    v.key.clone(),
                    format!("its base `{}` changes", model.versions[base].key),
                );
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    Ok(Changes { versions, reasons })
}
