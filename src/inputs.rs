//! Input hashes of build nodes: what a build depends on, and which of it changed.
//!
//! Each input is a named component — `context` (every file the build can see, with the
//! Dockerfile), `target`, `platform`, `backend`, `arg:NAME` (a base mab pins is resolved to
//! its image for the build's platform, not the index the build pins: see `exec::reuse`),
//! `base:REF` (each upstream base at its pinned digest), `label:NAME`, `annotation:KEY`
//! (manifest level). The input hash covers them all; a second label
//! carries a short fingerprint of each, so a changed hash can say which input changed.
//!
//! Nothing published may let anyone test a guess of a build arg's value: a plain hash of
//! `hunter2` is confirmed by hashing `hunter2`. So an arg's fingerprint is a hash *keyed* with
//! the context hash — a digest of every file the build sees, which a reader of the published
//! image does not have (the input hash itself covers the context hash too). Whoever has the
//! context has the manifest, and with it the values; secrets proper are `secret`s, which are
//! in no hash at all. When the context changed, args cannot be compared, and are not.

use std::collections::BTreeMap;
use std::path::Path;

use crate::manifest::model::Backend;
use crate::plan::command::{Arg, Part};
use crate::plan::{BuildWork, Node, NodeId};

/// The label with the input hash.
pub const INPUT_LABEL: &str = "io.mab.input-hash";
/// The label with the per-input fingerprints (JSON).
pub const INPUTS_LABEL: &str = "io.mab.inputs";
/// The label with the digest of each upstream base (JSON; public digests of public images),
/// so a rebuild can say which base moved, from what to what.
pub const BASES_LABEL: &str = "io.mab.bases";

/// Why a build's inputs cannot be known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A node this one pins has published no digest.
    #[error("no digest from `{0}`")]
    NoDigest(String),
    /// A file placeholder (an image ID) exists only once the node runs.
    #[error("`{0}` is read only when the node runs")]
    NotYet(String),
    /// The context could not be read.
    #[error("cannot hash the context {context}: {why}")]
    Context { context: String, why: String },
}

/// Resolve an argument's digest placeholders through `digest` (a node's) and `upstream` (an
/// upstream reference's for a platform).
pub fn resolve(
    arg: &Arg,
    digest: &dyn Fn(&NodeId) -> Option<String>,
    upstream: &dyn Fn(&str, Option<&str>) -> Option<String>,
) -> Result<String, InputError> {
    let mut s = String::new();
    for p in &arg.0 {
        match p {
            Part::Lit(l) => s.push_str(l),
            Part::Digest(id) => {
                s.push_str(&digest(id).ok_or_else(|| InputError::NoDigest(id.to_string()))?)
            }
            Part::Upstream {
                reference,
                platform,
            } => s.push_str(
                &upstream(reference, platform.as_deref())
                    .ok_or_else(|| InputError::NoDigest(reference.clone()))?,
            ),
            Part::File(path) => return Err(InputError::NotYet(path.clone())),
        }
    }
    Ok(s)
}

/// The components of the inputs of `node`, a build (`build` its payload), given its
/// context hash.
pub fn components(
    node: &Node,
    build: &BuildWork,
    context_hash: &str,
    digest: &dyn Fn(&NodeId) -> Option<String>,
    upstream: &dyn Fn(&str, Option<&str>) -> Option<String>,
) -> Result<BTreeMap<String, String>, InputError> {
    let mut c = BTreeMap::new();
    c.insert("context".to_owned(), context_hash.to_owned());
    c.insert("dockerfile".to_owned(), build.dockerfile.clone());
    c.insert(
        "target".to_owned(),
        build.target.clone().unwrap_or_default(),
    );
    c.insert(
        "platform".to_owned(),
        node.platform().unwrap_or_default().to_owned(),
    );
    c.insert(
        "backend".to_owned(),
        node.publish.backend.as_str().to_owned(),
    );
    if let Some(attest) = &build.attest {
        c.insert("attest".to_owned(), attest.join("\n"));
    }
    for (k, a) in &build.args {
        c.insert(format!("arg:{k}"), resolve(a, digest, upstream)?);
    }
    // Every upstream base, at the digest the build pins it to.
    for b in &build.bases {
        let d = upstream(&b.reference, b.platform.as_deref())
            .ok_or_else(|| InputError::NoDigest(b.reference.clone()))?;
        c.insert(format!("base:{}", b.reference), d);
    }
    for (k, v) in build
        .labels
        .iter()
        .filter(|(k, _)| *k != INPUT_LABEL && *k != INPUTS_LABEL && *k != BASES_LABEL)
    {
        c.insert(format!("label:{k}"), v.clone());
    }
    for (k, v) in &build.annotations {
        c.insert(format!("annotation:{k}"), v.clone());
    }
    Ok(c)
}

/// `blake3:<hex>` over every component.
pub fn hash(components: &BTreeMap<String, String>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"mab-input=1\n");
    for (k, v) in components {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    format!("blake3:{}", h.finalize().to_hex())
}

/// A short fingerprint of each component, for the `io.mab.inputs` label; those of build args
/// are keyed with the context hash (see the module documentation).
pub fn fingerprints(components: &BTreeMap<String, String>) -> String {
    let context = components.get("context").map_or("", String::as_str);
    let key = blake3::derive_key("mab 2026 build-arg fingerprints", context.as_bytes());
    let map: BTreeMap<&str, String> = components
        .iter()
        .map(|(k, v)| {
            let h = if k.starts_with("arg:") {
                blake3::keyed_hash(&key, v.as_bytes())
            } else {
                blake3::hash(v.as_bytes())
            };
            (k.as_str(), h.to_hex()[..16].to_owned())
        })
        .collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// Which inputs differ between published fingerprints and the current components.
pub fn changed(published: &str, components: &BTreeMap<String, String>) -> Vec<String> {
    let Ok(old) = serde_json::from_str::<BTreeMap<String, String>>(published) else {
        return Vec::new();
    };
    let new: BTreeMap<String, String> =
        serde_json::from_str(&fingerprints(components)).unwrap_or_default();
    // Arg fingerprints are keyed with the context hash: comparable only while it is unchanged.
    let comparable = old.get("context") == new.get("context");
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, _)| comparable || !k.starts_with("arg:"))
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    out
}

/// The `io.mab.bases` label: each upstream base's digest, when the build has any.
pub fn bases_label(components: &BTreeMap<String, String>) -> Option<String> {
    let bases: BTreeMap<&str, &str> = components
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("base:")?, v.as_str())))
        .collect();
    (!bases.is_empty()).then(|| serde_json::to_string(&bases).unwrap_or_default())
}

/// Say which inputs changed, in words; a moved upstream base first, with the digest the
/// published image was built on (`published`, its `io.mab.bases` label) and the one now.
pub fn describe_moves(
    changed: &[String],
    published: &str,
    components: &BTreeMap<String, String>,
) -> String {
    let old: BTreeMap<String, String> = serde_json::from_str(published).unwrap_or_default();
    let mut moved = Vec::new();
    let mut rest = Vec::new();
    for c in changed {
        match c.strip_prefix("base:") {
            Some(name) => moved.push(match (old.get(name), components.get(c)) {
                (Some(from), Some(to)) => format!("`{name}` moved: {from} → {to}"),
                (None, Some(to)) => format!("`{name}` is a new base ({to})"),
                _ => format!("base `{name}` changed"),
            }),
            None => rest.push(c.clone()),
        }
    }
    if moved.is_empty() {
        return describe(changed);
    }
    if rest.is_empty() {
        moved.join("; ")
    } else {
        format!("{}; {}", moved.join("; "), describe(&rest))
    }
}

/// Say which inputs changed, in words.
pub fn describe(changed: &[String]) -> String {
    let words: Vec<String> = changed
        .iter()
        .map(|c| match c.split_once(':') {
            Some(("arg", name)) => format!("build arg `{name}`"),
            Some(("base", name)) => format!("base `{name}`"),
            Some(("label", name)) => format!("label `{name}`"),
            _ if c == "context" => "files of the context".to_owned(),
            _ => format!("`{c}`"),
        })
        .collect();
    if words.is_empty() {
        "inputs changed".to_owned()
    } else {
        format!("changed: {}", words.join(", "))
    }
}

/// The context hash of a build for `backend` (`context` and `dockerfile` are relative to
/// `workdir`).
pub fn context_hash(
    context: &str,
    dockerfile: &str,
    backend: Backend,
    workdir: &Path,
) -> Result<String, InputError> {
    crate::hash::hash_context(
        &workdir.join(context),
        &workdir.join(dockerfile),
        crate::hash::Rules::of(backend),
    )
    .map(|h| h.digest)
    .map_err(|e| InputError::Context {
        context: context.to_owned(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_what_changed() {
        let mut a = BTreeMap::new();
        a.insert("context".to_owned(), "blake3:1".to_owned());
        a.insert("arg:BASE".to_owned(), "r/base@sha256:1".to_owned());
        let published = fingerprints(&a);
        assert!(changed(&published, &a).is_empty());
        let mut b = a.clone();
        b.insert("arg:BASE".to_owned(), "r/base@sha256:2".to_owned());
        assert_eq!(changed(&published, &b), ["arg:BASE"]);
        assert_eq!(
            describe(&changed(&published, &b)),
            "changed: build arg `BASE`"
        );
        assert_ne!(hash(&a), hash(&b));
        assert!(
            !published.contains("sha256:1"),
            "values are not published: {published}"
        );
    }

    /// A reader of the label holds every published value but not the context: hashing a
    /// guess of an arg's value, plainly or keyed with anything public, must not match.
    #[test]
    fn published_fingerprints_do_not_confirm_a_guessed_arg() {
        let mut c = BTreeMap::new();
        c.insert("context".to_owned(), "blake3:private-context".to_owned());
        c.insert("arg:TOKEN".to_owned(), "hunter2".to_owned());
        c.insert("platform".to_owned(), "linux/amd64".to_owned());
        let published: BTreeMap<String, String> = serde_json::from_str(&fingerprints(&c)).unwrap();
        let fp = &published["arg:TOKEN"];
        let guess = |h: blake3::Hash| h.to_hex()[..16].to_owned();
        assert_ne!(fp, &guess(blake3::hash(b"hunter2")));
        // Keyed with what the label itself publishes (the context's fingerprint): no match.
        let public = blake3::derive_key(
            "mab 2026 build-arg fingerprints",
            published["context"].as_bytes(),
        );
        assert_ne!(fp, &guess(blake3::keyed_hash(&public, b"hunter2")));
        // The same value under another context fingerprints differently.
        let mut other = c.clone();
        other.insert("context".to_owned(), "blake3:other".to_owned());
        let o: BTreeMap<String, String> = serde_json::from_str(&fingerprints(&other)).unwrap();
        assert_ne!(fp, &o["arg:TOKEN"]);
        // With the context unchanged, a changed arg is still named; with it changed, args are
        // not compared (they would all differ) and the context is what is named.
        let mut b = c.clone();
        b.insert("arg:TOKEN".to_owned(), "hunter3".to_owned());
        assert_eq!(changed(&fingerprints(&c), &b), ["arg:TOKEN"]);
        assert_eq!(changed(&fingerprints(&c), &other), ["context"]);
    }
}
