//! The manifest layer: text → spanned syntax → resolved [`Model`].

pub mod interpolate;
pub mod kdl_node;
pub mod kdl_parallel;
pub mod model;
pub mod platform;
pub mod raw;
pub mod reference;
pub mod resolve;
mod settings;
pub mod syntax;
pub mod version_order;

use std::path::Path;

pub use model::Model;
pub use resolve::Options;

use crate::diag::{Diag, Diagnostics, Source};

/// A manifest read from disk and resolved for one profile.
pub struct Loaded {
    pub source: Source,
    pub model: Model,
}

/// Read, parse and resolve `path`; every error comes back located in the file.
pub fn load(path: &Path, options: &Options) -> Result<Loaded, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::from(
            Diag::plain(format!("cannot read `{}`: {e}", path.display()))
                .help("pass the manifest with `-f FILE`, or run mab in the directory that holds `images.kdl`"),
        )
    })?;
    let source = Source::new(path.display().to_string(), text);
    let model = compile(&source, options).map_err(|d| d.in_source(&source).sorted())?;
    Ok(Loaded { source, model })
}

/// Parse and resolve text already in memory.
pub fn compile(source: &Source, options: &Options) -> Result<Model, Diagnostics> {
    if let Some(at) = too_deep(&source.text) {
        return Err(Diag::error(
            miette::SourceSpan::from(at..at + 1),
            format!("blocks nested more than {MAX_DEPTH} deep"),
        )
        .label("one block too many")
        .help("a manifest nests at most image { version { variant { … } } }")
        .into());
    }
    let (raw, mut diags) = syntax::parse(&source.text)?;
    match resolve::resolve(&raw, &source.text, options) {
        Ok(model) if !diags.has_errors() => Ok(model),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}

/// How deep `{ … }` blocks may nest: the language needs four; the KDL parser recurses per level
/// and would overflow the stack on a few thousand.
const MAX_DEPTH: usize = 64;

/// The offset of the first `{` nested deeper than [`MAX_DEPTH`], outside strings and comments.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                // A string (escapes skipped); `"""` multi-line strings end at the next `"""`.
                if b[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                        i += 1;
                    }
                    i += 3;
                    continue;
                }
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 0;
                while i + 1 < b.len() {
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        nest += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        nest -= 1;
                        i += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn nesting_is_limited_outside_strings_and_comments() {
        let deep = format!("image \"a\" {}{}", "{ x ".repeat(65), "}".repeat(65));
        assert!(super::too_deep(&deep).is_some());
        let fine = format!("image \"a\" {}{}", "{ x ".repeat(10), "}".repeat(10));
        assert_eq!(super::too_deep(&fine), None);
        let quoted = format!(
            "x \"{}\" // {}\n/* {} */",
            "{".repeat(100),
            "{".repeat(100),
            "{".repeat(100)
        );
        assert_eq!(super::too_deep(&quoted), None);
    }
}
