//! The settings an image, version, variant, profile or `defaults` block may hold, read and
//! checked one node at a time (`arg`, `label`, `tag`, `cache`, `secret`, `platforms`, …).

use kdl::{KdlNode, KdlValue};

use super::kdl_node::{
    Spanned, args, check_props, entry_bool, entry_string, forbid_children, head_span, name, prop,
    string_args,
};
use super::raw::*;
use super::syntax::*;
use crate::diag::{Diag, Diagnostics};
use crate::manifest::model::AnnotationLevel;

/// A build-arg name that BuildKit's `SecretsUsedInArgOrEnv` check would flag: one of its
/// `_`-separated words names a credential.
pub(super) fn looks_secret(name: &str) -> bool {
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
pub(super) fn read_secret(node: &KdlNode, diags: &mut Diagnostics) -> Option<RawSecret> {
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
pub(super) fn one_string(
    node: &KdlNode,
    meaning: &str,
    diags: &mut Diagnostics,
) -> Option<Spanned<String>> {
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

pub(super) fn set_once<T>(
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

pub(super) fn read_platforms(
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
pub(super) fn read_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) -> bool {
    match name(node) {
        "context" => context_setting(node, s, diags),
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
        "arg" => arg_setting(node, s, diags),
        "label" => label_setting(node, s, diags),
        "annotation" => annotation_setting(node, s, diags),
        "tag" => {
            check_props(node, &[], diags);
            forbid_children(node, diags);
            if let Some(t) = string_args(node, 1, None, "one or more tags", false, diags) {
                s.tags.get_or_insert_with(Vec::new).extend(t);
            }
        }
        "from" => from_setting(node, s, diags),
        "test" => test_setting(node, s, diags),
        "secret" => secret_setting(node, s, diags),
        "attest" => attest_setting(node, s, diags),
        "cache" => cache_setting(node, s, diags),
        "rebuild-after" => rebuild_after_setting(node, s, diags),
        _ => return false,
    }
    true
}

/// `context`: the build context (`outside=#true` may leave the manifest's directory).
fn context_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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
            return;
        }
        set_once(&mut s.context, v, node, diags);
        s.outside = prop(node, "outside").and_then(|e| entry_bool(e, "`outside`", diags));
    }
}

/// `arg`: a build arg: a valid, unique name; a warning when the name looks like a secret.
fn arg_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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

/// `label`: an image label: a valid, unique name.
fn label_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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

/// Why `key` cannot be an annotation key, if it cannot: it reaches `--annotation KEY=VALUE`
/// (buildx reads a `TYPE:` prefix before the key) and mab's own `io.mab.*` keys.
pub(super) fn annotation_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty()
        || !key.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        Some("letters, digits, `.`, `_`, `-` and `/`, starting with a letter or digit")
    } else if key.starts_with("io.mab.") {
        Some("`io.mab.*` annotations are mab's own")
    } else {
        None
    }
}

/// `annotation "KEY" "VALUE" level="index"|"manifest"|"both"`: index annotations (the
/// default) are written at merge and are no input; manifest ones are on every platform's image.
fn annotation_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
    check_props(node, &["level"], diags);
    forbid_children(node, diags);
    let Some(mut a) = string_args(
        node,
        2,
        Some(2),
        "an annotation key and its value",
        true,
        diags,
    ) else {
        return;
    };
    let (Some(value), Some(key)) = (a.pop(), a.pop()) else {
        return;
    };
    let level = match prop(node, "level").and_then(|e| entry_string(e, "`level`", false, diags)) {
        None => AnnotationLevel::Index,
        Some(l) => match AnnotationLevel::parse(&l.value) {
            Some(level) => level,
            None => {
                diags.push(
                    Diag::error(l.span, format!("unknown annotation level `{}`", l.value.escape_debug()))
                        .label("expected \"index\", \"manifest\" or \"both\"")
                        .help("`index` (the default) is written on the image index at merge; `manifest` on every platform's image, where it is an input of the build"),
                );
                return;
            }
        },
    };
    if let Some(problem) = annotation_key_problem(&key.value) {
        diags.push(
            Diag::error(
                key.span,
                format!("invalid annotation key `{}`", key.value.escape_debug()),
            )
            .label(problem)
            .help("e.g. `annotation \"org.opencontainers.image.description\" \"…\"`"),
        );
    } else if let Some(first) = s.annotations.iter().find(|a| a.key.value == key.value) {
        diags.push(
            Diag::error(
                key.span,
                format!("`annotation {}` is set twice in the same block", key.value),
            )
            .label("set again here")
            .also(first.key.span, "first set here")
            .help("keep one of the two; `level=\"both\"` writes it on the index and the manifests"),
        );
    } else {
        s.annotations.push(RawAnnotation { key, value, level });
    }
}

/// `rebuild-after "7d"`: a published image older than this is rebuilt (`Nh`, `Nd` or `Nw`);
/// `rebuild-after #false` turns an inherited one off.
fn rebuild_after_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
    check_props(node, &[], diags);
    forbid_children(node, diags);
    let entries: Vec<_> = args(node).collect();
    let value = match entries.as_slice() {
        [e] if matches!(e.value(), KdlValue::Bool(false)) => None,
        [e] if e.value().is_string() => {
            let text = e.value().as_string().unwrap_or_default();
            match parse_age(text) {
                Some(seconds) => Some((seconds, text.to_owned())),
                None => {
                    diags.push(
                        Diag::error(e.span(), format!("`{}` is not an age", text.escape_debug()))
                            .label("a whole number of hours, days or weeks")
                            .help("e.g. `rebuild-after \"7d\"` (also `36h`, `2w`), or `rebuild-after #false`"),
                    );
                    return;
                }
            }
        }
        _ => {
            diags.push(
                Diag::error(head_span(node), "`rebuild-after` takes one age")
                    .label("e.g. \"7d\"")
                    .help("`rebuild-after \"7d\"` (also `36h`, `2w`), or `rebuild-after #false`"),
            );
            return;
        }
    };
    set_once(
        &mut s.rebuild_after,
        Spanned::new(value, head_span(node)),
        node,
        diags,
    );
}

/// `36h`, `7d`, `2w` → seconds (at least one hour, at most ten years).
pub fn parse_age(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let n = &text[..text.len() - 1];
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = n.parse::<u64>().ok()?.checked_mul(unit)?;
    (seconds > 0 && seconds <= 10 * 366 * 86_400).then_some(seconds)
}

/// `from`: a base: `IMAGE:VERSION` or `mirror:NAME:TAG`, and the build arg that receives it.
fn from_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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

/// `test`: the smoke test: one string run by `sh -c`, or argv words.
fn test_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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
            return;
        }
        let v = Spanned::new(cmd.into_iter().map(|c| c.value).collect(), head_span(node));
        set_once(&mut s.test, v, node, diags);
    }
}

/// `secret`: a build secret, unique by id.
fn secret_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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

/// `attest`: buildx attestation requests, or `#false`.
fn attest_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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

/// `cache`: the registry cache repository, or `#false`.
fn cache_setting(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
    check_props(node, &["mode"], diags);
    forbid_children(node, diags);
    let entries: Vec<_> = args(node).collect();
    let value = match entries.as_slice() {
        [e] if matches!(e.value(), KdlValue::Bool(false)) => Some(RawCache::Disabled),
        [e] if e.value().is_string() => {
            entry_string(e, "`cache`", false, diags).map(|repo| RawCache::Repo {
                repo,
                mode: prop(node, "mode").and_then(|m| entry_string(m, "`mode`", false, diags)),
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

/// Read every child of `node` as settings of `block`; `extra` handles the block's own children.
pub(super) fn read_settings_block(
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
pub(super) fn read_inline_props(node: &KdlNode, s: &mut RawSettings, diags: &mut Diagnostics) {
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
