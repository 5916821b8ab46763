//! Stage 3, what images are built from and on: mirrors (upstream, tags, platforms) and
//! builders (buildx nodes, endpoints, runners).

use std::collections::HashMap;

use miette::SourceSpan;

use super::super::model::{Builder, Mirror};
use super::super::platform::Platform;
use super::super::reference::*;
use super::*;
use crate::diag::{Diag, Diagnostics};

impl Resolver<'_> {
    pub(super) fn resolve_mirrors(&mut self, registry: &str) -> Vec<Mirror> {
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

    pub(super) fn resolve_builders(&mut self) -> Vec<Builder> {
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
                && (super::super::model::endpoint_driver(e).is_none()
                    || e.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                diags.push(
                    Diag::error(raw.span, format!("unsupported builder endpoint `{}`", e.escape_debug()))
                        .label("expected tcp://, unix:// or ssh://")
                        .help("a BuildKit daemon: `tcp://host:1234` or `unix:///run/buildkit/buildkitd.sock`; a Docker host: `ssh://user@host`"),
                );
            }
            let name = &b.name.value;
            if !crate::manifest::syntax::is_name(name) {
                diags.push(
                    Diag::error(
                        b.name.span,
                        format!("invalid builder name `{}`", name.escape_debug()),
                    )
                    .label("a buildx builder name")
                    .help(crate::manifest::syntax::NAME_HELP),
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::resolve;

    #[test]
    fn a_mirror_lands_in_the_profile_registry_with_its_platforms() {
        let m = resolve(
            r#"mirror "alpine" from="docker.io/library/alpine" { tags "3.16"; platforms "linux/arm64"; }"#,
            Some("prod"),
            &[],
        )
        .unwrap();
        let mirror = &m.mirrors[0];
        assert!(
            mirror.repository.starts_with("r.example/prod/"),
            "{}",
            mirror.repository
        );
        assert_eq!(mirror.tags, ["3.16"]);
        let platforms: Vec<String> = mirror
            .platforms
            .iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(platforms, ["linux/arm64"]);
    }
}
