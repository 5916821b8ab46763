//! Raw manifest + chosen profile → [`Model`]: cascade, interpolation, references, tags —
//! in stages, one module each (`scope`, `profiles`, `sources`, `images`, `checks`); the
//! reference grammar is `manifest::reference`.

use std::collections::{BTreeMap, HashMap};

use miette::SourceSpan;

use super::kdl_node::Spanned;
use super::model::Model;
use super::syntax::{RawManifest, RawProfile, RawSettings};
use crate::diag::{Diag, Diagnostics};

mod checks;
mod images;
mod profiles;
mod scope;
mod sources;

use checks::*;
use profiles::*;
use scope::*;

/// What the command line adds to the manifest: the profile and `--var` overrides.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub profile: Option<String>,
    pub vars: Vec<(String, String)>,
    /// The run's time, for `${date}` and `${time}` in tags (`None`: the present).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Resolve the raw manifest for one profile (`None`: the `default=#true` one), stage by
/// stage: scope and variables, profiles, mirrors and builders, images and versions, checks.
pub fn resolve(raw: &RawManifest, src: &str, options: &Options) -> Result<Model, Diagnostics> {
    let profile = options.profile.as_deref();
    let mut diags = Diagnostics::new();
    check_unique(raw, &mut diags);
    let errors_before = diags.len();
    let chain = choose_profile(raw, profile, &mut diags)?;
    let chain_broken = diags.len() > errors_before;
    let mut r = Resolver::new(raw, src, chain, chain_broken, diags);
    let now = options.now.unwrap_or_else(chrono::Utc::now);
    r.clock = (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    );
    r.resolve_vars(&options.vars);
    let profile = r.resolve_profile();
    let mirrors = r.resolve_mirrors(&profile.registry);
    let builders = r.resolve_builders();
    let mut versions = r.resolve_versions(&profile);
    r.resolve_froms(&mut versions, &mirrors);
    r.extra_tags(&mut versions, &profile);
    r.check_tags(&versions, &mirrors);
    r.check_file_names(&versions, &mirrors);
    r.check_builder_backend(&profile, &versions);
    r.check_platform_coverage(&versions, &mirrors);
    // A pull request that breaks `prod` must fail review under `dev` too.
    let chosen = r.chain[0].name.value.clone();
    other_profiles(raw, src, options, &chosen, &mut r.diags);
    if r.diags.has_errors() {
        return Err(r.diags);
    }
    let profiles = raw.profiles.iter().map(|p| p.name.value.clone()).collect();
    Ok(Model {
        profile,
        epoch: None,
        on_runner: false,
        profiles,
        vars: r.vars,
        mirrors,
        images: raw.images.iter().map(|i| i.name.value.clone()).collect(),
        versions,
        builders,
    })
}

/// Same name declared twice: images, mirrors, profiles, vars, builders, versions, variants.
fn check_unique(raw: &RawManifest, diags: &mut Diagnostics) {
    fn dup<'a>(
        what: &str,
        names: impl IntoIterator<Item = &'a Spanned<String>>,
        diags: &mut Diagnostics,
    ) {
        let mut seen: HashMap<&str, SourceSpan> = HashMap::new();
        for n in names {
            if let Some(first) = seen.get(n.value.as_str()) {
                diags.push(
                    Diag::error(n.span, format!("{what} `{}` is declared twice", n.value))
                        .label("declared again here")
                        .also(*first, "first declared here")
                        .help(format!("rename or remove one of the two {what}s")),
                );
            } else {
                seen.insert(&n.value, n.span);
            }
        }
    }
    dup("image", raw.images.iter().map(|i| &i.name), diags);
    dup("mirror", raw.mirrors.iter().map(|m| &m.name), diags);
    dup("profile", raw.profiles.iter().map(|p| &p.name), diags);
    dup("var", raw.vars.iter().map(|v| &v.0), diags);
    dup("builder", raw.builders.iter().map(|b| &b.name), diags);
    for p in &raw.profiles {
        dup("var", p.vars.iter().map(|v| &v.0), diags);
    }
    for m in &raw.mirrors {
        dup("mirror tag", m.tags.iter(), diags);
    }
    for image in &raw.images {
        dup("version", image.versions.iter().map(|v| &v.name), diags);
        for v in &image.versions {
            dup(
                "variant",
                image.variants.iter().chain(&v.variants).map(|x| &x.name),
                diags,
            );
        }
    }
}
struct Resolver<'a> {
    raw: &'a RawManifest,
    src: &'a str,
    /// Chosen profile first, the root it inherits from last.
    chain: Vec<&'a RawProfile>,
    vars: BTreeMap<String, String>,
    registry: String,
    /// An `inherits` could not be followed; a missing registry is then its echo, not news.
    chain_broken: bool,
    diags: Diagnostics,
    /// `${date}` and `${time}` of a tag: the run's, in UTC (`20261125`, `103000`).
    clock: (String, String),
}

/// The cascade of setting blocks for one image version, lowest priority first.
struct Layers<'a> {
    blocks: Vec<&'a RawSettings>,
    /// Index of the first block that belongs to the variant (tags there are not suffixed).
    variant_from: usize,
}

impl<'a> Layers<'a> {
    fn last<T>(&self, f: impl Fn(&'a RawSettings) -> Option<&'a T>) -> Option<&'a T> {
        self.blocks.iter().rev().find_map(|b| f(b))
    }

    fn merged(
        &self,
        f: impl Fn(&'a RawSettings) -> &'a Vec<super::syntax::Pair>,
    ) -> Vec<&'a super::syntax::Pair> {
        let mut out: Vec<&super::syntax::Pair> = Vec::new();
        for b in &self.blocks {
            for pair in f(b) {
                out.retain(|p| p.0.value != pair.0.value);
                out.push(pair);
            }
        }
        out.sort_by(|a, b| a.0.value.cmp(&b.0.value));
        out
    }
}

impl<'a> Resolver<'a> {
    fn new(
        raw: &'a RawManifest,
        src: &'a str,
        chain: Vec<&'a RawProfile>,
        chain_broken: bool,
        diags: Diagnostics,
    ) -> Resolver<'a> {
        Resolver {
            raw,
            src,
            chain,
            vars: BTreeMap::new(),
            registry: String::new(),
            chain_broken,
            diags,
            clock: Default::default(),
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            src: self.src,
            vars: &self.vars,
            profile: &self.chain[0].name.value,
            registry: None,
            image: None,
            platform: None,
            clock: None,
        }
    }
}

/// Small manifests through the whole resolver; each stage's tests live beside it.
#[cfg(test)]
pub(super) mod testing {
    use crate::diag::{Diagnostics, Source};
    use crate::manifest::{Model, Options, compile};

    pub const HEAD: &str = r#"
profile "dev" default=#true { registry "r.example/dev"; platforms "linux/amd64"; }
profile "prod" { inherits "dev"; registry "r.example/prod"; tag "latest"; }
"#;

    pub fn resolve(
        body: &str,
        profile: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Model, Diagnostics> {
        let options = Options {
            profile: profile.map(str::to_owned),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            now: None,
        };
        compile(
            &Source::new("images.kdl".to_owned(), format!("{HEAD}{body}")),
            &options,
        )
    }

    /// The messages of a manifest that must not resolve.
    pub fn errors(body: &str) -> Vec<String> {
        match resolve(body, None, &[]) {
            Ok(_) => panic!("resolved:\n{body}"),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }
}
