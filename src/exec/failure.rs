//! Why a node failed, typed: the command edge decides what to say and advise (a registry
//! that refused the credentials, an upstream tag that moved), the report carries the message.

use crate::inputs::InputError;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// A command of the node exited with a non-zero code.
    #[error("`{command}` exited with {code}")]
    Exited { command: String, code: i32 },
    #[error("`{program}` was killed by a signal")]
    Killed { program: String },
    /// A command could not be started (not installed, not executable).
    #[error("{0}")]
    Spawn(String),
    /// A file the node needs (a digest, image ID or metadata file a command wrote).
    #[error("no {what} {path}: {why}")]
    Missing {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("malformed {what} {path}{found}")]
    Malformed {
        what: &'static str,
        path: String,
        /// `: "…"` — what was found instead, if worth showing.
        found: String,
    },
    #[error("cannot write {what} {path}: {why}")]
    Unwritable {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("the backend reports no digest")]
    NoDigestReported,
    #[error("no image digest in metadata file {0}")]
    NoImageDigest(String),
    /// Fail closed: what a build says it pushed must be in the registry.
    #[error("{reference}@{digest} is not in the registry after the push")]
    NotPushed { reference: String, digest: String },
    #[error("{0} does not exist upstream")]
    NotUpstream(String),
    /// A Dockerfile base with no image for the platform the build pins.
    #[error("base {reference} (a `FROM` of {dockerfile}) {}", match platform {
        Some(p) => format!("has no {p} image"),
        None => "does not exist".to_owned(),
    })]
    NoBase {
        reference: String,
        platform: Option<String>,
        dockerfile: String,
    },
    /// A tag made from the run's date or time already names another index.
    #[error(
        "{reference}:{tag} already holds {current}: a dated tag is written once and never moved; \
         no tag of this version was moved (use `${{time}}` in the tag for more than one release a day)"
    )]
    DatedTagTaken {
        reference: String,
        tag: String,
        current: String,
    },
    #[error("`{0}` is not in the lock file; run `mab mirror --update-lock`")]
    NotLocked(String),
    #[error(
        "upstream {upstream} moved: the lock file has {locked}, upstream now {now}; \
         run `mab mirror --update-lock` and review the change"
    )]
    Moved {
        upstream: String,
        locked: String,
        now: String,
    },
    #[error("{upstream} has no {}", platforms.join(", "))]
    MissingPlatforms {
        upstream: String,
        platforms: Vec<String>,
    },
    #[error("{reference} is {actual} bytes, its index entry says {expected}")]
    SizeMismatch {
        reference: String,
        actual: u64,
        expected: u64,
    },
    #[error("no platform image to merge")]
    NothingToMerge,
    /// A merge stopped between two tags: which hold the new index and which do not.
    #[error(
        "{reference}:{tag}: {cause}; {} — run again to move the rest",
        tag_state(moved, not_moved)
    )]
    PartlyTagged {
        reference: String,
        tag: String,
        cause: Box<Failure>,
        moved: Vec<String>,
        not_moved: Vec<String>,
    },
    /// The sleep backend's injected failure (`MAB_FAIL=1`).
    #[error("MAB_FAIL is set")]
    Injected,
    #[error("internal error: {0}")]
    Internal(String),
}

/// `moved: 1.2, 1; not moved: latest`.
pub fn tag_state(moved: &[String], not_moved: &[String]) -> String {
    let list = |tags: &[String]| {
        if tags.is_empty() {
            "none".to_owned()
        } else {
            tags.join(", ")
        }
    };
    format!(
        "tags holding the new index: {}; not moved: {}",
        list(moved),
        list(not_moved)
    )
}

impl Failure {
    /// What the user can do about it, when there is something.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Failure::PartlyTagged { cause, .. } => cause.help(),
            Failure::Registry(e) if e.is_unauthorized() => Some(
                "the registry refused the credentials: `docker login` to it (mab reads the Docker config and its credential helpers)",
            ),
            Failure::Registry(RegistryError::Transport { .. }) => {
                Some("the registry did not answer: is it up, and is the address right?")
            }
            Failure::Moved { .. } | Failure::NotLocked(_) => {
                Some("`mab mirror --update-lock` records what upstream holds now")
            }
            Failure::Spawn(_) => Some("`mab check` says what this machine lacks"),
            Failure::NoBase { .. } => Some(
                "every `FROM` of a Dockerfile is pinned to its digest for the platform built: is the tag right, and does it have that platform?",
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_reports_and_advice_follows_the_kind() {
        let moved = Failure::Moved {
            upstream: "docker.io/library/alpine:3.16".into(),
            locked: "sha256:aa".into(),
            now: "sha256:bb".into(),
        };
        assert!(moved.to_string().starts_with(
            "upstream docker.io/library/alpine:3.16 moved: the lock file has sha256:aa, upstream now sha256:bb"
        ));
        assert!(moved.help().unwrap().contains("--update-lock"));
        let refused = Failure::from(RegistryError::Status {
            what: "HEAD r.example/x:1".into(),
            status: reqwest::StatusCode::UNAUTHORIZED,
            body: String::new(),
        });
        assert!(refused.help().unwrap().contains("docker login"));
        let missing = Failure::from(RegistryError::Status {
            what: "HEAD r.example/x:1".into(),
            status: reqwest::StatusCode::NOT_FOUND,
            body: String::new(),
        });
        assert_eq!(missing.help(), None);
        let exited = Failure::Exited {
            command: "buildah build".into(),
            code: 2,
        };
        assert_eq!(exited.to_string(), "`buildah build` exited with 2");
    }
}
