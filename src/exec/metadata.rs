//! Split builds: what a build job leaves for `mab merge` — one file per build node, written
//! once its test passed, named after the node so no two builds share one.

use std::path::PathBuf;

use serde::Serialize;

use crate::plan::command::file_stem;
use crate::plan::{Node, NodeId};
use crate::registry::is_digest;

/// What a split build leaves for `mab merge`: one file per build node.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BuildMetadata {
    pub id: NodeId,
    pub image: String,
    pub key: String,
    pub platform: String,
    pub repository: String,
    pub digest: String,
}

/// The metadata of build `id`, written when `node` (the build, or its test) succeeded.
pub(super) fn write(
    dir: &std::path::Path,
    id: &NodeId,
    node: &Node,
    digest: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let m = BuildMetadata {
        id: id.clone(),
        image: node.image().map(|i| i.name.clone()).unwrap_or_default(),
        key: node.key().unwrap_or_default().to_owned(),
        platform: node.platform().unwrap_or_default().to_owned(),
        repository: node.reference().to_owned(),
        digest: digest.to_owned(),
    };
    let path = dir.join(format!("{}.json", file_stem(&id.to_string())));
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&m).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// What is wrong with a directory of split-build metadata.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: std::io::Error },
    #[error("malformed metadata file {path}: {why}")]
    Malformed {
        path: String,
        why: serde_json::Error,
    },
    #[error("malformed digest in {0}")]
    Digest(String),
    /// A file named after another build: renamed or written over.
    #[error("{path} holds the metadata of `{id}`, which belongs in {expected}")]
    Misplaced {
        path: String,
        id: String,
        expected: String,
    },
}

/// Read every metadata file of a directory (split builds).
pub fn read(dir: &std::path::Path) -> Result<Vec<BuildMetadata>, MetadataError> {
    let read_error = |p: &std::path::Path, why| MetadataError::Read {
        path: p.display().to_string(),
        why,
    };
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
    {
        let text = std::fs::read(&p).map_err(|e| read_error(&p, e))?;
        let m: BuildMetadata =
            serde_json::from_slice(&text).map_err(|why| MetadataError::Malformed {
                path: p.display().to_string(),
                why,
            })?;
        if !is_digest(&m.digest) {
            return Err(MetadataError::Digest(p.display().to_string()));
        }
        // A file is named after the build it speaks of; another name means it was renamed or
        // written over, and cannot be trusted to be the only one of its build.
        let expected = format!("{}.json", file_stem(&m.id.to_string()));
        if p.file_name().and_then(|f| f.to_str()) != Some(expected.as_str()) {
            return Err(MetadataError::Misplaced {
                path: p.display().to_string(),
                id: m.id.to_string(),
                expected,
            });
        }
        out.push(m);
    }
    Ok(out)
}

/// Remove what an earlier run wrote for build `id`.
pub(super) fn remove(dir: &std::path::Path, id: &NodeId) {
    let _ = std::fs::remove_file(dir.join(format!("{}.json", file_stem(&id.to_string()))));
}
