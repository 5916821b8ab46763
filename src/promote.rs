//! Promotion: the exact indexes one profile published, copied to another profile's
//! registry — same digests, children, attestations and signatures — so what `prod` ships is
//! what `dev` tested. The plan of it (`mab plan` on a `promoted-from` profile, `mab promote
//! --dry-run`) and its renderings.

use std::fmt::Write;

use serde::Serialize;

use crate::diag::{Diag, Diagnostics};
use crate::manifest::Model;
use crate::plan::{self, Kind, Selection};
use crate::render::markdown::code;

/// Every image version to promote, in plan order.
#[derive(Clone, Debug, Serialize)]
pub struct Promotion {
    pub from: String,
    pub to: String,
    /// The target profile signs what it receives with its own key (`sign`), after the copy
    /// and before any tag.
    pub sign: bool,
    pub items: Vec<Item>,
}

/// One image version: the index at `source` copied into `repository`, then tagged `tags`.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// `image:version[-variant]`.
    pub version: String,
    /// The repository and tag the source profile published it at.
    pub from_repository: String,
    pub from_tag: String,
    pub repository: String,
    pub tags: Vec<String>,
    /// The tags of `tags` made from the date (`${date}`): written once, never moved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dated_tags: Vec<String>,
    /// Once read from the registry: the index digest at `source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Once read: `copy`, `up-to-date`, `missing` or `refused` (a dated tag would move).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// The promotion of the versions `selectors` pick in `to` (every version without any) from
/// what `from` publishes. A version `from` does not build is an error.
pub fn promotion(from: &Model, to: &Model, selectors: &[String]) -> Result<Promotion, Diagnostics> {
    let picked = plan::select::pick(to, selectors)?;
    let tags_of =
        |model: &Model| -> Result<std::collections::HashMap<String, Vec<String>>, Diagnostics> {
            Ok(plan::plan(model, &Selection::default())?
                .nodes
                .iter()
                .filter(|n| n.kind() == Kind::Merge)
                .filter_map(|n| Some((n.key()?.to_owned(), n.tags().to_vec())))
                .collect())
        };
    let (source_tags, target_tags) = (tags_of(from)?, tags_of(to)?);
    let mut items = Vec::new();
    let mut diags = Diagnostics::new();
    for &i in &picked.versions {
        let v = &to.versions[i];
        let Some(source) = from.versions.iter().find(|s| s.key == v.key) else {
            diags.push(
                Diag::plain(format!(
                    "profile `{}` builds no `{}`: there is nothing to promote",
                    from.profile.name, v.key
                ))
                .help("promote only what the source profile builds"),
            );
            continue;
        };
        // Read at its first tag that is not dated: a dated tag names the day of this run, not
        // the day the source published (with dated tags only, today's is all there is).
        let published = source_tags.get(&v.key).cloned().unwrap_or_default();
        let tag = (published.iter())
            .find(|t| !source.dated_tags.contains(t))
            .or(published.first())
            .cloned()
            .unwrap_or_else(|| source.primary_tag());
        items.push(Item {
            version: v.key.clone(),
            from_repository: source.repository.clone(),
            from_tag: tag,
            repository: v.repository.clone(),
            tags: target_tags
                .get(&v.key)
                .cloned()
                .unwrap_or_else(|| v.tags.clone()),
            dated_tags: v.dated_tags.clone(),
            digest: None,
            decision: None,
        });
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Promotion {
        from: from.profile.name.clone(),
        to: to.profile.name.clone(),
        sign: to.profile.sign.is_some(),
        items,
    })
}

impl Promotion {
    pub fn text(&self) -> String {
        let mut out = format!(
            "promotion from profile `{}` to `{}`: {} image versions\n",
            self.from,
            self.to,
            self.items.len()
        );
        if self.sign {
            let _ = writeln!(
                out,
                "  each index and platform image signed with `{}`'s key before any tag",
                self.to
            );
        }
        for i in &self.items {
            let _ = write!(
                out,
                "  {}  {} -> {} tags {}",
                i.version,
                i.source(),
                i.repository,
                tags(i)
            );
            if let (Some(d), Some(digest)) = (&i.decision, &i.digest) {
                let _ = write!(out, "  {d} {digest}");
            } else if let Some(d) = &i.decision {
                let _ = write!(out, "  {d}");
            }
            out.push('\n');
        }
        out
    }

    /// For the release pull request: a table of what is copied where.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### Promotion from {} to {}\n\n{} image versions are copied byte for byte (indexes, platform images, attestations and signatures, by digest){}, and tagged last.\n\n| version | from | to | tags |",
            code(&self.from),
            code(&self.to),
            self.items.len(),
            match self.sign {
                true => format!(", signed with {}'s key", code(&self.to)),
                false => String::new(),
            }
        );
        let checked = self.items.iter().any(|i| i.decision.is_some());
        out.push_str(if checked {
            " digest | action |\n|---|---|---|---|---|---|\n"
        } else {
            "\n|---|---|---|---|\n"
        });
        for i in &self.items {
            let _ = write!(
                out,
                "| {} | {} | {} | {} |",
                code(&i.version),
                code(i.source()),
                code(&i.repository),
                tags(i)
            );
            if checked {
                let _ = write!(
                    out,
                    " {} | {} |",
                    code(i.digest.as_deref().unwrap_or("-")),
                    i.decision.as_deref().unwrap_or("-")
                );
            }
            out.push('\n');
        }
        out
    }
}

impl Item {
    /// `REPOSITORY:TAG` of the source.
    pub fn source(&self) -> String {
        format!("{}:{}", self.from_repository, self.from_tag)
    }
}

fn tags(i: &Item) -> String {
    i.tags
        .iter()
        .map(|t| format!(":{t}"))
        .collect::<Vec<_>>()
        .join(" ")
}
