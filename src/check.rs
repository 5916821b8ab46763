//! `mab check`: the manifest, and the files it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use miette::SourceSpan;

use crate::diag::{Diag, Diagnostics, Source};
use crate::manifest::model::{Dep, ImageVersion, Model, SecretSource};
use crate::manifest::platform::Platform;

/// Check that contexts and Dockerfiles exist, and that every Dockerfile `FROM`
/// naming a manifest image is a declared dependency. `base` is the manifest's directory.
pub fn files(model: &Model, manifest: &Source, base: &Path) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let root = base.canonicalize().ok();
    let mut seen_contexts = BTreeSet::new();
    let mut seen_dockerfiles = BTreeSet::new();
    let mut seen_ignores = BTreeSet::new();
    for v in &model.versions {
        let context = base.join(&v.context);
        if !context.is_dir() {
            if seen_contexts.insert(v.context.clone()) {
                diags.push(
                    Diag::error(
                        v.context_span.unwrap_or(v.image_span),
                        format!("build context `{}` does not exist", v.context),
                    )
                    .label(format!("needed by `{}`", v.key))
                    .help("create the directory, or set `context` to where the image's files are")
                    .in_source(manifest),
                );
            }
            continue;
        }
        if let Some(d) = root.as_deref().and_then(|root| escapes(v, base, root)) {
            diags.push(d.in_source(manifest));
            continue;
        }
        let dockerfile = base.join(&v.dockerfile);
        if seen_ignores.insert((&v.context, &v.dockerfile)) {
            diags.extend(ignore_file(model, &context, &dockerfile, base));
        }
        let Ok(text) = std::fs::read_to_string(&dockerfile) else {
            if seen_dockerfiles.insert(v.dockerfile.clone()) {
                diags.push(
                    Diag::error(
                        v.dockerfile_span.unwrap_or(v.span),
                        format!("Dockerfile `{}` does not exist", v.dockerfile),
                    )
                    .label(format!("needed by `{}`", v.key))
                    .help("`dockerfile` is relative to the context; the default is `Dockerfile`")
                    .in_source(manifest),
                );
            }
            continue;
        };
        if !seen_dockerfiles.insert(v.dockerfile.clone()) {
            // Warnings about one Dockerfile are reported once, for its first user.
            continue;
        }
        diags.extend(dockerfile_froms(model, v, &v.dockerfile, &text, manifest));
    }
    diags
}

/// The ignore file the builder reads for this context and Dockerfile, as it reads it: a
/// pattern it would refuse is an error at its line in that file.
fn ignore_file(model: &Model, context: &Path, dockerfile: &Path, base: &Path) -> Diagnostics {
    use crate::hash::{DockerIgnore, Rules};
    let Ok(Some((path, text))) =
        crate::hash::ignore_file(context, dockerfile, Rules::of(model.profile.backend))
    else {
        return Diagnostics::new();
    };
    let Err(e) = DockerIgnore::parse(&text) else {
        return Diagnostics::new();
    };
    let name = path
        .strip_prefix(base)
        .unwrap_or(&path)
        .display()
        .to_string();
    let start: usize = text.split('\n').take(e.line - 1).map(|l| l.len() + 1).sum();
    let line = text[start..].split('\n').next().unwrap_or("");
    let offset = start + line.find(e.pattern.as_str()).unwrap_or(0);
    Diag::error(
        SourceSpan::new(offset.into(), e.pattern.len()),
        format!("`{}` is not a pattern BuildKit accepts", e.pattern),
    )
    .label(e.why.clone())
    .help("the build would fail on it; escape a literal `[` or `\\` with `\\`")
    .in_source(&Source::new(name, text))
    .into()
}

/// A context or Dockerfile that leads outside the manifest's directory through a symbolic
/// link (the manifest's own paths are checked when it is read), unless `outside=#true`.
fn escapes(v: &ImageVersion, base: &Path, root: &Path) -> Option<Diag> {
    if v.outside {
        return None;
    }
    for (what, path, span) in [
        ("context", &v.context, v.context_span),
        (
            "Dockerfile",
            &v.dockerfile,
            v.dockerfile_span.or(v.context_span),
        ),
    ] {
        let Ok(real) = base.join(path).canonicalize() else {
            continue;
        };
        if !real.starts_with(root) {
            return Some(
                Diag::error(
                    span.unwrap_or(v.span),
                    format!("the {what} `{path}` leads outside the manifest's directory"),
                )
                .label("through a symbolic link")
                .help("keep build files beside images.kdl; to build from elsewhere on purpose, write `context \"…\" outside=#true`"),
            );
        }
    }
    None
}

/// Before a build: every context and Dockerfile of `versions` stays inside the manifest's
/// directory (symbolic links followed), so nothing outside the project is sent to a builder.
pub fn outside_project<'a>(
    versions: impl IntoIterator<Item = &'a ImageVersion>,
    manifest: &Source,
    base: &Path,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let Ok(root) = base.canonicalize() else {
        return diags;
    };
    for v in versions {
        if let Some(d) = escapes(v, base, &root) {
            diags.push(d.in_source(manifest));
        }
    }
    diags
}

/// The manifest image a reference names, if any: its last path component is an image name.
fn manifest_image<'m>(model: &'m Model, reference: &str) -> Option<&'m str> {
    let (registry, path) = crate::dockerfile::repository(reference);
    let repo = path.rsplit('/').next().unwrap_or(path);
    let full = match registry {
        Some(r) => format!("{r}/{path}"),
        None => path.to_owned(),
    };
    model
        .images
        .iter()
        .find(|name| **name == repo || full.ends_with(&format!("/{name}")) || full == **name)
        .map(String::as_str)
}

fn dockerfile_froms(
    model: &Model,
    v: &ImageVersion,
    path: &str,
    text: &str,
    manifest: &Source,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let source = Source::new(path, text);
    let parsed = crate::dockerfile::parse(text);
    let declared_args: BTreeSet<&str> = v.froms.iter().filter_map(|f| f.arg.as_deref()).collect();
    let dep_images: BTreeSet<&str> = v
        .froms
        .iter()
        .filter_map(|f| match f.dep {
            Dep::Image(i) => Some(model.versions[i].image.as_str()),
            Dep::Mirror(..) => None,
        })
        .collect();
    let all_args: BTreeSet<&str> = parsed.args.iter().map(|a| a.name.as_str()).collect();
    let stages: BTreeSet<&str> = parsed.stages().collect();
    for from in &parsed.froms {
        let image = from.image.as_str();
        if stages.contains(image) {
            continue;
        }
        // `FROM ${X}` / `FROM $X`: look at the default of the global `ARG X`.
        let var = image
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .or_else(|| image.strip_prefix('$'))
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let (reference, arg) = match var {
            Some(name) => {
                if declared_args.contains(name) {
                    continue;
                }
                let default = parsed.global_arg(name).and_then(|a| a.default.clone());
                match default {
                    Some(d) => (d, Some(name)),
                    None => continue,
                }
            }
            None => (image.to_owned(), None),
        };
        let Some(named) = manifest_image(model, &reference) else {
            continue;
        };
        if named == v.image {
            continue;
        }
        let how = match arg {
            Some(a) => format!(
                "declare it: `from \"{named}:VERSION\" arg=\"{a}\"` in `{}`",
                v.image
            ),
            None => format!(
                "declare it with `from \"{named}:VERSION\" arg=\"BASE_IMAGE\"` and write `ARG BASE_IMAGE` / `FROM ${{BASE_IMAGE}}`"
            ),
        };
        let undeclared = if dep_images.contains(named) {
            format!(
                "`FROM {image}` names manifest image `{named}` without the pinned reference mab passes"
            )
        } else {
            format!(
                "`FROM {image}` names manifest image `{named}`, but `{}` declares no `from` for it",
                v.image
            )
        };
        diags.push(
            Diag::warning(SourceSpan::from(from.image_span.clone()), undeclared)
                .label("undeclared dependency: mab cannot order or pin this build")
                .help(how)
                .in_source(&source),
        );
    }
    for f in &v.froms {
        if let Some(a) = &f.arg
            && !all_args.contains(a.as_str())
        {
            diags.push(
                Diag::warning(f.span, format!("`{path}` declares no `ARG {a}`"))
                    .label(format!("passes --build-arg {a}"))
                    .help(format!(
                        "add `ARG {a}` before the `FROM ${{{a}}}` that uses it"
                    ))
                    .in_source(manifest),
            );
        }
    }
    diags
}

/// The tools the profile's backend runs, and emulation for every foreign platform.
/// Every secret the manifest mounts is available on this machine (its presence only).
pub fn secrets(model: &Model, base: &Path) -> Diagnostics {
    missing_secrets(
        model.versions.iter().map(|v| (v.key.as_str(), &v.secrets)),
        base,
    )
}

/// The secrets of `(image:version, secrets)` pairs whose source is missing: an environment
/// variable that is not set, a file that is not there. Never reads a value. Each missing
/// source is reported once, for the first version that mounts it.
pub fn missing_secrets<'a>(
    users: impl Iterator<Item = (&'a str, &'a BTreeMap<String, SecretSource>)>,
    base: &Path,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let mut seen = BTreeSet::new();
    for (key, secrets) in users {
        for (id, source) in secrets {
            let problem = match source {
                SecretSource::Env(var) if std::env::var_os(var).is_none() => {
                    format!("the environment variable {var} is not set")
                }
                SecretSource::Env(_) => continue,
                SecretSource::File(path) => match std::fs::metadata(base.join(path)) {
                    Ok(m) if m.is_file() => continue,
                    Ok(_) => format!("{path} is not a file"),
                    Err(e) => format!("cannot use {path}: {e}"),
                },
            };
            if seen.insert((id.clone(), problem.clone())) {
                diags.push(
                    Diag::plain(format!(
                        "secret `{id}` of `{key}` is not available: {problem}"
                    ))
                    .help("`mab build` refuses to start without it; set it where the build runs"),
                );
            }
        }
    }
    diags
}

pub fn machine(model: &Model) -> Diagnostics {
    use crate::manifest::model::Backend;
    let mut diags = Diagnostics::new();
    let tools: &[(&str, &str)] = match model.profile.backend {
        Backend::Buildx => &[("docker", "install the docker CLI with the buildx plugin")],
        Backend::Buildah => &[
            ("buildah", "apt-get install buildah"),
            ("skopeo", "apt-get install skopeo (pushes images by digest)"),
        ],
        Backend::Podman => &[
            ("podman", "apt-get install podman"),
            ("skopeo", "apt-get install skopeo (pushes images by digest)"),
        ],
    };
    for (tool, how) in tools {
        if find_in_path(tool).is_none() {
            diags.push(
                Diag::plain(format!(
                    "`{tool}` is not installed (backend {})",
                    model.profile.backend
                ))
                .help(*how),
            );
        }
    }
    if model.profile.backend == Backend::Buildx {
        if diags.is_empty() {
            diags.extend(buildx_builders(model));
        }
        return diags;
    }
    let host = host_arch();
    let mut seen = BTreeSet::new();
    for p in model.versions.iter().flat_map(|v| &v.platforms) {
        let arch = p.platform.arch();
        // An amd64 machine runs 386 binaries natively (and arm64 ones 32-bit arm, mostly).
        let native = arch == host || (host == "amd64" && arch == "386");
        if native || !seen.insert(arch) || p.platform.os() != "linux" {
            continue;
        }
        let qemu = qemu_name(arch);
        let path = format!("/proc/sys/fs/binfmt_misc/qemu-{qemu}");
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(why) = binfmt_problem(&status) {
            diags.push(
                Diag::plain(format!("this {host} machine cannot run {} builds: {path} {why}", p.platform)).help(
                    "apt-get install qemu-user-static binfmt-support; if /proc/sys/fs/binfmt_misc is empty, \
                     `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable`; \
                     or route the platform to a native `builder`",
                ),
            );
        }
    }
    diags
}

/// What keeps a binfmt_misc handler (`/proc/sys/fs/binfmt_misc/qemu-ARCH`, empty when there is
/// none) from running a foreign build's binaries in a container: not registered, disabled, or
/// without the F flag (the interpreter opened at registration, so it works in a chroot or a
/// container that has no `/usr/libexec/qemu-binfmt`).
fn binfmt_problem(status: &str) -> Option<&'static str> {
    let enabled = status.lines().next() == Some("enabled");
    let fixed = status
        .lines()
        .any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')));
    if status.trim().is_empty() {
        Some("is not registered")
    } else if !enabled {
        Some("is disabled")
    } else if !fixed {
        Some("lacks the F (fix binary) flag")
    } else {
        None
    }
}

/// buildx: the plugin answers, every builder the manifest routes to is reachable (those with
/// an endpoint are created when missing, as `mab build` does), and every platform of the
/// manifest is offered by a running node of the builder that builds it — BuildKit lists what
/// it can run, natively or under emulation.
fn buildx_builders(model: &Model) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Err(e) = std::process::Command::new("docker")
        .args(["buildx", "version"])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
            }
        })
    {
        diags.push(
            Diag::plain(format!("the docker buildx plugin does not answer: {e}")).help(
                "install it (Debian: docker-buildx; or the plugin binary in ~/.docker/cli-plugins/)",
            ),
        );
        return diags;
    }
    let platforms: BTreeSet<&Platform> = model
        .versions
        .iter()
        .flat_map(|v| v.platforms.iter().map(|p| &p.platform))
        .collect();
    // What each builder offers (`None` when it does not answer), by builder name; the
    // current (default) builder has no name.
    let mut offers: Vec<(Option<&str>, Option<Vec<String>>)> = Vec::new();
    for b in &model.builders {
        match crate::buildx::ensure(b) {
            Ok(i) => offers.push((
                Some(&b.name),
                Some(i.platforms().map(str::to_owned).collect()),
            )),
            Err(e) => {
                diags.push(Diag::plain(e.to_string()));
                offers.push((Some(&b.name), None));
            }
        }
    }
    if platforms.iter().any(|p| model.builder_for(p).is_none()) {
        match crate::buildx::inspect(None) {
            Ok(i) => offers.push((None, Some(i.platforms().map(str::to_owned).collect()))),
            Err(e) => {
                diags.push(
                    Diag::plain(format!("the current buildx builder does not answer: {e}")).help(
                        "create one: `docker buildx create --use` (or `--driver remote tcp://…` for a BuildKit daemon),                          or set BUILDX_BUILDER",
                    ),
                );
                offers.push((None, None));
            }
        }
    }
    for p in platforms {
        let owner = model.builder_for(p).map(|b| b.name.as_str());
        let Some((_, Some(offered))) = offers.iter().find(|(name, _)| *name == owner) else {
            continue;
        };
        if !offered.iter().any(|o| o == p.as_str()) {
            let who = owner.map_or("the current buildx builder".to_owned(), |n| {
                format!("buildx builder `{n}`")
            });
            diags.push(
                Diag::plain(format!(
                    "{who} offers no {p}: its nodes run {}",
                    if offered.is_empty() { "nothing".to_owned() } else { offered.join(", ") }
                ))
                .help(if owner.is_some() {
                    "point the `builder` block at a node that runs the platform, or remove the platform from its `platforms`"
                } else {
                    "install emulation for the builder (apt-get install qemu-user-static binfmt-support, then restart it),                      or route the platform to a native node with a `builder` block"
                }),
            );
        }
    }
    diags
}

fn find_in_path(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// This machine's architecture as platforms name it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}

/// The qemu-user binfmt name of a platform architecture.
fn qemu_name(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "loong64" => "loongarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check`'s binfmt diagnosis on the handler files as the kernel writes them.
    #[test]
    fn binfmt_handlers_are_diagnosed() {
        let ok = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n\
                  magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        assert_eq!(binfmt_problem(ok), None);
        assert_eq!(
            binfmt_problem(&ok.replace("flags: PF", "flags: P")),
            Some("lacks the F (fix binary) flag")
        );
        assert_eq!(
            binfmt_problem(&ok.replace("flags: PF", "flags: OC")),
            Some("lacks the F (fix binary) flag")
        );
        assert_eq!(
            binfmt_problem(&ok.replace("enabled", "disabled")),
            Some("is disabled")
        );
        assert_eq!(binfmt_problem(""), Some("is not registered"));
    }
}
