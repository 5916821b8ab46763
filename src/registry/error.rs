//! What went wrong with a registry, typed.

/// What went wrong with a registry: callers decide on the kind (a missing tag is an answer,
/// a transport failure after retries is an outage); the message says it to a person.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered, and not with success (404, 401/403 after authenticating, a 5xx
    /// once retries are spent).
    #[error("{what}: {status} {body}")]
    Status {
        what: String,
        status: reqwest::StatusCode,
        body: String,
    },
    /// No answer: connection refused, TLS, DNS, a timeout — `retryable` when another try might
    /// get one (and retries were spent).
    #[error("{message}")]
    Transport { message: String, retryable: bool },
    /// Content that does not match its digest (or size).
    #[error("{0}")]
    DigestMismatch(String),
    /// What came back, or was asked for, is not what the protocol or mab allows.
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// 404: the tag, manifest or blob is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Status { status, .. } if *status == reqwest::StatusCode::NOT_FOUND)
    }

    /// 401 or 403 once mab authenticated as configured.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Status { status, .. }
            if *status == reqwest::StatusCode::UNAUTHORIZED || *status == reqwest::StatusCode::FORBIDDEN)
    }

    /// Whether the same request might succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => super::http::retryable_status(*status),
            RegistryError::Transport { retryable, .. } => *retryable,
            RegistryError::DigestMismatch(_) | RegistryError::Invalid(_) => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

pub(super) fn err(context: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(format!("{context}: {e}"))
}

pub(super) fn status_error(
    what: &str,
    resp_status: reqwest::StatusCode,
    body: &str,
) -> RegistryError {
    let body: String = body.chars().take(300).collect();
    RegistryError::Status {
        what: what.to_owned(),
        status: resp_status,
        body: body.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registry, http};

    #[test]
    fn registry_errors_say_what_happened() {
        let missing = status_error("reading manifest r/a:1", reqwest::StatusCode::NOT_FOUND, "");
        assert!(missing.is_not_found() && !missing.is_unauthorized() && !missing.retryable());
        let denied = status_error("pushing", reqwest::StatusCode::FORBIDDEN, "denied");
        assert!(denied.is_unauthorized() && !denied.retryable());
        assert_eq!(denied.to_string(), "pushing: 403 Forbidden denied");
        let busy = status_error("pushing", reqwest::StatusCode::SERVICE_UNAVAILABLE, "");
        assert!(busy.retryable());
        let down = Registry::http_err(http::HttpError {
            message: "connection refused".into(),
            retryable: true,
        });
        assert!(down.retryable() && !down.is_not_found());
        assert!(!RegistryError::DigestMismatch("x".into()).retryable());
    }
}
