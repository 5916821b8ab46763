//! The manifest layer: text → spanned syntax → resolved [`Model`].

pub mod interpolate;
pub mod kdl_node;
pub mod kdl_parallel;
pub mod model;
pub mod platform;
pub mod resolve;
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
