//! Stage 2, profiles: the chosen profile and the chain it inherits, its settings, and every
//! other profile validated too (an error in `prod` fails a `dev` plan).

use miette::SourceSpan;

use super::super::kdl_node::Spanned;
use super::super::model::{Backend, Profile};
use super::super::platform::Platform;
use super::super::reference::*;
use super::super::syntax::{RawCache, RawManifest, RawProfile};
use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

/// Validate every profile that is not the chosen one: its inheritance, its own settings
/// (registry, backend, tags, and the image settings it sets — `platforms`, `arg`, `label`,
/// `cache`, `attest` — interpolated with its variables) and the mirrors under its variables.
/// New errors are added to `diags` with the profile named; ones already reported are not
/// repeated.
pub(super) fn other_profiles(
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

/// The chosen profile and the profiles it inherits from: chosen first, root last.
pub(super) fn choose_profile<'a>(
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

impl Resolver<'_> {
    /// The image settings the profile chain sets, as they would be resolved for an image of
    /// it: interpolated (with stand-ins for the image's own variables), platforms known,
    /// cache references and attestation requests well-formed.
    pub(super) fn check_profile_settings(&mut self, profile: &Profile) {
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
            // Annotations are per version, not per platform.
            let unplatformed = Scope {
                platform: None,
                ..scope
            };
            for a in &block.annotations {
                unplatformed.interp(&a.value, &mut diags);
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
                        .label(problem.to_string()),
                    );
                }
            }
        }
        self.diags.extend(diags);
    }

    pub(super) fn resolve_profile(&mut self) -> Profile {
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
        let promoted_from = chosen.promoted_from.as_ref().and_then(|from| {
            let known = self.raw.profiles.iter().any(|p| p.name.value == from.value);
            let problem = if from.value == chosen.name.value {
                Some("a profile cannot be promoted from itself".to_owned())
            } else if !known {
                Some(format!("no profile `{}`", from.value))
            } else {
                None
            };
            match problem {
                Some(label) => {
                    diags.push(
                        Diag::error(from.span, format!("`promoted-from` names `{}`", from.value))
                            .label(label)
                            .help_opt(suggest::did_you_mean(
                                &from.value,
                                self.raw.profiles.iter().map(|p| p.name.value.as_str()),
                            )),
                    );
                    None
                }
                None => Some(from.value.clone()),
            }
        });
        let sign = first(&|p| p.sign.clone()).and_then(|k| {
            let key = match k.value.strip_prefix("env:") {
                Some(var) if crate::manifest::syntax::is_identifier(var) => {
                    crate::manifest::model::SignKey::Env(var.to_owned())
                }
                Some(_) => {
                    diags.push(
                        Diag::error(k.span, format!("invalid key `{}`", k.value.escape_debug()))
                            .label("not an environment variable name")
                            .help("`env:NAME`: letters, digits and `_`, not starting with a digit"),
                    );
                    return None;
                }
                None if k.value.trim().is_empty() || k.value.chars().any(char::is_control) => {
                    diags.push(
                        Diag::error(k.span, "invalid key file")
                            .label("empty, or a control character")
                            .help("a PEM file, relative to the manifest"),
                    );
                    return None;
                }
                None => crate::manifest::model::SignKey::File(k.value.clone()),
            };
            Some(key)
        });
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
            promoted_from,
            sign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, resolve};

    #[test]
    fn the_default_profile_is_chosen_and_a_child_inherits_its_parent() {
        let body = r#"image "a" { version "1"; }"#;
        let dev = resolve(body, None, &[]).unwrap();
        assert_eq!(dev.profile.name, "dev");
        assert_eq!(dev.versions[0].repository, "r.example/dev/a");
        let prod = resolve(body, Some("prod"), &[]).unwrap();
        assert_eq!(prod.profile.name, "prod");
        assert_eq!(prod.versions[0].repository, "r.example/prod/a");
        assert!(prod.versions[0].tags.contains(&"latest".to_owned()));
    }

    #[test]
    fn an_unknown_profile_is_refused() {
        let e = match resolve(r#"image "a" { version "1"; }"#, Some("prdo"), &[]) {
            Ok(_) => panic!("resolved"),
            Err(d) => d.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        };
        assert!(e.iter().any(|m| m.contains("prdo")), "{e:?}");
    }

    #[test]
    fn an_error_in_another_profile_fails_the_default_one() {
        let e = errors(
            r#"profile "broken" { inherits "dev"; backend "bildah"; }
image "a" { version "1"; }"#,
        );
        assert!(e.iter().any(|m| m.contains("bildah")), "{e:?}");
    }
}
