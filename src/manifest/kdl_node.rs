//! Typed access to KDL nodes; every failure is a diagnostic on the offending span.

use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use crate::diag::{Diag, Diagnostics};
use crate::suggest;

/// A value and the span of the manifest text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: SourceSpan) -> Self {
        Spanned { value, span }
    }
}

impl Spanned<String> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// A span covering `a` through the end of `b`.
pub fn join(a: SourceSpan, b: SourceSpan) -> SourceSpan {
    let start = a.offset().min(b.offset());
    let end = (a.offset() + a.len()).max(b.offset() + b.len());
    SourceSpan::from(start..end)
}

/// The span of a node's first line (name and entries), not its children block.
pub fn head_span(node: &KdlNode) -> SourceSpan {
    node.entries()
        .last()
        .map_or(node.name().span(), |e| join(node.name().span(), e.span()))
}

pub fn name(node: &KdlNode) -> &str {
    node.name().value()
}

pub fn args(node: &KdlNode) -> impl Iterator<Item = &KdlEntry> {
    node.entries().iter().filter(|e| e.name().is_none())
}

pub fn prop<'a>(node: &'a KdlNode, key: &str) -> Option<&'a KdlEntry> {
    node.entries()
        .iter()
        .rev()
        .find(|e| e.name().is_some_and(|n| n.value() == key))
}

/// Report every property whose name is not in `allowed`.
pub fn check_props(node: &KdlNode, allowed: &[&str], diags: &mut Diagnostics) {
    for entry in node.entries() {
        let Some(key) = entry.name() else { continue };
        if allowed.contains(&key.value()) {
            continue;
        }
        let help = match allowed {
            [] => format!("`{}` takes no properties", name(node)),
            _ => suggest::did_you_mean(key.value(), allowed.iter().copied()).unwrap_or_else(|| {
                format!(
                    "`{}` accepts the properties {}",
                    name(node),
                    suggest::list(allowed.iter().copied())
                )
            }),
        };
        diags.push(
            Diag::error(
                entry.span(),
                format!("unknown property `{}` on `{}`", key.value(), name(node)),
            )
            .label("unknown property")
            .help(help),
        );
    }
}

pub fn forbid_children(node: &KdlNode, diags: &mut Diagnostics) {
    if let Some(children) = node.children() {
        diags.push(
            Diag::error(children.span(), format!("`{}` takes no block", name(node)))
                .label("unexpected block")
                .help("remove the `{ … }` block"),
        );
    }
}

/// A scalar value written as a string; numbers and booleans are accepted where `lenient`.
pub fn entry_string(
    entry: &KdlEntry,
    what: &str,
    lenient: bool,
    diags: &mut Diagnostics,
) -> Option<Spanned<String>> {
    let text = match entry.value() {
        KdlValue::String(s) => return Some(Spanned::new(s.clone(), entry.span())),
        KdlValue::Integer(i) if lenient => i.to_string(),
        KdlValue::Float(_) if lenient => {
            // The written text keeps `3.10` intact where the float would not.
            let repr = entry.format().map(|f| f.value_repr.trim().to_owned());
            repr.filter(|r| !r.is_empty())
                .unwrap_or_else(|| entry.value().to_string())
        }
        KdlValue::Bool(b) if lenient => b.to_string(),
        other => {
            let quoted = other.to_string();
            diags.push(
                Diag::error(entry.span(), format!("{what} must be a string"))
                    .label(format!("found {}", value_kind(other)))
                    .help(format!(
                        "write it in quotes: \"{}\"",
                        quoted.trim_start_matches('#')
                    )),
            );
            return None;
        }
    };
    Some(Spanned::new(text, entry.span()))
}

pub fn entry_bool(entry: &KdlEntry, what: &str, diags: &mut Diagnostics) -> Option<Spanned<bool>> {
    match entry.value() {
        KdlValue::Bool(b) => Some(Spanned::new(*b, entry.span())),
        other => {
            diags.push(
                Diag::error(entry.span(), format!("{what} must be #true or #false"))
                    .label(format!("found {}", value_kind(other))),
            );
            None
        }
    }
}

pub fn value_kind(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a number",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

/// The node's positional arguments as strings, checking their count.
pub fn string_args(
    node: &KdlNode,
    min: usize,
    max: Option<usize>,
    meaning: &str,
    lenient: bool,
    diags: &mut Diagnostics,
) -> Option<Vec<Spanned<String>>> {
    let entries: Vec<&KdlEntry> = args(node).collect();
    let n = entries.len();
    let expected = match (min, max) {
        (a, Some(b)) if a == b => format!("{a}"),
        (a, None) => format!("at least {a}"),
        (a, Some(b)) => format!("{a} to {b}"),
    };
    if n < min {
        diags.push(
            Diag::error(head_span(node), format!("`{}` needs {meaning}", name(node))).label(
                format!("expected {expected} argument{}, found {n}", plural(min)),
            ),
        );
        return None;
    }
    if let Some(max) = max.filter(|m| n > *m) {
        let extra = join(entries[max].span(), entries[n - 1].span());
        diags.push(
            Diag::error(extra, format!("too many arguments to `{}`", name(node)))
                .label(format!("expected {expected}, found {n}"))
                .help(format!("`{}` takes {meaning}", name(node))),
        );
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut ok = true;
    for e in entries {
        match entry_string(
            e,
            &format!("an argument of `{}`", name(node)),
            lenient,
            diags,
        ) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
