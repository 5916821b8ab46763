//! Stage 4, images and versions: the cascade defaults → profile → image → version →
//! variant, per platform; `from` bases resolved to images or mirrors; extra tags.

use std::collections::{BTreeMap, HashMap};

use miette::SourceSpan;

use super::super::kdl_node::Spanned;
use super::super::model::{Cache, From, ImageVersion, Mirror, PlatformSettings, Profile};
use super::super::reference::*;
use super::super::syntax::{RawCache, RawImage, RawSettings, RawVariant, SecretSource};
use super::super::version_order;
use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::manifest::platform::Platform;
use crate::suggest;

impl<'a> Resolver<'a> {
    pub(super) fn resolve_versions(&mut self, profile: &Profile) -> Vec<ImageVersion> {
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

    pub(super) fn version(
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
            clock: None,
        };
        let (context, dockerfile, outside_ok) =
            build_files(&scope, layers, image, version, &mut diags);
        let target = layers
            .last(|b| b.target.as_ref())
            .and_then(|t| scope.interp(t, &mut diags));
        let attest = attestations(&scope, layers, &mut diags);

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

        let tag_scope = Scope {
            clock: Some((&self.clock.0, &self.clock.1)),
            ..scope
        };
        let (tags, dated_tags) = tags(&tag_scope, layers, version, &suffix, &mut diags);
        let (index_annotations, manifest_annotations) = annotations(&scope, layers, &mut diags);

        let per_platform: Vec<PlatformSettings> = platforms
            .iter()
            .map(|platform| {
                let slug = format!("{}{suffix}-{}", version.value, platform.slug());
                platform_settings(&scope, platform, layers, profile, image, &slug, &mut diags)
            })
            .collect();
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
            dated_tags,
            index_annotations,
            commit_annotations: Default::default(),
            manifest_annotations,
            froms: Vec::new(),
            rebuild_after: layers
                .last(|b| b.rebuild_after.as_ref())
                .and_then(|r| r.value.clone()),
            repository: format!("{}/{}", profile.registry, image.name.value),
            span,
            image_span: image.span,
        })
    }

    /// Turn every `from` of every version into a [`Dep`]; needs all version keys first.
    pub(super) fn resolve_froms(&mut self, versions: &mut [ImageVersion], mirrors: &[Mirror]) {
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
            let mut froms: Vec<&super::super::syntax::RawFrom> = Vec::new();
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
                clock: None,
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
    pub(super) fn extra_tags(&mut self, versions: &mut [ImageVersion], profile: &Profile) {
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
}

/// The build context and Dockerfile of a version (relative to the manifest), and whether the
/// manifest lets them leave its directory. They stay inside it unless the manifest says
/// otherwise: `check` prints Dockerfile lines, builds send the context.
fn build_files(
    scope: &Scope,
    layers: &Layers,
    image: &RawImage,
    version: &Spanned<String>,
    diags: &mut Diagnostics,
) -> (String, String, bool) {
    let context = match layers.last(|b| b.context.as_ref()) {
        Some(c) => scope.interp(c, diags).unwrap_or_default(),
        None => format!("images/{}", image.name.value),
    };
    let context = context.trim_end_matches('/').to_owned();
    let dockerfile = match layers.last(|b| b.dockerfile.as_ref()) {
        Some(d) => scope.interp(d, diags).unwrap_or_default(),
        None => "Dockerfile".to_owned(),
    };
    let dockerfile = if context.is_empty() || context == "." {
        dockerfile
    } else {
        format!("{context}/{dockerfile}")
    };
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
    (context, dockerfile, outside_ok)
}

/// The attestation requests of a buildx build: provenance (mode=min) unless asked otherwise.
fn attestations(scope: &Scope, layers: &Layers, diags: &mut Diagnostics) -> Vec<String> {
    match layers.last(|b| b.attest.as_ref()) {
        None => vec![DEFAULT_ATTEST.to_owned()],
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for a in &list.value {
                let Some(v) = scope.interp(a, diags) else {
                    continue;
                };
                match attest_request(&v) {
                    Err(problem) => diags.push(
                        Diag::error(a.span, format!("invalid attestation request `{}`", v.escape_debug()))
                            .label(problem.to_string())
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
            if !list.value.is_empty() && !out.iter().any(|o| attest_type(o) == Some("provenance")) {
                out.insert(0, DEFAULT_ATTEST.to_owned());
            }
            // `type=provenance,disabled=true` is passed on as written: dropping it would
            // let buildx add its default provenance again.
            out
        }
    }
}

/// The annotations of a version, index-level and manifest-level: a later block replaces a key
/// (and its level).
fn annotations(
    scope: &Scope,
    layers: &Layers,
    diags: &mut Diagnostics,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut all: BTreeMap<&str, &super::super::raw::RawAnnotation> = BTreeMap::new();
    for b in &layers.blocks {
        for a in &b.annotations {
            all.insert(&a.key.value, a);
        }
    }
    let (mut index, mut manifest) = (BTreeMap::new(), BTreeMap::new());
    for (key, a) in all {
        let Some(value) = scope.interp(&a.value, diags) else {
            continue;
        };
        if a.level.manifest() {
            manifest.insert(key.to_owned(), value.clone());
        }
        if a.level.index() {
            index.insert(key.to_owned(), value);
        }
    }
    (index, manifest)
}

/// The tags of a version: the last block that declares any wins; inherited ones get the
/// variant suffix. Second, those made from the run's `${date}` or `${time}`.
fn tags(
    scope: &Scope,
    layers: &Layers,
    version: &Spanned<String>,
    suffix: &str,
    diags: &mut Diagnostics,
) -> (Vec<String>, Vec<String>) {
    let tag_block = layers
        .blocks
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, b)| b.tags.as_ref().map(|t| (i, t)));
    match tag_block {
        None => (vec![format!("{}{suffix}", version.value)], Vec::new()),
        Some((i, list)) => {
            let literal = i >= layers.variant_from;
            let (mut tags, mut dated) = (Vec::new(), Vec::new());
            for t in list {
                let Some((v, is_dated)) = scope.interp_dated(t, diags) else {
                    continue;
                };
                let v = if literal { v } else { format!("{v}{suffix}") };
                if let Some(problem) = tag_problem(&v) {
                    diags.push(Diag::error(t.span, format!("invalid tag `{v}`")).label(problem));
                } else if !tags.contains(&v) {
                    if is_dated {
                        dated.push(v.clone());
                    }
                    tags.push(v);
                }
            }
            (tags, dated)
        }
    }
}

/// The settings of one platform of a version: args, labels, test and cache with the
/// platform's variables; the cache tagged `slug` unless it names a tag.
fn platform_settings(
    scope: &Scope,
    platform: &Platform,
    layers: &Layers,
    profile: &Profile,
    image: &RawImage,
    slug: &str,
    diags: &mut Diagnostics,
) -> PlatformSettings {
    let scope = Scope {
        platform: Some(platform),
        ..*scope
    };
    let map = |pairs: Vec<&super::super::syntax::Pair>, diags: &mut Diagnostics| {
        pairs
            .iter()
            .filter_map(|(k, v)| Some((k.value.clone(), scope.interp(v, diags)?)))
            .collect::<BTreeMap<String, String>>()
    };
    let args = map(layers.merged(|b| &b.args), diags);
    let labels = map(layers.merged(|b| &b.labels), diags);
    let test = layers.last(|b| b.test.as_ref()).map(|t| {
        t.value
            .iter()
            .filter_map(|w| scope.interp(&Spanned::new(w.clone(), t.span), diags))
            .collect()
    });
    let cache = match layers.last(|b| b.cache.as_ref()).map(|c| &c.value) {
        Some(RawCache::Disabled) => None,
        Some(RawCache::Repo { repo, mode }) => {
            let r = scope.interp(repo, diags).unwrap_or_default();
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
            let reference = with_default_tag(&r, slug);
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
    PlatformSettings {
        platform: platform.clone(),
        args,
        labels,
        test,
        cache,
        bases: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, resolve};
    use crate::manifest::model::Dep;

    #[test]
    fn a_version_overrides_its_image_which_overrides_the_defaults() {
        let m = resolve(
            r#"defaults { arg "A" "defaults"; arg "B" "defaults"; arg "C" "defaults"; }
image "a" {
    arg "B" "image"
    arg "C" "image"
    version "1" { arg "C" "version"; }
    version "2"
}"#,
            None,
            &[],
        )
        .unwrap();
        let args = |i: usize| {
            let a = &m.versions[i].platforms[0].args;
            (a["A"].clone(), a["B"].clone(), a["C"].clone())
        };
        assert_eq!(
            args(0),
            ("defaults".into(), "image".into(), "version".into())
        );
        assert_eq!(args(1), ("defaults".into(), "image".into(), "image".into()));
    }

    #[test]
    fn annotations_cascade_by_key_and_level_and_dated_tags_are_known() {
        let m = resolve(
            r#"defaults {
    annotation "org.opencontainers.image.vendor" "Acme"
    annotation "org.opencontainers.image.licenses" "MIT" level="both"
}
image "a" {
    annotation "org.opencontainers.image.licenses" "Apache-2.0" level="manifest"
    annotation "org.opencontainers.image.title" "${image} ${version}, \"quoted\", a\nb"
    tag "${version}" "${version}-${date}" "${version}-${date}.${time}"
    version "1"
    version "2" { annotation "org.opencontainers.image.vendor" "Acme, Inc." level="both"; }
}"#,
            None,
            &[],
        )
        .unwrap();
        let [one, two] = &m.versions[..] else {
            panic!("two versions")
        };
        // A later block replaces the key and its level: the licence is manifest-only.
        assert_eq!(
            one.index_annotations.keys().collect::<Vec<_>>(),
            [
                "org.opencontainers.image.title",
                "org.opencontainers.image.vendor"
            ]
        );
        assert_eq!(
            one.manifest_annotations["org.opencontainers.image.licenses"],
            "Apache-2.0"
        );
        assert_eq!(
            one.index_annotations["org.opencontainers.image.title"],
            "a 1, \"quoted\", a\nb"
        );
        assert_eq!(
            two.manifest_annotations["org.opencontainers.image.vendor"],
            "Acme, Inc."
        );
        assert_eq!(
            two.index_annotations["org.opencontainers.image.vendor"],
            "Acme, Inc."
        );
        // `${date}` and `${time}` are the run's, in UTC; only those tags are dated.
        assert_eq!(one.tags[0], "1");
        assert_eq!(&one.dated_tags, &one.tags[1..]);
        assert!(one.tags[1].len() == "1-20261125".len(), "{:?}", one.tags);
        assert!(
            one.tags[2].len() == "1-20261125.103000".len(),
            "{:?}",
            one.tags
        );
    }

    #[test]
    fn from_names_an_image_version_or_a_mirror_tag() {
        let m = resolve(
            r#"mirror "alpine" from="docker.io/library/alpine" { tags "3.16"; }
image "base" { from "mirror:alpine:3.16" arg="BASE"; version "1"; }
image "app" { from "base:${version}" arg="BASE"; version "1"; }"#,
            None,
            &[],
        )
        .unwrap();
        assert!(matches!(&m.versions[0].froms[0].dep, Dep::Mirror(0, t) if t == "3.16"));
        assert!(matches!(&m.versions[1].froms[0].dep, Dep::Image(0)));
        let e = errors(r#"image "app" { from "base:1" arg="BASE"; version "1"; }"#);
        assert!(e.iter().any(|m| m.contains("base")), "{e:?}");
    }
}
