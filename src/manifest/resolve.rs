//! Raw manifest + chosen profile → [`Model`]: cascade, interpolation, references, tags.

use std::collections::{BTreeMap, HashMap};

use miette::SourceSpan;

use super::interpolate::{InterpError, Lookup, interpolate};
use super::kdl_node::Spanned;
use super::model::{
    Backend, Builder, Cache, Dep, From, ImageVersion, Mirror, Model, PlatformSettings, Profile,
};
use super::platform::Platform;
use super::syntax::{
    RawCache, RawImage, RawManifest, RawProfile, RawSettings, RawVariant, SecretSource,
};
use super::version_order;
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

const BUILTINS: &[&str] = &[
    "version", "image", "variant", "registry", "profile", "platform", "os", "arch",
];
const PER_PLATFORM: &str =
    "it is known only per platform: use it in `arg`, `label`, `test` or `cache`";
const PER_IMAGE: &str = "it is known only in the settings of an `image`";

/// Where a string is interpolated: which variables have values there.
#[derive(Clone, Copy)]
struct Scope<'a> {
    src: &'a str,
    vars: &'a BTreeMap<String, String>,
    profile: &'a str,
    registry: Option<&'a str>,
    image: Option<(&'a str, &'a str, &'a str)>,
    platform: Option<&'a Platform>,
}

impl Scope<'_> {
    fn lookup(&self, name: &str) -> Lookup {
        let found = |s: &str| Lookup::Found(s.to_owned());
        match name {
            "profile" => found(self.profile),
            "registry" => self.registry.map_or(
                Lookup::NotHere("it is not known yet where the registry itself is set"),
                found,
            ),
            "image" | "version" | "variant" => match self.image {
                Some((i, v, var)) => found(match name {
                    "image" => i,
                    "version" => v,
                    _ => var,
                }),
                None => Lookup::NotHere(PER_IMAGE),
            },
            "platform" | "os" | "arch" => match self.platform {
                Some(p) => found(match name {
                    "platform" => p.as_str(),
                    "os" => p.os(),
                    _ => p.arch(),
                }),
                None => Lookup::NotHere(PER_PLATFORM),
            },
            other => self.vars.get(other).map_or(Lookup::Unknown, |v| found(v)),
        }
    }

    fn interp(&self, s: &Spanned<String>, diags: &mut Diagnostics) -> Option<String> {
        match interpolate(&s.value, &|n| self.lookup(n)) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.push(self.error(s, e));
                None
            }
        }
    }

    /// Point at `${name}` inside the written string when it can be found there.
    fn sub_span(&self, s: &Spanned<String>, needle: &str) -> SourceSpan {
        let (start, len) = (s.span.offset(), s.span.len());
        self.src
            .get(start..start + len)
            .and_then(|text| text.find(needle))
            .map_or(s.span, |i| {
                SourceSpan::from(start + i..start + i + needle.len())
            })
    }

    fn error(&self, s: &Spanned<String>, e: InterpError) -> Diag {
        match e {
            InterpError::Unknown { name, .. } => {
                let span = self.sub_span(s, &format!("${{{name}}}"));
                let candidates: Vec<&str> = BUILTINS
                    .iter()
                    .copied()
                    .chain(self.vars.keys().map(String::as_str))
                    .collect();
                Diag::error(span, format!("unknown variable `${{{name}}}`"))
                    .label("not defined")
                    .help(suggest::did_you_mean(&name, candidates.iter().copied()).unwrap_or_else(|| {
                        format!(
                            "declare it with `var \"{name}\" \"VALUE\"`, or write `$${{{name}}}` for a literal `${{`"
                        )
                    }))
            }
            InterpError::NotHere { name, why, .. } => {
                let span = self.sub_span(s, &format!("${{{name}}}"));
                Diag::error(span, format!("`${{{name}}}` has no value here"))
                    .label("not available here")
                    .help(why)
            }
            InterpError::Unclosed { .. } => Diag::error(s.span, "unclosed `${` in string")
                .label("missing `}`")
                .help("close it with `}`, or write `$${` for a literal `${`"),
        }
    }
}

/// Resolve the raw manifest for one profile (`None`: the `default=#true` one).
/// What the command line adds to the manifest: the profile and `--var` overrides.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub profile: Option<String>,
    pub vars: Vec<(String, String)>,
}

pub fn resolve(raw: &RawManifest, src: &str, options: &Options) -> Result<Model, Diagnostics> {
    let profile = options.profile.as_deref();
    let mut diags = Diagnostics::new();
    check_unique(raw, &mut diags);
    let errors_before = diags.len();
    let chain = choose_profile(raw, profile, &mut diags)?;
    let chain_broken = diags.len() > errors_before;
    let mut r = Resolver::new(raw, src, chain, chain_broken, diags);
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
        profiles,
        vars: r.vars,
        mirrors,
        images: raw.images.iter().map(|i| i.name.value.clone()).collect(),
        versions,
        builders,
    })
}

/// Validate every profile that is not the chosen one: its inheritance, its own settings
/// (registry, backend, tags, and the image settings it sets — `platforms`, `arg`, `label`,
/// `cache`, `attest` — interpolated with its variables) and the mirrors under its variables.
/// New errors are added to `diags` with the profile named; ones already reported are not
/// repeated.
fn other_profiles(
    raw: &RawManifest,
    src: &str,
    options: &Options,
    chosen: &str,
    diags: &mut Diagnostics,
) {
    let key = |d: &Diag| (d.span.map(|s| (s.offset(), s.len())), d.message.clone());
    let mut seen: std::collections::HashSet<_> = diags.iter().map(key).collect();
    for p in raw.profiles.iter().filter(|p| p.name.value != chosen) {
        let mut found = Diagnostics::new();
        let chain = match choose_profile(raw, Some(&p.name.value), &mut found) {
            Ok(chain) => chain,
            Err(e) => {
                found.extend(e);
                Vec::new()
            }
        };
        if !chain.is_empty() {
            let chain_broken = found.has_errors();
            let mut r = Resolver::new(raw, src, chain, chain_broken, found);
            r.resolve_vars(&options.vars);
            let profile = r.resolve_profile();
            r.resolve_mirrors(&profile.registry);
            r.check_profile_settings(&profile);
            found = r.diags;
        }
        for d in found.iter() {
            if d.is_error() && seen.insert(key(d)) {
                let mut d = d.clone();
                d.message = format!("{} (profile `{}`)", d.message, p.name.value);
                diags.push(d);
            }
        }
    }
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

/// The chosen profile and the profiles it inherits from: chosen first, root last.
fn choose_profile<'a>(
    raw: &'a RawManifest,
    wanted: Option<&str>,
    diags: &mut Diagnostics,
) -> Result<Vec<&'a RawProfile>, Diagnostics> {
    let defaults: Vec<&RawProfile> = raw
        .profiles
        .iter()
        .filter(|p| p.default.as_ref().is_some_and(|d| d.value))
        .collect();
    if let [first, second, ..] = defaults.as_slice() {
        let span = |p: &RawProfile| p.default.as_ref().map_or(p.span, |d| d.span);
        diags.push(
            Diag::error(span(second), "more than one profile is `default=#true`")
                .label(format!("`{}` is default", second.name.value))
                .also(
                    span(first),
                    format!("`{}` is default too", first.name.value),
                )
                .help("mark exactly one profile `default=#true`"),
        );
    }
    let names = || raw.profiles.iter().map(|p| p.name.value.as_str());
    let chosen = match wanted {
        Some(w) => match raw.profiles.iter().find(|p| p.name.value == w) {
            Some(p) => p,
            None => {
                let help = suggest::did_you_mean(w, names())
                    .map(|d| format!("{d} declared profiles: {}", suggest::list(names())))
                    .unwrap_or_else(|| format!("declared profiles: {}", suggest::list(names())));
                diags.push(Diag::plain(format!("unknown profile `{w}`")).help(help));
                return Err(std::mem::take(diags));
            }
        },
        None => match (defaults.first(), raw.profiles.as_slice()) {
            (Some(d), _) => d,
            (None, [only]) => only,
            (None, []) => {
                diags.push(
                    Diag::error(SourceSpan::from(0..0), "the manifest declares no profile")
                        .label("no `profile` in this file")
                        .help("add `profile \"dev\" default=#true { registry \"registry.example.com/team\" }`"),
                );
                return Err(std::mem::take(diags));
            }
            (None, _) => {
                diags.push(
                    Diag::plain("no profile chosen")
                        .help(format!(
                            "mark one profile `default=#true`, or pass `--profile` (or set MAB_PROFILE): {}",
                            suggest::list(names())
                        )),
                );
                return Err(std::mem::take(diags));
            }
        },
    };
    let mut chain = vec![chosen];
    let mut current = chosen;
    while let Some(parent) = &current.inherits {
        let Some(next) = raw.profiles.iter().find(|p| p.name.value == parent.value) else {
            diags.push(
                Diag::error(parent.span, format!("unknown profile `{}`", parent.value))
                    .label("inherited here")
                    .help_opt(suggest::did_you_mean(&parent.value, names())),
            );
            break;
        };
        if chain.iter().any(|p| std::ptr::eq(*p, next)) {
            let mut cycle: Vec<&str> = chain.iter().map(|p| p.name.value.as_str()).collect();
            cycle.push(&next.name.value);
            diags.push(
                Diag::error(
                    parent.span,
                    format!("profiles inherit in a cycle: {}", cycle.join(" → ")),
                )
                .label("closes the cycle")
                .help("remove one `inherits`"),
            );
            break;
        }
        chain.push(next);
        current = next;
    }
    Ok(chain)
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
        }
    }

    fn resolve_vars(&mut self, overrides: &[(String, String)]) {
        let raw = self.raw;
        // Top-level vars first, then profile vars from the root of the chain to the chosen one.
        let blocks = std::iter::once(&raw.vars).chain(self.chain.iter().rev().map(|p| &p.vars));
        for block in blocks {
            for (k, v) in block {
                if BUILTINS.contains(&k.value.as_str()) {
                    self.diags.push(
                        Diag::error(k.span, format!("`{}` is a built-in variable", k.value))
                            .label("cannot be redefined")
                            .help(format!(
                                "built-in variables: {}",
                                suggest::list(BUILTINS.iter().copied())
                            )),
                    );
                    continue;
                }
                if let Some((_, value)) = overrides.iter().rev().find(|(name, _)| *name == k.value)
                {
                    self.vars.insert(k.value.clone(), value.clone());
                    continue;
                }
                let mut diags = Diagnostics::new();
                if let Some(value) = self.scope().interp(v, &mut diags) {
                    self.vars.insert(k.value.clone(), value);
                }
                self.diags.extend(diags);
            }
        }
        for (name, _) in overrides {
            if !self.vars.contains_key(name) {
                self.diags.push(
                    Diag::plain(format!("`--var {name}=…` names no `var` of the manifest")).help(
                        suggest::did_you_mean(name, self.vars.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                format!(
                                    "declared variables: {}",
                                    suggest::list(self.vars.keys().map(String::as_str))
                                )
                            }),
                    ),
                );
            }
        }
    }

    /// The image settings the profile chain sets, as they would be resolved for an image of
    /// it: interpolated (with stand-ins for the image's own variables), platforms known,
    /// cache references and attestation requests well-formed.
    fn check_profile_settings(&mut self, profile: &Profile) {
        let sample = Platform::parse("linux/amd64").ok();
        let scope = Scope {
            registry: Some(&profile.registry),
            image: Some(("image", "1", "")),
            platform: sample.as_ref(),
            ..self.scope()
        };
        let mut diags = Diagnostics::new();
        for block in self.chain.iter().map(|p| &p.settings) {
            for (_, v) in block.args.iter().chain(&block.labels) {
                scope.interp(v, &mut diags);
            }
            if let Some(list) = &block.platforms {
                platform_list(&list.value, &mut diags);
            }
            if let Some(Spanned {
                value: RawCache::Repo { repo, .. },
                ..
            }) = &block.cache
                && let Some(r) = scope.interp(repo, &mut diags)
                && let Some(problem) = reference_problem(&with_default_tag(&r, "1-amd64"))
            {
                diags.push(
                    Diag::error(repo.span, format!("invalid cache `{}`", r.escape_debug()))
                        .label(problem),
                );
            }
            for a in block.attest.iter().flat_map(|l| &l.value) {
                if let Some(v) = scope.interp(a, &mut diags)
                    && let Err(problem) = attest_request(&v)
                {
                    diags.push(
                        Diag::error(
                            a.span,
                            format!("invalid attestation request `{}`", v.escape_debug()),
                        )
                        .label(problem),
                    );
                }
            }
        }
        self.diags.extend(diags);
    }

    fn resolve_profile(&mut self) -> Profile {
        let first = |f: &dyn Fn(&RawProfile) -> Option<Spanned<String>>| {
            self.chain.iter().find_map(|p| f(p))
        };
        let chosen = self.chain[0];
        let registry = first(&|p| p.registry.clone());
        let mut diags = Diagnostics::new();
        let registry = match registry {
            None if self.chain_broken => String::new(),
            None => {
                diags.push(
                    Diag::error(
                        chosen.span,
                        format!("profile `{}` has no registry", chosen.name.value),
                    )
                    .label("no `registry` in this profile or those it inherits")
                    .help("add `registry \"registry.example.com/team\"` to the profile"),
                );
                String::new()
            }
            Some(r) => {
                let value = self.scope().interp(&r, &mut diags).unwrap_or_default();
                if let Some(problem) = registry_problem(&value) {
                    diags.push(
                        Diag::error(r.span, format!("invalid registry `{value}`"))
                            .label(problem.0)
                            .help(problem.1),
                    );
                } else if let Some(problem) =
                    reference_problem(&format!("{}/x", value.trim_end_matches('/')))
                {
                    diags.push(
                        Diag::error(r.span, format!("invalid registry `{}`", value.escape_debug()))
                            .label(problem)
                            .help("a host[:port] and lowercase path components of letters, digits and single `.`, `_`, `__` or `-` between them"),
                    );
                }
                value.trim_end_matches('/').to_owned()
            }
        };
        let backend = match first(&|p| p.backend.clone()) {
            None => Backend::Buildx,
            Some(b) => Backend::parse(&b.value).unwrap_or_else(|| {
                diags.push(
                    Diag::error(b.span, format!("unknown backend `{}`", b.value))
                        .label("unknown backend")
                        .help(
                            suggest::did_you_mean(&b.value, Backend::NAMES.iter().copied())
                                .unwrap_or_else(|| {
                                    format!(
                                        "backends: {}",
                                        suggest::list(Backend::NAMES.iter().copied())
                                    )
                                }),
                        ),
                );
                Backend::Buildx
            }),
        };
        let insecure = self
            .chain
            .iter()
            .find_map(|p| p.insecure.as_ref())
            .is_some_and(|i| i.value);
        let push = self
            .chain
            .iter()
            .find_map(|p| p.push.as_ref())
            .is_none_or(|p| p.value);
        let mut extra_tags = Vec::new();
        for t in self.chain.iter().rev().flat_map(|p| &p.tags) {
            if let Some(v) = self.scope().interp(t, &mut diags) {
                if let Some(problem) = tag_problem(&v) {
                    diags.push(Diag::error(t.span, format!("invalid tag `{v}`")).label(problem));
                } else if !extra_tags.contains(&v) {
                    extra_tags.push(v);
                }
            }
        }
        self.diags.extend(diags);
        self.registry = registry.clone();
        Profile {
            name: chosen.name.value.clone(),
            inherits: self.chain[1..]
                .iter()
                .map(|p| p.name.value.clone())
                .collect(),
            registry,
            insecure,
            backend,
            push,
            extra_tags,
        }
    }

    fn resolve_mirrors(&mut self, registry: &str) -> Vec<Mirror> {
        let mut out = Vec::new();
        for m in &self.raw.mirrors {
            let mut diags = Diagnostics::new();
            let scope = Scope {
                registry: Some(registry),
                ..self.scope()
            };
            let source = m.from.as_ref().and_then(|f| {
                let v = scope.interp(f, &mut diags)?;
                if let Some(problem) = upstream_problem(&v) {
                    diags.push(
                        Diag::error(f.span, format!("invalid upstream `{v}`"))
                            .label(problem.0)
                            .help(problem.1),
                    );
                } else if let Some(problem) = reference_problem(&v) {
                    diags.push(
                        Diag::error(f.span, format!("invalid upstream `{}`", v.escape_debug()))
                            .label(problem)
                            .help("write e.g. `docker.io/library/alpine`"),
                    );
                }
                Some(v)
            });
            let tags: Vec<String> = m
                .tags
                .iter()
                .filter_map(|t| {
                    let v = scope.interp(t, &mut diags)?;
                    if let Some(problem) = tag_problem(&v) {
                        diags
                            .push(Diag::error(t.span, format!("invalid tag `{v}`")).label(problem));
                    }
                    Some(v)
                })
                .collect();
            if let Some(problem) = name_problem(&m.name.value) {
                diags.push(
                    Diag::error(
                        m.name.span,
                        format!("invalid mirror name `{}`", m.name.value),
                    )
                    .label(problem),
                );
            }
            self.diags.extend(diags);
            let platforms = m
                .platforms
                .as_ref()
                .map(|p| platform_list(&p.value, &mut self.diags));
            out.push(Mirror {
                name: m.name.value.clone(),
                source: source.unwrap_or_default(),
                insecure: m.insecure.as_ref().is_some_and(|i| i.value),
                tags,
                platforms,
                repository: format!("{registry}/thirdparty/{}", m.name.value),
                span: m.span,
            });
        }
        out
    }

    fn resolve_builders(&mut self) -> Vec<Builder> {
        let mut owner: HashMap<Platform, (String, SourceSpan)> = HashMap::new();
        let mut out = Vec::new();
        for b in &self.raw.builders {
            let platforms = platform_list(&b.platforms, &mut self.diags);
            for (p, raw) in platforms.iter().zip(&b.platforms) {
                if let Some((other, span)) = owner.get(p) {
                    self.diags.push(
                        Diag::error(
                            raw.span,
                            format!("platform `{p}` is routed to two builders"),
                        )
                        .label(format!("builder `{}`", b.name.value))
                        .also(*span, format!("builder `{other}`"))
                        .help("route each platform to one builder"),
                    );
                } else {
                    owner.insert(p.clone(), (b.name.value.clone(), raw.span));
                }
            }
            let mut diags = Diagnostics::new();
            let endpoint = b
                .endpoint
                .as_ref()
                .and_then(|e| self.scope().interp(e, &mut diags));
            if let (Some(e), Some(raw)) = (&endpoint, &b.endpoint)
                && (crate::buildx::driver(e).is_none()
                    || e.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                diags.push(
                    Diag::error(raw.span, format!("unsupported builder endpoint `{}`", e.escape_debug()))
                        .label("expected tcp://, unix:// or ssh://")
                        .help("a BuildKit daemon: `tcp://host:1234` or `unix:///run/buildkit/buildkitd.sock`; a Docker host: `ssh://user@host`"),
                );
            }
            let name = &b.name.value;
            if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                diags.push(
                    Diag::error(
                        b.name.span,
                        format!("invalid builder name `{}`", name.escape_debug()),
                    )
                    .label("a buildx builder name")
                    .help("letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
                );
            }
            self.diags.extend(diags);
            out.push(Builder {
                name: b.name.value.clone(),
                platforms,
                endpoint,
                runs_on: b.runs_on.as_ref().map(|r| r.value.clone()),
            });
        }
        out
    }

    fn resolve_versions(&mut self, profile: &Profile) -> Vec<ImageVersion> {
        let raw = self.raw;
        let mut out = Vec::new();
        let mut seen_images = std::collections::HashSet::new();
        for image in &raw.images {
            // A second image of the same name is reported by `check_unique`; resolving it would only echo that.
            if !seen_images.insert(image.name.value.as_str()) {
                continue;
            }
            if let Some(problem) = name_problem(&image.name.value) {
                self.diags.push(
                    Diag::error(
                        image.name.span,
                        format!("invalid image name `{}`", image.name.value),
                    )
                    .label(problem)
                    .help("image names are lowercase letters, digits, `.`, `_`, `-` and `/`"),
                );
            }
            if image.versions.is_empty() {
                self.diags.push(
                    Diag::error(
                        image.span,
                        format!("image `{}` has no version", image.name.value),
                    )
                    .label("no `version` in this image")
                    .help("add `version \"1.0\"` to its block"),
                );
            }
            let mut seen_versions = std::collections::HashSet::new();
            for version in &image.versions {
                if !seen_versions.insert(version.name.value.as_str()) {
                    continue;
                }
                let mut blocks: Vec<&RawSettings> = vec![&raw.defaults];
                blocks.extend(self.chain.iter().rev().map(|p| &p.settings));
                blocks.push(&image.settings);
                blocks.push(&version.settings);
                let base = Layers {
                    variant_from: blocks.len(),
                    blocks: blocks.clone(),
                };
                if let Some(v) =
                    self.version(profile, image, &version.name, version.span, None, &base)
                {
                    out.push(v);
                }
                for variant in image.variants.iter().chain(&version.variants) {
                    let mut vb = blocks.clone();
                    vb.push(&variant.settings);
                    let layers = Layers {
                        variant_from: blocks.len(),
                        blocks: vb,
                    };
                    if let Some(v) = self.version(
                        profile,
                        image,
                        &version.name,
                        version.span,
                        Some(variant),
                        &layers,
                    ) {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    fn version(
        &mut self,
        profile: &Profile,
        image: &RawImage,
        version: &Spanned<String>,
        span: SourceSpan,
        variant: Option<&RawVariant>,
        layers: &Layers<'a>,
    ) -> Option<ImageVersion> {
        let mut diags = Diagnostics::new();
        let (vname, suffix) = match variant {
            Some(v) => {
                let suffix = v
                    .suffix
                    .as_ref()
                    .map_or_else(|| format!("-{}", v.name.value), |s| s.value.clone());
                (v.name.value.as_str(), suffix)
            }
            None => ("", String::new()),
        };
        if let Some(problem) = tag_problem(&format!("{}{suffix}", version.value)) {
            diags.push(
                Diag::error(version.span, format!("version `{}{suffix}` cannot be a tag", version.value))
                    .label(problem)
                    .help("versions are published as tags: letters, digits, `_`, `.` and `-`, at most 128"),
            );
        }
        let scope = Scope {
            src: self.src,
            vars: &self.vars,
            profile: &profile.name,
            registry: Some(&profile.registry),
            image: Some((&image.name.value, &version.value, vname)),
            platform: None,
        };
        let context = match layers.last(|b| b.context.as_ref()) {
            Some(c) => scope.interp(c, &mut diags).unwrap_or_default(),
            None => format!("images/{}", image.name.value),
        };
        let context = context.trim_end_matches('/').to_owned();
        let dockerfile = match layers.last(|b| b.dockerfile.as_ref()) {
            Some(d) => scope.interp(d, &mut diags).unwrap_or_default(),
            None => "Dockerfile".to_owned(),
        };
        let dockerfile = if context.is_empty() || context == "." {
            dockerfile
        } else {
            format!("{context}/{dockerfile}")
        };
        // The build context and Dockerfile stay inside the manifest's directory unless the
        // manifest says otherwise: `check` prints Dockerfile lines, builds send the context.
        let outside_ok = layers
            .last(|b| b.context.as_ref().map(|_| &b.outside))
            .and_then(|o| o.as_ref())
            .is_some_and(|o| o.value);
        if !outside_ok {
            let context_span = layers.last(|b| b.context.as_ref()).map(|c| c.span);
            let dockerfile_span = layers.last(|b| b.dockerfile.as_ref()).map(|d| d.span);
            for (what, path, span) in [
                ("context", &context, context_span),
                ("Dockerfile", &dockerfile, dockerfile_span.or(context_span)),
            ] {
                if let Some(problem) = outside_problem(path) {
                    diags.push(
                        Diag::error(span.unwrap_or(version.span), format!("the {what} `{path}` is outside the manifest's directory"))
                            .label(problem)
                            .help("keep build files beside images.kdl; to build from elsewhere on purpose, write `context \"…\" outside=#true`"),
                    );
                }
            }
        }
        let target = layers
            .last(|b| b.target.as_ref())
            .and_then(|t| scope.interp(t, &mut diags));
        let attest = match layers.last(|b| b.attest.as_ref()) {
            None => vec![DEFAULT_ATTEST.to_owned()],
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                for a in &list.value {
                    let Some(v) = scope.interp(a, &mut diags) else {
                        continue;
                    };
                    match attest_request(&v) {
                        Err(problem) => diags.push(
                            Diag::error(a.span, format!("invalid attestation request `{}`", v.escape_debug()))
                                .label(problem)
                                .help("write it as buildx and bake do: `type=provenance,mode=max`, `type=sbom`, `type=provenance,disabled=true`"),
                        ),
                        Ok(kind) if out.iter().any(|o| attest_type(o) == Some(kind)) => diags.push(
                            Diag::error(a.span, format!("a second `type={kind}` request"))
                                .label("each type may be requested once"),
                        ),
                        Ok(_) => out.push(v),
                    }
                }
                // As with buildx and bake: provenance (mode=min) unless asked for otherwise.
                if !list.value.is_empty()
                    && !out.iter().any(|o| attest_type(o) == Some("provenance"))
                {
                    out.insert(0, DEFAULT_ATTEST.to_owned());
                }
                // `type=provenance,disabled=true` is passed on as written: dropping it would
                // let buildx add its default provenance again.
                out
            }
        };

        // Later blocks replace a secret of the same id; mab passes only where it comes from.
        let mut secrets: BTreeMap<String, SecretSource> = BTreeMap::new();
        for b in &layers.blocks {
            for secret in &b.secrets {
                secrets.insert(secret.id.value.clone(), secret.source.value.clone());
            }
        }

        let platforms = match layers.last(|b| b.platforms.as_ref()) {
            Some(list) => platform_list(&list.value, &mut diags),
            None => {
                diags.push(
                    Diag::error(
                        version.span,
                        format!("`{}:{}` has no platforms", image.name.value, version.value),
                    )
                    .label("no `platforms` for this version")
                    .help(
                        "set `platforms \"linux/amd64\" …` in `defaults`, the profile or the image",
                    ),
                );
                Vec::new()
            }
        };

        // Tags: the last block that declares any wins; inherited ones get the variant suffix.
        let tag_block = layers
            .blocks
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, b)| b.tags.as_ref().map(|t| (i, t)));
        let tags: Vec<String> = match tag_block {
            None => vec![format!("{}{suffix}", version.value)],
            Some((i, list)) => {
                let literal = i >= layers.variant_from;
                let mut tags = Vec::new();
                for t in list {
                    let Some(v) = scope.interp(t, &mut diags) else {
                        continue;
                    };
                    let v = if literal { v } else { format!("{v}{suffix}") };
                    if let Some(problem) = tag_problem(&v) {
                        diags
                            .push(Diag::error(t.span, format!("invalid tag `{v}`")).label(problem));
                    } else if !tags.contains(&v) {
                        tags.push(v);
                    }
                }
                tags
            }
        };

        let args = layers.merged(|b| &b.args);
        let labels = layers.merged(|b| &b.labels);
        let test = layers.last(|b| b.test.as_ref());
        let cache = layers.last(|b| b.cache.as_ref());
        let mut per_platform = Vec::with_capacity(platforms.len());
        for platform in &platforms {
            let pscope = Scope {
                platform: Some(platform),
                ..scope
            };
            let map = |pairs: &[&super::syntax::Pair],
                       diags: &mut Diagnostics|
             -> BTreeMap<String, String> {
                pairs
                    .iter()
                    .filter_map(|(k, v)| Some((k.value.clone(), pscope.interp(v, diags)?)))
                    .collect()
            };
            let args = map(&args, &mut diags);
            let labels = map(&labels, &mut diags);
            let test = test.map(|t| {
                t.value
                    .iter()
                    .filter_map(|w| pscope.interp(&Spanned::new(w.clone(), t.span), &mut diags))
                    .collect()
            });
            let slug = format!("{}{suffix}-{}", version.value, platform.slug());
            let cache = match cache.map(|c| &c.value) {
                Some(RawCache::Disabled) => None,
                Some(RawCache::Repo { repo, mode }) => {
                    let r = pscope.interp(repo, &mut diags).unwrap_or_default();
                    let mode = match mode {
                        Some(m) if m.value != "max" && m.value != "min" => {
                            diags.push(
                                Diag::error(m.span, format!("unknown cache mode `{}`", m.value))
                                    .label("expected \"max\" or \"min\"")
                                    .help_opt(suggest::did_you_mean(&m.value, ["max", "min"])),
                            );
                            "max".to_owned()
                        }
                        Some(m) => m.value.clone(),
                        None => "max".to_owned(),
                    };
                    let reference = with_default_tag(&r, &slug);
                    if let Some(problem) = reference_problem(&reference) {
                        diags.push(
                            Diag::error(repo.span, format!("invalid cache `{}`", reference.escape_debug()))
                                .label(problem)
                                .help("a repository, e.g. `cache \"${registry}/cache/${image}\"`; mab adds the tag"),
                        );
                    }
                    Some(Cache { reference, mode })
                }
                None => Some(Cache {
                    reference: format!("{}/cache/{}:{slug}", profile.registry, image.name.value),
                    mode: "max".to_owned(),
                }),
            };
            per_platform.push(PlatformSettings {
                platform: platform.clone(),
                args,
                labels,
                test,
                cache,
            });
        }
        let failed = diags.has_errors();
        self.diags.extend(diags);
        if failed {
            return None;
        }
        let key = format!("{}:{}{suffix}", image.name.value, version.value);
        Some(ImageVersion {
            image: image.name.value.clone(),
            version: version.value.clone(),
            variant: variant.map(|v| v.name.value.clone()),
            suffix,
            key,
            context,
            outside: outside_ok,
            context_span: layers.last(|b| b.context.as_ref()).map(|c| c.span),
            dockerfile_span: layers.last(|b| b.dockerfile.as_ref()).map(|d| d.span),
            dockerfile,
            target,
            attest,
            secrets,
            platforms: per_platform,
            tags,
            froms: Vec::new(),
            repository: format!("{}/{}", profile.registry, image.name.value),
            span,
            image_span: image.span,
        })
    }

    /// Turn every `from` of every version into a [`Dep`]; needs all version keys first.
    fn resolve_froms(&mut self, versions: &mut [ImageVersion], mirrors: &[Mirror]) {
        let keys: HashMap<String, usize> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| (v.key.clone(), i))
            .collect();
        let raw = self.raw;
        let by_name: HashMap<&str, &RawImage> = raw
            .images
            .iter()
            .rev()
            .map(|i| (i.name.value.as_str(), i))
            .collect();
        for v in versions.iter_mut() {
            let Some(image) = by_name.get(v.image.as_str()) else {
                continue;
            };
            let Some(version) = image.versions.iter().find(|x| x.name.value == v.version) else {
                continue;
            };
            let variant = image
                .variants
                .iter()
                .chain(&version.variants)
                .find(|x| Some(&x.name.value) == v.variant.as_ref());
            let mut blocks: Vec<&RawSettings> = vec![&raw.defaults];
            blocks.extend(self.chain.iter().rev().map(|p| &p.settings));
            blocks.extend([&image.settings, &version.settings]);
            blocks.extend(variant.map(|x| &x.settings));
            // Later blocks override a `from` with the same `arg`.
            let mut froms: Vec<&super::syntax::RawFrom> = Vec::new();
            for b in blocks {
                for f in &b.froms {
                    if f.arg.is_some() {
                        froms.retain(|g| {
                            g.arg.as_ref().map(|a| &a.value) != f.arg.as_ref().map(|a| &a.value)
                        });
                    }
                    froms.push(f);
                }
            }
            let scope = Scope {
                src: self.src,
                vars: &self.vars,
                profile: &self.chain[0].name.value,
                registry: Some(&self.registry),
                image: Some((&v.image, &v.version, v.variant.as_deref().unwrap_or(""))),
                platform: None,
            };
            let mut diags = Diagnostics::new();
            for f in froms {
                let Some(reference) = scope.interp(&f.reference, &mut diags) else {
                    continue;
                };
                let span = f.reference.span;
                let dep = resolve_reference(&reference, span, &keys, raw, mirrors, &mut diags);
                let Some(dep) = dep else { continue };
                let arg = f.arg.as_ref().map(|a| a.value.clone());
                if let Some(a) = &f.arg
                    && v.platforms
                        .first()
                        .is_some_and(|p| p.args.contains_key(&a.value))
                {
                    diags.push(
                        Diag::error(
                            a.span,
                            format!("build arg `{}` is set both by `from` and by `arg`", a.value),
                        )
                        .label("receives the pinned base reference")
                        .help("remove the `arg` of the same name, or use another name here"),
                    );
                }
                v.froms.push(From { dep, arg, span });
            }
            self.diags.extend(diags);
        }
    }

    /// The profile's extra tags (`latest`) go to the newest version of each image and variant.
    fn extra_tags(&mut self, versions: &mut [ImageVersion], profile: &Profile) {
        if profile.extra_tags.is_empty() {
            return;
        }
        let mut groups: BTreeMap<(&str, Option<&str>), Vec<usize>> = BTreeMap::new();
        for (i, v) in versions.iter().enumerate() {
            groups
                .entry((&v.image, v.variant.as_deref()))
                .or_default()
                .push(i);
        }
        let mut picks: Vec<usize> = Vec::new();
        for members in groups.values() {
            // Versions that do not order as releases (`bullseye`, `bookworm`) have no newest:
            // the manifest must say which carries the tag, by a `tag` of its own.
            let unordered = members
                .iter()
                .find(|&&i| lenient_semver::parse(&versions[i].version).is_err());
            if members.len() > 1
                && let Some(&u) = unordered
            {
                let said = members.iter().any(|&i| {
                    profile.extra_tags.iter().any(|t| {
                        versions[i]
                            .tags
                            .contains(&format!("{t}{}", versions[i].suffix))
                    })
                });
                if !said {
                    let v = &versions[u];
                    self.diags.push(
                        Diag::error(v.span, format!("which version of `{}` is the newest, for tag `{}`?", v.image, profile.extra_tags.join("`, `")))
                            .label(format!("`{}` does not order as a release number", v.version))
                            .help(format!("give the newest version the tag itself, e.g. `version \"…\" {{ tag \"{}\" \"{}\" }}`", v.version, profile.extra_tags[0])),
                    );
                }
                continue;
            }
            let mut newest = members[0];
            for &i in &members[1..] {
                if version_order::compare(&versions[i].version, &versions[newest].version).is_gt() {
                    newest = i;
                }
            }
            picks.push(newest);
        }
        for i in picks {
            let v = &mut versions[i];
            for t in &profile.extra_tags {
                let tag = format!("{t}{}", v.suffix);
                if !v.tags.contains(&tag) {
                    v.tags.push(tag);
                }
            }
        }
    }

    /// A `builder` with an endpoint routes builds to another machine, which only buildx can
    /// reach: under buildah or podman those builds would silently run here, emulated.
    fn check_builder_backend(&mut self, profile: &Profile, versions: &[ImageVersion]) {
        if profile.backend == Backend::Buildx {
            return;
        }
        for b in &self.raw.builders {
            let Some(endpoint) = &b.endpoint else {
                continue;
            };
            let used = versions
                .iter()
                .flat_map(|v| &v.platforms)
                .any(|p| b.platforms.iter().any(|bp| bp.value == p.platform.as_str()));
            if used {
                self.diags.push(
                    Diag::error(
                        endpoint.span,
                        format!(
                            "builder `{}` builds on another machine, which the {} backend cannot reach",
                            b.name.value, profile.backend
                        ),
                    )
                    .label(format!("profile `{}` uses {}", profile.name, profile.backend))
                    .help("use `backend \"buildx\"` in this profile, or take the platform out of the builder (it then builds here, emulated)"),
                );
            }
        }
    }

    /// Every node's files (`.mab/logs/`, digests, metadata, layouts) are named after its id
    /// made safe as a file name; two ids that come out the same would share them (one build
    /// reading the other's digest). Such names are refused, naming both.
    fn check_file_names(&mut self, versions: &[ImageVersion], mirrors: &[Mirror]) {
        use crate::plan::command::file_stem;
        // Image versions and mirror tags have ids of their own prefixes (`build:`, `mirror:`).
        type Seen = HashMap<String, (SourceSpan, String)>;
        let check = |seen: &mut Seen, name: String, span: SourceSpan, diags: &mut Diagnostics| {
            let stem = file_stem(&name);
            match seen.get(&stem) {
                Some((first, other)) if *other != name => diags.push(
                    Diag::error(span, format!("`{name}` and `{other}` would share the file names `{stem}`"))
                        .label(format!("`{name}`"))
                        .also(*first, format!("`{other}`"))
                        .help("`/`, `:`, `@` and `_` all become `_` in file names: rename one of the two images or versions"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(stem, (span, name));
                }
            }
        };
        let mut seen = Seen::new();
        for v in versions {
            check(&mut seen, v.key.clone(), v.span, &mut self.diags);
        }
        let mut seen = Seen::new();
        for m in mirrors {
            for t in &m.tags {
                check(
                    &mut seen,
                    format!("{}:{t}", m.name),
                    m.span,
                    &mut self.diags,
                );
            }
        }
    }

    /// Two nodes publishing the same `repository:tag` is an error naming both.
    fn check_tags(&mut self, versions: &[ImageVersion], mirrors: &[Mirror]) {
        let mut seen: HashMap<(String, String), (SourceSpan, String)> = HashMap::new();
        let mut check =
            |repo: &str, tag: &str, span: SourceSpan, who: String, diags: &mut Diagnostics| {
                let key = (repo.to_owned(), tag.to_owned());
                match seen.get(&key) {
                    Some((first, other)) => diags.push(
                        Diag::error(span, format!("`{repo}:{tag}` would be published twice"))
                            .label(format!("by {who}"))
                            .also(*first, format!("and by {other}"))
                            .help("give one of them another tag, version or variant suffix"),
                    ),
                    None => {
                        seen.insert(key, (span, who));
                    }
                }
            };
        for v in versions {
            for t in &v.tags {
                check(
                    &v.repository,
                    t,
                    v.span,
                    format!("`{}`", v.key),
                    &mut self.diags,
                );
            }
        }
        for m in mirrors {
            for t in &m.tags {
                check(
                    &m.repository,
                    t,
                    m.span,
                    format!("mirror `{}`", m.name),
                    &mut self.diags,
                );
            }
        }
    }

    /// A dependent cannot build a platform its base does not provide.
    fn check_platform_coverage(&mut self, versions: &[ImageVersion], mirrors: &[Mirror]) {
        for v in versions {
            for f in &v.froms {
                let (name, provided): (String, Vec<&str>) = match &f.dep {
                    Dep::Image(i) => (
                        versions[*i].key.clone(),
                        versions[*i].platform_names().collect(),
                    ),
                    Dep::Mirror(m, tag) => match &mirrors[*m].platforms {
                        Some(p) => (
                            format!("mirror:{}:{tag}", mirrors[*m].name),
                            p.iter().map(Platform::as_str).collect(),
                        ),
                        None => continue,
                    },
                };
                let missing: Vec<&str> = v
                    .platform_names()
                    .filter(|p| !provided.contains(p))
                    .collect();
                if !missing.is_empty() {
                    self.diags.push(
                        Diag::error(
                            f.span,
                            format!(
                                "`{}` builds {} but `{name}` does not provide it",
                                v.key,
                                missing.join(", ")
                            ),
                        )
                        .label(format!("provides only {}", provided.join(", ")))
                        .help(format!(
                            "add the platform to `{name}`, or remove it from `{}`",
                            v.key
                        )),
                    );
                }
            }
        }
    }
}

fn platform_list(list: &[Spanned<String>], diags: &mut Diagnostics) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in list {
        match Platform::parse(&p.value) {
            Ok(pl) if out.contains(&pl) => diags.push(
                Diag::error(p.span, format!("platform `{}` is listed twice", p.value))
                    .label("listed again"),
            ),
            Ok(pl) => out.push(pl),
            Err(e) => diags.push(
                Diag::error(p.span, e.message())
                    .label("unknown platform")
                    .help(e.help()),
            ),
        }
    }
    out
}

/// `IMAGE:TAG` or `mirror:NAME:TAG` → [`Dep`].
fn resolve_reference(
    reference: &str,
    span: SourceSpan,
    keys: &HashMap<String, usize>,
    raw: &RawManifest,
    mirrors: &[Mirror],
    diags: &mut Diagnostics,
) -> Option<Dep> {
    if let Some(rest) = reference.strip_prefix("mirror:") {
        let Some((name, tag)) = rest.split_once(':') else {
            diags.push(
                Diag::error(span, format!("`{reference}` names no tag"))
                    .label("expected mirror:NAME:TAG")
                    .help("write the tag, e.g. `mirror:alpine:3.15`"),
            );
            return None;
        };
        let Some(mi) = mirrors.iter().position(|m| m.name == name) else {
            diags.push(
                Diag::error(span, format!("unknown mirror `{name}`"))
                    .label("no `mirror` of this name")
                    .help_opt(suggest::did_you_mean(
                        name,
                        mirrors.iter().map(|m| m.name.as_str()),
                    )),
            );
            return None;
        };
        if !mirrors[mi].tags.iter().any(|t| t == tag) {
            let tags = mirrors[mi].tags.iter().map(String::as_str);
            diags.push(
                Diag::error(span, format!("mirror `{name}` does not copy tag `{tag}`"))
                    .label("unknown tag")
                    .help(suggest::did_you_mean(tag, tags.clone()).unwrap_or_else(|| {
                        format!(
                            "add it to the mirror's `tags`; it copies {}",
                            suggest::list(tags)
                        )
                    })),
            );
            return None;
        }
        return Some(Dep::Mirror(mi, tag.to_owned()));
    }
    let Some((image, tag)) = reference.split_once(':') else {
        diags.push(
            Diag::error(span, format!("`{reference}` names no version"))
                .label("expected IMAGE:VERSION or mirror:NAME:TAG")
                .help_opt(
                    raw.images
                        .iter()
                        .find(|i| i.name.value == reference)
                        .map(|i| {
                            format!(
                                "pick one of its versions: {}",
                                suggest::list(i.versions.iter().map(|v| v.name.value.as_str()))
                            )
                        }),
                ),
        );
        return None;
    };
    if let Some(i) = keys.get(reference) {
        return Some(Dep::Image(*i));
    }
    match raw.images.iter().find(|i| i.name.value == image) {
        None if image.contains('/') || image.contains('.') => {
            diags.push(
                Diag::error(
                    span,
                    format!("`{reference}` is not an image of this manifest"),
                )
                .label("upstream reference")
                .help("declare a `mirror` for upstream images and write `mirror:NAME:TAG`"),
            );
        }
        None => diags.push(
            Diag::error(span, format!("unknown image `{image}`"))
                .label("no `image` of this name")
                .help_opt(suggest::did_you_mean(
                    image,
                    raw.images.iter().map(|i| i.name.value.as_str()),
                )),
        ),
        Some(_) => {
            let mut known_sorted: Vec<&str> = keys
                .keys()
                .filter_map(|k| k.strip_prefix(image).and_then(|r| r.strip_prefix(':')))
                .collect();
            known_sorted.sort_unstable();
            diags.push(
                Diag::error(span, format!("image `{image}` has no version `{tag}`"))
                    .label("unknown version")
                    .help(
                        suggest::did_you_mean(tag, known_sorted.iter().copied()).unwrap_or_else(
                            || {
                                format!(
                                    "its versions: {}",
                                    suggest::list(known_sorted.iter().copied())
                                )
                            },
                        ),
                    ),
            );
        }
    }
    None
}

/// Append `:tag` unless the reference already has a tag or digest.
fn with_default_tag(reference: &str, tag: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:{tag}")
    }
}

/// Why a string is not a valid OCI tag, if it is not.
pub fn tag_problem(tag: &str) -> Option<&'static str> {
    let mut chars = tag.chars();
    match chars.next() {
        None => Some("empty tag"),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            Some("a tag starts with a letter, digit or `_`")
        }
        _ if tag.len() > 128 => Some("a tag is at most 128 characters"),
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) => {
            Some("a tag holds only letters, digits, `_`, `.` and `-`")
        }
        _ => None,
    }
}

/// Why `reference` is not a valid image reference by the distribution grammar (which buildx,
/// buildah and the registry apply), if it is not. Whatever reaches a command's comma-separated
/// options (`--cache-to type=registry,ref=…`, `--output …,name=…`) must pass it: a comma or an
/// `=` cannot.
fn reference_problem(reference: &str) -> Option<String> {
    // The grammar of distribution/reference (what oci-client and oci-spec parse with), in ASCII
    // classes: their pattern's Unicode `\w` costs 100 ms and 25 MiB to compile, which a plan of
    // 10,000 builds would pay on every run.
    static GRAMMAR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    const COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    const DOMAIN: &str = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)";
    let re = GRAMMAR.get_or_init(|| {
        let pattern = format!(
            r"^(?:{DOMAIN}/)?{COMPONENT}(?:/{COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
        );
        regex::Regex::new(&pattern).expect("the reference grammar is a valid pattern")
    });
    if reference.is_empty() {
        return Some("not a valid image reference: empty".to_owned());
    }
    if reference.len() > 255 + 128 + 80 {
        return Some("not a valid image reference: too long".to_owned());
    }
    (!re.is_match(reference)).then(|| {
        "not a valid image reference: lowercase path components of letters and digits, one `.`, `_`, `__` or dashes between them; a host[:port] first".to_owned()
    })
}

/// Why a name is not a valid repository path component, if it is not.
fn name_problem(name: &str) -> Option<&'static str> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars {
        Some("only lowercase letters, digits, `.`, `_`, `-` and `/`")
    } else if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) || name.contains("//")
    {
        Some("must start and end with a letter or digit")
    } else if reference_problem(&format!("r.example/{name}")).is_some() {
        Some("between letters and digits: one `.` or `_`, `__`, or dashes")
    } else {
        None
    }
}

fn registry_problem(registry: &str) -> Option<(&'static str, &'static str)> {
    if registry.contains("://") {
        Some((
            "a scheme is not part of a registry",
            "write the host and path only, e.g. `registry.example.com/team`; mark plain-HTTP registries `insecure=#true`",
        ))
    } else if registry.is_empty() || registry.contains(char::is_whitespace) {
        Some((
            "empty or contains spaces",
            "write the host and path, e.g. `registry.example.com/team`",
        ))
    } else if registry.chars().any(|c| c.is_ascii_uppercase()) && registry.contains('/') && {
        let path = registry.split_once('/').map_or("", |x| x.1);
        path.chars().any(|c| c.is_ascii_uppercase())
    } {
        Some((
            "repository paths are lowercase",
            "write the path in lowercase",
        ))
    } else {
        None
    }
}

fn upstream_problem(source: &str) -> Option<(&'static str, &'static str)> {
    let last = source.rsplit('/').next().unwrap_or(source);
    if source.contains("://") {
        Some((
            "a scheme is not part of a reference",
            "write e.g. `docker.io/library/alpine`",
        ))
    } else if last.contains(':') || last.contains('@') {
        Some((
            "the tag belongs in `tags`",
            "write the repository here and list the tags in the block: `tags \"3.15\"`",
        ))
    } else if source.is_empty() {
        Some(("empty reference", "write e.g. `docker.io/library/alpine`"))
    } else {
        None
    }
}

/// What buildx attaches when nothing is said: a provenance attestation, minimal mode.
pub const DEFAULT_ATTEST: &str = "type=provenance,mode=min";

fn attest_type(request: &str) -> Option<&str> {
    request.split(',').find_map(|kv| kv.strip_prefix("type="))
}

/// Check one attestation request (`type=provenance,mode=max`), as buildx parses `--attest`:
/// comma-separated `key=value` pairs. Returns its type.
fn attest_request(request: &str) -> Result<&str, String> {
    if let Some(c) = request.chars().find(|c| c.is_control() || *c == '"') {
        return Err(format!("{c:?} cannot appear in an attestation request"));
    }
    let mut kind = None;
    for kv in request.split(',') {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("`{kv}` is not `key=value`"));
        };
        match (k, v) {
            ("type", "provenance" | "sbom") => kind = Some(v),
            ("type", other) => {
                return Err(format!(
                    "unknown type `{other}`: expected provenance or sbom"
                ));
            }
            ("mode", m) if m != "min" && m != "max" => {
                return Err(format!("unknown mode `{m}`: expected min or max"));
            }
            ("disabled", d) if d != "true" && d != "false" => {
                return Err(format!("`disabled={d}`: expected true or false"));
            }
            ("", _) | (_, "") => return Err(format!("`{kv}` is not `key=value`")),
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| "no `type=` (provenance or sbom)".to_owned())?;
    if kind == "sbom" && request.split(',').any(|kv| kv.starts_with("mode=")) {
        return Err("`mode` is a provenance setting".to_owned());
    }
    Ok(kind)
}

/// Why a path relative to the manifest leaves its directory (absolute, or `..` above it).
fn outside_problem(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("an absolute path");
    }
    let mut depth: i64 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Some("`..` leads above the manifest's directory");
                }
            }
            _ => depth += 1,
        }
    }
    None
}

#[cfg(test)]
mod reference_tests {
    use super::reference_problem;

    /// The ASCII grammar accepts and rejects what oci-client's parser does.
    #[test]
    fn the_reference_grammar_agrees_with_oci_client() {
        for r in [
            "alpine",
            "library/alpine:3.20",
            "registry.example.com:5000/team/a__b/c-d.e:v1.2_x",
            "127.0.0.1:5000/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost/x:1",
            "r.example/t,push=false/x",
            "r.example/c,type=local,dest=/tmp/x:1",
            "a..b",
            "a___b",
            "a.-b",
            "A/b",
            "x:",
            "x:tag with space",
            "-x",
            "x/",
            "Registry.Example.com/x",
        ] {
            assert_eq!(
                reference_problem(r).is_none(),
                r.parse::<oci_client::Reference>().is_ok(),
                "{r}"
            );
        }
    }
}
