//! The manifest as written: KDL nodes mapped to typed, spanned structures.
//! Nothing is resolved here (no cascade, no interpolation); every node and
//! property name is checked, and all errors of the file are collected.

use kdl::{KdlDocument, KdlNode};
use miette::SourceSpan;

use super::kdl_node::{
    Spanned, args, check_props, entry_bool, entry_string, forbid_children, head_span, name, prop,
    string_args,
};
pub use super::raw::*;
use super::settings::*;
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

/// Settings every image-like block accepts.
pub(super) const IMAGE_SETTINGS: &[&str] = &[
    "context",
    "dockerfile",
    "platforms",
    "target",
    "arg",
    "label",
    "annotation",
    "tag",
    "from",
    "test",
    "cache",
    "attest",
    "secret",
    "rebuild-after",
];
pub(super) const TOP_LEVEL: &[&str] = &["defaults", "profile", "var", "mirror", "image", "builder"];
pub(super) const PROFILE_ONLY: &[&str] = &[
    "registry",
    "backend",
    "push",
    "inherits",
    "var",
    "promoted-from",
    "sign",
];
pub(super) const PROFILE_SETTINGS: &[&str] = &[
    "registry",
    "backend",
    "push",
    "tag",
    "platforms",
    "arg",
    "label",
    "annotation",
    "cache",
    "attest",
    "secret",
    "rebuild-after",
    "promoted-from",
    "sign",
    "inherits",
    "var",
];

/// Which block a setting is read in; decides what is allowed there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Block {
    Defaults,
    Image,
    Version,
    Variant,
}

impl Block {
    pub(super) fn name(self) -> &'static str {
        match self {
            Block::Defaults => "defaults",
            Block::Image => "image",
            Block::Version => "version",
            Block::Variant => "variant",
        }
    }

    pub(super) fn allowed(self) -> Vec<&'static str> {
        let mut v = IMAGE_SETTINGS.to_vec();
        match self {
            Block::Image => v.extend(["version", "variant"]),
            Block::Version => v.push("variant"),
            Block::Defaults | Block::Variant => {}
        }
        v
    }
}

/// Parse KDL text (v2, or v1 as a fallback) into the raw manifest. A KDL syntax error
/// is fatal; other errors come back beside the parts of the manifest that could be read.
pub fn parse(text: &str) -> Result<(RawManifest, Diagnostics), Diagnostics> {
    let doc = match super::kdl_parallel::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let mut diags = Diagnostics::new();
            for d in e.diagnostics {
                // A v1 keyword in a file the v2 parser read furthest: name the mix.
                let at = text
                    .get(d.span.offset()..d.span.offset() + d.span.len())
                    .unwrap_or("");
                let help = match at {
                    "true" | "false" | "null" => Some(format!(
                        "this file mixes KDL v1 and v2: KDL v2 writes `#{at}` (and v1 `{at}`); use one version throughout"
                    )),
                    _ => d.help,
                };
                diags.push(
                    Diag::error(
                        d.span,
                        d.message.unwrap_or_else(|| "invalid KDL".to_owned()),
                    )
                    .label(d.label.unwrap_or_else(|| "here".to_owned()))
                    .help_opt(help),
                );
            }
            if diags.is_empty() {
                diags.push(Diag::error(SourceSpan::from(0..0), "invalid KDL document"));
            }
            return Err(diags);
        }
    };
    let mut diags = Diagnostics::new();
    let manifest = read_document(&doc, &mut diags);
    Ok((manifest, diags))
}

fn read_document(doc: &KdlDocument, diags: &mut Diagnostics) -> RawManifest {
    let mut m = RawManifest::default();
    let mut defaults_span: Option<SourceSpan> = None;
    for node in doc.nodes() {
        match name(node) {
            "defaults" => {
                if let Some(first) = defaults_span {
                    diags.push(
                        Diag::error(node.name().span(), "`defaults` is declared twice")
                            .label("second `defaults`")
                            .also(first, "first declared here")
                            .help("merge the two blocks into one"),
                    );
                }
                defaults_span = Some(node.name().span());
                string_args(node, 0, Some(0), "no arguments", false, diags);
                check_props(node, &[], diags);
                read_settings_block(
                    node,
                    Block::Defaults,
                    &mut m.defaults,
                    diags,
                    &mut |_, _| false,
                );
            }
            "profile" => {
                if let Some(p) = read_profile(node, diags) {
                    m.profiles.push(p);
                }
            }
            "var" => {
                if let Some(pair) = read_pair(node, "a name and a value", diags) {
                    m.vars.push(pair);
                }
            }
            "mirror" => {
                if let Some(mi) = read_mirror(node, diags) {
                    m.mirrors.push(mi);
                }
            }
            "image" => {
                if let Some(im) = read_image(node, diags) {
                    m.images.push(im);
                }
            }
            "builder" => {
                if let Some(b) = read_builder(node, diags) {
                    m.builders.push(b);
                }
            }
            other => unknown_node(node, other, TOP_LEVEL, "the top level", diags),
        }
    }
    m
}

pub(super) fn unknown_node(
    node: &KdlNode,
    other: &str,
    allowed: &[&str],
    place: &str,
    diags: &mut Diagnostics,
) {
    let known_elsewhere = TOP_LEVEL.contains(&other)
        || IMAGE_SETTINGS.contains(&other)
        || PROFILE_SETTINGS.contains(&other)
        || ["version", "variant", "tags", "endpoint"].contains(&other);
    let (message, help) = if known_elsewhere {
        let hint = if PROFILE_ONLY.contains(&other) {
            format!("`{other}` is a `profile` setting")
        } else if IMAGE_SETTINGS.contains(&other) {
            format!(
                "`{other}` is an image setting: put it in `defaults`, an `image`, a `version` or a `variant`"
            )
        } else {
            format!("{place} accepts {}", suggest::list(allowed.iter().copied()))
        };
        (format!("`{other}` is not allowed in {place}"), hint)
    } else {
        let help = suggest::did_you_mean(other, allowed.iter().copied()).unwrap_or_else(|| {
            format!("{place} accepts {}", suggest::list(allowed.iter().copied()))
        });
        (format!("unknown node `{other}` in {place}"), help)
    };
    diags.push(
        Diag::error(node.name().span(), message)
            .label(if known_elsewhere {
                "not allowed here"
            } else {
                "unknown node"
            })
            .help(help),
    );
}

/// One required string argument naming the node (`image "runtime"`).
pub(super) fn read_name(
    node: &KdlNode,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Spanned<String>> {
    let mut a = string_args(node, 1, Some(1), what, false, diags)?;
    let n = a.pop()?;
    if n.value.is_empty() {
        diags.push(
            Diag::error(n.span, format!("`{}` needs a non-empty name", name(node)))
                .label("empty name"),
        );
        return None;
    }
    Some(n)
}

pub(super) fn read_pair(node: &KdlNode, meaning: &str, diags: &mut Diagnostics) -> Option<Pair> {
    check_props(node, &[], diags);
    forbid_children(node, diags);
    let mut a = string_args(node, 2, Some(2), meaning, true, diags)?;
    let v = a.pop()?;
    let k = a.pop()?;
    Some((k, v))
}

/// A name mab writes into commands and documents (a profile, a buildx builder): letters,
/// digits, `_`, `.` and `-`, starting with a letter or digit.
pub(super) fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// What [`is_name`] takes, as a diagnostic's help.
pub(super) const NAME_HELP: &str =
    "letters, digits, `_`, `.` and `-`, starting with a letter or digit";

/// A build-arg or environment variable name: letters, digits and `_`, not starting with a digit.
pub(super) fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_variant(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawVariant> {
    check_props(node, &["target", "suffix", "dockerfile", "context"], diags);
    let name = read_name(node, "a variant name, e.g. \"slim\"", diags)?;
    let mut settings = RawSettings::default();
    read_inline_props(node, &mut settings, diags);
    let suffix = prop(node, "suffix").and_then(|e| entry_string(e, "`suffix`", false, diags));
    read_settings_block(node, Block::Variant, &mut settings, diags, &mut |_, _| {
        false
    });
    Some(RawVariant {
        name,
        span: head_span(node),
        suffix,
        settings,
    })
}

fn read_version(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawVersion> {
    check_props(node, &["dockerfile", "context", "target"], diags);
    // An unquoted number is read as written (so the rest of the file is still checked), and reported.
    let numeric: Vec<_> = args(node)
        .filter(|e| e.value().is_integer() || e.value().is_float())
        .collect();
    let name = if let [e] = numeric.as_slice() {
        let v = entry_string(e, "a version", true, diags)?;
        diags.push(
            Diag::error(e.span(), format!("version `{}` must be quoted", v.value))
                .label("a number, not a string")
                .help(format!(
                    "write `version \"{}\"`: unquoted, `3.10` would read as 3.1",
                    v.value
                )),
        );
        v
    } else {
        read_name(node, "a version, e.g. \"3.15\"", diags)?
    };
    let mut settings = RawSettings::default();
    read_inline_props(node, &mut settings, diags);
    let mut variants = Vec::new();
    read_settings_block(
        node,
        Block::Version,
        &mut settings,
        diags,
        &mut |child, diags| {
            if crate::manifest::kdl_node::name(child) != "variant" {
                return false;
            }
            variants.extend(read_variant(child, diags));
            true
        },
    );
    Some(RawVersion {
        name,
        span: head_span(node),
        settings,
        variants,
    })
}

fn read_image(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawImage> {
    check_props(node, &[], diags);
    let name = read_name(node, "an image name, e.g. \"runtime\"", diags)?;
    let mut settings = RawSettings::default();
    let mut versions = Vec::new();
    let mut variants = Vec::new();
    read_settings_block(
        node,
        Block::Image,
        &mut settings,
        diags,
        &mut |child, diags| {
            match crate::manifest::kdl_node::name(child) {
                "version" => versions.extend(read_version(child, diags)),
                "variant" => variants.extend(read_variant(child, diags)),
                _ => return false,
            }
            true
        },
    );
    Some(RawImage {
        name,
        span: head_span(node),
        settings,
        versions,
        variants,
    })
}

fn read_profile(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawProfile> {
    check_props(node, &["default"], diags);
    let pname = read_name(node, "a profile name, e.g. \"dev\"", diags)?;
    // A profile's name reaches commands (`--profile`), `MAB_PROFILE` in generated pipelines,
    // plans and documents: a name, nothing that could be read as markup or an option.
    if !is_name(&pname.value) {
        diags.push(
            Diag::error(
                pname.span,
                format!("invalid profile name `{}`", pname.value.escape_debug()),
            )
            .label("a profile name")
            .help(NAME_HELP),
        );
    }
    let mut p = RawProfile {
        name: pname,
        span: head_span(node),
        default: prop(node, "default").and_then(|e| entry_bool(e, "`default`", diags)),
        registry: None,
        insecure: None,
        backend: None,
        push: None,
        promoted_from: None,
        sign: None,
        tags: Vec::new(),
        inherits: None,
        vars: Vec::new(),
        settings: RawSettings::default(),
    };
    let Some(children) = node.children() else {
        return Some(p);
    };
    for child in children.nodes() {
        match name(child) {
            "registry" => {
                check_props(child, &["insecure"], diags);
                forbid_children(child, diags);
                if let Some(r) = string_args(
                    child,
                    1,
                    Some(1),
                    "a registry root, e.g. \"registry.example.com/team\"",
                    false,
                    diags,
                )
                .and_then(|mut v| v.pop())
                {
                    set_once(&mut p.registry, r, child, diags);
                }
                if let Some(e) = prop(child, "insecure") {
                    p.insecure = entry_bool(e, "`insecure`", diags);
                }
            }
            "backend" => {
                if let Some(b) = one_string(child, "\"buildx\", \"buildah\" or \"podman\"", diags) {
                    set_once(&mut p.backend, b, child, diags);
                }
            }
            "push" => {
                check_props(child, &[], diags);
                forbid_children(child, diags);
                let a: Vec<_> = args(child).collect();
                match a.as_slice() {
                    [e] => {
                        if let Some(b) = entry_bool(e, "`push`", diags) {
                            set_once(&mut p.push, b, child, diags);
                        }
                    }
                    _ => diags.push(
                        Diag::error(head_span(child), "`push` takes #true or #false")
                            .label("expected one argument"),
                    ),
                }
            }
            "tag" => {
                check_props(child, &[], diags);
                forbid_children(child, diags);
                p.tags.extend(
                    string_args(
                        child,
                        1,
                        None,
                        "one or more extra tags, e.g. \"latest\"",
                        false,
                        diags,
                    )
                    .unwrap_or_default(),
                );
            }
            "inherits" => {
                if let Some(i) = one_string(child, "the name of another profile", diags) {
                    set_once(&mut p.inherits, i, child, diags);
                }
            }
            "var" => p.vars.extend(read_pair(child, "a name and a value", diags)),
            "sign" => {
                check_props(child, &["key"], diags);
                forbid_children(child, diags);
                if args(child).next().is_some() {
                    diags.push(
                        Diag::error(head_span(child), "`sign` takes `key=` only").help(
                            "`sign key=\"env:MAB_SIGNING_KEY\"` or `sign key=\"keys/cosign.key\"`",
                        ),
                    );
                }
                match prop(child, "key").and_then(|e| entry_string(e, "`key`", false, diags)) {
                    Some(k) => set_once(&mut p.sign, k, child, diags),
                    None => diags.push(
                        Diag::error(head_span(child), "`sign` needs `key=`")
                            .label("no key")
                            .help("`sign key=\"env:MAB_SIGNING_KEY\"` (a PEM ECDSA P-256 private key) or `sign key=\"keys/cosign.key\"`"),
                    ),
                }
            }
            "promoted-from" => {
                if let Some(i) =
                    one_string(child, "the profile whose images this one receives", diags)
                {
                    set_once(&mut p.promoted_from, i, child, diags);
                }
            }
            "platforms" | "arg" | "label" | "annotation" | "cache" | "attest" | "secret"
            | "rebuild-after" => {
                read_setting(child, &mut p.settings, diags);
            }
            other => unknown_node(child, other, PROFILE_SETTINGS, "`profile`", diags),
        }
    }
    Some(p)
}

fn read_mirror(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawMirror> {
    check_props(node, &["from", "insecure"], diags);
    let mname = read_name(node, "a mirror name, e.g. \"alpine\"", diags)?;
    let from = prop(node, "from").and_then(|e| entry_string(e, "`from`", false, diags));
    let mut m = RawMirror {
        name: mname,
        span: head_span(node),
        from,
        insecure: prop(node, "insecure").and_then(|e| entry_bool(e, "`insecure`", diags)),
        tags: Vec::new(),
        platforms: None,
    };
    if m.from.is_none() && prop(node, "from").is_none() {
        diags.push(
            Diag::error(
                head_span(node),
                format!("mirror `{}` has no upstream", m.name.value),
            )
            .label("missing `from=`")
            .help("write `from=\"docker.io/library/NAME\"`"),
        );
    }
    if let Some(children) = node.children() {
        for child in children.nodes() {
            match name(child) {
                "tags" | "tag" => {
                    check_props(child, &[], diags);
                    forbid_children(child, diags);
                    m.tags.extend(
                        string_args(child, 1, None, "one or more upstream tags", true, diags)
                            .unwrap_or_default(),
                    );
                }
                "platforms" => {
                    if let Some(v) = read_platforms(child, diags) {
                        set_once(&mut m.platforms, v, child, diags);
                    }
                }
                other => unknown_node(child, other, &["tags", "platforms"], "`mirror`", diags),
            }
        }
    }
    if m.tags.is_empty() {
        diags.push(
            Diag::error(
                head_span(node),
                format!("mirror `{}` copies no tag", m.name.value),
            )
            .label("no `tags`")
            .help("add `tags \"TAG\" …` in its block"),
        );
    }
    Some(m)
}

fn read_builder(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawBuilder> {
    check_props(node, &[], diags);
    let bname = read_name(node, "a builder name", diags)?;
    let mut b = RawBuilder {
        name: bname,
        span: head_span(node),
        platforms: Vec::new(),
        endpoint: None,
        runs_on: None,
    };
    if let Some(children) = node.children() {
        for child in children.nodes() {
            match name(child) {
                "platforms" => {
                    if let Some(v) = read_platforms(child, diags) {
                        b.platforms.extend(v.value);
                    }
                }
                "endpoint" => {
                    if let Some(e) =
                        one_string(child, "an endpoint, e.g. \"ssh://user@host\"", diags)
                    {
                        set_once(&mut b.endpoint, e, child, diags);
                    }
                }
                "runs-on" => {
                    if let Some(r) =
                        one_string(child, "a CI runner label, e.g. \"ubuntu-24.04-arm\"", diags)
                    {
                        set_once(&mut b.runs_on, r, child, diags);
                    }
                }
                other => unknown_node(
                    child,
                    other,
                    &["platforms", "endpoint", "runs-on"],
                    "`builder`",
                    diags,
                ),
            }
        }
    }
    if b.platforms.is_empty() {
        diags.push(
            Diag::error(
                head_span(node),
                format!("builder `{}` has no platforms", b.name.value),
            )
            .label("no `platforms`")
            .help("add `platforms \"linux/arm64\"` in its block"),
        );
    }
    Some(b)
}
