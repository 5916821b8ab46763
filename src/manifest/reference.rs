//! The OCI name, tag and reference grammar (the distribution spec's, in ASCII classes), and
//! references as the manifest writes them resolved against the profile's registry.

use std::collections::HashMap;

use miette::SourceSpan;

use super::model::{Dep, Mirror};
use super::syntax::RawManifest;
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

/// `IMAGE:TAG` or `mirror:NAME:TAG` → [`Dep`].
pub(crate) fn resolve_reference(
    reference: &str,
    span: SourceSpan,
    keys: &HashMap<String, usize>,
    raw: &RawManifest,
    mirrors: &[Mirror],
    diags: &mut Diagnostics,
) -> Option<Dep> {
    if let Some(rest) = reference.strip_prefix("mirror:") {
        let Some((name, tag)) = rest.split_once(':') else {
            diags.push(
                Diag::error(span, format!("`{reference}` names no tag"))
                    .label("expected mirror:NAME:TAG")
                    .help("write the tag, e.g. `mirror:alpine:3.15`"),
            );
            return None;
        };
        let Some(mi) = mirrors.iter().position(|m| m.name == name) else {
            diags.push(
                Diag::error(span, format!("unknown mirror `{name}`"))
                    .label("no `mirror` of this name")
                    .help_opt(suggest::did_you_mean(
                        name,
                        mirrors.iter().map(|m| m.name.as_str()),
                    )),
            );
            return None;
        };
        if !mirrors[mi].tags.iter().any(|t| t == tag) {
            let tags = mirrors[mi].tags.iter().map(String::as_str);
            diags.push(
                Diag::error(span, format!("mirror `{name}` does not copy tag `{tag}`"))
                    .label("unknown tag")
                    .help(suggest::did_you_mean(tag, tags.clone()).unwrap_or_else(|| {
                        format!(
                            "add it to the mirror's `tags`; it copies {}",
                            suggest::list(tags)
                        )
                    })),
            );
            return None;
        }
        return Some(Dep::Mirror(mi, tag.to_owned()));
    }
    let Some((image, tag)) = reference.split_once(':') else {
        diags.push(
            Diag::error(span, format!("`{reference}` names no version"))
                .label("expected IMAGE:VERSION or mirror:NAME:TAG")
                .help_opt(
                    raw.images
                        .iter()
                        .find(|i| i.name.value == reference)
                        .map(|i| {
                            format!(
                                "pick one of its versions: {}",
                                suggest::list(i.versions.iter().map(|v| v.name.value.as_str()))
                            )
                        }),
                ),
        );
        return None;
    };
    if let Some(i) = keys.get(reference) {
        return Some(Dep::Image(*i));
    }
    match raw.images.iter().find(|i| i.name.value == image) {
        None if image.contains('/') || image.contains('.') => {
            diags.push(
                Diag::error(
                    span,
                    format!("`{reference}` is not an image of this manifest"),
                )
                .label("upstream reference")
                .help("declare a `mirror` for upstream images and write `mirror:NAME:TAG`"),
            );
        }
        None => diags.push(
            Diag::error(span, format!("unknown image `{image}`"))
                .label("no `image` of this name")
                .help_opt(suggest::did_you_mean(
                    image,
                    raw.images.iter().map(|i| i.name.value.as_str()),
                )),
        ),
        Some(_) => {
            let mut known_sorted: Vec<&str> = keys
                .keys()
                .filter_map(|k| k.strip_prefix(image).and_then(|r| r.strip_prefix(':')))
                .collect();
            known_sorted.sort_unstable();
            diags.push(
                Diag::error(span, format!("image `{image}` has no version `{tag}`"))
                    .label("unknown version")
                    .help(
                        suggest::did_you_mean(tag, known_sorted.iter().copied()).unwrap_or_else(
                            || {
                                format!(
                                    "its versions: {}",
                                    suggest::list(known_sorted.iter().copied())
                                )
                            },
                        ),
                    ),
            );
        }
    }
    None
}

/// Append `:tag` unless the reference already has a tag or digest.
pub(crate) fn with_default_tag(reference: &str, tag: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:{tag}")
    }
}

/// Why a string is not a valid OCI tag, if it is not.
pub fn tag_problem(tag: &str) -> Option<&'static str> {
    let mut chars = tag.chars();
    match chars.next() {
        None => Some("empty tag"),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            Some("a tag starts with a letter, digit or `_`")
        }
        _ if tag.len() > 128 => Some("a tag is at most 128 characters"),
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) => {
            Some("a tag holds only letters, digits, `_`, `.` and `-`")
        }
        _ => None,
    }
}

/// Why `reference` is not a valid image reference by the distribution grammar (which buildx,
/// buildah and the registry apply), if it is not. Whatever reaches a command's comma-separated
/// options (`--cache-to type=registry,ref=…`, `--output …,name=…`) must pass it: a comma or an
/// `=` cannot.
pub(crate) fn reference_problem(reference: &str) -> Option<String> {
    // The grammar of distribution/reference (what oci-client and oci-spec parse with), in ASCII
    // classes: their pattern's Unicode `\w` costs 100 ms and 25 MiB to compile, which a plan of
    // 10,000 builds would pay on every run.
    static GRAMMAR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    const COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    const DOMAIN: &str = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)";
    let re = GRAMMAR.get_or_init(|| {
        let pattern = format!(
            r"^(?:{DOMAIN}/)?{COMPONENT}(?:/{COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
        );
        regex::Regex::new(&pattern).expect("the reference grammar is a valid pattern")
    });
    if reference.is_empty() {
        return Some("not a valid image reference: empty".to_owned());
    }
    if reference.len() > 255 + 128 + 80 {
        return Some("not a valid image reference: too long".to_owned());
    }
    (!re.is_match(reference)).then(|| {
        "not a valid image reference: lowercase path components of letters and digits, one `.`, `_`, `__` or dashes between them; a host[:port] first".to_owned()
    })
}

/// Why a name is not a valid repository path component, if it is not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars {
        Some("only lowercase letters, digits, `.`, `_`, `-` and `/`")
    } else if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) || name.contains("//")
    {
        Some("must start and end with a letter or digit")
    } else if reference_problem(&format!("r.example/{name}")).is_some() {
        Some("between letters and digits: one `.` or `_`, `__`, or dashes")
    } else {
        None
    }
}

pub(crate) fn registry_problem(registry: &str) -> Option<(&'static str, &'static str)> {
    if registry.contains("://") {
        Some((
            "a scheme is not part of a registry",
            "write the host and path only, e.g. `registry.example.com/team`; mark plain-HTTP registries `insecure=#true`",
        ))
    } else if registry.is_empty() || registry.contains(char::is_whitespace) {
        Some((
            "empty or contains spaces",
            "write the host and path, e.g. `registry.example.com/team`",
        ))
    } else if registry.chars().any(|c| c.is_ascii_uppercase()) && registry.contains('/') && {
        let path = registry.split_once('/').map_or("", |x| x.1);
        path.chars().any(|c| c.is_ascii_uppercase())
    } {
        Some((
            "repository paths are lowercase",
            "write the path in lowercase",
        ))
    } else {
        None
    }
}

pub(crate) fn upstream_problem(source: &str) -> Option<(&'static str, &'static str)> {
    let last = source.rsplit('/').next().unwrap_or(source);
    if source.contains("://") {
        Some((
            "a scheme is not part of a reference",
            "write e.g. `docker.io/library/alpine`",
        ))
    } else if last.contains(':') || last.contains('@') {
        Some((
            "the tag belongs in `tags`",
            "write the repository here and list the tags in the block: `tags \"3.15\"`",
        ))
    } else if source.is_empty() {
        Some(("empty reference", "write e.g. `docker.io/library/alpine`"))
    } else {
        None
    }
}

#[cfg(test)]
mod reference_tests {
    use super::reference_problem;

    /// The ASCII grammar accepts and rejects what oci-client's parser does.
    #[test]
    fn the_reference_grammar_agrees_with_oci_client() {
        for r in [
            "alpine",
            "library/alpine:3.20",
            "registry.example.com:5000/team/a__b/c-d.e:v1.2_x",
            "127.0.0.1:5000/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost/x:1",
            "r.example/t,push=false/x",
            "r.example/c,type=local,dest=/tmp/x:1",
            "a..b",
            "a___b",
            "a.-b",
            "A/b",
            "x:",
            "x:tag with space",
            "-x",
            "x/",
            "Registry.Example.com/x",
        ] {
            assert_eq!(
                reference_problem(r).is_none(),
                r.parse::<oci_client::Reference>().is_ok(),
                "{r}"
            );
        }
    }
}
