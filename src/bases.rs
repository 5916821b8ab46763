//! Every base is an input: the `FROM`s of each Dockerfile that the manifest does not declare
//! (`FROM debian:bookworm-slim`, `FROM ${BASE}` with a default, `FROM --platform=$BUILDPLATFORM
//! golang:1.22 AS build`) are read when the project is loaded, per platform (build args can
//! differ), so the plan can pin each to its digest (`--build-context NAME=docker-image://…@…`)
//! and the input hash can cover it. Stage names, `scratch` and the bases mab passes itself (a
//! `from`'s build arg) are not upstream bases, nor is a reference pinned by digest already; a `FROM` whose variables have no value here is
//! left to the builder, as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::dockerfile;
use crate::manifest::model::{BasePlatform, Model, UpstreamBase};

/// Fill `bases` of every platform of every version of `model`, reading Dockerfiles under
/// `dir`. A Dockerfile that cannot be read has no bases (`mab check` reports it; a build fails),
/// and neither has one a symbolic link leads outside `dir` without `outside=#true`: nothing
/// outside the project is read (`check` and `build` refuse it).
pub fn fill(model: &mut Model, dir: &Path) {
    let root = dir.canonicalize().ok();
    let mut parsed: BTreeMap<(String, bool), Option<dockerfile::Dockerfile>> = BTreeMap::new();
    for v in &mut model.versions {
        let key = (v.dockerfile.clone(), v.outside);
        let file = parsed.entry(key).or_insert_with(|| {
            let path = dir.join(&v.dockerfile);
            let inside = v.outside
                || root
                    .as_ref()
                    .zip(path.canonicalize().ok())
                    .is_some_and(|(root, real)| real.starts_with(root));
            if !inside {
                return None;
            }
            std::fs::read_to_string(path)
                .ok()
                .map(|t| dockerfile::parse(&t))
        });
        let Some(file) = file else {
            continue;
        };
        let pinned: BTreeSet<&str> = v.froms.iter().filter_map(|f| f.arg.as_deref()).collect();
        for ps in &mut v.platforms {
            ps.bases = of(file, &ps.args, &pinned);
        }
    }
}

/// The upstream bases of `file` given the build `args`; `pinned`: args mab passes a base in.
pub fn of(
    file: &dockerfile::Dockerfile,
    args: &BTreeMap<String, String>,
    pinned: &BTreeSet<&str>,
) -> Vec<UpstreamBase> {
    let stages: BTreeSet<&str> = file.stages().collect();
    let mut out: BTreeSet<UpstreamBase> = BTreeSet::new();
    for from in &file.froms {
        if stages.contains(from.image.as_str()) || from.image.eq_ignore_ascii_case("scratch") {
            continue;
        }
        let value = |name: &str| -> Option<String> {
            args.get(name)
                .cloned()
                .or_else(|| file.global_arg(name).and_then(|a| a.default.clone()))
        };
        if variables(&from.image).any(|n| pinned.contains(n)) {
            continue;
        }
        let Some(name) = expand(&from.image, &value) else {
            continue;
        };
        // A reference with a digest is pinned already (and the Dockerfile is hashed).
        if name.is_empty()
            || name.contains('$')
            || name.contains('@')
            || stages.contains(name.as_str())
            || name.eq_ignore_ascii_case("scratch")
            || crate::manifest::reference::reference_problem(&name).is_some()
        {
            continue;
        }
        let platform = match from.platform.as_deref() {
            None | Some("$TARGETPLATFORM" | "${TARGETPLATFORM}") => BasePlatform::Target,
            Some("$BUILDPLATFORM" | "${BUILDPLATFORM}") => BasePlatform::Build,
            Some(p) => match expand(p, &value) {
                Some(p) if crate::manifest::platform::Platform::parse(&p).is_ok() => {
                    BasePlatform::Fixed(p)
                }
                _ => continue,
            },
        };
        out.insert(UpstreamBase { name, platform });
    }
    out.into_iter().collect()
}

/// The names of the variables `$X`, `${X}` and `${X:-default}` in `s`.
fn variables(s: &str) -> impl Iterator<Item = &str> {
    s.match_indices('$').filter_map(move |(i, _)| {
        let rest = &s[i + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// `s` with `$X`, `${X}` and `${X:-default}` replaced; `None` when a variable has no value.
fn expand(s: &str, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}')?;
            let body = &inner[..close];
            rest = &inner[close + 1..];
            match body.split_once(":-") {
                Some((name, default)) => out.push_str(
                    &value(name)
                        .filter(|v| !v.is_empty())
                        .unwrap_or(default.to_owned()),
                ),
                None => out.push_str(&value(body)?),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&value(&rest[..end])?);
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(text: &str, args: &[(&str, &str)], pinned: &[&str]) -> Vec<(String, BasePlatform)> {
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let pinned = pinned.iter().copied().collect();
        of(&dockerfile::parse(text), &args, &pinned)
            .into_iter()
            .map(|b| (b.name, b.platform))
            .collect()
    }

    #[test]
    fn undeclared_bases_are_found_and_the_rest_is_not() {
        let text = "ARG BASE\nARG TOOLS=golang:1.22\nARG REL\n\
                    FROM --platform=$BUILDPLATFORM ${TOOLS} AS tools\n\
                    FROM ${BASE} AS pinned\n\
                    FROM debian:bookworm-slim AS run\n\
                    FROM tools AS again\n\
                    FROM scratch\n\
                    FROM alpine:${REL:-3.20}\n\
                    FROM --platform=linux/amd64 busybox:1.36\n\
                    FROM ${NOPE}\n\
                    FROM debian:12@sha256:0123456789012345678901234567890123456789012345678901234567890123\n";
        assert_eq!(
            bases(text, &[("TOOLS", "golang:1.23")], &["BASE"]),
            [
                ("alpine:3.20".to_owned(), BasePlatform::Target),
                (
                    "busybox:1.36".to_owned(),
                    BasePlatform::Fixed("linux/amd64".to_owned())
                ),
                ("debian:bookworm-slim".to_owned(), BasePlatform::Target),
                ("golang:1.23".to_owned(), BasePlatform::Build),
            ]
        );
        // Without the manifest's arg, the Dockerfile's default.
        assert!(
            bases(text, &[], &["BASE"]).contains(&("golang:1.22".to_owned(), BasePlatform::Build))
        );
    }
}
