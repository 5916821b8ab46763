//! The manifest as written: KDL nodes mapped to typed, spanned structures.
//! Nothing is resolved here (no cascade, no interpolation); every node and
//! property name is checked, and all errors of the file are collected.

use kdl::{KdlDocument, KdlNode, KdlValue};
use miette::SourceSpan;

use super::kdl_node::{
    Spanned, args, check_props, entry_bool, entry_string, forbid_children, head_span, name, prop,
    string_args,
};
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

pub type Pair = (Spanned<String>, Spanned<String>);

#[derive(Clone, Debug)]
pub struct RawFrom {
    pub reference: Spanned<String>,
    pub arg: Option<Spanned<String>>,
}

/// Where a build secret comes from (`secret ID env=VAR` or `secret ID file=PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(String),
}

/// `secret "npm" env="NPM_TOKEN"`: a secret the builder mounts (`RUN --mount=type=secret,id=npm`).
/// Only its id and where it comes from are ever written down; mab never reads its value.
#[derive(Clone, Debug)]
pub struct RawSecret {
    pub id: Spanned<String>,
    pub source: Spanned<SecretSource>,
}

#[derive(Clone, Debug)]
pub enum RawCache {
    Disabled,
    Repo {
        repo: Spanned<String>,
        mode: Option<Spanned<String>>,
    },
}

/// Image settings as written in one block (`defaults`, `profile`, `image`, `version` or `variant`).
#[derive(Clone, Debug, Default)]
pub struct RawSettings {
    pub context: Option<Spanned<String>>,
    pub dockerfile: Option<Spanned<String>>,
    pub target: Option<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
    pub args: Vec<Pair>,
    pub labels: Vec<Pair>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub froms: Vec<RawFrom>,
    pub test: Option<Spanned<Vec<String>>>,
    pub cache: Option<Spanned<RawCache>>,
    /// `context DIR outside=#true`: the manifest opts in to a context outside its directory.
    pub outside: Option<Spanned<bool>>,
    /// `attest "type=provenance,mode=max" "type=sbom"`; `attest #false` is an empty list.
    pub attest: Option<Spanned<Vec<Spanned<String>>>>,
    pub secrets: Vec<RawSecret>,
}

#[derive(Clone, Debug)]
pub struct RawVariant {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub suffix: Option<Spanned<String>>,
    pub settings: RawSettings,
}

#[derive(Clone, Debug)]
pub struct RawVersion {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub settings: RawSettings,
    pub variants: Vec<RawVariant>,
}

#[derive(Clone, Debug)]
pub struct RawImage {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub settings: RawSettings,
    pub versions: Vec<RawVersion>,
    pub variants: Vec<RawVariant>,
}

#[derive(Clone, Debug)]
pub struct RawProfile {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub default: Option<Spanned<bool>>,
    pub registry: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub backend: Option<Spanned<String>>,
    pub push: Option<Spanned<bool>>,
    pub tags: Vec<Spanned<String>>,
    pub inherits: Option<Spanned<String>>,
    pub vars: Vec<Pair>,
    pub settings: RawSettings,
}

#[derive(Clone, Debug)]
pub struct RawMirror {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub from: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub tags: Vec<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Clone, Debug)]
pub struct RawBuilder {
    pub name: Spanned<String>,
    pub span: SourceSpan,
    pub platforms: Vec<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    /// The CI runner label of this builder (`runs-on` of a GitHub Actions job).
    pub runs_on: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct RawManifest {
    pub defaults: RawSettings,
    pub profiles: Vec<RawProfile>,
    pub vars: Vec<Pair>,
    pub mirrors: Vec<RawMirror>,
    pub images: Vec<RawImage>,
    pub builders: Vec<RawBuilder>,
}

/// Settings every image-like block accepts.
const IMAGE_SETTINGS: &[&str] = &[
    "context",
    "dockerfile",
    "platforms",
    "target",
    "arg",
    "label",
    "tag",
    "from",
    "test",
    "cache",
    "attest",
    "secret",
];
const TOP_LEVEL: &[&str] = &["defaults", "profile", "var", "mirror", "image", "builder"];
const PROFILE_ONLY: &[&str] = &["registry", "backend", "push", "inherits", "var"];
const PROFILE_SETTINGS: &[&str] = &[
    "registry",
    "backend",
    "push",
    "tag",
    "platforms",
    "arg",
    "label",
    "cache",
    "attest",
    "secret",
    "inherits",
    "var",
];

/// Which block a setting is read in; decides what is allowed there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Defaults,
    Image,
    Version,
    Variant,
}

impl Block {
    fn name(self) -> &'static str {
        match self {
            Block::Defaults => "defaults",
            Block::Image => "image",
            Block::Version => "version",
            Block::Variant => "variant",
        }
    }

    fn allowed(self) -> Vec<&'static str> {
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

fn unknown_node(
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
fn read_name(node: &KdlNode, what: &str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
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

fn read_pair(node: &KdlNode, meaning: &str, diags: &mut Diagnostics) -> Option<Pair> {
    check_props(node, &[], diags);
    forbid_children(node, diags);
    let mut a = string_args(node, 2, Some(2), meaning, true, diags)?;
    let v = a.pop()?;
    let k = a.pop()?;
    Some((k, v))
}

/// A build-arg or environment variable name: letters, digits and `_`, not starting with a digit.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A build-arg name that BuildKit's `SecretsUsedInArgOrEnv` check would flag: one of its
/// `_`-separated words names a credential.
fn looks_secret(name: &str) -> bool {
    name.split('_').any(|w| {
        matches!(
            w.to_ascii_lowercase().as_str(),
            "apikey"
                | "auth"
                | "credential"
                | "credentials"
                | "key"
                | "password"
                | "passwd"
                | "pword"
                | "secret"
                | "token"
        )
    })
}

/// `secret "ID" env="VAR"` or `secret "ID" file="PATH"`. Each string reaches the builder inside
/// a comma-separated `--secret` option, so each is checked against its grammar here.
fn read_secret(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawSecret> {
    check_props(node, &["env", "file"], diags);
    forbid_children(node, diags);
    let id = string_args(node, 1, Some(1), "a secret id", false, diags)?.pop()?;
    let ok_id = !id.value.is_empty()
        && id.value.len() <= 128
        && id
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !id.value.starts_with('.');
    if !ok_id {
        diags.push(
            Diag::error(
                id.span,
                format!("invalid secret id `{}`", id.value.escape_debug()),
            )
            .label("letters, digits, `_`, `-` and `.`, not starting with `.`")
            .help("the id the Dockerfile mounts: `RUN --mount=type=secret,id=npm …`"),
        );
    }
    let env = prop(node, "env").and_then(|e| entry_string(e, "`env`", false, diags));
    let file = prop(node, "file").and_then(|e| entry_string(e, "`file`", false, diags));
    let source = match (env, file) {
        (Some(e), None) => {
            if !is_identifier(&e.value) {
                diags.push(
                    Diag::error(
                        e.span,
                        format!(
                            "invalid environment variable name `{}`",
                            e.value.escape_debug()
                        ),
                    )
                    .label("letters, digits and `_`, not starting with a digit"),
                );
                return None;
            }
            Spanned::new(SecretSource::Env(e.value), e.span)
        }
        (None, Some(f)) => {
            if f.value.trim().is_empty()
                || f.value
                    .chars()
                    .any(|c| matches!(c, ',' | '"' | '\'') || c.is_control())
            {
                diags.push(
                    Diag::error(
                        f.span,
                        format!("invalid secret file `{}`", f.value.escape_debug()),
                    )
                    .label("a path without commas, quotes or control characters")
                    .help("the builders read `--secret id=ID,src=PATH` as comma-separated fields"),
                );
                return None;
            }
            Spanned::new(SecretSource::File(f.value), f.span)
        }
        _ => {
            diags.push(
                Diag::error(head_span(node), "`secret` needs exactly one of `env=` or `file=`")
                    .label("where the value comes from")
                    .help("write `secret \"npm\" env=\"NPM_TOKEN\"` or `secret \"npm\" file=\"/run/secrets/npmrc\"`"),
            );
            return None;
        }
    };
    ok_id.then_some(RawSecret { id, source })
}

/// One string argument, which must not be empty or blank (an empty `target`, `context` or
/// `runs-on` would reach a command or a workflow as nothing at all).
fn one_string(node: &KdlNode, meaning: &str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    check_props(node, &[], diags);
    forbid_children(node, diags);
    let v = string_args(node, 1, Some(1), meaning, false, diags)?.pop()?;
    if v.value.trim().is_empty() {
        diags.push(
            Diag::error(v.span, format!("`{}` is empty", name(node)))
                .label(format!("expected {meaning}")),
        );
        return None;
    }
    Some(v)
}

fn set_once<T>(
    slot: &mut Option<Spanned<T>>,
    value: Spanned<T>,
    node: &KdlNode,
    diags: &mut Diagnostics,
) {
    if let Some(prev) = slot {
        diags.push(
            Diag::error(
                node.name().span(),
                format!("`{}` is set twice in the same block", name(node)),
            )
            .label("set again here")
            .also(prev.span, "first set here")
            .help("keep one of them"),
        );
        return;
    }
    *slot = Some(value);
}

fn read_platforms(
    node: &KdlNode,
    diags: &mut Diagnostics,
) -> Option<Spanned<Vec<Spanned<String>>>> {
    check_props(node, &[], diags);
    forbid_children(node, diags);
    let list = string_args(
        node,
        1,
        None,
        "one or more platforms such as \"linux/amd64\"",
        false,
        diags,
    )?;
    Some(Spanned::new(list, head_span(node)))
}

/// Read one image setting into `s`; returns false if `node` is not an image setting.
fn read_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) -> bool {
    match name(node) {
        "context" => {
            check_props(node, &["outside"], diags);
            forbid_children(node, diags);
            if let Some(v) = string_args(
                node,
                1,
                Some(1),
                "a directory, relative to the manifest",
                false,
                diags,
            )
            .and_then(|mut v| v.pop())
            {
                if v.value.trim().is_empty() {
                    diags.push(
                        Diag::error(v.span, "`context` is empty")
                            .label("expected a directory; `.` is the manifest's own"),
                    );
                    return true;
                }
                set_once(&mut s.context, v, node, diags);
                s.outside = prop(node, "outside").and_then(|e| entry_bool(e, "`outside`", diags));
            }
        }
        "dockerfile" => {
            if let Some(v) = one_string(node, "a file name, relative to the context", diags) {
                set_once(&mut s.dockerfile, v, node, diags);
            }
        }
        "target" => {
            if let Some(v) = one_string(node, "a Dockerfile stage name", diags) {
                set_once(&mut s.target, v, node, diags);
            }
        }
        "platforms" => {
            if let Some(v) = read_platforms(node, diags) {
                set_once(&mut s.platforms, v, node, diags);
            }
        }
        "arg" => {
            if let Some(p) = read_pair(node, "a build-arg name and its value", diags) {
                // `--build-arg NAME=VALUE`: a name with `=` would change what the builder reads.
                let name = &p.0.value;
                if !is_identifier(name) {
                    diags.push(
                        Diag::error(p.0.span, format!("invalid build-arg name `{}`", name.escape_debug()))
                            .label("letters, digits and `_`, not starting with a digit")
                            .help("write it as the Dockerfile's `ARG` declares it, e.g. `arg \"BASE_IMAGE\" \"…\"`"),
                    );
                } else if let Some(first) = s.args.iter().find(|(k, _)| k.value == *name) {
                    diags.push(
                        Diag::error(
                            p.0.span,
                            format!("`arg {name}` is set twice in the same block"),
                        )
                        .label("set again here")
                        .also(first.0.span, "first set here")
                        .help("keep one of the two"),
                    );
                } else {
                    if looks_secret(name) {
                        diags.push(
                            Diag::warning(p.0.span, format!("build arg `{name}` looks like a secret"))
                                .label("its value is shown by `mab plan`, kept in logs and recorded by buildx provenance")
                                .help(format!(
                                    "pass secrets as `secret \"{}\" env=\"{name}\"` and mount them: `RUN --mount=type=secret,id={}`",
                                    name.to_ascii_lowercase(),
                                    name.to_ascii_lowercase()
                                )),
                        );
                    }
                    s.args.push(p);
                }
            }
        }
        "label" => {
            if let Some(p) = read_pair(node, "a label name and its value", diags) {
                let name = &p.0.value;
                if name.is_empty()
                    || name.contains('=')
                    || name.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    diags.push(
                        Diag::error(
                            p.0.span,
                            format!("invalid label name `{}`", name.escape_debug()),
                        )
                        .label("non-empty, without `=`, spaces or control characters")
                        .help("e.g. `label \"org.opencontainers.image.source\" \"…\"`"),
                    );
                } else if let Some(first) = s.labels.iter().find(|(k, _)| k.value == *name) {
                    diags.push(
                        Diag::error(
                            p.0.span,
                            format!("`label {name}` is set twice in the same block"),
                        )
                        .label("set again here")
                        .also(first.0.span, "first set here")
                        .help("keep one of the two"),
                    );
                } else {
                    s.labels.push(p);
                }
            }
        }
        "tag" => {
            check_props(node, &[], diags);
            forbid_children(node, diags);
            if let Some(t) = string_args(node, 1, None, "one or more tags", false, diags) {
                s.tags.get_or_insert_with(Vec::new).extend(t);
            }
        }
        "from" => {
            check_props(node, &["arg"], diags);
            forbid_children(node, diags);
            let reference = string_args(
                node,
                1,
                Some(1),
                "a reference: IMAGE:VERSION or mirror:NAME:TAG",
                false,
                diags,
            )
            .and_then(|mut v| v.pop());
            let arg = prop(node, "arg").and_then(|e| entry_string(e, "`arg`", false, diags));
            if let Some(reference) = reference {
                s.froms.push(RawFrom { reference, arg });
            }
        }
        "test" => {
            check_props(node, &[], diags);
            forbid_children(node, diags);
            if let Some(cmd) = string_args(
                node,
                1,
                None,
                "a command: one string run by `sh -c`, or argv words",
                false,
                diags,
            ) {
                if let Some(empty) = cmd.iter().find(|c| c.value.trim().is_empty())
                    && (cmd.len() == 1 || cmd[0].span == empty.span)
                {
                    diags.push(
                        Diag::error(empty.span, "an empty test command")
                            .label("nothing to run")
                            .help("write the command, e.g. `test \"my-tool --version\"`, or remove `test`"),
                    );
                    return true;
                }
                let v = Spanned::new(cmd.into_iter().map(|c| c.value).collect(), head_span(node));
                set_once(&mut s.test, v, node, diags);
            }
        }
        "secret" => {
            if let Some(secret) = read_secret(node, diags) {
                if let Some(first) = s.secrets.iter().find(|x| x.id.value == secret.id.value) {
                    diags.push(
                        Diag::error(
                            secret.id.span,
                            format!(
                                "`secret {}` is set twice in the same block",
                                secret.id.value
                            ),
                        )
                        .label("set again here")
                        .also(first.id.span, "first set here")
                        .help("keep one of the two"),
                    );
                } else {
                    s.secrets.push(secret);
                }
            }
        }
        "attest" => {
            check_props(node, &[], diags);
            forbid_children(node, diags);
            let entries: Vec<_> = args(node).collect();
            let value = match entries.as_slice() {
                [e] if matches!(e.value(), KdlValue::Bool(false)) => Some(Vec::new()),
                [_, ..] if entries.iter().all(|e| e.value().is_string()) => entries
                    .iter()
                    .map(|e| entry_string(e, "`attest`", false, diags))
                    .collect(),
                _ => {
                    diags.push(
                        Diag::error(head_span(node), "`attest` takes #false or attestation requests")
                            .label("expected #false or strings")
                            .help("write `attest \"type=provenance,mode=max\" \"type=sbom\"`, or `attest #false` for none"),
                    );
                    None
                }
            };
            if let Some(v) = value {
                set_once(&mut s.attest, Spanned::new(v, head_span(node)), node, diags);
            }
        }
        "cache" => {
            check_props(node, &["mode"], diags);
            forbid_children(node, diags);
            let entries: Vec<_> = args(node).collect();
            let value = match entries.as_slice() {
                [e] if matches!(e.value(), KdlValue::Bool(false)) => Some(RawCache::Disabled),
                [e] if e.value().is_string() => {
                    entry_string(e, "`cache`", false, diags).map(|repo| RawCache::Repo {
                        repo,
                        mode: prop(node, "mode")
                            .and_then(|m| entry_string(m, "`mode`", false, diags)),
                    })
                }
                _ => {
                    diags.push(
                        Diag::error(head_span(node), "`cache` takes #false or a cache repository")
                            .label("expected one argument")
                            .help("write `cache #false` to disable it, or `cache \"${registry}/cache/${image}\" mode=\"max\"`"),
                    );
                    None
                }
            };
            if let Some(v) = value {
                set_once(&mut s.cache, Spanned::new(v, head_span(node)), node, diags);
            }
        }
        _ => return false,
    }
    true
}

/// Read every child of `node` as settings of `block`; `extra` handles the block's own children.
fn read_settings_block(
    node: &KdlNode,
    block: Block,
    s: &mut RawSettings,
    diags: &mut Diagnostics,
    extra: &mut dyn FnMut(&KdlNode, &mut Diagnostics) -> bool,
) {
    let Some(children) = node.children() else {
        return;
    };
    let place = format!("`{}`", block.name());
    for child in children.nodes() {
        if !read_setting(child, s, diags) && !extra(child, diags) {
            unknown_node(child, name(child), &block.allowed(), &place, diags);
        }
    }
}

/// Single-valued settings a `version` or `variant` may set as properties on its own line.
fn read_inline_props(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
    for (key, slot) in [
        ("dockerfile", &mut s.dockerfile),
        ("context", &mut s.context),
        ("target", &mut s.target),
    ] {
        if let Some(e) = prop(node, key) {
            *slot = entry_string(e, &format!("`{key}`"), false, diags);
        }
    }
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
    let mut p = RawProfile {
        name: pname,
        span: head_span(node),
        default: prop(node, "default").and_then(|e| entry_bool(e, "`default`", diags)),
        registry: None,
        insecure: None,
        backend: None,
        push: None,
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
            "platforms" | "arg" | "label" | "cache" | "attest" | "secret" => {
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
