//! Parsing large manifests on every core.
//!
//! The `kdl` parser reads about 2 MB/s; a manifest of hundreds of images would spend
//! most of `mab plan` in it. The text is cut at lines that begin a top-level node
//! (`image …`, `mirror …` at column 0), the pieces are parsed in parallel by the same
//! parser, and their spans shifted back to file offsets. Should any piece fail to parse
//! (a cut inside a multi-line string or comment leaves it unterminated), the whole text
//! is parsed once more in one piece, so errors, KDL v1 fallback and positions are
//! exactly those of a plain `KdlDocument::parse`.

use kdl::{KdlDocument, KdlError, KdlNode};
use miette::SourceSpan;
use rayon::prelude::*;

/// Below this size one parse is as fast as splitting.
const PARALLEL_FROM: usize = 64 * 1024;

/// Nodes that may start a piece: the manifest's top-level node names.
const STARTS: &[&str] = &["image", "mirror", "profile", "defaults", "var", "builder"];

pub fn parse(text: &str) -> Result<KdlDocument, KdlError> {
    if text.len() < PARALLEL_FROM {
        return parse_whole(text);
    }
    let pieces = pieces(text, rayon::current_num_threads().max(1) * 4);
    if pieces.len() < 2 {
        return parse_whole(text);
    }
    let parsed: Result<Vec<(usize, KdlDocument)>, KdlError> = pieces
        .par_iter()
        .map(|&(start, end)| KdlDocument::parse_v2(&text[start..end]).map(|d| (start, d)))
        .collect();
    let Ok(parsed) = parsed else {
        return parse_whole(text);
    };
    let mut doc = KdlDocument::new();
    for (offset, mut piece) in parsed {
        for mut node in std::mem::take(piece.nodes_mut()) {
            shift_node(&mut node, offset);
            doc.nodes_mut().push(node);
        }
    }
    doc.set_span(SourceSpan::from(0..text.len()));
    Ok(doc)
}

/// KDL v2, or v1 as a fallback. When neither reads the text, the errors of the version that
/// read further are the ones that point at the mistake: a v2 file with one v1 `false` fails
/// v1 at its first `#true` (valid code), and v2 at the `false`.
fn parse_whole(text: &str) -> Result<KdlDocument, KdlError> {
    let v2 = match KdlDocument::parse_v2(text) {
        Ok(doc) => return Ok(doc),
        Err(e) => e,
    };
    let v1 = match KdlDocument::parse_v1(text) {
        Ok(doc) => return Ok(doc),
        Err(e) => e,
    };
    let first = |e: &KdlError| e.diagnostics.iter().map(|d| d.span.offset()).min();
    if first(&v1) > first(&v2) {
        Err(v1)
    } else {
        Err(v2)
    }
}

/// Byte ranges of about `wanted` pieces, each starting at a top-level node.
fn pieces(text: &str, wanted: usize) -> Vec<(usize, usize)> {
    let target = text.len() / wanted.max(1);
    let mut cuts = vec![0];
    let mut last_line_continues = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let starts_node = STARTS.iter().any(|s| {
            line.strip_prefix(s)
                .is_some_and(|rest| rest.starts_with([' ', '\t', '{']))
        });
        let since_cut = offset - cuts.last().copied().unwrap_or(0);
        if starts_node && !last_line_continues && since_cut >= target && offset > 0 {
            cuts.push(offset);
        }
        let trimmed = line.trim_end();
        // A line ending in `\` (line continuation) or `/-` (slashdash) binds to the next line.
        if !trimmed.is_empty() {
            last_line_continues = trimmed.ends_with('\\') || trimmed.ends_with("/-");
        }
        offset += line.len();
    }
    cuts.iter()
        .zip(cuts.iter().skip(1).chain(std::iter::once(&text.len())))
        .map(|(a, b)| (*a, *b))
        .collect()
}

fn shift(span: SourceSpan, by: usize) -> SourceSpan {
    SourceSpan::from(span.offset() + by..span.offset() + by + span.len())
}

fn shift_node(node: &mut KdlNode, by: usize) {
    node.set_span(shift(node.span(), by));
    let name = node.name_mut();
    name.set_span(shift(name.span(), by));
    if let Some(ty) = node.ty_mut() {
        ty.set_span(shift(ty.span(), by));
    }
    for entry in node.entries_mut() {
        entry.set_span(shift(entry.span(), by));
        if let Some(n) = entry.name_mut() {
            n.set_span(shift(n.span(), by));
        }
        if let Some(t) = entry.ty_mut() {
            t.set_span(shift(t.span(), by));
        }
    }
    if let Some(children) = node.children_mut() {
        children.set_span(shift(children.span(), by));
        for child in children.nodes_mut() {
            shift_node(child, by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest big enough to be split, with every kind of span.
    fn big() -> String {
        let mut s = String::from("profile \"p\" default=#true { registry \"r.example/x\"; }\n");
        for i in 0..800usize {
            s.push_str(&format!(
                "image \"img{i}\" {{\n    (t)from \"img{}:1\" arg=\"B\"\n    version \"1\" {{ arg \"A\" \"{i}\"; }}\n}}\n",
                i.saturating_sub(1)
            ));
        }
        s
    }

    fn spans(doc: &KdlDocument, out: &mut Vec<(usize, usize)>) {
        for n in doc.nodes() {
            out.push((n.span().offset(), n.span().len()));
            out.push((n.name().span().offset(), n.name().span().len()));
            for e in n.entries() {
                out.push((e.span().offset(), e.span().len()));
            }
            if let Some(c) = n.children() {
                out.push((c.span().offset(), c.span().len()));
                spans(c, out);
            }
        }
    }

    #[test]
    fn same_nodes_and_spans_as_one_parse() {
        let text = big();
        assert!(pieces(&text, 8).len() > 2);
        let whole = KdlDocument::parse(&text).unwrap();
        let split = parse(&text).unwrap();
        assert_eq!(whole.nodes().len(), split.nodes().len());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        spans(&whole, &mut a);
        spans(&split, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_cut_inside_a_comment_falls_back() {
        let mut text = big();
        // A block comment that swallows what looks like a top-level node.
        let at = text.len() / 2;
        let line = text[at..].find('\n').unwrap() + at + 1;
        text.insert_str(line, "/*\nimage \"hidden\" {\n    version \"9\"\n}\n*/\n");
        let doc = parse(&text).unwrap();
        assert!(!doc.nodes().iter().any(|n| {
            n.entries()
                .first()
                .is_some_and(|e| e.value().as_string() == Some("hidden"))
        }));
        assert_eq!(
            doc.nodes().len(),
            KdlDocument::parse(&text).unwrap().nodes().len()
        );
    }

    #[test]
    fn errors_are_those_of_one_parse() {
        let mut text = big();
        text.push_str("image \"broken\" {\n");
        let a = parse(&text).unwrap_err();
        let b = KdlDocument::parse(&text).unwrap_err();
        assert_eq!(a.diagnostics.len(), b.diagnostics.len());
        assert_eq!(a.diagnostics[0].span, b.diagnostics[0].span);
    }
}
