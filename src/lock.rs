//! `images.lock`: the upstream digest of every mirrored tag, so a scheduled rebuild is
//! reproducible (`mab build --locked`) and a base bump is a reviewed diff
//! (`mab mirror --update-lock`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::NodeId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    /// `NAME:TAG` of each mirrored tag → what upstream held when the lock was written.
    pub mirrors: BTreeMap<String, Locked>,
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
