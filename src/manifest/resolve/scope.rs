//! Stage 1, scope and variables: `${…}` interpolation, which names are known where
//! (builtins, per-image, per-platform), and the manifest's `vars` with `--var` overrides.

use std::collections::BTreeMap;

use miette::SourceSpan;

use super::super::interpolate::{InterpError, Lookup, interpolate};
use super::super::kdl_node::Spanned;
use super::super::platform::Platform;
use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::suggest;

pub(super) const BUILTINS: &[&str] = &[
    "version", "image", "variant", "registry", "profile", "platform", "os", "arch", "date", "time",
];
pub(super) const PER_PLATFORM: &str =
    "it is known only per platform: use it in `arg`, `label`, `test` or `cache`";
pub(super) const PER_IMAGE: &str = "it is known only in the settings of an `image`";
pub(super) const IN_TAGS: &str = "the run's date and time are known only in the `tag` of an image, version or variant: anywhere else they would change the image every day";

/// Where a string is interpolated: which variables have values there.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub(super) src: &'a str,
    pub(super) vars: &'a BTreeMap<String, String>,
    pub(super) profile: &'a str,
    pub(super) registry: Option<&'a str>,
    pub(super) image: Option<(&'a str, &'a str, &'a str)>,
    pub(super) platform: Option<&'a Platform>,
    /// `${date}` and `${time}`: set only where tags are read.
    pub(super) clock: Option<(&'a str, &'a str)>,
}

impl Scope<'_> {
    pub(super) fn lookup(&self, name: &str) -> Lookup {
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
            "date" | "time" => match self.clock {
                Some((date, time)) => found(if name == "date" { date } else { time }),
                None => Lookup::NotHere(IN_TAGS),
            },
            other => self.vars.get(other).map_or(Lookup::Unknown, |v| found(v)),
        }
    }

    pub(super) fn interp(&self, s: &Spanned<String>, diags: &mut Diagnostics) -> Option<String> {
        self.interp_dated(s, diags).map(|(v, _)| v)
    }

    /// [`Scope::interp`], and whether the string used the run's `${date}` or `${time}`.
    pub(super) fn interp_dated(
        &self,
        s: &Spanned<String>,
        diags: &mut Diagnostics,
    ) -> Option<(String, bool)> {
        let dated = std::cell::Cell::new(false);
        let lookup = |n: &str| {
            if matches!(n, "date" | "time") {
                dated.set(true);
            }
            self.lookup(n)
        };
        match interpolate(&s.value, &lookup).map(|v| (v, dated.get())) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.push(self.error(s, e));
                None
            }
        }
    }

    /// Point at `${name}` inside the written string when it can be found there.
    pub(super) fn sub_span(&self, s: &Spanned<String>, needle: &str) -> SourceSpan {
        let (start, len) = (s.span.offset(), s.span.len());
        self.src
            .get(start..start + len)
            .and_then(|text| text.find(needle))
            .map_or(s.span, |i| {
                SourceSpan::from(start + i..start + i + needle.len())
            })
    }

    pub(super) fn error(&self, s: &Spanned<String>, e: InterpError) -> Diag {
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

impl Resolver<'_> {
    pub(super) fn resolve_vars(&mut self, overrides: &[(String, String)]) {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, resolve};

    #[test]
    fn a_var_is_overridden_from_the_command_line_and_a_profile_var_wins_over_the_manifest() {
        let body = r#"var "up" "docker.io"
mirror "alpine" from="${up}/library/alpine" { tags "3"; }"#;
        let m = resolve(body, None, &[]).unwrap();
        assert_eq!(m.mirrors[0].source, "docker.io/library/alpine");
        let m = resolve(body, None, &[("up", "127.0.0.1:5000")]).unwrap();
        assert_eq!(m.mirrors[0].source, "127.0.0.1:5000/library/alpine");
    }

    #[test]
    fn an_unknown_variable_is_refused_and_a_close_one_suggested() {
        let e = errors(
            r#"var "upstream" "docker.io"
mirror "a" from="${upstrem}/library/alpine" { tags "3"; }"#,
        );
        assert!(e.iter().any(|m| m.contains("upstrem")), "{e:?}");
    }

    #[test]
    fn per_platform_names_are_known_only_per_platform() {
        let m = resolve(
            r#"image "a" { label "arch" "${arch}"; version "1"; }"#,
            None,
            &[],
        )
        .unwrap();
        let labels: Vec<&str> = m.versions[0]
            .platforms
            .iter()
            .map(|p| p.labels["arch"].as_str())
            .collect();
        assert_eq!(labels, ["amd64"]);
        let e = errors(r#"image "a" { tag "t-${arch}"; version "1"; }"#);
        assert!(e.iter().any(|m| m.contains("arch")), "{e:?}");
    }
}
