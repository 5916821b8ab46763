//! Stage 5, whole-model checks: builders against the backend, per-node file names that
//! would collide, tags, platform coverage of bases; and the small grammars (platform lists,
//! attestation requests, paths that leave the project).

use std::collections::HashMap;

use miette::SourceSpan;

use super::super::kdl_node::Spanned;
use super::super::model::{Backend, Dep, ImageVersion, Mirror, Profile};
use super::super::platform::Platform;
use super::*;
use crate::diag::{Diag, Diagnostics};

impl Resolver<'_> {
    /// A `builder` with an endpoint routes builds to another machine, which only buildx can
    /// reach: under buildah or podman those builds would silently run here, emulated.
    pub(super) fn check_builder_backend(&mut self, profile: &Profile, versions: &[ImageVersion]) {
        if profile.backend == Backend::Buildx {
            return;
        }
        for b in &self.raw.builders {
            let Some(endpoint) = &b.endpoint else {
                continue;
            };
            let used = versions
                .iter()
                .flat_map(|v| &v.platforms)
                .any(|p| b.platforms.iter().any(|bp| bp.value == p.platform.as_str()));
            if used {
                self.diags.push(
                    Diag::error(
                        endpoint.span,
                        format!(
                            "builder `{}` builds on another machine, which the {} backend cannot reach",
                            b.name.value, profile.backend
                        ),
                    )
                    .label(format!("profile `{}` uses {}", profile.name, profile.backend))
                    .help("use `backend \"buildx\"` in this profile, or take the platform out of the builder (it then builds here, emulated)"),
                );
            }
        }
    }

    /// Every node's files (`.mab/logs/`, digests, metadata, layouts) are named after its id
    /// made safe as a file name; two ids that come out the same would share them (one build
    /// reading the other's digest). Such names are refused, naming both.
    pub(super) fn check_file_names(&mut self, versions: &[ImageVersion], mirrors: &[Mirror]) {
        use crate::files::file_stem;
        // Image versions and mirror tags have ids of their own prefixes (`build:`, `mirror:`).
        type Seen = HashMap<String, (SourceSpan, String)>;
        let check = |seen: &mut Seen, name: String, span: SourceSpan, diags: &mut Diagnostics| {
            let stem = file_stem(&name);
            match seen.get(&stem) {
                Some((first, other)) if *other != name => diags.push(
                    Diag::error(span, format!("`{name}` and `{other}` would share the file names `{stem}`"))
                        .label(format!("`{name}`"))
                        .also(*first, format!("`{other}`"))
                        .help("`/`, `:`, `@` and `_` all become `_` in file names: rename one of the two images or versions"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(stem, (span, name));
                }
            }
        };
        let mut seen = Seen::new();
        for v in versions {
            check(&mut seen, v.key.clone(), v.span, &mut self.diags);
        }
        let mut seen = Seen::new();
        for m in mirrors {
            for t in &m.tags {
                check(
                    &mut seen,
                    format!("{}:{t}", m.name),
                    m.span,
                    &mut self.diags,
                );
            }
        }
    }

    /// Two nodes publishing the same `repository:tag` is an error naming both.
    pub(super) fn check_tags(&mut self, versions: &[ImageVersion], mirrors: &[Mirror]) {
        let mut seen: HashMap<(String, String), (SourceSpan, String)> = HashMap::new();
        let mut check =
            |repo: &str, tag: &str, span: SourceSpan, who: String, diags: &mut Diagnostics| {
                let key = (repo.to_owned(), tag.to_owned());
                match seen.get(&key) {
                    Some((first, other)) => diags.push(
                        Diag::error(span, format!("`{repo}:{tag}` would be published twice"))
                            .label(format!("by {who}"))
                            .also(*first, format!("and by {other}"))
                            .help("give one of them another tag, version or variant suffix"),
                    ),
                    None => {
                        seen.insert(key, (span, who));
                    }
                }
            };
        for v in versions {
            for t in &v.tags {
                check(
                    &v.repository,
                    t,
                    v.span,
                    format!("`{}`", v.key),
                    &mut self.diags,
                );
            }
        }
        for m in mirrors {
            for t in &m.tags {
                check(
                    &m.repository,
                    t,
                    m.span,
                    format!("mirror `{}`", m.name),
                    &mut self.diags,
                );
            }
        }
    }

    /// A dependent cannot build a platform its base does not provide.
    pub(super) fn check_platform_coverage(
        &mut self,
        versions: &[ImageVersion],
        mirrors: &[Mirror],
    ) {
        for v in versions {
            for f in &v.froms {
                let (name, provided): (String, Vec<&str>) = match &f.dep {
                    Dep::Image(i) => (
                        versions[*i].key.clone(),
                        versions[*i].platform_names().collect(),
                    ),
                    Dep::Mirror(m, tag) => match &mirrors[*m].platforms {
                        Some(p) => (
                            format!("mirror:{}:{tag}", mirrors[*m].name),
                            p.iter().map(Platform::as_str).collect(),
                        ),
                        None => continue,
                    },
                };
                let missing: Vec<&str> = v
                    .platform_names()
                    .filter(|p| !provided.contains(p))
                    .collect();
                if !missing.is_empty() {
                    self.diags.push(
                        Diag::error(
                            f.span,
                            format!(
                                "`{}` builds {} but `{name}` does not provide it",
                                v.key,
                                missing.join(", ")
                            ),
                        )
                        .label(format!("provides only {}", provided.join(", ")))
                        .help(format!(
                            "add the platform to `{name}`, or remove it from `{}`",
                            v.key
                        )),
                    );
                }
            }
        }
    }
}

pub(super) fn platform_list(list: &[Spanned<String>], diags: &mut Diagnostics) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in list {
        match Platform::parse(&p.value) {
            Ok(pl) if out.contains(&pl) => diags.push(
                Diag::error(p.span, format!("platform `{}` is listed twice", p.value)).label(
                    if pl.as_str() == p.value {
                        "listed again".to_owned()
                    } else {
                        format!("listed again: it is `{pl}`")
                    },
                ),
            ),
            Ok(pl) => out.push(pl),
            Err(e) => diags.push(
                Diag::error(p.span, e.message())
                    .label("unknown platform")
                    .help(e.help()),
            ),
        }
    }
    out
}

/// What buildx attaches when nothing is said: a provenance attestation, minimal mode.
pub const DEFAULT_ATTEST: &str = "type=provenance,mode=min";

pub(super) fn attest_type(request: &str) -> Option<&str> {
    request.split(',').find_map(|kv| kv.strip_prefix("type="))
}

/// Check one attestation request (`type=provenance,mode=max`), as buildx parses `--attest`:
/// comma-separated `key=value` pairs. Returns its type.
pub(super) fn attest_request(request: &str) -> Result<&str, BadAttest> {
    if let Some(c) = request.chars().find(|c| c.is_control() || *c == '"') {
        return Err(BadAttest::Character(c));
    }
    let mut kind = None;
    for kv in request.split(',') {
        let not_pair = || BadAttest::NotKeyValue(kv.to_owned());
        let (k, v) = kv.split_once('=').ok_or_else(not_pair)?;
        match (k, v) {
            ("type", "provenance" | "sbom") => kind = Some(v),
            ("type", other) => return Err(BadAttest::Type(other.to_owned())),
            ("mode", m) if m != "min" && m != "max" => {
                return Err(BadAttest::Mode(m.to_owned()));
            }
            ("disabled", d) if d != "true" && d != "false" => {
                return Err(BadAttest::Disabled(d.to_owned()));
            }
            ("", _) | (_, "") => return Err(not_pair()),
            _ => {}
        }
    }
    let kind = kind.ok_or(BadAttest::NoType)?;
    if kind == "sbom" && request.split(',').any(|kv| kv.starts_with("mode=")) {
        return Err(BadAttest::ModeOfSbom);
    }
    Ok(kind)
}

/// Why a string is not an attestation request; the message labels the manifest's text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadAttest {
    #[error("{0:?} cannot appear in an attestation request")]
    Character(char),
    #[error("`{0}` is not `key=value`")]
    NotKeyValue(String),
    #[error("unknown type `{0}`: expected provenance or sbom")]
    Type(String),
    #[error("unknown mode `{0}`: expected min or max")]
    Mode(String),
    #[error("`disabled={0}`: expected true or false")]
    Disabled(String),
    #[error("no `type=` (provenance or sbom)")]
    NoType,
    #[error("`mode` is a provenance setting")]
    ModeOfSbom,
}

/// Why a path relative to the manifest leaves its directory (absolute, or `..` above it).
pub(super) fn outside_problem(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("an absolute path");
    }
    let mut depth: i64 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Some("`..` leads above the manifest's directory");
                }
            }
            _ => depth += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, resolve};

    #[test]
    fn node_file_names_that_would_collide_are_refused() {
        let e = errors(
            r#"image "a/b" { version "1"; }
image "a_b" { version "1"; }"#,
        );
        assert!(
            e.iter().any(|m| m.contains("a/b") || m.contains("a_b")),
            "{e:?}"
        );
    }

    #[test]
    fn an_attestation_request_without_a_type_is_refused() {
        assert!(super::attest_request("mode=max").is_err());
        assert_eq!(super::attest_request("type=sbom").unwrap(), "sbom");
        assert!(resolve(r#"image "a" { version "1"; }"#, None, &[]).is_ok());
    }

    #[test]
    fn paths_that_leave_the_project_are_named() {
        assert!(super::outside_problem("../x").is_some());
        assert!(super::outside_problem("/etc").is_some());
        assert!(super::outside_problem("images/x").is_none());
    }
}
