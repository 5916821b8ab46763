//! `images.lock`: the upstream digest of every mirrored tag and of every base a Dockerfile
//! names without the manifest declaring it, so a scheduled rebuild is reproducible
//! (`mab build --locked`) and a base bump is a reviewed diff (`mab mirror --update-lock`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::NodeId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    /// `NAME:TAG` of each mirrored tag → what upstream held when the lock was written.
    pub mirrors: BTreeMap<String, Locked>,
    /// Each undeclared base (`REPOSITORY:TAG` as the Dockerfile names it) → platform (or
    /// [`INDEX`], when a build pins the whole index) → digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bases: BTreeMap<String, BTreeMap<String, String>>,
}

/// The platform key of a base pinned to its whole index.
pub const INDEX: &str = "index";

/// The lock's platform key of a base pin (`None`: the whole index).
pub fn platform_key(platform: Option<&str>) -> &str {
    platform.unwrap_or(INDEX)
}

/// How a base pin is named in messages: `REF for PLATFORM`, or `REF` (its index).
pub fn base_name(reference: &str, platform: Option<&str>) -> String {
    match platform {
        Some(p) => format!("{reference} for {p}"),
        None => reference.to_owned(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locked {
    /// The upstream reference, `REPOSITORY:TAG`.
    pub source: String,
    pub digest: String,
}

/// `images.kdl` → `images.lock`, in the same directory.
pub fn path_for(manifest: &Path) -> PathBuf {
    manifest.with_extension("lock")
}

/// The lock key of a mirror node id (`mirror:alpine:3.15` → `alpine:3.15`).
pub fn key(node_id: &NodeId) -> String {
    match node_id {
        NodeId::Mirror { name, tag } => format!("{name}:{tag}"),
        other => other.to_string(),
    }
}

/// What is wrong with a lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: std::io::Error },
    #[error("{path} is not a lock file: {why}")]
    Malformed {
        path: String,
        why: serde_json::Error,
    },
    #[error("{path} has version {version}; this mab reads version 1")]
    Version { path: String, version: u32 },
    #[error("cannot write {path}: {why}")]
    Write { path: String, why: std::io::Error },
}

impl Lock {
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let p = || path.display().to_string();
        let text = std::fs::read(path).map_err(|why| LockError::Read { path: p(), why })?;
        let lock: Lock =
            serde_json::from_slice(&text).map_err(|why| LockError::Malformed { path: p(), why })?;
        if lock.version != 1 {
            return Err(LockError::Version {
                path: p(),
                version: lock.version,
            });
        }
        Ok(lock)
    }

    /// The locked digest of base `reference` for `platform` (`None`: its index).
    pub fn base(&self, reference: &str, platform: Option<&str>) -> Option<&String> {
        self.bases.get(reference)?.get(platform_key(platform))
    }

    /// Write atomically (temporary file, then rename), sorted, newline-terminated.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text).map_err(|why| LockError::Write {
            path: tmp.display().to_string(),
            why,
        })?;
        std::fs::rename(&tmp, path).map_err(|why| LockError::Write {
            path: path.display().to_string(),
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_without_bases_reads_and_bases_are_found_by_platform_or_index() {
        let old: Lock =
            serde_json::from_str(r#"{"version":1,"mirrors":{}}"#).expect("a lock of before bases");
        assert!(old.bases.is_empty());
        let mut lock = old.clone();
        lock.bases.entry("debian:12".into()).or_default().extend([
            ("linux/arm64".to_owned(), "sha256:a".to_owned()),
            (INDEX.to_owned(), "sha256:i".to_owned()),
        ]);
        assert_eq!(
            lock.base("debian:12", Some("linux/arm64")).unwrap(),
            "sha256:a"
        );
        assert_eq!(lock.base("debian:12", None).unwrap(), "sha256:i");
        assert_eq!(lock.base("debian:12", Some("linux/amd64")), None);
        // An empty `bases` is not written: a lock of a manifest without bases is unchanged.
        assert!(!serde_json::to_string(&old).unwrap().contains("bases"));
        assert_eq!(
            base_name("debian:12", Some("linux/arm64")),
            "debian:12 for linux/arm64"
        );
    }
}
