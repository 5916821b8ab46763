//! The registry client for what is not a build: digests, manifests, blob copies, and
//! the index a merge publishes. Built on `oci-client` (the OCI distribution protocol),
//! with credentials from the docker `config.json` (`auths`, `credHelpers`, `credsStore`).

pub mod http;
pub mod transport;

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_client::Reference;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

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
            RegistryError::Status { status, .. } => http::retryable_status(*status),
            RegistryError::Transport { retryable, .. } => *retryable,
            RegistryError::DigestMismatch(_) | RegistryError::Invalid(_) => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

fn err(context: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(format!("{context}: {e}"))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `d` is a well-formed sha256 digest.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A manifest as stored: exact bytes, media type, digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.bytes).map_err(|e| err("manifest is not JSON", e))
    }

    /// The entries of an index.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        serde_json::from_value(self.json()?.get("manifests").cloned().unwrap_or_default())
            .map_err(|e| err(&format!("reading index {}", self.digest), e))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn parse(platform: &str) -> PlatformSpec {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or_default().to_owned();
        let architecture = parts.next().unwrap_or_default().to_owned();
        PlatformSpec {
            architecture,
            os,
            variant: parts.next().map(str::to_owned),
        }
    }

    /// Whether this index entry is `platform` (`os/arch[/variant]`): `linux/arm64` is also
    /// written `linux/arm64/v8` (Docker Hub's indexes do), so a missing variant and `v8` are
    /// the same for arm64.
    pub fn matches(&self, platform: &str) -> bool {
        let want = PlatformSpec::parse(platform);
        let norm = |s: &PlatformSpec| -> Option<String> {
            match s.variant.as_deref() {
                Some("v8") if s.architecture == "arm64" => None,
                v => v.map(str::to_owned),
            }
        };
        self.os == want.os && self.architecture == want.architecture && norm(self) == norm(&want)
    }

    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// One entry of an index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The annotation BuildKit puts on an attestation manifest's index entry, naming the image it
/// describes; `vnd.docker.reference.type` says what it is (`attestation-manifest`).
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

impl Descriptor {
    /// The image this entry attests to, when it is an attestation manifest.
    pub fn attests(&self) -> Option<&str> {
        (self.annotations.get(REFERENCE_TYPE).map(String::as_str) == Some("attestation-manifest"))
            .then(|| self.annotations.get(REFERENCE_DIGEST).map(String::as_str))
            .flatten()
    }
}

/// Keep the entries of `index` for `keep` (by platform) and the attestation manifests of the
/// images kept, in index order: what a filtered copy or a merge carries along.
pub fn with_attestations(
    index: &[Descriptor],
    keep: impl Fn(&Descriptor) -> bool,
) -> Vec<Descriptor> {
    let images: Vec<&Descriptor> = index
        .iter()
        .filter(|d| d.attests().is_none() && keep(d))
        .collect();
    index
        .iter()
        .filter(|d| match d.attests() {
            Some(of) => images.iter().any(|i| i.digest == of),
            None => images.iter().any(|i| i.digest == d.digest),
        })
        .cloned()
        .collect()
}

/// Order index entries as BuildKit does: every image first, then the attestation manifests.
pub fn images_first(entries: Vec<Descriptor>) -> Vec<Descriptor> {
    let (mut images, attestations): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|d| d.attests().is_none());
    images.extend(attestations);
    images
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

/// The bytes of an OCI index of `children`, in the order given (deterministic).
pub fn index_bytes(media_type: &str, children: &[Descriptor]) -> Vec<u8> {
    let index = Index {
        schema_version: 2,
        media_type,
        manifests: children,
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

/// The index type for `children`: a Docker manifest list when every child is a Docker
/// manifest (what Docker-format tools expect), else an OCI index.
pub fn index_type_for(children: &[Descriptor]) -> &'static str {
    if !children.is_empty() && children.iter().all(|c| c.media_type == DOCKER_MANIFEST) {
        DOCKER_LIST
    } else {
        OCI_INDEX
    }
}

pub struct Registry {
    http: http::Http,
    /// At most [`PER_REGISTRY`] operations in flight per registry host, whatever `--jobs` is.
    limits:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
}

/// Concurrent operations per registry host.
pub const PER_REGISTRY: usize = 8;

/// A parsed reference: API host, repository, and tag or digest.
struct Ref {
    host: String,
    repository: String,
    reference: String,
}

impl Ref {
    fn parse(s: &str) -> Result<Ref> {
        let r = s
            .parse::<Reference>()
            .map_err(|e| err(&format!("invalid reference `{s}`"), e))?;
        let host = match r.resolve_registry() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_owned(),
            other => other.to_owned(),
        };
        let reference = r
            .digest()
            .map(str::to_owned)
            .or_else(|| r.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        Ok(Ref {
            host,
            repository: r.repository().to_owned(),
            reference,
        })
    }

    fn pull(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }

    fn push(&self) -> String {
        format!("repository:{}:pull,push", self.repository)
    }
}

fn status_error(what: &str, resp_status: reqwest::StatusCode, body: &str) -> RegistryError {
    let body: String = body.chars().take(300).collect();
    RegistryError::Status {
        what: what.to_owned(),
        status: resp_status,
        body: body.trim().to_owned(),
    }
}

impl Registry {
    /// `insecure`: registries (host[:port]) spoken to over plain HTTP.
    pub fn new(insecure: &[String]) -> Registry {
        Registry::with_observer(insecure, Box::new(|m| eprintln!("mab: registry: {m}")))
    }

    /// `observer` receives a line for every retry.
    pub fn with_observer(
        insecure: &[String],
        observer: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Registry {
        // A stalled registry must not hang a run: no connection in 10 s, or no byte for
        // 60 s (`MAB_HTTP_TIMEOUT` seconds) while reading, fails the request.
        let read_timeout = std::time::Duration::from_secs(
            std::env::var("MAB_HTTP_TIMEOUT")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(60),
        );
        Registry {
            http: http::Http::new(insecure, read_timeout, http::Policy::default(), observer),
            limits: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for one operation against `host`; released when dropped.
    async fn slot(&self, host: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_owned())
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(PER_REGISTRY)))
            .clone();
        semaphore.acquire_owned().await.ok()
    }

    fn http_err(e: http::HttpError) -> RegistryError {
        RegistryError::Transport {
            message: e.message,
            retryable: e.retryable,
        }
    }

    /// GET or HEAD of a manifest, accepting every manifest type.
    async fn manifest_request(
        &self,
        method: reqwest::Method,
        r: &Ref,
    ) -> Result<reqwest::Response> {
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        self.http
            .send(
                method,
                &r.host,
                &path,
                http::header("accept", &ACCEPT.join(", ")),
                None,
                &r.pull(),
            )
            .await
            .map_err(Self::http_err)
    }

    /// The manifest at `reference` (tag or digest), exactly as stored.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest> {
        let r = Ref::parse(reference)?;
        let _slot = self.slot(&r.host).await;
        let resp = self.manifest_request(reqwest::Method::GET, &r).await?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(&format!("reading manifest {reference}"), e))?;
        if !status.is_success() {
            return Err(status_error(
                &format!("reading manifest {reference}"),
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        let digest = digest_of(&bytes);
        if r.reference.starts_with("sha256:") && r.reference != digest {
            return Err(RegistryError::DigestMismatch(format!(
                "manifest {reference} has digest {digest}, not the one asked for"
            )));
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .or(content_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest `reference` points at, or `None` when it does not exist (HEAD only).
    pub async fn digest(&self, reference: &str) -> Result<Option<String>> {
        let r = Ref::parse(reference)?;
        let slot = self.slot(&r.host).await;
        let resp = self.manifest_request(reqwest::Method::HEAD, &r).await?;
        match resp.status() {
            s if s.is_success() => {
                let header = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| is_digest(d))
                    .map(str::to_owned);
                match header {
                    Some(d) => Ok(Some(d)),
                    None => {
                        drop(slot);
                        Ok(Some(self.manifest(reference).await?.digest))
                    }
                }
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(&format!("looking up {reference}"), s, "")),
        }
    }

    /// PUT manifest bytes at `repository:reference` (a tag or the bytes' own digest).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let sep = if reference.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        let r = Ref::parse(&format!("{repository}{sep}{reference}"))?;
        let _slot = self.slot(&r.host).await;
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        let resp = self
            .http
            .send(
                reqwest::Method::PUT,
                &r.host,
                &path,
                http::header("content-type", media_type),
                Some(Bytes::copy_from_slice(bytes)),
                &r.push(),
            )
            .await
            .map_err(Self::http_err)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(
                &format!("pushing manifest to {repository}{sep}{reference}"),
                status,
                &body,
            ));
        }
        Ok(digest_of(bytes))
    }

    async fn blob_exists(&self, r: &Ref, digest: &str) -> Result<bool> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .http
            .send(
                reqwest::Method::HEAD,
                &r.host,
                &path,
                reqwest::header::HeaderMap::new(),
                None,
                &r.push(),
            )
            .await
            .map_err(Self::http_err)?;
        Ok(resp.status().is_success())
    }

    /// Cross-repository mount on one registry; `true` when the blob is now in `to`.
    async fn mount(&self, to: &Ref, from: &Ref, digest: &str) -> Result<bool> {
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={}",
            to.repository, from.repository
        );
        let resp = self
            .http
            .send(
                reqwest::Method::POST,
                &to.host,
                &path,
                reqwest::header::HeaderMap::new(),
                None,
                &to.push(),
            )
            .await
            .map_err(Self::http_err)?;
        Ok(resp.status() == reqwest::StatusCode::CREATED)
    }

    /// Make blob `digest` of `from` (a repository) available in `to`: nothing if it is
    /// there, a cross-repository mount on the same registry, else a streamed download and
    /// upload, verified against `digest` and `size` as it passes: a mismatch aborts the
    /// upload before it is committed. A transfer broken by the network is restarted from
    /// the start (a new upload session), within the retry policy.
    pub async fn copy_blob(
        &self,
        from: &str,
        to: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<()> {
        let dst = Ref::parse(&format!("{to}@{digest}"))?;
        let src = Ref::parse(&format!("{from}@{digest}"))?;
        // One slot on the target for the whole copy (the source side is read within it).
        let _slot = self.slot(&dst.host).await;
        if self.blob_exists(&dst, digest).await? {
            return Ok(());
        }
        if src.host == dst.host && self.mount(&dst, &src, digest).await? {
            return Ok(());
        }
        let attempts = self.http.policy().attempts;
        let mut attempt = 0;
        loop {
            match self.transfer(&src, &dst, digest, size).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable && attempt + 1 < attempts => {
                    let delay = self.http.backoff(attempt);
                    attempt += 1;
                    self.http.slow_down(&dst.host, delay);
                    self.http.note(&format!(
                        "restarting the copy of {digest} to {to} in {:.1}s ({}; try {} of {attempts})",
                        delay.as_secs_f64(),
                        e.message,
                        attempt + 1
                    ));
                }
                Err(e) => {
                    return Err(RegistryError::Transport {
                        message: format!(
                            "copying blob {digest} from {from} to {to}: {}",
                            e.message
                        ),
                        retryable: e.retryable,
                    });
                }
            }
        }
    }

    /// One try of a blob copy: GET from `src`, streamed into a new upload session at `dst`.
    async fn transfer(
        &self,
        src: &Ref,
        dst: &Ref,
        digest: &str,
        size: Option<u64>,
    ) -> std::result::Result<(), http::HttpError> {
        use futures_util::StreamExt;
        let fatal = |m: String| http::HttpError {
            message: m,
            retryable: false,
        };
        let download = self
            .http
            .send(
                reqwest::Method::GET,
                &src.host,
                &format!("/v2/{}/blobs/{digest}", src.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &src.pull(),
            )
            .await?;
        let status = download.status();
        if !status.is_success() {
            return Err(http::HttpError {
                message: format!("download: {status}"),
                retryable: http::retryable_status(status),
            });
        }
        let length = size.or(download.content_length());
        let start = self
            .http
            .send(
                reqwest::Method::POST,
                &dst.host,
                &format!("/v2/{}/blobs/uploads/", dst.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &dst.push(),
            )
            .await?;
        let status = start.status();
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(http::HttpError {
                message: format!("starting an upload: {status}"),
                retryable: http::retryable_status(status),
            });
        }
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| fatal("the registry gave no upload location".into()))?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            reqwest::Url::parse(location)
        } else {
            reqwest::Url::parse(&format!("{}{location}", self.http.base(&dst.host)))
        }
        .map_err(|e| fatal(format!("bad upload location {location}: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest);
        let chunks = download
            .bytes_stream()
            .map(|c| c.map_err(|e| std::io::Error::other(e.to_string())));
        let checked = CheckedStream::new(chunks, digest.to_owned(), size);
        let mut headers = http::header("content-type", "application/octet-stream");
        if let Some(n) = length
            && let Ok(v) = reqwest::header::HeaderValue::from_str(&n.to_string())
        {
            headers.insert(reqwest::header::CONTENT_LENGTH, v);
        }
        let resp = self
            .http
            .send_stream(
                reqwest::Method::PUT,
                url.as_str(),
                &dst.host,
                headers,
                reqwest::Body::wrap_stream(checked),
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            // The verifier's own error: the content is wrong, another try would not help.
            Err(e)
                if e.message.contains("not what was asked for")
                    || e.message.contains("longer than") =>
            {
                return Err(fatal(e.message));
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if status != reqwest::StatusCode::CREATED {
            let body = resp.text().await.unwrap_or_default();
            return Err(http::HttpError {
                message: format!(
                    "upload: {status} {}",
                    body.chars().take(200).collect::<String>()
                ),
                retryable: http::retryable_status(status),
            });
        }
        Ok(())
    }

    /// Copy the blobs of one image manifest (config and layers), then the manifest itself by digest.
    pub async fn copy_image(&self, from: &str, to: &str, manifest: &Manifest) -> Result<()> {
        let json = manifest.json()?;
        let blobs = json.get("config").into_iter().chain(
            json.get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten(),
        );
        for blob in blobs {
            let Some(digest) = blob.get("digest").and_then(|d| d.as_str()) else {
                return Err(RegistryError::Invalid(format!(
                    "a blob of {} has no digest",
                    manifest.digest
                )));
            };
            let size = blob.get("size").and_then(|s| s.as_u64());
            self.copy_blob(from, to, digest, size).await?;
        }
        self.put_manifest(to, &manifest.digest, &manifest.bytes, &manifest.media_type)
            .await?;
        Ok(())
    }

    /// The entries of the index at `repository:tag`, or `None` when that tag does not exist
    /// or is not an index.
    pub async fn index_entries(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Vec<Descriptor>>> {
        let reference = format!("{repository}:{tag}");
        if self.digest(&reference).await?.is_none() {
            return Ok(None);
        }
        let index = self.manifest(&reference).await?;
        if !index.is_index() {
            return Ok(None);
        }
        index.entries().map(Some)
    }

    /// The child for `platform` of the index at `repository:tag`, if that tag exists and is an index.
    pub async fn published_child(
        &self,
        repository: &str,
        tag: &str,
        platform: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .index_entries(repository, tag)
            .await?
            .unwrap_or_default()
            .into_iter()
            .find(|c| {
                c.attests().is_none() && c.platform.as_ref().is_some_and(|p| p.matches(platform))
            })
            .map(|c| c.digest))
    }

    /// The labels of the image at `repository@digest` (from its config blob).
    pub async fn labels(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let manifest = self.manifest(&format!("{repository}@{digest}")).await?;
        let Some(config) = manifest
            .json()?
            .pointer("/config/digest")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
        else {
            return Ok(Default::default());
        };
        let r = Ref::parse(&format!("{repository}@{config}"))?;
        let _slot = self.slot(&r.host).await;
        let resp = self
            .http
            .send(
                reqwest::Method::GET,
                &r.host,
                &format!("/v2/{}/blobs/{config}", r.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &r.pull(),
            )
            .await
            .map_err(Self::http_err)?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err("reading an image config", e))?;
        if !status.is_success() {
            return Err(status_error(
                &format!("reading the config of {repository}@{digest}"),
                status,
                "",
            ));
        }
        if digest_of(&bytes) != config {
            return Err(RegistryError::DigestMismatch(format!(
                "the config of {repository}@{digest} does not match its digest"
            )));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| err("reading an image config", e))?;
        Ok(json
            .pointer("/config/Labels")
            .and_then(|l| l.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The index entries that stand for one platform's build at `repository@digest`: its
    /// image manifest and the attestation manifests of that image. A buildx push by digest
    /// stores an index of both (the entries are taken from it, exactly); a plain image
    /// manifest brings along the attestations `published` (the entries at the merge's tag,
    /// when a reused image was built with them) has for it.
    pub async fn platform_entries(
        &self,
        repository: &str,
        digest: &str,
        platform: &str,
        published: &[Descriptor],
    ) -> Result<Vec<Descriptor>> {
        let m = self.manifest(&format!("{repository}@{digest}")).await?;
        if !m.is_index() {
            let image = Descriptor {
                media_type: m.media_type,
                digest: m.digest,
                size: m.bytes.len() as u64,
                platform: Some(PlatformSpec::parse(platform)),
                annotations: BTreeMap::new(),
            };
            let mut out = vec![image];
            out.extend(
                published
                    .iter()
                    .filter(|d| d.attests() == Some(digest))
                    .cloned(),
            );
            return Ok(out);
        }
        let entries = m.entries()?;
        let out = with_attestations(&entries, |d| {
            d.platform.as_ref().is_some_and(|p| p.matches(platform))
        });
        match out.iter().filter(|d| d.attests().is_none()).count() {
            1 => Ok(out),
            0 => Err(RegistryError::Invalid(format!(
                "{repository}@{digest} is an index without an image for {platform}"
            ))),
            _ => Err(RegistryError::Invalid(format!(
                "{repository}@{digest} is an index of several images for {platform}"
            ))),
        }
    }
}

/// Hashes a blob as it streams and checks its digest and size.
struct Verifier {
    hasher: Sha256,
    digest: String,
    size: Option<u64>,
    seen: u64,
}

impl Verifier {
    fn new(digest: &str, size: Option<u64>) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            digest: digest.to_owned(),
            size,
            seen: 0,
        }
    }

    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.size
            && self.seen > size
        {
            return Err(RegistryError::DigestMismatch(format!(
                "blob {} is longer than its {size} bytes",
                self.digest
            )));
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// The verifier's stream wrapper: after the last chunk, the digest and size must match,
/// else the stream ends in an error and the upload is never committed.
struct CheckedStream<S> {
    inner: std::pin::Pin<Box<S>>,
    verifier: Verifier,
    done: bool,
}

impl<S> CheckedStream<S> {
    fn new(inner: S, digest: String, size: Option<u64>) -> CheckedStream<S> {
        CheckedStream {
            inner: Box::pin(inner),
            verifier: Verifier::new(&digest, size),
            done: false,
        }
    }
}

type StreamItem = std::result::Result<Bytes, std::io::Error>;

impl<S: futures_util::Stream<Item = StreamItem>> futures_util::Stream for CheckedStream<S> {
    type Item = StreamItem;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Err(e) = self.verifier.update(&chunk) {
                    self.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let v = &self.verifier;
                let got = format!("sha256:{}", hex::encode(v.hasher.clone().finalize()));
                let short = v.size.is_some_and(|s| v.seen != s);
                if got != v.digest || short {
                    let e = format!(
                        "blob {} arrived as {got} ({} bytes): not what was asked for",
                        v.digest, v.seen
                    );
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

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

    fn stream_of(chunks: &[&'static [u8]]) -> impl futures_util::Stream<Item = StreamItem> {
        let items: Vec<StreamItem> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures_util::stream::iter(items)
    }

    async fn drain(
        digest: &str,
        size: Option<u64>,
        chunks: &[&'static [u8]],
    ) -> std::result::Result<Vec<u8>, String> {
        let mut s = CheckedStream::new(stream_of(chunks), digest.to_owned(), size);
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            out.extend_from_slice(&item.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_blob_passes_only_with_its_digest_and_size() {
        let digest = digest_of(b"hello world");
        assert_eq!(
            drain(&digest, Some(11), &[b"hello ", b"world"])
                .await
                .unwrap(),
            b"hello world"
        );
        // One flipped byte.
        let e = drain(&digest, Some(11), &[b"hello ", b"worle"])
            .await
            .unwrap_err();
        assert!(e.contains("not what was asked for"), "{e}");
        // A short body.
        let e = drain(&digest, Some(11), &[b"hello "]).await.unwrap_err();
        assert!(e.contains("6 bytes"), "{e}");
        // A long one stops as soon as it is too long.
        let e = drain(&digest, Some(11), &[b"hello world", b"!!"])
            .await
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn digests_are_checked_for_shape() {
        assert!(is_digest(&digest_of(b"")));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("md5:d41d8cd98f00b204e9800998ecf8427e"));
    }

    fn entry(digest: &str, platform: &str, attests: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(PlatformSpec::parse(platform)),
            annotations: attests
                .map(|of| {
                    [
                        (REFERENCE_DIGEST.to_owned(), of.to_owned()),
                        (REFERENCE_TYPE.to_owned(), "attestation-manifest".to_owned()),
                    ]
                    .into()
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn arm64_is_arm64_with_or_without_v8() {
        let v8 = PlatformSpec::parse("linux/arm64/v8");
        assert!(v8.matches("linux/arm64"));
        assert!(PlatformSpec::parse("linux/arm64").matches("linux/arm64/v8"));
        assert!(!PlatformSpec::parse("linux/arm/v7").matches("linux/arm"));
        assert!(!PlatformSpec::parse("linux/arm/v6").matches("linux/arm/v7"));
        assert!(!PlatformSpec::parse("windows/amd64").matches("linux/amd64"));
    }

    #[test]
    fn attestations_follow_the_images_they_describe() {
        let index = [
            entry("a", "linux/amd64", None),
            entry("b", "linux/arm64", None),
            entry("c", "unknown/unknown", Some("a")),
            entry("d", "unknown/unknown", Some("b")),
        ];
        let kept = with_attestations(&index, |d| {
            d.platform.as_ref().unwrap().display() == "linux/arm64"
        });
        let digests: Vec<&str> = kept.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, ["b", "d"]);
        assert_eq!(index[3].attests(), Some("b"));
        assert_eq!(index[0].attests(), None);
        let merged = images_first(vec![
            index[0].clone(),
            index[2].clone(),
            index[1].clone(),
            index[3].clone(),
        ]);
        let digests: Vec<&str> = merged.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, ["a", "b", "c", "d"]);
        // The annotations survive a round trip through an index exactly.
        let bytes = index_bytes(OCI_INDEX, &merged);
        let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back["manifests"][3]["annotations"][REFERENCE_DIGEST],
            serde_json::json!("b")
        );
        assert!(back["manifests"][0].get("annotations").is_none());
    }

    #[test]
    fn an_index_is_deterministic_bytes() {
        let child = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest_of(b"x"),
            size: 1,
            platform: Some(PlatformSpec::parse("linux/arm/v7")),
            annotations: BTreeMap::new(),
        };
        let bytes = index_bytes(OCI_INDEX, std::slice::from_ref(&child));
        assert_eq!(bytes, index_bytes(OCI_INDEX, &[child]));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"#), "{text}");
        assert!(
            text.contains(r#""platform":{"architecture":"arm","os":"linux","variant":"v7"}"#),
            "{text}"
        );
    }
}
