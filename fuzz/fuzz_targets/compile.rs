//! Parse + resolve + plan + render any input: nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mab::diag::Source;
use mab::plan::{Selection, plan};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let source = Source::new("fuzz.kdl", text.into_owned());
    // The default profile, and a named one (exercises `--profile` lookups and inheritance).
    for profile in [None, Some("prod")] {
        let options = mab::manifest::Options { profile: profile.map(str::to_owned), vars: Vec::new() };
        match mab::manifest::compile(&source, &options) {
            Ok(model) => match plan(&model, &Selection::default()) {
                Ok(p) => {
                    let _ = mab::render::text::render(&p);
                    let _ = mab::render::json(&p);
                    let _ = mab::render::dot::render(&p);
                    let _ = mab::render::shell::render(&p);
                    let _ = mab::render::markdown::render(&p);
                }
                Err(diags) => render(diags, &source),
            },
            Err(diags) => render(diags, &source),
        }
    }
});

/// Diagnostics are rendered too: a span outside the text must not panic the renderer.
fn render(diags: mab::diag::Diagnostics, source: &Source) {
    let mut out = Vec::new();
    let _ = diags.in_source(source).sorted().render(&mut out, false);
}
