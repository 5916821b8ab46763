//! What `mab check` reads of a Dockerfile — its `FROM` and `ARG` instructions and stage names —
//! read the way BuildKit's Dockerfile frontend reads a file: a byte-order mark, parser
//! directives (`# escape=`), line continuations with comment lines inside them, and heredocs
//! (`RUN <<EOF`, `COPY <<-"EOT" /x`), whose bodies are never taken for instructions. It never
//! fails: what it does not understand is not an instruction it needs.
//!
//! (`dockerfile-parser`, used before, predates heredocs and multi-name `ARG` and refused whole
//! files BuildKit builds; no maintained crate follows the current frontend syntax.)

use std::ops::Range;

/// `FROM [--platform=…] IMAGE [AS NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// Where the image reference is written (byte offsets into the text).
    pub image_span: Range<usize>,
    pub alias: Option<String>,
    /// `--platform=…` as written (`$BUILDPLATFORM` for a stage that runs where the build does).
    pub platform: Option<String>,
}

/// One name of an `ARG` instruction (`ARG A=1 B` declares two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub default: Option<String>,
    /// Before the first `FROM`: usable in `FROM` lines.
    pub global: bool,
    pub span: Range<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dockerfile {
    pub froms: Vec<From>,
    pub args: Vec<Arg>,
}

impl Dockerfile {
    pub fn global_arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.global && a.name == name)
    }

    pub fn stages(&self) -> impl Iterator<Item = &str> {
        self.froms.iter().filter_map(|f| f.alias.as_deref())
    }
}

/// Physical lines with their byte offsets.
fn lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        out.push((at, l.trim_end_matches(['\n', '\r'])));
        at += l.len();
    }
    out
}

/// The heredoc delimiters an instruction opens: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`, with
/// whether leading tabs are stripped from its lines.
fn heredocs(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("<<") {
        rest = &rest[i + 2..];
        let (strip, r) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (quote, r) = match r.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &r[1..]),
            _ => (None, r),
        };
        let word: String = r
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            continue;
        }
        let after = &r[word.len()..];
        if let Some(q) = quote
            && !after.starts_with(q)
        {
            continue;
        }
        out.push((word, strip));
        rest = after;
    }
    out
}

pub fn parse(text: &str) -> Dockerfile {
    let mut out = Dockerfile::default();
    let all = lines(text);
    let mut escape = '\\';
    let mut i = 0;
    let mut directives = true;
    while i < all.len() {
        let (start, raw) = all[i];
        // A byte-order mark before the first line is not part of it.
        let line = if start == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let trimmed = line.trim();
        if directives {
            if let Some(c) = directive(trimmed) {
                escape = c.unwrap_or(escape);
                i += 1;
                continue;
            }
            directives = false;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let first_line = start + (raw.len() - line.len())..start + raw.len();
        let logical = instruction(&all, &mut i, line, escape);
        let (keyword, args) = logical
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((logical.trim(), ""));
        let keyword = keyword.to_ascii_uppercase();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            skip_heredocs(&all, &mut i, args);
        }
        match keyword.as_str() {
            "FROM" => from(&mut out, text, args, first_line),
            "ARG" => arg(&mut out, args, first_line),
            _ => {}
        }
    }
    out
}

/// A parser directive (`# name=value`): `Some` of the escape character it sets, if it is
/// `# escape=`; `None` when the line is not a directive.
fn directive(trimmed: &str) -> Option<Option<char>> {
    let (k, v) = trimmed.strip_prefix('#')?.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(if k.eq_ignore_ascii_case("escape") {
        v.trim().chars().next()
    } else {
        None
    })
}

/// One instruction starting at `all[*i]` (whose text is `line`): its lines joined where they
/// end in the escape character; comment and empty lines inside a continuation are dropped, as
/// BuildKit drops them. `*i` ends past it.
fn instruction(all: &[(usize, &str)], i: &mut usize, line: &str, escape: char) -> String {
    let mut logical = String::new();
    let mut current = line.to_owned();
    loop {
        let t = current.trim_end();
        let Some(head) = t.strip_suffix(escape) else {
            logical.push_str(t);
            *i += 1;
            return logical;
        };
        logical.push_str(head);
        logical.push(' ');
        *i += 1;
        while *i < all.len() {
            let t = all[*i].1.trim();
            if !(t.is_empty() || t.starts_with('#')) {
                break;
            }
            *i += 1;
        }
        match all.get(*i) {
            Some((_, next)) => current = (*next).to_owned(),
            None => return logical,
        }
    }
}

/// Past the bodies of the heredocs an instruction with `args` opens.
fn skip_heredocs(all: &[(usize, &str)], i: &mut usize, args: &str) {
    for (word, strip) in heredocs(args) {
        while *i < all.len() {
            let body = all[*i].1;
            let body = if strip {
                body.trim_start_matches('\t')
            } else {
                body
            };
            *i += 1;
            if body == word {
                break;
            }
        }
    }
}

/// `FROM [--platform=…] IMAGE [AS NAME]`, written on the line at `first_line`.
fn from(out: &mut Dockerfile, text: &str, args: &str, first_line: Range<usize>) {
    let platform = args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--platform="))
        .map(str::to_owned);
    let words: Vec<&str> = args
        .split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .collect();
    let Some(image) = words.first() else {
        return;
    };
    let alias = match words.get(1..3) {
        Some([as_, name]) if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
        _ => None,
    };
    let line_text = &text[first_line.clone()];
    let image_span = match line_text.find(image) {
        Some(at) => first_line.start + at..first_line.start + at + image.len(),
        None => first_line,
    };
    out.froms.push(From {
        image: (*image).to_owned(),
        image_span,
        alias,
        platform,
    });
}

/// `ARG NAME[=DEFAULT] …`: one entry per name.
fn arg(out: &mut Dockerfile, args: &str, span: Range<usize>) {
    let words =
        shlex::split(args).unwrap_or_else(|| args.split_whitespace().map(str::to_owned).collect());
    for w in words {
        let (name, default) = match w.split_once('=') {
            Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
            None => (w, None),
        };
        if name.is_empty() {
            continue;
        }
        out.args.push(Arg {
            name,
            default,
            global: out.froms.is_empty(),
            span: span.clone(),
        });
    }
}

/// The repository path of an image reference, without registry, tag or digest, and whether a
/// registry host was named (`registry.example.com/a/b:1` → `a/b`).
pub fn repository(reference: &str) -> (Option<&str>, &str) {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let no_tag = match no_digest.rsplit_once(':') {
        Some((head, tag)) if !tag.contains('/') => head,
        _ => no_digest,
    };
    match no_tag.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, no_tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_syntax_is_read() {
        let text = "\u{feff}# syntax=docker/dockerfile:1\n\
            ARG BASE=alpine:3.20 EXTRA\n\
            FROM --platform=$BUILDPLATFORM ${BASE} AS build\n\
            RUN <<EOF\n\
            FROM not-an-instruction\n\
            EOF\n\
            COPY <<-\"EOT\" /etc/x\n\
            \tARG NOT_AN_ARG\n\
            \tEOT\n\
            RUN apk add \\\n\
            # a comment inside a continuation\n\
              curl\n\
            from registry.example.com:5000/team/runtime:1@sha256:abc as final\n\
            ARG LATE\n";
        let d = parse(text);
        let images: Vec<&str> = d.froms.iter().map(|f| f.image.as_str()).collect();
        assert_eq!(
            images,
            [
                "${BASE}",
                "registry.example.com:5000/team/runtime:1@sha256:abc"
            ]
        );
        assert_eq!(d.stages().collect::<Vec<_>>(), ["build", "final"]);
        let args: Vec<(&str, Option<&str>, bool)> = d
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.default.as_deref(), a.global))
            .collect();
        assert_eq!(
            args,
            [
                ("BASE", Some("alpine:3.20"), true),
                ("EXTRA", None, true),
                ("LATE", None, false)
            ]
        );
        assert_eq!(&text[d.froms[0].image_span.clone()], "${BASE}");
        assert_eq!(
            d.global_arg("BASE").unwrap().default.as_deref(),
            Some("alpine:3.20")
        );
    }

    #[test]
    fn the_escape_directive_changes_continuations() {
        let d = parse("# escape=`\nFROM alpine `\n  AS base\nARG A=\"x y\"\n");
        assert_eq!(d.froms[0].alias.as_deref(), Some("base"));
        assert_eq!(d.args[0].default.as_deref(), Some("x y"));
    }

    #[test]
    fn references_split_into_registry_and_repository() {
        assert_eq!(repository("alpine:3.20"), (None, "alpine"));
        assert_eq!(repository("team/runtime"), (None, "team/runtime"));
        assert_eq!(
            repository("registry.example.com:5000/team/runtime:1@sha256:abc"),
            (Some("registry.example.com:5000"), "team/runtime")
        );
        assert_eq!(repository("localhost/x:1"), (Some("localhost"), "x"));
    }
}
